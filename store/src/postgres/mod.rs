//! The Postgres backend: tokio-postgres over a deadpool pool, migrations at
//! start, payloads as `jsonb`. Appends are group-committed by one writer task
//! per process; every batch transaction locks the log head row, so writers of
//! all processes commit one after another and positions follow commit order.
//! Subscribers are woken by LISTEN/NOTIFY, with polling as the authority.
//! Every error from the server or the pool is classified in one place,
//! [`classify`]: an outage, a restart or a lost race is
//! [`StoreError::Unavailable`], anything else [`StoreError::Backend`].

mod audit;
mod coordination;
mod errors;
mod idempotency;
mod keys;
mod listen;
mod occupancy;
mod personal;
mod rows;
mod search;
mod snapshot;
mod writer;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use herald_events::{Backoff, EventType, NewEvent, Position, StreamId, StreamVersion, TenantId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::clock::{self, Clock};
use crate::error::StoreError;
use crate::group_commit::{Committed, GroupCommitConfig, GroupCommitter};
use crate::hooks::AppendHooks;
use crate::idempotency::Keeping;
use crate::migrate;
use crate::model::{AppendOutcome, ExpectedVersion, LogHead};
use crate::personal::{PayloadSealer, SealerSlot};
use crate::plan::PendingAppend;
use crate::recent::RecentLog;
use crate::subscription::{catch_up_then_live, EventStream};
use crate::telemetry;
use crate::{sql_limit, EventEnvelope, EventStore};

pub use errors::{
    classify, classify_pool, classify_sqlstate, describe, describe_pool, is_transient, PgErrorClass,
};
pub(crate) use errors::{pg_error, pool_error};

pub(crate) const BACKEND: &str = "postgres";
/// The NOTIFY channel carrying the last committed position.
pub(crate) const CHANNEL: &str = "herald_events";
/// The NOTIFY channel carrying the id of a key just revoked.
pub(crate) const KEYS_CHANNEL: &str = "herald_keys";
/// Key of the advisory lock that serialises migrations across processes.
/// Waits of the LISTEN connection and the occupancy lock between attempts
/// to connect again: 100 ms doubling, at most 6.4 s.
const RECONNECT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_millis(6400));
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64_0001;

/// How to reach and run the Postgres store.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Connections for reads and the writer.
    pub pool_size: usize,
    /// Connections whose commits do not wait for their flush, for
    /// checkpoints and snapshots (at least 1).
    pub background_pool_size: usize,
    pub group_commit: GroupCommitConfig,
    /// How often an idle subscription polls when no notification came.
    pub poll_interval: Duration,
    /// Fault injection for tests.
    pub hooks: Option<Arc<dyn AppendHooks>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// How long an idempotency key is kept from its first use.
    pub idempotency_window: Duration,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            background_pool_size: DEFAULT_BACKGROUND_POOL_SIZE,
            group_commit: GroupCommitConfig::default(),
            poll_interval: Duration::from_millis(500),
            hooks: None,
            clock: None,
            idempotency_window: crate::idempotency::DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}

struct Inner {
    pool: Pool,
    /// Connections whose commits do not wait for their WAL flush, for
    /// writes that are recomputable (checkpoints, snapshots): see
    /// [`relax_commits`].
    relaxed: Pool,
    /// For connections of their own (the occupancy lock).
    pg_config: tokio_postgres::Config,
    committer: Arc<GroupCommitter>,
    head: watch::Receiver<Position>,
    /// The tail of the log as this process last committed or read it.
    recent: Arc<RecentLog>,
    /// Held by a read of the tail from the database, so that readers woken
    /// by the same commit wait for one query instead of each sending one.
    tail_read: tokio::sync::Mutex<()>,
    /// Moves on every key revocation announced, and on every reconnect of
    /// the listener (announcements may have been missed).
    key_changes: Arc<AtomicU64>,
    listener: JoinHandle<()>,
    poll_interval: Duration,
    keeping: Keeping,
    /// What every append runs its events through first, once installed.
    sealer: SealerSlot,
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

impl PostgresStore {
    /// Up to `max` events from `from` on, from the database.
    async fn read_all_stored(
        &self,
        from: Position,
        max: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(pg_error)?;
        let from = from.get().min(i64::MAX as u64) as i64;
        client
            .query(&stmt, &[&from, &sql_limit(max)])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect()
    }

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
        let pool = build_pool(pg_config.clone(), config.pool_size.max(2))?;
        let mut relaxed_config = pg_config.clone();
        relax_commits(&mut relaxed_config);
        let relaxed = build_pool(relaxed_config, config.background_pool_size.max(1))?;

