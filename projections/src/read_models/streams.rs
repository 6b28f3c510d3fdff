//! The streams read model: one row per (tenant, stream) of every domain,
//! built-in or registered at run time — the stream's domain and id, the
//! version and type of its latest event, when its first and latest events
//! were recorded, and how many events it holds — and the query that lists
//! them (`/v1/views/streams`), on either database.
//!
//! It reads every event and knows no payload: nothing here depends on a
//! domain's types, so a domain whose events were registered an hour ago is
//! listed like `tickets`, and no event can be refused (none is parked).
//! Times are the store's `recorded_at`, not the producer's `occurred_at`:
//! "when did this stream last change" is a question about the log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_events::EventEnvelope;
use serde::Serialize;
use serde_json::Value;

use super::page::{id_cursor, page_size, time_cursor};
use super::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};
use crate::sql::{
    read_model, serve, Cell, Column, Db, Dialect, Index, OnConflict, RowKey, RowReader, Rows,
    Serving, Table, Type,
};
use crate::ProjectionError;

/// The projection's name: its checkpoint and schema prefix.
pub const NAME: &str = "streams";

/// The version of the table's shape and of the fold.
const VERSION: u32 = 1;

/// The most domains one query may name (the HTTP API's `domain` filter).
pub const MAX_DOMAINS: usize = 20;

const TABLE_NAMES: &[&str] = &["streams"];

const TABLES: &[&Table] = &[&STREAMS];

/// Keyed by the whole stream name (`domain/id`) rather than by domain and
/// id: a batch loads its rows by (tenant, one text) through the primary
/// key, and listing by stream is one ordered index scan.
const STREAMS: Table = Table {
    name: "streams",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("stream", Type::Text),
        Column::new("domain", Type::Text),
        Column::new("version", Type::Int),
        Column::new("last_event_type", Type::Text),
        Column::new("first_event_at", Type::Time),
        Column::new("last_event_at", Type::Time),
        Column::new("event_count", Type::Int),
    ],
    key: 2,
    indexes: &[
        // A domain's streams by name: the `domain` (and `prefix`) filter.
        Index {
            name: "streams_by_domain",
            on: "tenant, domain, stream",
        },
        // The most recently changed first, and `updated_after`/`_before`.
        Index {
            name: "streams_by_last_event_at",
            on: "tenant, last_event_at, stream",
        },
    ],
    on_conflict: OnConflict::Replace,
};

/// Every event, of every domain: the point of this read model.
fn accepts(_event: &EventEnvelope) -> bool {
    true
}

/// Projects every event into the `streams` table.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamsProjection;

read_model!(StreamsProjection);

/// A row of `streams`, as stored and as a batch leaves it.
#[derive(Debug, Clone)]
struct StreamRow {
    tenant: String,
    /// `domain/id`.
    stream: String,
    domain: String,
    version: i64,
    last_event_type: String,
    first_event_at: DateTime<Utc>,
    last_event_at: DateTime<Utc>,
    event_count: i64,
}

impl StreamRow {
    /// The row of [`STREAMS`], from either database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            tenant: row.text("tenant")?,
            stream: row.text("stream")?,
            domain: row.text("domain")?,
            version: row.int("version")?,
            last_event_type: row.text("last_event_type")?,
            first_event_at: row.time("first_event_at")?,
            last_event_at: row.time("last_event_at")?,
            event_count: row.int("event_count")?,
        })
    }

    /// The row as [`STREAMS`] writes it.
    fn cells(self) -> [Cell; 8] {
        [
            self.tenant.into(),
            self.stream.into(),
            self.domain.into(),
            self.version.into(),
            self.last_event_type.into(),
            self.first_event_at.into(),
            self.last_event_at.into(),
            self.event_count.into(),
        ]
    }

    /// The row of a stream whose first event is `event`.
    fn first(event: &EventEnvelope) -> Self {
        Self {
            tenant: event.tenant.as_str().to_owned(),
            stream: event.stream.as_str().to_owned(),
            domain: event.stream.domain().as_str().to_owned(),
            version: event.stream_version.get() as i64,
            last_event_type: event.event_type.as_str().to_owned(),
            first_event_at: event.recorded_at,
            last_event_at: event.recorded_at,
            event_count: 1,
        }
    }

    /// One more event of the stream. Batches come in position order, and
    /// a stream's versions grow with its positions, so the event is the
    /// stream's latest.
    fn absorb(&mut self, event: &EventEnvelope) {
        self.version = event.stream_version.get() as i64;
        if self.last_event_type != event.event_type.as_str() {
            self.last_event_type = event.event_type.as_str().to_owned();
        }
        self.last_event_at = event.recorded_at;
        self.event_count += 1;
    }
}

