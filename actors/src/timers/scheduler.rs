//! The timer scheduler: fires due timer occurrences and delivers what the
//! timers carry.
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
//! ends. Its memory is one entry per active timer, plus one per timer whose
//! last firing is not known to be delivered; saving the checkpoint writes
//! all of it as JSON, at most every `checkpoint_every`.
//!
//! Wiring (in `herald serve`, inside the actix system; `domains` must hold
//! every group a timer may deliver to, `timers` included, before it is
//! handed over):
//!
//! ```ignore
//! let timers = AggregateGroup::<Timer>::new(store.clone(), registry.clone(), runtime.clone(), config);
//! let domains = Domains::default().with(Arc::new(tickets)).with(Arc::new(timers.clone()));
//! let mut scheduler = TimerScheduler::new(store.clone(), timers, domains.clone(), registry.clone())
//!     .spawn(stop.clone());
//! scheduler.caught_up(Duration::from_secs(30)).await; // optional
//! tasks.push(scheduler.task);
//! ```
//!
//! Metrics: `herald_timers_fired_total{late}` (occurrences this process
//! fired), `herald_timers_countdowns_expired_total`,
//! `herald_timers_pending` (active timers and countdowns in the index),
//! `herald_timers_deliveries_total{kind, outcome}` (outcome: `delivered`,
//! `duplicate`, `refused`, `invalid`) and
//! `herald_timers_delivery_retries_total`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_events::timers::{Delivery, DeliveryKind, TimerFired};
use herald_events::{
    EventEnvelope, EventId, EventRegistry, EventType, NewEvent, Position, SchemaVersion, StreamId,
    StreamVersion, TenantId, TypedEvent,
};
use herald_store::{EventStore, ExpectedVersion};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use uuid::Uuid;

use super::{Timer, TimerCommand, TimerEvent, LATE_AFTER};
use crate::actor::CommandMeta;
use crate::aggregate::{Aggregate, DomainEvent, RefusalKind};
use crate::error::CommandError;
use crate::group::{AggregateGroup, Domains};

/// Occurrences fired by this process, by `late`.
pub const FIRED_TOTAL: &str = "herald_timers_fired_total";
/// Countdowns expired by this process.
pub const COUNTDOWNS_EXPIRED_TOTAL: &str = "herald_timers_countdowns_expired_total";
/// Active timers and countdowns the scheduler knows of.
pub const PENDING: &str = "herald_timers_pending";
/// The checkpoint (with the index) the scheduler saves in the store.
pub const CHECKPOINT: &str = "herald.timers";
/// The shape of the saved index; a checkpoint of another shape is ignored
/// (the index is folded from the start of the log instead).
const SAVED_INDEX_VERSION: u32 = 1;

/// Deliveries that ended, by `kind` and `outcome`.
pub const DELIVERIES_TOTAL: &str = "herald_timers_deliveries_total";
/// Delivery attempts that failed for the time being and are tried again.
pub const DELIVERY_RETRIES_TOTAL: &str = "herald_timers_delivery_retries_total";

/// The producer recorded on what timers deliver.
pub const PRODUCER: &str = "timers";

/// The dedupe key of the `fire` of one occurrence. It names the tenant:
/// event ids are unique across tenants, and two tenants may use one id.
pub fn fire_dedupe_key(tenant: &TenantId, id: &str, occurrence: u64) -> String {
    format!("timer/{tenant}/{id}/{occurrence}")
}

/// The dedupe key of the delivery of one occurrence.
pub fn delivery_dedupe_key(tenant: &TenantId, id: &str, occurrence: u64) -> String {
    format!("timer-delivery/{tenant}/{id}/{occurrence}")
}

/// The id of the event an event delivery appends: the same for every
/// attempt, so the store keeps one.
pub fn delivered_event_id(dedupe_key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d74_696d_6572_732d_6576);
    Uuid::new_v5(&NAMESPACE, dedupe_key.as_bytes())
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
        }
    }
}

/// One process's timer scheduler.
pub struct TimerScheduler {
    store: Arc<dyn EventStore>,
    timers: AggregateGroup<Timer>,
    domains: Domains,
    registry: EventRegistry,
    config: SchedulerConfig,
}

