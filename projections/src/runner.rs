//! The [`ProjectionRunner`]: the loop that reads the store's log from each
//! generation's checkpoint, applies bounded batches in one transaction with
//! the checkpoint, isolates and parks poison events, builds new generations
//! beside the serving one and switches to them (blue-green), and answers
//! status and parked-event requests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use herald_brokers::{Broker, Topic};
use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use tokio::sync::{watch, OnceCell};

use crate::live::LiveFeed;
use crate::plan::{self, Step};
use crate::schema::{self, Generation, GenerationState};
use crate::{status, Projection, ProjectionError, ProjectionStatus};

/// How the runner reads and waits.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events read (and at most applied) per transaction by a serving
    /// generation; bounds the work a crash throws away and the time a
    /// transaction stays open.
    pub batch_size: usize,
    /// The same for a generation being built from the start of the log,
    /// where bigger batches mean fewer round trips.
    pub rebuild_batch_size: usize,
    /// How long to wait before reading again once caught up. Polling is the
    /// authority: no wake-up can be lost.
    pub poll_interval: Duration,
    /// The longest pause between retries after a transient error.
    pub max_backoff: Duration,
    /// How long a generation replaced by a rebuild is kept before its
    /// tables are dropped, so that queries which resolved it just before
    /// the switch still find them.
    pub retire_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            rebuild_batch_size: 2_000,
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retire_grace: Duration::from_secs(30),
        }
    }
}

/// Runs projections over the store's log into a read-model database (which
/// may be the store's own database). Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ProjectionRunner {
    pool: Pool,
    store: Arc<dyn EventStore>,
    projections: Arc<BTreeMap<&'static str, Arc<dyn Projection>>>,
    config: RunnerConfig,
    tables: Arc<OnceCell<()>>,
    /// The broker deliveries that wake the loops, when there is a broker.
    live: Option<LiveFeed>,
}

impl fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("store", &self.store.backend())
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of a batch's transaction.
enum Outcome {
    Committed,
    /// The checkpoint was not where this runner thought (another runner of
    /// the same projection moved it): nothing was applied.
    Moved(Position),
    /// The generation was retired or dropped meanwhile: nothing was applied.
    Gone,
}

/// A name that is safe to splice into a schema name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40
}

impl ProjectionRunner {
    /// A runner of these projections. Panics if two share a name (they
    /// would share, and corrupt, one checkpoint) or a name is not a plain
    /// lower-case identifier (it becomes part of schema names).
    pub fn new(
        pool: Pool,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        let mut by_name = BTreeMap::new();
        for p in projections {
            let name = p.name();
            assert!(
                valid_name(name),
                "projection name {name:?} is not [a-z][a-z0-9_]*"
            );
            assert!(
                by_name.insert(name, p).is_none(),
                "two projections are named {name}"
            );
        }
        Self {
            pool,
            store,
            projections: Arc::new(by_name),
            config: RunnerConfig::default(),
            tables: Arc::new(OnceCell::new()),
            live: None,
        }
    }

    /// Follows the log live through `broker` (the `topics` of the domains
    /// the projections read, consumer group [`LIVE_GROUP`](crate::LIVE_GROUP)): each delivery
    /// wakes the projections, which then read on from their checkpoints in
    /// the store. The store stays the authority (order, gaps, catch-up after
    /// downtime, rebuilds); the broker turns a poll interval of latency into
    /// a delivery's, and polling still covers a broker that is down.
    pub fn with_broker(mut self, broker: Arc<dyn Broker>, topics: Vec<Topic>) -> Self {
        self.live = Some(LiveFeed::new(broker, topics));
        self
    }

