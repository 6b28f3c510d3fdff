//! Audit reads in the SQLite file: a page of rows as stored, by keyset on
//! the rowid (`position`), read in position order with no index (`NOT
//! INDEXED`: the filters are checked on the rows of the range, and a page
//! stops as soon as it is full). Rows are kept as their column texts: the
//! store writes ids, times and payloads in canonical form, so their
//! canonical bytes are those texts put together, and they are decoded only
//! when asked. A row whose columns are not even of the types Herald writes
//! (SQLite keeps whatever is written) is decoded at once, to say why it does
//! not read as an event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::chain::canonical_time;
use herald_events::{ChainHash, EventEnvelope, EventId, Position, SchemaVersion, StreamVersion};
use rusqlite::types::Value as SqlValue;
use rusqlite::Row;
use uuid::Uuid;

use super::{rows, sqlite_error, EmbeddedStore};
use crate::audit::canonical::{write_event, Columns, Id, Payload, Time};
use crate::audit::{position_of, AuditLog, AuditRow, RowFilter, StoredRow};
use crate::error::StoreError;
use crate::search::{like_pattern, stored_bound, LIKE_ESCAPE};
use crate::sql_limit;

/// The statement for a filter and its parameters after `?1` (from) and `?2`
/// (limit), which each page binds.
fn statement(filter: &RowFilter) -> (String, Vec<SqlValue>) {
    let mut params: Vec<SqlValue> = Vec::new();
    let mut bind = |value: SqlValue| {
        params.push(value);
        format!("?{}", params.len() + 2)
    };
    let mut filters = vec![
        "position >= ?1".to_owned(),
        format!("position <= {}", bind(filter.to_sql().into())),
    ];
    let mut any_of =
        |column: &str, values: Vec<String>, bind: &mut dyn FnMut(SqlValue) -> String| {
            if !values.is_empty() {
                let list: Vec<String> = values.into_iter().map(|v| bind(v.into())).collect();
                filters.push(format!("{column} IN ({})", list.join(", ")));
            }
        };
    any_of(
        "tenant",
        filter
            .tenants
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        &mut bind,
    );
    any_of(
        "domain",
        filter
            .domains
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect(),
        &mut bind,
    );
    if !filter.streams.is_empty() {
        let any: Vec<String> = filter
            .streams
            .iter()
            .map(|s| {
                let domain = bind(s.domain().as_str().to_owned().into());
                let id = bind(s.id().to_owned().into());
                format!("(domain = {domain} AND stream_id = {id})")
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if !filter.types.is_empty() {
        let any: Vec<String> = filter
            .types
            .iter()
            .map(|t| {
                format!(
                    "event_type LIKE {} ESCAPE '{LIKE_ESCAPE}'",
                    bind(like_pattern(t).into())
                )
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    // Stored times are fixed-width text, so text order is time order.
    if let Some(from) = filter.recorded_from {
        filters.push(format!(
            "recorded_at >= {}",
            bind(canonical_time(&stored_bound(from)).into())
        ));
    }
    if let Some(to) = filter.recorded_to {
        filters.push(format!(
            "recorded_at < {}",
            bind(canonical_time(&stored_bound(to)).into())
        ));
    }
    let sql = format!(
        "{} NOT INDEXED WHERE {} ORDER BY position LIMIT ?2",
        rows::SELECT,
        filters.join(" AND ")
    );
    (sql, params)
}

/// The columns of a row, as the texts and numbers the store writes.
#[derive(Debug)]
struct SqliteRow {
    position: i64,
    id: String,
    tenant: String,
    domain: String,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i64,
    occurred_at: String,
    recorded_at: String,
    correlation_id: String,
    causation_id: String,
    producer: String,
    payload: String,
    hash: Vec<u8>,
}

impl SqliteRow {
    /// The row's columns, when each is of the type the store writes.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            position: row.get(0)?,
            id: row.get(1)?,
            tenant: row.get(2)?,
            domain: row.get(3)?,
            stream_id: row.get(4)?,
            stream_version: row.get(5)?,
            event_type: row.get(6)?,
            schema_version: row.get(7)?,
            occurred_at: row.get(8)?,
            recorded_at: row.get(9)?,
            correlation_id: row.get(10)?,
            causation_id: row.get(11)?,
            producer: row.get(12)?,
            payload: row.get(13)?,
            hash: row.get(14)?,
        })
    }
}

/// Why a column does not read, said as the store's readers say it.
fn bad(what: &str, text: &str, e: impl std::fmt::Display) -> String {
    format!("{what} {text:?}: {e}")
}

fn time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad("time", text, e))
}

fn uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|e| bad("id", text, e))
}

