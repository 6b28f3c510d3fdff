//! `GET /v1/events/search`: the caller's tenant's events filtered by type
//! patterns, domains, streams, a range of recording times and payload
//! fields, paged by an opaque cursor. The tenant comes from the credentials;
//! only event types the caller may read are shown, and the cursor moves past
//! everything the page scanned, shown or not (as `GET /v1/events` does).
//!
//! ```text
//! type=tickets.ticket_*   event-type pattern, `*` any run of characters; repeatable, OR-ed
//! domain=tickets          repeatable, OR-ed
//! stream=tickets/T-1      repeatable, OR-ed
//! from=<RFC 3339>         recorded at or after (inclusive)
//! to=<RFC 3339>           recorded before (exclusive)
//! correlation=<uuid>      the events one command, publish or automation caused
//! payload.<key>[.<key>…]=<value>
//!                         the payload holds value at that path of object keys;
//!                         value is JSON when it parses as JSON (`true`, `42`,
//!                         `null`, `"42"`), else a string; repeatable, AND-ed
//! cursor=<next_cursor>    continue after the previous page
//! limit=100               1 to 1000
//! tenant=<own tenant>     optional; any other tenant is refused (403)
//! as_stored=true          events exactly as stored instead of upcast
//! ```
//!
//! Different parameters are AND-ed. Payload filters match the payload as
//! stored (at the version it was written), not as upcast. A filter on a
//! personal field is sealed as the value would be stored (the types named
//! exactly, and the subject's field too unless the field is its own
//! subject): see `seal_personal_filters`.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_events::{Domain, EventEnvelope, Position, StreamId};
use herald_store::search::MAX_SEARCH_LIMIT;
use herald_store::SearchQuery;
use serde::Serialize;
use serde_json::Value;

use super::problem::{ApiResult, Problem, ProblemKind};
use super::streams::upcast_all;
use super::AppState;
use crate::auth::{Action, Identity, TypePattern};

const DEFAULT_LIMIT: usize = 100;
/// Versions the cursor's text, so its format can change without old
/// cursors being misread.
const CURSOR_PREFIX: &str = "s1:";
const PAYLOAD_PREFIX: &str = "payload.";
const KNOWN: &str = "type, domain, stream, from, to, correlation, payload.<path>, cursor, \
     limit, tenant, as_stored";

/// A page of a search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SearchAnswer {
    #[schema(value_type = Vec<super::openapi::EventEnvelope>)]
    events: Vec<EventEnvelope>,
    /// The `cursor` of the next page; `null` once the search reached the end.
    next_cursor: Option<String>,
}

/// The query string, parsed.
#[derive(Debug)]
pub(crate) struct SearchParams {
    /// The query with the caller's tenant still to be filled in.
    pub query: SearchQuery,
    pub tenant: Option<String>,
    pub as_stored: bool,
    /// `format=` (only where `parse` was told to take it).
    pub format: Option<String>,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::InvalidQuery, detail)
}

fn encode_cursor(position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{position}"))
}

fn decode_cursor(cursor: &str) -> ApiResult<Position> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse::<u64>().ok())
        .map(Position)
        .ok_or_else(|| {
            invalid("cursor is malformed; pass the next_cursor of an earlier answer unchanged")
        })
}

fn time(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        // An unescaped `+` of an offset arrives as a space: a query string
        // decodes `+` to a space, and no RFC 3339 time holds one there.
        .or_else(|e| DateTime::parse_from_rfc3339(&value.replace(' ', "+")).map_err(|_| e))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(format!(
                "{name}: {value:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z ({e})"
            ))
        })
}

