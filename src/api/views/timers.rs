//! `/v1/views/timers` and `/v1/views/countdowns`: the timers read model
//! over HTTP. Lists of the tenant's timers (upcoming first by default) and
//! countdowns, filtered, sorted and paged, and one timer with its firings or
//! one countdown with its remaining time. Needs `read` on `timers`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use herald_projections::read_models::timers::{
    self, CountdownQuery, CountdownSort, CountdownView, TimerDetail, TimerQuery, TimerSort,
    TimerStatus, TimerView,
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
    paths(list_timers, show_timer, list_countdowns, show_countdown),
    components(schemas(TimerView, TimerDetail, CountdownView, TimerStatus))
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
        web::resource("/timers")
            .route(web::get().to(list_timers))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/timers/{id}")
            .route(web::get().to(show_timer))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/countdowns")
            .route(web::get().to(list_countdowns))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/countdowns/{id}")
            .route(web::get().to(show_countdown))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// 404 `not-found` for one item of a read model.
pub(super) fn not_found(what: &str, id: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!(
            "this tenant has no {what} {:?}",
            id.chars().take(128).collect::<String>()
        ),
    )
}

/// `GET /v1/views/timers`
#[utoipa::path(
    get,
    path = "/v1/views/timers",
    tag = "views",
    operation_id = "list_timers",
    summary = "The tenant's timers, upcoming first",
    description = "Timers from the timers read model (projected from `timers.*` events, so a \
        moment behind the commands). `due_at` is the due time of a pending timer's next \
        occurrence, or of a finished timer's last one; by default the list is sorted by it, \
        ascending, so `status=pending` lists what fires next first. A recurring timer stays \
        `pending` after each firing. Pages follow `next_cursor`. Needs `read` on `timers`.",
    params(
        ("status" = Option<TimerStatus>, Query, description = "Only timers in this status: `pending` (upcoming), `fired` (one-shot timers that fired) or `cancelled`"),
        ("due_after" = Option<chrono::DateTime<Utc>>, Query, description = "Only timers due at or after this RFC 3339 instant"),
        ("due_before" = Option<chrono::DateTime<Utc>>, Query, description = "Only timers due strictly before this RFC 3339 instant"),
        ("sort" = Option<crate::api::openapi::TimerSortParam>, Query, description = "`due_at` (default) or `id`; ties are ordered by id"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Items per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page, with the same sort"),
    ),
    responses(
        (status = 200, description = "A page of timers", body = Page<TimerView>),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter, or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_timers(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(
        req.query_string(),
        &[
            "status",
            "due_after",
            "due_before",
            "sort",
            "order",
            "limit",
            "cursor",
        ],
    )?;
    identity.require_domain(Action::Read, "timers")?;
    let status = match params.get("status") {
        None => None,
        Some(text) => Some(
            TimerStatus::parse(text)
                .ok_or_else(|| invalid("status must be pending, fired or cancelled"))?,
        ),
    };
    let sort = params.sort(TimerSort::NAMES)?;
    let query = TimerQuery {
        status,
        due_after: params.time("due_after")?,
        due_before: params.time("due_before")?,
        sort: TimerSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    };
    let tenant = identity.tenant.as_str();
    let page = timers::list_timers(backend(&state)?, tenant, &query)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/views/timers/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/timers/{id}",
    tag = "views",
    operation_id = "show_timer",
    summary = "One timer and its firings",
    description = "A timer from the timers read model, with its latest firings (most recent \
        first, at most 500; `timer.fired_count` counts them all): when each was due, when it fired and \
        whether it was late. A countdown's id answers 404 here (see `show_countdown`). Needs \
        `read` on `timers`.",
    params(("id" = String, Path, description = "The timer's id (its stream is `timers/{id}`)")),
    responses(
        (status = 200, description = "The timer", body = TimerDetail),
        (status = 400, description = "`invalid-query`: this endpoint takes no query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no timer of that id", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show_timer(
    identity: Identity,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_domain(Action::Read, "timers")?;
    let tenant = identity.tenant.as_str();
    let timer = timers::timer(backend(&state)?, tenant, &id).await;
    match timer.map_err(problem)? {
        Some(timer) => Ok(HttpResponse::Ok().json(timer)),
        None => Err(not_found("timer", &id)),
    }
}

/// `GET /v1/views/countdowns`
#[utoipa::path(
    get,
    path = "/v1/views/countdowns",
    tag = "views",
    operation_id = "list_countdowns",
    summary = "The tenant's countdowns",
    description = "Countdowns from the timers read model: deadline, views counted before it, \
        whether the expiry was recorded, and `remaining_secs`, computed from the deadline when \
        answering. Sorted by `deadline` (default), `views` or `id`, ties by id; pages follow \
        `next_cursor`. Needs `read` on `timers`.",
    params(
        ("expired" = Option<bool>, Query, description = "`true`: only countdowns whose expiry was recorded; `false`: only the others"),
        ("sort" = Option<crate::api::openapi::CountdownSortParam>, Query, description = "`deadline` (default), `views` or `id`"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Items per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page, with the same sort"),
    ),
    responses(
        (status = 200, description = "A page of countdowns", body = Page<CountdownView>),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter, or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_countdowns(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(
        req.query_string(),
        &["expired", "sort", "order", "limit", "cursor"],
    )?;
    identity.require_domain(Action::Read, "timers")?;
    let sort = params.sort(CountdownSort::NAMES)?;
    let query = CountdownQuery {
        expired: flag(&params, "expired")?,
        sort: CountdownSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    };
    let (tenant, now) = (identity.tenant.as_str(), Utc::now());
    let page = timers::list_countdowns(backend(&state)?, tenant, &query, now)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

/// A `true`/`false` query parameter.
pub(super) fn flag(params: &Params, name: &str) -> ApiResult<Option<bool>> {
    match params.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(invalid(format!("{name} must be true or false"))),
    }
}

/// `GET /v1/views/countdowns/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/countdowns/{id}",
    tag = "views",
    operation_id = "show_countdown",
    summary = "One countdown and its remaining time",
    description = "A countdown from the timers read model: its deadline and label, the views \
        counted before the deadline, when it was last viewed, whether its expiry was recorded, \
        and `remaining_secs` (whole seconds to the deadline when answering, 0 once it passed). A \
        timer's id answers 404 here. Needs `read` on `timers`.",
    params(("id" = String, Path, description = "The countdown's id (its stream is `timers/{id}`)")),
    responses(
        (status = 200, description = "The countdown", body = CountdownView),
        (status = 400, description = "`invalid-query`: this endpoint takes no query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no countdown of that id", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show_countdown(
    identity: Identity,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_domain(Action::Read, "timers")?;
    let (tenant, now) = (identity.tenant.as_str(), Utc::now());
    let countdown = timers::countdown(backend(&state)?, tenant, &id, now).await;
    match countdown.map_err(problem)? {
        Some(countdown) => Ok(HttpResponse::Ok().json(countdown)),
        None => Err(not_found("countdown", &id)),
    }
}
