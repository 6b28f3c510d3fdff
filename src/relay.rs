//! The outbox relay: publishes the store's global log to the broker, in
//! position order, after commit, with broker confirms, resuming from a
//! durable checkpoint. One relay is active per store: it holds a lease in the
//! store and renews it; the others stand by and take over when it expires.
//!
//! On the in-process broker, which keeps nothing across a restart, the
//! checkpoint never passes an event some consumer group has not settled
//! ([`Broker::settled_through`]): after a crash the relay publishes again
//! from where the slowest group's effects stopped, so every group sees
//! every event at least once on every broker.
//!
//! Delivery is at least once. A batch whose publish fails is published
//! again, and a relay taking over starts from the last saved checkpoint, so
//! consumers may see an event twice (they dedupe on event id or stream
//! version); `herald_relay_republished_total` counts the events sent again.
//! To know them after a takeover, the active relay records in the store,
//! before it hands a batch to the broker, how far it is sending (the
//! checkpoint `herald.relay.sent`, fenced by the lease like the
//! checkpoint); the next term counts the events it publishes up to that
//! mark as `cause="takeover"` republishes. The count bounds the duplicates
//! from above: the previous term may have died before the broker took all
//! of its last batch. It costs one small store write per batch.
//!
//! Every process exports the `herald_relay_*` series from its start
//! ([`init_metrics`]): a stand-by shows `herald_relay_active` 0 and zero
//! counts. The relay reports its progress ([`COMPONENT`]): work waits while
//! it holds a batch, or the log's head is past what the broker confirmed;
//! each confirmed batch is progress.
//!
//! The relay follows the log through the store's subscription, which wakes
//! on local commits at once, on other processes' commits through Postgres
//! LISTEN/NOTIFY, and otherwise polls, so a lost notification only delays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use herald_brokers::progress::{Progress, Tracker};
use herald_brokers::{Broker, BrokerError};
use herald_events::{Backoff, EventEnvelope, Position};
use herald_store::{EventStore, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Name of the relay's lease and checkpoint in the store.
pub const RELAY_NAME: &str = "herald.relay";

/// Events published by the active relay.
pub const PUBLISHED_TOTAL: &str = "herald_relay_published_total";
/// Events published again (possible duplicates), by `cause`: `retry` (a
/// publish that failed and was retried) or `takeover` (a new term — another
/// process, or this one after a restart — publishing what the previous
/// term had already handed to the broker beyond its checkpoint).
pub const REPUBLISHED_TOTAL: &str = "herald_relay_republished_total";
/// Failed publish attempts, by broker error kind.
pub const PUBLISH_FAILURES_TOTAL: &str = "herald_relay_publish_failures_total";
/// 1 while this process's relay is the active one.
pub const ACTIVE: &str = "herald_relay_active";
/// The last position this process's relay published and checkpointed.
pub const CHECKPOINT_POSITION: &str = "herald_relay_checkpoint_position";

/// The relay's name in progress reports (readiness, `herald_stalled`).
pub const COMPONENT: &str = "relay";

/// Suffix of the checkpoint recording how far the active relay is sending.
const SENT_SUFFIX: &str = ".sent";
/// The relay's first wait after a failure; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Registers every relay series at zero, so that a process that is not (or
/// not yet) the active relay exports them too.
pub fn init_metrics() {
    metrics::gauge!(ACTIVE).set(0.0);
    metrics::gauge!(CHECKPOINT_POSITION).set(0.0);
    metrics::counter!(PUBLISHED_TOTAL).increment(0);
    for cause in ["retry", "takeover"] {
        metrics::counter!(REPUBLISHED_TOTAL, "cause" => cause).increment(0);
    }
    for kind in BrokerError::KINDS {
        metrics::counter!(PUBLISH_FAILURES_TOTAL, "kind" => *kind).increment(0);
    }
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Lease and checkpoint name; relays of one store share it.
    pub name: String,
    /// Most events per publish.
    pub batch_max: usize,
    /// How long a lease lasts without renewal: a dead relay's stand-by takes
    /// over at most this long (plus `standby_poll`) after it died.
    pub lease_ttl: Duration,
    /// How often the active relay renews its lease.
    pub renew_every: Duration,
    /// How often a stand-by relay tries to take the lease.
    pub standby_poll: Duration,
    /// Longest wait between publish retries.
    pub max_backoff: Duration,
    /// How long the log stays quiet before the checkpoint is saved up to
    /// what was published (while it is busy, every half batch), and how
    /// often a checkpoint held back by the broker's groups (the in-process
    /// broker's) is moved up to what they have settled.
    pub settle_poll: Duration,
    /// How long the relay waits for more commits once it has a batch that
    /// is not full while the log is busy (its previous batch went out less
    /// than five lingers ago), so that a busy log goes out in batches (each
    /// a publish) rather than event by event; what it adds at most to the
    /// broker's delivery latency then.
    pub linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: RELAY_NAME.to_owned(),
            batch_max: 500,
            lease_ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            standby_poll: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            settle_poll: Duration::from_millis(200),
            // Off: on a loaded two-core machine a 2 ms linger halved the
            // relay's checkpoint writes under `benches/serve` without a
            // measurable gain in commands/s, and it adds its wait to every
            // delivery while the log is busy.
            linger: Duration::ZERO,
        }
    }
}

