//! Leases and checkpoints in the SQLite file, timed by the local clock (every
//! process sharing the file runs on the same machine).

use std::time::Duration;

use async_trait::async_trait;
use herald_events::Position;
use rusqlite::{params, OptionalExtension};

use super::{sqlite_error, EmbeddedStore};
use crate::error::StoreError;
use crate::Coordination;

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl Coordination for EmbeddedStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let now = now_millis();
            let expires = now + ttl.as_millis() as i64;
            let changed = conn
                .execute(
                    "INSERT INTO herald_leases (name, holder, expires_at_millis) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                       expires_at_millis = excluded.expires_at_millis \
                     WHERE herald_leases.holder = excluded.holder \
                        OR herald_leases.expires_at_millis < ?4",
                    params![name, holder, expires, now],
                )
                .map_err(sqlite_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM herald_leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let position: Option<i64> = conn
                .query_row(
                    "SELECT position FROM herald_checkpoints WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlite_error)?;
            Ok(position.map(|p| Position(p as u64)))
        })
        .await
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
        lease: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let lease = lease.map(|(l, h)| (l.to_owned(), h.to_owned()));
        self.write_relaxed(move |conn| {
            let updated_at = herald_events::chain::canonical_time(&chrono::Utc::now());
            let position = position.get() as i64;
            let upsert = "ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                 updated_at = excluded.updated_at";
            let changed = match &lease {
                None => conn.execute(
                    &format!(
                        "INSERT INTO herald_checkpoints (name, position, updated_at) \
                         VALUES (?1, ?2, ?3) {upsert}"
                    ),
                    params![name, position, updated_at],
                ),
                Some((lease, holder)) => conn.execute(
                    &format!(
                        "INSERT INTO herald_checkpoints (name, position, updated_at) \
                         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM herald_leases \
                           WHERE name = ?4 AND holder = ?5 AND expires_at_millis > ?6) {upsert}"
                    ),
                    params![name, position, updated_at, lease, holder, now_millis()],
                ),
            }
            .map_err(sqlite_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn checkpoint_state(
        &self,
        name: &str,
    ) -> Result<Option<(Position, Option<String>)>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row: Option<(i64, Option<String>)> = conn
                .query_row(
                    "SELECT position, state FROM herald_checkpoints WHERE name = ?1",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sqlite_error)?;
            Ok(row.map(|(p, state)| (Position(p as u64), state)))
        })
        .await
    }

    async fn save_checkpoint_state(
        &self,
        name: &str,
        position: Position,
        state: &str,
    ) -> Result<(), StoreError> {
        let (name, state) = (name.to_owned(), state.to_owned());
        self.write_relaxed(move |conn| {
            let updated_at = herald_events::chain::canonical_time(&chrono::Utc::now());
            conn.execute(
                "INSERT INTO herald_checkpoints (name, position, updated_at, state) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
                 position = excluded.position, updated_at = excluded.updated_at, \
                 state = excluded.state",
                params![name, position.get() as i64, updated_at, state],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn occupy(
        &self,
        occupancy: crate::Occupancy,
        label: &str,
    ) -> Result<crate::OccupancyGuard, StoreError> {
        self.occupy_file(occupancy, label).await
    }
}