impl std::fmt::Debug for TimerScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerScheduler")
            .field("store", &self.store.backend())
            .field("domains", &self.domains)
            .field("config", &self.config)
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
        }
    }

    pub fn with_config(mut self, config: SchedulerConfig) -> Self {
        self.config = config;
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
                    if pause(&mut shutdown, backoff(failures, shared.config.max_backoff)).await {
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
                    if pause(&mut shutdown, backoff(failures, shared.config.max_backoff)).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(
            from = read_through.get() + 1,
            head = head.get(),
            pending = index.entries.len(),
            "Timer scheduler reading the log from its checkpoint."
        );
        let started = Instant::now();
        let from = read_through.next();
        let mut log = shared.store.subscribe_all(from).ready_chunks(256);
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut caught_up = false;
        let mut read = 0u64;
        let mut saved_through = read_through;
        let mut saved_at = Instant::now();
        if head <= read_through {
            caught_up = true;
            index.caught_up(&shared, &mut tasks, started, read);
            let _ = caught_up_tx.send(Some(CatchUp {
                from: read_through.next(),
                events_read: read,
            }));
        }
        loop {
            let wake = if caught_up { index.next_wake() } else { None };
            let sleep = wake.map(|at| {
                (at - Utc::now())
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
                    Ok(done) => index.done(done, &shared.config),
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "A timer task panicked.");
                    }
                    Err(_) => {}
                },
                chunk = log.next() => {
                    let Some(chunk) = chunk else {
                        tracing::info!("The store closed; the timer scheduler stops.");
                        break;
                    };
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
                            tasks.spawn(deliver(Arc::clone(&shared), delivery));
                        }
                        if !caught_up && envelope.position >= head {
                            caught_up = true;
                            index.caught_up(&shared, &mut tasks, started, read);
                            let _ = caught_up_tx.send(Some(CatchUp { from, events_read: read }));
                        }
                    }
                }
                _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {
                    index.dispatch(&shared, &mut tasks);
                }
            }
            if caught_up {
                // Also here, so a log that is never idle cannot starve the
                // timer branch of the select.
                index.dispatch(&shared, &mut tasks);
                if read_through > saved_through
                    && saved_at.elapsed() >= shared.config.checkpoint_every
                {
                    saved_at = Instant::now();
                    if index.save(&shared.store, read_through).await {
                        saved_through = read_through;
                    }
                }
            }
            metrics::gauge!(PENDING).set(index.entries.len() as f64);
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
    fire_permits: Semaphore,
    delivery_permits: Semaphore,
}

type Key = (TenantId, String);

/// One active timer or countdown.
struct Entry {
    state: Timer,
    /// The stream version of the last event folded in.
    version: u64,
    /// Given to its firings and deliveries.
    correlation: Uuid,
    /// Its first event (`timer_scheduled` or `countdown_created`): the
    /// causation of its firings.
    origin: Uuid,
    /// Where it is filed in the queue.
    queued: Option<DateTime<Utc>>,
    /// A fire of it is running.
    in_flight: bool,
    /// The highest occurrence fired (or found fired) here, whose
    /// `timer_fired` the log has not shown yet.
    attempted: u64,
    /// A failed fire of the pending occurrence: (occurrence, retry at,
    /// failures so far).
    retry: Option<(u64, DateTime<Utc>, u32)>,
}

/// What to deliver for one firing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct PendingDelivery {
    #[serde(with = "tenant_text")]
    tenant: TenantId,
    timer_id: String,
    occurrence: u64,
    /// The `timer_fired` event: the delivery's causation.
    fired_event: Uuid,
    deliver: Delivery,
    correlation: Uuid,
}

/// The pending occurrences, and the firings not known to be delivered.
#[derive(Default)]
struct Index {
    entries: HashMap<Key, Entry>,
    /// Entries by when to fire them next.
    queue: BTreeSet<(DateTime<Utc>, Key)>,
    /// Each timer's latest firing whose delivery has neither finished here
    /// nor left a trace in the log, and the same by `timer_fired` id.
    undelivered: HashMap<Key, PendingDelivery>,
    by_fired: HashMap<Uuid, Key>,
}

/// The index as the checkpoint keeps it: what the log says, without what
/// this process was doing (fires in flight, retries), which a start redoes.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SavedIndex {
    version: u32,
    entries: Vec<SavedEntry>,
    undelivered: Vec<PendingDelivery>,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SavedEntry {
    #[serde(with = "tenant_text")]
    tenant: TenantId,
    id: String,
    state: Timer,
    version: u64,
    correlation: Uuid,
    origin: Uuid,
}

/// A tenant as its text.
mod tenant_text {
    use herald_events::TenantId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tenant: &TenantId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tenant.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TenantId, D::Error> {
        let text = String::deserialize(d)?;
        TenantId::new(&text).map_err(serde::de::Error::custom)
    }
}

/// What a task ended with.
enum Done {
    Fire {
        key: Key,
        occurrence: u64,
        outcome: FireOutcome,
    },
    /// The delivery of the firing `fired_event` ended (done, or given up).
    Delivery { fired_event: Uuid },
}

enum FireOutcome {
    /// Fired here, or found fired (or cancelled): the log will show it.
    Settled,
    /// The aggregate's clock says not yet.
    NotDue,
    /// Failed for now.
    Failed,
}