    pub fn with_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// The names of the projections this runner runs, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.projections.keys().copied().collect()
    }

    /// The query side's handle on the same database.
    pub fn read_models(&self) -> crate::ReadModels {
        crate::ReadModels::new(self.pool.clone())
    }

    /// Runs every projection until `stop` turns true (or its sender is
    /// dropped). Transient errors are retried forever with backoff; the
    /// answer is an error only for what retrying cannot fix (a read model
    /// already served by a newer version of the projection).
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        let loops = self
            .projections
            .values()
            .map(|p| self.run_one(Arc::clone(p), stop.clone()));
        let listener = async {
            if let Some(feed) = &self.live {
                feed.listen(stop.clone()).await;
            }
        };
        let (result, ()) = tokio::join!(futures::future::try_join_all(loops), listener);
        result?;
        Ok(())
    }

    /// Creates the runner's tables and every projection's serving (or
    /// building) generation; `run` does this itself.
    pub async fn install(&self) -> Result<(), ProjectionError> {
        for p in self.projections.values() {
            self.install_one(p.as_ref()).await?;
        }
        Ok(())
    }

    async fn ensure_tables(&self) -> Result<(), ProjectionError> {
        self.tables
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await?;
                let tx = client.transaction().await?;
                schema::create_runner_tables(&tx).await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(())
            })
            .await?;
        Ok(())
    }

    /// Brings the generations of `p` in line with this code's version: the
    /// first start creates a serving generation; a version above the
    /// serving one's starts building a new generation (the old one keeps
    /// serving until the new one catches up); a build for an older version
    /// is abandoned. A serving generation of a newer version is an error:
    /// this (older) code must not write to it.
    async fn install_one(&self, p: &dyn Projection) -> Result<(), ProjectionError> {
        self.ensure_tables().await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let generations = schema::lock_generations(&tx, p.name()).await?;
        let steps = plan::install(&generations, p.version()).map_err(|newer| {
            ProjectionError::VersionMismatch {
                name: p.name(),
                stored: newer.stored,
                code: p.version(),
            }
        })?;
        self.carry_out(&tx, p, &steps).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies a plan's steps to the generation rows and tables.
    async fn carry_out(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        p: &dyn Projection,
        steps: &[Step],
    ) -> Result<Option<u32>, ProjectionError> {
        let name = p.name();
        let mut created = None;
        for step in steps {
            match *step {
                Step::Retire(generation) => {
                    tracing::info!(projection = name, generation, "retiring a generation");
                    schema::set_state(tx, name, generation, GenerationState::Retired).await?;
                }
                Step::Activate(generation) => {
                    schema::set_state(tx, name, generation, GenerationState::Active).await?;
                }
                Step::Create(state) => {
                    let g = schema::create_generation(tx, name, p.version(), state).await?;
                    tracing::info!(
                        projection = name,
                        generation = g.generation,
                        version = p.version(),
                        ?state,
                        "new generation of the read model"
                    );
                    p.setup(tx, &schema::schema_name(name, g.generation))
                        .await?;
                    created = Some(g.generation);
                }
                Step::Setup(generation) => {
                    p.setup(tx, &schema::schema_name(name, generation)).await?;
                }
            }
        }
        Ok(created)
    }

    /// Starts a blue-green rebuild of `name` with this code: a new
    /// generation is filled from the start of the log while the serving one
    /// keeps answering, and replaces it once it has caught up. Returns the
    /// new generation's number (or that of the build already under way).
    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        let p = Arc::clone(self.projection(name)?);
        self.ensure_tables().await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let generations = schema::lock_generations(&tx, p.name()).await?;
        let steps = match plan::rebuild(&generations, p.version()) {
            Ok(under_way) => return Ok(under_way),
            Err(steps) => steps,
        };
        let generation = self
            .carry_out(&tx, p.as_ref(), &steps)
            .await?
            .expect("a rebuild creates a generation");
        tx.commit().await?;
        tracing::info!(projection = p.name(), generation, "rebuild requested");
        Ok(generation)
    }

    /// The generations this code moves: those of its version that are not
    /// retired (the serving one and, during a rebuild, the one being built).
    async fn targets(&self, p: &dyn Projection) -> Result<Vec<Generation>, ProjectionError> {
        let client = self.pool.get().await?;
        Ok(schema::generations(&**client, p.name())
            .await?
            .into_iter()
            .filter(|g| g.version == p.version() && g.state != GenerationState::Retired)
            .collect())
    }

    async fn run_one(
        &self,
        p: Arc<dyn Projection>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let name = p.name();
        let mut failures = 0u32;
        loop {
            match self.install_one(p.as_ref()).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    tracing::warn!(projection = name, error = %e, "cannot install the projection; retrying");
                    failures += 1;
                    if self.pause(self.backoff(failures), &mut stop).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            projection = name,
            version = p.version(),
            "projection started"
        );
        let mut targets: Option<Vec<Generation>> = None;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            match self.round(p.as_ref(), &mut targets).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    failures = 0;
                    // Idle: see rebuilds requested elsewhere, clean up.
                    targets = None;
                    self.drop_retired(p.as_ref()).await;
                    if self.pause(self.config.poll_interval, &mut stop).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    // Every error that reaches here is retried: a consumer
                    // must never stop quietly. Lag metrics show a stall.
                    failures += 1;
                    targets = None;
                    tracing::warn!(projection = name, error = %e, failures, "batch failed; retrying");
                    if self.pause(self.backoff(failures), &mut stop).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One batch for each generation this code moves (so a build never
    /// starves the serving generation); a build that has caught up takes
    /// over. True when anything moved.
    async fn round(
        &self,
        p: &dyn Projection,
        targets: &mut Option<Vec<Generation>>,
    ) -> Result<bool, ProjectionError> {
        if targets.is_none() {
            *targets = Some(self.targets(p).await?);
        }
        let mut moved = false;
        let mut switched = false;
        for g in targets.iter_mut().flatten() {
            match self.step(p, g).await? {
                Some(position) => {
                    g.position = position;
                    moved = true;
                }
                None if g.state == GenerationState::Building => {
                    self.switch(p, g).await?;
                    switched = true;
                    moved = true;
                }
                None => {
                    if g.state == GenerationState::Active {
                        status::record(p.name(), g.position, g.position);
                    }
                }
            }
        }
        if switched {
            *targets = None;
        }
        Ok(moved)
    }

    /// Makes a caught-up build the serving generation and retires the one it
    /// replaces, in one transaction.
    async fn switch(&self, p: &dyn Projection, built: &Generation) -> Result<(), ProjectionError> {
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let generations = schema::lock_generations(&tx, name).await?;
        let Some(replaced) = plan::switch(&generations, built.generation) else {
            return Ok(());
        };
        if let Some(old) = replaced {
            schema::set_state(&tx, name, old, GenerationState::Retired).await?;
        }
        schema::set_state(&tx, name, built.generation, GenerationState::Active).await?;
        tx.commit().await?;
        metrics::counter!("herald_projection_switches_total", "projection" => name).increment(1);
        tracing::info!(
            projection = name,
            generation = built.generation,
            version = built.version,
            replaced,
            "the rebuilt generation serves now"
        );
        Ok(())
    }

    /// Drops generations retired longer ago than the grace period. Failures
    /// (a query still holding a table) are left for the next idle moment.
    async fn drop_retired(&self, p: &dyn Projection) {
        let name = p.name();
        let result = async {
            let mut client = self.pool.get().await?;
            let now = Utc::now();
            let grace = chrono::Duration::from_std(self.config.retire_grace)
                .unwrap_or(chrono::Duration::MAX);
            for g in schema::generations(&**client, name).await? {
                let expired = g.state == GenerationState::Retired
                    && g.switched_at.is_none_or(|at| at + grace <= now);
                if !expired {
                    continue;
                }
                let tx = client.transaction().await?;
                tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
                schema::drop_generation(&tx, name, g.generation).await?;
                tx.commit().await?;
                tracing::info!(
                    projection = name,
                    generation = g.generation,
                    "dropped a retired generation"
                );
            }
            Ok::<_, ProjectionError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(projection = name, error = %e, "cannot drop a retired generation yet");
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        (Duration::from_millis(50) * 2u32.saturating_pow(failures.min(16)))
            .min(self.config.max_backoff)
    }

    /// Sleeps, or less if asked to stop or (when following a broker) woken
    /// by a delivery; true when asked to stop.
    async fn pause(&self, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        crate::live::pause(wait, stop, self.live.as_ref()).await
    }

    /// Reads and applies one batch after the generation's checkpoint. The
    /// new checkpoint, or `None` when there was nothing to read.
    async fn step(
        &self,
        p: &dyn Projection,
        g: &Generation,
    ) -> Result<Option<Position>, ProjectionError> {
        let size = match g.state {
            GenerationState::Building => self.config.rebuild_batch_size,
            _ => self.config.batch_size,
        };
        let checkpoint = g.position;
        let events = self.store.read_all(checkpoint.next(), size.max(1)).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let accepted: Vec<EventEnvelope> = events.into_iter().filter(|e| p.accepts(e)).collect();
        let reached = match self.commit(p, g, checkpoint, &accepted, last, None).await {
            Ok(Outcome::Committed) => last,
            Ok(Outcome::Moved(position)) => position,
            Ok(Outcome::Gone) => return Err(ProjectionError::Retired(p.name())),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(projection = p.name(), error = %e, "batch refused; applying its events one by one");
                self.isolate(p, g, checkpoint, &accepted, last).await?
            }
        };
        if g.state == GenerationState::Active {
            self.report(p.name(), reached).await;
        }
        Ok(Some(reached))
    }

    /// Applies a refused batch event by event, each in its own transaction
    /// with the checkpoint, parking those that fail on their own.
    async fn isolate(
        &self,
        p: &dyn Projection,
        g: &Generation,
        mut checkpoint: Position,
        accepted: &[EventEnvelope],
        last: Position,
    ) -> Result<Position, ProjectionError> {
        for event in accepted {
            let single = std::slice::from_ref(event);
            let outcome = match self
                .commit(p, g, checkpoint, single, event.position, None)
                .await
            {
                Err(e) if !e.is_transient() => {
                    tracing::error!(
                        projection = p.name(),
                        generation = g.generation,
                        position = %event.position,
                        event_id = %event.id,
                        error = %e,
                        "parking an event the projection cannot apply"
                    );
                    let error = e.to_string();
                    let outcome = self
                        .commit(p, g, checkpoint, &[], event.position, Some((event, &error)))
                        .await?;
                    metrics::counter!("herald_projection_parked_total", "projection" => p.name())
                        .increment(1);
                    outcome
                }
                other => other?,
            };
            match outcome {
                Outcome::Committed => checkpoint = event.position,
                Outcome::Moved(position) => return Ok(position),
                Outcome::Gone => return Err(ProjectionError::Retired(p.name())),
            }
        }
        if checkpoint < last {
            match self.commit(p, g, checkpoint, &[], last, None).await? {
                Outcome::Committed => {}
                Outcome::Moved(position) => return Ok(position),
                Outcome::Gone => return Err(ProjectionError::Retired(p.name())),
            }
        }
        Ok(last)
    }

    /// One transaction: lock the generation's row, check its checkpoint is
    /// still `expected`, apply `events`, park one if asked, advance the
    /// checkpoint to `to`.
    async fn commit(
        &self,
        p: &dyn Projection,
        g: &Generation,
        expected: Position,
        events: &[EventEnvelope],
        to: Position,
        park: Option<(&EventEnvelope, &str)>,
    ) -> Result<Outcome, ProjectionError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some((current, state)) = schema::lock(&tx, p.name(), g.generation).await? else {
            return Ok(Outcome::Gone);
        };
        if state == GenerationState::Retired {
            return Ok(Outcome::Gone);
        }
        if current != expected {
            return Ok(Outcome::Moved(current));
        }
        if !events.is_empty() {
            p.apply(&tx, &schema::schema_name(p.name(), g.generation), events)
                .await?;
        }
        if let Some((event, error)) = park {
            schema::park(&tx, p.name(), g.generation, event.position, event.id, error).await?;
        }
        schema::advance(&tx, p.name(), g.generation, to).await?;
        tx.commit().await?;
        Ok(Outcome::Committed)
    }

    /// Updates the gauges after progress; a failure to read the head only
    /// leaves the lag gauge stale for one batch.
    async fn report(&self, name: &'static str, position: Position) {
        status::record_progress(name, Utc::now());
        match self.store.head().await {
            Ok(head) => status::record(name, position, head.position),
            Err(e) => tracing::debug!(projection = name, error = %e, "cannot read the head"),
        }
    }

    fn projection(&self, name: &str) -> Result<&Arc<dyn Projection>, ProjectionError> {
        self.projections
            .get(name)
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
    }

    /// Where every projection stands, by name.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let mut all = Vec::with_capacity(self.projections.len());
        for name in self.projections.keys() {
            all.push(self.status(name).await?);
        }
        Ok(all)
    }

    /// Where a projection's serving generation stands against the store's
    /// head, and the progress of a rebuild under way.
    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        let p = Arc::clone(self.projection(name)?);
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        let generations = schema::generations(&**client, name).await?;
        let active = generations
            .iter()
            .find(|g| g.state == GenerationState::Active)
            .copied();
        let parked = match active {
            Some(a) => schema::list_parked(&**client, name, a.generation)
                .await?
                .len(),
            None => 0,
        };
        drop(client);
        status::assemble(
            self.store.as_ref(),
            p.name(),
            p.version(),
            &generations,
            parked,
        )
        .await
    }

    /// The events a projection's serving generation has parked, in position
    /// order.
    pub async fn parked(&self, name: &str) -> Result<Vec<crate::ParkedEvent>, ProjectionError> {
        self.projection(name)?;
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        match schema::active_generation(&**client, name).await? {
            Some(generation) => schema::list_parked(&**client, name, generation).await,
            None => Ok(Vec::new()),
        }
    }

    /// Applies a parked event of the serving generation again (after the
    /// cause was fixed) and, if it now succeeds, removes it from the parked
    /// events, in one transaction. It is applied out of order (later events
    /// went on without it), which is what parking means. On failure the
    /// parked row keeps the new error.
    pub async fn retry_parked(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), ProjectionError> {
        let p = Arc::clone(self.projection(name)?);
        self.ensure_tables().await?;
        let not_parked = || ProjectionError::NotParked {
            name: name.to_owned(),
            position,
        };
        let mut client = self.pool.get().await?;
        let generation = schema::active_generation(&**client, name)
            .await?
            .ok_or_else(not_parked)?;
        let event = self
            .store
            .read_all(position, 1)
            .await?
            .into_iter()
            .find(|e| e.position == position)
            .ok_or_else(not_parked)?;
        let tx = client.transaction().await?;
        // Same lock order as the runner (generation row first), so a retry
        // and a batch never deadlock and never interleave.
        schema::lock(&tx, p.name(), generation).await?;
        if schema::lock_parked(&tx, p.name(), generation, position)
            .await?
            .is_none()
        {
            return Err(not_parked());
        }
        let applied = p
            .apply(
                &tx,
                &schema::schema_name(p.name(), generation),
                std::slice::from_ref(&event),
            )
            .await;
        match applied {
            Ok(()) => {
                schema::unpark(&tx, p.name(), generation, position).await?;
                tx.commit().await?;
                tracing::info!(projection = name, position = %position, "parked event applied");
                Ok(())
            }
            Err(e) => {
                tx.rollback().await?;
                schema::set_parked_error(&**client, p.name(), generation, position, &e.to_string())
                    .await?;
                Err(e)
            }
        }
    }
}

