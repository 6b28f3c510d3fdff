//! Event search: the query both backends answer ([`SearchQuery`]), the page
//! they answer with ([`SearchPage`]), and what the backends share — the
//! validation that bounds a query's cost, the translation of type patterns to
//! SQL `LIKE`, payload paths and literals, and time bounds rounded to the
//! precision the store keeps.
//!
//! A search always names one tenant and reads nothing outside it. Filters of
//! one kind are OR-ed (any of the types, any of the domains, any of the
//! streams); different kinds and every payload filter are AND-ed. Payload
//! equality compares one scalar (string, number, boolean or null) at a path
//! of object keys; array indices are not supported, and a path that crosses
//! an array matches nothing. Numbers compare by value (`1` equals `1.0`).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use herald_events::{Domain, EventEnvelope, Position, StreamId, TenantId};
use serde_json::Value;

use crate::error::{Result, StoreError};

/// Most events one search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;
/// Most payload filters in one search.
pub const MAX_PAYLOAD_FILTERS: usize = 10;
/// Most values of each OR-ed filter (types, domains, streams) in one search.
pub const MAX_FILTER_VALUES: usize = 20;
/// Longest type pattern: a domain, a dot and an event name.
pub const MAX_PATTERN_LEN: usize =
    herald_events::ids::MAX_DOMAIN_LEN + 1 + herald_events::ids::MAX_EVENT_NAME_LEN;
/// Most keys in one payload path.
pub const MAX_PATH_DEPTH: usize = 16;
/// Longest key of a payload path, in bytes.
pub const MAX_PATH_KEY_LEN: usize = 256;

/// What to search for. Build one with [`SearchQuery::new`] and set the
/// filters wanted; an empty filter list means "any".
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The only tenant searched.
    pub tenant: TenantId,
    /// Event-type patterns, OR-ed: `*` matches any run of characters, every
    /// other character only itself (`tickets.ticket_*`, `*.note_appended`).
    pub types: Vec<String>,
    /// Domains, OR-ed.
    pub domains: Vec<Domain>,
    /// Streams, OR-ed.
    pub streams: Vec<StreamId>,
    /// Recorded at or after this time.
    pub recorded_from: Option<DateTime<Utc>>,
    /// Recorded before this time.
    pub recorded_to: Option<DateTime<Utc>>,
    /// AND-ed: the payload holds this scalar at this path of object keys.
    pub payload_equals: Vec<(Vec<String>, Value)>,
    /// Only the events of this correlation (what one command, publish or
    /// automation caused).
    pub correlation: Option<uuid::Uuid>,
    /// Only the event with this id.
    pub event_id: Option<uuid::Uuid>,
    /// Only events after this position (a cursor; `Position::START` for all).
    pub after: Position,
    /// Most events to return, 1 to [`MAX_SEARCH_LIMIT`].
    pub limit: usize,
}

impl SearchQuery {
    /// Every event of `tenant`, 100 at a time.
    pub fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            types: Vec::new(),
            domains: Vec::new(),
            streams: Vec::new(),
            recorded_from: None,
            recorded_to: None,
            payload_equals: Vec::new(),
            correlation: None,
            event_id: None,
            after: Position::START,
            limit: 100,
        }
    }

    /// Refuses queries that are malformed or would cost more than a search
    /// is allowed to (the bounds are the `MAX_*` constants of this module).
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_SEARCH_LIMIT {
            return Err(invalid(format!(
                "limit must be 1 to {MAX_SEARCH_LIMIT}, not {}",
                self.limit
            )));
        }
        if i64::try_from(self.after.get()).is_err() {
            return Err(invalid(format!(
                "position {} is beyond any position",
                self.after
            )));
        }
        for (what, n) in [
            ("type patterns", self.types.len()),
            ("domains", self.domains.len()),
            ("streams", self.streams.len()),
        ] {
            if n > MAX_FILTER_VALUES {
                return Err(invalid(format!(
                    "{n} {what}; a search takes at most {MAX_FILTER_VALUES}"
                )));
            }
        }
        for pattern in &self.types {
            check_pattern(pattern)?;
        }
        if let (Some(from), Some(to)) = (self.recorded_from, self.recorded_to) {
            if to <= from {
                return Err(invalid(format!(
                    "the time range is empty: it ends ({to}) at or before it starts ({from})"
                )));
            }
        }
        if self.payload_equals.len() > MAX_PAYLOAD_FILTERS {
            return Err(invalid(format!(
                "{} payload filters; a search takes at most {MAX_PAYLOAD_FILTERS}",
                self.payload_equals.len()
            )));
        }
        for (path, value) in &self.payload_equals {
            check_path(path)?;
            if value
                .as_str()
                .is_some_and(|v| !crate::storable::is_storable(v))
            {
                return Err(invalid(format!(
                    "payload filter {}: the value holds the character U+0000, which no stored \
                     event holds",
                    path.join(".")
                )));
            }
            if matches!(value, Value::Array(_) | Value::Object(_)) {
                return Err(invalid(format!(
                    "payload filter {}: the value must be a string, number, boolean or null",
                    path.join(".")
                )));
            }
        }
        Ok(())
    }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// Matching events in position order.
    pub events: Vec<EventEnvelope>,
    /// Where the next page starts (its `after`): `Some` when this page is
    /// full and more may match, or when the embedded store's page stopped
    /// at the end of its scan window (fuller or not, even empty); `None`
    /// when the search reached the end of the log as it was when read.
    pub last_scanned: Option<Position>,
}

