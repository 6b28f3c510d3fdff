//! [`EmbeddedRunner`]: the projection runner over SQLite. The same loop as
//! the Postgres runner — a batch and its checkpoint in one transaction, a
//! refused batch applied event by event to park the poison one, a build
//! beside the serving generation switched in one transaction — on one
//! blocking thread with one write connection, and the same gauges
//! (position, lag, last progress).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_brokers::{Broker, Topic};
use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use rusqlite::{Connection, TransactionBehavior};
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::serving::{open, EmbeddedReadModels};
use super::{schema, table_prefix, SqliteProjection};
use crate::live::LiveFeed;
use crate::plan::{self, Step};
use crate::schema::{Generation, GenerationState};
use crate::status;
use crate::{ParkedEvent, ProjectionError, ProjectionStatus, RunnerConfig};

/// Runs SQLite projections over the store's log. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedRunner {
    path: PathBuf,
    store: Arc<dyn EventStore>,
    projections: Arc<BTreeMap<&'static str, Arc<dyn SqliteProjection>>>,
    config: RunnerConfig,
    live: Option<LiveFeed>,
}

impl std::fmt::Debug for EmbeddedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedRunner")
            .field("path", &self.path)
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What became of a batch's transaction.
enum Outcome {
    Committed,
    Moved,
    Gone,
}

impl EmbeddedRunner {
    /// A runner of `projections` writing to the SQLite file at `path`.
    pub fn new(
        path: impl Into<PathBuf>,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn SqliteProjection>>,
    ) -> Self {
        let mut by_name = BTreeMap::new();
        for p in projections {
            assert!(
                by_name.insert(p.name(), p).is_none(),
                "two projections share a name"
            );
        }
        Self {
            path: path.into(),
            store,
            projections: Arc::new(by_name),
            config: RunnerConfig::default(),
            live: None,
        }
    }

    /// Wakes on broker deliveries instead of waiting out the poll interval
    /// (see [`ProjectionRunner::with_broker`](crate::ProjectionRunner::with_broker)).
    pub fn with_broker(mut self, broker: Arc<dyn Broker>, topics: Vec<Topic>) -> Self {
        self.live = Some(LiveFeed::new(broker, topics));
        self
    }

    pub fn with_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.keys().copied().collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The query side's handle on the same file.
    pub fn read_models(&self) -> EmbeddedReadModels {
        EmbeddedReadModels::new(self.path.clone())
    }

    fn projection(&self, name: &str) -> Result<Arc<dyn SqliteProjection>, ProjectionError> {
        self.projections
            .get(name)
            .cloned()
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
    }

