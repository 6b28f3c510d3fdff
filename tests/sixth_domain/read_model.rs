//! The `counters` read model, on the embedded store's SQLite: one row per
//! counter with its total.

use herald_events::{EventEnvelope, TypedEvent};
use herald_projections::embedded::SqliteProjection;
use herald_projections::ProjectionError;

use super::events::{CounterIncremented, DOMAIN};

/// The projection's (and view's) name.
pub const NAME: &str = "counters";

#[derive(Debug)]
pub struct CountersProjection;

fn sqlite(e: rusqlite::Error) -> ProjectionError {
    ProjectionError::Sqlite(e)
}

impl SqliteProjection for CountersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["counters"]
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.event_type.domain() == DOMAIN
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}counters (
                tenant TEXT NOT NULL, id TEXT NOT NULL, total INTEGER NOT NULL,
                PRIMARY KEY (tenant, id))"
        ))
        .map_err(sqlite)
    }

    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        for event in events {
            let Ok(e) = CounterIncremented::from_payload(event.payload.clone()) else {
                continue;
            };
            tx.execute(
                &format!(
                    "INSERT INTO {prefix}counters (tenant, id, total) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, id) DO UPDATE SET total = total + excluded.total"
                ),
                rusqlite::params![event.tenant.as_str(), event.stream.id(), i64::from(e.by)],
            )
            .map_err(sqlite)?;
        }
        Ok(())
    }
}

/// A counter's total as the read model has it.
pub async fn total(
    read_models: &herald_projections::embedded::EmbeddedReadModels,
    tenant: String,
    id: String,
) -> Result<Option<i64>, ProjectionError> {
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut query = conn
                .prepare(&format!(
                    "SELECT total FROM {prefix}counters WHERE tenant = ?1 AND id = ?2"
                ))
                .map_err(sqlite)?;
            let mut rows = query.query(rusqlite::params![tenant, id]).map_err(sqlite)?;
            match rows.next().map_err(sqlite)? {
                Some(row) => row.get(0).map(Some).map_err(sqlite),
                None => Ok(None),
            }
        })
        .await
}
