//! `/v1/projections`: where each projection stands (lag, last progress,
//! rebuild under way), its parked events, a retry of one of them, and a
//! blue-green rebuild on request. Operators' endpoints: they need the
//! `admin` scope, since projections span every tenant.

use actix_web::{web, HttpResponse};
use herald_events::Position;
use herald_projections::{ParkedEvent, ProjectionError, ProjectionStatus, ReadSide};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{problem, Params};
use crate::api::problem::{ApiResult, Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::Identity;

/// Why a caller without the `admin` scope is refused.
const SPANS_EVERY_TENANT: &str =
    "projections span every tenant: this needs the admin scope (admin:*)";

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list, show, rebuild, retry),
    components(schemas(
        ProjectionList,
        ProjectionDetail,
        StatusDoc,
        RebuildDoc,
        ParkedDoc,
        RebuildStarted,
        RetryAnswer
    ))
)]
pub struct Api;

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("")
            .route(web::get().to(list))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/{name}")
            .route(web::get().to(show))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/{name}/rebuild")
            .route(web::post().to(rebuild))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/{name}/parked/{position}/retry")
            .route(web::post().to(retry))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// This Herald's read side, whose runner answers for the projections.
fn runner(state: &AppState) -> ApiResult<&ReadSide> {
    state.read_side.as_ref().ok_or_else(|| {
        Problem::new(
            ProblemKind::ReadModelUnavailable,
            "this Herald runs no projections",
        )
    })
}

/// Every projection's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    pub projections: Vec<StatusDoc>,
}

/// A projection's status and its parked events.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionDetail {
    pub status: StatusDoc,
    pub parked_events: Vec<ParkedDoc>,
}

/// Where a projection's serving generation stands against the store's head.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusDoc {
    pub name: String,
    /// The projection's version in this code.
    pub version: u32,
    /// The version that built the serving tables (lower than `version`
    /// while a new version is being built beside them).
    pub serving_version: Option<u32>,
    /// The serving generation.
    pub generation: Option<u32>,
    /// The last log position applied.
    pub position: u64,
    /// The store's head position.
    pub head: u64,
    /// Events committed and not yet projected.
    pub lag_events: u64,
    /// Seconds between the checkpoint's event and the head's.
    pub lag_seconds: f64,
    /// When the checkpoint last moved.
    pub last_progress_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Events parked by the serving generation.
    pub parked: usize,
    /// A blue-green rebuild under way.
    pub rebuild: Option<RebuildDoc>,
}

/// A generation being built beside the serving one.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildDoc {
    pub generation: u32,
    pub version: u32,
    pub position: u64,
    pub lag_events: u64,
}

/// An event a projection could not apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedDoc {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub error: String,
    pub parked_at: chrono::DateTime<chrono::Utc>,
}

/// A rebuild was started (or one was under way).
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStarted {
    pub projection: String,
    /// The generation being built.
    pub generation: u32,
}

/// The parked event was applied and is no longer parked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAnswer {
    pub projection: String,
    pub position: u64,
    pub applied: bool,
}

fn status_doc(s: ProjectionStatus) -> StatusDoc {
    StatusDoc {
        name: s.name,
        version: s.version,
        serving_version: s.serving_version,
        generation: s.generation,
        position: s.position.get(),
        head: s.head.get(),
        lag_events: s.lag_events,
        lag_seconds: s.lag_seconds,
        last_progress_at: s.last_progress_at,
        parked: s.parked,
        rebuild: s.rebuild.map(|r| RebuildDoc {
            generation: r.generation,
            version: r.version,
            position: r.position.get(),
            lag_events: r.lag_events,
        }),
    }
}

fn parked_doc(p: ParkedEvent) -> ParkedDoc {
    ParkedDoc {
        position: p.position.get(),
        event_id: p.event_id.as_uuid(),
        error: p.error,
        parked_at: p.parked_at,
    }
}

