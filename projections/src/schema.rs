//! The runner's own tables and their queries: one checkpoint row per
//! projection (version, last position applied) and the parked (dead-letter)
//! events. Every write here happens inside the transaction that also holds
//! the projection's effect, which is what makes the effect exactly-once.

use chrono::{DateTime, Utc};
use herald_events::{EventId, Position};
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use crate::ProjectionError;

/// Taken (transaction-scoped) while creating tables, so runners starting at
/// once do not race on `CREATE TABLE IF NOT EXISTS` (which is not atomic
/// against a concurrent creation of the same table).
const SCHEMA_LOCK: i64 = 0x4845_5241_4c44_5052; // "HERALDPR"

const DDL: &str = "\
CREATE TABLE IF NOT EXISTS herald_projection_checkpoints (
    name text PRIMARY KEY,
    version int NOT NULL,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS herald_projection_parked (
    name text NOT NULL,
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    error text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);";

/// An event a projection could not apply, set aside so the projection goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub name: String,
    pub position: Position,
    pub event_id: EventId,
    /// The error `apply` gave (the latest one, after a failed retry).
    pub error: String,
    pub parked_at: DateTime<Utc>,
}

/// A checkpoint row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    pub version: u32,
    pub position: Position,
    pub updated_at: DateTime<Utc>,
}

pub(crate) async fn create_runner_tables(tx: &Transaction<'_>) -> Result<(), ProjectionError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(DDL).await?;
    Ok(())
}

/// Creates the checkpoint row at position 0 if there is none; returns the row.
pub(crate) async fn register(
    tx: &Transaction<'_>,
    name: &str,
    version: u32,
) -> Result<Checkpoint, ProjectionError> {
    tx.execute(
        "INSERT INTO herald_projection_checkpoints (name, version, position) \
         VALUES ($1, $2, 0) ON CONFLICT (name) DO NOTHING",
        &[&name, &(version as i32)],
    )
    .await?;
    Ok(load(tx, name)
        .await?
        .expect("the checkpoint row was just made"))
}

pub(crate) async fn load(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Checkpoint>, ProjectionError> {
    let row = client
        .query_opt(
            "SELECT version, position, updated_at FROM herald_projection_checkpoints \
             WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| Checkpoint {
        version: r.get::<_, i32>(0) as u32,
        position: Position(r.get::<_, i64>(1) as u64),
        updated_at: r.get(2),
    }))
}

/// Locks the projection's checkpoint row for the rest of the transaction and
/// returns its position. The lock serializes everything that moves one
/// projection (two runners of it, a retry of a parked event): the second one
/// waits, then sees the position moved and does not apply the batch again.
pub(crate) async fn lock(tx: &Transaction<'_>, name: &str) -> Result<Position, ProjectionError> {
    let row = tx
        .query_one(
            "SELECT position FROM herald_projection_checkpoints WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?;
    Ok(Position(row.get::<_, i64>(0) as u64))
}

pub(crate) async fn advance(
    tx: &Transaction<'_>,
    name: &str,
    to: Position,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE herald_projection_checkpoints SET position = $2, updated_at = now() \
         WHERE name = $1",
        &[&name, &(to.get() as i64)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn park(
    tx: &Transaction<'_>,
    name: &str,
    position: Position,
    event_id: EventId,
    error: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO herald_projection_parked (name, position, event_id, error) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name, position) DO UPDATE SET error = EXCLUDED.error, parked_at = now()",
        &[&name, &(position.get() as i64), &event_id.as_uuid(), &error],
    )
    .await?;
    Ok(())
}

/// Locks a parked row; `None` when the event is not parked.
pub(crate) async fn lock_parked(
    tx: &Transaction<'_>,
    name: &str,
    position: Position,
) -> Result<Option<Uuid>, ProjectionError> {
    let row = tx
        .query_opt(
            "SELECT event_id FROM herald_projection_parked \
             WHERE name = $1 AND position = $2 FOR UPDATE",
            &[&name, &(position.get() as i64)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) async fn unpark(
    tx: &Transaction<'_>,
    name: &str,
    position: Position,
) -> Result<(), ProjectionError> {
    tx.execute(
        "DELETE FROM herald_projection_parked WHERE name = $1 AND position = $2",
        &[&name, &(position.get() as i64)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_parked_error(
    client: &impl GenericClient,
    name: &str,
    position: Position,
    error: &str,
) -> Result<(), ProjectionError> {
    client
        .execute(
            "UPDATE herald_projection_parked SET error = $3 WHERE name = $1 AND position = $2",
            &[&name, &(position.get() as i64), &error],
        )
        .await?;
    Ok(())
}

pub(crate) async fn list_parked(
    client: &impl GenericClient,
    name: &str,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    let rows = client
        .query(
            "SELECT name, position, event_id, error, parked_at FROM herald_projection_parked \
             WHERE name = $1 ORDER BY position",
            &[&name],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ParkedEvent {
            name: r.get(0),
            position: Position(r.get::<_, i64>(1) as u64),
            event_id: EventId(r.get::<_, Uuid>(2)),
            error: r.get(3),
            parked_at: r.get(4),
        })
        .collect())
}
