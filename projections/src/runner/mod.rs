//! The projection runner: one loop, whichever database holds the read
//! models. For each projection it reads the store's log from each
//! generation's checkpoint, applies bounded batches in one transaction
//! with the checkpoint, isolates and parks poison events, builds new
//! generations beside the serving one and switches to them (blue-green),
//! and answers status and parked-event requests. What it decides comes
//! from [`crate::plan`]; the I/O is a [`Backend`]'s ([`postgres`],
//! [`sqlite`]), so metrics, logs, parking and switching are the same on
//! both by construction. The offline builds and diffs are in [`detached`].

mod backend;
mod detached;
mod postgres;
mod sqlite;

pub use backend::{Backend, Describe};
pub use postgres::Postgres;
pub use sqlite::Sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_brokers::{Broker, Topic};
use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use tokio::sync::watch;

use crate::live::LiveFeed;
use crate::plan::{self, Step};
use crate::schema::{Generation, GenerationState};
use crate::{status, telemetry, ParkedEvent, ProjectionError, ProjectionStatus};
use backend::{Batch, Carried, Outcome, Park};

/// The runner of projections into Postgres (the store's database, or
/// another).
pub type ProjectionRunner = Runner<Postgres>;

/// The runner of projections into SQLite, beside the embedded store.
pub type EmbeddedRunner = Runner<Sqlite>;

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
    /// How often an idle projection looks for rebuilds requested by other
    /// processes and drops retired generations.
    pub housekeeping_interval: Duration,
    /// The longest a serving generation that passes over events it does
    /// not take goes without saving its checkpoint while busy.
    pub checkpoint_every: Duration,
    /// How long a projection woken by a delivery waits before it reads, so
    /// that the commits of a busy moment are applied as one batch rather
    /// than each in its own transaction; what read models lag at most
    /// beyond the delivery.
    pub linger: Duration,
    /// How long a projection's lease lasts without renewal. One process at
    /// a time runs each projection (the others stand by, as the relay's
    /// do); when it dies, a stand-by takes over at most this long (plus
    /// `standby_poll`) later. A clean stop hands over at once.
    pub lease_ttl: Duration,
    /// How often the running process renews a projection's lease.
    pub renew_every: Duration,
    /// How often a stand-by tries to take a projection's lease, and
    /// reports the position the running process has reached.
    pub standby_poll: Duration,
    /// This process is known to be the only one on its store (it claimed
    /// the store alone): no lease is taken, so a restart after a crash
    /// goes on at once instead of waiting for the dead process's lease.
    pub alone: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            rebuild_batch_size: 2_000,
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retire_grace: Duration::from_secs(30),
            housekeeping_interval: Duration::from_secs(1),
            checkpoint_every: Duration::from_secs(1),
            linger: Duration::from_millis(10),
            lease_ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            standby_poll: Duration::from_secs(1),
            alone: false,
        }
    }
}

/// Runs projections over the store's log into the read-model database of
/// its [`Backend`]. Cheap to clone; clones share everything.
pub struct Runner<B: Backend> {
    backend: Arc<B>,
    store: Arc<dyn EventStore>,
    projections: Arc<BTreeMap<&'static str, Arc<B::Projection>>>,
    config: RunnerConfig,
    /// The broker deliveries that wake the loops, when there is a broker.
    live: Option<LiveFeed>,
    /// This runner's identity in the projections' leases (clones share it).
    holder: Arc<str>,
}

impl<B: Backend> Clone for Runner<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            store: Arc::clone(&self.store),
            projections: Arc::clone(&self.projections),
            config: self.config.clone(),
            live: self.live.clone(),
            holder: Arc::clone(&self.holder),
        }
    }
}

impl<B: Backend> fmt::Debug for Runner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("store", &self.store.backend())
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// What one round of a projection's loop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// More is waiting (a full batch, a build under way, a switch).
    More,
    /// Moved, and read the log to its end.
    ReadToEnd,
    /// Nothing to read.
    Idle,
}

/// A generation this code moves, as the loop follows it.
#[derive(Debug, Clone)]
struct Target {
    /// As stored; `position` is its saved checkpoint.
    g: Generation,
    /// How far the log has been read: past the checkpoint by events the
    /// projection does not take, whose checkpoint is saved later.
    read_through: Position,
    /// When the checkpoint was last saved.
    saved_at: tokio::time::Instant,
}