/// How long the detached generation of a diff is kept should the diff die
/// before dropping it (a runner drops it after that).
const DIFF_KEEP: Duration = Duration::from_secs(3600);

/// The moment a detached generation kept for `keep` from now expires.
fn expiry(keep: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650))
}

/// Builds for inspection and diffs (see [`crate::diff`]): generations built
/// beside the serving one that no runner moves or switches to.
impl ProjectionRunner {
    /// Builds a detached generation of `name` with this code, from the start
    /// of the log up to `to` (the head as it is now when `None`), beside the
    /// serving generation and never switched to: its tables are there to be
    /// inspected, and any runner drops them once `keep` has passed since the
    /// last batch (or [`drop_detached`](Self::drop_detached) does). A build
    /// that fails is dropped.
    pub async fn build_detached(
        &self,
        name: &str,
        to: Option<Position>,
        keep: Duration,
        progress: crate::diff::Progress,
    ) -> Result<crate::diff::DetachedBuild, ProjectionError> {
        let p = Arc::clone(self.projection(name)?);
        self.ensure_tables().await?;
        let target = match to {
            Some(to) => to,
            None => self.store.head().await?.position,
        };
        let (generation, serving) = self.create_detached(p.as_ref(), keep).await?;
        let filled = self
            .fill_detached(
                p.as_ref(),
                generation,
                Position::START,
                target,
                keep,
                &progress,
            )
            .await;
        match filled {
            Ok((position, expires_at)) => Ok(crate::diff::DetachedBuild {
                projection: p.name().to_owned(),
                generation,
                version: p.version(),
                position,
                tables_in: schema::schema_name(p.name(), generation),
                serving_generation: serving,
                expires_at,
            }),
            Err(e) => {
                if let Err(dropped) = self.drop_detached(p.name(), generation).await {
                    tracing::warn!(projection = p.name(), generation, error = %dropped, "cannot drop a failed detached build; a runner drops it once it expires");
                }
                Err(e)
            }
        }
    }

