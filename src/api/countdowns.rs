//! Countdown images over HTTP. `GET /v1/countdowns/{image}.gif` is public
//! (an email cannot send credentials): the image's name carries the
//! countdown's tenant and id and a 128-bit secret whose SHA-256 the
//! countdown's events hold (`countdown_image_url_issued`), so a name cannot
//! be guessed, is revoked by issuing another or by
//! `DELETE /v1/countdowns/{id}/image_url`, and no export of the log holds a
//! working one. `POST /v1/countdowns/{id}/image_url` issues it (shown once).
//!
//! Each fetch before the deadline records a view through the countdown's
//! actor (`record_view`, with the kind of mail client read from the
//! `User-Agent` and nothing else about the reader); the image is the time
//! left as an animated GIF, rendered once per countdown per second and
//! shared by every request in that second ([`herald_countdown::ImageCache`]).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use herald_actors::timers::state::{Timer, TimerKind, TimerStatus};
use herald_actors::CommandMeta;
use herald_countdown::{ImageCache, Style};
use herald_events::timers::{
    CountdownFont, CountdownStyle, CountdownUnit, ViewerClient, DOMAIN as TIMERS,
};
use herald_events::TenantId;
use rand::RngCore as _;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{OpenApi, ToSchema};

use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::{Action, Identity};

/// Bytes of secret in an image URL.
const SECRET_BYTES: usize = 16;
/// The secret's length in an image name (unpadded base64url).
const SECRET_CHARS: usize = 22;
/// How long caches may keep an expired countdown's image: it no longer
/// changes, except by a restyle.
const EXPIRED_MAX_AGE_SECS: u32 = 300;

/// Counts the images answered, by `answer`.
pub const IMAGES_TOTAL: &str = "herald_countdown_images_total";
/// Counts fetches whose view could not be recorded (the image was served).
pub const VIEWS_UNRECORDED_TOTAL: &str = "herald_countdown_views_unrecorded_total";
/// Counts countdown GIFs rendered (once per countdown, style and second).
pub const RENDERS_TOTAL: &str = "herald_countdown_renders_total";

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(image, issue_image_url, revoke_image_url),
    components(schemas(ImageUrl, ImageUrlRevoked))
)]
pub struct Api;

/// Registers this module's routes (before the generic domain routes, which
/// would otherwise take `/v1/countdowns/{id}/image_url` for a command).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/countdowns/{image}.gif")
            .route(web::get().to(image))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/countdowns/{id}/image_url")
            .route(web::post().to(issue_image_url))
            .route(web::delete().to(revoke_image_url))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// A new image URL of a countdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageUrl {
    /// The countdown's id (`timers/{id}`).
    pub countdown_id: String,
    /// The image's absolute URL, from this request's scheme and host: put
    /// it in the email's `<img src>`. Shown once; only its SHA-256 is kept.
    pub image_url: String,
    /// The same URL's path.
    pub image_path: String,
    /// The countdown stream's version after the URL was issued.
    pub version: u64,
}

/// The answer to revoking a countdown's image URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageUrlRevoked {
    pub countdown_id: String,
    /// False when there was no URL to revoke.
    pub revoked: bool,
    pub version: u64,
}

