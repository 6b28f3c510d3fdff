//! One actix actor per stream: it holds the aggregate's state, runs one
//! command at a time through decide → append → apply, and stops itself when
//! idle or when its group asks it to (passivation).
//!
//! State is rehydrated on the first command from the latest snapshot (when
//! its state version is the aggregate's) plus the events after it. An append
//! refused because another process wrote first (wrong expected version) is
//! followed by reading what was written and deciding again, a bounded
//! number of times. Commands sent on behalf of a reaction carry a dedupe
//! key: their events get ids derived from it, so a redelivered trigger
//! appends nothing twice (the store is idempotent on event ids, atomically
//! with the append itself).
//!
//! A command with a client's idempotency key ([`Idempotency`]) is claimed in
//! the store's idempotency records before it runs, and its events get ids
//! derived from the claim. A repeat of a command that was answered gets the
//! recorded answer, marked as a duplicate, without deciding again (the
//! state has moved on, so deciding again could refuse what was done); a
//! repeat of one whose process died before recording its answer finds its
//! events in the log by their ids; the key used for another command or body
//! is refused. A refused command keeps no record, so the key may be used
//! again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use herald_events::{EventId, EventRegistry, NewEvent, StreamId, StreamVersion, TenantId};
use herald_store::{Claimed, EventStore, ExpectedVersion, IdempotencyClaim, Snapshot, StoreError};
use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::{Aggregate, CommandContext, DomainEvent};
use crate::error::CommandError;
use crate::group::GroupConfig;
use crate::telemetry;

/// Events read per page while rehydrating.
const READ_PAGE: usize = 1000;

/// Who sent a command and why: flows into the events it causes.
#[derive(Debug, Clone, Default)]
pub struct CommandMeta {
    /// The correlation the caused events join (their own id when absent).
    pub correlation_id: Option<Uuid>,
    /// The event or request that caused the command.
    pub causation_id: Option<Uuid>,
    /// Set by reactions: the same key always gives the same event ids, so a
    /// repeat of the command appends nothing.
    pub dedupe_key: Option<String>,
    /// Recorded as the events' producer (`herald-actors` when absent).
    pub producer: Option<String>,
    /// A client's idempotency key (HTTP `Idempotency-Key`): a repeat gets
    /// the first answer and appends nothing.
    pub idempotency: Option<Idempotency>,
    /// Sent by the process that owns the aggregate's partition (placement
    /// on a shared broker): the actor decides on the state it holds, without
    /// first reading what other processes appended. Only a hand-over lets
    /// another process append meanwhile, and the store's version check
    /// refuses a decision on a stale state, which is then decided again.
    pub decided_by_owner: bool,
}

/// A client's idempotency key for a command, scoped to the tenant and the
/// aggregate, and what it is used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// The command and its body, as [`herald_store::idempotency::fingerprint`]
    /// hashes them: the same key with another fingerprint is refused.
    pub fingerprint: String,
}

/// Event ids looked up at a time when finding a keyed command's events.
const ID_PAGE: usize = 16;

/// The answer to a command that was done (or changed nothing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Executed {
    pub stream: String,
    /// The stream's version after the command.
    pub stream_version: u64,
    /// True when the command's events were already stored (a repeat).
    pub duplicate: bool,
    pub events: Vec<ExecutedEvent>,
}

/// One event a command caused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecutedEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub position: u64,
    pub stream_version: u64,
}

/// Runs a command.
#[derive(Debug)]
pub struct Execute<A: Aggregate> {
    pub command: A::Command,
    pub meta: CommandMeta,
}

impl<A: Aggregate> Message for Execute<A> {
    type Result = Result<Executed, CommandError>;
}

/// Answers the current state and version.
#[derive(Debug)]
pub struct GetState<A>(std::marker::PhantomData<A>);

impl<A> Default for GetState<A> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<A: Aggregate> Message for GetState<A> {
    type Result = Result<(A, u64), CommandError>;
}

/// Asks the actor to stop once the messages before this one are done.
#[derive(Debug)]
pub struct Passivate;