/// Writes the effect of a batch with one read and one write, whatever its
/// size: loads the rows of the streams it touches, folds its events over
/// them in memory, and upserts each stream once.
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    // Each event's stream as an index into `keys`, found with the event's
    // own text: no allocation per event, one per stream.
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut keys: Vec<RowKey> = Vec::new();
    let slots: Vec<usize> = events
        .iter()
        .map(|e| {
            *index
                .entry((e.tenant.as_str(), e.stream.as_str()))
                .or_insert_with(|| {
                    keys.push((e.tenant.as_str().to_owned(), e.stream.as_str().to_owned()));
                    keys.len() - 1
                })
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<Option<StreamRow>> = vec![None; keys.len()];
    for row in db
        .load(&STREAMS, "stream", &keys, "", "", StreamRow::from_row)
        .await?
    {
        if let Some(&slot) = index.get(&(row.tenant.as_str(), row.stream.as_str())) {
            rows[slot] = Some(row);
        }
    }
    for (event, slot) in events.iter().zip(slots) {
        match &mut rows[slot] {
            Some(row) => row.absorb(event),
            empty => *empty = Some(StreamRow::first(event)),
        }
    }
    let mut writes = Rows::new(&STREAMS);
    for row in rows.into_iter().flatten() {
        writes.push(row.cells());
    }
    db.upsert(&writes).await
}

// ---------------------------------------------------------------- queries

/// A stream as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    /// The stream, `domain/id` (`tickets/T-1001`).
    pub stream: String,
    /// Its domain: a built-in one or one registered at run time.
    pub domain: String,
    /// Its id within the domain (the part after `domain/`).
    pub id: String,
    /// The stream version of its latest event.
    pub version: u64,
    /// The type of its latest event, e.g. `tickets.ticket_assigned`.
    pub last_event_type: String,
    /// When the store recorded its first event.
    pub first_event_at: DateTime<Utc>,
    /// When the store recorded its latest event: what `updated_after`,
    /// `updated_before` and `sort=last_event_at` use.
    pub last_event_at: DateTime<Utc>,
    /// How many events it holds.
    pub event_count: u64,
}

impl From<StreamRow> for StreamView {
    fn from(r: StreamRow) -> Self {
        let id = r
            .stream
            .strip_prefix(r.domain.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(&r.stream)
            .to_owned();
        Self {
            id,
            stream: r.stream,
            domain: r.domain,
            version: r.version as u64,
            last_event_type: r.last_event_type,
            first_event_at: r.first_event_at,
            last_event_at: r.last_event_at,
            event_count: r.event_count as u64,
        }
    }
}

/// How a list of streams is sorted (then by stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamSort {
    /// By the stream's name, `domain/id`: by domain, then by id.
    #[default]
    Stream,
    /// By when the store recorded its latest event.
    LastEventAt,
}

impl StreamSort {
    /// The `sort` values, the default first.
    pub const NAMES: &'static [&'static str] = &["stream", "last_event_at"];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamSort::Stream => "stream",
            StreamSort::LastEventAt => "last_event_at",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Stream, Self::LastEventAt]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The cursor after `row` in this sort.
    fn cursor(self, row: &StreamRow) -> Cursor {
        match self {
            StreamSort::Stream => id_cursor(self.as_str(), &row.stream),
            StreamSort::LastEventAt => time_cursor(self.as_str(), row.last_event_at, &row.stream),
        }
    }

    /// The parameters of the keyset, in the order [`list_sql`] numbers
    /// them: the cursor's time (under `sort=last_event_at`) and stream,
    /// NULL without a cursor. A cursor whose value is not of this sort's
    /// kind is refused here rather than failing the query.
    fn after(self, cursor: Option<&Cursor>) -> Result<Vec<Cell>, ProjectionError> {
        let stream = Cell::Text(cursor.map(|c| c.id.clone()));
        match (self, cursor.map(|c| &c.value)) {
            (StreamSort::Stream, None | Some(Value::String(_))) => Ok(vec![stream]),
            (StreamSort::LastEventAt, None) => Ok(vec![Cell::Time(None), stream]),
            (StreamSort::LastEventAt, Some(Value::String(text))) => {
                let time = DateTime::parse_from_rfc3339(text)
                    .map_err(|_| crate::QueryFault::ForeignCursor)?
                    .with_timezone(&Utc);
                Ok(vec![time.into(), stream])
            }
            _ => Err(crate::QueryFault::ForeignCursor.into()),
        }
    }
}