    /// Runs `work` on a blocking thread with a write connection.
    async fn write<T, F>(&self, work: F) -> Result<T, ProjectionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ProjectionError> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = open(&path, false)?;
            schema::create_tables(&conn)?;
            work(&mut conn)
        })
        .await
        .map_err(|e| ProjectionError::Internal(format!("a read-model task panicked: {e}")))?
    }

    /// Creates every projection's serving (or building) generation.
    pub async fn install(&self) -> Result<(), ProjectionError> {
        let projections: Vec<_> = self.projections.values().cloned().collect();
        self.write(move |conn| {
            for p in &projections {
                install_one(conn, p.as_ref())?;
            }
            Ok(())
        })
        .await
    }

    /// Starts a blue-green rebuild of `name`; the generation being built.
    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        let p = self.projection(name)?;
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let generations = schema::generations(&tx, p.name())?;
            let generation = match plan::rebuild(&generations, p.version()) {
                Ok(under_way) => under_way,
                Err(steps) => carry_out(&tx, p.as_ref(), &steps)?
                    .ok_or_else(|| ProjectionError::Internal("no generation made".into()))?,
            };
            tx.commit()?;
            Ok(generation)
        })
        .await
    }

    /// Runs every projection until `stop` turns true.
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        let runner = self.clone();
        let handle = Handle::current();
        let listening = stop.clone();
        let listener = async move {
            if let Some(feed) = &self.live {
                feed.listen(listening).await;
            }
        };
        let work = tokio::task::spawn_blocking(move || runner.run_blocking(&handle, stop));
        let (result, ()) = tokio::join!(work, listener);
        result.map_err(|e| ProjectionError::Internal(format!("the runner panicked: {e}")))?
    }

    fn run_blocking(
        &self,
        handle: &Handle,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let mut failures = 0u32;
        let mut conn = loop {
            let attempt = open(&self.path, false).and_then(|mut conn| {
                schema::create_tables(&conn)?;
                for p in self.projections.values() {
                    install_one(&mut conn, p.as_ref())?;
                }
                Ok(conn)
            });
            match attempt {
                Ok(conn) => break conn,
                Err(e) if e.is_transient() => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot install the embedded read models; retrying");
                    if self.pause(handle, self.backoff(failures), &mut stop) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        };
        failures = 0;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let mut moved = false;
            let mut error = None;
            for p in self.projections.values() {
                match self.round(handle, &mut conn, p.as_ref()) {
                    Ok(m) => moved |= m,
                    Err(e) => {
                        tracing::warn!(projection = p.name(), error = %e, "batch failed; retrying");
                        error = Some(e);
                    }
                }
            }
            if error.is_some() {
                failures += 1;
                if self.pause(handle, self.backoff(failures), &mut stop) {
                    return Ok(());
                }
            } else {
                failures = 0;
                if !moved {
                    for p in self.projections.values() {
                        self.drop_retired(&mut conn, p.as_ref());
                    }
                    if self.pause(handle, self.config.poll_interval, &mut stop) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        (Duration::from_millis(50) * 2u32.saturating_pow(failures.min(16)))
            .min(self.config.max_backoff)
    }

    fn pause(&self, handle: &Handle, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        handle.block_on(crate::live::pause(wait, stop, self.live.as_ref()))
    }

    /// One batch for each generation of this code's version; a build that
    /// has caught up takes over. True when anything moved.
    fn round(
        &self,
        handle: &Handle,
        conn: &mut Connection,
        p: &dyn SqliteProjection,
    ) -> Result<bool, ProjectionError> {
        let targets: Vec<Generation> = schema::generations(conn, p.name())?
            .into_iter()
            .filter(|g| g.version == p.version() && g.state != GenerationState::Retired)
            .collect();
        let mut moved = false;
        for g in &targets {
            let size = match g.state {
                GenerationState::Building => self.config.rebuild_batch_size,
                _ => self.config.batch_size,
            };
            let events = handle.block_on(self.store.read_all(g.position.next(), size.max(1)))?;
            let Some(last) = events.last().map(|e| e.position) else {
                match g.state {
                    GenerationState::Building => {
                        switch(conn, p, g.generation)?;
                        moved = true;
                    }
                    GenerationState::Active => status::record(p.name(), g.position, g.position),
                    _ => {}
                }
                continue;
            };
            let accepted: Vec<EventEnvelope> =
                events.into_iter().filter(|e| p.accepts(e)).collect();
            let committed = match commit(conn, p, g.generation, g.position, &accepted, last, None) {
                Ok(outcome) => matches!(outcome, Outcome::Committed),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, "batch refused; applying its events one by one");
                    isolate(conn, p, g.generation, g.position, &accepted, last)?;
                    true
                }
            };
            if committed && g.state == GenerationState::Active {
                self.report(handle, p.name(), last);
            }
            moved = true;
        }
        Ok(moved)
    }

    /// Updates the gauges after progress, as the Postgres runner does; a
    /// failure to read the head only leaves the lag gauge stale for a batch.
    fn report(&self, handle: &Handle, name: &'static str, position: Position) {
        status::record_progress(name, Utc::now());
        match handle.block_on(self.store.head()) {
            Ok(head) => status::record(name, position, head.position),
            Err(e) => tracing::debug!(projection = name, error = %e, "cannot read the head"),
        }
    }

    fn drop_retired(&self, conn: &mut Connection, p: &dyn SqliteProjection) {
        let grace =
            chrono::Duration::from_std(self.config.retire_grace).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let result = (|| {
            for g in schema::generations(conn, p.name())? {
                if g.state == GenerationState::Retired
                    && g.switched_at.is_none_or(|at| at + grace <= now)
                {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    schema::drop_generation(&tx, p.name(), g.generation, p.tables())?;
                    tx.commit()?;
                    tracing::info!(
                        projection = p.name(),
                        generation = g.generation,
                        "dropped a retired generation"
                    );
                }
            }
            Ok::<_, ProjectionError>(())
        })();
        if let Err(e) = result {
            tracing::debug!(projection = p.name(), error = %e, "cannot drop a retired generation yet");
        }
    }

    /// Where a projection's serving generation stands, and a rebuild's.
    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        let p = self.projection(name)?;
        let owned = name.to_owned();
        let (generations, parked) = self
            .write(move |conn| {
                let generations = schema::generations(conn, &owned)?;
                let parked = match generations
                    .iter()
                    .find(|g| g.state == GenerationState::Active)
                {
                    Some(a) => schema::list_parked(conn, &owned, a.generation)?.len(),
                    None => 0,
                };
                Ok((generations, parked))
            })
            .await?;
        crate::status::assemble(
            self.store.as_ref(),
            p.name(),
            p.version(),
            &generations,
            parked,
        )
        .await
    }

    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let mut all = Vec::new();
        for name in self.names() {
            all.push(self.status(name).await?);
        }
        Ok(all)
    }

    /// The serving generation's parked events.
    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, ProjectionError> {
        let p = self.projection(name)?;
        self.write(
            move |conn| match schema::active_generation(conn, p.name())? {
                Some(generation) => schema::list_parked(conn, p.name(), generation),
                None => Ok(Vec::new()),
            },
        )
        .await
    }

    /// Applies a parked event again and un-parks it when it succeeds.
    pub async fn retry_parked(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), ProjectionError> {
        let p = self.projection(name)?;
        let not_parked = {
            let name = name.to_owned();
            move || ProjectionError::NotParked { name, position }
        };
        let event = self
            .store
            .read_all(position, 1)
            .await?
            .into_iter()
            .find(|e| e.position == position)
            .ok_or_else(not_parked.clone())?;
        self.write(move |conn| {
            let generation =
                schema::active_generation(conn, p.name())?.ok_or_else(not_parked.clone())?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !schema::is_parked(&tx, p.name(), generation, position)? {
                return Err(not_parked());
            }
            match p.apply(
                &tx,
                &table_prefix(p.name(), generation),
                std::slice::from_ref(&event),
            ) {
                Ok(()) => {
                    schema::unpark(&tx, p.name(), generation, position)?;
                    tx.commit()?;
                    Ok(())
                }
                Err(e) => {
                    tx.rollback()?;
                    schema::set_parked_error(conn, p.name(), generation, position, &e.to_string())?;
                    Err(e)
                }
            }
        })
        .await
    }
}

