//! The Postgres backend: tokio-postgres over a deadpool pool, migrations at
//! start, payloads as `jsonb`. Appends are group-committed by one writer task
//! per process; every batch transaction locks the log head row, so writers of
//! all processes commit one after another and positions follow commit order.
//! Subscribers are woken by LISTEN/NOTIFY, with polling as the authority.

mod listen;
mod rows;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use herald_events::{NewEvent, Position, StreamId, StreamVersion, TenantId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::clock::{self, Clock};
use crate::error::StoreError;
use crate::group_commit::{BatchWriter, BatchWritten, GroupCommitConfig, GroupCommitter};
use crate::hooks::AppendHooks;
use crate::migrate;
use crate::model::{AppendOutcome, ExpectedVersion, LogHead};
use crate::plan::{plan_batch, BatchFacts, PendingAppend, StoredId, StreamKey};
use crate::subscription::{catch_up_then_live, EventStream};
use crate::{EventEnvelope, EventStore};

pub(crate) const BACKEND: &str = "postgres";
/// The NOTIFY channel carrying the last committed position.
pub(crate) const CHANNEL: &str = "herald_events";
/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64_0001;

/// How to reach and run the Postgres store.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Connections for reads and the writer.
    pub pool_size: usize,
    pub group_commit: GroupCommitConfig,
    /// How often an idle subscription polls when no notification came.
    pub poll_interval: Duration,
    /// Fault injection for tests.
    pub hooks: Option<Arc<dyn AppendHooks>>,
    pub clock: Option<Arc<dyn Clock>>,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            group_commit: GroupCommitConfig::default(),
            poll_interval: Duration::from_millis(500),
            hooks: None,
            clock: None,
        }
    }
}

struct Inner {
    pool: Pool,
    committer: Arc<GroupCommitter>,
    head: watch::Receiver<Position>,
    listener: JoinHandle<()>,
    poll_interval: Duration,
}

/// An event store on Postgres. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend {
            backend: BACKEND,
            detail: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => StoreError::Unavailable {
            backend: BACKEND,
            detail: e.to_string(),
        },
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable {
            backend: BACKEND,
            detail: other.to_string(),
        },
    }
}

impl PostgresStore {
    /// Connects, applies migrations and starts the writer and the listener.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        let pg_config: tokio_postgres::Config =
            config
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Unavailable {
                    backend: BACKEND,
                    detail: format!("invalid Postgres URL: {e}"),
                })?;
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .timeouts(Timeouts {
                wait: Some(Duration::from_secs(10)),
                create: Some(Duration::from_secs(5)),
                recycle: Some(Duration::from_secs(5)),
            })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                detail: e.to_string(),
            })?;

        migrate(&pool).await?;
        let head = read_head(&pool).await?;
        let (head_tx, head_rx) = watch::channel(head.position);
        let listener = listen::spawn(pg_config, head_tx.clone());
        let writer = PgWriter {
            pool: pool.clone(),
            hooks: config.hooks,
            clock: config.clock.unwrap_or_else(clock::system),
        };
        let committer = GroupCommitter::start(writer, config.group_commit, head_tx);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                committer,
                head: head_rx,
                listener,
                poll_interval: config.poll_interval,
            }),
        })
    }

    /// The connection pool, for read models sharing this database.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }
}

async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    // Keeps "already exists, skipping" notices out of the logs on every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS herald_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg_error)?;
    let applied: Vec<(i64, String)> = tx
        .query("SELECT version, checksum FROM herald_migrations", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for m in migrate::pending(migrate::POSTGRES, &applied)? {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| StoreError::Migration {
                version: m.version,
                detail: pg_error(e).to_string(),
            })?;
        tx.execute(
            "INSERT INTO herald_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "Applied Postgres migration."
        );
    }
    tx.commit().await.map_err(pg_error)
}

async fn read_head(pool: &Pool) -> Result<LogHead, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_one(
            "SELECT position, hash, recorded_at FROM herald_log_head WHERE id = 1",
            &[],
        )
        .await
        .map_err(pg_error)?;
    rows::head(&row)
}

struct PgWriter {
    pool: Pool,
    hooks: Option<Arc<dyn AppendHooks>>,
    clock: Arc<dyn Clock>,
}

const LOCK_HEAD: &str =
    "SELECT position, hash, recorded_at FROM herald_log_head WHERE id = 1 FOR UPDATE";
const STORED_IDS: &str = "SELECT event_id, position, tenant, domain, stream_id, stream_version \
     FROM herald_events WHERE event_id = ANY($1)";
const STREAM_VERSIONS: &str = "SELECT k.tenant, k.domain, k.stream_id, \
       (SELECT e.stream_version FROM herald_events e \
         WHERE e.tenant = k.tenant AND e.domain = k.domain AND e.stream_id = k.stream_id \
         ORDER BY e.stream_version DESC LIMIT 1) \
     FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, domain, stream_id)";
const INSERT_EVENTS: &str = "INSERT INTO herald_events (position, event_id, tenant, domain, \
       stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, \
       correlation_id, causation_id, producer, payload, hash) \
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
       $6::bigint[], $7::text[], $8::int[], $9::timestamptz[], $10::timestamptz[], \
       $11::uuid[], $12::uuid[], $13::text[], $14::jsonb[], $15::bytea[])";
const UPDATE_HEAD: &str = "UPDATE herald_log_head SET position = $1, hash = $2, recorded_at = $3 \
     WHERE id = 1";
const NOTIFY: &str = "SELECT pg_notify('herald_events', $1)";

