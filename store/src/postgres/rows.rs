//! Converting between Postgres rows and events: decoding a stored row into an
//! envelope (a malformed row is reported as corrupt, with its position) and
//! laying a batch out as the column arrays of one `unnest` insert.

use chrono::{DateTime, Utc};
use herald_events::{
    ChainHash, EventEnvelope, EventId, Position, SchemaVersion, StreamId, StreamVersion, TenantId,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::LogHead;
use crate::plan::StreamKey;

fn corrupt(position: i64, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        position: Position(position.max(0) as u64),
        detail: detail.to_string(),
    }
}

pub(super) fn head(row: &Row) -> Result<LogHead, StoreError> {
    let position: i64 = row.get(0);
    let hash: Vec<u8> = row.get(1);
    Ok(LogHead {
        position: Position(position as u64),
        hash: ChainHash::from_slice(&hash)
            .ok_or_else(|| corrupt(position, "log head hash is not 32 bytes"))?,
        recorded_at: row.get(2),
    })
}

/// Reads (tenant, domain, stream_id) starting at column `at`.
pub(super) fn stream_key(row: &Row, at: usize) -> Result<StreamKey, StoreError> {
    let tenant: &str = row.get(at);
    let domain: &str = row.get(at + 1);
    let id: &str = row.get(at + 2);
    Ok(StreamKey {
        tenant: TenantId::new(tenant).map_err(|e| corrupt(0, e))?,
        stream: StreamId::stored_parts(domain, id).map_err(|e| corrupt(0, e))?,
    })
}

/// Decodes a row of `SELECT_EVENT`.
pub(super) fn event(row: &Row) -> Result<EventEnvelope, StoreError> {
    let position: i64 = row.get(0);
    let bad = |e: &dyn std::fmt::Display| corrupt(position, e);
    let domain: &str = row.get(3);
    let stream_id: &str = row.get(4);
    let hash: Vec<u8> = row.get(14);
    Ok(EventEnvelope {
        position: Position(position as u64),
        id: EventId(row.get(1)),
        tenant: TenantId::new(row.get::<_, &str>(2)).map_err(|e| bad(&e))?,
        stream: StreamId::stored_parts(domain, stream_id).map_err(|e| bad(&e))?,
        stream_version: StreamVersion(row.get::<_, i64>(5) as u64),
        event_type: row.get::<_, &str>(6).parse().map_err(|e| bad(&e))?,
        version: SchemaVersion::new(row.get::<_, i32>(7) as u32).map_err(|e| bad(&e))?,
        occurred_at: row.get(8),
        recorded_at: row.get(9),
        correlation_id: row.get(10),
        causation_id: row.get(11),
        producer: row.get(12),
        payload: row.get(13),
        hash: ChainHash::from_slice(&hash).ok_or_else(|| bad(&"hash is not 32 bytes"))?,
    })
}

/// A batch as column arrays, for `INSERT … SELECT * FROM unnest(…)`.
pub(super) struct Columns<'a> {
    position: Vec<i64>,
    id: Vec<Uuid>,
    tenant: Vec<&'a str>,
    domain: Vec<&'a str>,
    stream_id: Vec<&'a str>,
    stream_version: Vec<i64>,
    event_type: Vec<&'a str>,
    schema_version: Vec<i32>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<Uuid>,
    causation_id: Vec<Uuid>,
    producer: Vec<&'a str>,
    payload: Vec<&'a serde_json::Value>,
    hash: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    pub fn of(rows: &'a [EventEnvelope]) -> Self {
        let n = rows.len();
        let mut c = Columns {
            position: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            domain: Vec::with_capacity(n),
            stream_id: Vec::with_capacity(n),
            stream_version: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            schema_version: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
            correlation_id: Vec::with_capacity(n),
            causation_id: Vec::with_capacity(n),
            producer: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
        };
        for r in rows {
            c.position.push(r.position.get() as i64);
            c.id.push(r.id.as_uuid());
            c.tenant.push(r.tenant.as_str());
            c.domain.push(r.stream.domain().as_str());
            c.stream_id.push(r.stream.id());
            c.stream_version.push(r.stream_version.get() as i64);
            c.event_type.push(r.event_type.as_str());
            c.schema_version.push(r.version.get() as i32);
            c.occurred_at.push(r.occurred_at);
            c.recorded_at.push(r.recorded_at);
            c.correlation_id.push(r.correlation_id);
            c.causation_id.push(r.causation_id);
            c.producer.push(&r.producer);
            c.payload.push(&r.payload);
            c.hash.push(r.hash.as_bytes());
        }
        c
    }

    pub fn params(&self) -> [&(dyn ToSql + Sync); 15] {
        [
            &self.position,
            &self.id,
            &self.tenant,
            &self.domain,
            &self.stream_id,
            &self.stream_version,
            &self.event_type,
            &self.schema_version,
            &self.occurred_at,
            &self.recorded_at,
            &self.correlation_id,
            &self.causation_id,
            &self.producer,
            &self.payload,
            &self.hash,
        ]
    }
}