/// The log counts as busy when the relay's previous batch went out less
/// than this many lingers ago.
const BUSY_WITHIN_LINGERS: u32 = 5;

/// How far one term has had the broker confirm, and saved as the checkpoint.
struct Checkpoint {
    saved: Position,
    published: Position,
}

/// Why a leadership term ended.
enum TermEnd {
    Shutdown,
    LeaseLost,
    StoreClosed,
}

/// One process's relay.
pub struct Relay {
    store: Arc<dyn EventStore>,
    broker: Arc<dyn Broker>,
    config: RelayConfig,
    holder: String,
    /// Name of the checkpoint recording how far the active relay sends.
    sent: String,
    progress: Tracker,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("holder", &self.holder)
            .field("broker", &self.broker.backend())
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(store: Arc<dyn EventStore>, broker: Arc<dyn Broker>, config: RelayConfig) -> Self {
        Self {
            store,
            broker,
            sent: format!("{}{SENT_SUFFIX}", config.name),
            config,
            holder: format!("relay-{}", uuid::Uuid::now_v7()),
            progress: Tracker::detached(COMPONENT),
        }
    }

    /// Reports the relay's progress to `progress` (as [`COMPONENT`]).
    pub fn with_progress(mut self, progress: &Progress) -> Self {
        self.progress = progress.tracker(COMPONENT);
        self
    }