/// A payload literal: JSON when it parses as JSON, else the text itself.
fn literal(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

/// Parses the raw query string. Repeated keys are why this does not go
/// through a struct: serde's URL-encoded structs take each key once.
pub(crate) fn parse(raw: &str, takes_format: bool) -> ApiResult<SearchParams> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(raw)
        .map_err(|e| invalid(e.to_string()))?
        .into_inner();
    // The tenant is the caller's, filled in once the caller is known.
    let mut query = SearchQuery::new(herald_events::TenantId::default_tenant());
    query.limit = DEFAULT_LIMIT;
    let mut tenant = None;
    let mut as_stored = None;
    let mut from = None;
    let mut to = None;
    let mut cursor = None;
    let mut limit = None;
    let mut correlation = None;
    let mut format = None;
    let mut unknown = Vec::new();
    for (key, value) in pairs {
        let once = |slot: &mut Option<String>| {
            if slot.replace(value.clone()).is_some() {
                Err(invalid(format!("{key} is given more than once")))
            } else {
                Ok(())
            }
        };
        match key.as_str() {
            "type" => query.types.push(value),
            "domain" => query
                .domains
                .push(Domain::new(value.as_str()).map_err(|e| invalid(format!("domain: {e}")))?),
            "stream" => query.streams.push(
                value
                    .parse::<StreamId>()
                    .map_err(|e| invalid(format!("stream: {e}; a stream is named domain/id")))?,
            ),
            "tenant" => once(&mut tenant)?,
            "as_stored" => once(&mut as_stored)?,
            "from" => once(&mut from)?,
            "to" => once(&mut to)?,
            "cursor" => once(&mut cursor)?,
            "limit" => once(&mut limit)?,
            "correlation" => once(&mut correlation)?,
            "format" if takes_format => once(&mut format)?,
            _ => match key.strip_prefix(PAYLOAD_PREFIX) {
                Some(path) => {
                    let path: Vec<String> = path.split('.').map(str::to_owned).collect();
                    if path.iter().any(String::is_empty) {
                        return Err(invalid(format!(
                            "{key}: a payload path is keys joined by dots, none of them empty"
                        )));
                    }
                    query.payload_equals.push((path, literal(&value)));
                }
                None if unknown.contains(&key) => {}
                None => unknown.push(key),
            },
        }
    }
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "unknown query parameters: {}; known: {KNOWN}",
            unknown.join(", ")
        ))
        .with("unknown_parameters", unknown));
    }
    query.recorded_from = from.as_deref().map(|v| time("from", v)).transpose()?;
    query.correlation = correlation
        .as_deref()
        .map(|v| {
            v.parse::<uuid::Uuid>()
                .map_err(|_| invalid(format!("correlation: {v:?} is not a UUID")))
        })
        .transpose()?;
    query.recorded_to = to.as_deref().map(|v| time("to", v)).transpose()?;
    if let Some(cursor) = cursor {
        query.after = decode_cursor(&cursor)?;
    }
    if let Some(limit) = limit {
        query.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
            .ok_or_else(|| invalid(format!("limit must be 1 to {MAX_SEARCH_LIMIT}")))?;
    }
    let as_stored = match as_stored.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid(format!(
                "as_stored must be true or false, not {other:?}"
            )))
        }
    };
    Ok(SearchParams {
        query,
        tenant,
        as_stored,
        format,
    })
}

/// The patterns of the types `identity` may read; `None` when it may read
/// every type.
fn readable(identity: &Identity) -> Option<Vec<String>> {
    let mut patterns: Vec<String> = Vec::new();
    for scope in &identity.scopes {
        if !matches!(scope.action, Action::Read | Action::Admin) {
            continue;
        }
        if scope.pattern.as_str() == TypePattern::ANY {
            return None;
        }
        if !patterns.iter().any(|p| p == scope.pattern.as_str()) {
            patterns.push(scope.pattern.as_str().to_owned());
        }
    }
    Some(patterns)
}

