//! Event search in the SQLite file: one statement per search, holding only
//! the filters the query has, with every value bound as a parameter. Payload
//! equality is `json_extract(payload, path) IS json_extract(literal, '$')`,
//! so the literal is read as JSON exactly as the stored payload is, guarded
//! by `json_type` so that SQLite's loose equalities (`true` is `1`, an object
//! reads as its text) do not match what Postgres' containment would not.

use async_trait::async_trait;
use herald_events::chain::canonical_time;
use herald_events::Position;
use rusqlite::types::Value as SqlValue;

use super::{rows, sqlite_error, EmbeddedStore};
use crate::error::StoreError;
use crate::search::{
    like_pattern, sqlite_json_path, sqlite_json_types, stored_bound, SearchPage, SearchQuery,
    LIKE_ESCAPE,
};
use crate::{sql_limit, EventSearch};

/// The values of a statement's `?n` placeholders, in order.
#[derive(Default)]
struct Params(Vec<SqlValue>);

impl Params {
    /// Binds a value; the answer is its placeholder.
    fn bind(&mut self, value: impl Into<SqlValue>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }
}

/// The first of the tenant's events recorded at or after a time, from the
/// time index (tenant, recorded_at, position) in its own order.
fn first_at_or_after(tenant: &str, time: &str) -> String {
    format!(
        "SELECT position FROM herald_events INDEXED BY herald_events_tenant_recorded \
         WHERE tenant = {tenant} AND recorded_at >= {time} \
         ORDER BY recorded_at, position LIMIT 1"
    )
}

/// The one type a query names exactly, when the scan can walk its index:
/// no stream, event or correlation is looked up instead.
fn one_exact_type(query: &SearchQuery) -> Option<&String> {
    match query.types.as_slice() {
        [only]
            if !only.contains('*')
                && query.streams.is_empty()
                && query.event_id.is_none()
                && query.correlation.is_none() =>
        {
            Some(only)
        }
        _ => None,
    }
}

/// The last position a page of a search that scans may read: `window`
/// positions of the log from where the scan starts (the cursor, or the
/// first event of the time range when that is later), or `window` entries
/// of the type index when the search walks it; `None` when the scan may go
/// to the end (fewer than that remain, or it looks up by index anyway).
fn scan_window_end(
    conn: &rusqlite::Connection,
    query: &SearchQuery,
    window: u64,
) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension;
    if !(query.streams.is_empty() && query.event_id.is_none() && query.correlation.is_none()) {
        return Ok(None);
    }
    let mut start = query.after.get() as i64;
    if let Some(from) = query.recorded_from {
        let first: Option<i64> = conn
            .query_row(
                &first_at_or_after("?1", "?2"),
                rusqlite::params![query.tenant.as_str(), canonical_time(&stored_bound(from))],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_error)?;
        match first {
            Some(first) => start = start.max(first - 1),
            // Nothing was recorded since `from`: nothing to scan.
            None => return Ok(None),
        }
    }
    let window = window.max(1) as i64;
    match one_exact_type(query) {
        Some(event_type) => conn
            .query_row(
                "SELECT position FROM herald_events INDEXED BY herald_events_type \
                 WHERE event_type = ?1 AND position > ?2 ORDER BY position LIMIT 1 OFFSET ?3",
                rusqlite::params![event_type, start, window - 1],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_error),
        None => {
            let head = super::read_head(conn)?.position.get() as i64;
            Ok((start.saturating_add(window) < head).then_some(start + window))
        }
    }
}

/// Most log positions one page of a search reads when it scans the log
/// (about 70 ms of JSON matching on a 2-core machine): past it the page
/// ends, fuller or not, and its cursor continues from there.
pub const SCAN_WINDOW: u64 = 100_000;

