//! Aggregate snapshots on Postgres, in `herald_snapshots` (migration 6): one
//! row per stream, saved by one upsert whose guard keeps the highest stream
//! version and lets one save per boundary through, so concurrent saves need no lock of their own (the conflicting
//! row's lock orders them, and each re-checks the guard against the row as
//! the one before left it). The state is sent as the JSON text the checks
//! wrote and cast to `jsonb` by the server.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::{StreamId, StreamVersion, TenantId};
use serde_json::Value;

use super::{pg_error, pool_error, PostgresStore, BACKEND};
use crate::error::StoreError;
use crate::{Snapshot, SnapshotStore};

const UPSERT: &str = "INSERT INTO herald_snapshots \
     (tenant, domain, stream_id, stream_version, state_version, state, taken_at) \
     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7) \
     ON CONFLICT (tenant, domain, stream_id) DO UPDATE SET \
     stream_version = excluded.stream_version, state_version = excluded.state_version, \
     state = excluded.state, taken_at = excluded.taken_at \
     WHERE herald_snapshots.stream_version < $8 \
     OR (herald_snapshots.state_version <> excluded.state_version \
         AND excluded.stream_version >= herald_snapshots.stream_version)";

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn save_snapshot_past(
        &self,
        snapshot: &Snapshot,
        boundary: StreamVersion,
    ) -> Result<bool, StoreError> {
        let state = snapshot.checked_state_json()?;
        let boundary = snapshot.boundary(boundary);
        let client = self.relaxed_pool().get().await.map_err(pool_error)?;
        let stmt = client.prepare_cached(UPSERT).await.map_err(pg_error)?;
        // Both checked: the version within i64, the state version a u32.
        let stream_version = snapshot.stream_version.get() as i64;
        let state_version = i64::from(snapshot.state_version);
        let written = client
            .execute(
                &stmt,
                &[
                    &snapshot.tenant.as_str(),
                    &snapshot.stream.domain().as_str(),
                    &snapshot.stream.id(),
                    &stream_version,
                    &state_version,
                    &state,
                    &snapshot.stored_taken_at(),
                    &boundary,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(written == 1)
    }

    async fn load_snapshot(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT stream_version, state_version, state, taken_at FROM herald_snapshots \
                 WHERE tenant = $1 AND domain = $2 AND stream_id = $3",
            )
            .await
            .map_err(pg_error)?;
        let Some(row) = client
            .query_opt(
                &stmt,
                &[&tenant.as_str(), &stream.domain().as_str(), &stream.id()],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let state_version: i64 = row.get(1);
        Ok(Some(Snapshot {
            tenant: tenant.clone(),
            stream: stream.clone(),
            stream_version: StreamVersion(row.get::<_, i64>(0) as u64),
            state_version: u32::try_from(state_version).map_err(|_| StoreError::Backend {
                backend: BACKEND,
                detail: format!(
                    "snapshot of {stream} has state version {state_version}, not a u32"
                ),
            })?,
            state: row.get::<_, Value>(2),
            taken_at: row.get::<_, DateTime<Utc>>(3),
        }))
    }

    async fn delete_snapshots(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM herald_snapshots WHERE tenant = $1 AND domain = $2 AND stream_id = $3",
                &[&tenant.as_str(), &stream.domain().as_str(), &stream.id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
