//! Reading JSON request bodies with the errors a producer can act on: too
//! large (413, checked against Content-Length first and while streaming),
//! not JSON by media type (415), not UTF-8 (400), not JSON (400, with line and
//! column), or JSON of the wrong shape (422).

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::{ApiResult, Problem, ProblemKind};

fn too_large(limit: usize) -> Problem {
    Problem::new(
        ProblemKind::BodyTooLarge,
        format!("the body is larger than the limit of {limit} bytes"),
    )
    .with("limit_bytes", limit)
}

/// Reads and decodes a JSON body of at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<T> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        let media = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                format!("Content-Type is {media:?}; send application/json"),
            ));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
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
