//! `/v1/events`: the global log in position order, paged by position.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::{EventEnvelope, Position};
use serde::{Deserialize, Serialize};

use super::problem::{ApiResult, Problem, ProblemKind};
use super::streams::{parse_query, upcast_all, MAX_READ};
use super::AppState;
use crate::auth::{Action, Identity};

const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Optional; any tenant but the caller's own is refused (403).
    tenant: Option<String>,
    /// First position to return (inclusive); 0 or absent for the start; at
    /// most 9223372036854775807, the largest position a store holds.
    from: Option<u64>,
    /// Events to scan, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Return events as stored instead of upcast to their latest version.
    #[serde(default)]
    as_stored: bool,
}

/// A page of the global log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LogPage {
    /// The scanned events the caller may read.
    #[schema(value_type = Vec<super::openapi::EventEnvelope>)]
    events: Vec<EventEnvelope>,
    /// The `from` of the next page.
    next: u64,
    /// The last committed position when read, whatever `from` asked for.
    head: u64,
}

/// `GET /v1/events?from=P&limit=N`: the caller's tenant's events it may
/// read; `next` moves past everything scanned, shown or not.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "read_log",
    summary = "Read the global log",
    description = "The caller's tenant's events in position order from `from`, leaving out types \
        the caller may not read; `next` moves past everything scanned, shown or not. Upcast to \
        the latest schema versions unless `as_stored=true`.",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of the log", body = LogPage),
        (status = 400, description = "`invalid-query` (`parameter` names it): malformed or unknown, or a `from` past 9223372036854775807", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn read_all(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let query: LogQuery = parse_query(&req)?;
    identity.require_tenant(query.tenant.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_READ {
        return Err(Problem::new(
            ProblemKind::InvalidQuery,
            format!("limit must be 1 to {MAX_READ}"),
        ));
    }
    let from = Position(query.from.unwrap_or(0).max(1));
    if from > Position::MAX {
        return Err(Problem::new(
            ProblemKind::InvalidQuery,
            format!(
                "from is {from}, past {}, the largest position a store holds",
                Position::MAX
            ),
        )
        .with("parameter", "from"));
    }
    let (head, events) = futures::try_join!(state.store.head(), state.store.read_all(from, limit))?;
    let next = events.last().map_or(from.get(), |e| e.position.get() + 1);
    // The head read may precede an event the read found: the head is the
    // later of the two, never a position nobody committed.
    let head = events
        .last()
        .map_or(head.position, |e| e.position.max(head.position));
    let events: Vec<EventEnvelope> = events
        .into_iter()
        .filter(|e| e.tenant == identity.tenant && identity.allows(Action::Read, &e.event_type))
        .collect();
    let events = upcast_all(&state, events, query.as_stored)?;
    Ok(HttpResponse::Ok().json(LogPage {
        events,
        next,
        head: head.get(),
    }))
}
