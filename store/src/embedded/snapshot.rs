//! Aggregate snapshots in the SQLite file, in `herald_snapshots` (migration
//! 5): one row per stream, saved by one upsert on the writer connection whose
//! guard keeps the highest stream version and lets one save per boundary
//! through (SQLite's write lock orders saves,
//! of this process and of others sharing the file). The state is JSON text,
//! the time `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as in the log.

use async_trait::async_trait;
use herald_events::chain::canonical_time;
use herald_events::{StreamId, StreamVersion, TenantId};
use rusqlite::{params, OptionalExtension};

use super::{sqlite_error, EmbeddedStore, BACKEND};
use crate::error::StoreError;
use crate::{Snapshot, SnapshotStore};

const UPSERT: &str = "INSERT INTO herald_snapshots \
     (tenant, domain, stream_id, stream_version, state_version, state, taken_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (tenant, domain, stream_id) DO UPDATE SET \
     stream_version = excluded.stream_version, state_version = excluded.state_version, \
     state = excluded.state, taken_at = excluded.taken_at \
     WHERE herald_snapshots.stream_version < ?8 \
     OR (herald_snapshots.state_version <> excluded.state_version \
         AND excluded.stream_version >= herald_snapshots.stream_version)";

fn corrupt(stream: &StreamId, detail: String) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        detail: format!("snapshot of {stream}: {detail}"),
    }
}

#[async_trait]
impl SnapshotStore for EmbeddedStore {
    async fn save_snapshot_past(
        &self,
        snapshot: &Snapshot,
        boundary: StreamVersion,
    ) -> Result<bool, StoreError> {
        let state = snapshot.checked_state_json()?;
        let boundary = snapshot.boundary(boundary);
        let (tenant, stream) = (snapshot.tenant.clone(), snapshot.stream.clone());
        // Checked: the version is within i64.
        let stream_version = snapshot.stream_version.get() as i64;
        let state_version = i64::from(snapshot.state_version);
        let taken_at = canonical_time(&snapshot.stored_taken_at());
        self.write_relaxed(move |conn| {
            conn.prepare_cached(UPSERT)
                .map_err(sqlite_error)?
                .execute(params![
                    tenant.as_str(),
                    stream.domain().as_str(),
                    stream.id(),
                    stream_version,
                    state_version,
                    state,
                    taken_at,
                    boundary,
                ])
                .map_err(sqlite_error)
                .map(|written| written == 1)
        })
        .await
    }

    async fn load_snapshot(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, StoreError> {
        let (tenant, stream) = (tenant.clone(), stream.clone());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT stream_version, state_version, state, taken_at \
                     FROM herald_snapshots WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3",
                )
                .map_err(sqlite_error)?
                .query_row(
                    params![tenant.as_str(), stream.domain().as_str(), stream.id()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(sqlite_error)?;
            let Some((stream_version, state_version, state, taken_at)) = row else {
                return Ok(None);
            };
            let state_version = u32::try_from(state_version).map_err(|_| {
                corrupt(
                    &stream,
                    format!("state version {state_version} is not a u32"),
                )
            })?;
            let state = serde_json::from_str(&state)
                .map_err(|e| corrupt(&stream, format!("state is not JSON: {e}")))?;
            let taken_at = chrono::DateTime::parse_from_rfc3339(&taken_at)
                .map_err(|e| corrupt(&stream, format!("taken_at {taken_at:?}: {e}")))?
                .with_timezone(&chrono::Utc);
            Ok(Some(Snapshot {
                tenant,
                stream,
                stream_version: StreamVersion(stream_version as u64),
                state_version,
                state,
                taken_at,
            }))
        })
        .await
    }

    async fn delete_snapshots(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<(), StoreError> {
        let (tenant, stream) = (tenant.clone(), stream.clone());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM herald_snapshots WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3",
                params![tenant.as_str(), stream.domain().as_str(), stream.id()],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }
}
