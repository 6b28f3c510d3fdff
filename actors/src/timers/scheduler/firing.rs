//! The firing half of the timer scheduler: the index of every active
//! timer's pending occurrence (folded from the log with the aggregate's own
//! `apply`, saved with the checkpoint), which entries are due at a given
//! time, what a finished fire means for its entry (settled, not yet due,
//! failed and retried later), and the `fire` command itself.
//!
//! The index reads no clock — the loop passes the time in, so tests move
//! it by hand — and touches the store only to load and save itself with
//! the checkpoint.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_events::timers::TimerFired;
use herald_events::{
    EventEnvelope, EventRegistry, Position, StreamId, StreamVersion, TenantId, TypedEvent,
};
use herald_store::EventStore;
use uuid::Uuid;

use super::delivery::PendingDelivery;
use super::{fire_dedupe_key, SchedulerConfig, Shared, CHECKPOINT, PRODUCER};
use crate::actor::CommandMeta;
use crate::aggregate::{Aggregate, DomainEvent, RefusalKind};
use crate::error::CommandError;
use crate::telemetry;
use crate::timers::{Timer, TimerCommand, TimerEvent, LATE_AFTER};

/// The shape of the saved index; a checkpoint of another shape is ignored
/// (the index is folded from the start of the log instead).
const SAVED_INDEX_VERSION: u32 = 1;

pub(super) type Key = (TenantId, String);

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

/// The pending occurrences, and the firings not known to be delivered.
#[derive(Default)]
pub(super) struct Index {
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
pub(super) mod tenant_text {
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

/// An occurrence that is due: what its `fire` needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Due {
    pub key: Key,
    pub occurrence: u64,
    pub due_at: DateTime<Utc>,
    /// The timer's correlation and its first event (the fire's causation).
    pub correlation: Uuid,
    pub origin: Uuid,
}

/// What a task ended with.
pub(super) enum Done {
    Fire {
        key: Key,
        occurrence: u64,
        outcome: FireOutcome,
    },
    /// The delivery of the firing `fired_event` ended (done, or given up).
    Delivery { fired_event: Uuid },
}

pub(super) enum FireOutcome {
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
    pub(super) fn observe(
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
    pub(super) async fn load(
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
    pub(super) async fn save(&self, store: &Arc<dyn EventStore>, position: Position) -> bool {
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

    pub(super) fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Active timers and countdowns.
    pub(super) fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Takes every entry due at `now` out of the queue, marked in flight:
    /// the fires to start.
    pub(super) fn due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut due = Vec::new();
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
            due.push(Due {
                key,
                occurrence,
                due_at,
                correlation: entry.correlation,
                origin: entry.origin,
            });
        }
        due
    }

    /// A task ended at `now`.
    pub(super) fn done(&mut self, done: Done, now: DateTime<Utc>, config: &SchedulerConfig) {
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
                let at = later(now, config.not_due_retry);
                entry.retry = Some((occurrence, at, 0));
            }
            FireOutcome::Failed => {
                let failures = match entry.retry {
                    Some((retried, _, failures)) if retried == occurrence => failures + 1,
                    _ => 1,
                };
                let at = later(now, config.backoff().delay(failures));
                entry.retry = Some((occurrence, at, failures));
            }
        }
        self.requeue(&key);
    }

    /// The firings whose delivery is not known to have happened.
    pub(super) fn owed(&self) -> Vec<PendingDelivery> {
        self.undelivered.values().cloned().collect()
    }
}

