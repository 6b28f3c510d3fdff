//! The embedded runner's own tables: generation rows (version, state,
//! checkpoint) and parked events, in the read models' SQLite file. Times are
//! RFC 3339 text with microseconds, which sorts as it reads.

use chrono::{DateTime, Utc};
use herald_events::{EventId, Position};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::schema::{Generation, GenerationState};
use crate::{ParkedEvent, ProjectionError};

const DDL: &str = "\
CREATE TABLE IF NOT EXISTS herald_read_models (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    position INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    switched_at TEXT,
    PRIMARY KEY (name, generation)
);
CREATE TABLE IF NOT EXISTS herald_projection_parked (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    error TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (name, generation, position)
);
CREATE TABLE IF NOT EXISTS herald_projection_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);";

/// Seconds since the Unix epoch, from SQLite's clock, with fractions.
const NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

use crate::sql::time_text as text;

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn state_text(state: GenerationState) -> &'static str {
    match state {
        GenerationState::Building => "building",
        GenerationState::Active => "active",
        GenerationState::Retired => "retired",
    }
}

fn state(text: &str) -> GenerationState {
    match text {
        "building" => GenerationState::Building,
        "active" => GenerationState::Active,
        _ => GenerationState::Retired,
    }
}

/// Takes or renews the lease of projection `name` for `holder`; true when
/// `holder` holds it.
pub(crate) fn take_lease(
    conn: &Connection,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, ProjectionError> {
    let sql = format!(
        "INSERT INTO herald_projection_leases (name, holder, expires_at) \
         VALUES (?1, ?2, {NOW} + ?3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE herald_projection_leases.holder = excluded.holder \
         OR herald_projection_leases.expires_at < {NOW}"
    );
    let changed =
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params![name, holder, ttl.as_secs_f64()])?;
    Ok(changed == 1)
}

/// Gives up the lease of projection `name` if `holder` holds it.
pub(crate) fn release_lease(
    conn: &Connection,
    name: &str,
    holder: &str,
) -> Result<(), ProjectionError> {
    conn.execute(
        "DELETE FROM herald_projection_leases WHERE name = ?1 AND holder = ?2",
        rusqlite::params![name, holder],
    )?;
    Ok(())
}

pub(crate) fn create_tables(conn: &Connection) -> Result<(), ProjectionError> {
    conn.execute_batch(DDL)?;
    Ok(())
}

fn generation(row: &Row<'_>) -> rusqlite::Result<Generation> {
    Ok(Generation {
        generation: row.get::<_, i64>(0)? as u32,
        version: row.get::<_, i64>(1)? as u32,
        state: state(&row.get::<_, String>(2)?),
        position: Position(row.get::<_, i64>(3)? as u64),
        updated_at: time(&row.get::<_, String>(4)?),
        switched_at: row.get::<_, Option<String>>(5)?.map(|t| time(&t)),
    })
}