/// A page of a tenant's streams: filters (all optional, combined with
/// and), sort, order, size and where to start.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamQuery {
    /// Only streams of these domains; `None` for every domain. An empty
    /// list lists nothing. The names are not checked here (a name no
    /// stream has simply matches none).
    pub domains: Option<Vec<String>>,
    /// Only streams whose id within their domain starts with this text
    /// (case-sensitive; `%` and `_` are themselves).
    pub prefix: Option<String>,
    /// Only streams whose latest event was recorded at or after this.
    pub updated_after: Option<DateTime<Utc>>,
    /// Only streams whose latest event was recorded strictly before this.
    pub updated_before: Option<DateTime<Utc>>,
    pub sort: StreamSort,
    pub order: SortOrder,
    /// Rows per page, 1 to [`MAX_PAGE_SIZE`] (clamped).
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for StreamQuery {
    fn default() -> Self {
        Self {
            domains: None,
            prefix: None,
            updated_after: None,
            updated_before: None,
            sort: StreamSort::default(),
            order: SortOrder::default(),
            limit: 50,
            cursor: None,
        }
    }
}

/// How a query names domains, which shapes its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomainFilter {
    Every,
    /// One domain: an equality, so that the index of a domain's streams
    /// serves its pages in order, without reading the domain whole.
    One,
    Several,
}

impl DomainFilter {
    /// The filter of `domains` and its parameter: NULL, the domain, or a
    /// JSON array of them.
    fn of(domains: Option<&[String]>) -> (Self, Cell) {
        match domains {
            None => (DomainFilter::Every, Cell::Json(None)),
            Some([one]) => (DomainFilter::One, one.as_str().into()),
            Some(several) => (
                DomainFilter::Several,
                Value::Array(several.iter().map(|d| Value::from(d.as_str())).collect()).into(),
            ),
        }
    }
}

/// The statement of a page. Its parameters: the tenant, the domains (as
/// [`DomainFilter::of`] gives them), the prefix, the two bounds of the latest
/// event's time (NULL when absent), then those of [`StreamSort::after`]
/// (the cursor's time under `sort=last_event_at`, and its stream; NULL
/// without a cursor) and the row limit.
fn list_sql(db: &impl Db, domains: DomainFilter, sort: StreamSort, order: SortOrder) -> String {
    let dialect = db.dialect();
    let p = |n, ty| dialect.param(n, ty);
    // Several domains travel as one JSON array on both databases, so one
    // statement serves any number of them.
    let in_domains = match (domains, dialect) {
        (DomainFilter::Every, _) => format!("{} IS NULL", p(2, Type::Json)),
        (DomainFilter::One, _) => format!("domain = {}", p(2, Type::Text)),
        (DomainFilter::Several, Dialect::Postgres) => format!(
            "domain IN (SELECT jsonb_array_elements_text({}))",
            p(2, Type::Json)
        ),
        (DomainFilter::Several, Dialect::Sqlite) => format!(
            "domain IN (SELECT value FROM json_each({}))",
            p(2, Type::Json)
        ),
    };
    let with_prefix =
        dialect.starts_with("stream", &format!("domain || '/' || {}", p(3, Type::Text)));
    let (after, direction) = (order.after(), order.sql());
    let (stream, beyond, order_by, limit) = match sort {
        StreamSort::Stream => (
            p(6, Type::Text),
            format!("stream {after} {}", p(6, Type::Text)),
            format!("stream {direction}"),
            p(7, Type::Int),
        ),
        StreamSort::LastEventAt => (
            p(7, Type::Text),
            format!(
                "(last_event_at, stream) {after} ({}, {})",
                p(6, Type::Time),
                p(7, Type::Text)
            ),
            format!("last_event_at {direction}, stream {direction}"),
            p(8, Type::Int),
        ),
    };
    // Absent filters are NULL parameters: the planner drops their tests.
    format!(
        "SELECT {} FROM {}
         WHERE tenant = {}
           AND {in_domains}
           AND ({} IS NULL OR {with_prefix})
           AND ({} IS NULL OR last_event_at >= {})
           AND ({} IS NULL OR last_event_at < {})
           AND ({stream} IS NULL OR {beyond})
         ORDER BY {order_by}
         LIMIT {limit}",
        STREAMS.column_list(),
        db.table(STREAMS.name),
        p(1, Type::Text),
        p(3, Type::Text),
        p(4, Type::Time),
        p(4, Type::Time),
        p(5, Type::Time),
        p(5, Type::Time),
    )
}

