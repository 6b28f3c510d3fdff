//! Text no store can keep, refused at the HTTP edge the same way on both
//! stores ([`herald_store::storable`] decides what that is: U+0000 today).
//! Every URL passes [`refuse_unstorable_url`] before any route sees it, so
//! no path id, filter, cursor or search value holding U+0000 reaches a
//! database (Postgres would fail on it, SQLite would look for it); bodies
//! are checked where they are read, naming the JSON pointer
//! ([`check_body`], and `item` for events).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use herald_store::storable::{find_unstorable, is_storable};
use serde_json::Value;

use super::problem::{ApiResult, Problem, ProblemKind};

/// Answers 400 `invalid-query` naming the parameter when the request's
/// path or query string holds U+0000 (`%00`), before routing reaches a
/// handler.
pub async fn refuse_unstorable_url(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let pattern = req.match_pattern();
    if let Some(problem) = url_problem(req.path(), pattern.as_deref(), req.query_string()) {
        let response = problem.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The problem with a URL: its raw (still percent-encoded) `path`, the
/// route `pattern` it matched, if any, and its raw `query`.
pub fn url_problem(path: &str, pattern: Option<&str>, query: &str) -> Option<Problem> {
    // Percent-decoding yields U+0000 exactly where the raw text holds `%00`:
    // a `%` is never one of an escape's two hex digits.
    if path.contains("%00") {
        let segments: Vec<&str> = path.split('/').collect();
        let index = segments.iter().position(|s| s.contains("%00"));
        // `{id}` in `/v1/views/tickets/{id}`: the parameter the segment fills.
        let name = index
            .zip(pattern)
            .and_then(|(i, pattern)| pattern.split('/').nth(i))
            // A parameter may carry a suffix (`{image}.gif`).
            .and_then(|s| Some(s.strip_prefix('{')?.split_once('}')?.0))
            .map(|s| s.split(':').next().unwrap_or(s).to_owned());
        let detail = match &name {
            Some(name) => format!("the path parameter {name} holds the character U+0000{REFUSED}"),
            None => format!("the path holds the character U+0000{REFUSED}"),
        };
        return Some(
            Problem::new(ProblemKind::InvalidQuery, detail)
                .with("parameter", name.unwrap_or_else(|| "path".to_owned()))
                .with("in", "path"),
        );
    }
    form_urlencoded::parse(query.as_bytes()).find_map(|(key, value)| {
        if !is_storable(&key) {
            Some(
                Problem::new(
                    ProblemKind::InvalidQuery,
                    format!(
                        "the name of a query parameter ({:?}) holds the character U+0000{REFUSED}",
                        key.chars().take(64).collect::<String>()
                    ),
                )
                .with("parameter", key.into_owned())
                .with("in", "query"),
            )
        } else if !is_storable(&value) {
            Some(
                Problem::new(
                    ProblemKind::InvalidQuery,
                    format!("the query parameter {key} holds the character U+0000{REFUSED}"),
                )
                .with("parameter", key.into_owned())
                .with("in", "query"),
            )
        } else {
            None
        }
    })
}

/// The end of every refusal: why the character is refused.
const REFUSED: &str = ", which Herald refuses in all text because no store can keep it";

/// Refuses a JSON body holding U+0000 in a string or a key with a `kind`
/// problem (a 4xx) whose `pointer` says where.
pub fn check_body(body: &Value, kind: ProblemKind) -> ApiResult<()> {
    match find_unstorable(body) {
        None => Ok(()),
        Some(found) => Err(Problem::new(kind, format!("the body: {found}"))
            .with("pointer", found.pointer.clone())
            .with("in_key", found.in_key)),
    }
}

/// A free-text reason, as switches and erasures record it: storable text
/// of 1 to 1000 characters.
pub fn check_reason(reason: Option<&str>) -> ApiResult<()> {
    let Some(reason) = reason else {
        return Ok(());
    };
    check_body(
        &Value::String(reason.to_owned()),
        ProblemKind::InvalidRequest,
    )?;
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(Problem::new(
            ProblemKind::InvalidRequest,
            "reason is 1 to 1000 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_path_parameter_or_query_parameter_holding_nul() {
        let problem = url_problem(
            "/v1/views/tickets/a%00b",
            Some("/v1/views/tickets/{id}"),
            "",
        )
        .unwrap();
        assert_eq!(problem.kind, ProblemKind::InvalidQuery);
        assert_eq!(problem.extensions["parameter"], "id");
        assert_eq!(problem.extensions["in"], "path");
        let unmatched = url_problem("/nowhere/%00", None, "").unwrap();
        assert_eq!(unmatched.extensions["parameter"], "path");
        let query = url_problem("/v1/events/search", None, "type=x&payload.a=b%00").unwrap();
        assert_eq!(query.extensions["parameter"], "payload.a");
        assert!(query
            .detail
            .contains("payload.a holds the character U+0000"));
        let key = url_problem("/v1/events/search", None, "payload.%00=1").unwrap();
        assert_eq!(key.extensions["parameter"], "payload.\u{0}");
        for fine in ["assignee=%2500", "a=%0", "a=%%30", "x=%01"] {
            assert!(
                url_problem("/v1/views/tickets/%2500", None, fine).is_none(),
                "{fine}"
            );
        }
    }

    #[test]
    fn bodies_name_the_pointer() {
        let problem = check_body(
            &serde_json::json!({"document": {"a": ["x", "y\u{0}"]}}),
            ProblemKind::InvalidRequest,
        )
        .unwrap_err();
        assert_eq!(problem.extensions["pointer"], "/document/a/1");
        assert!(check_body(
            &serde_json::json!({"a": "\u{1}"}),
            ProblemKind::InvalidRequest
        )
        .is_ok());
    }
}