fn install_one(conn: &mut Connection, p: &dyn SqliteProjection) -> Result<(), ProjectionError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let generations = schema::generations(&tx, p.name())?;
    let steps = plan::install(&generations, p.version()).map_err(|newer| {
        ProjectionError::VersionMismatch {
            name: p.name(),
            stored: newer.stored,
            code: p.version(),
        }
    })?;
    carry_out(&tx, p, &steps)?;
    tx.commit()?;
    Ok(())
}

fn carry_out(
    tx: &rusqlite::Transaction<'_>,
    p: &dyn SqliteProjection,
    steps: &[Step],
) -> Result<Option<u32>, ProjectionError> {
    let name = p.name();
    let mut created = None;
    for step in steps {
        match *step {
            Step::Retire(generation) => {
                schema::set_state(tx, name, generation, GenerationState::Retired)?
            }
            Step::Activate(generation) => {
                schema::set_state(tx, name, generation, GenerationState::Active)?
            }
            Step::Create(state) => {
                let generation = schema::create_generation(tx, name, p.version(), state)?;
                p.setup(tx, &table_prefix(name, generation))?;
                created = Some(generation);
            }
            Step::Setup(generation) => p.setup(tx, &table_prefix(name, generation))?,
        }
    }
    Ok(created)
}

fn switch(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    built: u32,
) -> Result<(), ProjectionError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let generations = schema::generations(&tx, p.name())?;
    let Some(replaced) = plan::switch(&generations, built) else {
        return Ok(());
    };
    if let Some(old) = replaced {
        schema::set_state(&tx, p.name(), old, GenerationState::Retired)?;
    }
    schema::set_state(&tx, p.name(), built, GenerationState::Active)?;
    tx.commit()?;
    tracing::info!(
        projection = p.name(),
        generation = built,
        replaced,
        "the rebuilt generation serves now"
    );
    Ok(())
}