#[async_trait]
impl BatchWriter for PgWriter {
    const BACKEND: &'static str = BACKEND;

    async fn write(&mut self, batch: Arc<[PendingAppend]>) -> Result<BatchWritten, StoreError> {
        let batch = &batch[..];
        if let Some(hooks) = &self.hooks {
            hooks.before_lock().await;
        }
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let lock = tx.prepare_cached(LOCK_HEAD).await.map_err(pg_error)?;
        let head = rows::head(&tx.query_one(&lock, &[]).await.map_err(pg_error)?)?;

        let ids: Vec<Uuid> = batch
            .iter()
            .flat_map(|a| a.events.iter().map(|e| e.id.as_uuid()))
            .collect();
        let keys: Vec<StreamKey> = batch
            .iter()
            .map(PendingAppend::key)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        let domains: Vec<&str> = keys.iter().map(|k| k.stream.domain().as_str()).collect();
        let stream_ids: Vec<&str> = keys.iter().map(|k| k.stream.id()).collect();
        let stored_stmt = tx.prepare_cached(STORED_IDS).await.map_err(pg_error)?;
        let versions_stmt = tx.prepare_cached(STREAM_VERSIONS).await.map_err(pg_error)?;
        let stored_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let versions_params: [&(dyn ToSql + Sync); 3] = [&tenants, &domains, &stream_ids];
        let (stored, versions) = futures::try_join!(
            tx.query(&stored_stmt, &stored_params),
            tx.query(&versions_stmt, &versions_params),
        )
        .map_err(pg_error)?;

        let mut facts = BatchFacts {
            versions: HashMap::with_capacity(versions.len()),
            stored_ids: HashMap::with_capacity(stored.len()),
        };
        for row in &versions {
            let key = rows::stream_key(row, 0)?;
            let version: Option<i64> = row.get(3);
            facts
                .versions
                .insert(key, StreamVersion(version.unwrap_or(0) as u64));
        }
        for row in &stored {
            let id: Uuid = row.get(0);
            let position: i64 = row.get(1);
            facts.stored_ids.insert(
                herald_events::EventId(id),
                StoredId {
                    position: Position(position as u64),
                    key: rows::stream_key(row, 2)?,
                    stream_version: StreamVersion(row.get::<_, i64>(5) as u64),
                },
            );
        }

        let plan = plan_batch(head, self.clock.now(), batch, facts);
        if !plan.rows.is_empty() {
            let columns = rows::Columns::of(&plan.rows);
            let insert = tx.prepare_cached(INSERT_EVENTS).await.map_err(pg_error)?;
            tx.execute(&insert, &columns.params())
                .await
                .map_err(pg_error)?;
            let update = tx.prepare_cached(UPDATE_HEAD).await.map_err(pg_error)?;
            let notify = tx.prepare_cached(NOTIFY).await.map_err(pg_error)?;
            let position = plan.head.position.get() as i64;
            let hash = plan.head.hash.0.to_vec();
            let position_text = plan.head.position.to_string();
            let update_params: [&(dyn ToSql + Sync); 3] =
                [&position, &hash, &plan.head.recorded_at];
            let notify_params: [&(dyn ToSql + Sync); 1] = [&position_text];
            futures::try_join!(
                tx.execute(&update, &update_params),
                tx.execute(&notify, &notify_params),
            )
            .map_err(pg_error)?;
        }
        if let Some(hooks) = &self.hooks {
            hooks
                .before_commit(&plan.rows)
                .await
                .map_err(|reason| StoreError::Backend {
                    backend: BACKEND,
                    detail: format!("batch aborted before commit: {reason}"),
                })?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(BatchWritten {
            outcomes: plan.outcomes,
            head: plan.head.position,
        })
    }
}

const SELECT_EVENT: &str = "SELECT position, event_id, tenant, domain, stream_id, stream_version, \
     event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id, \
     producer, payload, hash FROM herald_events";

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner
            .committer
            .append(PendingAppend {
                tenant: tenant.clone(),
                stream: stream.clone(),
                expected,
                events,
            })
            .await
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from: StreamVersion,
        max: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE tenant = $1 AND domain = $2 AND stream_id = $3 \
                 AND stream_version >= $4 ORDER BY stream_version LIMIT $5"
            ))
            .await
            .map_err(pg_error)?;
        let from = from.get() as i64;
        client
            .query(
                &stmt,
                &[
                    &tenant.as_str(),
                    &stream.domain().as_str(),
                    &stream.id(),
                    &from,
                    &limit(max),
                ],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect()
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<EventEnvelope>, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(pg_error)?;
        let from = from.get().min(i64::MAX as u64) as i64;
        client
            .query(&stmt, &[&from, &limit(max)])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect()
    }

    fn subscribe_all(&self, from: Position) -> EventStream {
        catch_up_then_live(
            Arc::new(self.clone()),
            self.inner.head.clone(),
            from,
            self.inner.poll_interval,
        )
    }

    async fn stream_version(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<StreamVersion, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT stream_version FROM herald_events \
                 WHERE tenant = $1 AND domain = $2 AND stream_id = $3 \
                 ORDER BY stream_version DESC LIMIT 1",
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(
                &stmt,
                &[&tenant.as_str(), &stream.domain().as_str(), &stream.id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(StreamVersion(row.map_or(0, |r| r.get::<_, i64>(0) as u64)))
    }

    async fn head(&self) -> Result<LogHead, StoreError> {
        read_head(&self.inner.pool).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        client.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }

    async fn close(&self) {
        self.inner.committer.close().await;
        self.inner.listener.abort();
    }
}
