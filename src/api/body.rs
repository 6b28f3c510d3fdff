//! Reading JSON request bodies with the errors a producer can act on: no
//! JSON media type (415, a missing `Content-Type` included), too large (413,
//! checked against Content-Length first and while streaming), too slow (408:
//! the whole body must arrive within the body timeout, so a client that
//! stops sending cannot hold its connection), not UTF-8 (400), not JSON
//! (400, with line and column), or JSON of the wrong shape (422). A body left
//! unread closes its connection once answered ([`UnreadBody`]).

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::{ApiResult, Problem, ProblemKind};
use super::Limits;

fn too_large(limit: usize) -> Problem {
    Problem::new(
        ProblemKind::BodyTooLarge,
        format!("the body is larger than the limit of {limit} bytes"),
    )
    .with("limit_bytes", limit)
}

fn too_slow(timeout: std::time::Duration) -> Problem {
    Problem::new(
        ProblemKind::RequestTimeout,
        format!(
            "the body did not arrive within {} ms; send the whole body at once",
            timeout.as_millis()
        ),
    )
    .with("timeout_ms", timeout.as_millis() as u64)
}

/// Refuses a request whose `Content-Type` is absent or not JSON
/// (`application/json` or `application/<anything>+json`).
pub fn require_json(req: &HttpRequest) -> ApiResult<()> {
    let Some(content_type) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            "the request has no Content-Type; send application/json",
        ));
    };
    let media = content_type
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = media == "application/json"
        || media
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if !json {
        return Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            format!("Content-Type is {media:?}; send application/json"),
        ));
    }
    Ok(())
}

/// A JSON body a route takes optionally: a request without one (no
/// length or a zero length, and no chunked encoding) reads as the default.
pub async fn read_optional_json<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &Limits,
) -> ApiResult<T> {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body {
        read_json(req, payload, limits).await
    } else {
        Ok(T::default())
    }
}

/// Reads and decodes a JSON body of at most `limits.max_body_bytes` bytes,
/// all of it within `limits.body_timeout`.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: &Limits,
) -> ApiResult<T> {
    require_json(req)?;
    let limit = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, payload.next())
            .await
            .map_err(|_| too_slow(limits.body_timeout))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            Problem::new(
                ProblemKind::InvalidRequest,
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    decode(&body)
}

/// Decodes a complete body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(Problem::new(
            ProblemKind::InvalidUtf8,
            format!("the body is not valid UTF-8: {e}"),
        )
        .with("byte_offset", e.valid_up_to()));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let kind = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ProblemKind::InvalidJson,
            Category::Data => ProblemKind::InvalidRequest,
        };
        Problem::new(kind, e.to_string())
            .with("line", e.line())
            .with("column", e.column())
    })
}

/// The body of a connection's current request, held for as long as the
/// connection lives (one per connection, inserted when it opens).
///
/// actix-http closes a connection whose request body was not read to the
/// end when it answers, unless the handler dropped the body and it is
/// chunked: then it keeps reading (discarding) the rest before the next
/// request, for as long as the client sends, with no time limit, so a client
/// that stops sending mid-body would hold the connection forever. Holding
/// the body here means no handler ever drops it: an answer given before the
/// body ended (408, 413, 415, or a route that reads no body) closes the
/// connection, chunked or not.
#[derive(Default)]
pub struct UnreadBody(RefCell<Option<Rc<RefCell<Payload>>>>);

impl std::fmt::Debug for UnreadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadBody")
            .field("held", &self.0.borrow().is_some())
            .finish()
    }
}

/// Takes each request's body into its connection's [`UnreadBody`] and gives
/// the handler a stream reading from it.
pub async fn hold_request_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return next.call(req).await;
    }
    let Some(held) = req.conn_data::<UnreadBody>() else {
        req.set_payload(payload);
        return next.call(req).await;
    };
    let shared = Rc::new(RefCell::new(payload));
    // The previous request's body ended, or its connection would have
    // closed: only this one needs holding.
    held.0.replace(Some(Rc::clone(&shared)));
    req.set_payload(Payload::Stream {
        payload: Box::pin(futures::stream::poll_fn(move |cx| {
            shared.borrow_mut().poll_next_unpin(cx)
        })),
    });
    next.call(req).await
}
