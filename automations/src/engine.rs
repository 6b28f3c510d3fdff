//! The engine: one log follower, in one process at a time (a lease, like
//! the relay's), that runs every tenant's automations on the events of the
//! log in position order.
//!
//! - **Definitions in log order.** The engine folds each tenant's
//!   `automations/definitions` stream as it meets its events, so an
//!   automation applied at position P runs on the events after P, on
//!   whichever process leads — and a dry run over history follows the same
//!   rule.
//! - **Exactly once in effect.** Every command and event an automation
//!   causes carries a dedupe key made of the automation, its version, the
//!   triggering event and the action's place ([`plan::dedupe_key`]):
//!   commands get event ids derived from it, appended events get it as
//!   their id. The checkpoint is saved after the effects, so after a crash
//!   the engine meets some events again and their effects are found
//!   already stored. A command its aggregate now refuses is checked for an
//!   earlier effect (its derived event id in the stream) before it counts
//!   as refused, so a repeat never takes a fallback the first run did not.
//! - **Absence** starts a durable timer at the start event (`timers/
//!   automation.<name>.<event id>`, due at the event's recording time plus
//!   the wait), which appends `automations.absence_elapsed` to the
//!   automation's stream. When the engine meets that event it searches the
//!   log between the start event and it for a matching event with the same
//!   correlation value; only when there is none do the actions run (with
//!   the start event as `event`).
//! - **Schedules** are a recurring durable timer per enabled version that
//!   appends `automations.schedule_due`; each firing's event is the
//!   trigger.
//! - **Failures.** A store or runtime failure is retried with a backoff
//!   (the engine waits: order is kept). An action that can never succeed
//!   (refused without a fallback, invalid, a template that does not
//!   evaluate) is recorded as `automations.action_failed` in the
//!   automation's stream — its dead letter — and the engine moves on.
//!
//! Counters per automation (matched, acted, failed) are kept with the
//! checkpoint, so every process can show them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use herald_actors::{dedupe_id, CommandError, CommandMeta, Domains, RefusalKind};
use herald_events::automations::{
    AbsenceElapsed, ActionFailed, DefinitionChange, EmailRequested, ScheduleDue, WebhookRequested,
    DEFINITIONS_STREAM_ID, DOMAIN,
};
use herald_events::{
    Backoff, EventEnvelope, EventId, EventRegistry, EventType, NewEvent, Position, SchemaVersion,
    StreamId, StreamVersion, TenantId, TypedEvent,
};
use herald_store::{EventStore, ExpectedVersion, SearchQuery, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::catalog::{Catalog, Entry, Transition};
use crate::definition::{Cadence, Compiled, CompiledTrigger};
use crate::expr::Scope;
use crate::plan::{
    self, automation_view, event_view, Decision, PlannedAction, Rendered, TriggerRef,
};

/// 1 while this process's engine is the active one, else 0.
pub const ENGINE_ACTIVE: &str = "herald_automations_engine_active";
/// The last log position the active engine handled.
pub const ENGINE_POSITION: &str = "herald_automations_position";
/// Triggers that matched, per automation (all tenants).
pub const MATCHED_TOTAL: &str = "herald_automation_matched_total";
/// Triggers whose condition held and whose actions ran.
pub const ACTED_TOTAL: &str = "herald_automation_acted_total";
/// Actions that failed for good.
pub const FAILED_TOTAL: &str = "herald_automation_failed_total";

/// The lease and checkpoint name of the engine.
pub const ENGINE: &str = "automations";

/// `event` with its personal fields in plaintext, when it has any sealed.
pub async fn revealed(
    privacy: &herald_privacy::Privacy,
    event: &EventEnvelope,
) -> Result<Option<EventEnvelope>, herald_privacy::PrivacyError> {
    // Most events hold no personal field: no copy, no walk over text.
    if !herald_privacy::holds_token(&event.payload) {
        return Ok(None);
    }
    let mut payload = event.payload.clone();
    privacy
        .reveal_value(
            &event.tenant,
            &mut payload,
            herald_privacy::Access::Plaintext,
        )
        .await?;
    let mut event = event.clone();
    event.payload = payload;
    Ok(Some(event))
}

/// The producer of what automations cause: `automation:<name>`.
pub fn producer(name: &str) -> String {
    format!("automation:{name}")
}

/// Reads aggregates' state as of a log position (the lookups of `with`).
#[async_trait]
pub trait States: Send + Sync {
    /// The state of `domain/id` of `tenant` after the events at or before
    /// `position`; `None` when it had no events yet.
    async fn state_at(
        &self,
        tenant: &TenantId,
        domain: &str,
        id: &str,
        position: u64,
    ) -> Result<Option<Value>, LookupError>;
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// It can never succeed (an unknown domain, an id that names no
    /// stream).
    #[error("{0}")]
    Invalid(String),
    /// Try again later.
    #[error("{0}")]
    Transient(String),
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub lease_ttl: Duration,
    /// How often a stand-by tries the lease, and the leader renews it.
    pub standby_poll: Duration,
    /// Save the checkpoint after this many events …
    pub checkpoint_every: u64,
    /// … or this long after the last save, whichever comes first.
    pub checkpoint_interval: Duration,
    pub backoff: Backoff,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(10),
            standby_poll: Duration::from_secs(1),
            checkpoint_every: 500,
            checkpoint_interval: Duration::from_millis(250),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// What happened to one automation so far, as counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationStats {
    /// Triggers that matched (for absence: waits that ended without the
    /// awaited event).
    pub matched: u64,
    /// Triggers whose condition held and whose actions ran.
    pub acted: u64,
    /// Actions that failed for good (each is an `action_failed` event).
    pub failed: u64,
    /// Absence waits that ended because the awaited event came.
    #[serde(default)]
    pub cancelled: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The counters of every automation, by tenant and name; saved with the
/// checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {
    pub stats: BTreeMap<String, BTreeMap<String, AutomationStats>>,
}

impl EngineState {
    /// The counters of one automation.
    pub fn of(&self, tenant: &TenantId, name: &str) -> AutomationStats {
        self.stats
            .get(tenant.as_str())
            .and_then(|t| t.get(name))
            .cloned()
            .unwrap_or_default()
    }

    /// Called for every automation an event triggers: no allocation once
    /// the automation is counted.
    fn entry(&mut self, tenant: &TenantId, name: &str) -> &mut AutomationStats {
        if !self.stats.contains_key(tenant.as_str()) {
            self.stats.insert(tenant.to_string(), BTreeMap::new());
        }
        let of_tenant = self.stats.get_mut(tenant.as_str()).expect("inserted above");
        if !of_tenant.contains_key(name) {
            of_tenant.insert(name.to_owned(), AutomationStats::default());
        }
        of_tenant.get_mut(name).expect("inserted above")
    }

    /// Publishes the counters on `/metrics` (per automation, all tenants).
    fn publish(&self) {
        let mut totals: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for of_tenant in self.stats.values() {
            for (name, s) in of_tenant {
                let t = totals.entry(name).or_default();
                t.0 += s.matched;
                t.1 += s.acted;
                t.2 += s.failed;
            }
        }
        for (name, (matched, acted, failed)) in totals {
            metrics::counter!(MATCHED_TOTAL, "automation" => name.to_owned()).absolute(matched);
            metrics::counter!(ACTED_TOTAL, "automation" => name.to_owned()).absolute(acted);
            metrics::counter!(FAILED_TOTAL, "automation" => name.to_owned()).absolute(failed);
        }
    }
}

/// Reads the engine's saved counters and position (any process may).
pub async fn saved_state(store: &dyn EventStore) -> Result<(Position, EngineState), StoreError> {
    Ok(match store.checkpoint_state(ENGINE).await? {
        Some((position, Some(text))) => (position, serde_json::from_str(&text).unwrap_or_default()),
        Some((position, None)) => (position, EngineState::default()),
        None => (Position::START, EngineState::default()),
    })
}

/// The engine.
pub struct Engine {
    store: Arc<dyn EventStore>,
    domains: Domains,
    states: Arc<dyn States>,
    registry: EventRegistry,
    config: EngineConfig,
    holder: String,
    /// Where the leader is, for `/metrics` and tests.
    position: Arc<Mutex<Position>>,
    /// Reveals personal fields before an event is matched and evaluated:
    /// automations are Herald's own and work on plaintext.
    privacy: Option<Arc<herald_privacy::Privacy>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("holder", &self.holder)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a term ended.
enum TermEnd {
    Shutdown,
    LeaseLost,
    StoreClosed,
}

/// The engine was told to stop while it waited.
struct Stopping;

impl Engine {
    pub fn new(
        store: Arc<dyn EventStore>,
        domains: Domains,
        states: Arc<dyn States>,
        registry: EventRegistry,
        config: EngineConfig,
    ) -> Self {
        Self {
            store,
            domains,
            states,
            registry,
            config,
            holder: format!("automations-{}", Uuid::now_v7()),
            position: Arc::new(Mutex::new(Position::START)),
            privacy: None,
        }
    }

    /// Conditions and templates see personal fields in plaintext (what
    /// an action copies into a field that is not personal is stored so).
    pub fn with_privacy(mut self, privacy: Arc<herald_privacy::Privacy>) -> Self {
        self.privacy = Some(privacy);
        self
    }

    /// The event with its personal fields revealed, when it has any;
    /// retried while the keys cannot be read.
    async fn revealed(
        &self,
        event: &EventEnvelope,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<EventEnvelope>, Stopping> {
        let Some(privacy) = &self.privacy else {
            return Ok(None);
        };
        let mut failures = 0;
        loop {
            match revealed(privacy, event).await {
                Ok(revealed) => return Ok(revealed),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(position = event.position.get(), error = %e, "Personal fields cannot be revealed for the automations; retrying.");
                    if wait(shutdown, self.config.backoff.delay(failures)).await {
                        return Err(Stopping);
                    }
                }
            }
        }
    }

    /// The last position the engine finished, shared.
    pub fn position(&self) -> Arc<Mutex<Position>> {
        Arc::clone(&self.position)
    }

    /// Runs until `shutdown` turns true: stands by while another process
    /// leads, leads when it can.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self
                .store
                .acquire_lease(ENGINE, &self.holder, self.config.lease_ttl)
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
                    tracing::warn!(error = %e, "Automations engine cannot reach the store for its lease; retrying.");
                    if wait(&mut shutdown, self.config.standby_poll).await {
                        return;
                    }
                    continue;
                }
            }
            tracing::info!(holder = %self.holder, "Automations engine is active.");
            metrics::gauge!(ENGINE_ACTIVE).set(1.0);
            let end = self.lead(&mut shutdown).await;
            metrics::gauge!(ENGINE_ACTIVE).set(0.0);
            match end {
                TermEnd::Shutdown => {
                    let _ = self.store.release_lease(ENGINE, &self.holder).await;
                    return;
                }
                TermEnd::StoreClosed => return,
                TermEnd::LeaseLost => {
                    tracing::warn!(holder = %self.holder, "Automations engine lost its lease; standing by.");
                }
            }
        }
    }

    /// One term as the leader.
    async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> TermEnd {
        let (start, mut state, mut catalogs) = loop {
            match self.load().await {
                Ok(loaded) => break loaded,
                Err(e) => {
                    tracing::warn!(error = %e, "Automations engine cannot load its state; retrying.");
                    if wait(shutdown, self.config.standby_poll).await {
                        return TermEnd::Shutdown;
                    }
                }
            }
        };
        *self.position.lock().expect("position lock") = start;
        let mut events = self.store.subscribe_all(start.next());
        let mut done = start;
        let mut unsaved = 0u64;
        let mut last_save = tokio::time::Instant::now();
        let mut renew = tokio::time::interval(self.config.standby_poll);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let _ = self.save(done, &mut state, &catalogs).await;
                    return TermEnd::Shutdown;
                }
                _ = renew.tick() => {
                    match self.store.acquire_lease(ENGINE, &self.holder, self.config.lease_ttl).await {
                        Ok(true) => {}
                        Ok(false) => return TermEnd::LeaseLost,
                        Err(e) => tracing::warn!(error = %e, "Automations engine could not renew its lease."),
                    }
                    if unsaved > 0 && last_save.elapsed() >= self.config.checkpoint_interval {
                        match self.save(done, &mut state, &catalogs).await {
                            Ok(true) => { unsaved = 0; last_save = tokio::time::Instant::now(); }
                            Ok(false) => return TermEnd::LeaseLost,
                            Err(_) => {}
                        }
                    }
                    continue;
                }
                next = events.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(StoreError::Closed)) | None => return TermEnd::StoreClosed,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Automations engine lost its log subscription; resubscribing.");
                    if wait(shutdown, self.config.standby_poll).await {
                        return TermEnd::Shutdown;
                    }
                    events = self.store.subscribe_all(done.next());
                    continue;
                }
            };
            if self
                .handle(&mut catalogs, &mut state, &event, shutdown)
                .await
                .is_err()
            {
                // Stopping in the middle of an event: it is met again.
                let _ = self.save(done, &mut state, &catalogs).await;
                return TermEnd::Shutdown;
            }
            done = event.position;
            *self.position.lock().expect("position lock") = done;
            metrics::gauge!(ENGINE_POSITION).set(done.get() as f64);
            unsaved += 1;
            if unsaved >= self.config.checkpoint_every
                || last_save.elapsed() >= self.config.checkpoint_interval
            {
                match self.save(done, &mut state, &catalogs).await {
                    Ok(true) => {
                        unsaved = 0;
                        last_save = tokio::time::Instant::now();
                    }
                    Ok(false) => return TermEnd::LeaseLost,
                    Err(e) => {
                        tracing::warn!(error = %e, "Automations engine could not save its checkpoint.")
                    }
                }
            }
        }
    }

    /// Saves the position and counters while holding the lease (the
    /// counts kept in the catalogs' entries first folded in).
    async fn save(
        &self,
        position: Position,
        state: &mut EngineState,
        catalogs: &HashMap<TenantId, Catalog>,
    ) -> Result<bool, StoreError> {
        for (tenant, catalog) in catalogs {
            for entry in catalog.entries() {
                let n = entry
                    .pending_matched
                    .swap(0, std::sync::atomic::Ordering::Relaxed);
                if n > 0 {
                    state.entry(tenant, &entry.name).matched += n;
                }
            }
        }
        if !self
            .store
            .acquire_lease(ENGINE, &self.holder, self.config.lease_ttl)
            .await?
        {
            return Ok(false);
        }
        state.publish();
        let text = serde_json::to_string(state).expect("engine state serializes");
        self.store
            .save_checkpoint_state(ENGINE, position, &text)
            .await?;
        Ok(true)
    }

    /// The checkpoint, the counters, and every tenant's automations as of
    /// the checkpoint.
    async fn load(
        &self,
    ) -> Result<(Position, EngineState, HashMap<TenantId, Catalog>), StoreError> {
        if self.store.checkpoint_state(ENGINE).await?.is_none() {
            // Never run on this store: when no automation was ever saved,
            // nothing before the head concerns it, however long the log.
            // The head is read first, so a definition saved meanwhile is
            // either found below or after the head.
            let head = self.store.head().await?.position;
            let catalogs = load_catalogs(&*self.store, None).await?;
            if catalogs.is_empty() {
                return Ok((head, EngineState::default(), catalogs));
            }
        }
        let (position, state) = saved_state(&*self.store).await?;
        let catalogs = load_catalogs(&*self.store, Some(position)).await?;
        Ok((position, state, catalogs))
    }

    /// Everything one event causes.
    async fn handle(
        &self,
        catalogs: &mut HashMap<TenantId, Catalog>,
        state: &mut EngineState,
        event: &EventEnvelope,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        let revealed = self.revealed(event, shutdown).await?;
        let event = revealed.as_ref().unwrap_or(event);
        let tenant = &event.tenant;
        if event.event_type.domain() == DOMAIN {
            if event.stream.id() == DEFINITIONS_STREAM_ID {
                if let Some(Ok(change)) = DefinitionChange::from_envelope(event) {
                    let catalog = catalogs.entry(tenant.clone()).or_default();
                    let transitions = catalog.apply(
                        &change,
                        event.id.as_uuid(),
                        event.position.get(),
                        event.recorded_at,
                    );
                    for transition in transitions {
                        self.schedule_transition(catalog, event, &transition, shutdown)
                            .await?;
                    }
                }
                return Ok(());
            }
            if event.event_type.name() == AbsenceElapsed::NAME {
                if let Ok(elapsed) = AbsenceElapsed::from_payload(event.payload.clone()) {
                    return self
                        .absence_elapsed(catalogs, state, event, &elapsed, shutdown)
                        .await;
                }
                return Ok(());
            }
            if event.event_type.name() == ScheduleDue::NAME {
                if let Ok(due) = ScheduleDue::from_payload(event.payload.clone()) {
                    let entry = catalogs
                        .get(tenant)
                        .and_then(|c| c.get(&due.automation))
                        .filter(|e| {
                            e.runs()
                                && e.version == due.version
                                && due.since.is_none_or(|s| s == e.since_event)
                        })
                        .cloned();
                    if let Some(entry) = entry {
                        if let Some(compiled) = &entry.compiled {
                            state.entry(tenant, &entry.name).matched += 1;
                            self.act_on(
                                state,
                                &entry,
                                compiled,
                                event,
                                event.position.get(),
                                shutdown,
                            )
                            .await?;
                            // A cron schedule's next firing, from this one.
                            if let (
                                CompiledTrigger::Schedule(cadence @ Cadence::Cron { .. }),
                                Some(due_at),
                            ) = (&compiled.trigger, due.due_at)
                            {
                                if let Some(next) = firing(&entry, cadence, due_at) {
                                    let key = plan::dedupe_key(
                                        &entry.name,
                                        entry.version,
                                        event.id.as_uuid(),
                                        "schedule.next",
                                    );
                                    if let Effect::Refused(why) | Effect::Failed(why) =
                                        self.effect(&entry, event, &next, &key, shutdown).await?
                                    {
                                        tracing::warn!(automation = %entry.name, reason = %why, "A schedule's next firing could not be set.");
                                    }
                                }
                            }
                        }
                    }
                }
                return Ok(());
            }
        }
        let Some(catalog) = catalogs.get(tenant) else {
            return Ok(());
        };
        let event_type = event.event_type.to_string();
        let stream = event.stream.to_string();
        let own = event.producer.strip_prefix("automation:");
        // One conversion of the event for every automation without lookups.
        let mut shared: Option<Scope> = None;
        // The automations whose condition cannot hold (it requires a text
        // the event does not have) are counted as matched, not evaluated.
        let candidates = catalog.candidate_names(event);
        for entry in catalog.running() {
            let Some(compiled) = &entry.compiled else {
                continue;
            };
            if own == Some(entry.name.as_str()) {
                // Its own doing never triggers it again (no loops by one
                // automation on itself).
                continue;
            }
            let candidate = candidates
                .as_ref()
                .is_none_or(|c| c.contains(entry.name.as_str()));
            match &compiled.trigger {
                CompiledTrigger::Event(m) if m.matches(&event_type, &stream) => {
                    entry
                        .pending_matched
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !candidate {
                        continue;
                    }
                    if !compiled.lookups.is_empty() {
                        self.act_on(
                            state,
                            entry,
                            compiled,
                            event,
                            event.position.get(),
                            shutdown,
                        )
                        .await?;
                        continue;
                    }
                    let scope = shared.get_or_insert_with(|| {
                        Scope::new(&event_view(event), &json!({}), &Value::Null)
                    });
                    // Most events fail most conditions: decide (and render)
                    // only when it holds or cannot be evaluated, and set
                    // `automation` for the condition only if it reads it.
                    if let Some(when) = &compiled.when {
                        if when.reads("automation") {
                            scope.set_automation(&automation_view(&entry.name, entry.version));
                        }
                        if matches!(when.eval_bool(scope, "when"), Ok(false)) {
                            continue;
                        }
                    }
                    scope.set_automation(&automation_view(&entry.name, entry.version));
                    let decision = compiled.decide(entry.version, TriggerRef::of(event), scope);
                    self.execute(state, entry, event, &decision, shutdown)
                        .await?;
                }
                CompiledTrigger::Absence {
                    start,
                    correlate,
                    within,
                    ..
                } if candidate && start.matches(&event_type, &stream) => {
                    self.start_absence(state, entry, compiled, event, correlate, *within, shutdown)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Looks up states, decides, and executes the decision for one trigger.
    async fn act_on(
        &self,
        state: &mut EngineState,
        entry: &Entry,
        compiled: &Compiled,
        trigger: &EventEnvelope,
        lookup_position: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        let scope = match self
            .scope(entry, compiled, trigger, lookup_position, shutdown)
            .await?
        {
            Ok(scope) => scope,
            Err((path, error)) => {
                self.failed(state, entry, trigger, &path, &error, shutdown)
                    .await?;
                return Ok(());
            }
        };
        let decision = compiled.decide(entry.version, TriggerRef::of(trigger), &scope);
        self.execute(state, entry, trigger, &decision, shutdown)
            .await
    }

    /// The scope of an evaluation: the event, the looked-up states.
    async fn scope(
        &self,
        entry: &Entry,
        compiled: &Compiled,
        trigger: &EventEnvelope,
        lookup_position: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Result<Scope, (String, String)>, Stopping> {
        let automation = automation_view(&entry.name, entry.version);
        let scope = Scope::new(&event_view(trigger), &json!({}), &automation);
        if compiled.lookups.is_empty() {
            return Ok(Ok(scope));
        }
        let targets = match compiled.lookups_for(&scope) {
            Ok(t) => t,
            Err(e) => return Ok(Err((e.at.clone(), e.to_string()))),
        };
        let mut states = serde_json::Map::new();
        for (key, domain, id) in targets {
            let mut failures = 0;
            let value = loop {
                match self
                    .states
                    .state_at(&trigger.tenant, &domain, &id, lookup_position)
                    .await
                {
                    Ok(v) => break v.unwrap_or(Value::Null),
                    Err(LookupError::Invalid(e)) => return Ok(Err((format!("with.{key}"), e))),
                    Err(LookupError::Transient(e)) => {
                        failures += 1;
                        tracing::warn!(automation = %entry.name, error = %e, "A lookup failed; retrying.");
                        if wait(shutdown, self.config.backoff.delay(failures)).await {
                            return Err(Stopping);
                        }
                    }
                }
            };
            states.insert(key, value);
        }
        Ok(Ok(scope.with_state(&Value::Object(states))))
    }

    /// Runs a decision's actions in order.
    async fn execute(
        &self,
        state: &mut EngineState,
        entry: &Entry,
        trigger: &EventEnvelope,
        decision: &Decision,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        if let Some(error) = &decision.error {
            self.failed(state, entry, trigger, "when", error, shutdown)
                .await?;
            return Ok(());
        }
        if !decision.condition {
            return Ok(());
        }
        state.entry(&trigger.tenant, &entry.name).acted += 1;
        for planned in &decision.actions {
            self.action(state, entry, trigger, planned, shutdown)
                .await?;
        }
        Ok(())
    }

    /// One planned action (and its fallbacks, when refused).
    async fn action(
        &self,
        state: &mut EngineState,
        entry: &Entry,
        trigger: &EventEnvelope,
        planned: &PlannedAction,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        if let Some(error) = &planned.error {
            return self
                .failed(state, entry, trigger, &planned.path, error, shutdown)
                .await;
        }
        let Some(action) = &planned.action else {
            // Its own condition was false.
            return Ok(());
        };
        let key = plan::dedupe_key(
            &entry.name,
            entry.version,
            trigger.id.as_uuid(),
            &planned.path,
        );
        match self.effect(entry, trigger, action, &key, shutdown).await? {
            Effect::Done => Ok(()),
            Effect::Refused(why) => match &planned.on_refused {
                Some(fallbacks) => {
                    for fallback in fallbacks {
                        Box::pin(self.action(state, entry, trigger, fallback, shutdown)).await?;
                    }
                    Ok(())
                }
                None => {
                    self.failed(
                        state,
                        entry,
                        trigger,
                        &planned.path,
                        &format!("refused: {why}"),
                        shutdown,
                    )
                    .await
                }
            },
            Effect::Failed(why) => {
                self.failed(state, entry, trigger, &planned.path, &why, shutdown)
                    .await
            }
        }
    }

    /// Does one rendered action, retrying while it fails for the time
    /// being.
    async fn effect(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        action: &Rendered,
        key: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Effect, Stopping> {
        let mut failures = 0;
        loop {
            let attempt = match action {
                Rendered::Command {
                    domain,
                    id,
                    name,
                    body,
                } => {
                    self.command(entry, trigger, domain, id, name, body.clone(), key)
                        .await
                }
                Rendered::Event {
                    stream,
                    event_type,
                    version,
                    payload,
                } => {
                    self.append(entry, trigger, stream, event_type, *version, payload, key)
                        .await
                }
                Rendered::ScheduleTimer { id, body }
                    if matches!(
                        body.pointer("/deliver/domain").and_then(Value::as_str),
                        Some(DOMAIN | herald_events::registry::events::DOMAIN)
                    ) =>
                {
                    Attempt::Failed(format!(
                        "timer {id} would deliver into a domain only Herald appends to"
                    ))
                }
                Rendered::ScheduleTimer { id, body } => {
                    let mut body = body.clone();
                    if let Some(map) = body.as_object_mut() {
                        map.entry("correlation_id")
                            .or_insert_with(|| Value::String(trigger.correlation_id.to_string()));
                    }
                    self.command(entry, trigger, "timers", id, "schedule", body, key)
                        .await
                }
                Rendered::Webhook { .. } => self.enqueue_webhook(entry, trigger, action, key).await,
                Rendered::Email { .. } => self.enqueue_email(entry, trigger, action, key).await,
                Rendered::CancelTimer { id, body } => {
                    match self
                        .command(entry, trigger, "timers", id, "cancel", body.clone(), key)
                        .await
                    {
                        // Nothing to cancel (fired, unknown): done.
                        Attempt::Refused(_) => Attempt::Done,
                        other => other,
                    }
                }
            };
            match attempt {
                Attempt::Done => return Ok(Effect::Done),
                Attempt::Refused(why) => return Ok(Effect::Refused(why)),
                Attempt::Failed(why) => return Ok(Effect::Failed(why)),
                Attempt::Retry(why) => {
                    failures += 1;
                    tracing::warn!(automation = %entry.name, reason = %why, "An automation's action failed; retrying.");
                    if wait(shutdown, self.config.backoff.delay(failures)).await {
                        return Err(Stopping);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn command(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        domain: &str,
        id: &str,
        name: &str,
        body: Value,
        key: &str,
    ) -> Attempt {
        let Some(target) = self.domains.get(domain) else {
            return Attempt::Failed(format!("no domain {domain:?} takes commands here"));
        };
        let meta = CommandMeta {
            correlation_id: Some(trigger.correlation_id),
            causation_id: Some(trigger.id.as_uuid()),
            dedupe_key: Some(key.to_owned()),
            producer: Some(producer(&entry.name)),
            idempotency: None,
            decided_by_owner: false,
        };
        match target
            .execute_json(&trigger.tenant, id, name, body, meta)
            .await
        {
            Ok(_) => Attempt::Done,
            Err(CommandError::Refused(r)) if r.kind == RefusalKind::Invalid => {
                Attempt::Failed(format!("invalid: {r}"))
            }
            Err(CommandError::Refused(r)) => {
                // A repeat the aggregate refuses because the first run
                // changed it: the first run's effect is in the stream.
                match self.took_effect(&trigger.tenant, domain, id, key).await {
                    Ok(true) => Attempt::Done,
                    Ok(false) => Attempt::Refused(r.to_string()),
                    Err(e) => Attempt::Retry(e.to_string()),
                }
            }
            Err(e) if e.is_transient() => Attempt::Retry(e.to_string()),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Whether a command with this dedupe key already appended to
    /// `domain/id` (its first event's derived id is among the stream's
    /// latest events).
    async fn took_effect(
        &self,
        tenant: &TenantId,
        domain: &str,
        id: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        const WINDOW: u64 = 256;
        let Ok(stream) = StreamId::parse_parts(domain, id) else {
            return Ok(false);
        };
        let wanted = dedupe_id(key, &stream, 0);
        let version = self.store.stream_version(tenant, &stream).await?.get();
        if version == 0 {
            return Ok(false);
        }
        let from = version.saturating_sub(WINDOW - 1).max(1);
        let events = self
            .store
            .read_stream(tenant, &stream, StreamVersion(from), WINDOW as usize)
            .await?;
        Ok(events.iter().any(|e| e.id.as_uuid() == wanted))
    }

    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        stream: &str,
        event_type: &str,
        version: Option<u32>,
        payload: &Value,
        key: &str,
    ) -> Attempt {
        let built = (|| {
            let stream: StreamId = stream
                .parse()
                .map_err(|e| format!("stream {stream:?}: {e}"))?;
            let event_type: EventType = event_type
                .parse()
                .map_err(|e| format!("type {event_type:?}: {e}"))?;
            if event_type.domain() != stream.domain().as_str() {
                return Err(format!(
                    "an event of type {event_type} cannot go into stream {stream}"
                ));
            }
            let version = match version {
                Some(v) => SchemaVersion::new(v).map_err(|e| e.to_string())?,
                None => latest_version(&self.registry, &trigger.tenant, &event_type)
                    .ok_or_else(|| format!("{event_type} is not a known event type"))?,
            };
            self.registry
                .validate_in(&trigger.tenant, &event_type, version, payload)
                .map_err(|e| e.to_string())?;
            let event = NewEvent::new(event_type, version, payload.clone())
                .with_id(EventId(event_id(key)))
                .correlation(trigger.correlation_id, trigger.id.as_uuid())
                .producer(producer(&entry.name));
            Ok::<_, String>((stream, event))
        })();
        let (stream, event) = match built {
            Ok(b) => b,
            Err(why) => return Attempt::Failed(why),
        };
        self.store
            .append(&trigger.tenant, &stream, ExpectedVersion::Any, vec![event])
            .await
            .map_or_else(Attempt::of_store_error, |_| Attempt::Done)
    }

    /// Queues a webhook's delivery: one `automations.webhook_requested`
    /// event per trigger and action (its id comes from the dedupe key), which
    /// the dispatcher delivers at least once.
    async fn enqueue_webhook(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        action: &Rendered,
        key: &str,
    ) -> Attempt {
        let Rendered::Webhook {
            url,
            body,
            headers,
            secret_env,
            timeout_ms,
            retry_for_secs,
        } = action
        else {
            return Attempt::Failed("not a webhook".into());
        };
        if let Err(why) = crate::egress::check_url(url) {
            return Attempt::Failed(why);
        }
        let path = key.rsplit('/').next().unwrap_or_default().to_owned();
        let request = WebhookRequested {
            automation: entry.name.clone(),
            version: entry.version,
            trigger_event: trigger.id.as_uuid(),
            action: path,
            delivery_id: event_id(&format!("{key}/delivery")),
            url: url.clone(),
            body: body.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            secret_env: secret_env.clone(),
            timeout_ms: *timeout_ms,
            retry_for_secs: *retry_for_secs,
            order_key: trigger.stream.to_string(),
        };
        self.queue(entry, trigger, request.to_new_event(), key)
            .await
    }

    /// Queues an email: one `automations.email_requested` event per trigger
    /// and action, which the dispatcher sends at least once.
    async fn enqueue_email(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        action: &Rendered,
        key: &str,
    ) -> Attempt {
        let Rendered::Email {
            to,
            from,
            subject,
            body,
            retry_for_secs,
        } = action
        else {
            return Attempt::Failed("not an email".into());
        };
        for address in to.iter().chain(from) {
            if let Err(e) = address.parse::<lettre::message::Mailbox>() {
                return Attempt::Failed(format!("{address:?} is not an email address: {e}"));
            }
        }
        if subject.contains(['\r', '\n']) {
            return Attempt::Failed("the subject holds a line break".into());
        }
        let request = EmailRequested {
            automation: entry.name.clone(),
            version: entry.version,
            trigger_event: trigger.id.as_uuid(),
            action: key.rsplit('/').next().unwrap_or_default().to_owned(),
            delivery_id: event_id(&format!("{key}/delivery")),
            to: to.clone(),
            from: from.clone(),
            subject: subject.clone(),
            body: body.clone(),
            retry_for_secs: *retry_for_secs,
            order_key: trigger.stream.to_string(),
        };
        self.queue(entry, trigger, request.to_new_event(), key)
            .await
    }

    /// Appends a queued delivery to the automation's stream, its id the
    /// action's dedupe key: once however often the trigger is met.
    async fn queue(
        &self,
        entry: &Entry,
        trigger: &EventEnvelope,
        event: NewEvent,
        key: &str,
    ) -> Attempt {
        let event = event
            .with_id(EventId(event_id(key)))
            .correlation(trigger.correlation_id, trigger.id.as_uuid())
            .producer(producer(&entry.name));
        self.store
            .append(
                &trigger.tenant,
                &automation_stream(&entry.name),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .map_or_else(Attempt::of_store_error, |_| Attempt::Done)
    }

    /// Records a failure for good: the counter, and the dead letter.
    async fn failed(
        &self,
        state: &mut EngineState,
        entry: &Entry,
        trigger: &EventEnvelope,
        path: &str,
        error: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        tracing::warn!(automation = %entry.name, action = path, trigger = %trigger.id, error, "An automation's action failed for good.");
        let stats = state.entry(&trigger.tenant, &entry.name);
        stats.failed += 1;
        stats.last_error = Some(format!("{path}: {error}"));
        stats.last_error_at = Some(chrono::Utc::now());
        let key = plan::dedupe_key(&entry.name, entry.version, trigger.id.as_uuid(), path);
        let failure = ActionFailed {
            automation: entry.name.clone(),
            version: entry.version,
            trigger_event: trigger.id.as_uuid(),
            action: path.chars().take(200).collect(),
            error: error.chars().take(4000).collect(),
        };
        let event = failure
            .to_new_event()
            .with_id(EventId(event_id(&format!("{key}/failed"))))
            .correlation(trigger.correlation_id, trigger.id.as_uuid())
            .producer(producer(&entry.name));
        let stream = automation_stream(&entry.name);
        let mut failures = 0;
        loop {
            match self
                .store
                .append(
                    &trigger.tenant,
                    &stream,
                    ExpectedVersion::Any,
                    vec![event.clone()],
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_caller_error() => {
                    tracing::error!(error = %e, "An automation's failure could not be recorded.");
                    return Ok(());
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "An automation's failure could not be recorded yet; retrying.");
                    if wait(shutdown, self.config.backoff.delay(failures)).await {
                        return Err(Stopping);
                    }
                }
            }
        }
    }

    /// A start event of an absence trigger: when its condition holds,
    /// schedules the timer that ends the wait.
    #[allow(clippy::too_many_arguments)]
    async fn start_absence(
        &self,
        state: &mut EngineState,
        entry: &Entry,
        compiled: &Compiled,
        event: &EventEnvelope,
        correlate: &crate::expr::Expr,
        within: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        let scope = match self
            .scope(entry, compiled, event, event.position.get(), shutdown)
            .await?
        {
            Ok(scope) => scope,
            Err((path, error)) => {
                return self
                    .failed(state, entry, event, &path, &error, shutdown)
                    .await;
            }
        };
        if let Some(when) = &compiled.when {
            match when.eval_bool(&scope, "when") {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    return self
                        .failed(state, entry, event, "when", &e.to_string(), shutdown)
                        .await
                }
            }
        }
        let correlation = match correlate.eval(&scope, "trigger.absence.correlate") {
            Ok(v) => v,
            Err(e) => {
                return self
                    .failed(
                        state,
                        entry,
                        event,
                        "trigger.absence.correlate",
                        &e.to_string(),
                        shutdown,
                    )
                    .await
            }
        };
        let due =
            event.recorded_at + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let body = json!({
            "at": due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "deliver": {
                "kind": "event",
                "domain": DOMAIN,
                "stream_id": entry.name,
                "name": AbsenceElapsed::NAME,
                "body": AbsenceElapsed {
                    automation: entry.name.clone(),
                    version: entry.version,
                    trigger_event: event.id.as_uuid(),
                    trigger_position: event.position.get(),
                    correlation,
                },
            },
            "correlation_id": event.correlation_id,
            "label": format!("automation {} absence", entry.name),
        });
        let key = plan::dedupe_key(
            &entry.name,
            entry.version,
            event.id.as_uuid(),
            "trigger.absence",
        );
        let id = absence_timer_id(&entry.name, event.id.as_uuid());
        let action = Rendered::Command {
            domain: "timers".into(),
            id,
            name: "schedule".into(),
            body,
        };
        match self.effect(entry, event, &action, &key, shutdown).await? {
            Effect::Done => Ok(()),
            Effect::Refused(why) | Effect::Failed(why) => {
                self.failed(state, entry, event, "trigger.absence", &why, shutdown)
                    .await
            }
        }
    }

    /// An absence's wait ended: acts unless the awaited event came.
    async fn absence_elapsed(
        &self,
        catalogs: &HashMap<TenantId, Catalog>,
        state: &mut EngineState,
        event: &EventEnvelope,
        elapsed: &AbsenceElapsed,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        let tenant = &event.tenant;
        let Some(entry) = catalogs
            .get(tenant)
            .and_then(|c| c.get(&elapsed.automation))
            .filter(|e| e.runs() && e.version == elapsed.version)
            .cloned()
        else {
            return Ok(());
        };
        let Some(compiled) = entry.compiled.clone() else {
            return Ok(());
        };
        let CompiledTrigger::Absence {
            missing, correlate, ..
        } = &compiled.trigger
        else {
            return Ok(());
        };
        let mut failures = 0;
        let (came, trigger) = loop {
            let found = async {
                let came = find_missing(
                    &*self.store,
                    tenant,
                    missing,
                    correlate,
                    &entry,
                    &elapsed.correlation,
                    Position(elapsed.trigger_position),
                    event.position,
                )
                .await?;
                let trigger = self
                    .store
                    .read_all(Position(elapsed.trigger_position), 1)
                    .await?
                    .into_iter()
                    .next()
                    .filter(|e| e.id.as_uuid() == elapsed.trigger_event);
                Ok::<_, StoreError>((came, trigger))
            };
            match found.await {
                Ok(found) => break found,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "An absence could not be checked; retrying.");
                    if wait(shutdown, self.config.backoff.delay(failures)).await {
                        return Err(Stopping);
                    }
                }
            }
        };
        if came {
            state.entry(tenant, &entry.name).cancelled += 1;
            return Ok(());
        }
        let Some(trigger) = trigger else {
            return self
                .failed(
                    state,
                    &entry,
                    event,
                    "trigger.absence",
                    "the start event is not in the log",
                    shutdown,
                )
                .await;
        };
        state.entry(tenant, &entry.name).matched += 1;
        // Lookups as of the end of the wait: the state the actions act on.
        self.act_on(
            state,
            &entry,
            &compiled,
            &trigger,
            event.position.get(),
            shutdown,
        )
        .await
    }

    /// A schedule automation started or stopped: its recurring timer.
    async fn schedule_transition(
        &self,
        catalog: &Catalog,
        event: &EventEnvelope,
        transition: &Transition,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopping> {
        let (entry, action, step) = match transition {
            Transition::Started { name } => {
                let Some(entry) = catalog.get(name) else {
                    return Ok(());
                };
                let Some(CompiledTrigger::Schedule(cadence)) =
                    entry.compiled.as_ref().map(|c| &c.trigger)
                else {
                    return Ok(());
                };
                let Some(action) = firing(entry, cadence, event.recorded_at) else {
                    return Ok(());
                };
                (entry.clone(), action, "schedule")
            }
            Transition::Stopped {
                name,
                since_event,
                version,
            } => {
                let entry = match catalog.get(name) {
                    Some(e) => e.clone(),
                    // Deleted: only its name and version matter here.
                    None => Entry {
                        name: name.clone(),
                        version: *version,
                        enabled: false,
                        definition: Value::Null,
                        compiled: None,
                        problem: None,
                        since_event: *since_event,
                        applied_at: event.recorded_at,
                        applied_position: event.position.get(),
                        pending_matched: Default::default(),
                    },
                };
                if matches!(
                    entry.compiled.as_ref().map(|c| &c.trigger),
                    Some(CompiledTrigger::Schedule(Cadence::Cron { .. }))
                ) {
                    // Its pending firing names the old switch-on: ignored.
                    return Ok(());
                }
                let id = schedule_timer_id(name, *since_event);
                (
                    entry,
                    Rendered::CancelTimer {
                        id,
                        body: json!({"reason": "the automation stopped"}),
                    },
                    "unschedule",
                )
            }
            Transition::Nothing => return Ok(()),
        };
        let key = plan::dedupe_key(&entry.name, entry.version, event.id.as_uuid(), step);
        match self.effect(&entry, event, &action, &key, shutdown).await? {
            Effect::Done => Ok(()),
            Effect::Refused(why) | Effect::Failed(why) => {
                tracing::warn!(automation = %entry.name, reason = %why, "A schedule's timer could not be changed.");
                Ok(())
            }
        }
    }
}

/// The timer command of a schedule's next firing after `after`: for
/// `every`, the recurring timer of this switch-on; for `cron`, a one-shot
/// timer at the next instant the expression names in its time zone.
fn firing(
    entry: &Entry,
    cadence: &Cadence,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<Rendered> {
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let next = cadence.next_after(after)?;
    let due = ScheduleDue {
        automation: entry.name.clone(),
        version: entry.version,
        since: Some(entry.since_event),
        due_at: Some(next),
    };
    let label = format!("automation {} schedule", entry.name);
    let (id, body) = match cadence {
        Cadence::Every(every) => (
            schedule_timer_id(&entry.name, entry.since_event),
            json!({
                "at": at(next),
                "every_secs": every.as_secs(),
                "deliver": {"kind": "event", "domain": DOMAIN, "stream_id": entry.name, "name": ScheduleDue::NAME,
                            "body": ScheduleDue { due_at: None, ..due }},
                "label": label,
            }),
        ),
        Cadence::Cron { .. } => (
            format!(
                "automation.{}.{}.{}",
                entry.name,
                entry.since_event,
                next.timestamp()
            ),
            json!({
                "at": at(next),
                "deliver": {"kind": "event", "domain": DOMAIN, "stream_id": entry.name, "name": ScheduleDue::NAME, "body": due},
                "label": label,
            }),
        ),
    };
    Some(Rendered::Command {
        domain: "timers".into(),
        id,
        name: "schedule".into(),
        body,
    })
}

/// What one attempt of an action gave.
enum Attempt {
    Done,
    Refused(String),
    Failed(String),
    Retry(String),
}

impl Attempt {
    /// An append that failed: for good when the caller is at fault,
    /// retried when the store is.
    fn of_store_error(e: StoreError) -> Self {
        if e.is_caller_error() {
            Attempt::Failed(e.to_string())
        } else {
            Attempt::Retry(e.to_string())
        }
    }
}

/// What an action came to.
enum Effect {
    Done,
    Refused(String),
    Failed(String),
}

/// The stream of an automation's own marks: `automations/<name>`.
pub fn automation_stream(name: &str) -> StreamId {
    StreamId::parse_parts(DOMAIN, name).expect("an automation name is a valid stream id")
}

/// The timer that ends an absence's wait.
pub fn absence_timer_id(name: &str, start_event: Uuid) -> String {
    format!("automation.{name}.{start_event}")
}

/// The recurring timer of a schedule automation's enabled version.
pub fn schedule_timer_id(name: &str, since_event: Uuid) -> String {
    format!("automation.{name}.schedule.{since_event}")
}

/// The id of an event an automation appends: the same for every attempt.
pub fn event_id(key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d61_7574_6f6d_6174_6573);
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

/// The latest schema version of a type for a tenant (built-in or
/// registered at run time).
pub fn latest_version(
    registry: &EventRegistry,
    tenant: &TenantId,
    event_type: &EventType,
) -> Option<SchemaVersion> {
    registry.latest_version(event_type).or_else(|| {
        registry
            .runtime()
            .tenant(tenant)
            .and_then(|t| {
                t.registered()
                    .types
                    .get(&event_type.to_string())
                    .and_then(|r| r.latest())
                    .map(|(v, _)| v)
            })
            .and_then(|v| SchemaVersion::new(v).ok())
    })
}

/// Whether an event matching `missing` with the correlation value
/// `wanted` is in the log after `after` and before `before`.
#[allow(clippy::too_many_arguments)]
pub async fn find_missing(
    store: &dyn EventStore,
    tenant: &TenantId,
    missing: &crate::matcher::EventMatcher,
    correlate: &crate::expr::Expr,
    entry: &Entry,
    wanted: &Value,
    after: Position,
    before: Position,
) -> Result<bool, StoreError> {
    let automation = automation_view(&entry.name, entry.version);
    let mut query = SearchQuery::new(tenant.clone());
    query.types = missing.type_patterns();
    query.after = after;
    query.limit = 500;
    loop {
        let page = store.search(&query).await?;
        for candidate in &page.events {
            if candidate.position >= before {
                return Ok(false);
            }
            if !missing.matches(
                &candidate.event_type.to_string(),
                &candidate.stream.to_string(),
            ) {
                continue;
            }
            let scope = Scope::new(&event_view(candidate), &json!({}), &automation);
            if correlate
                .eval(&scope, "trigger.absence.correlate")
                .is_ok_and(|v| &v == wanted)
            {
                return Ok(true);
            }
        }
        match page.last_scanned {
            Some(p) if p < before => query.after = p,
            _ => return Ok(false),
        }
    }
}

/// Every tenant's automations, folded from their definitions streams up
/// to `upto` (all of it with `None`).
pub async fn load_catalogs(
    store: &dyn EventStore,
    upto: Option<Position>,
) -> Result<HashMap<TenantId, Catalog>, StoreError> {
    let applied: EventType = format!("{DOMAIN}.automation_applied")
        .parse()
        .expect("a valid event type constant");
    let mut catalogs = HashMap::new();
    for tenant in store.tenants_with_type(&applied).await? {
        let catalog = load_catalog(store, &tenant, upto).await?;
        catalogs.insert(tenant, catalog);
    }
    Ok(catalogs)
}

/// One tenant's automations, folded from its definitions stream up to
/// `upto`.
pub async fn load_catalog(
    store: &dyn EventStore,
    tenant: &TenantId,
    upto: Option<Position>,
) -> Result<Catalog, StoreError> {
    let stream = definitions_stream();
    let mut catalog = Catalog::default();
    let mut from = StreamVersion(1);
    loop {
        let events = store.read_stream(tenant, &stream, from, 500).await?;
        let Some(last) = events.last() else { break };
        from = StreamVersion(last.stream_version.get() + 1);
        let full = events.len() == 500;
        for event in &events {
            if upto.is_some_and(|u| event.position > u) {
                return Ok(catalog);
            }
            if let Some(Ok(change)) = DefinitionChange::from_envelope(event) {
                catalog.apply(
                    &change,
                    event.id.as_uuid(),
                    event.position.get(),
                    event.recorded_at,
                );
            } else {
                catalog.stream_version += 1;
            }
        }
        if !full {
            break;
        }
    }
    Ok(catalog)
}

/// The stream every tenant's definitions are kept in.
pub fn definitions_stream() -> StreamId {
    StreamId::parse_parts(DOMAIN, DEFINITIONS_STREAM_ID).expect("a valid stream constant")
}

/// Waits `d`; true when the process is stopping.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
    }
}
