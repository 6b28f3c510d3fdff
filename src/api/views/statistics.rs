//! `/v1/views/statistics`: the statistics read model over HTTP: the
//! tenant's rollups (tickets, time to resolve, outage minutes, drafts,
//! countdown views, editor sessions) summed over a range of UTC days,
//! grouped as asked.

use actix_web::{web, HttpResponse};
use chrono::{Days, NaiveDate, Utc};
use herald_projections::read_models::statistics::{self, GroupBy, StatisticsRow, MAX_RANGE_DAYS};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{backend, invalid, problem, Params};
use crate::api::problem::{ApiResult, Problem};
use crate::api::AppState;
use crate::auth::{Action, Identity};

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(paths(show), components(schemas(StatisticsAnswer, StatisticsRow)))]
pub struct Api;

/// This view's registration in its domain ([`crate::domains::builtin`]).
pub const VIEWS: crate::domains::Views = crate::domains::Views {
    routes,
    openapi: <Api as OpenApi>::openapi,
};

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/statistics")
            .route(web::get().to(show))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// Days covered when the request names no `from`.
const DEFAULT_RANGE_DAYS: u64 = 30;

/// The statistics of a range of days.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatisticsAnswer {
    /// The first day covered (UTC).
    pub from: NaiveDate,
    /// The last day covered (UTC), included.
    pub to: NaiveDate,
    /// The dimensions the rows are grouped by (`day`, `customer`, `edge`).
    pub group_by: Vec<String>,
    /// The one customer asked for, if any.
    pub customer: Option<String>,
    /// One row per group with data, sorted by day, customer and edge;
    /// exactly one (the totals) when not grouped.
    pub rows: Vec<StatisticsRow>,
}

fn day(params: &Params, name: &str) -> ApiResult<Option<NaiveDate>> {
    params
        .get(name)
        .map(|text| {
            // chrono would take `2026-3-1`; the format is strict.
            (text.len() == 10)
                .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .flatten()
                .ok_or_else(|| invalid(format!("{name} must be a day, YYYY-MM-DD (2026-11-30)")))
        })
        .transpose()
}

/// The range asked for: `to` defaults to today (UTC), `from` to the 30
/// days ending at `to`.
fn range(params: &Params) -> ApiResult<(NaiveDate, NaiveDate)> {
    let to = match day(params, "to")? {
        Some(to) => to,
        None => Utc::now().date_naive(),
    };
    let from = match day(params, "from")? {
        Some(from) => from,
        None => to
            .checked_sub_days(Days::new(DEFAULT_RANGE_DAYS - 1))
            .unwrap_or(NaiveDate::MIN),
    };
    if from > to {
        return Err(invalid(format!("from ({from}) is after to ({to})")));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_RANGE_DAYS as i64 {
        return Err(invalid(format!(
            "the range covers {days} days; at most {MAX_RANGE_DAYS} may be asked at once"
        )));
    }
    Ok((from, to))
}

/// `GET /v1/views/statistics`
#[utoipa::path(
    get,
    path = "/v1/views/statistics",
    tag = "views",
    operation_id = "show_statistics",
    summary = "The tenant's statistics over a range of days",
    description = "Sums the tenant's daily rollups over the UTC days `from` to `to` (both \
        included; default the last 30 days; at most 366): tickets opened, resolved and \
        reopened; the mean and nearest-rank p90 time from a ticket's opening to each of its \
        resolutions (computed from every duration in the range, not from daily figures); \
        minutes edges were offline (an outage counts once it has ended, split at UTC \
        midnights); draft autosaves and publishes and countdown views (these carry no \
        customer: they count under customer `\"\"`); editor sessions started and ended, with \
        their total and mean seconds. `group_by` names any of `day`, `customer` and `edge` \
        (edge applies to outage minutes only: each edge's minutes get rows of their own, \
        and the row without an edge holds the rest); without it the answer is one total row. \
        Needs `read` on `statistics`.",
    params(
        ("from" = Option<String>, Query, description = "The first day, YYYY-MM-DD (UTC); default 29 days before `to`", format = Date),
        ("to" = Option<String>, Query, description = "The last day, included, YYYY-MM-DD (UTC); default today", format = Date),
        ("group_by" = Option<crate::api::openapi::GroupByParam>, Query, description = "Comma-separated dimensions: `day`, `customer`, `edge`; empty or absent for one total row", example = "day,customer"),
        ("customer" = Option<String>, Query, description = "Only this customer (`\"\"` picks drafts, countdowns and sessions without a customer)"),
    ),
    responses(
        (status = 200, description = "The statistics", body = StatisticsAnswer),
        (status = 400, description = "`invalid-query`: an unknown parameter, a malformed day, `from` after `to`, a range over 366 days or an unknown `group_by` dimension", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the key may not read `statistics`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["from", "to", "group_by", "customer"])?;
    identity.require_domain(Action::Read, "statistics")?;
    let (from, to) = range(&params)?;
    let group = GroupBy::parse(params.get("group_by").unwrap_or("")).map_err(invalid)?;
    let customer = params.get("customer");
    let tenant = &identity.tenant;
    let rows = statistics::query(backend(&state)?, tenant, from, to, group, customer)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(StatisticsAnswer {
        from,
        to,
        group_by: group.names().into_iter().map(str::to_owned).collect(),
        customer: customer.map(str::to_owned),
        rows,
    }))
}