impl Target {
    fn new(g: Generation) -> Self {
        Self {
            read_through: g.position,
            g,
            saved_at: tokio::time::Instant::now(),
        }
    }

    /// `g` as stored, keeping how far a target already followed it had
    /// read past its checkpoint.
    fn following(g: Generation, known: &[Target]) -> Self {
        match known.iter().find(|t| t.g.generation == g.generation) {
            Some(t) if t.read_through > g.position => Self {
                read_through: t.read_through,
                saved_at: t.saved_at,
                g,
            },
            _ => Self::new(g),
        }
    }

    /// Where the next read starts after.
    fn resume(&self) -> Position {
        self.read_through.max(self.g.position)
    }
}

/// Why a term as the process that runs a projection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Stopped,
    LeaseLost,
}

/// Whether one batch was a full one (more may wait).
#[derive(Debug, Clone, Copy)]
struct Stepped {
    full: bool,
}

/// A name that is safe to splice into a schema or table name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40
}

impl<B: Backend> Runner<B> {
    /// A runner of these projections on `backend`. Panics if two share a
    /// name (they would share, and corrupt, one checkpoint) or a name is
    /// not a plain lower-case identifier (it becomes part of schema and
    /// table names).
    fn on(backend: B, store: Arc<dyn EventStore>, projections: Vec<Arc<B::Projection>>) -> Self {
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
            backend: Arc::new(backend),
            store,
            projections: Arc::new(by_name),
            config: RunnerConfig::default(),
            live: None,
            holder: format!("projections-{}", uuid::Uuid::now_v7()).into(),
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

    fn projection(&self, name: &str) -> Result<Arc<B::Projection>, ProjectionError> {
        self.projections
            .get(name)
            .cloned()
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
    }

    /// Runs every projection until `stop` turns true (or its sender is
    /// dropped), each in a task of its own. Transient errors are retried
    /// forever with backoff; the answer is an error only for what retrying
    /// cannot fix (a read model already served by a newer version of the
    /// projection, or a projection that panicked).
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        // Dropped (with the other loops aborted) when one fails.
        let mut loops = tokio::task::JoinSet::new();
        for p in self.projections.values() {
            let (runner, p, stop) = (self.clone(), Arc::clone(p), stop.clone());
            loops.spawn(async move { runner.run_one(p, stop).await });
        }
        let all = async {
            while let Some(joined) = loops.join_next().await {
                match joined {
                    Ok(result) => result?,
                    Err(e) => return Err(ProjectionError::Task(e)),
                }
            }
            Ok(())
        };
        let listener = async {
            if let Some(feed) = &self.live {
                feed.listen(stop.clone()).await;
            }
        };
        let (result, ()) = tokio::join!(all, listener);
        result
    }

    /// Creates the runner's tables and every projection's serving (or
    /// building) generation; `run` does this itself.
    pub async fn install(&self) -> Result<(), ProjectionError> {
        for p in self.projections.values() {
            self.install_one(p).await?;
        }
        Ok(())
    }

    /// Brings the generations of `p` in line with this code's version
    /// ([`plan::install`]): the first start creates a serving generation; a
    /// version above the serving one's starts building a new generation; a
    /// build for an older version is abandoned. A serving generation of a
    /// newer version is an error: this (older) code must not write to it.
    async fn install_one(&self, p: &Arc<B::Projection>) -> Result<(), ProjectionError> {
        let (name, version) = (p.name(), p.version());
        let carried = self
            .backend
            .carry_out(
                p,
                Box::new(move |generations| {
                    plan::install(generations, version).map_err(|newer| {
                        ProjectionError::VersionMismatch {
                            name,
                            stored: newer.stored,
                            code: version,
                        }
                    })
                }),
            )
            .await?;
        log_steps(p.as_ref(), &carried);
        Ok(())
    }