/// `POST /v1/countdowns/{id}/image_url`
#[utoipa::path(
    post,
    path = "/v1/countdowns/{id}/image_url",
    tag = "countdowns",
    operation_id = "issue_countdown_image_url",
    summary = "Issue a countdown's image URL",
    description = "Issues a new public URL of the countdown's image (`GET \
        /v1/countdowns/{image}.gif`) and revokes the previous one. The URL carries a 128-bit \
        secret; only its SHA-256 is recorded (`timers.countdown_image_url_issued`), so the \
        URL is shown in this answer only. Needs a `publish` scope covering `timers`.",
    params(
        ("id" = String, Path, description = "The countdown's id (`timers/{id}`)"),
    ),
    responses(
        (status = 201, description = "The new URL", body = ImageUrl),
        (status = 400, description = "`invalid-stream-id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `publish` scope covering `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`aggregate-not-found`: no such countdown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`command-refused`: `timers/{id}` is a timer, not a countdown; or `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, description = "`busy`, `store-unavailable` or `shutting-down` (`Retry-After` given)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn issue_image_url(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    identity.require_domain(Action::Publish, TIMERS)?;
    let group = timers(&state)?;
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let executed = super::commands::place(
        &state,
        &**group,
        &identity.tenant,
        &id,
        "issue_image_url",
        json!({ "key_sha256": key_sha256(&secret) }),
        meta(format!("http:{}", identity.subject)),
    )
    .await?;
    let image_path = format!(
        "/v1/countdowns/{}.{id}.{secret}.gif",
        identity.tenant.as_str()
    );
    let info = req.connection_info();
    let answer = ImageUrl {
        countdown_id: id,
        image_url: format!("{}://{}{image_path}", info.scheme(), info.host()),
        image_path,
        version: executed.stream_version,
    };
    Ok(HttpResponse::Created()
        // The answer holds a secret: no cache keeps it.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

/// `DELETE /v1/countdowns/{id}/image_url`
#[utoipa::path(
    delete,
    path = "/v1/countdowns/{id}/image_url",
    tag = "countdowns",
    operation_id = "revoke_countdown_image_url",
    summary = "Revoke a countdown's image URL",
    description = "Revokes the countdown's image URL: from now on it answers 404 and counts no \
        view. Revoking when there is none changes nothing (`revoked: false`). Needs a \
        `publish` scope covering `timers`.",
    params(
        ("id" = String, Path, description = "The countdown's id (`timers/{id}`)"),
    ),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke", body = ImageUrlRevoked),
        (status = 400, description = "`invalid-stream-id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `publish` scope covering `timers`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`aggregate-not-found`: no such countdown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`command-refused`: `timers/{id}` is a timer, not a countdown; or `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, description = "`busy`, `store-unavailable` or `shutting-down` (`Retry-After` given)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_image_url(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    identity.require_domain(Action::Publish, TIMERS)?;
    let group = timers(&state)?;
    let executed = super::commands::place(
        &state,
        &**group,
        &identity.tenant,
        &id,
        "revoke_image_url",
        json!({}),
        meta(format!("http:{}", identity.subject)),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ImageUrlRevoked {
        countdown_id: id,
        revoked: !executed.events.is_empty(),
        version: executed.stream_version,
    }))
}

/// `GET /v1/countdowns/{image}.gif`
#[utoipa::path(
    get,
    path = "/v1/countdowns/{image}.gif",
    tag = "countdowns",
    operation_id = "countdown_image",
    summary = "A countdown's image (public)",
    description = "The time left to the countdown's deadline as an animated GIF in the \
        countdown's style: one frame per second for the next `countdown_frames` seconds (60 by \
        default), each shown 1 s, playing once (it does not loop back in time) and stopping at \
        the expired frame if the deadline comes first. Needs no credentials: the name is the \
        secret (`POST /v1/countdowns/{id}/image_url` issues it). Each fetch before the deadline \
        records a view (`timers.countdown_viewed`, with the kind of mail client taken from \
        `User-Agent`, nothing personal); if the view cannot be recorded (the store is down) the \
        image is still served and `herald_countdown_views_unrecorded_total` counts it. After \
        the deadline the image is the style's expired text (one frame) and no view is counted. \
        A running countdown's image is `Cache-Control: no-cache, max-age=0, must-revalidate` \
        (each open reaches Herald; an `If-None-Match` within the same second answers 304 and \
        still counts the view); an expired one may be cached 5 minutes. An unknown countdown, \
        a revoked or wrong secret, or a malformed name: 404 `not-found`, the same for all.",
    params(
        ("image" = String, Path, description = "`{tenant}.{countdown id}.{secret}` as issued", pattern = "^[A-Za-z0-9_-]{1,64}\\.[A-Za-z0-9._:@~-]{1,128}\\.[A-Za-z0-9_-]{22}$"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer"),
    ),
    responses(
        (
            status = 200,
            description = "The image",
            content_type = "image/gif",
            headers(
                ("ETag" = String, description = "Names this rendering (countdown, style, second)"),
                ("Cache-Control" = String, description = "`no-cache, max-age=0, must-revalidate` while running; `public, max-age=300` once expired"),
            ),
        ),
        (status = 304, description = "Not modified: the `If-None-Match` names this second's image"),
        (status = 400, description = "`invalid-request`: the path holds a character no name can (U+0000)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no countdown image at this name", body = Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, description = "`store-unavailable` or `shutting-down`: the countdown could not be read (`Retry-After` given)", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn image(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let Some((tenant, id, secret)) = parse_image_name(&path) else {
        return Err(unknown_image());
    };
    let group = timers(&state)?;
    let key = key_sha256(secret);
    let timer = match group.state_json(&tenant, id).await {
        Ok(Some((state, _))) => serde_json::from_value::<Timer>(state).map_err(|e| {
            tracing::error!(error = %e, "A countdown's state could not be read.");
            Problem::new(ProblemKind::Internal, "the countdown could not be read")
        })?,
        Ok(None) | Err(herald_actors::CommandError::InvalidStream { .. }) => {
            return Err(unknown_image())
        }
        Err(e) => return Err(super::commands::problem(e)),
    };
    let (Some(TimerKind::Countdown), Some(countdown), Some(style)) =
        (timer.kind(), &timer.countdown, timer.current_style())
    else {
        return Err(unknown_image());
    };
    if timer.image_key_sha256.as_deref() != Some(key.as_str()) {
        return Err(unknown_image());
    }
    let now = Utc::now();
    let deadline = countdown.deadline;
    let cache_key = format!("{}/{id}@{}", tenant.as_str(), timer.style_revision);
    let style = Arc::new(render_style(style));
    let running = timer.status != Some(TimerStatus::Expired) && now < deadline;
    let rendered = state
        .countdown_images
        .image(&cache_key, &style, deadline, now);
    let shown = if running {
        let client = client_of(&req);
        let view = record_view(&state, &**group, &tenant, id, client, key);
        let (image, viewed) = tokio::join!(rendered, view);
        match viewed {
            ViewOutcome::Recorded | ViewOutcome::Expired => image,
            ViewOutcome::Revoked => return Err(unknown_image()),
            ViewOutcome::Failed => {
                metrics::counter!(VIEWS_UNRECORDED_TOTAL).increment(1);
                image
            }
        }
    } else {
        rendered.await
    };
    metrics::counter!(RENDERS_TOTAL).absolute(state.countdown_images.stats().renders);
    Ok(answer(&req, &shown))
}

/// How recording a fetch's view ended.
enum ViewOutcome {
    Recorded,
    /// The deadline passed meanwhile: the aggregate counts no more views.
    Expired,
    /// The URL was revoked meanwhile.
    Revoked,
    Failed,
}

async fn record_view(
    state: &AppState,
    group: &dyn herald_actors::CommandTarget,
    tenant: &TenantId,
    id: &str,
    client: ViewerClient,
    key: String,
) -> ViewOutcome {
    let body = json!({ "client": client, "key_sha256": key });
    let meta = meta("http:countdown-image".to_owned());
    match super::commands::place(state, group, tenant, id, "record_view", body, meta).await {
        Ok(_) => ViewOutcome::Recorded,
        Err(p) if p.kind == ProblemKind::CommandRefused => ViewOutcome::Expired,
        Err(p) if p.kind == ProblemKind::AggregateNotFound => ViewOutcome::Revoked,
        Err(p) => {
            tracing::warn!(detail = %p.detail, "A countdown view was not recorded; the image was served.");
            ViewOutcome::Failed
        }
    }
}

/// The image, or 304 when the client holds this very rendering.
fn answer(req: &HttpRequest, image: &herald_countdown::Image) -> HttpResponse {
    let answer = if image.expired { "expired" } else { "running" };
    let cache_control = if image.expired {
        format!("public, max-age={EXPIRED_MAX_AGE_SECS}")
    } else {
        "no-cache, max-age=0, must-revalidate".to_owned()
    };
    let held = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == image.etag || tag.trim() == "*")
        });
    if held {
        metrics::counter!(IMAGES_TOTAL, "answer" => "not_modified").increment(1);
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, image.etag.clone()))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish();
    }
    metrics::counter!(IMAGES_TOTAL, "answer" => answer).increment(1);
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header((header::ETAG, image.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache_control))
        // The cached bytes, shared: no copy per request.
        .body(web::Bytes::from_owner(Arc::clone(&image.gif)))
}

fn timers(state: &AppState) -> ApiResult<&Arc<dyn herald_actors::CommandTarget>> {
    state.domains.get(TIMERS).ok_or_else(|| {
        Problem::new(
            ProblemKind::NotFound,
            "this Herald runs no timers domain, so it has no countdowns",
        )
    })
}

/// A command of this module's, recorded as sent by `producer`.
fn meta(producer: String) -> CommandMeta {
    CommandMeta {
        correlation_id: None,
        causation_id: None,
        dedupe_key: None,
        producer: Some(producer),
        idempotency: None,
        decided_by_owner: false,
    }
}

/// The same answer for every name that shows no image, so a wrong secret
/// says nothing about whether the countdown exists.
fn unknown_image() -> Problem {
    Problem::new(ProblemKind::NotFound, "no countdown image at this name")
}

fn key_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `{tenant}.{id}.{secret}`: a tenant holds no `.` and a secret is 22
/// base64url characters, so an id may hold dots.
fn parse_image_name(name: &str) -> Option<(TenantId, &str, &str)> {
    let (tenant, rest) = name.split_once('.')?;
    let (id, secret) = rest.rsplit_once('.')?;
    if secret.len() != SECRET_CHARS
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || id.is_empty()
    {
        return None;
    }
    Some((TenantId::new(tenant).ok()?, id, secret))
}

/// The kind of client, from `User-Agent` only: a family name, never the
/// header itself (which can tell readers apart).
pub fn client_of(req: &HttpRequest) -> ViewerClient {
    let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    else {
        return ViewerClient::Unknown;
    };
    classify(agent)
}

/// A `User-Agent`'s client family.
pub fn classify(agent: &str) -> ViewerClient {
    let has = |s: &str| agent.contains(s);
    if has("GoogleImageProxy") {
        ViewerClient::GmailProxy
    } else if has("YahooMailProxy") {
        ViewerClient::YahooProxy
    } else if has("Thunderbird") {
        ViewerClient::Thunderbird
    } else if has("Outlook") || has("Microsoft Office") || has("ms-office") {
        ViewerClient::Outlook
    } else if has("Chrome/") || has("Firefox/") || has("Edg/") || has("Safari/") {
        ViewerClient::Browser
    } else if has("AppleWebKit") && (has("Macintosh") || has("iPhone") || has("iPad")) {
        // Apple Mail and its privacy proxy send WebKit without a browser's
        // product token.
        ViewerClient::AppleMail
    } else {
        ViewerClient::Other
    }
}

/// The renderer's style from a countdown's stored one (checked when it was
/// decided, so the colours parse).
fn render_style(style: &CountdownStyle) -> Style {
    let colour = |hex: &str| {
        let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
        herald_countdown::Rgb([(v >> 16) as u8, (v >> 8) as u8, v as u8])
    };
    Style {
        width: style.width,
        height: style.height,
        background: colour(&style.background),
        foreground: colour(&style.foreground),
        label_colour: colour(&style.label_colour),
        font: match style.font {
            CountdownFont::Sans => herald_countdown::Font::Sans,
            CountdownFont::SansBold => herald_countdown::Font::SansBold,
            CountdownFont::MonoBold => herald_countdown::Font::MonoBold,
        },
        units: herald_countdown::Units {
            days: style.units.contains(&CountdownUnit::Days),
            hours: style.units.contains(&CountdownUnit::Hours),
            minutes: style.units.contains(&CountdownUnit::Minutes),
            seconds: style.units.contains(&CountdownUnit::Seconds),
        },
        labels: style.labels.as_ref().map(|l| herald_countdown::Labels {
            days: l.days.clone(),
            hours: l.hours.clone(),
            minutes: l.minutes.clone(),
            seconds: l.seconds.clone(),
        }),
        expired_text: style.expired_text.clone(),
    }
}

/// The image cache Herald serves from, with `frames` frames per GIF.
pub fn image_cache(frames: u32) -> Arc<ImageCache> {
    Arc::new(ImageCache::new(frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_tenant_id_and_secret() {
        let secret = "A".repeat(SECRET_CHARS);
        let name = format!("acme.offer.2026.{secret}");
        let (tenant, id, s) = parse_image_name(&name).unwrap();
        assert_eq!(
            (tenant.as_str(), id, s),
            ("acme", "offer.2026", secret.as_str())
        );
        for bad in [
            format!("acme.{secret}"),
            format!("acme..{secret}"),
            format!("acme.offer.{}", "A".repeat(21)),
            format!("acme.offer.{}!", "A".repeat(21)),
            format!("ac/me.offer.{secret}"),
            "nothing".to_owned(),
        ] {
            assert!(parse_image_name(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn user_agents_become_client_families() {
        for (agent, client) in [
            ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", ViewerClient::GmailProxy),
            ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", ViewerClient::YahooProxy),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", ViewerClient::AppleMail),
            ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.5)", ViewerClient::Outlook),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3.1", ViewerClient::Thunderbird),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", ViewerClient::Browser),
            ("curl/8.5.0", ViewerClient::Other),
        ] {
            assert_eq!(classify(agent), client, "{agent}");
        }
    }
}
