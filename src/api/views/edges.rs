//! `/v1/views/edges`: the edges read model over HTTP. A page of the
//! tenant's edge devices, filtered and sorted, and one edge with its open
//! and recent incidents. Needs `read` on the `edges` domain.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::edges::DOMAIN;
use herald_projections::read_models::edges::{
    self, EdgeDetail, EdgeIncident, EdgeQuery, EdgeSort, EdgeThresholds, EdgeView, IncidentKind,
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
        Page<EdgeView>,
        EdgeView,
        EdgeThresholds,
        EdgeDetail,
        EdgeIncident,
        IncidentKind
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
        web::resource("/edges")
            .route(web::get().to(list))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/edges/{id}")
            .route(web::get().to(show))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

const LIST_PARAMS: &[&str] = &[
    "state",
    "customer",
    "site",
    "has_open_incident",
    "sort",
    "order",
    "limit",
    "cursor",
];

/// The list query a request's parameters ask for.
fn list_query(params: &Params) -> ApiResult<EdgeQuery> {
    let state = params
        .get("state")
        .map(|text| {
            edges::parse_state(text)
                .ok_or_else(|| invalid("state must be online, offline or degraded"))
        })
        .transpose()?;
    let has_open_incident = params
        .get("has_open_incident")
        .map(|text| {
            text.parse::<bool>()
                .map_err(|_| invalid("has_open_incident must be true or false"))
        })
        .transpose()?;
    let sort = params.sort(EdgeSort::NAMES)?;
    Ok(EdgeQuery {
        state,
        customer: params.get("customer").map(str::to_owned),
        site: params.get("site").map(str::to_owned),
        has_open_incident,
        sort: EdgeSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    })
}

/// `GET /v1/views/edges`
#[utoipa::path(
    get,
    path = "/v1/views/edges",
    tag = "views",
    operation_id = "list_edges",
    summary = "A page of the tenant's edge devices",
    description = "The tenant's edges as their events left them: registration, the state of the \
        latest report, the last contact, degraded links, thresholds and the count of open \
        incidents. Filter by any of `state`, `customer`, `site` and `has_open_incident` (all \
        must match); ordered by `id` (default) or `last_contact_at` (edges that never reported \
        count as the earliest), then by id, ascending unless `order=desc`. Pages hold `limit` \
        edges (default 50, at most 500); pass `next_cursor` as `cursor` (with the same `sort`) \
        for the next one. Needs `read` on the `edges` domain.",
    params(
        ("state" = Option<crate::api::openapi::EdgeStateParam>, Query, description = "Only edges in this state: `online`, `offline` or `degraded`"),
        ("customer" = Option<String>, Query, description = "Only this customer's edges"),
        ("site" = Option<String>, Query, description = "Only edges at this site"),
        ("has_open_incident" = Option<bool>, Query, description = "`true`: only edges with an open incident; `false`: only those without"),
        ("sort" = Option<crate::api::openapi::EdgeSortParam>, Query, description = "`id` (default) or `last_contact_at`"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Edges per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of edges", body = Page<EdgeView>),
        (status = 400, description = "`invalid-query`: an unknown parameter, a bad value, or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` on the edges domain", body = Problem, content_type = "application/problem+json"),
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
    let page = edges::list(backend(&state)?, &identity.tenant, &query)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/views/edges/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/edges/{id}",
    tag = "views",
    operation_id = "show_edge",
    summary = "One edge with its incidents",
    description = "The edge as in `list_edges`, its open incidents (an outage, degraded links; \
        oldest first) and its latest ended ones (at most 20, newest first). Needs `read` on the \
        `edges` domain.",
    params(("id" = String, Path, description = "The edge's id (its stream is `edges/{id}`)")),
    responses(
        (status = 200, description = "The edge", body = EdgeDetail),
        (status = 400, description = "`invalid-query`: this endpoint takes no query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` on the edges domain", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no such edge (or the read model has not seen it yet)", body = Problem, content_type = "application/problem+json"),
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
    let detail = edges::get(backend(&state)?, &identity.tenant, &id)
        .await
        .map_err(problem)?;
    detail.map(|d| HttpResponse::Ok().json(d)).ok_or_else(|| {
        Problem::new(
            ProblemKind::NotFound,
            format!(
                "the tenant has no edge {:?} (or the edges read model has not seen it yet)",
                id.chars().take(128).collect::<String>()
            ),
        )
    })
}
