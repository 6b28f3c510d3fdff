//! `GET /v1/events/stream`: server-sent events for clients that cannot use
//! websockets. Same filters as a websocket subscription (repeated `type`,
//! `domain`, `stream` query parameters), credentials in the `Authorization`
//! header or, for browsers (whose `EventSource` cannot set headers), in the
//! `access_token` query parameter — on this route only — and resumption
//! with `Last-Event-ID` (each event's id is its cursor), which wins over
//! `from` so that a browser's automatic reconnect, which repeats the URL it
//! started with, continues after the last event rather than at `from`. A client too slow to keep up is disconnected; it reconnects with
//! its last event id and continues exactly after it. When the process shuts
//! down every stream ends at once with a `closing` event whose id is the
//! cursor to resume from, so that a reconnecting client misses nothing even
//! if it had received no event yet.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use herald_events::Position;
use tokio::sync::mpsc;

use super::hub::{Outbound, Sink};
use super::protocol::{close, Cursor, Filter, FilterError, FilterSpec};
use super::session::{HEARTBEAT, QUEUE};
use crate::api::problem::{ApiResult, Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::Identity;

/// The route, whose query alone may carry credentials.
const ROUTE: &str = "/v1/events/stream";
/// The query parameter carrying credentials on [`ROUTE`].
const ACCESS_TOKEN: &str = "access_token";

/// The credentials of an SSE request's `access_token` query parameter, on
/// the SSE route only: every other route takes them from the
/// `Authorization` header alone.
pub(crate) fn query_token(req: &HttpRequest) -> Option<String> {
    if req.match_pattern().as_deref() != Some(ROUTE) {
        return None;
    }
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == ACCESS_TOKEN)
        .map(|(_, value)| value.into_owned())
}

/// Splits an `event` frame of the hub into its cursor and event JSON.
fn sse_event(frame: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let kind = value.get("type")?.as_str()?;
    match kind {
        "event" => Some(format!(
            "id: {}\nevent: event\ndata: {}\n\n",
            value.get("cursor")?.as_str()?,
            value.get("event")?
        )),
        "live" => Some(format!("event: live\ndata: {value}\n\n")),
        _ => None,
    }
}

/// The last thing a stream sends when the process shuts down. Its `id`
/// (which an `EventSource` sends back as `Last-Event-ID`) is the cursor to
/// resume from: the last event sent, or where the stream started.
fn closing_event(epoch: &str, delivered: Option<Position>) -> String {
    let cursor = delivered.map(|position| {
        Cursor {
            epoch: epoch.to_owned(),
            position,
        }
        .encode()
    });
    let data = serde_json::json!({
        "type": "closing",
        "code": close::GOING_AWAY,
        "reason": "Herald is shutting down: reconnect with Last-Event-ID",
        "cursor": cursor,
    });
    match cursor {
        Some(cursor) => format!("id: {cursor}\nevent: closing\ndata: {data}\n\n"),
        None => format!("event: closing\ndata: {data}\n\n"),
    }
}

