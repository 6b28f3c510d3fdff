//! Personal data over HTTP: every JSON answer has its sealed personal
//! fields revealed for the caller ([`reveal_personal`], around the whole
//! app), a subject can be forgotten and its data gathered for an access
//! request, and sealed values copied out of Herald (broker messages) can
//! be decrypted by a key allowed to.

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_events::TenantId;
use herald_privacy::{Access, PrivacyError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::body::read_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::{Action, Identity};

/// The endpoints' OpenAPI paths.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(forget, subject_events, reveal),
    components(schemas(ForgetRequest, Forgotten, SubjectKeyView, SubjectEvents))
)]
pub struct Api;

/// Most characters of a subject id.
pub const MAX_SUBJECT_LEN: usize = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/subjects/{subject}/forget")
            .route(web::post().to(forget))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/subjects/{subject}/events")
            .route(web::get().to(subject_events))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/personal/reveal")
            .route(web::post().to(reveal))
            .default_service(web::to(super::method_not_allowed)),
    );
}

impl From<PrivacyError> for Problem {
    fn from(e: PrivacyError) -> Self {
        match e {
            PrivacyError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "Personal data keys failed.");
                Problem::new(
                    ProblemKind::Internal,
                    "the personal data keys failed; the error is logged",
                )
            }
        }
    }
}

/// Reveals the personal fields of every JSON answer for its caller:
/// plaintext with `personal:read` (or `admin`), `[personal]` otherwise,
/// `[forgotten]` for everyone once the subject is forgotten; with
/// `as_stored=true`, sealed as stored (ciphertext, for every caller). An answer
/// without a sealed value passes with one substring search. Event streams
/// (server-sent events, websockets, exports) reveal frame by frame where
/// they are written.
pub async fn reveal_personal(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // `as_stored=true` asks for the events exactly as stored: sealed, as
    // the hash chain covers them (a verifier recomputes it from these).
    let as_stored = req.query_string().split('&').any(|p| p == "as_stored=true");
    let res = next.call(req).await?;
    if as_stored {
        return Ok(res.map_into_boxed_body());
    }
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("application/problem+json")
        });
    if !json {
        return Ok(res.map_into_boxed_body());
    }
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res.map_into_boxed_body());
    };
    let identity = res.request().extensions().get::<Identity>().cloned();
    let (tenant, access) = match &identity {
        Some(identity) => (identity.tenant.clone(), identity.personal_access()),
        None => (TenantId::default_tenant(), Access::Redacted),
    };
    let (request, response) = res.into_parts();
    let (head, body) = response.into_parts();
    let bytes = to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
    let revealed = match std::str::from_utf8(&bytes) {
        Ok(text) => match state.privacy.reveal_json(&tenant, text, access).await {
            Ok(revealed) => revealed,
            Err(e) => {
                // Never the sealed answer with a 200 as if nothing
                // happened, and never plaintext by mistake.
                let problem = Problem::from(e);
                let response = actix_web::ResponseError::error_response(&problem);
                return Ok(ServiceResponse::new(request, response));
            }
        },
        Err(_) => None,
    };
    let response = match revealed {
        Some(text) => {
            let mut head = head;
            head.headers_mut().remove(header::CONTENT_LENGTH);
            head.set_body(BoxBody::new(text))
        }
        None => head.set_body(BoxBody::new(bytes)),
    };
    Ok(ServiceResponse::new(request, response))
}

fn subject_of(raw: &str) -> ApiResult<String> {
    let subject = raw.trim();
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_LEN {
        return Err(Problem::new(
            ProblemKind::InvalidRequest,
            format!("a subject id is 1 to {MAX_SUBJECT_LEN} characters"),
        ));
    }
    super::text::check_body(&json!(subject), ProblemKind::InvalidRequest)?;
    Ok(subject.to_owned())
}

/// The body of a forget request (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    /// Why (a case number of the data-protection desk, say); recorded in
    /// the erasure event, so it must not hold personal data. 1–1000
    /// characters.
    pub reason: Option<String>,
}

/// An erasure, done.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forgotten {
    /// The subject's keyed reference: what the erasure event names.
    pub subject_ref: String,
    /// The data keys destroyed now (empty when already forgotten).
    pub keys_destroyed: Vec<String>,
    pub forgotten_at: DateTime<Utc>,
    /// The position of the `subjects.subject_forgotten` event.
    pub position: u64,
}

