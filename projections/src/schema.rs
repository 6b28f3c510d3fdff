//! The runner's own tables and their queries: one row per generation of each
//! read model (its code version, state, checkpoint) and the parked
//! (dead-letter) events. Every checkpoint write happens inside the
//! transaction that also holds the projection's effect, which is what makes
//! the effect exactly-once; the blue-green switch is one transaction over
//! two generation rows.

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
CREATE TABLE IF NOT EXISTS herald_read_models (
    name text NOT NULL,
    generation int NOT NULL,
    version int NOT NULL,
    state text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    position bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz,
    PRIMARY KEY (name, generation)
);
CREATE UNIQUE INDEX IF NOT EXISTS herald_read_models_one_active
    ON herald_read_models (name) WHERE state = 'active';
CREATE UNIQUE INDEX IF NOT EXISTS herald_read_models_one_building
    ON herald_read_models (name) WHERE state = 'building';
CREATE TABLE IF NOT EXISTS herald_projection_parked (
    name text NOT NULL,
    generation int NOT NULL,
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    error text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, generation, position)
);
CREATE TABLE IF NOT EXISTS herald_projection_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);";

/// An event a projection could not apply, set aside so the projection goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedEvent {
    pub name: String,
    /// The generation of the read model that parked it.
    pub generation: u32,
    pub position: Position,
    pub event_id: EventId,
    /// The error `apply` gave (the latest one, after a failed retry).
    pub error: String,
    pub parked_at: DateTime<Utc>,
}

/// What a generation of a read model is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationState {
    /// Being filled from the log while another generation serves.
    Building,
    /// Serving queries (and following the log).
    Active,
    /// Replaced by a newer generation; dropped after a grace period.
    Retired,
}

impl GenerationState {
    fn as_str(self) -> &'static str {
        match self {
            GenerationState::Building => "building",
            GenerationState::Active => "active",
            GenerationState::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "building" => GenerationState::Building,
            "active" => GenerationState::Active,
            _ => GenerationState::Retired,
        }
    }
}

/// One generation's row.
#[derive(Debug, Clone, Copy)]
pub struct Generation {
    pub generation: u32,
    pub version: u32,
    pub state: GenerationState,
    pub position: Position,
    pub updated_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
}

/// The Postgres schema holding a generation's tables.
pub fn schema_name(name: &str, generation: u32) -> String {
    format!("rm_{name}_g{generation}")
}

pub(crate) async fn create_runner_tables(tx: &Transaction<'_>) -> Result<(), ProjectionError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(DDL).await?;
    Ok(())
}

const TAKE_LEASE: &str = "INSERT INTO herald_projection_leases (name, holder, expires_at) \
     VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
     WHERE herald_projection_leases.holder = EXCLUDED.holder \
     OR herald_projection_leases.expires_at < now()";

/// Takes or renews the lease of projection `name` for `holder`, timed by
/// the database's clock (processes on several machines agree on expiry);
/// true when `holder` holds it.
pub(crate) async fn take_lease(
    client: &impl GenericClient,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, ProjectionError> {
    let millis = ttl.as_millis() as f64;
    Ok(client
        .execute(TAKE_LEASE, &[&name, &holder, &millis])
        .await?
        == 1)
}

/// Gives up the lease of projection `name` if `holder` holds it.
pub(crate) async fn release_lease(
    client: &impl GenericClient,
    name: &str,
    holder: &str,
) -> Result<(), ProjectionError> {
    client
        .execute(
            "DELETE FROM herald_projection_leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
    Ok(())
}

const COLUMNS: &str = "generation, version, state, position, updated_at, switched_at";

fn generation(row: &tokio_postgres::Row) -> Generation {
    Generation {
        generation: row.get::<_, i32>(0) as u32,
        version: row.get::<_, i32>(1) as u32,
        state: GenerationState::parse(row.get(2)),
        position: Position(row.get::<_, i64>(3) as u64),
        updated_at: row.get(4),
        switched_at: row.get(5),
    }
}

/// Every generation of `name`, oldest first.
pub(crate) async fn generations(
    client: &impl GenericClient,
    name: &str,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM herald_read_models WHERE name = $1 ORDER BY generation"
            ),
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(generation).collect())
}

/// Every generation of `name`, oldest first, locked for the transaction:
/// what the runner's start, a rebuild request and the switch serialize on.
pub(crate) async fn lock_generations(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Vec<Generation>, ProjectionError> {
    // Serializes the very first registration too, when there is no row.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&((SCHEMA_LOCK >> 32) as i32), &name],
    )
    .await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM herald_read_models WHERE name = $1 \
                 ORDER BY generation FOR UPDATE"
            ),
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(generation).collect())
}

pub(crate) async fn active_generation(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<u32>, ProjectionError> {
    let row = client
        .query_opt(
            "SELECT generation FROM herald_read_models WHERE name = $1 AND state = 'active'",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, i32>(0) as u32))
}

