//! The timer scheduler: fires due timer occurrences and delivers what the
//! timers carry. This file holds the loop that ties the two halves
//! together; [`firing`] owns the index (what is pending, what is due, what
//! a finished fire means) and the `fire` command, and [`delivery`] owns
//! taking a firing to its target and retrying it. The scheduler reads time
//! from the [`Clock`] it is given (the system's unless a test hands it a
//! [`herald_store::ManualClock`]), never from `Utc::now()`.
//!
//! It follows the store's global log (catch-up, then live) and keeps an
//! in-memory index of the pending occurrence of every active timer and
//! countdown, by (tenant, timer id), folded with the aggregate's own
//! `apply`. The index is saved in the store with the position it was folded
//! up to (the checkpoint `herald.timers`, every few seconds and at
//! shutdown), so a start reads only the log after it; without a usable
//! checkpoint it reads the log from the start. It sleeps until the earliest due time, then sends that
//! timer `fire {occurrence, due_at}` through the timers group, with the
//! dedupe key `timer/{tenant}/{id}/{occurrence}`, the timer's correlation
//! and its first event as causation. Every process may run a scheduler on
//! the same store: the aggregate fires an occurrence once, and the others'
//! attempts change nothing.
//!
//! A timer's correlation is the `correlation_id` it was scheduled with, or
//! else the correlation of its `timer_scheduled` event (that of the request
//! that scheduled it).
//!
//! Delivery follows the log too: every `timer_fired` the scheduler reads
//! once live (its own or another process's) is delivered —
//! - a command: `domains.get(domain).execute_json(tenant, stream_id, name,
//!   body)` with the dedupe key `timer-delivery/{tenant}/{id}/{occurrence}`,
//!   the `timer_fired` event as causation, the timer's correlation and the
//!   producer `timers`;
//! - an event: appended to `domain/stream_id` as type `domain.name` v1
//!   (checked against its schema), with an id derived from that dedupe key
//!   (uuid v5) and the same causation, correlation and producer.
//!
//! Either way a repeat appends nothing, so several processes delivering the
//! same firing, or one delivering it again after a crash, take effect once.
//! The index remembers, for each timer, its latest firing whose delivery
//! has neither finished here nor left a trace in the log (an event of the
//! producer `timers` caused by its `timer_fired`); the checkpoint keeps
//! them, the catch-up adds those it reads, and they are delivered again
//! once caught up: a delivery that happened is a repeat, one lost to a
//! crash between firing and delivering happens now. (A repeat of a refused
//! one is refused again.)
//!
//! Failures: a delivery that fails for the time being (store or actor
//! unavailable, busy, contended) is retried with a backoff until it goes
//! through or the scheduler stops. A refusal by the target (its rules
//! forbid it) or a malformed delivery (unknown domain or command, invalid
//! body or payload) is logged and counted, and not retried — except that a
//! refusal is counted as a duplicate when the target stream's latest events
//! show the firing's effect (the repeat was refused because the first
//! delivery took effect). A fire that fails is retried with a backoff.
//!
//! Timers that came due while no scheduler ran fire as soon as the
//! catch-up is done, marked late.
//!
//! Cost: a start reads the log after the checkpoint (every event is read;
//! timers events are decoded), and no timer fires before that catch-up
//! ends. Once caught up, a quiet log is read at most every
//! `follow_every` (50 ms): with several processes on one store, every
//! process's scheduler would otherwise query the database once per commit
//! of the others. Its memory is one entry per active timer, plus one per timer whose
//! last firing is not known to be delivered; saving the checkpoint writes
//! all of it as JSON, at most every `checkpoint_every`.
//!
//! Wiring (in `herald serve`, inside the actix system; `domains` must hold
//! every group a timer may deliver to, `timers` included, before it is
//! handed over):
//!
//! ```text
//! let timers = AggregateGroup::<Timer>::new(store.clone(), registry.clone(), runtime.clone(), config);
//! let domains = Domains::default().with(Arc::new(tickets)).with(Arc::new(timers.clone()));
//! let mut scheduler = TimerScheduler::new(store.clone(), timers, domains.clone(), registry.clone())
//!     .spawn(stop.clone());
//! scheduler.caught_up(Duration::from_secs(30)).await; // optional
//! tasks.push(scheduler.task);
//! ```
//!
//! Metrics: the `TIMER*` names of [`crate::telemetry`] (occurrences this
//! process fired, by `late`; countdowns expired; timers pending in the
//! index; deliveries that ended, by kind and outcome; delivery retries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_events::{Backoff, EventRegistry, Position, TenantId};
use herald_store::{Clock, EventStore, SystemClock};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::Timer;
use crate::group::{AggregateGroup, Domains};
use crate::telemetry;

mod delivery;
mod firing;

pub use delivery::{delivered_event_id, delivery_dedupe_key};
use firing::{Done, Index};

/// Events taken from the log at most at once; a full chunk means the log is
/// busy, and the next is read without pause.
const FOLLOW_CHUNK: usize = 256;

/// The checkpoint (with the index) the scheduler saves in the store.
pub const CHECKPOINT: &str = "herald.timers";

