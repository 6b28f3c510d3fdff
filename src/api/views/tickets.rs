//! `/v1/views/tickets`: the tickets read model over HTTP. A page of the
//! tenant's tickets, filtered and sorted, and one ticket with its notes and
//! history. Needs `read` on the `tickets` domain.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::tickets::DOMAIN;
use herald_projections::read_models::tickets::{
    self, TicketDetail, TicketHistoryEntry, TicketNote, TicketQuery, TicketSort, TicketStatus,
    TicketView,
};
use herald_projections::read_models::{Page, SortOrder};
use utoipa::OpenApi;

use super::{backend, invalid, problem, Params};
use crate::api::problem::{ApiResult, Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::{Action, Identity};

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list, show),
    components(schemas(
        Page<TicketView>,
        TicketView,
        TicketStatus,
        TicketDetail,
        TicketNote,
        TicketHistoryEntry
    ))
)]
pub struct Api;

/// This view's registration in its domain ([`crate::domains::builtin`]).
pub const VIEWS: crate::domains::Views = crate::domains::Views {
    routes,
    openapi: <Api as OpenApi>::openapi,
};

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tickets")
            .route(web::get().to(list))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/tickets/{id}")
            .route(web::get().to(show))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

const LIST_PARAMS: &[&str] = &[
    "status", "kind", "customer", "edge", "assignee", "sort", "order", "limit", "cursor",
];

/// The list query a request's parameters ask for.
fn list_query(params: &Params) -> ApiResult<TicketQuery> {
    let status = match params.get("status") {
        None => None,
        Some(text) => Some(
            TicketStatus::parse(text)
                .ok_or_else(|| invalid("status must be open, resolved or closed"))?,
        ),
    };
    let kind = match params.get("kind") {
        None => None,
        Some(text) => Some(
            tickets::parse_kind(text)
                .ok_or_else(|| invalid("kind must be outage, affecting or other"))?,
        ),
    };
    let sort = params.sort(TicketSort::NAMES)?;
    Ok(TicketQuery {
        status,
        kind,
        customer: params.get("customer").map(str::to_owned),
        edge: params.get("edge").map(str::to_owned),
        assignee: params.get("assignee").map(str::to_owned),
        sort: TicketSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    })
}

/// `GET /v1/views/tickets`
#[utoipa::path(
    get,
    path = "/v1/views/tickets",
    tag = "views",
    operation_id = "list_tickets",
    summary = "A page of the tenant's tickets",
    description = "The tenant's tickets as their events left them (status, assignee, counts of \
        notes and reopenings, the time of each step), filtered by any of `status`, `kind`, \
        `customer`, `edge` and `assignee` (all must match), ordered by `opened_at` (default) or \
        `updated_at` and then by id, ascending unless `order=desc`. Pages hold `limit` tickets \
        (default 50, at most 500); pass `next_cursor` as `cursor` (with the same `sort`) for the \
        next one: keyset paging, stable while tickets change. The read model follows the log \
        shortly after each commit. Needs `read` on the `tickets` domain.",
    params(
        ("status" = Option<TicketStatus>, Query, description = "Only tickets in this status"),
        ("kind" = Option<crate::api::openapi::TicketKindParam>, Query, description = "Only tickets of this kind: `outage`, `affecting` or `other`"),
        ("customer" = Option<String>, Query, description = "Only this customer's tickets"),
        ("edge" = Option<String>, Query, description = "Only tickets about this edge device"),
        ("assignee" = Option<String>, Query, description = "Only tickets assigned to this person"),
        ("sort" = Option<crate::api::openapi::TicketSortParam>, Query, description = "`opened_at` (default) or `updated_at`"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Tickets per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of tickets", body = Page<TicketView>),
        (status = 400, description = "`invalid-query`: an unknown parameter, a bad value, or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` on the tickets domain", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), LIST_PARAMS)?;
    identity.require_domain(Action::Read, DOMAIN)?;
    let query = list_query(&params)?;
    let page = tickets::list(backend(&state)?, &identity.tenant, &query)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/views/tickets/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/tickets/{id}",
    tag = "views",
    operation_id = "show_ticket",
    summary = "One ticket with its notes and history",
    description = "The ticket as in `list_tickets`, its notes and its history (one entry per \
        event: type, position, time and the payload without the long texts), oldest first. \
        Needs `read` on the `tickets` domain.",
    params(("id" = String, Path, description = "The ticket's id (its stream is `tickets/{id}`)")),
    responses(
        (status = 200, description = "The ticket", body = TicketDetail),
        (status = 400, description = "`invalid-query`: this endpoint takes no query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` on the tickets domain", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no such ticket (or the read model has not seen it yet)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_domain(Action::Read, DOMAIN)?;
    let detail = tickets::get(backend(&state)?, &identity.tenant, &id)
        .await
        .map_err(problem)?;
    match detail {
        Some(detail) => Ok(HttpResponse::Ok().json(detail)),
        None => Err(Problem::new(
            ProblemKind::NotFound,
            format!(
                "no ticket {:?} in this tenant's tickets read model",
                id.chars().take(128).collect::<String>()
            ),
        )),
    }
}
