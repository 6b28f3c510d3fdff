//! The embedded backend: one SQLite file in WAL mode with full fsync, the
//! default when no server is configured. Appends are group-committed by one
//! writer connection in a `BEGIN IMMEDIATE` transaction (SQLite's write lock,
//! which also serialises other processes opening the same file), so positions
//! follow commit order exactly as on Postgres. Reads use a small pool of
//! read-only connections, which WAL lets run beside the writer. SQLite opens
//! a file it may not write read-only without a word, so a server asks
//! [`check_writable`] before opening. Writing connections run with
//! `secure_delete` on, so deleted or overwritten content (a forgotten
//! subject key) is zeroed in the file, not left in free space.

mod audit;
mod coordination;
mod idempotency;
mod keys;
pub use occupancy::LOCK_FILE;
mod occupancy;
mod personal;
mod rows;
mod search;
mod snapshot;
mod writable;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_events::{EventType, NewEvent, Position, StreamId, StreamVersion, TenantId};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::watch;

use crate::clock::{self, Clock};
use crate::error::StoreError;
use crate::group_commit::{
    BatchWriter, BatchWritten, Committed, GroupCommitConfig, GroupCommitter,
};
use crate::hooks::AppendHooks;
use crate::idempotency::Keeping;
use crate::migrate;
use crate::model::{AppendOutcome, ExpectedVersion, LogHead};
use crate::personal::{PayloadSealer, SealerSlot};
use crate::plan::{plan_batch, BatchFacts, PendingAppend, StoredId, StreamKey};
use crate::recent::RecentLog;
use crate::subscription::{catch_up_then_live, EventStream};
use crate::{sql_limit, EventEnvelope, EventStore};

pub use writable::{check_writable, NotWritable, Refused};

pub(crate) const BACKEND: &str = "embedded";
/// The file name inside the data directory.
pub const FILE_NAME: &str = "herald.db";
/// How long a connection waits for another's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to run the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The SQLite file; created with its directory when missing.
    pub path: PathBuf,
    pub group_commit: GroupCommitConfig,
    /// How often an idle subscription polls (other processes sharing the file
    /// are only seen by polling).
    pub poll_interval: Duration,
    /// Read connections kept open.
    pub read_connections: usize,
    /// Fault injection for tests.
    pub hooks: Option<Arc<dyn AppendHooks>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// How long an idempotency key is kept from its first use.
    pub idempotency_window: Duration,
    /// Most log positions one page of a search reads when it scans the log
    /// ([`search::SCAN_WINDOW`] by default).
    pub search_window: u64,
}

impl EmbeddedConfig {
    /// The store file `herald.db` in `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            path: data_dir.into().join(FILE_NAME),
            group_commit: GroupCommitConfig::default(),
            poll_interval: Duration::from_millis(500),
            read_connections: 4,
            hooks: None,
            clock: None,
            idempotency_window: crate::idempotency::DEFAULT_IDEMPOTENCY_WINDOW,
            search_window: search::SCAN_WINDOW,
        }
    }
}

pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
            ) =>
        {
            StoreError::Unavailable {
                backend: BACKEND,
                detail: e.to_string(),
            }
        }
        _ => StoreError::Backend {
            backend: BACKEND,
            detail: e.to_string(),
        },
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        detail: format!("store task failed: {e}"),
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Unavailable {
        backend: BACKEND,
        detail: format!("cannot open {}: {e}", path.display()),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    if !read_only {
        // WAL lets readers run beside the writer; FULL makes every commit
        // durable before the append is acknowledged.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        // What is deleted or overwritten is zeroed in the file, not only
        // unlinked: a subject key forgotten (or re-wrapped) leaves no copy
        // behind in free space (see `personal`). Read-only connections free
        // nothing. The cost falls on what deletes or overwrites (expired
        // idempotency keys, replaced snapshots), not on appends, which only add.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sqlite_error)?;
    }
    Ok(conn)
}

/// Read connections, opened on demand and kept up to a bound.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    async fn with<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => open_connection(&pool.path, true)?,
            };
            let result = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                if idle.len() < pool.max_idle {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(join_error)?
    }
}

struct Inner {
    readers: Arc<ReadPool>,
    /// Shared with the group-commit writer; coordination writes use it between batches.
    writer: Arc<Mutex<Connection>>,
    committer: Arc<GroupCommitter>,
    head: watch::Receiver<Position>,
    /// What this process committed last, for reads of it.
    recent: Arc<RecentLog>,
    poll_interval: Duration,
    keeping: Keeping,
    /// What every append runs its events through first, once installed.
    sealer: SealerSlot,
    search_window: u64,
}

