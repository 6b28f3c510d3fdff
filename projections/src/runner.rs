//! The [`ProjectionRunner`]: the loop that reads the store's log from each
//! projection's checkpoint, applies bounded batches in one transaction with
//! the checkpoint, isolates and parks poison events, and answers status and
//! parked-event requests.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use tokio::sync::{watch, OnceCell};

use crate::{schema, status, Projection, ProjectionError, ProjectionStatus};

/// How the runner reads and waits.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events read (and at most applied) per transaction; bounds the work a
    /// crash throws away and the time a transaction stays open.
    pub batch_size: usize,
    /// How long to wait before reading again once caught up. Polling is the
    /// authority: no wake-up can be lost.
    pub poll_interval: Duration,
    /// The longest pause between retries after a transient error.
    pub max_backoff: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Runs projections over the store's log into a read-model database (which
/// may be the store's own database). Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ProjectionRunner {
    pool: Pool,
    store: Arc<dyn EventStore>,
    projections: Arc<HashMap<&'static str, Arc<dyn Projection>>>,
    config: RunnerConfig,
    tables: Arc<OnceCell<()>>,
}

impl fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.projections.keys().collect();
        names.sort();
        f.debug_struct("ProjectionRunner")
            .field("store", &self.store.backend())
            .field("projections", &names)
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
}

impl ProjectionRunner {
    /// A runner of these projections. Panics if two share a name, since they
    /// would share (and corrupt) one checkpoint.
    pub fn new(
        pool: Pool,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        let mut by_name = HashMap::new();
        for p in projections {
            let name = p.name();
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
        }
    }

    pub fn with_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs every projection until `stop` turns true (or its sender is
    /// dropped). Transient errors are retried forever with backoff; the
    /// answer is an error only for what retrying cannot fix (a checkpoint of
    /// another version).
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        let loops = self
            .projections
            .values()
            .map(|p| self.run_one(Arc::clone(p), stop.clone()));
        futures::future::try_join_all(loops).await?;
        Ok(())
    }

    /// Creates the runner's tables and every projection's tables and
    /// checkpoint; `run` does this itself.
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

    async fn install_one(&self, p: &dyn Projection) -> Result<Position, ProjectionError> {
        self.ensure_tables().await?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let checkpoint = schema::register(&tx, p.name(), p.version()).await?;
        if checkpoint.version != p.version() {
            return Err(ProjectionError::VersionMismatch {
                name: p.name(),
                stored: checkpoint.version,
                code: p.version(),
            });
        }
        p.setup(&tx).await?;
        tx.commit().await?;
        Ok(checkpoint.position)
    }