pub(crate) fn generations(
    conn: &Connection,
    name: &str,
) -> Result<Vec<Generation>, ProjectionError> {
    let mut statement = conn.prepare_cached(
        "SELECT generation, version, state, position, updated_at, switched_at \
         FROM herald_read_models WHERE name = ?1 ORDER BY generation",
    )?;
    let rows = statement.query_map([name], generation)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn active_generation(
    conn: &Connection,
    name: &str,
) -> Result<Option<u32>, ProjectionError> {
    Ok(conn
        .prepare_cached(
            "SELECT generation FROM herald_read_models WHERE name = ?1 AND state = 'active'",
        )?
        .query_row([name], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|g| g as u32))
}

pub(crate) fn create_generation(
    tx: &Transaction<'_>,
    name: &str,
    version: u32,
    state: GenerationState,
) -> Result<u32, ProjectionError> {
    let next: i64 = tx.query_row(
        "SELECT coalesce(max(generation), 0) + 1 FROM herald_read_models WHERE name = ?1",
        [name],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO herald_read_models (name, generation, version, state, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, next, version, state_text(state), text(Utc::now())],
    )?;
    Ok(next as u32)
}

pub(crate) fn set_state(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    state: GenerationState,
) -> Result<(), ProjectionError> {
    let switched = (state != GenerationState::Building).then(|| text(Utc::now()));
    tx.execute(
        "UPDATE herald_read_models SET state = ?3, updated_at = ?4, switched_at = ?5 \
         WHERE name = ?1 AND generation = ?2",
        params![
            name,
            generation,
            state_text(state),
            text(Utc::now()),
            switched
        ],
    )?;
    Ok(())
}

/// The generation's position and state, or `None` when it is gone.
pub(crate) fn checkpoint(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
) -> Result<Option<(Position, GenerationState)>, ProjectionError> {
    Ok(tx
        .prepare_cached(
            "SELECT position, state FROM herald_read_models WHERE name = ?1 AND generation = ?2",
        )?
        .query_row(params![name, generation], |r| {
            Ok((
                Position(r.get::<_, i64>(0)? as u64),
                state(&r.get::<_, String>(1)?),
            ))
        })
        .optional()?)
}

pub(crate) fn advance(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    to: Position,
) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "UPDATE herald_read_models SET position = ?3, updated_at = ?4 \
         WHERE name = ?1 AND generation = ?2",
    )?
    .execute(params![name, generation, to.get() as i64, text(Utc::now())])?;
    Ok(())
}

/// Drops a generation's tables, row and parked events.
pub(crate) fn drop_generation(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    tables: &[&str],
) -> Result<(), ProjectionError> {
    let prefix = super::table_prefix(name, generation);
    for table in tables {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{prefix}{table}\""))?;
    }
    tx.execute(
        "DELETE FROM herald_read_models WHERE name = ?1 AND generation = ?2",
        params![name, generation],
    )?;
    tx.execute(
        "DELETE FROM herald_projection_parked WHERE name = ?1 AND generation = ?2",
        params![name, generation],
    )?;
    Ok(())
}

pub(crate) fn park(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
    event_id: EventId,
    error: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO herald_projection_parked (name, generation, position, event_id, error, parked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (name, generation, position) DO UPDATE SET error = excluded.error, parked_at = excluded.parked_at",
        params![name, generation, position.get() as i64, event_id.to_string(), error, text(Utc::now())],
    )?;
    Ok(())
}

pub(crate) fn is_parked(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
) -> Result<bool, ProjectionError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM herald_projection_parked \
             WHERE name = ?1 AND generation = ?2 AND position = ?3",
            params![name, generation, position.get() as i64],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub(crate) fn unpark(
    tx: &Transaction<'_>,
    name: &str,
    generation: u32,
    position: Position,
) -> Result<(), ProjectionError> {
    tx.execute(
        "DELETE FROM herald_projection_parked WHERE name = ?1 AND generation = ?2 AND position = ?3",
        params![name, generation, position.get() as i64],
    )?;
    Ok(())
}

pub(crate) fn set_parked_error(
    conn: &Connection,
    name: &str,
    generation: u32,
    position: Position,
    error: &str,
) -> Result<(), ProjectionError> {
    conn.execute(
        "UPDATE herald_projection_parked SET error = ?4 \
         WHERE name = ?1 AND generation = ?2 AND position = ?3",
        params![name, generation, position.get() as i64, error],
    )?;
    Ok(())
}

pub(crate) fn list_parked(
    conn: &Connection,
    name: &str,
    generation: u32,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    let mut statement = conn.prepare_cached(
        "SELECT name, generation, position, event_id, error, parked_at \
         FROM herald_projection_parked WHERE name = ?1 AND generation = ?2 ORDER BY position",
    )?;
    let rows = statement.query_map(params![name, generation], |r| {
        Ok(ParkedEvent {
            name: r.get(0)?,
            generation: r.get::<_, i64>(1)? as u32,
            position: Position(r.get::<_, i64>(2)? as u64),
            event_id: EventId(r.get::<_, String>(3)?.parse().unwrap_or_default()),
            error: r.get(4)?,
            parked_at: time(&r.get::<_, String>(5)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