impl Message for Passivate {
    type Result = ();
}

/// The state as far as it has been read.
#[derive(Debug, Clone)]
struct Loaded<A> {
    state: A,
    version: u64,
    /// The version of the last snapshot saved or loaded.
    snapshot_version: u64,
}

/// What every actor of a group shares.
pub(crate) struct Shared {
    pub store: Arc<dyn EventStore>,
    pub registry: EventRegistry,
    pub config: GroupConfig,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store.backend())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Called when an actor stops, so the group forgets it.
pub(crate) type OnStop = Arc<dyn Fn(u64) + Send + Sync>;

/// The actor of one stream.
pub struct AggregateActor<A: Aggregate> {
    id: u64,
    tenant: TenantId,
    stream: StreamId,
    shared: Arc<Shared>,
    /// None until rehydrated, and while a command holds the state.
    loaded: Option<Loaded<A>>,
    last_active: Instant,
    pending: Arc<AtomicUsize>,
    on_stop: OnStop,
}

impl<A: Aggregate> std::fmt::Debug for AggregateActor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateActor")
            .field("stream", &self.stream)
            .field("version", &self.loaded.as_ref().map(|l| l.version))
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> AggregateActor<A> {
    pub(crate) fn new(
        id: u64,
        tenant: TenantId,
        stream: StreamId,
        shared: Arc<Shared>,
        pending: Arc<AtomicUsize>,
        on_stop: OnStop,
    ) -> Self {
        Self {
            id,
            tenant,
            stream,
            shared,
            loaded: None,
            last_active: Instant::now(),
            pending,
            on_stop,
        }
    }
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The group bounds what waits for this actor; the mailbox only
        // needs to hold that much.
        ctx.set_mailbox_capacity(self.shared.config.mailbox + 1);
        let idle = self.shared.config.idle_timeout;
        let check = (idle / 2).max(Duration::from_millis(10));
        ctx.run_interval(check, move |actor, ctx| {
            if actor.last_active.elapsed() >= idle
                && actor.pending.load(Ordering::Acquire) == 0
                && actor.loaded.is_some()
            {
                ctx.stop();
            }
        });
        telemetry::actor_started(A::DOMAIN);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        telemetry::actor_stopped(A::DOMAIN);
        (self.on_stop)(self.id);
    }
}

impl<A: Aggregate> Handler<Execute<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<Executed, CommandError>>;

    fn handle(&mut self, msg: Execute<A>, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let run = Run {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            shared: Arc::clone(&self.shared),
        };
        // Only this future touches the state until it is done (the response
        // is atomic), so it takes the state and gives it back.
        let loaded = self.loaded.take();
        // Entered only while the command's future is polled: a guard held
        // across its awaits would leave the span current on the arbiter's
        // thread while other actors run, so every later command's span would
        // take the one before as its parent, a chain that grows with each
        // command until closing it overflows the stack.
        let span = tracing::info_span!(parent: None, "command", domain = A::DOMAIN, stream = %self.stream, tenant = %self.tenant);
        AtomicResponse::new(Box::pin(
            async move { run.execute(loaded, msg).await }
                .instrument(span)
                .into_actor(self)
                .map(|(loaded, result), actor, _ctx| {
                    actor.loaded = loaded;
                    actor.last_active = Instant::now();
                    result
                }),
        ))
    }
}

impl<A: Aggregate> Handler<GetState<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<(A, u64), CommandError>>;

    fn handle(&mut self, _msg: GetState<A>, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let run = Run {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            shared: Arc::clone(&self.shared),
        };
        let loaded = self.loaded.take();
        AtomicResponse::new(Box::pin(
            async move {
                // Another process may have written: read up to the head.
                let loaded = match loaded {
                    Some(loaded) => run.catch_up(loaded).await,
                    None => run.rehydrate::<A>().await,
                };
                match loaded {
                    Ok(loaded) => {
                        let answer = Ok((loaded.state.clone(), loaded.version));
                        (Some(loaded), answer)
                    }
                    Err(e) => (None, Err(e)),
                }
            }
            .into_actor(self)
            .map(|(loaded, result), actor, _ctx| {
                actor.loaded = loaded;
                result
            }),
        ))
    }
}