/// `GET /v1/events/search`
#[utoipa::path(
    get,
    path = "/v1/events/search",
    tag = "search",
    operation_id = "search_events",
    summary = "Search the tenant's events",
    description = "The caller's tenant's events in position order, of the types it may read, \
        filtered by the parameters below (repeated ones OR-ed, different ones AND-ed) and by \
        payload fields: `payload.<key>[.<key>…]=<value>` matches events whose payload (as \
        stored) holds the value at that path of object keys; the value is JSON when it parses as \
        JSON (`true`, `42`, `null`, `\"42\"`), else a string; repeatable, AND-ed. A field \
        marked personal is stored sealed: to search by its value, name the event types \
        exactly (no `*`) and, unless the field is its own subject, the subject's field too \
        (`payload.customer=…`); Herald then compares with the value as it would be sealed. \
        A malformed or unknown parameter is a 400 `invalid-query` naming it. A page reads at \
        most 100,000 positions of the log on the embedded store: it may hold fewer events \
        than `limit`, or none, with a `next_cursor` all the same; follow it until it is `null`.",
    params(
        ("type" = Option<Vec<String>>, Query, style = Form, explode, description = "Event-type pattern, `*` any run of characters (`tickets.ticket_*`); repeatable, OR-ed"),
        ("domain" = Option<Vec<crate::api::openapi::DomainName>>, Query, style = Form, explode, description = "Domain; repeatable, OR-ed"),
        ("stream" = Option<Vec<crate::api::openapi::StreamName>>, Query, style = Form, explode, description = "Stream, `domain/id`; repeatable, OR-ed"),
        ("from" = Option<String>, Query, format = DateTime, description = "Recorded at or after (RFC 3339, inclusive)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Recorded before (RFC 3339, exclusive)"),
        ("correlation" = Option<uuid::Uuid>, Query, description = "Only the events of this correlation id: what one command, publish or automation caused"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page, unchanged"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Events to scan, 1 to 1000 (default 100)"),
        ("tenant" = Option<String>, Query, description = "Optional; any tenant but the caller's own is refused (403)"),
        ("as_stored" = Option<bool>, Query, description = "Events exactly as stored instead of upcast"),
    ),
    responses(
        (status = 200, description = "A page of matching events; `next_cursor` is `null` at the end", body = SearchAnswer),
        (status = 400, description = "`invalid-query`: a malformed or unknown parameter, named", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant, or credentials that may read no event type", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn search(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let SearchParams {
        query,
        tenant,
        as_stored,
        ..
    } = parse(req.query_string(), false)?;
    identity.require_tenant(tenant.as_deref())?;
    let (events, last_scanned) = search_page(&identity, &state, query, as_stored).await?;
    Ok(HttpResponse::Ok().json(SearchAnswer {
        events,
        next_cursor: last_scanned.map(encode_cursor),
    }))
}

/// One page of a parsed search for `identity`: its tenant's events of the
/// types it may read, upcast unless `as_stored`, and the last position
/// scanned (`None` at the end).
pub(crate) async fn search_page(
    identity: &Identity,
    state: &AppState,
    mut query: SearchQuery,
    as_stored: bool,
) -> ApiResult<(Vec<EventEnvelope>, Option<Position>)> {
    query.tenant = identity.tenant.clone();
    seal_personal_filters(state, &mut query).await?;
    let readable = readable(identity);
    if readable.as_ref().is_some_and(Vec::is_empty) {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "these credentials may not read any event type",
        ));
    }
    // A search for any type by a caller who may read only some is, exactly,
    // a search for those: asking the store for them spares scanning pages
    // of events that would all be filtered out below. A scope list the store
    // would refuse as a query keeps the unnarrowed search.
    if let Some(patterns) = readable.filter(|_| query.types.is_empty()) {
        let narrowed = SearchQuery {
            types: patterns,
            ..query.clone()
        };
        if narrowed.validate().is_ok() {
            query = narrowed;
        }
    }

    let page = state.store.search(&query).await?;
    let events: Vec<EventEnvelope> = page
        .events
        .into_iter()
        .filter(|e| e.tenant == identity.tenant && identity.allows(Action::Read, &e.event_type))
        .collect();
    let events = upcast_all(state, events, as_stored)?;
    Ok((events, page.last_scanned))
}

