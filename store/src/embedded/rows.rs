//! Converting between SQLite rows and events. Ids and times are stored as
//! text (hyphenated UUIDs, `YYYY-MM-DDTHH:MM:SS.ffffffZ`) and payloads as
//! canonical JSON text, so the file stays readable with the sqlite3 shell.

use chrono::{DateTime, Utc};
use herald_events::chain::{canonical_json, canonical_time};
use herald_events::{
    ChainHash, EventEnvelope, EventId, Position, SchemaVersion, StreamId, StreamVersion, TenantId,
};
use rusqlite::{params, CachedStatement, Row};
use uuid::Uuid;

use super::sqlite_error;
use crate::error::StoreError;
use crate::model::LogHead;
use crate::plan::StreamKey;

pub(super) const SELECT: &str = "SELECT position, event_id, tenant, domain, stream_id, \
     stream_version, event_type, schema_version, occurred_at, recorded_at, correlation_id, \
     causation_id, producer, payload, hash FROM herald_events";

pub(super) const INSERT: &str = "INSERT INTO herald_events (position, event_id, tenant, domain, \
     stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, \
     correlation_id, causation_id, producer, payload, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

fn corrupt(position: i64, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        position: Position(position.max(0) as u64),
        detail: detail.to_string(),
    }
}

fn time(position: i64, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(position, format!("time {text:?}: {e}")))
}

fn uuid(position: i64, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt(position, format!("id {text:?}: {e}")))
}

pub(super) fn head(row: &Row<'_>) -> rusqlite::Result<Result<LogHead, StoreError>> {
    let position: i64 = row.get(0)?;
    let hash: Vec<u8> = row.get(1)?;
    let recorded_at: Option<String> = row.get(2)?;
    Ok((|| {
        Ok(LogHead {
            position: Position(position as u64),
            hash: ChainHash::from_slice(&hash)
                .ok_or_else(|| corrupt(position, "log head hash is not 32 bytes"))?,
            recorded_at: recorded_at.map(|t| time(position, &t)).transpose()?,
        })
    })())
}

pub(super) fn stream_key(
    position: i64,
    tenant: &str,
    domain: &str,
    stream_id: &str,
) -> Result<StreamKey, StoreError> {
    Ok(StreamKey {
        tenant: TenantId::new(tenant).map_err(|e| corrupt(position, e))?,
        stream: StreamId::stored_parts(domain, stream_id).map_err(|e| corrupt(position, e))?,
    })
}

/// Decodes a row of [`SELECT`]; the outer error is SQLite's, the inner one a
/// row that does not hold a valid event.
pub(super) fn event(row: &Row<'_>) -> rusqlite::Result<Result<EventEnvelope, StoreError>> {
    let position: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let tenant: String = row.get(2)?;
    let domain: String = row.get(3)?;
    let stream_id: String = row.get(4)?;
    let stream_version: i64 = row.get(5)?;
    let event_type: String = row.get(6)?;
    let schema_version: i64 = row.get(7)?;
    let occurred_at: String = row.get(8)?;
    let recorded_at: String = row.get(9)?;
    let correlation_id: String = row.get(10)?;
    let causation_id: String = row.get(11)?;
    let producer: String = row.get(12)?;
    let payload: String = row.get(13)?;
    let hash: Vec<u8> = row.get(14)?;
    Ok((|| {
        let key = stream_key(position, &tenant, &domain, &stream_id)?;
        Ok(EventEnvelope {
            position: Position(position as u64),
            id: EventId(uuid(position, &id)?),
            tenant: key.tenant,
            stream: key.stream,
            stream_version: StreamVersion(stream_version as u64),
            event_type: event_type.parse().map_err(|e| corrupt(position, e))?,
            version: u32::try_from(schema_version)
                .ok()
                .and_then(|v| SchemaVersion::new(v).ok())
                .ok_or_else(|| corrupt(position, "schema version out of range"))?,
            occurred_at: time(position, &occurred_at)?,
            recorded_at: time(position, &recorded_at)?,
            correlation_id: uuid(position, &correlation_id)?,
            causation_id: uuid(position, &causation_id)?,
            producer,
            payload: serde_json::from_str(&payload).map_err(|e| corrupt(position, e))?,
            hash: ChainHash::from_slice(&hash)
                .ok_or_else(|| corrupt(position, "hash is not 32 bytes"))?,
        })
    })())
}

pub(super) fn insert(
    stmt: &mut CachedStatement<'_>,
    row: &EventEnvelope,
) -> Result<(), StoreError> {
    stmt.execute(params![
        row.position.get() as i64,
        row.id.as_uuid().hyphenated().to_string(),
        row.tenant.as_str(),
        row.stream.domain().as_str(),
        row.stream.id(),
        row.stream_version.get() as i64,
        row.event_type.as_str(),
        row.version.get() as i64,
        canonical_time(&row.occurred_at),
        canonical_time(&row.recorded_at),
        row.correlation_id.hyphenated().to_string(),
        row.causation_id.hyphenated().to_string(),
        row.producer,
        canonical_json(&row.payload),
        row.hash.as_bytes().as_slice(),
    ])
    .map_err(sqlite_error)?;
    Ok(())
}
