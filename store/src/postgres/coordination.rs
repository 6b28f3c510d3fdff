//! Leases and checkpoints on Postgres, timed by the database's clock so
//! processes on different machines agree on expiry.

use std::time::Duration;

use async_trait::async_trait;
use herald_events::Position;

use super::{pg_error, pool_error, PostgresStore};
use crate::error::StoreError;
use crate::Coordination;

const ACQUIRE: &str = "INSERT INTO herald_leases (name, holder, expires_at) \
     VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
     WHERE herald_leases.holder = EXCLUDED.holder OR herald_leases.expires_at < now() \
     RETURNING holder";
const RELEASE: &str = "DELETE FROM herald_leases WHERE name = $1 AND holder = $2";
const LOAD: &str = "SELECT position FROM herald_checkpoints WHERE name = $1";
const SAVE: &str = "INSERT INTO herald_checkpoints (name, position) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()";
const LOAD_STATE: &str = "SELECT position, state FROM herald_checkpoints WHERE name = $1";
const SAVE_STATE: &str =
    "INSERT INTO herald_checkpoints (name, position, state) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, state = EXCLUDED.state, \
     updated_at = now()";
const SAVE_FENCED: &str = "INSERT INTO herald_checkpoints (name, position) \
     SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM herald_leases \
       WHERE name = $3 AND holder = $4 AND expires_at > now()) \
     ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()";

#[async_trait]
impl Coordination for PostgresStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let millis = ttl.as_millis() as f64;
        let row = client
            .query_opt(ACQUIRE, &[&name, &holder, &millis])
            .await
            .map_err(pg_error)?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .execute(RELEASE, &[&name, &holder])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let row = client.query_opt(LOAD, &[&name]).await.map_err(pg_error)?;
        Ok(row.map(|r| Position(r.get::<_, i64>(0) as u64)))
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
        lease: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let client = self.relaxed_pool().get().await.map_err(pool_error)?;
        let position = position.get() as i64;
        // Saved many times a second by busy loops: prepared once per connection.
        let written = match lease {
            None => {
                let save = client.prepare_cached(SAVE).await.map_err(pg_error)?;
                client.execute(&save, &[&name, &position]).await
            }
            Some((lease, holder)) => {
                let save = client.prepare_cached(SAVE_FENCED).await.map_err(pg_error)?;
                client
                    .execute(&save, &[&name, &position, &lease, &holder])
                    .await
            }
        }
        .map_err(pg_error)?;
        Ok(written == 1)
    }

    async fn checkpoint_state(
        &self,
        name: &str,
    ) -> Result<Option<(Position, Option<String>)>, StoreError> {
        let client = self.relaxed_pool().get().await.map_err(pool_error)?;
        let row = client
            .query_opt(LOAD_STATE, &[&name])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| (Position(r.get::<_, i64>(0) as u64), r.get(1))))
    }

    async fn save_checkpoint_state(
        &self,
        name: &str,
        position: Position,
        state: &str,
    ) -> Result<(), StoreError> {
        let client = self.relaxed_pool().get().await.map_err(pool_error)?;
        let position = position.get() as i64;
        client
            .execute(SAVE_STATE, &[&name, &position, &state])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn occupy(
        &self,
        occupancy: crate::Occupancy,
        label: &str,
    ) -> Result<crate::OccupancyGuard, StoreError> {
        self.occupy_session(occupancy, label).await
    }
}