/// `GET /v1/events/stream?type=…&domain=…&stream=…&from=start|now|<cursor>`
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "subscriptions",
    operation_id = "stream_events",
    summary = "Server-sent events",
    description = "The caller's tenant's events as server-sent events, for clients that cannot use \
        the websocket: the same filters as a websocket subscription, history from `from` then \
        live with no gap. Each `event: event` carries an event envelope as `data:` and its cursor \
        as `id:`; `event: live` marks the end of history; comments are heartbeats. Reconnecting \
        with `Last-Event-ID` resumes right after that event; a client too slow to keep up is \
        disconnected and resumes the same way. When the server shuts down the stream ends at \
        once with an `event: closing` whose `id:` is the cursor to resume from. Cursors and \
        filters: \
        [docs/websocket.md](docs/websocket.md).",
    params(
        ("type" = Option<Vec<String>>, Query, style = Form, explode, description = "Event-type pattern with `*`; repeatable, OR-ed"),
        ("domain" = Option<Vec<crate::api::openapi::DomainName>>, Query, style = Form, explode, description = "Domain; repeatable, OR-ed"),
        ("stream" = Option<Vec<crate::api::openapi::StreamName>>, Query, style = Form, explode, description = "Stream, `domain/id`; repeatable, OR-ed"),
        ("from" = Option<String>, Query, description = "`start`, `now` (the default) or a cursor"),
        ("tenant" = Option<String>, Query, description = "Optional; any tenant but the caller's own is refused (403)"),
        ("access_token" = Option<String>, Query, description = "The credentials (an API key or a JWT, best a short-lived one) for clients that cannot send `Authorization`, such as a browser's `EventSource`; accepted on this route only, and refused (400) together with an `Authorization` header"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last cursor received; wins over `from`"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`", body = String, content_type = "text/event-stream"),
        (status = 400, description = "`invalid-query`: an unknown parameter, a malformed filter or cursor, a cursor of another store (`resync_required`), or credentials both in the header and in `access_token`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant, or types outside the caller's `subscribe` scopes", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn stream(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let mut spec = FilterSpec::default();
    let mut from: Option<String> = None;
    let mut tenant: Option<String> = None;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "type" => spec.types.push(value.into_owned()),
            "domain" => spec.domains.push(value.into_owned()),
            "stream" => spec.streams.push(value.into_owned()),
            "from" => from = Some(value.into_owned()),
            "tenant" => tenant = Some(value.into_owned()),
            // Read (and authenticated) by the `Identity` extractor.
            ACCESS_TOKEN => {
                if crate::auth::bearer(&req).is_some() {
                    return Err(Problem::new(
                        ProblemKind::InvalidQuery,
                        "credentials twice: send them in the Authorization header or as \
                         access_token, not both",
                    )
                    .with("parameter", ACCESS_TOKEN));
                }
            }
            other => {
                return Err(Problem::new(
                    ProblemKind::InvalidQuery,
                    format!(
                        "unknown parameter {other:?}; use type, domain, stream, from, tenant or \
                         access_token"
                    ),
                ))
            }
        }
    }
    identity.require_tenant(tenant.as_deref())?;
    let filter = Filter::new(spec, &identity).map_err(|e| match e {
        FilterError::Forbidden(why) => Problem::new(ProblemKind::Forbidden, why),
        FilterError::Invalid(why) => Problem::new(ProblemKind::InvalidQuery, why),
    })?;
    // Last-Event-ID (a reconnecting EventSource) wins over `from`.
    let resume = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(from);
    let after = match resume.as_deref() {
        None | Some("now") => None,
        Some("start") => Some(Position::START),
        Some(text) => {
            let cursor =
                Cursor::decode(text).map_err(|why| Problem::new(ProblemKind::InvalidQuery, why))?;
            if cursor.epoch != state.hub.epoch() {
                return Err(Problem::new(
                    ProblemKind::InvalidQuery,
                    "the cursor is from another store; start over with from=start",
                )
                .with("resync_required", true));
            }
            Some(cursor.position)
        }
    };

    if state.hub.is_shutting_down() {
        return Err(super::session::shutting_down());
    }
    let (sink, mut rx) = Sink::queue(QUEUE);
    let slow = Arc::clone(&sink.slow);
    let key = state.hub.subscribe("sse", filter, after, sink);
    let hub = state.hub.clone();
    let mut shutdown = hub.shutdown_signal();
    let epoch = hub.epoch().to_owned();
    let reveal = crate::api::personal::Revealer::new(&state, &identity);
    let body = async_stream(move |yielder| async move {
        let _connected = crate::telemetry::Subscriber::connected("sse");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // The position of the last event sent (or where the stream started).
        let mut delivered = None;
        loop {
            tokio::select! {
                biased;
                _ = slow.wait() => {
                    let _ = yielder.send(": slow consumer; reconnect with Last-Event-ID\n\n".to_owned()).await;
                    break;
                }
                _ = shutdown.wait() => {
                    let _ = yielder.send(closing_event(&epoch, delivered)).await;
                    break;
                }
                // The client went away (the body was dropped): stop now
                // rather than at the next write.
                _ = yielder.closed() => break,
                out = rx.recv() => match out {
                    Some(Outbound::Started { position, .. }) => delivered = Some(position),
                    Some(Outbound::Events { frames, .. }) => {
                        let mut gone = false;
                        for (position, text) in frames {
                            let text = match reveal.frame(&text).await {
                                Ok(Some(revealed)) => revealed,
                                Ok(None) => text.to_string(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "Personal fields cannot be revealed; ending the stream.");
                                    gone = true;
                                    break;
                                }
                            };
                            if let Some(chunk) = sse_event(&text) {
                                if yielder.send(chunk).await.is_err() {
                                    gone = true;
                                    break;
                                }
                                delivered = Some(position);
                            }
                        }
                        if gone {
                            break;
                        }
                    }
                    Some(Outbound::Frame(text)) => {
                        if let Some(chunk) = sse_event(&text) {
                            if yielder.send(chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if yielder.send(": heartbeat\n\n".to_owned()).await.is_err() {
                        break;
                    }
                }
            }
        }
        hub.unsubscribe(key);
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// A body stream fed by a task: the task stops when the client goes away.
/// A slow reader blocks the task's sends, so the hub's bounded queue fills
/// and flags the subscription slow: memory stays bounded.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures::Stream<Item = Result<web::Bytes, actix_web::Error>>
where
    F: FnOnce(mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, rx) = mpsc::channel::<String>(16);
    actix_web::rt::spawn(produce(tx));
    tokio_stream_from(rx).map(|chunk| Ok(web::Bytes::from(chunk)))
}

fn tokio_stream_from(mut rx: mpsc::Receiver<String>) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
