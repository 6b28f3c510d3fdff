//! Herald's event store, the source of truth. The [`EventStore`] trait
//! (append with optimistic concurrency per stream, reads by stream and by
//! global position, catch-up-then-live subscription, search within a tenant,
//! aggregate snapshots beside the log, idempotency keys of HTTP requests)
//! and its two backends: [`PostgresStore`]
//! and [`EmbeddedStore`] (a SQLite file). Both group-commit concurrent
//! appends, assign global positions in commit order, chain every event's
//! audit hash, and pass the same conformance suite. Both also keep the
//! subjects' data keys of personal fields ([`SubjectKeys`]) and run every
//! append through an installed [`PayloadSealer`] first (see [`personal`]).

pub mod audit;
mod clock;
mod error;
mod group_commit;
mod hooks;
pub mod idempotency;
mod migrate;
mod model;
pub mod occupancy;
pub mod personal;
mod plan;
pub mod search;
pub mod snapshot;
pub mod storable;
mod subscription;
pub mod telemetry;

pub mod embedded;
pub mod postgres;
mod recent;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use herald_events::EventEnvelope;
use herald_events::{EventType, NewEvent, Position, StreamId, StreamVersion, TenantId};

pub use clock::{Clock, ManualClock, SystemClock};
pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use error::{Result, StoreError};
pub use group_commit::GroupCommitConfig;
pub use hooks::AppendHooks;
pub use idempotency::{Claimed, IdempotencyClaim, IdempotencyKeys, DEFAULT_IDEMPOTENCY_WINDOW};
pub use model::{AppendOutcome, AppendedEvent, ExpectedVersion, LogHead};
pub use occupancy::{Occupancy, OccupancyGuard};
pub use personal::{PayloadSealer, SubjectKey, SubjectKeys};
pub use plan::MAX_PRODUCER_LEN;
pub use postgres::{PostgresConfig, PostgresStore};
pub use search::{SearchPage, SearchQuery};
pub use snapshot::{Snapshot, MAX_SNAPSHOT_STATE_BYTES};
pub use subscription::{EventStream, PAGE_SIZE};

/// The event store.
///
/// Guarantees, for every backend:
/// - `append` is atomic: all its events are written or none;
/// - it checks the expected stream version and writes nothing on a mismatch;
/// - it is idempotent on event ids: repeating a whole earlier append returns
///   that append's positions and writes nothing;
/// - it answers only after the events are durably committed;
/// - positions are gapless and assigned in commit order, so a reader of the
///   global log that has seen position P never later finds an event below P;
/// - with a [`PayloadSealer`] installed, what is stored is what the sealer
///   made of the events, never the events as given.
#[async_trait]
pub trait EventStore:
    Coordination
    + ApiKeyStore
    + EventSearch
    + SnapshotStore
    + IdempotencyKeys
    + SubjectKeys
    + audit::AuditLog
    + Send
    + Sync
    + 'static
{
    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Installs the sealer every later append runs its events through
    /// (once; a second call is ignored and answers false).
    fn install_sealer(&self, sealer: Arc<dyn PayloadSealer>) -> bool;

    /// Runs `events` through the installed sealer (no-op without one).
    /// `append` and `append_all` call it themselves; callers that must keep
    /// what is stored (an actor applying its own events) call it first —
    /// sealing an already sealed payload must change nothing (that is the
    /// sealer's job).
    async fn seal(&self, tenant: &TenantId, events: &mut [NewEvent]) -> Result<()>;

    /// Appends events to a stream of a tenant, after running them through
    /// the installed sealer (a sealer error fails the append, writing
    /// nothing).
    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome>;

    /// Appends to several streams of a tenant in one transaction: all of it
    /// or none. The answer is the first refusal, or one outcome per append.
    /// Every append's events go through the installed sealer first.
    async fn append_all(
        &self,
        tenant: &TenantId,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendOutcome>>;

    /// Up to `max` events of a stream with stream version ≥ `from`, in order.
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from: StreamVersion,
        max: usize,
    ) -> Result<Vec<EventEnvelope>>;

    /// Up to `max` events of the global log with position ≥ `from`, in order.
    async fn read_all(&self, from: Position, max: usize) -> Result<Vec<EventEnvelope>>;

    /// Every event from position `from` on: the history, then live events as
    /// they commit, each once and in position order.
    fn subscribe_all(&self, from: Position) -> EventStream;

    /// The stream's current version (0 when it has no events).
    async fn stream_version(&self, tenant: &TenantId, stream: &StreamId) -> Result<StreamVersion>;

    /// Every tenant with at least one event of `event_type`, found through
    /// the type's index, not by reading the log (the schema registry loads
    /// each tenant's registry at start this way).
    async fn tenants_with_type(&self, event_type: &EventType) -> Result<Vec<TenantId>>;

    /// The last committed event of the global log.
    async fn head(&self) -> Result<LogHead>;

    /// The last position this process knows to be committed — its own
    /// commits, and other processes' as they are announced — without asking
    /// the database; at most the real head, and behind it only briefly.
    /// For gauges and hints that run per batch; `None` where the store does
    /// not follow its head.
    fn known_head(&self) -> Option<Position> {
        None
    }

    /// Succeeds when the store answers a query.
    async fn check(&self) -> Result<()>;

    /// Stops taking appends, commits those already queued, and ends
    /// subscriptions once they have read everything committed.
    async fn close(&self);
}