impl Index {
    /// Folds one event of the log in; answers the delivery a live
    /// `timer_fired` calls for.
    fn observe(
        &mut self,
        envelope: &EventEnvelope,
        live: bool,
        registry: &EventRegistry,
    ) -> Option<PendingDelivery> {
        if envelope.causation_id != envelope.id.as_uuid() && envelope.producer == PRODUCER {
            // A delivery's trace: the firing that caused it was delivered.
            if let Some(key) = self.by_fired.remove(&envelope.causation_id) {
                self.undelivered.remove(&key);
            }
        }
        if envelope.stream.domain().as_str() != Timer::DOMAIN {
            return None;
        }
        let event = match registry
            .upcast(envelope.clone())
            .map_err(|e| e.to_string())
            .and_then(|e| TimerEvent::from_envelope(&e).map_err(|e| e.to_string()))
        {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, position = envelope.position.get(), "Timer scheduler skips an unreadable timers event.");
                return None;
            }
        };
        let key: Key = (envelope.tenant.clone(), envelope.stream.id().to_owned());
        let version = envelope.stream_version.get();
        if let Some(entry) = self.entries.get_mut(&key) {
            if version <= entry.version {
                return None;
            }
            entry.state.apply(&event);
            entry.version = version;
        } else {
            let correlation = match &event {
                TimerEvent::Scheduled(s) => s.correlation_id.unwrap_or(envelope.correlation_id),
                TimerEvent::CountdownCreated(_) => envelope.correlation_id,
                // A finished timer's stream, forgotten: nothing pending.
                _ => return None,
            };
            let mut state = Timer::default();
            state.apply(&event);
            self.entries.insert(
                key.clone(),
                Entry {
                    state,
                    version,
                    correlation,
                    origin: envelope.id.as_uuid(),
                    queued: None,
                    in_flight: false,
                    attempted: 0,
                    retry: None,
                },
            );
        }
        let entry = &self.entries[&key];
        let delivery = match (&event, &entry.state.schedule) {
            (TimerEvent::Fired(fired), Some(schedule)) => Some(PendingDelivery {
                tenant: key.0.clone(),
                timer_id: key.1.clone(),
                occurrence: fired.occurrence,
                fired_event: envelope.id.as_uuid(),
                deliver: schedule.deliver.clone(),
                correlation: entry.correlation,
            }),
            _ => None,
        };
        self.requeue(&key);
        let delivery = delivery?;
        if let Some(previous) = self.undelivered.insert(key.clone(), delivery.clone()) {
            self.by_fired.remove(&previous.fired_event);
        }
        self.by_fired.insert(delivery.fired_event, key);
        live.then_some(delivery)
    }

    /// The index saved under [`CHECKPOINT`] and the position it was folded
    /// up to; an empty index at the start of the log when there is none
    /// (or one this build cannot read).
    async fn load(
        store: &Arc<dyn EventStore>,
    ) -> Result<(Self, Position), herald_store::StoreError> {
        let Some((position, Some(text))) = store.checkpoint_state(CHECKPOINT).await? else {
            return Ok((Self::default(), Position::START));
        };
        match serde_json::from_str::<SavedIndex>(&text) {
            Ok(saved) if saved.version == SAVED_INDEX_VERSION => {
                Ok((Self::restore(saved), position))
            }
            Ok(saved) => {
                tracing::warn!(version = saved.version, "Timer scheduler's checkpoint has another shape; reading the log from the start.");
                Ok((Self::default(), Position::START))
            }
            Err(e) => {
                tracing::warn!(error = %e, "Timer scheduler's checkpoint cannot be read; reading the log from the start.");
                Ok((Self::default(), Position::START))
            }
        }
    }

    fn restore(saved: SavedIndex) -> Self {
        let mut index = Self::default();
        for e in saved.entries {
            let key: Key = (e.tenant, e.id);
            index.entries.insert(
                key.clone(),
                Entry {
                    state: e.state,
                    version: e.version,
                    correlation: e.correlation,
                    origin: e.origin,
                    queued: None,
                    in_flight: false,
                    attempted: 0,
                    retry: None,
                },
            );
            index.requeue(&key);
        }
        for delivery in saved.undelivered {
            let key: Key = (delivery.tenant.clone(), delivery.timer_id.clone());
            index.by_fired.insert(delivery.fired_event, key.clone());
            index.undelivered.insert(key, delivery);
        }
        index
    }

    fn to_saved(&self) -> SavedIndex {
        let mut entries: Vec<SavedEntry> = self
            .entries
            .iter()
            .map(|((tenant, id), e)| SavedEntry {
                tenant: tenant.clone(),
                id: id.clone(),
                state: e.state.clone(),
                version: e.version,
                correlation: e.correlation,
                origin: e.origin,
            })
            .collect();
        entries.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
        let mut undelivered: Vec<PendingDelivery> = self.undelivered.values().cloned().collect();
        undelivered.sort_by(|a, b| (&a.tenant, &a.timer_id).cmp(&(&b.tenant, &b.timer_id)));
        SavedIndex {
            version: SAVED_INDEX_VERSION,
            entries,
            undelivered,
        }
    }

    /// Saves the index as folded up to `position`; false when it could not
    /// (the next save tries again).
    async fn save(&self, store: &Arc<dyn EventStore>, position: Position) -> bool {
        let text = match serde_json::to_string(&self.to_saved()) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "Timer scheduler cannot encode its index.");
                return false;
            }
        };
        match store
            .save_checkpoint_state(CHECKPOINT, position, &text)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Timer scheduler could not save its checkpoint; it tries again.");
                false
            }
        }
    }

    /// Files the entry under its next fire time, or forgets it when it has
    /// nothing pending.
    fn requeue(&mut self, key: &Key) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(at) = entry.queued.take() {
            self.queue.remove(&(at, key.clone()));
        }
        if entry.in_flight {
            return;
        }
        let Some((occurrence, due)) = entry.state.pending() else {
            self.entries.remove(key);
            return;
        };
        if entry.attempted >= occurrence {
            // Fired here; waiting for the log to show it.
            return;
        }
        let at = match entry.retry {
            Some((retried, at, _)) if retried == occurrence => at.max(due),
            _ => due,
        };
        entry.queued = Some(at);
        self.queue.insert((at, key.clone()));
    }

    fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Starts a fire of every entry that is due.
    fn dispatch(&mut self, shared: &Arc<Shared>, tasks: &mut JoinSet<Done>) {
        let now = Utc::now();
        while let Some((at, key)) = self.queue.first().cloned() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.queued = None;
            let Some((occurrence, due_at)) = entry.state.pending() else {
                continue;
            };
            entry.in_flight = true;
            tasks.spawn(fire(
                Arc::clone(shared),
                key,
                occurrence,
                due_at,
                (entry.correlation, entry.origin),
            ));
        }
    }

    /// A task ended.
    fn done(&mut self, done: Done, config: &SchedulerConfig) {
        let (key, occurrence, outcome) = match done {
            Done::Fire {
                key,
                occurrence,
                outcome,
            } => (key, occurrence, outcome),
            Done::Delivery { fired_event } => {
                if let Some(key) = self.by_fired.remove(&fired_event) {
                    self.undelivered.remove(&key);
                }
                return;
            }
        };
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        entry.in_flight = false;
        match outcome {
            FireOutcome::Settled => {
                entry.attempted = entry.attempted.max(occurrence);
                entry.retry = None;
            }
            FireOutcome::NotDue => {
                let at = later(config.not_due_retry);
                entry.retry = Some((occurrence, at, 0));
            }
            FireOutcome::Failed => {
                let failures = match entry.retry {
                    Some((retried, _, failures)) if retried == occurrence => failures + 1,
                    _ => 1,
                };
                let at = later(backoff(failures, config.max_backoff));
                entry.retry = Some((occurrence, at, failures));
            }
        }
        self.requeue(&key);
    }

    /// The catch-up is done: deliver what may not have been delivered.
    fn caught_up(
        &mut self,
        shared: &Arc<Shared>,
        tasks: &mut JoinSet<Done>,
        started: Instant,
        read: u64,
    ) {
        let redeliveries = self.undelivered.len();
        for delivery in self.undelivered.values() {
            tasks.spawn(deliver(Arc::clone(shared), delivery.clone()));
        }
        tracing::info!(
            events = read,
            pending = self.entries.len(),
            redeliveries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Timer scheduler caught up with the log."
        );
    }
}