/// One transaction: check the checkpoint, apply, park if asked, advance.
fn commit(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    generation: u32,
    expected: Position,
    events: &[EventEnvelope],
    to: Position,
    park: Option<(&EventEnvelope, &str)>,
) -> Result<Outcome, ProjectionError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some((current, state)) = schema::checkpoint(&tx, p.name(), generation)? else {
        return Ok(Outcome::Gone);
    };
    if state == GenerationState::Retired {
        return Ok(Outcome::Gone);
    }
    if current != expected {
        return Ok(Outcome::Moved);
    }
    if !events.is_empty() {
        p.apply(&tx, &table_prefix(p.name(), generation), events)?;
    }
    if let Some((event, error)) = park {
        schema::park(&tx, p.name(), generation, event.position, event.id, error)?;
    }
    schema::advance(&tx, p.name(), generation, to)?;
    tx.commit()?;
    Ok(Outcome::Committed)
}

fn isolate(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    generation: u32,
    mut checkpoint: Position,
    accepted: &[EventEnvelope],
    last: Position,
) -> Result<(), ProjectionError> {
    for event in accepted {
        let single = std::slice::from_ref(event);
        let outcome = match commit(
            conn,
            p,
            generation,
            checkpoint,
            single,
            event.position,
            None,
        ) {
            Err(e) if !e.is_transient() => {
                tracing::error!(projection = p.name(), position = %event.position, error = %e, "parking an event the projection cannot apply");
                let error = e.to_string();
                commit(
                    conn,
                    p,
                    generation,
                    checkpoint,
                    &[],
                    event.position,
                    Some((event, &error)),
                )?
            }
            other => other?,
        };
        match outcome {
            Outcome::Committed => checkpoint = event.position,
            Outcome::Moved | Outcome::Gone => return Ok(()),
        }
    }
    if checkpoint < last {
        commit(conn, p, generation, checkpoint, &[], last, None)?;
    }
    Ok(())
}

/// How long the detached generation of a diff is kept should the diff die
/// before dropping it (a runner drops it after that).
const DIFF_KEEP: Duration = Duration::from_secs(3600);

/// The moment a detached generation kept for `keep` from now expires.
fn expiry(keep: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650))
}