impl SearchPage {
    /// The page of up to `limit` events a backend found.
    pub(crate) fn of(events: Vec<EventEnvelope>, limit: usize) -> Self {
        // Only a full page can have more after it: the statement scanned
        // everything past `after` to find fewer.
        let last_scanned = if events.len() >= limit {
            events.last().map(|e| e.position)
        } else {
            None
        };
        Self {
            events,
            last_scanned,
        }
    }
}

fn invalid(reason: String) -> StoreError {
    StoreError::InvalidQuery { reason }
}

fn check_pattern(pattern: &str) -> Result<()> {
    if pattern.is_empty() {
        return Err(invalid("a type pattern is empty".into()));
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(invalid(format!(
            "type pattern {:?}… is longer than {MAX_PATTERN_LEN} characters",
            pattern.chars().take(32).collect::<String>()
        )));
    }
    // Event types are lowercase, so limiting patterns to the same characters
    // also keeps SQLite's case-insensitive LIKE exactly as strict as Postgres'.
    if let Some(bad) = pattern
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '*')))
    {
        return Err(invalid(format!(
            "type pattern {pattern:?} holds {bad:?}; patterns may only hold a-z, 0-9, '_', '.' and '*'"
        )));
    }
    Ok(())
}

fn check_path(path: &[String]) -> Result<()> {
    if path.is_empty() {
        return Err(invalid("a payload filter has no path".into()));
    }
    if path.len() > MAX_PATH_DEPTH {
        return Err(invalid(format!(
            "payload path {} is deeper than {MAX_PATH_DEPTH} keys",
            path.join(".")
        )));
    }
    for key in path {
        if key.is_empty() {
            return Err(invalid(format!(
                "payload path {:?} has an empty key",
                path.join(".")
            )));
        }
        if key.len() > MAX_PATH_KEY_LEN {
            return Err(invalid(format!(
                "a key of a payload path is longer than {MAX_PATH_KEY_LEN} bytes"
            )));
        }
        if key.contains('\0') {
            return Err(invalid("a key of a payload path holds U+0000".into()));
        }
    }
    Ok(())
}

/// The escape character of every `LIKE` built from a pattern. Not a
/// backslash, whose meaning in a Postgres string literal depends on a setting.
pub(crate) const LIKE_ESCAPE: char = '!';

/// A type pattern as the operand of `LIKE … ESCAPE '!'`: `*` becomes `%`, and
/// `%`, `_` (which every event name holds) and the escape itself match only
/// themselves.
pub(crate) fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut last_star = false;
    for c in pattern.chars() {
        match c {
            // Runs of `*` mean the same as one; collapsing them keeps LIKE's
            // backtracking short.
            '*' if last_star => continue,
            '*' => out.push('%'),
            '%' | '_' | LIKE_ESCAPE => {
                out.push(LIKE_ESCAPE);
                out.push(c);
            }
            _ => out.push(c),
        }
        last_star = c == '*';
    }
    out
}

/// A time bound rounded up to the microsecond the store keeps, so that
/// comparing with stored times gives the answer exact times would: for a
/// stored `t` and any bound `b`, `t >= b` iff `t >= ceil(b)` and `t < b` iff
/// `t < ceil(b)`.
pub(crate) fn stored_bound(t: DateTime<Utc>) -> DateTime<Utc> {
    let truncated = t.trunc_subsecs(6);
    if truncated == t {
        return t;
    }
    truncated
        .checked_add_signed(Duration::microseconds(1))
        .unwrap_or(truncated)
}

/// The kind of JSON scalar a payload literal is, as SQLite's `json_type`
/// names the kinds that equal it.
pub(crate) fn sqlite_json_types(value: &Value) -> &'static str {
    match value {
        Value::Null => "'null'",
        Value::Bool(true) => "'true'",
        Value::Bool(false) => "'false'",
        Value::Number(_) => "'integer', 'real'",
        Value::String(_) => "'text'",
        // Refused by `validate`; nothing stored is of no type.
        Value::Array(_) | Value::Object(_) => "''",
    }
}

/// A path of object keys as a SQLite JSON path: `$."a"."b"`, each key a JSON
/// string, so dots, quotes and brackets in keys are taken literally.
pub(crate) fn sqlite_json_path(path: &[String]) -> String {
    let mut out = String::from("$");
    for key in path {
        out.push('.');
        out.push_str(&Value::String(key.clone()).to_string());
    }
    out
}

/// The smallest document holding `value` at `path`, for Postgres' `@>`.
pub(crate) fn nested_object(path: &[String], value: &Value) -> Value {
    path.iter().rev().fold(value.clone(), |inner, key| {
        let mut object = serde_json::Map::with_capacity(1);
        object.insert(key.clone(), inner);
        Value::Object(object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_escape_like_metacharacters() {
        assert_eq!(like_pattern("tickets.ticket_*"), "tickets.ticket!_%");
        assert_eq!(like_pattern("a%b!c**"), "a!%b!!c%");
        assert_eq!(like_pattern("*"), "%");
    }

    #[test]
    fn bounds_round_up_to_the_microsecond() {
        let t = DateTime::parse_from_rfc3339("2025-01-01T00:00:00.000001500Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            stored_bound(t),
            DateTime::parse_from_rfc3339("2025-01-01T00:00:00.000002Z").unwrap()
        );
        let exact = t.trunc_subsecs(6);
        assert_eq!(stored_bound(exact), exact);
    }

    #[test]
    fn paths_quote_every_key() {
        let path = vec!["a.b".to_owned(), "say \"hi\"".to_owned()];
        assert_eq!(sqlite_json_path(&path), r#"$."a.b"."say \"hi\"""#);
        assert_eq!(
            nested_object(&path, &json!(1)),
            json!({"a.b": {"say \"hi\"": 1}})
        );
    }
}
