//! Request ids and the request log. Every request gets an id — the caller's
//! `X-Request-Id` when it is sane (1 to 128 visible ASCII characters), a
//! fresh UUID v7 otherwise — sent back in the answer's `X-Request-Id` and in
//! every problem body (`request_id`), and carried by a tracing span into each
//! log line written while the request is handled, with the request's
//! `X-Correlation-Id` when it has one. A request refused or failed is logged
//! at `info` (4xx), `warn` (503: retryable, its cause is logged on its own)
//! or `error` (any other 5xx, a bug), so that an operator can find what a
//! client saw from the id the client quotes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use super::problem::Problem;

/// The header a request id comes in and goes back in.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The header a command's correlation id comes in (read here only to log it).
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
/// The longest request id taken from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request being handled, for the problem it may answer with.
#[derive(Debug)]
struct Current {
    id: Arc<str>,
    /// The problem answered, if any: its slug and detail, for the log line.
    problem: Mutex<Option<(&'static str, String)>>,
}

tokio::task_local! {
    static CURRENT: Arc<Current>;
}

/// Notes that `problem` answers the request being handled, and returns the
/// request's id for its body (`None` outside a request, e.g. in tests that
/// build the app without this middleware).
pub(crate) fn answering(problem: &Problem) -> Option<Arc<str>> {
    CURRENT
        .try_with(|current| {
            if let Ok(mut noted) = current.problem.lock() {
                *noted = Some((problem.kind.slug(), problem.detail.clone()));
            }
            Arc::clone(&current.id)
        })
        .ok()
}

/// The value when it is a sane id: 1 to 128 visible ASCII characters, so
/// that it is safe in a header, a log line and a JSON string alike.
fn sane(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let ok = (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    if ok {
        value.to_str().ok()
    } else {
        None
    }
}

/// Gives each request its id and span, answers the id, and logs the
/// request when it is refused or fails. The outermost middleware, so that
/// every other one runs inside the span.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id: Arc<str> = match req.headers().get(REQUEST_ID_HEADER).and_then(sane) {
        Some(id) => id.into(),
        None => uuid::Uuid::now_v7().to_string().into(),
    };
    let method = req.method().clone();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    // At ERROR level so that the span, and the ids it carries, stay on the
    // request's lines under every log filter that lets any of them through.
    let span = tracing::error_span!(
        "request",
        request_id = %id,
        correlation_id = tracing::field::Empty,
        %method,
        %route,
    );
    if let Some(correlation) = req.headers().get(CORRELATION_ID_HEADER).and_then(sane) {
        span.record("correlation_id", correlation);
    }
    let current = Arc::new(Current {
        id: Arc::clone(&id),
        problem: Mutex::new(None),
    });
    let handled = async move {
        // An error is made into its answer here, inside the scope, so that
        // the answer carries the id too.
        next.call(req).await.map_err(|e| {
            let answer = e.error_response();
            (e, answer)
        })
    };
    let outcome = CURRENT
        .scope(Arc::clone(&current), handled.instrument(span.clone()))
        .await;
    let header = HeaderValue::from_str(&id).ok();
    let status = match &outcome {
        Ok(response) => response.status(),
        Err((_, answer)) => answer.status(),
    };
    log_refusal(&span, &current, status.as_u16(), started);
    match outcome {
        Ok(mut response) => {
            if let Some(header) = header {
                response.headers_mut().insert(REQUEST_ID_HEADER, header);
            }
            Ok(response)
        }
        Err((e, mut answer)) => {
            if let Some(header) = header {
                answer.headers_mut().insert(REQUEST_ID_HEADER, header);
            }
            Err(InternalError::from_response(e, answer).into())
        }
    }
}

/// The log line of a request refused or failed, in its span.
fn log_refusal(span: &tracing::Span, current: &Current, status: u16, started: Instant) {
    if status < 400 {
        return;
    }
    let (problem, detail) = current
        .problem
        .lock()
        .ok()
        .and_then(|mut noted| noted.take())
        .unwrap_or(("none", String::new()));
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| match status {
        503 => tracing::warn!(
            status,
            problem,
            detail,
            elapsed_ms,
            "Request refused for now: the client may retry."
        ),
        500.. => tracing::error!(status, problem, detail, elapsed_ms, "Request failed."),
        _ => tracing::info!(status, problem, detail, elapsed_ms, "Request refused."),
    });
}

/// Adds `X-Request-Id` to the OpenAPI document: an optional header of every
/// operation, and a header of every answer (this middleware sets it on all).
pub fn document_request_ids(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{RefOr, Required, Response};

    let schema: RefOr<Schema> = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_REQUEST_ID_LEN))
        .pattern(Some("^[\\x21-\\x7e]+$"))
        .into();
    let answered = HeaderBuilder::new()
        .schema(schema.clone())
        .description(Some(
            "The request's id: the caller's `X-Request-Id` if it was sane, else a UUID v7 \
             Herald made. Problem bodies carry it too (`request_id`), and every log line of \
             the request names it.",
        ))
        .build();
    let parameter = ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Your id for this request, 1 to 128 visible ASCII characters, answered back and \
             logged; any other value is replaced by one Herald makes.",
        ))
        .schema(Some(schema))
        .build();
    let add_header = |response: &mut Response| {
        response
            .headers
            .insert("X-Request-Id".to_owned(), answered.clone());
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(parameter.clone());
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    add_header(response);
                }
            }
        }
    }
    if let Some(components) = doc.components.as_mut() {
        for response in components.responses.values_mut() {
            if let RefOr::T(response) = response {
                add_header(response);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_visible_ascii_ids_are_taken() {
        let take = |s: &str| sane(&HeaderValue::from_str(s).unwrap()).map(str::to_owned);
        assert_eq!(take("req-42").as_deref(), Some("req-42"));
        assert_eq!(take(&"a".repeat(128)).map(|s| s.len()), Some(128));
        assert_eq!(take(&"a".repeat(129)), None);
        assert_eq!(take(""), None);
        assert_eq!(take("two words"), None);
        assert_eq!(take("tab\there"), None);
        let bytes = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(sane(&bytes), None);
    }
}
