//! `GET /v1/audit/verify`: the hash chain's verification over HTTP, the
//! same walk and the same report as `herald audit verify --json`
//! (`herald_store::audit::verify`; the rules are in `docs/hash-chain.md`).
//! The log spans every tenant, so it needs the `admin` scope. The walk reads
//! the store in pages on the server's runtime and hashes on blocking threads,
//! so other requests are served while it runs.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::{ChainHash, Position};
use herald_store::audit::{Anchor, VerifyOptions};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::problem::{ApiResult, Problem, ProblemKind};
use super::views::Params;
use super::AppState;
use crate::auth::Identity;

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(verify),
    components(schemas(VerifyReportDoc, BreakDoc, BreakKindDoc, HeadDoc))
)]
pub struct Api;

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/audit/verify")
            .route(web::get().to(verify))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The report of a verification (`herald_store::audit::VerifyReport`, which
/// is what is sent; this type documents it).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VerifyReport)]
pub struct VerifyReportDoc {
    /// True when nothing is wrong from `from` to `to`.
    pub intact: bool,
    /// The first position checked.
    pub from: u64,
    /// The last position walked: the end of the log, or the break.
    pub to: u64,
    /// Events whose link was checked and held.
    pub checked: u64,
    /// The log head record when the walk started.
    pub head: HeadDoc,
    /// The anchor checked against, as `POSITION:HASH` (or a bare hash).
    pub anchor: Option<String>,
    /// The first break, or null when intact.
    pub first_break: Option<BreakDoc>,
    /// How long the walk took.
    pub elapsed_seconds: f64,
}

/// A position of the log and the hash stored with it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChainHead)]
pub struct HeadDoc {
    pub position: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
}

/// The first position where the chain breaks, and how.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChainBreak)]
pub struct BreakDoc {
    /// The first position affected.
    pub position: u64,
    pub kind: BreakKindDoc,
    /// Rows deleted, inserted or cut off, when the hashes tell.
    pub count: Option<u64>,
    /// The other position involved: the partner of a reordering, the head or
    /// anchor a truncation is measured against.
    pub related_position: Option<u64>,
    /// What the hashes show, in words.
    pub detail: String,
}

/// How the chain broke (`docs/hash-chain.md`, "What verify reports").
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChainBreakKind)]
pub enum BreakKindDoc {
    /// A row's content or stored hash was changed (or its predecessor was
    /// replaced by one with a recomputed hash).
    Edited,
    /// Rows are missing, or were removed and the rows after moved down.
    Deleted,
    /// Rows Herald did not write are in the log.
    Inserted,
    /// Rows were swapped or moved.
    Reordered,
    /// The tail was cut off: the log ends before its head record or the
    /// anchor, or the anchored event is not the one at its position.
    Truncated,
}

/// `GET /v1/audit/verify`
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    operation_id = "verify_chain",
    summary = "Verify the hash chain",
    description = "Walks the whole log in position order (from `from` on, taking the stored hash \
        of the event before it on trust) and recomputes every event's hash over the stored hash \
        of the event before it (`docs/hash-chain.md`). Answers 200 with the report either way: \
        `intact`, or the first position where the chain breaks and how — `edited`, `deleted`, \
        `inserted`, `reordered` or `truncated` — with the hashes' evidence in words. The log \
        head record is checked like an anchor; an anchor kept outside the system \
        (`herald audit anchor`), given as `anchor_position` and `anchor_hash` (or the hash \
        alone), also catches a tail cut off together with the head record. The same report as \
        `herald audit verify --json`. The walk takes about a second per 200,000 events. Needs \
        the `admin` scope: the log spans every tenant.",
    params(
        ("from" = Option<u64>, Query, description = "First position to check (default 1, at most 9223372036854775807)"),
        ("anchor_position" = Option<u64>, Query, description = "The anchored position; needs `anchor_hash`"),
        ("anchor_hash" = Option<crate::api::openapi::AnchorHash>, Query, description = "The hash anchored (64 hex digits); alone, some event must carry it"),
    ),
    responses(
        (status = 200, description = "The report, intact or not", body = VerifyReportDoc),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter, an anchor position without its hash, a bare anchor hash with `from`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn verify(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(super::audit_runs::SPANS_EVERY_TENANT)?;
    let params = Params::parse(
        req.query_string(),
        &["from", "anchor_position", "anchor_hash"],
    )?;
    let options = verify_options(
        |name| params.get(name).map(str::to_owned),
        ProblemKind::InvalidQuery,
    )?;
    let report =
        herald_store::audit::verify(state.store.clone(), options, Box::new(|_| {})).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The options of a verification from its named values (query parameters
/// or a JSON body's fields, as text); a malformed one is a `kind` problem.
pub(crate) fn verify_options(
    get: impl Fn(&str) -> Option<String>,
    kind: ProblemKind,
) -> ApiResult<VerifyOptions> {
    let invalid = |reason: String| Problem::new(kind, reason);
    let number = |name: &str| {
        get(name)
            .map(|text| {
                // No store holds a position past Position::MAX.
                text.parse::<u64>()
                    .ok()
                    .filter(|n| *n <= Position::MAX.get())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{name} must be a whole number up to {}, not {text:?}",
                            Position::MAX
                        ))
                    })
            })
            .transpose()
    };
    let from = number("from")?.unwrap_or(1);
    let anchor_position = number("anchor_position")?;
    let anchor_hash = get("anchor_hash")
        .map(|text| {
            hex::decode(&text)
                .ok()
                .and_then(|b| ChainHash::from_slice(&b))
                .ok_or_else(|| invalid("anchor_hash must be 64 hex digits".to_owned()))
        })
        .transpose()?;
    let anchor = match (anchor_position, anchor_hash) {
        (Some(position), Some(hash)) => Some(Anchor::At {
            position: Position(position),
            hash,
        }),
        (None, Some(hash)) => Some(Anchor::Hash(hash)),
        (Some(_), None) => {
            return Err(invalid(
                "anchor_position needs anchor_hash: the anchor is the hash at that position"
                    .to_owned(),
            ))
        }
        (None, None) => None,
    };
    Ok(VerifyOptions {
        from: Position(from),
        anchor,
        ..VerifyOptions::default()
    })
}
