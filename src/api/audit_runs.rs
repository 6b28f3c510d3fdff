//! Verification as a run that reports its progress, for the console's
//! Audit page: `POST /v1/audit/verify/runs` starts the walk of
//! `GET /v1/audit/verify` in the background and answers at once; `GET
//! /v1/audit/verify/runs/{run}` tells how far it got and, once done, the
//! report. And `GET /v1/audit/anchor`: the log's head as a file to keep
//! outside the system, as `herald audit anchor --json` prints it.
//!
//! Runs live in the process that started them, the last [`KEPT_RUNS`] of
//! them; a run is not resumed after a restart (start another).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_store::audit::{Anchor, VerifyReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::audit::verify_options;
use super::body::read_optional_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::views::Params;
use super::AppState;
use crate::auth::Identity;

/// Why a caller without the `admin` scope is refused.
pub(super) const SPANS_EVERY_TENANT: &str =
    "the log spans every tenant: verifying it needs the admin scope (admin:*)";

/// Runs kept (finished or not); the oldest finished one makes room.
const KEPT_RUNS: usize = 20;
/// Runs under way at once in a process: each reads the whole log.
const MAX_RUNNING: usize = 2;

/// The endpoints' OpenAPI paths.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(start, show, anchor),
    components(schemas(StartRun, RunView, RunState, AnchorFile))
)]
pub struct Api;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/audit/verify/runs")
            .route(web::post().to(start))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/audit/verify/runs/{run}")
            .route(web::get().to(show))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/audit/anchor")
            .route(web::get().to(anchor))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// What to verify; every field optional, as the query of `verify_chain`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// First position to check (default 1).
    pub from: Option<u64>,
    /// The anchored position; needs `anchor_hash`.
    pub anchor_position: Option<u64>,
    /// The hash anchored (64 hex digits); alone, some event must carry it.
    pub anchor_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Done,
    Failed,
}

/// A run as it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    /// Events walked so far.
    pub checked: u64,
    /// The log's head when the run started: what `checked` grows towards.
    pub total: u64,
    /// The report once `done` (that of `verify_chain`: intact, or where
    /// and how the chain breaks).
    #[schema(value_type = Option<super::audit::VerifyReportDoc>)]
    pub report: Option<Value>,
    /// Why it failed (the store failed), once `failed`.
    pub error: Option<String>,
}

struct Run {
    view: Mutex<RunView>,
    checked: AtomicU64,
}

impl Run {
    fn view(&self) -> RunView {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if view.state == RunState::Running {
            view.checked = self.checked.load(Ordering::Relaxed);
        }
        view
    }

    fn finish(&self, outcome: Result<VerifyReport, String>) {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(report) => {
                view.checked = report.checked;
                view.report = serde_json::to_value(&report).ok();
                view.state = RunState::Done;
            }
            Err(e) => {
                view.checked = self.checked.load(Ordering::Relaxed);
                view.error = Some(e);
                view.state = RunState::Failed;
            }
        }
    }
}

static RUNS: LazyLock<Mutex<VecDeque<Arc<Run>>>> = LazyLock::new(Default::default);

