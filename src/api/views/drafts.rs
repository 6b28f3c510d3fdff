//! `/v1/views/drafts`: the drafts read model over HTTP. A list of the
//! tenant's drafts (without their documents), one draft with its document
//! now, at a version or at an instant, and a draft's version history.
//! Needs `read` on `drafts`.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_projections::read_models::drafts::{
    self, DraftAt, DraftDocument, DraftQuery, DraftSort, DraftSummary, DraftVersion, VersionKind,
    VersionQuery,
};
use herald_projections::read_models::{Page, SortOrder};
use utoipa::OpenApi;

use super::timers::{flag, not_found};
use super::{backend, invalid, problem, Params};
use crate::api::problem::{ApiResult, Problem};
use crate::api::AppState;
use crate::auth::{Action, Identity};

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list_drafts, show_draft, list_draft_versions),
    components(schemas(DraftSummary, DraftDocument, DraftVersion, VersionKind))
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
        web::resource("/drafts")
            .route(web::get().to(list_drafts))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/drafts/{id}")
            .route(web::get().to(show_draft))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/drafts/{id}/versions")
            .route(web::get().to(list_draft_versions))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// `GET /v1/views/drafts`
#[utoipa::path(
    get,
    path = "/v1/views/drafts",
    tag = "views",
    operation_id = "list_drafts",
    summary = "The tenant's drafts",
    description = "Drafts from the drafts read model (projected from `drafts.*` events, so a \
        moment behind the commands), without their documents but with their size. Live drafts \
        by default (`deleted=true` lists the deleted ones instead). Sorted by `updated_at` \
        (default), `created_at` or `id`, ties by id; pages follow `next_cursor`. Needs `read` \
        on `drafts`.",
    params(
        ("deleted" = Option<bool>, Query, description = "`false` (default): live drafts; `true`: deleted ones"),
        ("published" = Option<bool>, Query, description = "`true`: only drafts with a published version; `false`: only drafts without"),
        ("title_prefix" = Option<String>, Query, description = "Only drafts whose title starts with this text (case-sensitive)"),
        ("sort" = Option<crate::api::openapi::DraftSortParam>, Query, description = "`updated_at` (default), `created_at` or `id`"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Items per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page, with the same sort"),
    ),
    responses(
        (status = 200, description = "A page of drafts", body = Page<DraftSummary>),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter, or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `drafts`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_drafts(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(
        req.query_string(),
        &[
            "deleted",
            "published",
            "title_prefix",
            "sort",
            "order",
            "limit",
            "cursor",
        ],
    )?;
    identity.require_domain(Action::Read, "drafts")?;
    let sort = params.sort(DraftSort::NAMES)?;
    let query = DraftQuery {
        deleted: flag(&params, "deleted")?.unwrap_or(false),
        published: flag(&params, "published")?,
        title_prefix: params.get("title_prefix").map(str::to_owned),
        sort: DraftSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    };
    let tenant = identity.tenant.as_str();
    let page = drafts::list_drafts(backend(&state)?, tenant, &query)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/views/drafts/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/drafts/{id}",
    tag = "views",
    operation_id = "show_draft",
    summary = "One draft and its document, now or as it was",
    description = "A draft from the drafts read model with its complete document, rebuilt from \
        its patches: the current one, the one of draft version `version`, or the one that was \
        current at the instant `at` (the latest version made at or before it). `draft` is the \
        draft as it is now (title, current version, flags); `version` describes the version \
        answered (when and how it was made, whether it was published). A deleted draft is \
        answered too (`draft.deleted: true`). Needs `read` on `drafts`.",
    params(
        ("id" = String, Path, description = "The draft's id (its stream is `drafts/{id}`)"),
        ("version" = Option<u64>, Query, description = "The draft version whose document to answer, from 1; not with `at`"),
        ("at" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "An RFC 3339 instant: answer the document current then; not with `version`"),
    ),
    responses(
        (status = 200, description = "The draft and the document asked for", body = DraftDocument),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter, version 0, or both `version` and `at`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `drafts`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no draft of that id, it has no such version, or it did not exist yet at `at`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show_draft(
    identity: Identity,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["version", "at"])?;
    identity.require_domain(Action::Read, "drafts")?;
    let at = match (params.number("version")?, params.time("at")?) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give version or at, not both: a version already names its instant",
            ))
        }
        (Some(0), None) => return Err(invalid("version counts from 1")),
        (Some(version), None) => DraftAt::Version(version),
        (None, Some(instant)) => DraftAt::Instant(instant),
        (None, None) => DraftAt::Current,
    };
    let tenant = identity.tenant.as_str();
    let draft = drafts::draft(backend(&state)?, tenant, &id, at).await;
    match draft.map_err(problem)? {
        Some(draft) => Ok(HttpResponse::Ok().json(draft)),
        None => Err(match at {
            DraftAt::Current => not_found("draft", &id),
            DraftAt::Version(v) => not_found(&format!("version {v} of draft"), &id),
            DraftAt::Instant(t) => {
                not_found(&format!("draft that existed at {}", t.to_rfc3339()), &id)
            }
        }),
    }
}

/// `GET /v1/views/drafts/{id}/versions`
#[utoipa::path(
    get,
    path = "/v1/views/drafts/{id}/versions",
    tag = "views",
    operation_id = "list_draft_versions",
    summary = "A draft's version history",
    description = "The document versions of a draft, by version number (ascending by default): \
        when each was made, by whom, whether by creation or by a patch (with its number of \
        operations), and whether and when it was published. Fetch a version's document with \
        `show_draft?version=N`. Pages follow `next_cursor`. Needs `read` on `drafts`.",
    params(
        ("id" = String, Path, description = "The draft's id"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default, oldest first) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Items per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of versions", body = Page<DraftVersion>),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: the credential may not read `drafts`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the tenant has no draft of that id", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_draft_versions(
    identity: Identity,
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["order", "limit", "cursor"])?;
    identity.require_domain(Action::Read, "drafts")?;
    let query = VersionQuery {
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor("version")?,
    };
    let tenant = identity.tenant.as_str();
    let versions = drafts::draft_versions(backend(&state)?, tenant, &id, &query).await;
    match versions.map_err(problem)? {
        Some(page) => Ok(HttpResponse::Ok().json(page)),
        None => Err(not_found("draft", &id)),
    }
}