/// `GET /v1/projections`
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "projections",
    operation_id = "list_projections",
    summary = "Every projection's lag and progress",
    description = "For each read model: the serving generation's position against the store's \
        head (events and seconds behind), the last progress, the count of parked events and a \
        blue-green rebuild under way. The same numbers are on `/metrics` \
        (`herald_projection_lag_events`, `herald_projection_position`, \
        `herald_projection_last_progress_seconds`). Needs the `admin` scope.",
    responses(
        (status = 200, description = "Every projection", body = ProjectionList),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    identity: Identity,
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let runner = runner(&state)?;
    let statuses = runner.statuses().await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(ProjectionList {
        projections: statuses.into_iter().map(status_doc).collect(),
    }))
}

/// `GET /v1/projections/{name}`
#[utoipa::path(
    get,
    path = "/v1/projections/{name}",
    tag = "projections",
    operation_id = "show_projection",
    summary = "One projection's status and parked events",
    description = "The status of `list_projections` for one read model, with the events it \
        parked (position, event id, the error, when): events it could not apply, set aside so \
        it goes on with the rest. Needs the `admin` scope.",
    params(("name" = String, Path, description = "The projection's name, e.g. `tickets`")),
    responses(
        (status = 200, description = "The projection", body = ProjectionDetail),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`projection-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: actix_web::HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let runner = runner(&state)?;
    let status = runner.status(&name).await.map_err(problem)?;
    let parked = runner.parked(&name).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(ProjectionDetail {
        status: status_doc(status),
        parked_events: parked.into_iter().map(parked_doc).collect(),
    }))
}

/// `POST /v1/projections/{name}/rebuild`
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/rebuild",
    tag = "projections",
    operation_id = "rebuild_projection",
    summary = "Rebuild a read model (blue-green)",
    description = "Starts building a new generation of the read model from the start of the \
        log, beside the serving one, which keeps answering queries; once the new one has caught \
        up with the head it serves instead (one atomic switch) and the old one is dropped after \
        a grace period. Answers at once with the generation being built (the one already under \
        way, if any); follow it on `show_projection`. Needs the `admin` scope.",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 202, description = "The rebuild is under way", body = RebuildStarted),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`projection-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn rebuild(
    identity: Identity,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let runner = runner(&state)?;
    let generation = runner.rebuild(&name).await.map_err(problem)?;
    Ok(HttpResponse::Accepted().json(RebuildStarted {
        projection: name.into_inner(),
        generation,
    }))
}

/// `POST /v1/projections/{name}/parked/{position}/retry`
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/parked/{position}/retry",
    tag = "projections",
    operation_id = "retry_parked_event",
    summary = "Apply a parked event again",
    description = "Applies the parked event at `position` to the serving read model again \
        (after its cause was fixed) and, if it succeeds, un-parks it, in one transaction. If it \
        fails again it stays parked with the new error, answered as `parked-event-failed` (422). \
        Needs the `admin` scope.",
    params(
        ("name" = String, Path, description = "The projection's name"),
        ("position" = u64, Path, description = "The parked event's log position"),
    ),
    responses(
        (status = 200, description = "Applied and no longer parked", body = RetryAnswer),
        (status = 400, description = "`invalid-request`: the position is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`projection-not-found` or `not-parked`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`parked-event-failed`: the event failed again; the error is in `detail`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn retry(
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(SPANS_EVERY_TENANT)?;
    let (name, position) = path.into_inner();
    let position: u64 = position.parse().map_err(|_| {
        Problem::new(
            ProblemKind::InvalidRequest,
            "the position must be a whole number",
        )
    })?;
    let runner = runner(&state)?;
    match runner.retry_parked(&name, Position(position)).await {
        Ok(()) => Ok(HttpResponse::Ok().json(RetryAnswer {
            projection: name,
            position,
            applied: true,
        })),
        Err(e @ (ProjectionError::Event { .. } | ProjectionError::OutOfRange { .. })) => {
            Err(Problem::new(
                ProblemKind::ParkedEventFailed,
                format!("the event failed again and stays parked: {e}"),
            ))
        }
        Err(e) => Err(problem(e)),
    }
}