/// Searching a tenant's events by type, domain, stream, recording time and
/// payload fields; part of every [`EventStore`] (each backend implements it
/// in its own `search` module).
#[async_trait]
pub trait EventSearch: Send + Sync {
    /// Up to `query.limit` events of `query.tenant` after `query.after` that
    /// match every filter of the query, in position order. Fails with
    /// [`StoreError::InvalidQuery`] when the query is malformed or over its
    /// bounds (see [`SearchQuery::validate`]).
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
}

/// Aggregate snapshots, one per stream of a tenant: the latest state folded
/// from the stream's events, from which the actor runtime rehydrates an
/// aggregate (the snapshot, then the events after its `stream_version`).
/// Part of every [`EventStore`] (each backend implements it in its own
/// `snapshot` module). Snapshots are kept beside the log, outside the hash
/// chain; deleting one loses nothing but the time to fold the stream again.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Keeps `snapshot` as its stream's snapshot, unless the one kept has a
    /// higher stream version (a slow writer never moves it back; an equal
    /// version replaces it). One statement, so concurrent saves keep the
    /// highest. The log is not read: callers save only states folded from
    /// events they have read. Fails with [`StoreError::InvalidSnapshot`],
    /// writing nothing, for a stream version of 0, a state over
    /// [`MAX_SNAPSHOT_STATE_BYTES`] of JSON or holding U+0000, or a time
    /// outside the years 1 to 9999. `taken_at` is kept to the microsecond.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let next = StreamVersion(snapshot.stream_version.get().saturating_add(1));
        self.save_snapshot_past(snapshot, next).await.map(drop)
    }

    /// Keeps `snapshot` unless the one kept already reached `boundary` (a
    /// stream version at most `snapshot`'s) in the same state version; true
    /// when it was written. Processes that each cross the boundary of
    /// every N events write one snapshot between them, not one each: the
    /// first to arrive writes, the others find it and write nothing. A kept
    /// snapshot of another state version is replaced by one at least as
    /// recent. Otherwise as [`save_snapshot`](Self::save_snapshot), which
    /// is this with the boundary just past the snapshot's version.
    async fn save_snapshot_past(
        &self,
        snapshot: &Snapshot,
        boundary: StreamVersion,
    ) -> Result<bool>;

    /// The snapshot kept for the stream of the tenant, if any.
    async fn load_snapshot(&self, tenant: &TenantId, stream: &StreamId)
        -> Result<Option<Snapshot>>;

    /// Forgets the stream's snapshot, if any.
    async fn delete_snapshots(&self, tenant: &TenantId, stream: &StreamId) -> Result<()>;
}