/// The producer recorded on what timers deliver.
pub const PRODUCER: &str = "timers";

/// The dedupe key of the `fire` of one occurrence. It names the tenant:
/// event ids are unique across tenants, and two tenants may use one id.
pub fn fire_dedupe_key(tenant: &TenantId, id: &str, occurrence: u64) -> String {
    format!("timer/{tenant}/{id}/{occurrence}")
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most `fire` commands in flight at once.
    pub max_concurrent_fires: usize,
    /// Most deliveries in flight at once.
    pub max_concurrent_deliveries: usize,
    /// Longest wait between attempts of a failing fire or delivery.
    pub max_backoff: Duration,
    /// Longest sleep between looks at the wall clock (so a clock that jumps
    /// delays nothing for long).
    pub max_sleep: Duration,
    /// Wait before firing again an occurrence the aggregate found not yet
    /// due (clocks of processes differ).
    pub not_due_retry: Duration,
    /// Shortest time between two saves of the index with its position.
    pub checkpoint_every: Duration,
    /// Once caught up, the shortest time between two reads of the log that
    /// found it nearly idle: a busy log is still read without pause, but
    /// the commits of a store shared by several processes reach each
    /// scheduler in one read per interval rather than one query per
    /// commit. A timer is then learnt of at most this late.
    pub follow_every: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_fires: 64,
            max_concurrent_deliveries: 64,
            max_backoff: Duration::from_secs(30),
            max_sleep: Duration::from_secs(30),
            not_due_retry: Duration::from_millis(100),
            checkpoint_every: Duration::from_secs(5),
            follow_every: Duration::from_millis(50),
        }
    }
}

impl SchedulerConfig {
    /// The waits between attempts of a failing fire or delivery: 100 ms
    /// doubling per failure, at most `max_backoff`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(100), self.max_backoff)
    }
}

/// One process's timer scheduler.
pub struct TimerScheduler {
    store: Arc<dyn EventStore>,
    timers: AggregateGroup<Timer>,
    domains: Domains,
    registry: EventRegistry,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TimerScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerScheduler")
            .field("store", &self.store.backend())
            .field("domains", &self.domains)
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// A running scheduler.
#[derive(Debug)]
pub struct SchedulerHandle {
    /// Ends after the shutdown signal (in-flight fires and deliveries are
    /// dropped; they are repeats-safe and happen again at the next start).
    pub task: JoinHandle<()>,
    caught_up: watch::Receiver<Option<CatchUp>>,
}

/// How a start's catch-up went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// The first position read: one past the checkpoint's.
    pub from: Position,
    /// Events read up to the log's head at start.
    pub events_read: u64,
}