/// `POST /v1/subjects/{subject}/forget`
#[utoipa::path(
    post,
    path = "/v1/subjects/{subject}/forget",
    tag = "personal data",
    operation_id = "forget_subject",
    summary = "Forget a subject",
    description = "Destroys every data key of the subject, so each personal field sealed for \
        it reads as `[forgotten]` from now on, on every path and for every caller (other \
        processes stop revealing within 2 s, the time they trust a key they read). The events \
        themselves are not changed: the hash chain still verifies. The erasure is recorded as \
        a `subjects.subject_forgotten` event naming the subject by its keyed reference, the \
        keys, the caller and the reason; no personal data. Forgetting again destroys nothing \
        and is recorded again. Needs `personal:forget`.",
    params(("subject" = String, Path, description = "The subject's id, as the events name it (`/customer` of a ticket, …)")),
    request_body(content = Option<ForgetRequest>, description = "Optional: `{\"reason\": \"…\"}`"),
    responses(
        (status = 200, description = "Forgotten", body = Forgotten),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request` (a subject or reason of the wrong length)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn forget(
    req: HttpRequest,
    identity: Identity,
    subject: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_personal(Action::ForgetSubjects)?;
    let subject = subject_of(&subject)?;
    let request: ForgetRequest =
        super::body::read_optional_json(&req, payload, &state.limits).await?;
    super::text::check_reason(request.reason.as_deref())?;
    let done = state
        .privacy
        .forget(
            &identity.tenant,
            &subject,
            &identity.subject,
            request.reason,
        )
        .await?;
    tracing::info!(tenant = %identity.tenant, subject_ref = %done.subject_ref, keys = done.keys_destroyed.len(), by = %identity.subject, "Subject forgotten.");
    Ok(HttpResponse::Ok().json(Forgotten {
        subject_ref: done.subject_ref,
        keys_destroyed: done
            .keys_destroyed
            .iter()
            .map(ToString::to_string)
            .collect(),
        forgotten_at: done.forgotten_at,
        position: done.position.get(),
    }))
}

/// One data key of a subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectKeyView {
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    /// When it was destroyed; absent while it lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_at: Option<DateTime<Utc>>,
}

/// Everything Herald holds about a subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectEvents {
    pub subject: String,
    pub subject_ref: String,
    pub keys: Vec<SubjectKeyView>,
    /// True when every key of the subject is destroyed.
    pub forgotten: bool,
    /// Every event with a value sealed for the subject, in log order, the
    /// values revealed (`[forgotten]` once destroyed).
    #[schema(value_type = Vec<super::openapi::EventEnvelope>)]
    pub events: Vec<Value>,
}

/// `GET /v1/subjects/{subject}/events`
#[utoipa::path(
    get,
    path = "/v1/subjects/{subject}/events",
    tag = "personal data",
    operation_id = "subject_events",
    summary = "Everything held about a subject",
    description = "For a data-subject access request: the subject's data keys and every event \
        of the tenant with a personal field sealed for the subject, in log order, with the \
        values revealed. Reads the tenant's whole log. Needs `personal:read`.",
    params(("subject" = String, Path, description = "The subject's id")),
    responses(
        (status = 200, description = "The subject's record", body = SubjectEvents),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request` (a subject of the wrong length)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn subject_events(
    req: HttpRequest,
    identity: Identity,
    subject: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_personal(Action::ReadPersonal)?;
    let subject = subject_of(&subject)?;
    let record = state
        .privacy
        .subject_record(&identity.tenant, &subject)
        .await?;
    let forgotten = !record.keys.is_empty() && record.keys.iter().all(|k| k.wrapped.is_none());
    let events = record
        .events
        .iter()
        .map(|e| serde_json::to_value(e).expect("an envelope serializes"))
        .collect();
    Ok(HttpResponse::Ok().json(SubjectEvents {
        subject,
        subject_ref: record.subject_ref,
        keys: record
            .keys
            .iter()
            .map(|k| SubjectKeyView {
                key_id: k.key_id.to_string(),
                created_at: k.created_at,
                forgotten_at: k.forgotten_at,
            })
            .collect(),
        forgotten,
        events,
    }))
}

/// `POST /v1/personal/reveal`
#[utoipa::path(
    post,
    path = "/v1/personal/reveal",
    tag = "personal data",
    operation_id = "reveal_personal",
    summary = "Decrypt sealed values",
    description = "For consumers outside Herald (broker messages carry personal fields \
        sealed, `hpd1.…`): answers the JSON sent with every sealed value of the caller's \
        tenant replaced by its value, `[forgotten]` once its subject is forgotten, \
        `[personal]` for a value of another tenant or one that does not open. Needs \
        `personal:decrypt`.",
    request_body(content = Object, description = "A JSON object, e.g. a broker message"),
    responses(
        (status = 200, description = "The document, revealed", body = Object),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request` (not a JSON object)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn reveal(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    identity.require_personal(Action::DecryptPersonal)?;
    let mut document: Value = read_json(&req, payload, &state.limits).await?;
    if !document.is_object() {
        return Err(Problem::new(
            ProblemKind::InvalidRequest,
            "send a JSON object (a broker message, an event, or any object holding sealed values)",
        ));
    }
    state
        .privacy
        .reveal_value(&identity.tenant, &mut document, Access::Plaintext)
        .await?;
    Ok(HttpResponse::Ok().json(document))
}

/// Reveals the frames of one subscriber's event stream (websocket, server-
/// sent events) as [`reveal_personal`] does answers.
#[derive(Clone, Debug)]
pub struct Revealer {
    privacy: std::sync::Arc<herald_privacy::Privacy>,
    tenant: TenantId,
    access: Access,
}

impl Revealer {
    pub fn new(state: &AppState, identity: &Identity) -> Self {
        Self {
            privacy: std::sync::Arc::clone(&state.privacy),
            tenant: identity.tenant.clone(),
            access: identity.personal_access(),
        }
    }

    /// The frame as this subscriber may see it (`None`: unchanged). On an
    /// error the frame is not sent at all: the caller ends the stream, and
    /// the client resumes from its cursor.
    pub async fn frame(&self, text: &str) -> Result<Option<String>, PrivacyError> {
        self.privacy
            .reveal_json(&self.tenant, text, self.access)
            .await
    }
}
