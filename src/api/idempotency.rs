//! The `Idempotency-Key` header of commands and stream appends: reading it,
//! the fingerprint of what it is used for, and how a repeat is answered.
//!
//! A key is scoped to the caller's tenant and the aggregate (stream) in the
//! path, and kept for the store's window (`--idempotency-window`, 24 h by
//! default) from its first use. A repeat of a request that was answered
//! gets the first answer again — 200, the same body with `"duplicate":
//! true`, and `Idempotent-Replayed: true` — and appends nothing; the same
//! key with another command or body is refused with 422
//! `idempotency-key-reused`. The records are the store's
//! ([`herald_store::idempotency`]).

use actix_web::HttpRequest;
use chrono::{DateTime, Utc};
use herald_store::idempotency::MAX_IDEMPOTENCY_KEY_LEN;

use super::problem::{ApiResult, Problem, ProblemKind};

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// Set on an answer that repeats an earlier one.
pub const REPLAYED: &str = "Idempotent-Replayed";

/// The request's `Idempotency-Key`, if any: 1 to 200 visible ASCII
/// characters, optionally quoted as a structured-field string
/// (`"abc"`, as the IETF draft writes it).
pub fn key(req: &HttpRequest) -> ApiResult<Option<String>> {
    let mut values = req.headers().get_all(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        Problem::new(ProblemKind::InvalidRequest, format!("{HEADER} {why}")).with("header", HEADER)
    };
    if values.next().is_some() {
        return Err(invalid("is given more than once"));
    }
    let text = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII characters"))?;
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || text.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(invalid(&format!(
            "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "must be visible ASCII characters (no spaces or control characters)",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The answer to a key used before for another request on this aggregate.
pub fn reused(key: &str, first_used_at: DateTime<Utc>) -> Problem {
    Problem::new(
        ProblemKind::IdempotencyKeyReused,
        format!(
            "{HEADER} {key:?} was used at {first_used_at} for another request on this \
             aggregate; a retry must repeat the same request, and a new request needs a new key"
        ),
    )
    .with("header", HEADER)
    .with("idempotency_key", key)
    .with("first_used_at", first_used_at.to_rfc3339())
}
