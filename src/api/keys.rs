//! API keys over HTTP, for admins (the console's Keys page): list them,
//! create one with scopes (its text is answered once and never stored),
//! revoke one (every process refuses it at its next request, and the
//! console sessions signed in with it end). The same records as
//! `herald keys`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_events::TenantId;
use herald_store::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::body::read_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::views::Params;
use super::AppState;
use crate::auth::{parse_scopes, ApiKey, Identity};

/// Why a caller without the `admin` scope is refused.
const MANAGING_KEYS: &str = "managing API keys needs the admin scope (admin:*)";

/// Most characters of a key's label.
const MAX_LABEL: usize = 200;

/// The endpoints' OpenAPI paths.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list, create, revoke),
    components(schemas(KeyView, KeyList, CreateKey, CreatedKey))
)]
pub struct Api;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/keys")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/keys/{key_id}/revoke")
            .route(web::post().to(revoke))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub label: Option<String>,
    pub rate_per_sec: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            key_id: r.key_id,
            tenant: r.tenant.to_string(),
            scopes: r.scopes,
            label: r.label,
            rate_per_sec: r.rate_per_sec,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, oldest first.
    pub keys: Vec<KeyView>,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The tenant it acts for (default: the caller's).
    pub tenant: Option<String>,
    /// At least one scope, e.g. `read:tickets.*`, `publish:edges.*`, `admin`.
    pub scopes: Vec<String>,
    pub label: Option<String>,
    /// Requests per second (default: the server's).
    pub rate_per_sec: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key's text (`hk_<id>_<secret>`): shown only in this answer.
    pub key: String,
    pub record: KeyView,
}

/// `GET /v1/keys`
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_keys",
    summary = "Every API key",
    description = "Every key of every tenant, oldest first, revoked ones included; never a \
        secret. Needs the `admin` scope.",
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    identity.require_admin(MANAGING_KEYS)?;
    let keys = state.store.list_api_keys().await?;
    Ok(HttpResponse::Ok().json(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// `POST /v1/keys`
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "create_key",
    summary = "Create an API key",
    description = "Creates a key for a tenant with scopes, as `herald keys create` does; the \
        answer carries the key's text, which is shown only there. Needs the `admin` scope.",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key", body = CreatedKey),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`: no scope, a malformed scope or tenant, a label too long", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    identity: Identity,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(MANAGING_KEYS)?;
    let body: CreateKey = read_json(&req, payload, &state.limits).await?;
    let invalid = |detail: String| Problem::new(ProblemKind::InvalidRequest, detail);
    let tenant = match body.tenant.as_deref().map(str::trim) {
        None | Some("") => identity.tenant.clone(),
        Some(t) => TenantId::new(t).map_err(|e| invalid(format!("tenant: {e}")))?,
    };
    let scopes =
        parse_scopes(&body.scopes.join(",")).map_err(|e| invalid(format!("scopes: {e}")))?;
    if scopes.is_empty() {
        return Err(invalid("a key needs at least one scope".into()));
    }
    let label = body
        .label
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty());
    if let Some(label) = &label {
        super::text::check_body(
            &serde_json::Value::String(label.clone()),
            ProblemKind::InvalidRequest,
        )?;
        if label.chars().count() > MAX_LABEL {
            return Err(invalid(format!("label is at most {MAX_LABEL} characters")));
        }
    }
    if body.rate_per_sec == Some(0) {
        return Err(invalid("rate_per_sec must be at least 1".into()));
    }
    let key = ApiKey::generate();
    let record = ApiKeyRecord {
        key_id: key.id.clone(),
        tenant,
        scopes: scopes.iter().map(ToString::to_string).collect(),
        secret_sha256: key.secret_sha256(),
        label,
        rate_per_sec: body.rate_per_sec,
        created_at: herald_events::envelope::to_stored_precision(Utc::now()),
        revoked_at: None,
    };
    state.store.insert_api_key(&record).await?;
    state.auth.end_anonymous();
    tracing::info!(key = %record.key_id, tenant = %record.tenant, by = %identity.subject, "API key created.");
    Ok(HttpResponse::Created().json(CreatedKey {
        key: key.reveal(),
        record: record.into(),
    }))
}

/// `POST /v1/keys/{key_id}/revoke`
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/revoke",
    tag = "keys",
    operation_id = "revoke_key",
    summary = "Revoke an API key",
    description = "From now on every process refuses the key (401), and console sessions signed \
        in with it end at their next request. Revoking a revoked key answers it as it is. Needs \
        the `admin` scope.",
    params(("key_id" = String, Path, description = "The key's id (16 hex digits)")),
    responses(
        (status = 200, description = "The key, revoked", body = KeyView),
        (status = 400, description = "`invalid-query`: the key id holds a character no store can keep", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such key", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    identity: Identity,
    key_id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_admin(MANAGING_KEYS)?;
    let key_id = key_id.into_inner();
    let not_found = || Problem::new(ProblemKind::NotFound, format!("no API key {key_id:?}"));
    if key_id.len() != 16 || !key_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let Some(record) = state.store.api_key(&key_id).await? else {
        return Err(not_found());
    };
    if record.revoked_at.is_none() {
        state.store.revoke_api_key(&key_id).await?;
        tracing::info!(key = %key_id, by = %identity.subject, "API key revoked.");
    }
    let record = state.store.api_key(&key_id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(KeyView::from(record)))
}