    /// This relay's identity in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs the relay until `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self
                .store
                .acquire_lease(&self.config.name, &self.holder, self.config.lease_ttl)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    if wait(&mut shutdown, self.config.standby_poll).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Relay cannot reach the store to take its lease; retrying.");
                    if wait(&mut shutdown, self.config.standby_poll).await {
                        return;
                    }
                    continue;
                }
            }
            tracing::info!(holder = %self.holder, broker = self.broker.backend(), "Relay is active.");
            metrics::gauge!(ACTIVE).set(1.0);
            let end = self.lead(&mut shutdown).await;
            metrics::gauge!(ACTIVE).set(0.0);
            // A stand-by has nothing to do.
            self.progress.idle();
            match end {
                TermEnd::Shutdown => {
                    let _ = self
                        .store
                        .release_lease(&self.config.name, &self.holder)
                        .await;
                    tracing::info!(holder = %self.holder, "Relay stopped and released its lease.");
                    return;
                }
                TermEnd::StoreClosed => return,
                TermEnd::LeaseLost => {
                    tracing::warn!(holder = %self.holder, "Relay lost its lease; standing by.");
                }
            }
        }
    }

    /// One term as the active relay.
    async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> TermEnd {
        let (checkpoint, sent) = loop {
            let read = async {
                let checkpoint = self.store.checkpoint(&self.config.name).await?;
                let sent = self.store.checkpoint(&self.sent).await?;
                Ok::<_, StoreError>((checkpoint.unwrap_or(Position::START), sent))
            };
            match read.await {
                Ok(read) => break read,
                Err(e) => {
                    tracing::warn!(error = %e, "Relay cannot read its checkpoint; retrying.");
                    self.progress
                        .trouble(format_args!("cannot read its checkpoint: {e}"));
                    if wait(shutdown, self.config.standby_poll).await {
                        return TermEnd::Shutdown;
                    }
                }
            }
        };
        let from = checkpoint.next();
        // What an earlier term may have handed to the broker already.
        let resend_through = sent.unwrap_or(Position::START).max(checkpoint);
        if resend_through > checkpoint {
            tracing::info!(
                from = from.get(),
                through = resend_through.get(),
                "Relay publishes again what the previous term may have sent beyond its checkpoint."
            );
        } else {
            tracing::info!(from = from.get(), "Relay publishing from its checkpoint.");
        }
        // The highest position recorded as being sent.
        let mut marked = resend_through;
        let mut log = self
            .store
            .subscribe_all(from)
            .ready_chunks(self.config.batch_max.max(1));
        let mut renewed = Instant::now();
        // Read past a batch's bound while lingering: the next batch.
        let mut pending = Vec::new();
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        let mut checkpoint = Checkpoint {
            saved: checkpoint,
            published: checkpoint,
        };
        loop {
            let renew_at = tokio::time::Instant::from_std(renewed + self.config.renew_every);
            // The checkpoint trails what was published: saved every half
            // batch while the log is busy, and here once it goes quiet. On
            // a broker that keeps nothing (the in-process one) it also
            // trails until the broker's groups settle.
            let trailing = checkpoint.saved < checkpoint.published;
            let chunk = if !pending.is_empty() {
                Some(std::mem::take(&mut pending))
            } else {
                tokio::select! {
                _ = shutdown.changed() => {
                    // A clean stop leaves nothing to publish again.
                    self.save_checkpoint(&mut checkpoint).await;
                    return TermEnd::Shutdown;
                }
                _ = tokio::time::sleep_until(renew_at) => {
                    if !self.renew().await {
                        return TermEnd::LeaseLost;
                    }
                    renewed = Instant::now();
                    self.look_for_waiting_work(checkpoint.published).await;
                    continue;
                }
                _ = tokio::time::sleep(self.config.settle_poll), if trailing => {
                    if !self.save_checkpoint(&mut checkpoint).await {
                        return TermEnd::LeaseLost;
                    }
                    continue;
                }
                chunk = log.next() => chunk,
                }
            };
            let Some(mut chunk) = chunk else {
                return TermEnd::StoreClosed;
            };
            // Only while the log is busy (the last batch went out moments
            // ago): on a quiet log the wait would only add latency.
            let busy = last_sent.elapsed() < self.config.linger * BUSY_WITHIN_LINGERS;
            if busy && chunk.len() < self.config.batch_max && !self.config.linger.is_zero() {
                tokio::time::sleep(self.config.linger).await;
                while chunk.len() < self.config.batch_max {
                    match log.next().now_or_never() {
                        Some(Some(more)) => chunk.extend(more),
                        _ => break,
                    }
                }
                if chunk.len() > self.config.batch_max {
                    pending = chunk.split_off(self.config.batch_max);
                }
            }
            let mut batch = Vec::with_capacity(chunk.len());
            for item in chunk {
                match item {
                    Ok(event) => batch.push(event),
                    // The subscription retries from where it stopped.
                    Err(e) => {
                        tracing::warn!(error = %e, "Relay could not read the log; retrying.");
                        self.progress
                            .trouble(format_args!("cannot read the log: {e}"));
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            self.progress.waiting();
            let last = batch[batch.len() - 1].position;
            let batch_max = self.config.batch_max.max(1) as u64;
            if last > marked {
                // Marked a whole batch past the saved checkpoint, so that
                // the batches right behind this one need no mark of their
                // own: a few writes per `batch_max` events instead of one
                // per batch when commits trickle in one at a time. A
                // takeover publishes again from the saved checkpoint and
                // counts up to the mark: never more than one batch.
                if last.get() > checkpoint.saved.get().saturating_add(batch_max)
                    && !self.save_checkpoint(&mut checkpoint).await
                {
                    return TermEnd::LeaseLost;
                }
                let through = Position(checkpoint.saved.get().saturating_add(batch_max)).max(last);
                if let Err(end) = self.mark_sent(through, shutdown, &mut renewed).await {
                    return end;
                }
                marked = through;
            }
            if let Err(end) = self.publish(&batch, shutdown, &mut renewed).await {
                return end;
            }
            let resent = batch
                .iter()
                .filter(|e| e.position <= resend_through)
                .count();
            if resent > 0 {
                metrics::counter!(REPUBLISHED_TOTAL, "cause" => "takeover")
                    .increment(resent as u64);
            }
            self.progress.progressed();
            // More may be waiting: the next chunk says so.
            self.progress.idle();
            checkpoint.published = last;
            last_sent = Instant::now();
            // Saved once half a batch went out since the last save, and
            // when the log goes quiet (`trailing` above): one write per
            // event on a trickling log was the relay's largest cost.
            if last.get() - checkpoint.saved.get() >= (batch_max / 2).max(1)
                && !self.save_checkpoint(&mut checkpoint).await
            {
                return TermEnd::LeaseLost;
            }
        }
    }

    /// Saves how far the log has been published — on a broker that keeps
    /// nothing across a restart, no further than its groups have settled —
    /// when that moved; false when the lease was lost. Fenced by the lease;
    /// the one place the relay's checkpoint moves.
    async fn save_checkpoint(&self, checkpoint: &mut Checkpoint) -> bool {
        let target = match self.broker.settled_through() {
            Some(settled) => checkpoint.published.min(settled),
            None => checkpoint.published,
        };
        if target <= checkpoint.saved {
            return true;
        }
        match self
            .store
            .save_checkpoint(
                &self.config.name,
                target,
                Some((&self.config.name, &self.holder)),
            )
            .await
        {
            Ok(true) => {
                checkpoint.saved = target;
                metrics::gauge!(CHECKPOINT_POSITION).set(target.get() as f64);
                true
            }
            Ok(false) => false,
            // The next save covers this one.
            Err(e) => {
                tracing::warn!(error = %e, position = target.get(), "Relay could not save its checkpoint.");
                self.progress
                    .trouble(format_args!("cannot save its checkpoint: {e}"));
                true
            }
        }
    }

    /// Records, before handing events up to `through` to the broker, that
    /// they may be published from now on, retrying until the store takes
    /// it: a term that starts later counts them as republished.
    async fn mark_sent(
        &self,
        through: Position,
        shutdown: &mut watch::Receiver<bool>,
        renewed: &mut Instant,
    ) -> Result<(), TermEnd> {
        let mut failures = 0u32;
        loop {
            match self
                .store
                .save_checkpoint(&self.sent, through, Some((&self.config.name, &self.holder)))
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(TermEnd::LeaseLost),
                Err(e) => {
                    tracing::warn!(error = %e, position = through.get(), "Relay could not record how far it sends; retrying.");
                    self.progress
                        .trouble(format_args!("cannot record how far it sends: {e}"));
                    self.pause(shutdown, &mut failures, renewed).await?;
                }
            }
        }
    }

    /// Between batches: work waits when the log's head is past what the
    /// broker confirmed (events the subscription has not handed over yet).
    async fn look_for_waiting_work(&self, published: Position) {
        match self.store.head().await {
            Ok(head) if head.position > published => self.progress.waiting(),
            Ok(_) => self.progress.idle(),
            Err(e) => {
                self.progress.waiting();
                self.progress
                    .trouble(format_args!("cannot read the log's head: {e}"));
            }
        }
    }

    /// Publishes one batch, retrying with backoff until the broker confirms.
    async fn publish(
        &self,
        batch: &[EventEnvelope],
        shutdown: &mut watch::Receiver<bool>,
        renewed: &mut Instant,
    ) -> Result<(), TermEnd> {
        let mut failures = 0u32;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 1 {
                metrics::counter!(REPUBLISHED_TOTAL, "cause" => "retry")
                    .increment(batch.len() as u64);
            }
            match self.publish_once(batch, shutdown, renewed).await? {
                Ok(()) => {
                    metrics::counter!(PUBLISHED_TOTAL).increment(batch.len() as u64);
                    if attempt > 1 {
                        tracing::info!(
                            attempts = attempt,
                            events = batch.len(),
                            "Relay published after retrying."
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    metrics::counter!(PUBLISH_FAILURES_TOTAL, "kind" => e.kind()).increment(1);
                    tracing::warn!(
                        error = %e,
                        attempt,
                        first = batch[0].position.get(),
                        events = batch.len(),
                        "Relay could not publish; retrying."
                    );
                    self.progress.trouble(format_args!("cannot publish: {e}"));
                    self.pause(shutdown, &mut failures, renewed).await?;
                }
            }
        }
    }

    /// One publish of the batch, renewing the lease while the broker takes
    /// its time (a Kafka producer may wait up to its delivery timeout for a
    /// confirm): a relay that is alive keeps its lease. Shutdown abandons
    /// the publish; the next term publishes the batch again.
    async fn publish_once(
        &self,
        batch: &[EventEnvelope],
        shutdown: &mut watch::Receiver<bool>,
        renewed: &mut Instant,
    ) -> Result<Result<(), BrokerError>, TermEnd> {
        self.progress.trouble(format_args!(
            "the broker has not confirmed {} event(s) from position {} yet",
            batch.len(),
            batch[0].position.get()
        ));
        let publish = self.broker.publish_batch(batch);
        tokio::pin!(publish);
        loop {
            let renew_at = tokio::time::Instant::from_std(*renewed + self.config.renew_every);
            tokio::select! {
                result = &mut publish => return Ok(result),
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Err(TermEnd::Shutdown);
                    }
                }
                _ = tokio::time::sleep_until(renew_at) => {
                    if !self.renew().await {
                        return Err(TermEnd::LeaseLost);
                    }
                    *renewed = Instant::now();
                }
            }
        }
    }

    /// Counts one more failure and waits its backoff (50 ms doubling up to
    /// the bound), renewing the lease when due.
    async fn pause(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        failures: &mut u32,
        renewed: &mut Instant,
    ) -> Result<(), TermEnd> {
        *failures = failures.saturating_add(1);
        let backoff = Backoff::new(FIRST_BACKOFF, self.config.max_backoff);
        if wait(shutdown, backoff.delay(*failures)).await {
            return Err(TermEnd::Shutdown);
        }
        if renewed.elapsed() >= self.config.renew_every {
            if !self.renew().await {
                return Err(TermEnd::LeaseLost);
            }
            *renewed = Instant::now();
        }
        Ok(())
    }

    async fn renew(&self) -> bool {
        match self
            .store
            .acquire_lease(&self.config.name, &self.holder, self.config.lease_ttl)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                // Keep going while the lease may still be valid; the fenced
                // checkpoint refuses our progress if it lapsed meanwhile.
                tracing::warn!(error = %e, "Relay could not renew its lease.");
                true
            }
        }
    }
}

/// Waits `pause` or until shutdown; true on shutdown.
async fn wait(shutdown: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        _ = tokio::time::sleep(pause) => false,
    }
}