/// A page of `tenant`'s streams.
pub async fn list<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    query: &StreamQuery,
) -> Result<Page<StreamView>, ProjectionError> {
    let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
    if query.domains.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    let (filter, domains) = DomainFilter::of(query.domains.as_deref());
    let mut params: Vec<Cell> = vec![
        tenant.into(),
        domains,
        query.prefix.clone().into(),
        query.updated_after.into(),
        query.updated_before.into(),
    ];
    params.extend(query.sort.after(query.cursor.as_ref())?);
    params.push(page_size(limit).into());
    let (sort, order) = (query.sort, query.order);
    serve!(read_models.into(), NAME, |db| async move {
        let rows = db
            .rows(
                &list_sql(db, filter, sort, order),
                &params,
                StreamRow::from_row,
            )
            .await?;
        let page = paginate(rows, limit, |r| sort.cursor(r));
        Ok(Page {
            items: page.items.into_iter().map(StreamView::from).collect(),
            next_cursor: page.next_cursor,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_prepares_on_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let prefix = "rm_streams_g1_";
        let ddl = crate::sql::ddl(Dialect::Sqlite, prefix, TABLES);
        conn.execute_batch(&ddl).unwrap();
        conn.execute_batch(&ddl).unwrap();
        conn.prepare(&STREAMS.upsert_sql(Dialect::Sqlite, prefix))
            .unwrap();
        let db = crate::sql::Lite::new(&conn, prefix);
        for filter in [
            DomainFilter::Every,
            DomainFilter::One,
            DomainFilter::Several,
        ] {
            for sort in [StreamSort::Stream, StreamSort::LastEventAt] {
                for order in [SortOrder::Asc, SortOrder::Desc] {
                    conn.prepare(&list_sql(&db, filter, sort, order)).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_stream_id_is_its_name_without_the_domain() {
        let at: DateTime<Utc> = "2026-03-01T09:00:00Z".parse().unwrap();
        let row = StreamRow {
            tenant: "acme".into(),
            stream: "a_b/c:d".into(),
            domain: "a_b".into(),
            version: 3,
            last_event_type: "a_b.x".into(),
            first_event_at: at,
            last_event_at: at,
            event_count: 3,
        };
        let view = StreamView::from(row);
        assert_eq!((view.domain.as_str(), view.id.as_str()), ("a_b", "c:d"));
    }

    #[test]
    fn sort_names_round_trip_and_cursors_of_another_kind_are_refused() {
        for name in StreamSort::NAMES {
            assert_eq!(StreamSort::parse(name).unwrap().as_str(), *name);
        }
        assert_eq!(StreamSort::parse("id"), None);
        let cursor = |value: Value| Cursor {
            sort: "last_event_at".into(),
            value,
            id: "tickets/T-1".into(),
        };
        assert!(StreamSort::LastEventAt
            .after(Some(&cursor(Value::from("yesterday"))))
            .is_err());
        assert!(StreamSort::LastEventAt
            .after(Some(&cursor(Value::from(5))))
            .is_err());
        assert!(StreamSort::Stream
            .after(Some(&cursor(Value::from(5))))
            .is_err());
        let after = StreamSort::LastEventAt
            .after(Some(&cursor(Value::from("2026-03-01T10:00:00+01:00"))))
            .unwrap();
        assert_eq!(
            after,
            [
                Cell::Time(Some("2026-03-01T09:00:00Z".parse().unwrap())),
                Cell::Text(Some("tickets/T-1".into()))
            ]
        );
        assert_eq!(StreamSort::Stream.after(None).unwrap(), [Cell::Text(None)]);
    }
}