    /// Starts a blue-green rebuild of `name` with this code: a new
    /// generation is filled from the start of the log while the serving one
    /// keeps answering, and replaces it once it has caught up. Returns the
    /// new generation's number (or that of the build already under way).
    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        let p = self.projection(name)?;
        let version = p.version();
        let carried = self
            .backend
            .carry_out(
                &p,
                Box::new(move |generations| Ok(plan::rebuild_steps(generations, version))),
            )
            .await?;
        log_steps(p.as_ref(), &carried);
        match (carried.created, plan::rebuild(&carried.before, version)) {
            (Some(generation), _) => {
                tracing::info!(projection = p.name(), generation, "Rebuild requested.");
                Ok(generation)
            }
            (None, Ok(under_way)) => Ok(under_way),
            (None, Err(_)) => Err(crate::GenerationFault::NotMade(name.to_owned()).into()),
        }
    }

    /// The generations this code moves: those of its version that are not
    /// retired (the serving one and, during a rebuild, the one being built).
    async fn targets(&self, p: &B::Projection) -> Result<Vec<Generation>, ProjectionError> {
        Ok(self
            .backend
            .generations(p.name())
            .await?
            .into_iter()
            .filter(|g| g.version == p.version() && g.state != GenerationState::Retired)
            .collect())
    }

    async fn run_one(
        &self,
        p: Arc<B::Projection>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let name = p.name();
        let mut failures = 0u32;
        loop {
            match self.install_one(&p).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    failures += 1;
                    tracing::warn!(projection = name, error = %e, failures, "Cannot install the projection; retrying.");
                    if self.pause(self.backoff(failures), &mut stop, None).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            projection = name,
            version = p.version(),
            "Projection started."
        );
        loop {
            if self.stand_by(&p, &mut stop).await {
                return Ok(());
            }
            tracing::info!(projection = name, holder = %self.holder, "This process runs the projection.");
            telemetry::running(name, true);
            let term = self.lead(&p, &mut stop).await;
            telemetry::running(name, false);
            match term? {
                Term::Stopped if self.config.alone => return Ok(()),
                Term::Stopped => {
                    // Hand over at once rather than after the lease expires.
                    if let Err(e) = self.backend.release_lease(name, &self.holder).await {
                        tracing::debug!(projection = name, error = %e, "Cannot release the projection's lease; it expires on its own.");
                    }
                    return Ok(());
                }
                Term::LeaseLost => {
                    tracing::warn!(projection = name, holder = %self.holder, "The projection's lease was lost; standing by.");
                }
            }
        }
    }

    /// Waits until this runner holds `p`'s lease; true when asked to stop
    /// first. Meanwhile it reports the position the running process has
    /// reached, so that every process's gauges tell the truth.
    async fn stand_by(&self, p: &Arc<B::Projection>, stop: &mut watch::Receiver<bool>) -> bool {
        let name = p.name();
        let mut announced = false;
        let mut seen: Option<Position> = None;
        if self.config.alone {
            return *stop.borrow();
        }
        loop {
            if *stop.borrow() {
                return true;
            }
            match self
                .backend
                .take_lease(name, &self.holder, self.config.lease_ttl)
                .await
            {
                Ok(true) => return false,
                Ok(false) => {
                    if !announced {
                        announced = true;
                        telemetry::running(name, false);
                        tracing::info!(
                            projection = name,
                            "Another process runs the projection; standing by."
                        );
                    }
                    self.follow(p, &mut seen).await;
                }
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "Cannot reach the read models' database to take the projection's lease; retrying.");
                }
            }
            if self.pause(self.config.standby_poll, stop, None).await {
                return true;
            }
        }
    }

    /// A stand-by's report of where the serving generation stands, as the
    /// running process saved it: progress when it moved or is at the head.
    async fn follow(&self, p: &Arc<B::Projection>, seen: &mut Option<Position>) {
        let name = p.name();
        let serving = match self.backend.generations(name).await {
            Ok(generations) => generations
                .into_iter()
                .find(|g| g.state == GenerationState::Active),
            Err(e) => {
                tracing::debug!(projection = name, error = %e, "Cannot read where the projection stands.");
                return;
            }
        };
        let Some(serving) = serving else { return };
        let head = match self.store.known_head() {
            Some(head) => head,
            None => match self.store.head().await {
                Ok(head) => head.position,
                Err(_) => return,
            },
        };
        let position = serving.position;
        telemetry::position(name, position, head.max(position));
        if *seen != Some(position) || position >= head {
            telemetry::progressed(name, Utc::now());
        }
        *seen = Some(position);
    }

    /// One term as the process that runs `p`: rounds until asked to stop or
    /// the lease is lost. A batch committed after the lease was lost does
    /// no harm: every batch moves the checkpoint only from where it read it.
    async fn lead(
        &self,
        p: &Arc<B::Projection>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Term, ProjectionError> {
        let name = p.name();
        let mut failures = 0u32;
        let mut targets: Option<Vec<Target>> = None;
        // Kept across rounds: a delivery during a round is not missed.
        let mut wake_ups = self.live.as_ref().map(LiveFeed::wake_ups);
        let mut housekeeping = tokio::time::Instant::now();
        let mut renewed = tokio::time::Instant::now();
        let mut refresh = false;
        loop {
            if *stop.borrow() {
                return Ok(Term::Stopped);
            }
            if !self.config.alone && renewed.elapsed() >= self.config.renew_every {
                match self
                    .backend
                    .take_lease(name, &self.holder, self.config.lease_ttl)
                    .await
                {
                    Ok(true) => renewed = tokio::time::Instant::now(),
                    Ok(false) => return Ok(Term::LeaseLost),
                    // Go on while the lease may still be ours; the
                    // checkpoints fence what a late batch could do.
                    Err(_) if renewed.elapsed() >= self.config.lease_ttl => {
                        return Ok(Term::LeaseLost)
                    }
                    Err(e) => {
                        tracing::warn!(projection = name, error = %e, "Cannot renew the projection's lease.");
                    }
                }
            }
            if housekeeping.elapsed() >= self.config.housekeeping_interval {
                // See rebuilds requested here or elsewhere, drop retired
                // tables: once a second, also while the log stays busy
                // (when no round is ever idle), not after every commit.
                housekeeping = tokio::time::Instant::now();
                refresh = true;
                self.drop_retired(p).await;
            }
            if let Some(wake_ups) = wake_ups.as_mut() {
                // This round reads past every delivery seen so far.
                wake_ups.borrow_and_update();
            }
            let outcome = self
                .round(p, &mut targets, std::mem::take(&mut refresh))
                .await;
            match outcome {
                Ok(Round::More) => {
                    failures = 0;
                    continue;
                }
                // A round that read to the log's end: the next event is
                // announced by a delivery, so reading again at once (an
                // empty read per projection per commit) is not needed. With
                // no broker to announce it, only a read can tell.
                Ok(Round::ReadToEnd) if wake_ups.is_none() => {
                    failures = 0;
                    continue;
                }
                Ok(Round::ReadToEnd | Round::Idle) => failures = 0,
                Err(e) => {
                    // Every error that reaches here is retried: a consumer
                    // must never stop quietly. Lag metrics show a stall.
                    failures += 1;
                    targets = None;
                    tracing::warn!(projection = name, error = %e, failures, "A batch failed; retrying it.");
                    if self
                        .pause(self.backoff(failures), stop, wake_ups.as_mut())
                        .await
                    {
                        return Ok(Term::Stopped);
                    }
                    continue;
                }
            };
            if self
                .pause(self.config.poll_interval, stop, wake_ups.as_mut())
                .await
            {
                return Ok(Term::Stopped);
            }
            if !self.config.linger.is_zero() && self.pause(self.config.linger, stop, None).await {
                return Ok(Term::Stopped);
            }
        }
    }

    /// One batch for each generation this code moves (so a build never
    /// starves the serving generation); a build that has caught up takes
    /// over.
    async fn round(
        &self,
        p: &Arc<B::Projection>,
        targets: &mut Option<Vec<Target>>,
        refresh: bool,
    ) -> Result<Round, ProjectionError> {
        if targets.is_none() || refresh {
            let known = targets.take().unwrap_or_default();
            *targets = Some(
                self.targets(p)
                    .await?
                    .into_iter()
                    .map(|g| Target::following(g, &known))
                    .collect(),
            );
        }
        let mut moved = false;
        let mut more = false;
        let mut switched = false;
        for t in targets.iter_mut().flatten() {
            match self.step(p, t).await? {
                Some(Stepped { full }) if t.g.state == GenerationState::Building && !full => {
                    // A build that read to the head as it stood takes over
                    // now: waiting for a read that finds nothing could wait
                    // forever while the log keeps moving. As the serving
                    // generation it goes on from where it stands.
                    self.switch(p, &t.g).await?;
                    switched = true;
                    moved = true;
                    more = true;
                }
                Some(Stepped { full }) => {
                    moved = true;
                    more |= full || t.g.state == GenerationState::Building;
                }
                None if t.g.state == GenerationState::Building => {
                    self.switch(p, &t.g).await?;
                    switched = true;
                    moved = true;
                    more = true;
                }
                None => {
                    if t.read_through > t.g.position {
                        // Caught up: save how far the skipped events go.
                        self.save(p, t, Arc::new([]), t.read_through).await?;
                    }
                    if t.g.state == GenerationState::Active {
                        telemetry::position(p.name(), t.g.position, t.g.position);
                    }
                }
            }
        }
        if switched {
            *targets = None;
        }
        Ok(match (moved, more) {
            (_, true) => Round::More,
            (true, false) => Round::ReadToEnd,
            (false, false) => Round::Idle,
        })
    }

    /// Makes a caught-up build the serving generation and retires the one it
    /// replaces, in one transaction ([`plan::switch`]).
    async fn switch(
        &self,
        p: &Arc<B::Projection>,
        built: &Generation,
    ) -> Result<(), ProjectionError> {
        let generation = built.generation;
        let carried = self
            .backend
            .carry_out(
                p,
                Box::new(move |generations| Ok(plan::switch_steps(generations, generation))),
            )
            .await?;
        if carried.steps.is_empty() {
            // Another runner switched.
            return Ok(());
        }
        let replaced = carried.steps.iter().find_map(|step| match step {
            Step::Retire(old) => Some(*old),
            _ => None,
        });
        telemetry::switched(p.name());
        tracing::info!(
            projection = p.name(),
            generation,
            version = built.version,
            replaced,
            "the rebuilt generation serves now"
        );
        Ok(())
    }

    /// Drops generations retired longer ago than the grace period. Failures
    /// (a query still holding a table) are left for the next idle moment.
    async fn drop_retired(&self, p: &Arc<B::Projection>) {
        let name = p.name();
        let grace =
            chrono::Duration::from_std(self.config.retire_grace).unwrap_or(chrono::Duration::MAX);
        let result = async {
            let now = Utc::now();
            for g in self.backend.generations(name).await? {
                let expired = g.state == GenerationState::Retired
                    && g.switched_at.is_none_or(|at| at + grace <= now);
                if expired {
                    self.backend.drop_generation(p, g.generation).await?;
                    tracing::info!(
                        projection = name,
                        generation = g.generation,
                        "Dropped a retired generation."
                    );
                }
            }
            Ok::<_, ProjectionError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(projection = name, error = %e, "Cannot drop a retired generation yet; trying again later.");
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        (Duration::from_millis(50) * 2u32.saturating_pow(failures.min(16)))
            .min(self.config.max_backoff)
    }

    /// Sleeps, or less if asked to stop or (when following a broker) woken
    /// by a delivery; true when asked to stop.
    async fn pause(
        &self,
        wait: Duration,
        stop: &mut watch::Receiver<bool>,
        wake_ups: Option<&mut watch::Receiver<u64>>,
    ) -> bool {
        crate::live::pause(wait, stop, wake_ups).await
    }

    /// Reads and applies one batch after where the generation has read to:
    /// whether it was full, or `None` when there was nothing to read.
    async fn step(
        &self,
        p: &Arc<B::Projection>,
        t: &mut Target,
    ) -> Result<Option<Stepped>, ProjectionError> {
        let size = match t.g.state {
            GenerationState::Building => self.config.rebuild_batch_size,
            _ => self.config.batch_size,
        }
        .max(1);
        let events = self.store.read_all(t.resume().next(), size).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let full = events.len() >= size;
        let accepted: Arc<[EventEnvelope]> = events.into_iter().filter(|e| p.accepts(e)).collect();
        // A serving generation passes over events it does not take without
        // a transaction (most projections take one domain of many); its
        // checkpoint catches up with its next batch, when it goes idle, or
        // after `checkpoint_every`, whichever comes first.
        let skip = accepted.is_empty()
            && t.g.state == GenerationState::Active
            && t.saved_at.elapsed() < self.config.checkpoint_every;
        if skip {
            t.read_through = last;
            self.report(p.name(), last).await;
        } else {
            self.save(p, t, accepted, last).await?;
        }
        Ok(Some(Stepped { full }))
    }

    /// Applies `accepted` (events up to `last`) to the generation and moves
    /// its checkpoint to `last`, in one transaction.
    async fn save(
        &self,
        p: &Arc<B::Projection>,
        t: &mut Target,
        accepted: Arc<[EventEnvelope]>,
        last: Position,
    ) -> Result<(), ProjectionError> {
        let checkpoint = t.g.position;
        let batch = Batch {
            generation: t.g.generation,
            expected: checkpoint,
            events: Arc::clone(&accepted),
            to: last,
            park: None,
            detached: None,
        };
        let reached = match self.backend.commit(p, batch).await {
            Ok(Outcome::Committed) => last,
            Ok(Outcome::Moved(position)) => position,
            Ok(Outcome::Gone) => return Err(ProjectionError::Retired(p.name())),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(projection = p.name(), generation = t.g.generation, error = %e, "A batch was refused; applying its events one by one to find the one at fault.");
                self.isolate(p, &t.g, checkpoint, &accepted, last).await?
            }
        };
        t.g.position = reached;
        t.read_through = reached;
        t.saved_at = tokio::time::Instant::now();
        if t.g.state == GenerationState::Active {
            self.report(p.name(), reached).await;
        }
        Ok(())
    }

    /// Applies a refused batch event by event, each in its own transaction
    /// with the checkpoint, parking those that fail on their own.
    async fn isolate(
        &self,
        p: &Arc<B::Projection>,
        g: &Generation,
        mut checkpoint: Position,
        accepted: &[EventEnvelope],
        last: Position,
    ) -> Result<Position, ProjectionError> {
        let batch = |expected, events: Arc<[EventEnvelope]>, to, park| Batch {
            generation: g.generation,
            expected,
            events,
            to,
            park,
            detached: None,
        };
        for event in accepted {
            let single: Arc<[EventEnvelope]> = Arc::new([event.clone()]);
            let outcome = match self
                .backend
                .commit(p, batch(checkpoint, single, event.position, None))
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
                    let park = Park {
                        position: event.position,
                        event_id: event.id,
                        error: e.to_string(),
                    };
                    let outcome = self
                        .backend
                        .commit(
                            p,
                            batch(checkpoint, Arc::new([]), event.position, Some(park)),
                        )
                        .await?;
                    if outcome == Outcome::Committed {
                        telemetry::parked(p.name());
                    }
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
            match self
                .backend
                .commit(p, batch(checkpoint, Arc::new([]), last, None))
                .await?
            {
                Outcome::Committed => {}
                Outcome::Moved(position) => return Ok(position),
                Outcome::Gone => return Err(ProjectionError::Retired(p.name())),
            }
        }
        Ok(last)
    }

    /// Updates the gauges after progress; a failure to read the head only
    /// leaves the lag gauge stale for one batch.
    async fn report(&self, name: &'static str, position: Position) {
        telemetry::progressed(name, Utc::now());
        // Once per batch per projection: the head the store follows in
        // memory, not a query, when it has one.
        if let Some(head) = self.store.known_head() {
            telemetry::position(name, position, head.max(position));
            return;
        }
        match self.store.head().await {
            Ok(head) => telemetry::position(name, position, head.position),
            Err(e) => tracing::debug!(projection = name, error = %e, "Cannot read the log's head."),
        }
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
        let p = self.projection(name)?;
        let generations = self.backend.generations(p.name()).await?;
        let active = generations
            .iter()
            .find(|g| g.state == GenerationState::Active);
        let parked = match active {
            Some(a) => self.backend.parked(p.name(), a.generation).await?.len(),
            None => 0,
        };
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
    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, ProjectionError> {
        let p = self.projection(name)?;
        let active = self
            .backend
            .generations(p.name())
            .await?
            .into_iter()
            .find(|g| g.state == GenerationState::Active);
        match active {
            Some(a) => self.backend.parked(p.name(), a.generation).await,
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
        let p = self.projection(name)?;
        let event = self
            .store
            .read_all(position, 1)
            .await?
            .into_iter()
            .find(|e| e.position == position)
            .ok_or_else(|| ProjectionError::NotParked {
                name: name.to_owned(),
                position,
            })?;
        self.backend.retry(&p, event).await?;
        tracing::info!(projection = p.name(), position = %position, "A parked event applied on retry.");
        Ok(())
    }
}

/// Logs the generations a plan made or retired.
fn log_steps(p: &(impl Describe + ?Sized), carried: &Carried) {
    let name = p.name();
    for step in &carried.steps {
        match *step {
            Step::Retire(generation) => {
                tracing::info!(projection = name, generation, "Retiring a generation.");
            }
            Step::Create(state) => tracing::info!(
                projection = name,
                generation = carried.created,
                version = p.version(),
                ?state,
                "new generation of the read model"
            ),
            Step::CreateDetached(_) => tracing::info!(
                projection = name,
                generation = carried.created,
                version = p.version(),
                "Building a detached generation."
            ),
            Step::Activate(_) | Step::Setup(_) => {}
        }
    }
}