impl StoredRow for SqliteRow {
    fn canonical_bytes(&self, position: u64, out: &mut Vec<u8>) -> bool {
        let columns = Columns {
            id: Id::Text(&self.id),
            tenant: &self.tenant,
            domain: &self.domain,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            version: self.schema_version,
            occurred_at: Time::Text(&self.occurred_at),
            recorded_at: Time::Text(&self.recorded_at),
            correlation_id: Id::Text(&self.correlation_id),
            causation_id: Id::Text(&self.causation_id),
            producer: &self.producer,
            payload: Payload::Canonical(&self.payload),
        };
        write_event(&columns, position, out)
    }

    /// As `rows::event` decodes a row (the same checks, the same messages).
    fn decode(&self) -> Result<EventEnvelope, String> {
        let key = rows::stream_key(self.position, &self.tenant, &self.domain, &self.stream_id)
            .map_err(|e| match e {
                StoreError::Corrupt { detail, .. } => detail,
                other => other.to_string(),
            })?;
        Ok(EventEnvelope {
            position: position_of(self.position),
            id: EventId(uuid(&self.id)?),
            tenant: key.tenant,
            stream: key.stream,
            stream_version: StreamVersion(self.stream_version as u64),
            event_type: self.event_type.parse().map_err(|e| format!("{e}"))?,
            version: u32::try_from(self.schema_version)
                .ok()
                .and_then(|v| SchemaVersion::new(v).ok())
                .ok_or_else(|| "schema version out of range".to_owned())?,
            occurred_at: time(&self.occurred_at)?,
            recorded_at: time(&self.recorded_at)?,
            correlation_id: uuid(&self.correlation_id)?,
            causation_id: uuid(&self.causation_id)?,
            producer: self.producer.clone(),
            payload: serde_json::from_str(&self.payload).map_err(|e| e.to_string())?,
            hash: ChainHash::from_slice(&self.hash)
                .ok_or_else(|| "hash is not 32 bytes".to_owned())?,
        })
    }
}

/// A row of [`rows::SELECT`] as an audit row.
fn audit_row(row: &Row<'_>) -> AuditRow {
    let position = position_of(row.get(0).unwrap_or(0));
    match SqliteRow::read(row) {
        Ok(columns) => {
            let hash = ChainHash::from_slice(&columns.hash);
            AuditRow::stored(position, hash, Box::new(columns))
        }
        // Columns of types Herald never writes there: decoded now, to say why.
        Err(_) => {
            let hash: Option<Vec<u8>> = row.get(14).ok();
            let hash = hash.as_deref().and_then(ChainHash::from_slice);
            let event = match rows::event(row) {
                Ok(Ok(event)) => Ok(event),
                Ok(Err(StoreError::Corrupt { detail, .. })) => Err(detail),
                Ok(Err(other)) => Err(other.to_string()),
                Err(e) => Err(e.to_string()),
            };
            AuditRow::from_event(position, hash, event)
        }
    }
}

#[async_trait]
impl AuditLog for EmbeddedStore {
    async fn audit_page(
        &self,
        filter: &RowFilter,
        from: Position,
        max: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        filter.validate()?;
        let (sql, params) = statement(filter);
        let from = i64::try_from(from.get()).unwrap_or(i64::MAX);
        let limit = sql_limit(max);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&from, &limit];
            values.extend(params.iter().map(|p| p as &dyn rusqlite::ToSql));
            let found = stmt
                .query_map(values.as_slice(), |row| Ok(audit_row(row)))
                .map_err(sqlite_error)?;
            found.map(|r| r.map_err(sqlite_error)).collect()
        })
        .await
    }
}

impl EmbeddedStore {
    /// Runs SQL on the store's file as it is, between appends, checking
    /// nothing: for tests and repair tools that must change stored rows
    /// directly (showing that `herald audit verify` catches such changes is
    /// what it exists for). Whatever it changes bypasses every guarantee of
    /// the store; anyone who can write the file can do the same.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.to_owned();
        self.write(move |conn| conn.execute_batch(&sql).map_err(sqlite_error))
            .await
    }
}