/// An event store in a SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.readers.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the file, applies migrations and starts the writer.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, StoreError> {
        let path = config.path.clone();
        let (writer_conn, head) = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
                    backend: BACKEND,
                    detail: format!("cannot create {}: {e}", dir.display()),
                })?;
            }
            let mut conn = open_connection(&path, false)?;
            migrate_file(&mut conn)?;
            let head = read_head(&conn)?;
            Ok::<_, StoreError>((conn, head))
        })
        .await
        .map_err(join_error)??;

        let (head_tx, head_rx) = watch::channel(head.position);
        let writer_conn = Arc::new(Mutex::new(writer_conn));
        let clock = config.clock.unwrap_or_else(clock::system);
        let keeping = Keeping::new(config.idempotency_window, Arc::clone(&clock));
        let writer = SqliteWriter {
            conn: Arc::clone(&writer_conn),
            hooks: config.hooks,
            clock,
        };
        let committed = Committed::new(head_tx);
        let recent = committed.recent();
        let committer = GroupCommitter::start(writer, config.group_commit, committed);
        Ok(Self {
            inner: Arc::new(Inner {
                readers: Arc::new(ReadPool {
                    path: config.path,
                    idle: Mutex::new(Vec::new()),
                    max_idle: config.read_connections.max(1),
                }),
                writer: writer_conn,
                committer,
                head: head_rx,
                recent,
                poll_interval: config.poll_interval,
                keeping,
                sealer: SealerSlot::new(),
                search_window: config.search_window.max(1),
            }),
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.inner.readers.path
    }

    /// Runs `f` on a read connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.with(f).await
    }

    /// Runs `f` on the writer connection (outside any append batch).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.inner.writer);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| StoreError::Backend {
                backend: BACKEND,
                detail: "writer connection poisoned by an earlier panic".into(),
            })?;
            f(&conn)
        })
        .await
        .map_err(join_error)?
    }

    /// [`write`](Self::write) for what is recomputable from the log
    /// (checkpoints, snapshots): committed without waiting for the disk
    /// (`synchronous = NORMAL` for this one transaction). In WAL mode the
    /// commit is still atomic and in order, and the next append's sync
    /// makes it durable too; only an operating-system crash right after it
    /// can lose it, and then the work it recorded is done again.
    pub(crate) async fn write_relaxed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(move |conn| {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sqlite_error)?;
            let result = f(conn);
            let restored = conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(sqlite_error);
            // Appends must never run on a relaxed connection.
            restored.and(result)
        })
        .await
    }
}

fn migrate_file(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS herald_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TEXT NOT NULL)",
    )
    .map_err(sqlite_error)?;
    let applied: Vec<(i64, String)> = {
        let mut stmt = tx
            .prepare("SELECT version, checksum FROM herald_migrations")
            .map_err(sqlite_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite_error)?;
        rows.collect::<Result<_, _>>().map_err(sqlite_error)?
    };
    for m in migrate::pending(migrate::EMBEDDED, &applied)? {
        tx.execute_batch(m.sql).map_err(|e| StoreError::Migration {
            version: m.version,
            detail: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO herald_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), herald_events::chain::canonical_time(&chrono::Utc::now())],
        )
        .map_err(sqlite_error)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "Applied embedded store migration."
        );
    }
    tx.commit().map_err(sqlite_error)
}

fn read_head(conn: &Connection) -> Result<LogHead, StoreError> {
    conn.query_row(
        "SELECT position, hash, recorded_at FROM herald_log_head WHERE id = 1",
        [],
        rows::head,
    )
    .map_err(sqlite_error)?
}

struct SqliteWriter {
    conn: Arc<Mutex<Connection>>,
    hooks: Option<Arc<dyn AppendHooks>>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl BatchWriter for SqliteWriter {
    const BACKEND: &'static str = BACKEND;
    /// One connection writes, so a batch is done before the next starts.
    type InFlight = Result<BatchWritten, StoreError>;

    async fn start(&mut self, batch: Arc<[PendingAppend]>) -> Self::InFlight {
        let conn = Arc::clone(&self.conn);
        let hooks = self.hooks.clone();
        let clock = Arc::clone(&self.clock);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Backend {
                backend: BACKEND,
                detail: "writer connection poisoned by an earlier panic".into(),
            })?;
            write_batch(&mut conn, &batch, &*clock, hooks.as_deref(), &runtime)
        })
        .await
        .map_err(join_error)?
    }

    async fn finish(
        &mut self,
        _batch: Arc<[PendingAppend]>,
        in_flight: Self::InFlight,
    ) -> Result<BatchWritten, StoreError> {
        in_flight
    }
}