/// The statement for a validated query.
///
/// SQLite plans without statistics and, left to itself, reads a search
/// through an index on `tenant` and sorts all of the tenant's events for
/// every page. So the log is read in position order (`NOT INDEXED` leaves
/// only the rowid), where a page stops as soon as it is full, and the other
/// indexes are used only to bound that scan: streams by the stream index, a
/// time range by the time index.
fn statement(query: &SearchQuery, window_end: Option<i64>) -> (String, Params) {
    let mut p = Params::default();
    let tenant = p.bind(query.tenant.as_str().to_owned());
    // Validation keeps positions within i64.
    let after = p.bind(query.after.get() as i64);
    let mut filters = vec![format!("tenant = {tenant}")];
    // One exact type (as searches by a payload field usually name, and
    // searches by a personal field must): the type index holds its events in
    // position order, so the scan visits only them, still without sorting.
    let one_type = one_exact_type(query);
    if let Some(only) = one_type {
        filters.push(format!("event_type = {}", p.bind(only.clone())));
    } else if !query.types.is_empty() {
        let any: Vec<String> = query
            .types
            .iter()
            .map(|t| {
                format!(
                    "event_type LIKE {} ESCAPE '{LIKE_ESCAPE}'",
                    p.bind(like_pattern(t))
                )
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if !query.domains.is_empty() {
        let any: Vec<String> = query
            .domains
            .iter()
            .map(|d| p.bind(d.as_str().to_owned()))
            .collect();
        filters.push(format!("domain IN ({})", any.join(", ")));
    }
    // Stored times are fixed-width text, so text order is time order.
    let from = query
        .recorded_from
        .map(|t| p.bind(canonical_time(&stored_bound(t))));
    let to = query
        .recorded_to
        .map(|t| p.bind(canonical_time(&stored_bound(t))));
    if let Some(from) = &from {
        filters.push(format!("recorded_at >= {from}"));
    }
    if let Some(to) = &to {
        filters.push(format!("recorded_at < {to}"));
    }
    // An event id or a correlation names few events: their positions come
    // from those columns' indexes, as streams' come from the stream index.
    if let Some(id) = query.event_id {
        let id = p.bind(id.hyphenated().to_string());
        filters.push(format!(
            "position IN (SELECT position FROM herald_events WHERE event_id = {id})"
        ));
    }
    if let Some(correlation) = query.correlation {
        let correlation = p.bind(correlation.hyphenated().to_string());
        filters.push(format!(
            "position IN (SELECT position FROM herald_events WHERE correlation_id = {correlation})"
        ));
    }
    if !query.streams.is_empty() {
        filters.push(format!("position > {after}"));
        // The streams' positions from the stream index; SQLite walks the
        // list in order, so the page still stops at its limit.
        let each: Vec<String> = query
            .streams
            .iter()
            .map(|s| {
                let domain = p.bind(s.domain().as_str().to_owned());
                let id = p.bind(s.id().to_owned());
                format!(
                    "SELECT position FROM herald_events \
                     WHERE tenant = {tenant} AND domain = {domain} AND stream_id = {id}"
                )
            })
            .collect();
        filters.push(format!("position IN ({})", each.join(" UNION ALL ")));
    } else {
        // Record times never decrease along the log (the store records each
        // batch at no earlier a time than the last), so a time range is a
        // range of positions, and the scan starts and ends there. With no
        // event at or after `from` the bound is NULL and nothing matches, as
        // it should; with none at or after `to` the scan goes to the end.
        match &from {
            Some(from) => filters.push(format!(
                "position > max({after}, ({}) - 1)",
                first_at_or_after(&tenant, from)
            )),
            None => filters.push(format!("position > {after}")),
        }
        if let Some(to) = &to {
            filters.push(format!(
                "position < coalesce(({}), {})",
                first_at_or_after(&tenant, to),
                i64::MAX
            ));
        }
    }
    for (path, value) in &query.payload_equals {
        let path_param = p.bind(sqlite_json_path(path));
        let literal = p.bind(value.to_string());
        filters.push(format!(
            "(json_type(payload, {path_param}) IN ({types}) \
             AND json_extract(payload, {path_param}) IS json_extract({literal}, '$'))",
            types = sqlite_json_types(value),
        ));
    }
    if let Some(end) = window_end {
        filters.push(format!("position <= {}", p.bind(end)));
    }
    let limit = p.bind(sql_limit(query.limit));
    let scan = if one_type.is_some() {
        "INDEXED BY herald_events_type"
    } else {
        "NOT INDEXED"
    };
    let sql = format!(
        "{} {scan} WHERE {} ORDER BY position LIMIT {limit}",
        rows::SELECT,
        filters.join(" AND ")
    );
    (sql, p)
}

#[async_trait]
impl EventSearch for EmbeddedStore {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        query.validate()?;
        let limit = query.limit;
        let query = query.clone();
        let window = self.inner.search_window;
        self.read(move |conn| {
            // A search that scans reads at most `window` positions a page,
            // so that a page answers in bounded time however rare its
            // matches; the cursor then continues after the window.
            let window_end = scan_window_end(conn, &query, window)?;
            let (sql, params) = statement(&query, window_end);
            let mut stmt = conn.prepare(&sql).map_err(sqlite_error)?;
            let events = stmt
                .query_map(rusqlite::params_from_iter(params.0), rows::event)
                .map_err(sqlite_error)?
                .map(|r| r.map_err(sqlite_error).and_then(|e| e))
                .collect::<Result<Vec<_>, _>>()?;
            let mut page = SearchPage::of(events, limit);
            if page.last_scanned.is_none() {
                page.last_scanned = window_end.map(|end| Position(end as u64));
            }
            Ok(page)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use herald_events::{Domain, TenantId};
    use rusqlite::Connection;
    use serde_json::json;

    use super::statement;
    use crate::migrate;
    use crate::SearchQuery;

    /// How SQLite would run the search, one line per step.
    fn plan(query: &SearchQuery) -> Vec<String> {
        let conn = Connection::open_in_memory().unwrap();
        for m in migrate::EMBEDDED {
            conn.execute_batch(m.sql).unwrap();
        }
        let (sql, params) = statement(query, None);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.0), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn pages_read_the_log_in_order_without_sorting_it() {
        let base = SearchQuery::new(TenantId::new("acme").unwrap());
        let now = Utc::now();
        let shapes = [
            base.clone(),
            SearchQuery {
                types: vec!["tickets.ticket_*".into()],
                domains: vec![Domain::new("tickets").unwrap()],
                payload_equals: vec![(vec!["customer".into()], json!("acme"))],
                ..base.clone()
            },
            SearchQuery {
                recorded_from: Some(now),
                recorded_to: Some(now + chrono::Duration::hours(1)),
                ..base.clone()
            },
            SearchQuery {
                streams: vec!["tickets/T-1".parse().unwrap(), "edges/E-1".parse().unwrap()],
                recorded_from: Some(now),
                ..base
            },
        ];
        for query in shapes {
            let plan = plan(&query);
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{query:?} sorts: {plan:#?}"
            );
            assert!(
                plan[0].contains("INTEGER PRIMARY KEY"),
                "{query:?} does not read the log by position: {plan:#?}"
            );
        }
    }

    #[test]
    fn one_exact_type_is_read_from_the_type_index_without_sorting() {
        let base = SearchQuery::new(TenantId::new("acme").unwrap());
        let now = Utc::now();
        for query in [
            SearchQuery {
                types: vec!["tickets.ticket_opened".into()],
                payload_equals: vec![(vec!["customer".into()], json!("acme"))],
                ..base.clone()
            },
            SearchQuery {
                types: vec!["tickets.ticket_opened".into()],
                recorded_from: Some(now),
                recorded_to: Some(now + chrono::Duration::hours(1)),
                ..base
            },
        ] {
            let plan = plan(&query);
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{query:?} sorts: {plan:#?}"
            );
            assert!(
                plan[0].contains("herald_events_type"),
                "{query:?} does not read the type index: {plan:#?}"
            );
        }
    }
}