/// Builds for inspection and diffs (see [`crate::diff`]), as on Postgres.
impl EmbeddedRunner {
    /// Builds a detached generation of `name` from the start of the log up
    /// to `to` (the head as it is now when `None`), beside the serving one
    /// and never switched to; any runner drops it once `keep` has passed
    /// since its last batch. See
    /// [`ProjectionRunner::build_detached`](crate::ProjectionRunner::build_detached).
    pub async fn build_detached(
        &self,
        name: &str,
        to: Option<Position>,
        keep: Duration,
        progress: crate::diff::Progress,
    ) -> Result<crate::diff::DetachedBuild, ProjectionError> {
        let p = self.projection(name)?;
        let target = match to {
            Some(to) => to,
            None => self.store.head().await?.position,
        };
        let detached = self.detached_context();
        tokio::task::spawn_blocking(move || {
            let mut conn = open(&detached.path, false)?;
            schema::create_tables(&conn)?;
            let (generation, serving) = create_detached(&mut conn, p.as_ref(), keep)?;
            let filled = detached.fill(
                &mut conn,
                p.as_ref(),
                generation,
                Position::START,
                target,
                keep,
                &progress,
            );
            match filled {
                Ok((position, expires_at)) => Ok(crate::diff::DetachedBuild {
                    projection: p.name().to_owned(),
                    generation,
                    version: p.version(),
                    position,
                    tables_in: table_prefix(p.name(), generation),
                    serving_generation: serving,
                    expires_at,
                }),
                Err(e) => {
                    if let Err(dropped) = drop_inactive(&mut conn, p.as_ref(), generation) {
                        tracing::warn!(projection = p.name(), generation, error = %dropped, "cannot drop a failed detached build; a runner drops it once it expires");
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| ProjectionError::Internal(format!("a detached build panicked: {e}")))?
    }

    /// Drops a generation of `name` that neither serves nor is being built
    /// (a detached build, or a retired generation); nothing happens when it
    /// is gone already.
    pub async fn drop_detached(&self, name: &str, generation: u32) -> Result<(), ProjectionError> {
        let p = self.projection(name)?;
        self.write(move |conn| drop_inactive(conn, p.as_ref(), generation))
            .await
    }

    /// Compares `name`'s serving tables with a fresh build of them at the
    /// same log position, row for row, and drops the build. The comparison
    /// runs in an immediate transaction (the serving runner waits for it)
    /// once the build has reached the serving generation's position; if
    /// that moved meanwhile, the build reads on and tries again. See
    /// [`ProjectionRunner::diff`](crate::ProjectionRunner::diff).
    pub async fn diff(
        &self,
        name: &str,
        max_rows: usize,
        progress: crate::diff::Progress,
    ) -> Result<crate::diff::ProjectionDiff, ProjectionError> {
        let p = self.projection(name)?;
        let detached = self.detached_context();
        tokio::task::spawn_blocking(move || {
            let mut conn = open(&detached.path, false)?;
            schema::create_tables(&conn)?;
            if schema::active_generation(&conn, p.name())?.is_none() {
                return Err(ProjectionError::NotServing(p.name().to_owned()));
            }
            let (generation, _) = create_detached(&mut conn, p.as_ref(), DIFF_KEEP)?;
            let result = detached.diff(&mut conn, p.as_ref(), generation, max_rows, &progress);
            if let Err(e) = drop_inactive(&mut conn, p.as_ref(), generation) {
                tracing::warn!(projection = p.name(), generation, error = %e, "cannot drop the diff's build; a runner drops it once it expires");
            }
            result
        })
        .await
        .map_err(|e| ProjectionError::Internal(format!("a diff panicked: {e}")))?
    }

    fn detached_context(&self) -> Detached {
        Detached {
            path: self.path.clone(),
            store: Arc::clone(&self.store),
            handle: Handle::current(),
            batch: self.config.rebuild_batch_size.max(1),
        }
    }
}

/// What a detached build needs on its blocking thread.
struct Detached {
    path: PathBuf,
    store: Arc<dyn EventStore>,
    handle: Handle,
    batch: usize,
}

impl Detached {
    /// Applies the log after `from` up to `to` (or the head, if lower) to a
    /// detached generation, batch by batch with its checkpoint, parking the
    /// events `apply` refuses. The position reached and the new expiry.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        conn: &mut Connection,
        p: &dyn SqliteProjection,
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
            let room = (to.get() - position.get()).min(self.batch as u64) as usize;
            let mut events = self
                .handle
                .block_on(self.store.read_all(position.next(), room))?;
            events.retain(|e| e.position <= to);
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            let accepted: Vec<EventEnvelope> =
                events.into_iter().filter(|e| p.accepts(e)).collect();
            expires = expiry(keep);
            let at = crate::sql::time_text(expires);
            match commit_detached(conn, p, generation, position, &accepted, last, None, &at) {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, "batch refused; applying its events one by one");
                    let mut checkpoint = position;
                    for event in &accepted {
                        let single = std::slice::from_ref(event);
                        match commit_detached(
                            conn,
                            p,
                            generation,
                            checkpoint,
                            single,
                            event.position,
                            None,
                            &at,
                        ) {
                            Ok(()) => {}
                            Err(e) if e.is_transient() => return Err(e),
                            Err(e) => {
                                let error = e.to_string();
                                commit_detached(
                                    conn,
                                    p,
                                    generation,
                                    checkpoint,
                                    &[],
                                    event.position,
                                    Some((event, &error)),
                                    &at,
                                )?;
                            }
                        }
                        checkpoint = event.position;
                    }
                    if checkpoint < last {
                        commit_detached(conn, p, generation, checkpoint, &[], last, None, &at)?;
                    }
                }
            }
            position = last;
            progress(position, to);
        }
        Ok((position, expires))
    }