        migrate(&pool).await?;
        let head = read_head(&pool).await?;
        let (head_tx, head_rx) = watch::channel(head.position);
        let own_sent = Arc::new(AtomicU64::new(0));
        let key_changes = Arc::new(AtomicU64::new(0));
        let listener = listen::spawn(
            pg_config.clone(),
            head_tx.clone(),
            Arc::clone(&own_sent),
            Arc::clone(&key_changes),
        );
        let clock = config.clock.unwrap_or_else(clock::system);
        let keeping = Keeping::new(config.idempotency_window, Arc::clone(&clock));
        let writer =
            writer::PgWriter::new(pool.clone(), config.hooks, clock, own_sent, head_rx.clone());
        let committed = Committed::new(head_tx);
        let recent = committed.recent();
        let committer = GroupCommitter::start(writer, config.group_commit, committed);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                relaxed,
                pg_config,
                committer,
                head: head_rx,
                recent,
                tail_read: tokio::sync::Mutex::new(()),
                key_changes,
                listener,
                poll_interval: config.poll_interval,
                keeping,
                sealer: SealerSlot::new(),
            }),
        })
    }

    /// The connection pool, for read models sharing this database.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn key_changes(&self) -> &AtomicU64 {
        &self.inner.key_changes
    }

    /// The pool of [`relax_commits`] connections.
    pub(crate) fn relaxed_pool(&self) -> &Pool {
        &self.inner.relaxed
    }
}

/// Connections of the relaxed pool by default: checkpoints and snapshots
/// are written by a few background loops, one at a time each.
pub const DEFAULT_BACKGROUND_POOL_SIZE: usize = 4;

fn build_pool(pg_config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
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
        })
}

/// Makes the connections of `config` commit without waiting for their WAL
/// record to reach disk (`synchronous_commit = off`), for writes that can be
/// recomputed from the log: checkpoints, snapshots, read models. Such a
/// commit is still atomic and ordered with every other: any later commit
/// that waits for its flush (every append does) makes it durable too. Only
/// a crash of the database server itself can lose the last few of them,
/// and then the work they recorded is done again from an earlier point —
/// which every consumer of the log already tolerates (at-least-once). A
/// Herald process that dies loses nothing this way.
pub fn relax_commits(config: &mut tokio_postgres::Config) {
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} -c synchronous_commit=off"),
        _ => "-c synchronous_commit=off".to_owned(),
    };
    config.options(&options);
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

const SELECT_EVENT: &str = "SELECT position, event_id, tenant, domain, stream_id, stream_version, \
     event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id, \
     producer, payload, hash FROM herald_events";

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn install_sealer(&self, sealer: Arc<dyn PayloadSealer>) -> bool {
        crate::personal::install(&self.inner.sealer, sealer)
    }

    async fn seal(&self, tenant: &TenantId, events: &mut [NewEvent]) -> Result<(), StoreError> {
        crate::personal::seal(&self.inner.sealer, tenant, events).await
    }

    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.seal(tenant, &mut events).await?;
        self.inner
            .committer
            .append(PendingAppend::new(tenant, stream, expected, events))
            .await
    }

    async fn append_all(
        &self,
        tenant: &TenantId,
        mut appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        for (_, _, events) in &mut appends {
            self.seal(tenant, events).await?;
        }
        self.inner
            .committer
            .append_all(PendingAppend::all_of(tenant, appends))
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
                    &sql_limit(max),
                ],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect()
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<EventEnvelope>, StoreError> {
        let head = *self.inner.head.borrow();
        if let Some(events) = self.inner.recent.read(from, max, head) {
            telemetry::log_read(BACKEND, "memory");
            return Ok(events);
        }
        // A read at the tail (past what is kept, near the head) is what
        // every follower of the log sends when another process commits:
        // one of them reads, the others find its page kept.
        let at_tail = from.get().saturating_add(max as u64) > head.get();
        let _reading = if at_tail {
            let guard = self.inner.tail_read.lock().await;
            let head = *self.inner.head.borrow();
            if let Some(events) = self.inner.recent.read(from, max, head) {
                telemetry::log_read(BACKEND, "memory");
                return Ok(events);
            }
            Some(guard)
        } else {
            None
        };
        let events = self.read_all_stored(from, max).await?;
        telemetry::log_read(BACKEND, "database");
        if at_tail {
            self.inner.recent.record(events.clone());
        }
        Ok(events)
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

    async fn tenants_with_type(&self, event_type: &EventType) -> Result<Vec<TenantId>, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT DISTINCT tenant FROM herald_events WHERE event_type = $1",
                &[&event_type.as_str()],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.get(0);
                TenantId::new(tenant).map_err(|e| StoreError::Backend {
                    backend: BACKEND,
                    detail: format!("a stored tenant does not read: {e}"),
                })
            })
            .collect()
    }

    fn known_head(&self) -> Option<Position> {
        Some(*self.inner.head.borrow())
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