impl SchedulerHandle {
    /// Waits until the scheduler has read the log up to its head at start
    /// (it fires nothing before); false if it did not within `within`.
    pub async fn caught_up(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.caught_up.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How the catch-up went, once it is done.
    pub fn catch_up(&self) -> Option<CatchUp> {
        *self.caught_up.borrow()
    }
}

impl TimerScheduler {
    /// A scheduler firing through `timers` and delivering commands to the
    /// groups of `domains` and events checked against `registry`.
    pub fn new(
        store: Arc<dyn EventStore>,
        timers: AggregateGroup<Timer>,
        domains: Domains,
        registry: EventRegistry,
    ) -> Self {
        Self {
            store,
            timers,
            domains,
            registry,
            config: SchedulerConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_config(mut self, config: SchedulerConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads time from `clock` (what is due, when to retry, whether a fire
    /// was late) instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the scheduler until `shutdown` turns true (or its sender is
    /// dropped). Must be called inside a tokio runtime (the actix system).
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> SchedulerHandle {
        let (caught_up_tx, caught_up) = watch::channel(None);
        let task = tokio::spawn(self.run(shutdown, caught_up_tx));
        SchedulerHandle { task, caught_up }
    }

    async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
        caught_up_tx: watch::Sender<Option<CatchUp>>,
    ) {
        let shared = Arc::new(Shared {
            fire_permits: Semaphore::new(self.config.max_concurrent_fires.max(1)),
            delivery_permits: Semaphore::new(self.config.max_concurrent_deliveries.max(1)),
            store: self.store,
            timers: self.timers,
            domains: self.domains,
            registry: self.registry,
            config: self.config,
            clock: self.clock,
        });
        let mut failures = 0;
        let (mut index, mut read_through) = loop {
            if *shutdown.borrow() {
                return;
            }
            match Index::load(&shared.store).await {
                Ok(loaded) => break loaded,
                Err(e) => {
                    tracing::warn!(error = %e, "Timer scheduler cannot read its checkpoint; retrying.");
                    failures += 1;
                    if pause(&mut shutdown, shared.config.backoff().delay(failures)).await {
                        return;
                    }
                }
            }
        };
        let head = loop {
            if *shutdown.borrow() {
                return;
            }
            match shared.store.head().await {
                Ok(head) => break head.position,
                Err(e) => {
                    tracing::warn!(error = %e, "Timer scheduler cannot read the log head; retrying.");
                    failures += 1;
                    if pause(&mut shutdown, shared.config.backoff().delay(failures)).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(
            from = read_through.get() + 1,
            head = head.get(),
            pending = index.pending(),
            "Timer scheduler reading the log from its checkpoint."
        );
        let started = Instant::now();
        let from = read_through.next();
        let mut log = shared.store.subscribe_all(from).ready_chunks(FOLLOW_CHUNK);
        let mut next_read = tokio::time::Instant::now();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut caught_up = false;
        let mut read = 0u64;
        let mut saved_through = read_through;
        let mut saved_at = Instant::now();
        if head <= read_through {
            caught_up = true;
            redeliver(&index, &shared, &mut tasks, started, read);
            let _ = caught_up_tx.send(Some(CatchUp {
                from: read_through.next(),
                events_read: read,
            }));
        }
        loop {
            let wake = if caught_up { index.next_wake() } else { None };
            let sleep = wake.map(|at| {
                (at - shared.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(shared.config.max_sleep)
            });
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok(done) => index.done(done, shared.clock.now(), &shared.config),
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "A timer task panicked.");
                    }
                    Err(_) => {}
                },
                _ = tokio::time::sleep_until(next_read), if tokio::time::Instant::now() < next_read => {}
                chunk = log.next(), if tokio::time::Instant::now() >= next_read => {
                    let Some(chunk) = chunk else {
                        tracing::info!("The store closed; the timer scheduler stops.");
                        break;
                    };
                    if caught_up && chunk.len() < FOLLOW_CHUNK {
                        next_read = tokio::time::Instant::now() + shared.config.follow_every;
                    }
                    for item in chunk {
                        let envelope = match item {
                            Ok(envelope) => envelope,
                            // The subscription retries from where it stopped.
                            Err(e) => {
                                tracing::warn!(error = %e, "Timer scheduler could not read the log; retrying.");
                                continue;
                            }
                        };
                        read += 1;
                        read_through = read_through.max(envelope.position);
                        if let Some(delivery) = index.observe(&envelope, caught_up, &shared.registry) {
                            tasks.spawn(delivery::deliver(Arc::clone(&shared), delivery));
                        }
                        if !caught_up && envelope.position >= head {
                            caught_up = true;
                            redeliver(&index, &shared, &mut tasks, started, read);
                            let _ = caught_up_tx.send(Some(CatchUp { from, events_read: read }));
                        }
                    }
                }
                _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {
                    dispatch(&mut index, &shared, &mut tasks);
                }
            }
            if caught_up {
                // Also here, so a log that is never idle cannot starve the
                // timer branch of the select.
                dispatch(&mut index, &shared, &mut tasks);
                if read_through > saved_through
                    && saved_at.elapsed() >= shared.config.checkpoint_every
                {
                    saved_at = Instant::now();
                    if index.save(&shared.store, read_through).await {
                        saved_through = read_through;
                    }
                }
            }
            telemetry::timers_pending(index.pending());
        }
        // Deliveries cut short stay in the index: the next start does them.
        tasks.shutdown().await;
        if caught_up && read_through > saved_through {
            index.save(&shared.store, read_through).await;
        }
        tracing::info!("Timer scheduler stopped.");
    }
}

/// What the scheduler's tasks share.
struct Shared {
    store: Arc<dyn EventStore>,
    timers: AggregateGroup<Timer>,
    domains: Domains,
    registry: EventRegistry,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
    fire_permits: Semaphore,
    delivery_permits: Semaphore,
}

/// Starts a fire of every entry that is due by the clock.
fn dispatch(index: &mut Index, shared: &Arc<Shared>, tasks: &mut JoinSet<Done>) {
    for due in index.due(shared.clock.now()) {
        tasks.spawn(firing::fire(Arc::clone(shared), due));
    }
}

/// The catch-up is done: deliver what may not have been delivered.
fn redeliver(
    index: &Index,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<Done>,
    started: Instant,
    read: u64,
) {
    let owed = index.owed();
    let redeliveries = owed.len();
    for delivery in owed {
        tasks.spawn(delivery::deliver(Arc::clone(shared), delivery));
    }
    tracing::info!(
        events = read,
        pending = index.pending(),
        redeliveries,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Timer scheduler caught up with the log."
    );
}

/// Waits `duration`; true if the scheduler is to stop.
async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let max = Duration::from_secs(30);
        let backoff = SchedulerConfig::default().backoff();
        assert_eq!(backoff.delay(1), Duration::from_millis(100));
        assert_eq!(backoff.delay(2), Duration::from_millis(200));
        assert_eq!(backoff.delay(50), max);
    }

    #[test]
    fn dedupe_keys_name_tenant_timer_and_occurrence() {
        let tenant = TenantId::new("acme").unwrap();
        assert_eq!(fire_dedupe_key(&tenant, "t", 3), "timer/acme/t/3");
        assert_eq!(
            delivery_dedupe_key(&tenant, "t", 3),
            "timer-delivery/acme/t/3"
        );
        assert_eq!(delivered_event_id("k"), delivered_event_id("k"));
        assert_ne!(delivered_event_id("k"), delivered_event_id("k2"));
    }
}