/// Adds a generation (numbered after every earlier one) and its schema.
pub(crate) async fn create_generation(
    tx: &Transaction<'_>,
    name: &str,
    version: u32,
    state: GenerationState,
) -> Result<Generation, ProjectionError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO herald_read_models (name, generation, version, state) \
                 SELECT $1, coalesce(max(generation), 0) + 1, $2, $3 \
                 FROM herald_read_models WHERE name = $1 \
                 RETURNING {COLUMNS}"
            ),
            &[&name, &(version as i32), &state.as_str()],
        )
        .await?;
    let created = generation(&row);
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        schema_name(name, created.generation)
    ))
    .await?;
    Ok(created)
}

pub(crate) async fn set_state(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    state: GenerationState,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE herald_read_models SET state = $3, updated_at = now(), \
         switched_at = CASE WHEN $3 = 'building' THEN NULL ELSE now() END \
         WHERE name = $1 AND generation = $2",
        &[&name, &(generation as i32), &state.as_str()],
    )
    .await?;
    Ok(())
}

/// Drops a generation's schema, row and parked events.
pub(crate) async fn drop_generation(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
) -> Result<(), ProjectionError> {
    tx.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        schema_name(name, generation)
    ))
    .await?;
    tx.execute(
        "DELETE FROM herald_read_models WHERE name = $1 AND generation = $2",
        &[&name, &(generation as i32)],
    )
    .await?;
    tx.execute(
        "DELETE FROM herald_projection_parked WHERE name = $1 AND generation = $2",
        &[&name, &(generation as i32)],
    )
    .await?;
    Ok(())
}

/// Locks a generation's row for the rest of the transaction and returns its
/// position. The lock serializes everything that moves one generation (two
/// runners of it, a retry of a parked event, the switch): the second one
/// waits, then sees the position moved and does not apply the batch again.
/// `None` when the generation is gone (dropped by another runner).
pub(crate) async fn lock(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
) -> Result<Option<(Position, GenerationState)>, ProjectionError> {
    let row = tx
        .query_opt(
            "SELECT position, state FROM herald_read_models \
             WHERE name = $1 AND generation = $2 FOR UPDATE",
            &[&name, &(generation as i32)],
        )
        .await?;
    Ok(row.map(|r| {
        (
            Position(r.get::<_, i64>(0) as u64),
            GenerationState::parse(r.get(1)),
        )
    }))
}

pub(crate) async fn advance(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    to: Position,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE herald_read_models SET position = $3, updated_at = now() \
         WHERE name = $1 AND generation = $2",
        &[&name, &(generation as i32), &(to.get() as i64)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn park(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
    event_id: EventId,
    error: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO herald_projection_parked (name, generation, position, event_id, error) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name, generation, position) \
         DO UPDATE SET error = EXCLUDED.error, parked_at = now()",
        &[
            &name,
            &(generation as i32),
            &(position.get() as i64),
            &event_id.as_uuid(),
            &error,
        ],
    )
    .await?;
    Ok(())
}

/// Locks a parked row; `None` when the event is not parked.
pub(crate) async fn lock_parked(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
) -> Result<Option<Uuid>, ProjectionError> {
    let row = tx
        .query_opt(
            "SELECT event_id FROM herald_projection_parked \
             WHERE name = $1 AND generation = $2 AND position = $3 FOR UPDATE",
            &[&name, &(generation as i32), &(position.get() as i64)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) async fn unpark(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
) -> Result<(), ProjectionError> {
    tx.execute(
        "DELETE FROM herald_projection_parked \
         WHERE name = $1 AND generation = $2 AND position = $3",
        &[&name, &(generation as i32), &(position.get() as i64)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_parked_error(
    client: &impl GenericClient,
    name: &str,
    generation: u32,
    position: Position,
    error: &str,
) -> Result<(), ProjectionError> {
    client
        .execute(
            "UPDATE herald_projection_parked SET error = $4 \
             WHERE name = $1 AND generation = $2 AND position = $3",
            &[
                &name,
                &(generation as i32),
                &(position.get() as i64),
                &error,
            ],
        )
        .await?;
    Ok(())
}

pub(crate) async fn list_parked(
    client: &impl GenericClient,
    name: &str,
    generation: u32,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    let rows = client
        .query(
            "SELECT name, generation, position, event_id, error, parked_at \
             FROM herald_projection_parked \
             WHERE name = $1 AND generation = $2 ORDER BY position",
            &[&name, &(generation as i32)],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ParkedEvent {
            name: r.get(0),
            generation: r.get::<_, i32>(1) as u32,
            position: Position(r.get::<_, i64>(2) as u64),
            event_id: EventId(r.get::<_, Uuid>(3)),
            error: r.get(4),
            parked_at: r.get(5),
        })
        .collect())
}