/// A JSON pointer to a payload path of object keys.
fn pointer_of(path: &[String]) -> String {
    path.iter()
        .map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Payload filters on personal fields compare with the value as it is
/// stored: sealed under its subject's key, which is why the search must
/// name the event types exactly (no `*`: the fields are declared per type)
/// and, unless the field is its own subject, the subject's field too
/// (`payload.customer=cust-a`). A subject that has no key matches nothing.
async fn seal_personal_filters(state: &AppState, query: &mut SearchQuery) -> ApiResult<()> {
    if query.payload_equals.is_empty()
        || query.types.is_empty()
        || query.types.iter().any(|t| t.contains('*'))
    {
        return Ok(());
    }
    let types: Vec<herald_events::EventType> =
        query.types.iter().filter_map(|t| t.parse().ok()).collect();
    let plain = query.payload_equals.clone();
    for (index, (path, value)) in plain.iter().enumerate() {
        let pointer = pointer_of(path);
        let Some(field) = types
            .iter()
            .find_map(|t| state.registry.personal_field_at(&query.tenant, t, &pointer))
        else {
            continue;
        };
        let subject = if field.subject == pointer {
            Some(value)
        } else {
            plain
                .iter()
                .find(|(p, _)| pointer_of(p) == field.subject)
                .map(|(_, v)| v)
        };
        let subject = match subject {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(invalid(format!(
                    "payload.{} is personal (sealed under its subject's key): name the subject \
                     too, payload.{}=<its id>",
                    path.join("."),
                    field.subject.trim_start_matches('/').replace('/', ".")
                )))
            }
        };
        let sealed = state
            .privacy
            .sealed_for_search(&query.tenant, &subject, &pointer, value)
            .await?;
        // No key: nothing of the subject is stored, so no event matches a
        // string no sealed value can be.
        query.payload_equals[index].1 =
            Value::String(sealed.unwrap_or_else(|| "hpd1.none".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = encode_cursor(Position(42));
        assert!(cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(decode_cursor(&cursor).unwrap(), Position(42));
        for bad in [
            "",
            "42",
            "!!",
            "czE6",
            "czE6eA",
            &URL_SAFE_NO_PAD.encode("s2:42"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repeated_keys_are_or_ed_and_payload_values_read_as_json_first() {
        let params = parse(
            "type=tickets.ticket_*&type=edges.*&domain=tickets&stream=tickets%2FT-1\
             &payload.customer=acme&payload.links.wan.up=true&payload.code=%2242%22\
             &payload.n=42&from=2025-01-01T00:00:00%2B02:00&to=2025-01-02T00:00:00+02:00",
            false,
        )
        .unwrap();
        let q = params.query;
        assert_eq!(q.types, vec!["tickets.ticket_*", "edges.*"]);
        assert_eq!(q.domains.len(), 1);
        assert_eq!(q.streams[0].as_str(), "tickets/T-1");
        assert_eq!(
            q.payload_equals,
            vec![
                (vec!["customer".to_owned()], Value::from("acme")),
                (
                    vec!["links".to_owned(), "wan".to_owned(), "up".to_owned()],
                    Value::from(true)
                ),
                (vec!["code".to_owned()], Value::from("42")),
                (vec!["n".to_owned()], Value::from(42)),
            ]
        );
        assert_eq!(
            q.recorded_from.unwrap().to_rfc3339(),
            "2024-12-31T22:00:00+00:00"
        );
        assert_eq!(
            q.recorded_to.unwrap().to_rfc3339(),
            "2025-01-01T22:00:00+00:00"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (raw, names) in [
            ("foo=1&limit=5&bar=2", "foo, bar"),
            ("payload=1", "payload"),
        ] {
            let problem = parse(raw, false).unwrap_err();
            assert_eq!(problem.kind, ProblemKind::InvalidQuery);
            assert!(problem.detail.contains(names), "{}", problem.detail);
        }
        for raw in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "limit=1&limit=2",
            "from=yesterday",
            "cursor=nope",
            "payload.a..b=1",
            "payload.=1",
            "domain=Tickets",
            "stream=T-1",
            "as_stored=yes",
        ] {
            assert_eq!(
                parse(raw, false).unwrap_err().kind,
                ProblemKind::InvalidQuery,
                "{raw}"
            );
        }
    }
}