fn write_batch(
    conn: &mut Connection,
    batch: &[PendingAppend],
    clock: &dyn Clock,
    hooks: Option<&dyn AppendHooks>,
    runtime: &tokio::runtime::Handle,
) -> Result<BatchWritten, StoreError> {
    if let Some(hooks) = hooks {
        runtime.block_on(hooks.before_lock());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let head = read_head(&tx)?;

    let mut facts = BatchFacts::default();
    {
        let mut by_id = tx
            .prepare_cached(
                "SELECT position, tenant, domain, stream_id, stream_version \
                 FROM herald_events WHERE event_id = ?1",
            )
            .map_err(sqlite_error)?;
        for event in batch.iter().flat_map(|a| &a.events) {
            let id = event.id.as_uuid().hyphenated().to_string();
            let found = by_id
                .query_row([&id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()
                .map_err(sqlite_error)?;
            if let Some((position, tenant, domain, stream_id, version)) = found {
                facts.stored_ids.insert(
                    event.id,
                    StoredId {
                        position: Position(position as u64),
                        key: rows::stream_key(position, &tenant, &domain, &stream_id)?,
                        stream_version: StreamVersion(version as u64),
                    },
                );
            }
        }
        let mut version_of = tx
            .prepare_cached(
                "SELECT max(stream_version) FROM herald_events \
                 WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3",
            )
            .map_err(sqlite_error)?;
        let keys: HashSet<StreamKey> = batch.iter().map(PendingAppend::key).collect();
        for key in keys {
            let version: Option<i64> = version_of
                .query_row(
                    params![
                        key.tenant.as_str(),
                        key.stream.domain().as_str(),
                        key.stream.id()
                    ],
                    |r| r.get(0),
                )
                .map_err(sqlite_error)?;
            facts
                .versions
                .insert(key, StreamVersion(version.unwrap_or(0) as u64));
        }
    }

    let plan = plan_batch(head, clock.now(), batch, facts);
    if !plan.rows.is_empty() {
        let mut insert = tx.prepare_cached(rows::INSERT).map_err(sqlite_error)?;
        for row in &plan.rows {
            rows::insert(&mut insert, row)?;
        }
        drop(insert);
        tx.execute(
            "UPDATE herald_log_head SET position = ?1, hash = ?2, recorded_at = ?3 WHERE id = 1",
            params![
                plan.head.position.get() as i64,
                plan.head.hash.as_bytes().as_slice(),
                plan.head
                    .recorded_at
                    .map(|t| herald_events::chain::canonical_time(&t)),
            ],
        )
        .map_err(sqlite_error)?;
    }
    if let Some(hooks) = hooks {
        runtime
            .block_on(hooks.before_commit(&plan.rows))
            .map_err(|reason| StoreError::Backend {
                backend: BACKEND,
                detail: format!("batch aborted before commit: {reason}"),
            })?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok(BatchWritten {
        outcomes: plan.outcomes,
        rows: plan.rows,
        head: plan.head.position,
    })
}

#[async_trait]
impl EventStore for EmbeddedStore {
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
        let (tenant, stream) = (tenant.clone(), stream.clone());
        self.inner
            .readers
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{} WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3 \
                         AND stream_version >= ?4 ORDER BY stream_version LIMIT ?5",
                        rows::SELECT
                    ))
                    .map_err(sqlite_error)?;
                let events = stmt
                    .query_map(
                        params![
                            tenant.as_str(),
                            stream.domain().as_str(),
                            stream.id(),
                            from.get() as i64,
                            sql_limit(max)
                        ],
                        rows::event,
                    )
                    .map_err(sqlite_error)?;
                events
                    .map(|r| r.map_err(sqlite_error).and_then(|e| e))
                    .collect()
            })
            .await
    }

    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<EventEnvelope>, StoreError> {
        let head = *self.inner.head.borrow();
        if let Some(events) = self.inner.recent.read(from, max, head) {
            return Ok(events);
        }
        self.inner
            .readers
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{} WHERE position >= ?1 ORDER BY position LIMIT ?2",
                        rows::SELECT
                    ))
                    .map_err(sqlite_error)?;
                let from = from.get().min(i64::MAX as u64) as i64;
                let events = stmt
                    .query_map(params![from, sql_limit(max)], rows::event)
                    .map_err(sqlite_error)?;
                events
                    .map(|r| r.map_err(sqlite_error).and_then(|e| e))
                    .collect()
            })
            .await
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
        let (tenant, stream) = (tenant.clone(), stream.clone());
        self.inner
            .readers
            .with(move |conn| {
                let version: Option<i64> = conn
                    .query_row(
                        "SELECT max(stream_version) FROM herald_events \
                         WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3",
                        params![tenant.as_str(), stream.domain().as_str(), stream.id()],
                        |r| r.get(0),
                    )
                    .map_err(sqlite_error)?;
                Ok(StreamVersion(version.unwrap_or(0) as u64))
            })
            .await
    }

    async fn tenants_with_type(&self, event_type: &EventType) -> Result<Vec<TenantId>, StoreError> {
        let event_type = event_type.as_str().to_owned();
        self.inner
            .readers
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT DISTINCT tenant FROM herald_events WHERE event_type = ?1",
                    )
                    .map_err(sqlite_error)?;
                let tenants = stmt
                    .query_map(params![event_type], |r| r.get::<_, String>(0))
                    .map_err(sqlite_error)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sqlite_error)?;
                tenants
                    .into_iter()
                    .map(|t| {
                        TenantId::new(t).map_err(|e| StoreError::Backend {
                            backend: BACKEND,
                            detail: format!("a stored tenant does not read: {e}"),
                        })
                    })
                    .collect()
            })
            .await
    }

    fn known_head(&self) -> Option<Position> {
        Some(*self.inner.head.borrow())
    }

    async fn head(&self) -> Result<LogHead, StoreError> {
        self.inner.readers.with(read_head).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner
            .readers
            .with(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn close(&self) {
        self.inner.committer.close().await;
    }
}
