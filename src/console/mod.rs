//! The browser console: its pages (HTML, CSS and JavaScript from
//! `src/console/assets`, embedded in the binary), sign-in into a session
//! cookie ([`crate::auth::session`]) and the one answer made for it alone,
//! the overview. Everything else the console shows comes from the public
//! API, called with the session cookie and, for changes, its CSRF token.
//!
//! `/` redirects to `/console`; `/console` is the page, `/console/assets/…`
//! its files. They carry a strict Content-Security-Policy: the console runs
//! only its own scripts and talks only to this origin.

pub mod overview;
pub mod recent_errors;

use std::path::PathBuf;
use std::sync::OnceLock;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::api::body::read_json;
use crate::api::problem::{ApiResult, Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::session::{self, COOKIE};
use crate::auth::Identity;

/// The console's files, embedded at build time.
#[derive(RustEmbed)]
#[folder = "src/console/assets/"]
struct Assets;

/// Serves the console's files from this directory instead of the embedded
/// ones (for working on the console without rebuilding).
pub const ASSETS_DIR_ENV: &str = "HERALD_CONSOLE_DIR";

/// What every console file is allowed to load and run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The endpoints' OpenAPI paths.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(sign_in, current_session, sign_out, overview::overview),
    components(schemas(SignIn, SessionView, overview::Overview))
)]
pub struct Api;

/// The console's API routes (documented, under `/v1/console`).
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/console/session")
            .route(web::post().to(sign_in))
            .route(web::get().to(current_session))
            .route(web::delete().to(sign_out))
            .default_service(web::to(crate::api::method_not_allowed)),
    )
    .service(
        web::resource("/v1/console/overview")
            .route(web::get().to(overview::overview))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// The console's pages: `/`, `/console` and its files (not part of the API).
pub fn page_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(redirect_to_console)))
        .service(web::resource("/console").route(web::get().to(index)))
        .service(web::resource("/console/").route(web::get().to(index)))
        .service(web::resource("/console/assets/{file:.+}").route(web::get().to(asset)));
}

async fn redirect_to_console() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/console"))
        .finish()
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve_file(&req, "index.html")
}

async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve_file(&req, &file)
}

/// One file, with an ETag so a browser revalidates instead of downloading
/// it again, and the console's security headers.
fn serve_file(req: &HttpRequest, name: &str) -> HttpResponse {
    if name.split('/').any(|part| part.is_empty() || part == "..") {
        return not_found(name);
    }
    let Some(bytes) = file_bytes(name) else {
        return not_found(name);
    };
    let etag = format!("\"{}\"", &hex::encode(sha2_digest(&bytes))[..32]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut answer = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return answer.finish();
    }
    answer
        .content_type(content_type(name))
        .body(bytes.into_owned())
}

fn not_found(name: &str) -> HttpResponse {
    use actix_web::ResponseError;
    Problem::new(
        ProblemKind::NotFound,
        format!("the console has no file {name:?}"),
    )
    .error_response()
}

fn file_bytes(name: &str) -> Option<std::borrow::Cow<'static, [u8]>> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| std::env::var_os(ASSETS_DIR_ENV).map(PathBuf::from));
    match dir {
        Some(dir) => std::fs::read(dir.join(name)).ok().map(Into::into),
        None => Assets::get(name).map(|file| file.data),
    }
}

fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    match mime.type_() {
        mime_guess::mime::TEXT | mime_guess::mime::APPLICATION
            if mime.subtype() != mime_guess::mime::OCTET_STREAM =>
        {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    }
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The names of the embedded files (for tests).
pub fn embedded_files() -> Vec<String> {
    Assets::iter().map(|name| name.into_owned()).collect()
}

/// A sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API key (`hk_…`) or a JWT.
    pub credential: String,
}

/// Who the console acts as.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub tenant: String,
    /// `key:<id>`, `jwt:<subject>` or `anonymous`.
    pub subject: String,
    pub scopes: Vec<String>,
    /// True with the `admin` scope on every type.
    pub admin: bool,
    /// True when nobody signed in and the server serves anonymously
    /// (loopback, no key exists).
    pub anonymous: bool,
    /// Echo this in `X-CSRF-Token` on every request that changes
    /// something; `null` when anonymous.
    pub csrf: Option<String>,
}