/// Fires one occurrence through the timers group.
async fn fire(
    shared: Arc<Shared>,
    key: Key,
    occurrence: u64,
    due_at: DateTime<Utc>,
    (correlation, origin): (Uuid, Uuid),
) -> Done {
    let outcome = {
        let _permit = shared.fire_permits.acquire().await;
        let (tenant, id) = (&key.0, key.1.as_str());
        let meta = CommandMeta {
            correlation_id: Some(correlation),
            causation_id: Some(origin),
            dedupe_key: Some(fire_dedupe_key(tenant, id, occurrence)),
            producer: Some(PRODUCER.to_owned()),
            idempotency: None,
        };
        let command = TimerCommand::Fire { occurrence, due_at };
        match shared.timers.execute(tenant, id, command, meta).await {
            Ok(executed) => {
                if let (false, Some(event)) = (executed.duplicate, executed.events.first()) {
                    if event.event_type.ends_with(".timer_fired") {
                        let late = fired_late(&shared, tenant, id, event.stream_version)
                            .await
                            .unwrap_or_else(|| Utc::now() - due_at > LATE_AFTER);
                        metrics::counter!(FIRED_TOTAL, "late" => if late { "true" } else { "false" })
                            .increment(1);
                        tracing::debug!(tenant = %tenant, timer = id, occurrence, late, "Timer fired.");
                    } else {
                        metrics::counter!(COUNTDOWNS_EXPIRED_TOTAL).increment(1);
                        tracing::debug!(tenant = %tenant, countdown = id, "Countdown expired.");
                    }
                }
                FireOutcome::Settled
            }
            Err(CommandError::Refused(r)) if r.kind == RefusalKind::Forbidden => {
                FireOutcome::NotDue
            }
            Err(CommandError::Refused(r)) => {
                tracing::error!(tenant = %tenant, timer = id, occurrence, refusal = %r, "A timer refused to fire; it is left alone.");
                FireOutcome::Settled
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, timer = id, occurrence, error = %e, "A timer could not fire; retrying.");
                FireOutcome::Failed
            }
        }
    };
    Done::Fire {
        key,
        occurrence,
        outcome,
    }
}