    /// Builds the detached generation up to the serving one's position and
    /// compares them in one immediate transaction.
    fn diff(
        &self,
        conn: &mut Connection,
        p: &dyn SqliteProjection,
        generation: u32,
        max_rows: usize,
        progress: &crate::diff::Progress,
    ) -> Result<crate::diff::ProjectionDiff, ProjectionError> {
        let name = p.name();
        let serving = |conn: &Connection| {
            schema::generations(conn, name)?
                .into_iter()
                .find(|g| g.state == GenerationState::Active)
                .ok_or_else(|| ProjectionError::NotServing(name.to_owned()))
        };
        let mut position = Position::START;
        for _ in 0..crate::diff::DIFF_ATTEMPTS {
            let live = serving(conn)?;
            if live.position > position {
                position = self
                    .fill(
                        conn,
                        p,
                        generation,
                        position,
                        live.position,
                        DIFF_KEEP,
                        progress,
                    )?
                    .0;
            }
            // Immediate: the serving runner cannot commit while this runs,
            // and the reads below see one state of the file.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = serving(&tx)?;
            if now.generation == live.generation && now.position == position {
                let tables = crate::diff::sqlite_tables(
                    &tx,
                    &table_prefix(name, live.generation),
                    &table_prefix(name, generation),
                    p.tables(),
                    max_rows,
                )?;
                tx.rollback()?;
                return Ok(crate::diff::ProjectionDiff {
                    projection: name.to_owned(),
                    live_generation: live.generation,
                    rebuilt_generation: generation,
                    position,
                    tables,
                });
            }
            tx.rollback()?;
        }
        Err(ProjectionError::Internal(format!(
            "the serving generation of {name} kept moving while the diff caught up with it; \
             try again"
        )))
    }
}

/// Adds a detached generation (a `retired` row whose `switched_at`, in the
/// future, keeps every runner from dropping it) and its tables; returns it
/// and the serving generation.
fn create_detached(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    keep: Duration,
) -> Result<(u32, Option<u32>), ProjectionError> {
    let name = p.name();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let serving = schema::active_generation(&tx, name)?;
    let generation = schema::create_generation(&tx, name, p.version(), GenerationState::Retired)?;
    tx.execute(
        "UPDATE herald_read_models SET switched_at = ?3 WHERE name = ?1 AND generation = ?2",
        rusqlite::params![name, generation, crate::sql::time_text(expiry(keep))],
    )?;
    p.setup(&tx, &table_prefix(name, generation))?;
    tx.commit()?;
    tracing::info!(
        projection = name,
        generation,
        "building a detached generation"
    );
    Ok((generation, serving))
}

/// One batch of a detached build: its effect, a parked event if asked, the
/// checkpoint and the new expiry, in one transaction.
#[allow(clippy::too_many_arguments)]
fn commit_detached(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    generation: u32,
    expected: Position,
    events: &[EventEnvelope],
    to: Position,
    park: Option<(&EventEnvelope, &str)>,
    expires: &str,
) -> Result<(), ProjectionError> {
    let name = p.name();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match schema::checkpoint(&tx, name, generation)? {
        Some((current, GenerationState::Retired)) if current == expected => {}
        _ => {
            return Err(ProjectionError::Internal(format!(
                "the detached generation {generation} of {name} was dropped or moved meanwhile"
            )))
        }
    }
    if !events.is_empty() {
        p.apply(&tx, &table_prefix(name, generation), events)?;
    }
    if let Some((event, error)) = park {
        schema::park(&tx, name, generation, event.position, event.id, error)?;
    }
    tx.execute(
        "UPDATE herald_read_models SET position = ?3, updated_at = ?4, switched_at = ?5 \
         WHERE name = ?1 AND generation = ?2",
        rusqlite::params![
            name,
            generation,
            to.get() as i64,
            crate::sql::time_text(Utc::now()),
            expires
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Drops a generation that neither serves nor is being built.
fn drop_inactive(
    conn: &mut Connection,
    p: &dyn SqliteProjection,
    generation: u32,
) -> Result<(), ProjectionError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let generations = schema::generations(&tx, p.name())?;
    let Some(g) = generations.iter().find(|g| g.generation == generation) else {
        return Ok(());
    };
    if g.state != GenerationState::Retired {
        return Err(ProjectionError::Internal(format!(
            "generation {generation} of {} is {:?}, not a detached build",
            p.name(),
            g.state
        )));
    }
    schema::drop_generation(&tx, p.name(), generation, p.tables())?;
    tx.commit()?;
    Ok(())
}