/// Fires one occurrence through the timers group.
pub(super) async fn fire(shared: Arc<Shared>, due: Due) -> Done {
    let Due {
        key,
        occurrence,
        due_at,
        correlation,
        origin,
    } = due;
    let outcome = {
        let _permit = shared.fire_permits.acquire().await;
        let (tenant, id) = (&key.0, key.1.as_str());
        let meta = CommandMeta {
            correlation_id: Some(correlation),
            causation_id: Some(origin),
            dedupe_key: Some(fire_dedupe_key(tenant, id, occurrence)),
            producer: Some(PRODUCER.to_owned()),
            idempotency: None,
            decided_by_owner: false,
        };
        let command = TimerCommand::Fire { occurrence, due_at };
        match shared.timers.execute(tenant, id, command, meta).await {
            Ok(executed) => {
                if let (false, Some(event)) = (executed.duplicate, executed.events.first()) {
                    if event.event_type.ends_with(".timer_fired") {
                        let late = fired_late(&shared, tenant, id, event.stream_version)
                            .await
                            .unwrap_or_else(|| shared.clock.now() - due_at > LATE_AFTER);
                        telemetry::timer_fired(late);
                        tracing::debug!(tenant = %tenant, timer = id, occurrence, late, "Timer fired.");
                    } else {
                        telemetry::countdown_expired();
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

/// The time `after` past `now`.
fn later(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::days(365));
    now.checked_add_signed(after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use herald_events::timers::{TimerCancelled, TimerScheduled};
    use herald_events::{ChainHash, Domain, NewEvent};
    use serde_json::json;

    use herald_store::{Clock, ManualClock};

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
            t(DUE),
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
        let clock = ManualClock::new(due);
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
            clock.now(),
            &config,
        );
        assert_eq!(index.next_wake(), None, "waits for the log to show it");
        let f1 = log.timer("a", fired(1, due, Some(60)));
        index.observe(&f1, true, &registry);
        assert_eq!(index.next_wake(), Some(due + TimeDelta::seconds(60)));

        index.entries.get_mut(&key("a")).unwrap().in_flight = true;
        let before = clock.now();
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 2,
                outcome: FireOutcome::Failed,
            },
            clock.now(),
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
            clock.now(),
            &config,
        );
        assert!(index.entries.is_empty());
        assert!(index.queue.is_empty());
    }

    #[test]
    fn an_occurrence_is_due_when_the_clock_reaches_it_and_a_failed_fire_after_its_backoff() {
        let (registry, mut log, mut index) = (registry(), Log::default(), Index::default());
        let config = SchedulerConfig::default();
        let due = t(DUE);
        let clock = ManualClock::new(due - TimeDelta::seconds(10));
        let e = log.timer("a", scheduled(due, Some(60)));
        index.observe(&e, true, &registry);
        assert!(index.due(clock.now()).is_empty(), "ten seconds early");

        clock.advance(Duration::from_secs(10));
        let fires = index.due(clock.now());
        assert_eq!(fires.len(), 1);
        assert_eq!((fires[0].occurrence, fires[0].due_at), (1, due));
        assert_eq!(fires[0].key, key("a"));
        assert_eq!(fires[0].correlation, e.correlation_id);
        assert_eq!(fires[0].origin, e.id.as_uuid());
        assert!(
            index.due(clock.now()).is_empty(),
            "in flight: not due twice"
        );

        // The fire fails twice in a row: 100 ms, then 200 ms later.
        for wait in [100, 200] {
            index.done(
                Done::Fire {
                    key: key("a"),
                    occurrence: 1,
                    outcome: FireOutcome::Failed,
                },
                clock.now(),
                &config,
            );
            clock.advance(Duration::from_millis(wait - 1));
            assert!(index.due(clock.now()).is_empty(), "{wait} ms backoff");
            clock.advance(Duration::from_millis(1));
            assert_eq!(index.due(clock.now()).len(), 1, "after {wait} ms");
        }

        // The aggregate's clock says not yet: tried again `not_due_retry`
        // later.
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 1,
                outcome: FireOutcome::NotDue,
            },
            clock.now(),
            &config,
        );
        assert!(index.due(clock.now()).is_empty());
        clock.advance(config.not_due_retry);
        assert_eq!(index.due(clock.now()).len(), 1);

        // Settled, and the log shows it: the next occurrence is a minute on.
        index.done(
            Done::Fire {
                key: key("a"),
                occurrence: 1,
                outcome: FireOutcome::Settled,
            },
            clock.now(),
            &config,
        );
        let f1 = log.timer("a", fired(1, due, Some(60)));
        index.observe(&f1, true, &registry);
        clock.advance(Duration::from_secs(59));
        assert!(index.due(clock.now()).is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(index.due(clock.now())[0].occurrence, 2);
    }
}
