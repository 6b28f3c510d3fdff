//! An aggregate's state as it was at a moment over HTTP: `GET
//! /v1/streams/{domain}/{id}?at=<instant|position>` (admin scope). The
//! folding is the actor side's ([`herald_actors::state_at`]), reached
//! through the running domain list, as `herald replay state` reaches it.

use actix_web::{web, HttpRequest, HttpResponse};
pub use herald_actors::state_at::{EventAt, Moment, StateAt, StateAtError};
use utoipa::OpenApi;

use super::problem::{ApiResult, Problem, ProblemKind};
use super::views::Params;
use super::AppState;
use crate::auth::Identity;
use crate::domains::DomainList;
/// Events listed in an HTTP answer unless `limit` says otherwise.
const DEFAULT_LISTED: usize = 100;
/// Most events an HTTP answer lists.
const MAX_LISTED: usize = 1000;

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(paths(show), components(schemas(StateAt, EventAt, Moment)))]
pub struct Api;

/// Registers this module's routes, inside the `/v1/streams` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/{domain}/{id}")
            .route(web::get().to(show))
            .default_service(web::to(super::method_not_allowed)),
    );
}

impl From<StateAtError> for Problem {
    fn from(e: StateAtError) -> Self {
        match e {
            StateAtError::UnknownDomain { .. } => {
                Problem::new(ProblemKind::NotFound, e.to_string())
            }
            StateAtError::InvalidStream(why) => {
                Problem::new(ProblemKind::InvalidStreamId, why.to_string())
            }
            StateAtError::NoStream { .. } | StateAtError::NotYet { .. } => {
                Problem::new(ProblemKind::AggregateNotFound, e.to_string())
            }
            StateAtError::Store(store) => Problem::from(store),
            _ => {
                tracing::error!(error = %e, "A stored event cannot be folded into its aggregate.");
                Problem::new(
                    ProblemKind::Internal,
                    "a stored event cannot be folded into its aggregate; the error is logged",
                )
            }
        }
    }
}

/// `GET /v1/streams/{domain}/{id}?at=`
#[utoipa::path(
    get,
    path = "/v1/streams/{domain}/{id}",
    tag = "audit",
    operation_id = "aggregate_state_at",
    summary = "An aggregate's state at a moment",
    description = "The state of the aggregate `{domain}/{id}` as it was at `at`: its stream's \
        events folded from the first one with the domain's own rules (what an actor does when it \
        rehydrates), up to the last event at or before the log position `at`, or recorded at or \
        before the instant `at`. Answers with the state, the stream version and position it is \
        at, and the events that made it (type, stream version, position, `occurred_at`, \
        `recorded_at`; the last `limit` of them). The state of each domain is described in the \
        README, \"Domains and commands\"; `herald replay state` answers the same from the \
        command line. Needs the `admin` scope; acts in the caller's tenant.",
    params(
        ("domain" = crate::api::openapi::CommandDomain, Path, description = "A domain with aggregates (README, \"Domains and commands\")"),
        ("id" = String, Path, description = "The aggregate's id (its stream's id): not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
        ("at" = String, Query, description = "A log position (a whole number: the state after the events at or before it) or an RFC 3339 instant (after the events recorded at or before it)", example = "2026-11-30T12:00:00Z"),
        ("tenant" = Option<String>, Query, description = "The caller's own tenant (any other is refused)"),
        ("limit" = Option<usize>, Query, description = "How many of the last events that made the state to list, 0 to 1000 (default 100)", minimum = 0, maximum = 1000),
    ),
    responses(
        (status = 200, description = "The state at that moment", body = StateAt),
        (status = 400, description = "`invalid-query` (`at` missing or malformed, an unknown parameter, a bad `limit`) or `invalid-stream-id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key, or another tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` (no such domain) or `aggregate-not-found` (no events at or before `at`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    domains: web::Data<DomainList>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["at", "tenant", "limit"])?;
    if !identity.is_admin() {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "an aggregate's past states are for auditors: this needs the admin scope (admin:*)",
        ));
    }
    identity.require_tenant(params.get("tenant"))?;
    let at = match params.get("at") {
        Some(text) => {
            Moment::parse(text).map_err(|e| Problem::new(ProblemKind::InvalidQuery, e))?
        }
        None => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                "at is required: a log position or an RFC 3339 instant",
            ))
        }
    };
    let limit = match params.number("limit")? {
        None => DEFAULT_LISTED,
        Some(n) if n as usize <= MAX_LISTED => n as usize,
        Some(_) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                format!("limit must be a whole number from 0 to {MAX_LISTED}"),
            ))
        }
    };
    let (domain, id) = path.into_inner();
    let answer = domains
        .specs()
        .state_at(
            &*state.store,
            &identity.tenant,
            &domain,
            &id,
            at,
            Some(limit),
        )
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}