impl<A: Aggregate> Handler<Passivate> for AggregateActor<A> {
    type Result = ();

    fn handle(&mut self, _msg: Passivate, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The I/O of one command, outside the actor so it can be awaited.
struct Run {
    tenant: TenantId,
    stream: StreamId,
    shared: Arc<Shared>,
}

impl Run {
    async fn execute<A: Aggregate>(
        &self,
        loaded: Option<Loaded<A>>,
        msg: Execute<A>,
    ) -> (Option<Loaded<A>>, Result<Executed, CommandError>) {
        let Some(idempotency) = &msg.meta.idempotency else {
            return self.decide::<A>(loaded, &msg, None, false).await;
        };
        let claim = IdempotencyClaim {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            key: idempotency.key.clone(),
            fingerprint: idempotency.fingerprint.clone(),
        };
        let unsettled = match self.shared.store.claim_idempotency_key(&claim).await {
            Ok(Claimed::New) => false,
            Ok(Claimed::Unsettled) => true,
            Ok(Claimed::Answered(answer)) => {
                let answer = serde_json::from_value::<Executed>(answer)
                    .map(|first| {
                        telemetry::command(A::DOMAIN, "duplicate");
                        Executed {
                            duplicate: true,
                            ..first
                        }
                    })
                    .map_err(|source| CommandError::RecordedAnswer {
                        key: claim.key.clone(),
                        source,
                    });
                return (loaded, answer);
            }
            Ok(Claimed::Conflict { first_used_at }) => {
                return (
                    loaded,
                    Err(CommandError::IdempotencyKeyReused {
                        key: claim.key,
                        first_used_at,
                    }),
                )
            }
            Err(e) => return (loaded, Err(CommandError::Store(e))),
        };
        let (loaded, result) = self
            .decide::<A>(loaded, &msg, Some(&claim), unsettled)
            .await;
        let store = &self.shared.store;
        match &result {
            Ok(executed) => {
                // Recorded as first given, whichever attempt gave it.
                let first = Executed {
                    duplicate: false,
                    ..executed.clone()
                };
                let recorded = match serde_json::to_value(&first) {
                    Ok(answer) => store.complete_idempotency_key(&claim, &answer).await,
                    Err(e) => Err(StoreError::Backend {
                        backend: store.backend(),
                        detail: e.to_string(),
                    }),
                };
                if let Err(e) = recorded {
                    // A repeat still finds the events by their ids; only a
                    // command that changed nothing is decided again.
                    tracing::warn!(domain = A::DOMAIN, stream = %self.stream, key = %claim.key, error = %e, "Answer of a keyed command not recorded; a repeat finds its events in the log.");
                }
            }
            Err(CommandError::Refused(_)) | Err(CommandError::Contended { .. }) => {
                if let Err(e) = store.release_idempotency_key(&claim).await {
                    tracing::warn!(domain = A::DOMAIN, stream = %self.stream, key = %claim.key, error = %e, "Claim of a refused command not released.");
                }
            }
            // What happened is unknown: a repeat asks the log.
            Err(_) => {}
        }
        (loaded, result)
    }

    /// The events of an earlier attempt of the claimed command, found in the
    /// log by the ids derived from the claim (the first `n` of them, as they
    /// were appended together); `None` when it appended nothing.
    async fn committed(&self, claim: &IdempotencyClaim) -> Result<Option<Executed>, CommandError> {
        let mut found = Vec::new();
        loop {
            let from = found.len();
            let ids: Vec<EventId> = (from..from + ID_PAGE).map(|i| claim.event_id(i)).collect();
            let events = self
                .shared
                .store
                .events_by_id(&self.tenant, &ids)
                .await
                .map_err(CommandError::Store)?;
            let mut by_id: std::collections::HashMap<EventId, _> =
                events.into_iter().map(|e| (e.id, e)).collect();
            for id in &ids {
                match by_id.remove(id) {
                    Some(event) if event.stream == self.stream => found.push(event),
                    _ => break,
                }
            }
            if found.len() < from + ID_PAGE {
                break;
            }
        }
        let Some(last) = found.last() else {
            return Ok(None);
        };
        Ok(Some(Executed {
            stream: self.stream.to_string(),
            stream_version: last.stream_version.get(),
            duplicate: true,
            events: found
                .iter()
                .map(|e| ExecutedEvent {
                    id: e.id.as_uuid(),
                    event_type: e.event_type.to_string(),
                    position: e.position.get(),
                    stream_version: e.stream_version.get(),
                })
                .collect(),
        }))
    }

    /// Decide → append, again after a conflict. With a claim whose earlier
    /// attempt may have taken effect (`unsettled`), or after a conflict, the
    /// log is asked first whether the claimed command's events are there.
    async fn decide<A: Aggregate>(
        &self,
        loaded: Option<Loaded<A>>,
        msg: &Execute<A>,
        claim: Option<&IdempotencyClaim>,
        unsettled: bool,
    ) -> (Option<Loaded<A>>, Result<Executed, CommandError>) {
        let mut loaded = match loaded {
            // Another process may have done the earlier attempt, or (on a
            // shared store) appended since this actor last looked.
            Some(loaded)
                if unsettled
                    || (self.shared.config.catch_up_before_deciding
                        && !msg.meta.decided_by_owner) =>
            {
                match self.catch_up(loaded).await {
                    Ok(loaded) => loaded,
                    Err(e) => return (None, Err(e)),
                }
            }
            Some(loaded) => loaded,
            None => match self.rehydrate::<A>().await {
                Ok(loaded) => loaded,
                Err(e) => return (None, Err(e)),
            },
        };
        let mut attempt = 0;
        let mut ask_the_log = unsettled;
        loop {
            attempt += 1;
            if let (Some(claim), true) = (claim, ask_the_log) {
                match self.committed(claim).await {
                    Ok(Some(executed)) => {
                        telemetry::command(A::DOMAIN, "duplicate");
                        return (Some(loaded), Ok(executed));
                    }
                    Ok(None) => {}
                    Err(e) => return (Some(loaded), Err(e)),
                }
            }
            let ctx = CommandContext {
                tenant: self.tenant.clone(),
                stream: self.stream.clone(),
                version: loaded.version,
                now: Utc::now(),
            };
            let events = match loaded.state.decide(msg.command.clone(), &ctx) {
                Ok(events) => events,
                Err(refusal) => {
                    telemetry::command(A::DOMAIN, "refused");
                    return (Some(loaded), Err(CommandError::Refused(refusal)));
                }
            };
            if events.is_empty() {
                telemetry::command(A::DOMAIN, "unchanged");
                let executed = Executed {
                    stream: self.stream.to_string(),
                    stream_version: loaded.version,
                    duplicate: false,
                    events: Vec::new(),
                };
                return (Some(loaded), Ok(executed));
            }
            let mut new_events = match self.new_events(&events, &msg.meta, claim) {
                Ok(new_events) => new_events,
                Err(refusal) => return (Some(loaded), Err(CommandError::Refused(refusal))),
            };
            // Personal fields are sealed before the append so the state
            // (and its snapshots) keep what is stored, never plaintext.
            let events = match self.sealed::<A>(events, &mut new_events).await {
                Ok(events) => events,
                Err(e) => return (Some(loaded), Err(e)),
            };
            let expected = ExpectedVersion::Exact(StreamVersion(loaded.version));
            match self
                .shared
                .store
                .append(&self.tenant, &self.stream, expected, new_events)
                .await
            {
                Ok(outcome) => {
                    if outcome.duplicate {
                        // The same command took effect before: its events
                        // are in the log, maybe with others after them.
                        telemetry::command(A::DOMAIN, "duplicate");
                        let executed = executed(&self.stream, &events, &outcome, true);
                        return match self.catch_up(loaded).await {
                            Ok(loaded) => (Some(loaded), Ok(executed)),
                            Err(e) => (None, Err(e)),
                        };
                    }
                    for event in &events {
                        loaded.state.apply(event);
                    }
                    loaded.version = outcome.stream_version.get();
                    telemetry::command(A::DOMAIN, "done");
                    self.maybe_snapshot(&mut loaded).await;
                    let executed = executed(&self.stream, &events, &outcome, false);
                    return (Some(loaded), Ok(executed));
                }
                Err(StoreError::WrongExpectedVersion { .. })
                | Err(StoreError::DuplicateEventId { .. })
                    if attempt < self.shared.config.conflict_retries =>
                {
                    // Another writer got there first (or, for a repeated
                    // reaction, part of it did): read it and decide again.
                    telemetry::command_conflict(A::DOMAIN);
                    loaded = match self.catch_up(loaded).await {
                        Ok(loaded) => loaded,
                        Err(e) => return (None, Err(e)),
                    };
                    // The writer may have been another attempt of this command.
                    ask_the_log = true;
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    return (None, Err(CommandError::Contended { attempts: attempt }));
                }
                Err(e) => {
                    // What the store holds now is unknown: read it again next time.
                    return (None, Err(CommandError::Store(e)));
                }
            }
        }
    }

    /// Runs the events through the store's sealer and, where it sealed
    /// personal fields, takes the aggregate's events from what will be
    /// stored.
    async fn sealed<A: Aggregate>(
        &self,
        events: Vec<A::Event>,
        new_events: &mut [NewEvent],
    ) -> Result<Vec<A::Event>, CommandError> {
        let personal: Vec<bool> = new_events
            .iter()
            .map(|n| {
                !self
                    .shared
                    .registry
                    .personal_fields(&self.tenant, &n.event_type, n.version)
                    .is_empty()
            })
            .collect();
        if !personal.contains(&true) {
            return Ok(events);
        }
        self.shared
            .store
            .seal(&self.tenant, new_events)
            .await
            .map_err(CommandError::Store)?;
        events
            .into_iter()
            .zip(new_events.iter())
            .zip(personal)
            .map(|((event, new), personal)| {
                if personal {
                    A::Event::from_new_event(new).map_err(CommandError::Decode)
                } else {
                    Ok(event)
                }
            })
            .collect()
    }

    /// The store's events for what `decide` returned, each checked against
    /// its schema (a command whose fields break it is refused as invalid).
    fn new_events<E: DomainEvent>(
        &self,
        events: &[E],
        meta: &CommandMeta,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Vec<NewEvent>, crate::aggregate::Refusal> {
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let mut new = event.to_new_event();
                if let Some(claim) = claim {
                    new = new.with_id(claim.event_id(i));
                } else if let Some(key) = &meta.dedupe_key {
                    new = new.with_id(EventId(dedupe_id(key, &self.stream, i)));
                }
                let correlation = meta.correlation_id.unwrap_or(new.correlation_id);
                let causation = meta.causation_id.unwrap_or(new.causation_id);
                new = new.correlation(correlation, causation);
                let new = new.producer(meta.producer.as_deref().unwrap_or("herald-actors"));
                self.shared
                    .registry
                    .validate(&new.event_type, new.version, &new.payload)
                    .map_err(|e| crate::aggregate::Refusal::invalid(e.to_string()))?;
                Ok(new)
            })
            .collect()
    }

    /// Snapshot when the stream crossed a boundary of `snapshot_every`
    /// events since the last snapshot this actor saved or loaded. Processes
    /// that serve the same aggregate each cross it: the store keeps the
    /// first save at a boundary and refuses the others, so each boundary is
    /// written once. A failure only costs a longer rehydration later.
    async fn maybe_snapshot<A: Aggregate>(&self, loaded: &mut Loaded<A>) {
        let every = self.shared.config.snapshot_every;
        if every == 0 {
            return;
        }
        let boundary = loaded.version / every * every;
        if boundary == 0 || boundary <= loaded.snapshot_version {
            return;
        }
        let state = match serde_json::to_value(&loaded.state) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(domain = A::DOMAIN, stream = %self.stream, error = %e, "Aggregate state cannot be serialized; no snapshot.");
                return;
            }
        };
        let snapshot = Snapshot {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            stream_version: StreamVersion(loaded.version),
            state_version: A::STATE_VERSION,
            state,
            taken_at: Utc::now(),
        };
        match self
            .shared
            .store
            .save_snapshot_past(&snapshot, StreamVersion(boundary))
            .await
        {
            Ok(written) => {
                loaded.snapshot_version = loaded.version;
                if written {
                    telemetry::snapshot_saved(A::DOMAIN);
                } else {
                    telemetry::snapshot_already_saved(A::DOMAIN);
                }
            }
            Err(e) => {
                tracing::warn!(domain = A::DOMAIN, stream = %self.stream, version = loaded.version, error = %e, "Snapshot not saved.")
            }
        }
    }

    /// The state from the latest usable snapshot and the events after it.
    async fn rehydrate<A: Aggregate>(&self) -> Result<Loaded<A>, CommandError> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
            snapshot_version: 0,
        };
        match self
            .shared
            .store
            .load_snapshot(&self.tenant, &self.stream)
            .await
        {
            Ok(Some(snapshot)) if snapshot.state_version == A::STATE_VERSION => {
                match serde_json::from_value::<A>(snapshot.state) {
                    Ok(state) => {
                        loaded.state = state;
                        loaded.version = snapshot.stream_version.get();
                        loaded.snapshot_version = loaded.version;
                    }
                    Err(e) => {
                        tracing::warn!(domain = A::DOMAIN, stream = %self.stream, error = %e, "Snapshot unreadable; rebuilding from events.")
                    }
                }
            }
            // Another state version: its shape or meaning changed, so the
            // events are the only truth.
            Ok(_) => {}
            Err(e) => return Err(CommandError::Store(e)),
        }
        self.catch_up(loaded).await
    }

    /// Applies the stream's events after `loaded.version`.
    async fn catch_up<A: Aggregate>(
        &self,
        mut loaded: Loaded<A>,
    ) -> Result<Loaded<A>, CommandError> {
        loop {
            let page = self
                .shared
                .store
                .read_stream(
                    &self.tenant,
                    &self.stream,
                    StreamVersion(loaded.version + 1),
                    READ_PAGE,
                )
                .await
                .map_err(CommandError::Store)?;
            let full = page.len() == READ_PAGE;
            for envelope in &page {
                let event = A::Event::from_envelope(envelope).map_err(CommandError::Decode)?;
                loaded.state.apply(&event);
                loaded.version = envelope.stream_version.get();
            }
            if !full {
                return Ok(loaded);
            }
        }
    }
}

/// The id of the `index`-th event of a deduplicated command: callers that
/// must know whether a command with a dedupe key took effect before (the
/// automations engine, after a crash) look for this id in the stream.
pub fn dedupe_id(key: &str, stream: &StreamId, index: usize) -> Uuid {
    // A fixed namespace: the same key, stream and index give the same id.
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d61_6374_6f72_732d_6964);
    Uuid::new_v5(&NAMESPACE, format!("{key}\n{stream}\n{index}").as_bytes())
}

fn executed<E: DomainEvent>(
    stream: &StreamId,
    events: &[E],
    outcome: &herald_store::AppendOutcome,
    duplicate: bool,
) -> Executed {
    Executed {
        stream: stream.to_string(),
        stream_version: outcome.stream_version.get(),
        duplicate,
        events: events
            .iter()
            .zip(&outcome.events)
            .map(|(event, appended)| ExecutedEvent {
                id: appended.id.as_uuid(),
                event_type: format!("{}.{}", stream.domain(), event.name()),
                position: appended.position.get(),
                stream_version: appended.stream_version.get(),
            })
            .collect(),
    }
}