    async fn run_one(
        &self,
        p: Arc<dyn Projection>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let name = p.name();
        let mut failures = 0u32;
        let mut checkpoint = loop {
            match self.install_one(p.as_ref()).await {
                Ok(position) => break position,
                Err(e) if e.is_transient() => {
                    tracing::warn!(projection = name, error = %e, "cannot install the projection; retrying");
                    failures += 1;
                    if self.pause(self.backoff(failures), &mut stop).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        };
        failures = 0;
        tracing::info!(projection = name, position = %checkpoint, "projection started");
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            match self.step(p.as_ref(), checkpoint).await {
                Ok(Some(position)) => {
                    failures = 0;
                    checkpoint = position;
                }
                Ok(None) => {
                    failures = 0;
                    status::record(name, checkpoint, checkpoint);
                    if self.pause(self.config.poll_interval, &mut stop).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    // Every error that reaches here is retried: a consumer
                    // must never stop quietly. Lag metrics show a stall.
                    failures += 1;
                    tracing::warn!(projection = name, error = %e, failures, "batch failed; retrying");
                    if self.pause(self.backoff(failures), &mut stop).await {
                        return Ok(());
                    }
                    // The checkpoint may have moved meanwhile (another runner).
                    if let Ok(client) = self.pool.get().await {
                        if let Ok(Some(c)) = schema::load(&**client, name).await {
                            checkpoint = c.position;
                        }
                    }
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        (Duration::from_millis(50) * 2u32.saturating_pow(failures.min(16)))
            .min(self.config.max_backoff)
    }

    /// Sleeps, or less if asked to stop; true when asked to stop.
    async fn pause(&self, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => *stop.borrow(),
            changed = stop.changed() => changed.is_err() || *stop.borrow(),
        }
    }

    /// Reads and applies one batch after `checkpoint`. The new checkpoint, or
    /// `None` when there was nothing to read.
    async fn step(
        &self,
        p: &dyn Projection,
        checkpoint: Position,
    ) -> Result<Option<Position>, ProjectionError> {
        let events = self
            .store
            .read_all(checkpoint.next(), self.config.batch_size.max(1))
            .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let accepted: Vec<EventEnvelope> = events.into_iter().filter(|e| p.accepts(e)).collect();
        let reached = match self.commit(p, checkpoint, &accepted, last, None).await {
            Ok(Outcome::Committed) => last,
            Ok(Outcome::Moved(position)) => position,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(projection = p.name(), error = %e, "batch refused; applying its events one by one");
                self.isolate(p, checkpoint, &accepted, last).await?
            }
        };
        self.report(p.name(), reached).await;
        Ok(Some(reached))
    }

    /// Applies a refused batch event by event, each in its own transaction
    /// with the checkpoint, parking those that fail on their own.
    async fn isolate(
        &self,
        p: &dyn Projection,
        mut checkpoint: Position,
        accepted: &[EventEnvelope],
        last: Position,
    ) -> Result<Position, ProjectionError> {
        for event in accepted {
            let single = std::slice::from_ref(event);
            let outcome = match self
                .commit(p, checkpoint, single, event.position, None)
                .await
            {
                Err(e) if !e.is_transient() => {
                    tracing::error!(
                        projection = p.name(),
                        position = %event.position,
                        event_id = %event.id,
                        error = %e,
                        "parking an event the projection cannot apply"
                    );
                    let error = e.to_string();
                    let outcome = self
                        .commit(p, checkpoint, &[], event.position, Some((event, &error)))
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
            }
        }
        if checkpoint < last {
            if let Outcome::Moved(position) = self.commit(p, checkpoint, &[], last, None).await? {
                return Ok(position);
            }
        }
        Ok(last)
    }

    /// One transaction: lock the checkpoint, check it is still `expected`,
    /// apply `events`, park one if asked, advance the checkpoint to `to`.
    async fn commit(
        &self,
        p: &dyn Projection,
        expected: Position,
        events: &[EventEnvelope],
        to: Position,
        park: Option<(&EventEnvelope, &str)>,
    ) -> Result<Outcome, ProjectionError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = schema::lock(&tx, p.name()).await?;
        if current != expected {
            return Ok(Outcome::Moved(current));
        }
        if !events.is_empty() {
            p.apply(&tx, events).await?;
        }
        if let Some((event, error)) = park {
            schema::park(&tx, p.name(), event.position, event.id, error).await?;
        }
        schema::advance(&tx, p.name(), to).await?;
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

    /// Where a projection stands against the store's head.
    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        let checkpoint = schema::load(&**client, name).await?;
        drop(client);
        let position = checkpoint.map_or(Position::START, |c| c.position);
        let head = self.store.head().await?;
        let lag_events = head.position.get().saturating_sub(position.get());
        let mut lag_seconds = 0.0;
        if lag_events > 0 {
            // The checkpoint's event, or the first event before any progress.
            let from = position.max(Position(1));
            let since = self.store.read_all(from, 1).await?;
            if let (Some(event), Some(head_at)) = (since.first(), head.recorded_at) {
                lag_seconds = ((head_at - event.recorded_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1e6)
                    .max(0.0);
            }
        }
        if let Some(p) = self.projections.get(name) {
            status::record(p.name(), position, head.position);
        }
        Ok(ProjectionStatus {
            position,
            head: head.position,
            lag_events,
            lag_seconds,
            last_progress_at: checkpoint.map(|c| c.updated_at),
        })
    }

    /// The events a projection has parked, in position order.
    pub async fn parked(&self, name: &str) -> Result<Vec<crate::ParkedEvent>, ProjectionError> {
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        schema::list_parked(&**client, name).await
    }

    /// Applies a parked event again (after the cause was fixed) and, if it
    /// now succeeds, removes it from the parked events, in one transaction.
    /// It is applied out of order (later events went on without it), which
    /// is what parking means. On failure the parked row keeps the new error.
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
        let event = self
            .store
            .read_all(position, 1)
            .await?
            .into_iter()
            .find(|e| e.position == position)
            .ok_or_else(not_parked)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Same lock order as the runner (checkpoint first), so a retry and
        // a batch never deadlock and never interleave.
        schema::lock(&tx, p.name()).await?;
        if schema::lock_parked(&tx, p.name(), position)
            .await?
            .is_none()
        {
            return Err(not_parked());
        }
        let applied = p.apply(&tx, std::slice::from_ref(&event)).await;
        match applied {
            Ok(()) => {
                schema::unpark(&tx, p.name(), position).await?;
                tx.commit().await?;
                tracing::info!(projection = name, position = %position, "parked event applied");
                Ok(())
            }
            Err(e) => {
                tx.rollback().await?;
                schema::set_parked_error(&**client, p.name(), position, &e.to_string()).await?;
                Err(e)
            }
        }
    }
}