/// Whether the `timer_fired` at `version` of the timer's stream is late.
async fn fired_late(shared: &Shared, tenant: &TenantId, id: &str, version: u64) -> Option<bool> {
    let stream = StreamId::parse_parts(Timer::DOMAIN, id).ok()?;
    let events = shared
        .store
        .read_stream(tenant, &stream, StreamVersion(version), 1)
        .await
        .ok()?;
    let event = events.into_iter().next()?;
    TimerFired::from_payload(event.payload)
        .ok()
        .map(|fired| fired.late)
}

/// Why a delivery attempt did not take effect.
enum DeliveryError {
    /// The target's rules forbid it (or its aggregate does not exist).
    Refused(String),
    /// It can never succeed as it is.
    Invalid(String),
    /// Try again later.
    Transient(String),
}

/// Delivers one firing, retrying while it fails for the time being.
async fn deliver(shared: Arc<Shared>, delivery: PendingDelivery) -> Done {
    let span = tracing::info_span!(
        "timer_delivery",
        tenant = %delivery.tenant,
        timer = %delivery.timer_id,
        occurrence = delivery.occurrence,
        to = %format_args!("{}/{}", delivery.deliver.domain, delivery.deliver.stream_id),
        name = %delivery.deliver.name,
    );
    deliver_retrying(shared, delivery).instrument(span).await
}