/// `POST /v1/audit/verify/runs`
#[utoipa::path(
    post,
    path = "/v1/audit/verify/runs",
    tag = "audit",
    operation_id = "start_verify_run",
    summary = "Start verifying the hash chain in the background",
    description = "Starts the walk of `verify_chain` and answers at once with the run (202); \
        `show_verify_run` then tells how many events it checked of how many and, once done, \
        the same report. The body is optional. Runs live in the process that started them (the \
        last 20); at most 2 run at once per process. Needs the `admin` scope.",
    request_body(content = Option<StartRun>, description = "What to verify (all optional)"),
    responses(
        (status = 202, description = "The run, under way", body = RunView, headers(("Location" = String, description = "The run's URL"))),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`: a malformed position or hash, an anchor position without its hash", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: too many requests, or two runs are under way already (`Retry-After` given)", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn start(
    identity: Identity,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let body: StartRun = read_optional_json(&req, payload, &state.limits).await?;
    let options = verify_options(
        |name| match name {
            "from" => body.from.map(|n| n.to_string()),
            "anchor_position" => body.anchor_position.map(|n| n.to_string()),
            "anchor_hash" => body.anchor_hash.clone(),
            _ => None,
        },
        ProblemKind::InvalidRequest,
    )?;
    let head = state.store.head().await?;
    let run = Arc::new(Run {
        view: Mutex::new(RunView {
            id: {
                use rand::RngCore;
                let mut id = [0u8; 16];
                rand::rng().fill_bytes(&mut id);
                hex::encode(id)
            },
            state: RunState::Running,
            started_at: Utc::now(),
            checked: 0,
            total: head.position.get(),
            report: None,
            error: None,
        }),
        checked: AtomicU64::new(0),
    });
    {
        let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
        let running = runs
            .iter()
            .filter(|r| r.view().state == RunState::Running)
            .count();
        if running >= MAX_RUNNING {
            return Err(Problem::new(
                ProblemKind::RateLimited,
                format!("{running} verifications are under way in this process; wait for one"),
            )
            .retry_after(5));
        }
        if runs.len() >= KEPT_RUNS {
            if let Some(i) = runs
                .iter()
                .position(|r| r.view().state != RunState::Running)
            {
                runs.remove(i);
            }
        }
        runs.push_back(run.clone());
    }
    let walker = run.clone();
    let store = state.store.clone();
    tokio::spawn(async move {
        let counter = walker.clone();
        let outcome = herald_store::audit::verify(
            store,
            options,
            Box::new(move |walked| counter.checked.store(walked, Ordering::Relaxed)),
        )
        .await
        .map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "A verification run failed.");
        }
        walker.finish(outcome);
    });
    let view = run.view();
    tracing::info!(run = %view.id, by = %identity.subject, "Verification run started.");
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/v1/audit/verify/runs/{}", view.id),
        ))
        .json(view))
}

/// `GET /v1/audit/verify/runs/{run}`
#[utoipa::path(
    get,
    path = "/v1/audit/verify/runs/{run}",
    tag = "audit",
    operation_id = "show_verify_run",
    summary = "A verification run's progress and report",
    description = "`running` with the events checked so far of `total`, then `done` with the \
        report of `verify_chain` (intact, or the first position where the chain breaks and \
        how), or `failed` with the store's error. Needs the `admin` scope.",
    params(("run" = String, Path, description = "The run's id, from `start_verify_run`")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such run in this process", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: HttpRequest,
    run: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let found = RUNS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|r| r.view())
        .find(|v| v.id == *run);
    let view = found.ok_or_else(|| {
        Problem::new(
            ProblemKind::NotFound,
            format!(
                "no verification run {:?} in this process (runs live in the process that \
                 started them, the last {KEPT_RUNS})",
                run.as_str()
            ),
        )
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view))
}

/// The anchor file.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnchorFile {
    /// The head's position (0 for an empty log).
    pub position: u64,
    /// The hash stored with the event at that position (64 hex digits).
    pub hash: String,
    pub recorded_at: Option<DateTime<Utc>>,
    /// `POSITION:HASH`, as `herald audit verify --anchor` takes it.
    pub anchor: String,
}

/// `GET /v1/audit/anchor`
#[utoipa::path(
    get,
    path = "/v1/audit/anchor",
    tag = "audit",
    operation_id = "download_anchor",
    summary = "Download the log's head as an anchor",
    description = "The log's head — its position and the hash stored with that event — as a \
        JSON file to keep outside the system (the output of `herald audit anchor --json`); \
        `herald audit verify --anchor FILE` or `verify_chain` with `anchor_position` and \
        `anchor_hash` later prove that no event up to it was changed, removed or cut off. \
        Refused (500) when the log's head record disagrees with the event stored at its \
        position: run a verification. Needs the `admin` scope.",
    responses(
        (status = 200, description = "The anchor, as a download", body = AnchorFile),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn anchor(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let head = state.store.head().await?;
    if head.position.get() > 0 {
        // The head record is a copy; the anchor is the hash stored with the
        // event itself, and the two must agree.
        let stored = state.store.read_all(head.position, 1).await?;
        let matches = stored
            .first()
            .is_some_and(|e| e.position == head.position && e.hash == head.hash);
        if !matches {
            return Err(Problem::new(
                ProblemKind::Internal,
                format!(
                    "the log head record ({}:{}) does not match the event stored at {}; run a \
                     verification",
                    head.position, head.hash, head.position
                ),
            ));
        }
    }
    let file = AnchorFile {
        position: head.position.get(),
        hash: head.hash.to_hex(),
        recorded_at: head.recorded_at,
        anchor: Anchor::text(head.position, &head.hash),
    };
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"herald-anchor-{}.json\"",
                head.position.get()
            ),
        ))
        .json(file))
}
