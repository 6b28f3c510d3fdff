//! Occupancy of a Postgres store: a session-level advisory lock (exclusive
//! to occupy it alone, shared otherwise) held by a dedicated connection
//! whose `application_name` is the holder's label, so a refused process can
//! say who holds it. The server releases the lock when that connection
//! ends, which a dead process's does. If the connection breaks while the
//! process runs (a server restart), it is opened again and the lock taken
//! again; should another process have taken the store meanwhile, that is
//! logged as an error.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{pg_error, PostgresStore, BACKEND};
use crate::error::StoreError;
use crate::occupancy::{Occupancy, OccupancyGuard};

/// The advisory lock's key: "herald" in ASCII, in a space of its own.
const LOCK_KEY: i64 = 0x6865_7261_6c64;

/// Who holds the lock, by the labels of their connections.
const HOLDERS: &str = "SELECT DISTINCT a.application_name || \
       coalesce(' from ' || host(a.client_addr), '') FROM pg_locks l \
     JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
       (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
     AND a.pid <> pg_backend_pid()";

impl PostgresStore {
    pub(crate) async fn occupy_session(
        &self,
        occupancy: Occupancy,
        label: &str,
    ) -> Result<OccupancyGuard, StoreError> {
        let mut config = self.inner.pg_config.clone();
        config.application_name(label);
        let client = lock(&config, occupancy).await?;
        let task = tokio::spawn(hold(config, occupancy, client));
        Ok(OccupancyGuard::new(AbortOnDrop(task)))
    }
}

/// Connects and takes the lock, or says who holds it.
async fn lock(config: &tokio_postgres::Config, occupancy: Occupancy) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    tokio::spawn(connection);
    let take = match occupancy {
        Occupancy::Alone => "SELECT pg_try_advisory_lock($1)",
        Occupancy::Shared => "SELECT pg_try_advisory_lock_shared($1)",
    };
    let taken: bool = client
        .query_one(take, &[&LOCK_KEY])
        .await
        .map_err(pg_error)?
        .get(0);
    if taken {
        return Ok(client);
    }
    let by = client
        .query(HOLDERS, &[&LOCK_KEY])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .map(|label| {
            if label.is_empty() {
                "a client without an application name".to_owned()
            } else {
                label
            }
        })
        .collect();
    Err(StoreError::Occupied { by })
}

/// Keeps the lock's connection open; takes the lock again after it broke.
async fn hold(config: tokio_postgres::Config, occupancy: Occupancy, mut client: Client) {
    let mut failures = 0u32;
    loop {
        // Ends when the connection does.
        while !client.is_closed() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        loop {
            failures = failures.saturating_add(1);
            let backoff = super::RECONNECT_BACKOFF.delay(failures.saturating_add(1));
            tokio::time::sleep(backoff).await;
            match lock(&config, occupancy).await {
                Ok(c) => {
                    client = c;
                    failures = 0;
                    break;
                }
                Err(StoreError::Occupied { by }) => tracing::error!(
                    backend = BACKEND,
                    holders = ?by,
                    "Another process took this store while its connection was down; \
                     this process keeps running but is no longer alone on it."
                ),
                Err(e) => tracing::debug!(error = %e, "Cannot take the store's lock again yet."),
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