    /// Drops a generation of `name` that neither serves nor is being built
    /// (a detached build, or a retired generation), with its tables and
    /// parked events. Nothing happens when it is gone already.
    pub async fn drop_detached(&self, name: &str, generation: u32) -> Result<(), ProjectionError> {
        self.projection(name)?;
        self.ensure_tables().await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let generations = schema::lock_generations(&tx, name).await?;
        let Some(g) = generations.iter().find(|g| g.generation == generation) else {
            return Ok(());
        };
        if g.state != GenerationState::Retired {
            return Err(ProjectionError::Internal(format!(
                "generation {generation} of {name} is {:?}, not a detached build",
                g.state
            )));
        }
        schema::drop_generation(&tx, name, generation).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Compares `name`'s serving tables with a fresh build of them at the
    /// same log position, row for row, and drops the build. The serving
    /// generation is held still (its row share-locked, so its runner waits
    /// for one batch) only while the build catches up its last events and
    /// the tables are compared. At most `max_rows` differing rows are
    /// listed per table and direction; all are counted.
    pub async fn diff(
        &self,
        name: &str,
        max_rows: usize,
        progress: crate::diff::Progress,
    ) -> Result<crate::diff::ProjectionDiff, ProjectionError> {
        let p = Arc::clone(self.projection(name)?);
        self.ensure_tables().await?;
        let live = {
            let client = self.pool.get().await?;
            schema::generations(&**client, name)
                .await?
                .into_iter()
                .find(|g| g.state == GenerationState::Active)
                .ok_or_else(|| ProjectionError::NotServing(name.to_owned()))?
        };
        let (generation, _) = self.create_detached(p.as_ref(), DIFF_KEEP).await?;
        let result = self
            .diff_detached(p.as_ref(), generation, live.position, max_rows, &progress)
            .await;
        if let Err(e) = self.drop_detached(name, generation).await {
            tracing::warn!(projection = name, generation, error = %e, "cannot drop the diff's build; a runner drops it once it expires");
        }
        result
    }

    async fn diff_detached(
        &self,
        p: &dyn Projection,
        generation: u32,
        live_position: Position,
        max_rows: usize,
        progress: &crate::diff::Progress,
    ) -> Result<crate::diff::ProjectionDiff, ProjectionError> {
        let name = p.name();
        let (mut position, _) = self
            .fill_detached(
                p,
                generation,
                Position::START,
                live_position,
                DIFF_KEEP,
                progress,
            )
            .await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The serving generation's runner takes this row FOR UPDATE for
        // every batch: while it is share-locked the serving tables stand
        // still (and no switch happens).
        let row = tx
            .query_opt(
                "SELECT generation, position FROM herald_read_models \
                 WHERE name = $1 AND state = 'active' FOR SHARE",
                &[&name],
            )
            .await?
            .ok_or_else(|| ProjectionError::NotServing(name.to_owned()))?;
        let live_generation = row.get::<_, i32>(0) as u32;
        let live_position = Position(row.get::<_, i64>(1) as u64);
        if live_position > position {
            position = self
                .fill_detached(p, generation, position, live_position, DIFF_KEEP, progress)
                .await?
                .0;
        }
        if position != live_position {
            return Err(ProjectionError::Internal(format!(
                "the build of {name} reached position {position}, the serving generation is at \
                 {live_position}"
            )));
        }
        let tables = crate::diff::postgres_tables(
            &*tx,
            &schema::schema_name(name, live_generation),
            &schema::schema_name(name, generation),
            p.tables(),
            max_rows,
        )
        .await?;
        tx.rollback().await?;
        Ok(crate::diff::ProjectionDiff {
            projection: name.to_owned(),
            live_generation,
            rebuilt_generation: generation,
            position,
            tables,
        })
    }

    /// Adds a detached generation (a `retired` row whose `switched_at`,
    /// in the future, keeps every runner from dropping it) and its tables;
    /// returns it and the serving generation.
    async fn create_detached(
        &self,
        p: &dyn Projection,
        keep: Duration,
    ) -> Result<(u32, Option<u32>), ProjectionError> {
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let generations = schema::lock_generations(&tx, name).await?;
        let serving = generations
            .iter()
            .find(|g| g.state == GenerationState::Active)
            .map(|g| g.generation);
        let g = schema::create_generation(&tx, name, p.version(), GenerationState::Retired).await?;
        tx.execute(
            "UPDATE herald_read_models SET switched_at = $3 WHERE name = $1 AND generation = $2",
            &[&name, &(g.generation as i32), &expiry(keep)],
        )
        .await?;
        p.setup(&tx, &schema::schema_name(name, g.generation))
            .await?;
        tx.commit().await?;
        tracing::info!(
            projection = name,
            generation = g.generation,
            "building a detached generation"
        );
        Ok((g.generation, serving))
    }

    /// Applies the log after `from` up to `to` (or the head, if lower) to a
    /// detached generation, in rebuild-sized batches each committed with
    /// its checkpoint, parking the events `apply` refuses as the runner
    /// does. The position reached and when the build now expires.
    async fn fill_detached(
        &self,
        p: &dyn Projection,
        generation: u32,
        from: Position,
        to: Position,
        keep: Duration,
        progress: &crate::diff::Progress,
    ) -> Result<(Position, chrono::DateTime<Utc>), ProjectionError> {
        let mut position = from;
        let mut expires = expiry(keep);
        progress(position, to);
        while position < to {
            let room =
                (to.get() - position.get()).min(self.config.rebuild_batch_size.max(1) as u64);
            let mut events = self.store.read_all(position.next(), room as usize).await?;
            events.retain(|e| e.position <= to);
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            let accepted: Vec<EventEnvelope> =
                events.into_iter().filter(|e| p.accepts(e)).collect();
            expires = expiry(keep);
            match self
                .commit_detached(p, generation, position, &accepted, last, None, expires)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, "batch refused; applying its events one by one");
                    let mut checkpoint = position;
                    for event in &accepted {
                        let single = std::slice::from_ref(event);
                        match self
                            .commit_detached(
                                p,
                                generation,
                                checkpoint,
                                single,
                                event.position,
                                None,
                                expires,
                            )
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_transient() => return Err(e),
                            Err(e) => {
                                let error = e.to_string();
                                self.commit_detached(
                                    p,
                                    generation,
                                    checkpoint,
                                    &[],
                                    event.position,
                                    Some((event, &error)),
                                    expires,
                                )
                                .await?;
                            }
                        }
                        checkpoint = event.position;
                    }
                    if checkpoint < last {
                        self.commit_detached(p, generation, checkpoint, &[], last, None, expires)
                            .await?;
                    }
                }
            }
            position = last;
            progress(position, to);
        }
        Ok((position, expires))
    }

    /// One batch of a detached build: its effect, a parked event if asked,
    /// the checkpoint and the new expiry, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn commit_detached(
        &self,
        p: &dyn Projection,
        generation: u32,
        expected: Position,
        events: &[EventEnvelope],
        to: Position,
        park: Option<(&EventEnvelope, &str)>,
        expires: chrono::DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        match schema::lock(&tx, name, generation).await? {
            Some((current, GenerationState::Retired)) if current == expected => {}
            _ => {
                return Err(ProjectionError::Internal(format!(
                    "the detached generation {generation} of {name} was dropped or moved meanwhile"
                )))
            }
        }
        if !events.is_empty() {
            p.apply(&tx, &schema::schema_name(name, generation), events)
                .await?;
        }
        if let Some((event, error)) = park {
            schema::park(&tx, name, generation, event.position, event.id, error).await?;
        }
        tx.execute(
            "UPDATE herald_read_models SET position = $3, updated_at = now(), switched_at = $4 \
             WHERE name = $1 AND generation = $2",
            &[&name, &(generation as i32), &(to.get() as i64), &expires],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