/// Durable coordination between processes sharing a store: leases (so one
/// process does a job while others stand by) and named checkpoints (how far
/// a job has got in the global log).
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `ttl` from now.
    /// True when `holder` holds it afterwards; false when another holder's
    /// lease has not expired.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Gives the lease up, if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// The position saved under `name`, if any.
    async fn checkpoint(&self, name: &str) -> Result<Option<Position>>;

    /// Saves a position under `name`. With `lease: Some((lease, holder))` it
    /// is saved only while `holder` holds an unexpired `lease`; the answer
    /// says whether it was saved (false: the lease was lost).
    async fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
        lease: Option<(&str, &str)>,
    ) -> Result<bool>;

    /// The position saved under `name` with [`Coordination::save_checkpoint_state`],
    /// and the state saved with it (`None` when only a position was saved).
    async fn checkpoint_state(&self, name: &str) -> Result<Option<(Position, Option<String>)>>;

    /// Saves a position under `name` together with the state a job folded
    /// from the log up to it (the timer scheduler's index), so that a
    /// restart reads only the log's tail. Like a snapshot, the state is a
    /// cache of the log: the job can always fold it again from the start.
    async fn save_checkpoint_state(
        &self,
        name: &str,
        position: Position,
        state: &str,
    ) -> Result<()>;

    /// Claims the store for this process, `Alone` or `Shared`, until the
    /// guard is dropped or the process dies. Refused with
    /// [`StoreError::Occupied`] (naming the holders by their labels) while
    /// another process holds an incompatible claim.
    async fn occupy(&self, occupancy: Occupancy, label: &str) -> Result<OccupancyGuard>;
}

/// A read limit as SQL wants it.
pub(crate) fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An API key as stored: its public id, its tenant and scopes, and the
/// SHA-256 of its secret part (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant: TenantId,
    pub scopes: Vec<String>,
    pub secret_sha256: [u8; 32],
    pub label: Option<String>,
    /// Requests per second allowed; `None` for the server's default.
    pub rate_per_sec: Option<u32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// API keys kept in the store, shared by every process using it, and the
/// store's epoch (a random id fixed when the store was created).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key; fails if its id exists.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// A count that moves whenever a key may have been revoked, by any
    /// process: a key looked up while it stays the same may be used again
    /// without another lookup. `None` where the store cannot tell, and
    /// every use needs a lookup.
    fn api_key_changes(&self) -> Option<u64> {
        None
    }
    /// The key with this id, revoked or not.
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Marks the key revoked from now on; false when there is no such key.
    async fn revoke_api_key(&self, key_id: &str) -> Result<bool>;
    /// Every key, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// The store's epoch.
    async fn epoch(&self) -> Result<String>;
}

/// Which backend to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file `herald.db` in this directory.
    Embedded { data_dir: PathBuf },
    /// A Postgres database.
    Postgres { url: String },
}

/// Settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub location: StoreLocation,
    pub group_commit: GroupCommitConfig,
    pub poll_interval: Duration,
    /// Postgres connection pool size.
    pub pool_size: usize,
    /// Postgres connections for checkpoints and snapshots.
    pub background_pool_size: usize,
    /// How long an idempotency key is kept from its first use.
    pub idempotency_window: Duration,
}

impl StoreSettings {
    pub fn new(location: StoreLocation) -> Self {
        Self {
            location,
            group_commit: GroupCommitConfig::default(),
            poll_interval: Duration::from_millis(500),
            pool_size: 16,
            background_pool_size: postgres::DEFAULT_BACKGROUND_POOL_SIZE,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}

/// Opens the store the settings name.
pub async fn open(settings: StoreSettings) -> Result<Arc<dyn EventStore>> {
    match settings.location {
        StoreLocation::Embedded { data_dir } => {
            let mut config = EmbeddedConfig::in_dir(data_dir);
            config.group_commit = settings.group_commit;
            config.poll_interval = settings.poll_interval;
            config.idempotency_window = settings.idempotency_window;
            Ok(Arc::new(EmbeddedStore::open(config).await?))
        }
        StoreLocation::Postgres { url } => {
            let mut config = PostgresConfig::new(url);
            config.group_commit = settings.group_commit;
            config.poll_interval = settings.poll_interval;
            config.pool_size = settings.pool_size;
            config.background_pool_size = settings.background_pool_size;
            config.idempotency_window = settings.idempotency_window;
            Ok(Arc::new(PostgresStore::open(config).await?))
        }
    }
}