async fn deliver_retrying(shared: Arc<Shared>, delivery: PendingDelivery) -> Done {
    let _permit = shared.delivery_permits.acquire().await;
    let key = delivery_dedupe_key(&delivery.tenant, &delivery.timer_id, delivery.occurrence);
    let kind = match delivery.deliver.kind {
        DeliveryKind::Command => "command",
        DeliveryKind::Event => "event",
    };
    let mut failures = 0;
    loop {
        let attempt = match delivery.deliver.kind {
            DeliveryKind::Command => deliver_command(&shared, &delivery, &key).await,
            DeliveryKind::Event => deliver_event(&shared, &delivery, &key).await,
        };
        let outcome = match attempt {
            Ok(false) => "delivered",
            Ok(true) => "duplicate",
            Err(DeliveryError::Refused(why)) => {
                tracing::warn!(reason = %why, "The target refused a timer's delivery; it is not retried.");
                "refused"
            }
            Err(DeliveryError::Invalid(why)) => {
                tracing::error!(reason = %why, "A timer's delivery cannot be done; it is not retried.");
                "invalid"
            }
            Err(DeliveryError::Transient(why)) => {
                failures += 1;
                metrics::counter!(DELIVERY_RETRIES_TOTAL).increment(1);
                let wait = backoff(failures, shared.config.max_backoff);
                tracing::warn!(reason = %why, failures, retry_in_ms = wait.as_millis() as u64, "A timer's delivery failed; retrying.");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        metrics::counter!(DELIVERIES_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
        return Done::Delivery {
            fired_event: delivery.fired_event,
        };
    }
}

/// Sends the command; `Ok(true)` when it had been delivered before.
async fn deliver_command(
    shared: &Shared,
    delivery: &PendingDelivery,
    key: &str,
) -> Result<bool, DeliveryError> {
    let deliver = &delivery.deliver;
    let target = shared.domains.get(&deliver.domain).ok_or_else(|| {
        DeliveryError::Invalid(format!("no domain {} in this process", deliver.domain))
    })?;
    let meta = CommandMeta {
        correlation_id: Some(delivery.correlation),
        causation_id: Some(delivery.fired_event),
        dedupe_key: Some(key.to_owned()),
        producer: Some(PRODUCER.to_owned()),
        idempotency: None,
    };
    let body = Value::Object(deliver.body.clone());
    match target
        .execute_json(
            &delivery.tenant,
            &deliver.stream_id,
            &deliver.name,
            body,
            meta,
        )
        .await
    {
        Ok(executed) => Ok(executed.duplicate),
        Err(CommandError::Refused(r)) if r.kind == RefusalKind::Invalid => {
            Err(DeliveryError::Invalid(r.message))
        }
        // A repeat the target's rules refuse (the first delivery changed
        // its state) is a duplicate when the first delivery's effect shows.
        Err(CommandError::Refused(_)) if delivered_before(shared, delivery).await => Ok(true),
        Err(CommandError::Refused(r)) => Err(DeliveryError::Refused(r.message)),
        Err(
            e @ (CommandError::Busy { .. }
            | CommandError::Contended { .. }
            | CommandError::Unavailable(_)),
        ) => Err(DeliveryError::Transient(e.to_string())),
        Err(CommandError::Store(e)) if !e.is_caller_error() => {
            Err(DeliveryError::Transient(e.to_string()))
        }
        Err(e) => Err(DeliveryError::Invalid(e.to_string())),
    }
}

/// How many of the target stream's latest events are searched for an
/// earlier delivery's effect.
const TRACE_WINDOW: u64 = 256;

/// Whether the target stream's latest events hold this delivery's effect
/// (events of the producer `timers` caused by the firing).
async fn delivered_before(shared: &Shared, delivery: &PendingDelivery) -> bool {
    let deliver = &delivery.deliver;
    let Ok(stream) = StreamId::parse_parts(&deliver.domain, &deliver.stream_id) else {
        return false;
    };
    let Ok(version) = shared.store.stream_version(&delivery.tenant, &stream).await else {
        return false;
    };
    let from = version.get().saturating_sub(TRACE_WINDOW - 1).max(1);
    shared
        .store
        .read_stream(
            &delivery.tenant,
            &stream,
            StreamVersion(from),
            TRACE_WINDOW as usize,
        )
        .await
        .is_ok_and(|events| {
            events
                .iter()
                .any(|e| e.causation_id == delivery.fired_event && e.producer == PRODUCER)
        })
}

/// Appends the event; `Ok(true)` when it had been delivered before.
async fn deliver_event(
    shared: &Shared,
    delivery: &PendingDelivery,
    key: &str,
) -> Result<bool, DeliveryError> {
    let deliver = &delivery.deliver;
    let invalid = |e: &dyn std::fmt::Display| DeliveryError::Invalid(e.to_string());
    let stream =
        StreamId::parse_parts(&deliver.domain, &deliver.stream_id).map_err(|e| invalid(&e))?;
    let event_type = EventType::new(stream.domain(), &deliver.name).map_err(|e| invalid(&e))?;
    let version = SchemaVersion::new(1).map_err(|e| invalid(&e))?;
    let payload = Value::Object(deliver.body.clone());
    shared
        .registry
        .validate(&event_type, version, &payload)
        .map_err(|e| invalid(&e))?;
    let event = NewEvent::new(event_type, version, payload)
        .with_id(EventId(delivered_event_id(key)))
        .correlation(delivery.correlation, delivery.fired_event)
        .producer(PRODUCER);
    match shared
        .store
        .append(&delivery.tenant, &stream, ExpectedVersion::Any, vec![event])
        .await
    {
        Ok(outcome) => Ok(outcome.duplicate),
        Err(e) if e.is_caller_error() => Err(invalid(&e)),
        Err(e) => Err(DeliveryError::Transient(e.to_string())),
    }
}

/// The wall-clock time `after` from now.
fn later(after: Duration) -> DateTime<Utc> {
    let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::days(365));
    Utc::now()
        .checked_add_signed(after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// 100 ms doubling per failure, at most `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_millis(100u64 << failures.saturating_sub(1).min(10)).min(max)
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
    use chrono::TimeDelta;
    use herald_events::timers::{TimerCancelled, TimerScheduled};
    use herald_events::{ChainHash, Domain};
    use serde_json::json;

    use super::*;

    const DUE: &str = "2025-03-01T09:00:00Z";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn key(id: &str) -> Key {
        (tenant(), id.to_owned())
    }

    /// Builds the log one event at a time.
    #[derive(Default)]
    struct Log {
        position: u64,
        versions: HashMap<String, u64>,
    }

    impl Log {
        fn append(&mut self, domain: &str, id: &str, new: NewEvent) -> EventEnvelope {
            self.position += 1;
            let version = self.versions.entry(format!("{domain}/{id}")).or_default();
            *version += 1;
            EventEnvelope {
                id: new.id,
                tenant: tenant(),
                stream: StreamId::new(Domain::new(domain).unwrap(), id).unwrap(),
                stream_version: StreamVersion(*version),
                position: Position(self.position),
                event_type: new.event_type,
                version: new.version,
                occurred_at: new.occurred_at,
                recorded_at: new.occurred_at,
                correlation_id: new.correlation_id,
                causation_id: new.causation_id,
                producer: new.producer,
                payload: new.payload,
                hash: ChainHash::GENESIS,
            }
        }

        fn timer(&mut self, id: &str, event: impl Into<TimerEvent>) -> EventEnvelope {
            let new = event.into().to_new_event().producer(PRODUCER);
            self.append("timers", id, new)
        }

        /// A delivery's effect: caused by `fired`, by `producer`.
        fn caused_by(&mut self, fired: &EventEnvelope, producer: &str) -> EventEnvelope {
            let new = herald_events::tickets::NoteAppended {
                note: "n".into(),
                author: None,
            }
            .to_new_event()
            .correlation(fired.correlation_id, fired.id.as_uuid())
            .producer(producer);
            self.append("tickets", "T-1", new)
        }
    }

    fn scheduled(due_at: DateTime<Utc>, every_secs: Option<u64>) -> TimerScheduled {
        TimerScheduled {
            due_at,
            every_secs,
            deliver: serde_json::from_value(json!({
                "kind": "command", "domain": "tickets", "stream_id": "T-1",
                "name": "append_note", "body": {"note": "n"},
            }))
            .unwrap(),
            correlation_id: None,
            label: None,
        }
    }

    fn fired(occurrence: u64, due_at: DateTime<Utc>, every: Option<i64>) -> TimerFired {
        TimerFired {
            occurrence,
            due_at,
            fired_at: due_at,
            late: false,
            next_due_at: every.map(|s| due_at + TimeDelta::seconds(s)),
        }
    }

    fn registry() -> EventRegistry {
        EventRegistry::builtin().unwrap()
    }

    #[test]
    fn the_catch_up_keeps_each_timer_s_latest_firing_with_no_delivery_trace() {
        let (registry, mut log, mut index) = (registry(), Log::default(), Index::default());
        let due = t(DUE);
        let observe = |index: &mut Index, e: EventEnvelope| {
            assert!(index.observe(&e, false, &registry).is_none());
        };
        // a: recurring; occurrence 1 delivered, 2 not.
        let a0 = log.timer("a", scheduled(due, Some(60)));
        observe(&mut index, a0.clone());
        let a1 = log.timer("a", fired(1, due, Some(60)));
        observe(&mut index, a1.clone());
        let trace = log.caused_by(&a1, PRODUCER);
        observe(&mut index, trace);
        let a2 = log.timer("a", fired(2, due + TimeDelta::seconds(60), Some(60)));
        observe(&mut index, a2.clone());
        // b: one-shot, delivered: finished and forgotten.
        let e = log.timer("b", scheduled(due, None));
        observe(&mut index, e);
        let b1 = log.timer("b", fired(1, due, None));
        observe(&mut index, b1.clone());
        let trace = log.caused_by(&b1, PRODUCER);
        observe(&mut index, trace);
        // c: one-shot; only another producer's event was caused by it.
        let e = log.timer("c", scheduled(due, None));
        observe(&mut index, e);
        let c1 = log.timer("c", fired(1, due, None));
        observe(&mut index, c1.clone());
        let other = log.caused_by(&c1, "reaction:someone");
        observe(&mut index, other);
        // d: cancelled before firing: nothing owed, nothing pending.
        let e = log.timer("d", scheduled(due, None));
        observe(&mut index, e);
        let e = log.timer("d", TimerCancelled { reason: None });
        observe(&mut index, e);

        let mut owed: Vec<(String, u64, Uuid)> = index
            .undelivered
            .values()
            .map(|d| (d.timer_id.clone(), d.occurrence, d.fired_event))
            .collect();
        owed.sort();
        assert_eq!(
            owed,
            [
                ("a".to_owned(), 2, a2.id.as_uuid()),
                ("c".to_owned(), 1, c1.id.as_uuid())
            ]
        );
        // Given to the delivery: the scheduling's correlation.
        let correlation = index.undelivered[&key("a")].correlation;
        assert_eq!(correlation, a0.correlation_id);
        // Only a is pending, due at its occurrence 3.
        assert_eq!(index.entries.len(), 1);
        assert_eq!(index.entries[&key("a")].state.pending().unwrap().0, 3);
        assert_eq!(index.next_wake(), Some(due + TimeDelta::seconds(120)));
    }

    #[test]
    fn live_firings_are_delivered_and_events_are_folded_once() {
        let (registry, mut log, mut index) = (registry(), Log::default(), Index::default());
        let due = t(DUE);
        let scheduled = log.timer("a", scheduled(due, Some(60)));
        assert!(index.observe(&scheduled, true, &registry).is_none());
        assert_eq!(index.next_wake(), Some(due));
        let f1 = log.timer("a", fired(1, due, Some(60)));
        let delivery = index.observe(&f1, true, &registry).expect("a delivery");
        assert_eq!(delivery.occurrence, 1);
        assert_eq!(delivery.fired_event, f1.id.as_uuid());
        assert_eq!(delivery.correlation, scheduled.correlation_id);
        assert_eq!(delivery.deliver.name, "append_note");
        // The same event again (an overlapping read) changes nothing.
        assert!(index.observe(&f1, true, &registry).is_none());
        assert_eq!(index.entries[&key("a")].state.fired, 1);
        assert_eq!(index.next_wake(), Some(due + TimeDelta::seconds(60)));
        // Owed until its delivery ends.
        assert_eq!(index.undelivered[&key("a")].fired_event, f1.id.as_uuid());
        index.done(
            Done::Delivery {
                fired_event: f1.id.as_uuid(),
            },
            &SchedulerConfig::default(),
        );
        assert!(index.undelivered.is_empty());
    }

    #[test]
    fn the_saved_index_restores_what_the_log_said_and_what_is_owed() {
        let (registry, mut log, mut index) = (registry(), Log::default(), Index::default());
        let due = t(DUE);
        let a0 = log.timer("a", scheduled(due, Some(60)));
        index.observe(&a0, true, &registry);
        let a1 = log.timer("a", fired(1, due, Some(60)));
        index.observe(&a1, true, &registry).expect("a delivery");
        let b0 = log.timer("b", scheduled(due + TimeDelta::seconds(5), None));
        index.observe(&b0, true, &registry);
        // Fire of b in flight: not part of what is saved.
        index.entries.get_mut(&key("b")).unwrap().in_flight = true;

        let text = serde_json::to_string(&index.to_saved()).unwrap();
        let restored = Index::restore(serde_json::from_str(&text).unwrap());
        assert_eq!(restored.to_saved(), index.to_saved());
        assert_eq!(restored.undelivered[&key("a")].fired_event, a1.id.as_uuid());
        assert_eq!(restored.by_fired[&a1.id.as_uuid()], key("a"));
        assert!(!restored.entries[&key("b")].in_flight);
        // Both are queued again: a at its occurrence 2, b at its due time.
        assert_eq!(restored.next_wake(), Some(due + TimeDelta::seconds(5)));
        assert_eq!(restored.queue.len(), 2);

        // The delivery's trace in the log settles what was owed.
        let mut restored = restored;
        let trace = log.caused_by(&a1, PRODUCER);
        assert!(restored.observe(&trace, true, &registry).is_none());
        assert!(restored.undelivered.is_empty());
    }

    #[test]
    fn a_settled_fire_waits_for_the_log_and_a_failed_one_is_retried_later() {
        let (registry, mut log, mut index) = (registry(), Log::default(), Index::default());
        let config = SchedulerConfig::default();
        let due = t(DUE);
        let e = log.timer("a", scheduled(due, Some(60)));
        index.observe(&e, true, &registry);
        // In flight: not queued.
        index.queue.clear();
        index.entries.get_mut(&key("a")).unwrap().queued = None;
        index.entries.get_mut(&key("a")).unwrap().in_flight = true;
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 1,
                outcome: FireOutcome::Settled,
            },
            &config,
        );
        assert_eq!(index.next_wake(), None, "waits for the log to show it");
        let f1 = log.timer("a", fired(1, due, Some(60)));
        index.observe(&f1, true, &registry);
        assert_eq!(index.next_wake(), Some(due + TimeDelta::seconds(60)));

        index.entries.get_mut(&key("a")).unwrap().in_flight = true;
        let before = Utc::now();
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 2,
                outcome: FireOutcome::Failed,
            },
            &config,
        );
        let retry = index.next_wake().unwrap();
        assert!(retry >= before + TimeDelta::milliseconds(100), "{retry}");
        assert_eq!(index.queue.len(), 1);

        // Cancelled while in flight: forgotten once the fire ends.
        index.entries.get_mut(&key("a")).unwrap().in_flight = true;
        let e = log.timer("a", TimerCancelled { reason: None });
        index.observe(&e, true, &registry);
        assert!(index.entries.contains_key(&key("a")));
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 2,
                outcome: FireOutcome::Settled,
            },
            &config,
        );
        assert!(index.entries.is_empty());
        assert!(index.queue.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(2, max), Duration::from_millis(200));
        assert_eq!(backoff(50, max), max);
    }

    #[test]
    fn dedupe_keys_name_tenant_timer_and_occurrence() {
        assert_eq!(fire_dedupe_key(&tenant(), "t", 3), "timer/acme/t/3");
        assert_eq!(
            delivery_dedupe_key(&tenant(), "t", 3),
            "timer-delivery/acme/t/3"
        );
        assert_eq!(delivered_event_id("k"), delivered_event_id("k"));
        assert_ne!(delivered_event_id("k"), delivered_event_id("k2"));
    }
}