fn session_view(identity: &Identity, csrf: Option<String>) -> SessionView {
    SessionView {
        tenant: identity.tenant.to_string(),
        subject: identity.subject.clone(),
        scopes: identity.scopes.iter().map(ToString::to_string).collect(),
        admin: identity.is_admin(),
        anonymous: identity.subject == "anonymous",
        csrf,
    }
}

fn session_cookie(value: String, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(max_age)
        .finish()
}

/// `POST /v1/console/session`
#[utoipa::path(
    post,
    path = "/v1/console/session",
    tag = "console",
    operation_id = "console_sign_in",
    summary = "Sign the console in",
    description = "Checks the credential (an API key or a JWT) as a bearer token would be \
        checked, then starts a session: the answer sets the `herald_session` cookie (HttpOnly, \
        SameSite=Strict, path `/`) and carries the session's CSRF token, to be sent in \
        `X-CSRF-Token` with every request that changes something. The session keeps the \
        credential in this process's memory and checks it again at every request: revoking the \
        key ends the session at once. A session ends after 8 hours unused or 24 hours in all, \
        at sign-out, or when the process stops.",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session", body = SessionView),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`: not `{\"credential\": \"...\"}`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
)]
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let body: SignIn = read_json(&req, payload, &state.limits).await?;
    let credential = body.credential.trim().to_owned();
    if credential.is_empty() {
        return Err(Problem::new(
            ProblemKind::Unauthorized,
            "give an API key or a token as `credential`",
        )
        .challenge());
    }
    let identity = state.auth.authenticate(Some(&credential)).await?;
    state.auth.limit_problem(&identity)?;
    // A browser that signs in again drops its former session.
    if let Some(old) = req.cookie(COOKIE) {
        state.auth.sessions.end(old.value());
    }
    let (id, session) = state.auth.sessions.start(credential);
    tracing::info!(subject = %identity.subject, tenant = %identity.tenant, "Console signed in.");
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(
            id,
            CookieDuration::seconds(session::MAX_AGE.as_secs() as i64),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(session_view(&identity, Some(session.csrf))))
}

/// `GET /v1/console/session`
#[utoipa::path(
    get,
    path = "/v1/console/session",
    tag = "console",
    operation_id = "console_session",
    summary = "The console's session",
    description = "Who the session cookie acts as, with its CSRF token. Without a session, on a \
        server that serves anonymously (loopback, no key exists), the anonymous identity; else \
        401, naming why (no session, ended, or its key revoked).",
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security((), ("bearer" = [])),
)]
pub async fn current_session(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    use actix_web::FromRequest;
    let bare = req.cookie(COOKIE).is_none() && crate::auth::bearer(&req).is_none();
    let identity = match Identity::extract(&req).await {
        Ok(identity) => identity,
        // A browser with no session is told what to do about it.
        Err(problem) if bare && problem.kind == ProblemKind::Unauthorized => {
            return Err(Problem::new(
                ProblemKind::Unauthorized,
                "no console session: sign in with an API key or a token",
            )
            .challenge())
        }
        Err(problem) => return Err(problem),
    };
    let csrf = req
        .cookie(COOKIE)
        .and_then(|c| state.auth.sessions.get(c.value()))
        .map(|s| s.csrf);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(session_view(&identity, csrf)))
}

/// `DELETE /v1/console/session`
#[utoipa::path(
    delete,
    path = "/v1/console/session",
    tag = "console",
    operation_id = "console_sign_out",
    summary = "Sign the console out",
    description = "Ends the session and clears its cookie. Needs the session's `X-CSRF-Token`.",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`csrf-token-invalid`: the session's token is missing from `X-CSRF-Token`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security((), ("bearer" = [])),
)]
pub async fn sign_out(
    _identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(cookie) = req.cookie(COOKIE) {
        state.auth.sessions.end(cookie.value());
    }
    HttpResponse::NoContent()
        .cookie(session_cookie(String::new(), CookieDuration::ZERO))
        .finish()
}
