//! Automations as this process serves them: saving, switching and deleting
//! them (deciding against the tenant's definitions stream and appending at
//! the version decided at, so two processes changing one tenant's
//! automations at once cannot both win), trying them on history, and the
//! lookups of aggregates' state the engine and the dry run use. The engine
//! itself ([`herald_automations::engine`]) runs in one process at a time.

use std::sync::Arc;

use async_trait::async_trait;
use herald_actors::state_at::{Moment, StateAtError};
use herald_automations::catalog::{self, Accepted, Catalog, Refused};
use herald_automations::dry_run::{self, DryRunError, Report, Stretch};
use herald_automations::engine::{self, AutomationStats, LookupError, States};
use herald_automations::{Definition, InvalidDefinition};
use herald_events::automations::{
    ActionFailed, DeliveryDeadLettered, DeliveryRetryRequested, DeliverySucceeded, EmailRequested,
    WebhookRequested,
};
use herald_events::{EventEnvelope, Position, StreamVersion, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, StoreError};
use serde_json::Value;

/// Tries of a change that lost the race for the definitions stream.
const CHANGE_TRIES: usize = 5;

/// Why a change to the automations did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the automations of tenant {tenant} kept changing while this change was decided")]
    Contended { tenant: TenantId },
    #[error(transparent)]
    DryRun(#[from] DryRunError),
    #[error("delivery {delivery} of automation {automation:?} is not dead-lettered: only a dead letter is retried")]
    NotDeadLettered {
        automation: String,
        delivery: uuid::Uuid,
    },
}

impl From<InvalidDefinition> for AutomationError {
    fn from(e: InvalidDefinition) -> Self {
        Self::Refused(Refused::Invalid(e))
    }
}

/// This process's door to the automations.
pub struct Automations {
    store: Arc<dyn EventStore>,
    states: Arc<DomainStates>,
    /// Dry runs see personal fields in plaintext, as the engine does.
    privacy: Option<Arc<herald_privacy::Privacy>>,
}

impl std::fmt::Debug for Automations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automations").finish_non_exhaustive()
    }
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Changed {
    pub accepted: Accepted,
    /// The change's event in the log (`None`: nothing changed).
    pub position: Option<Position>,
}

impl Automations {
    pub fn new(store: Arc<dyn EventStore>, domains: Arc<crate::domains::DomainList>) -> Self {
        let states = Arc::new(DomainStates {
            store: Arc::clone(&store),
            domains,
            privacy: None,
        });
        Self {
            store,
            states,
            privacy: None,
        }
    }

    /// Dry runs and lookups see personal fields in plaintext (the engine
    /// gets the same layer: [`herald_automations::engine::Engine::with_privacy`]).
    pub fn with_privacy(mut self, privacy: Arc<herald_privacy::Privacy>) -> Self {
        let states = DomainStates {
            store: Arc::clone(&self.states.store),
            domains: Arc::clone(&self.states.domains),
            privacy: Some(Arc::clone(&privacy)),
        };
        self.states = Arc::new(states);
        self.privacy = Some(privacy);
        self
    }

    /// The lookups of aggregates' state, for the engine.
    pub fn states(&self) -> Arc<dyn States> {
        Arc::clone(&self.states) as Arc<dyn States>
    }

    /// The tenant's automations as stored now.
    pub async fn catalog(&self, tenant: &TenantId) -> Result<Catalog, StoreError> {
        engine::load_catalog(&*self.store, tenant, None).await
    }

    /// Saves a definition (create, or a new version; the same again
    /// changes nothing).
    pub async fn apply(
        &self,
        tenant: &TenantId,
        definition: &Value,
        enabled: bool,
        expected_version: Option<u32>,
    ) -> Result<Changed, AutomationError> {
        self.change(tenant, |catalog| {
            catalog::decide_apply(catalog, definition, enabled, expected_version)
        })
        .await
    }

    /// Enables or disables one.
    pub async fn switch(
        &self,
        tenant: &TenantId,
        name: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Changed, AutomationError> {
        self.change(tenant, |catalog| {
            catalog::decide_switch(catalog, name, enabled, reason.clone())
        })
        .await
    }

    /// Deletes one.
    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<Changed, AutomationError> {
        self.change(tenant, |catalog| catalog::decide_delete(catalog, name))
            .await
    }

    async fn change(
        &self,
        tenant: &TenantId,
        decide: impl Fn(&Catalog) -> Result<Accepted, Refused>,
    ) -> Result<Changed, AutomationError> {
        let stream = engine::definitions_stream();
        for _ in 0..CHANGE_TRIES {
            let catalog = self.catalog(tenant).await?;
            let accepted = decide(&catalog)?;
            let Some(change) = &accepted.change else {
                return Ok(Changed {
                    accepted,
                    position: None,
                });
            };
            let expected = ExpectedVersion::Exact(StreamVersion(catalog.stream_version));
            match self
                .store
                .append(tenant, &stream, expected, vec![change.to_new_event()])
                .await
            {
                Ok(outcome) => {
                    return Ok(Changed {
                        accepted,
                        position: Some(outcome.last_position()),
                    })
                }
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AutomationError::Contended {
            tenant: tenant.clone(),
        })
    }

    /// Tries a definition (saved or not) on the tenant's history.
    pub async fn dry_run(
        &self,
        tenant: &TenantId,
        definition: &Definition,
        version: u32,
        stretch: &Stretch,
    ) -> Result<Report, AutomationError> {
        let compiled = Arc::new(definition.compile()?);
        Ok(dry_run::dry_run(
            &*self.store,
            self.privacy.as_deref(),
            &*self.states,
            tenant,
            compiled,
            version,
            stretch,
        )
        .await?)
    }

    /// The engine's counters for one automation, and the position the
    /// engine had finished when it last saved them.
    pub async fn stats(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(AutomationStats, Position), StoreError> {
        let (position, state) = engine::saved_state(&*self.store).await?;
        Ok((state.of(tenant, name), position))
    }

    /// The latest failures for good of one automation (its dead letters),
    /// newest last.
    pub async fn failures(
        &self,
        tenant: &TenantId,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(EventEnvelope, ActionFailed)>, StoreError> {
        let stream = engine::automation_stream(name);
        let version = self.store.stream_version(tenant, &stream).await?.get();
        // The stream also holds absence and schedule marks: read a window
        // of them and keep the failures.
        let window = (limit as u64).saturating_mul(4).max(100);
        let from = version.saturating_sub(window - 1).max(1);
        let events = self
            .store
            .read_stream(tenant, &stream, StreamVersion(from), window as usize)
            .await?;
        let mut failures: Vec<_> = events
            .into_iter()
            .filter(|e| e.event_type.name() == ActionFailed::NAME)
            .filter_map(|e| {
                let failure = ActionFailed::from_payload(e.payload.clone()).ok()?;
                Some((e, failure))
            })
            .collect();
        let skip = failures.len().saturating_sub(limit);
        failures.drain(..skip);
        Ok(failures)
    }
}

/// One delivery (a webhook, or an email as `mailto:`) and where it stands.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub delivery_id: uuid::Uuid,
    pub url: String,
    pub trigger_event: uuid::Uuid,
    pub action: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub requested_position: u64,
    /// `pending`, `delivered` or `dead_lettered`.
    pub status: &'static str,
    /// The answer's status code (delivered), or the last one (dead letter).
    pub status_code: Option<u16>,
    pub attempts: Option<u32>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Delivery {
    /// A delivery as its request event queued it: pending.
    fn requested(
        delivery_id: uuid::Uuid,
        url: String,
        trigger_event: uuid::Uuid,
        action: String,
        event: &EventEnvelope,
    ) -> Self {
        Self {
            delivery_id,
            url,
            trigger_event,
            action,
            requested_at: event.recorded_at,
            requested_position: event.position.get(),
            status: "pending",
            status_code: None,
            attempts: None,
            latency_ms: None,
            error: None,
            finished_at: None,
        }
    }
}

impl Automations {
    /// The latest webhook deliveries of one automation, oldest first.
    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        name: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let stream = engine::automation_stream(name);
        let version = self.store.stream_version(tenant, &stream).await?.get();
        let window = (limit as u64).saturating_mul(4).max(200);
        let from = version.saturating_sub(window - 1).max(1);
        let events = self
            .store
            .read_stream(tenant, &stream, StreamVersion(from), window as usize)
            .await?;
        let mut order = Vec::new();
        let mut found: std::collections::HashMap<uuid::Uuid, Delivery> = Default::default();
        for e in &events {
            let name = e.event_type.name();
            if name == WebhookRequested::NAME {
                if let Ok(r) = WebhookRequested::from_payload(e.payload.clone()) {
                    order.push(r.delivery_id);
                    found.insert(
                        r.delivery_id,
                        Delivery::requested(r.delivery_id, r.url, r.trigger_event, r.action, e),
                    );
                }
            } else if name == EmailRequested::NAME {
                if let Ok(r) = EmailRequested::from_payload(e.payload.clone()) {
                    order.push(r.delivery_id);
                    found.insert(
                        r.delivery_id,
                        Delivery::requested(
                            r.delivery_id,
                            format!("mailto:{}", r.to.join(",")),
                            r.trigger_event,
                            r.action,
                            e,
                        ),
                    );
                }
            } else if name == DeliverySucceeded::NAME {
                if let Ok(d) = DeliverySucceeded::from_payload(e.payload.clone()) {
                    if let Some(x) = found.get_mut(&d.delivery_id) {
                        x.status = "delivered";
                        x.status_code = Some(d.status);
                        x.attempts = Some(d.attempts);
                        x.latency_ms = Some(d.latency_ms);
                        x.error = None;
                        x.finished_at = Some(e.recorded_at);
                    }
                }
            } else if name == DeliveryDeadLettered::NAME {
                if let Ok(d) = DeliveryDeadLettered::from_payload(e.payload.clone()) {
                    if let Some(x) = found.get_mut(&d.delivery_id) {
                        x.status = "dead_lettered";
                        x.status_code = d.last_status;
                        x.attempts = Some(d.attempts);
                        x.error = Some(d.error);
                        x.finished_at = Some(e.recorded_at);
                    }
                }
            } else if name == DeliveryRetryRequested::NAME {
                if let Ok(r) = DeliveryRetryRequested::from_payload(e.payload.clone()) {
                    if let Some(x) = found.get_mut(&r.delivery_id) {
                        x.status = "pending";
                        x.finished_at = None;
                    }
                }
            }
        }
        let skip = order.len().saturating_sub(limit);
        Ok(order
            .into_iter()
            .skip(skip)
            .filter_map(|id| found.remove(&id))
            .collect())
    }

    /// Queues a dead-lettered delivery again, with a new retry window.
    pub async fn retry_delivery(
        &self,
        tenant: &TenantId,
        name: &str,
        delivery: uuid::Uuid,
    ) -> Result<Position, AutomationError> {
        let not_found = || {
            AutomationError::Refused(Refused::NotFound {
                name: format!("{name} delivery {delivery}"),
            })
        };
        if herald_automations::webhooks::find_request(&*self.store, tenant, name, delivery)
            .await?
            .is_none()
        {
            return Err(not_found());
        }
        // Its latest outcome must be a dead letter.
        let stream = engine::automation_stream(name);
        let mut last = None;
        let mut from = StreamVersion(1);
        loop {
            let events = self.store.read_stream(tenant, &stream, from, 1000).await?;
            let Some(tail) = events.last() else { break };
            from = StreamVersion(tail.stream_version.get() + 1);
            for e in &events {
                let about = e.payload.get("delivery_id").and_then(Value::as_str)
                    == Some(&delivery.to_string());
                if about && e.event_type.name() != WebhookRequested::NAME {
                    last = Some(e.event_type.name().to_owned());
                }
            }
            if events.len() < 1000 {
                break;
            }
        }
        if last.as_deref() != Some(DeliveryDeadLettered::NAME) {
            return Err(AutomationError::NotDeadLettered {
                automation: name.to_owned(),
                delivery,
            });
        }
        let event = DeliveryRetryRequested {
            automation: name.to_owned(),
            delivery_id: delivery,
        }
        .to_new_event();
        let outcome = self
            .store
            .append(tenant, &stream, ExpectedVersion::Any, vec![event])
            .await?;
        Ok(outcome.last_position())
    }
}

/// Aggregates' state as of a position, through the domains' state-at (the
/// same fold as `GET /v1/streams/{domain}/{id}?at=`).
pub struct DomainStates {
    store: Arc<dyn EventStore>,
    domains: Arc<crate::domains::DomainList>,
    privacy: Option<Arc<herald_privacy::Privacy>>,
}

impl std::fmt::Debug for DomainStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainStates").finish_non_exhaustive()
    }
}

#[async_trait]
impl States for DomainStates {
    async fn state_at(
        &self,
        tenant: &TenantId,
        domain: &str,
        id: &str,
        position: u64,
    ) -> Result<Option<Value>, LookupError> {
        match self
            .domains
            .specs()
            .state_at(
                &*self.store,
                tenant,
                domain,
                id,
                Moment::Position(position),
                Some(0),
            )
            .await
        {
            Ok(at) => {
                let mut state = at.state;
                if let Some(privacy) = &self.privacy {
                    privacy
                        .reveal_value(tenant, &mut state, herald_privacy::Access::Plaintext)
                        .await
                        .map_err(|e| LookupError::Transient(e.to_string()))?;
                }
                Ok(Some(state))
            }
            Err(StateAtError::NoStream { .. } | StateAtError::NotYet { .. }) => Ok(None),
            Err(StateAtError::Store(e)) if !e.is_caller_error() => {
                Err(LookupError::Transient(e.to_string()))
            }
            Err(e) => Err(LookupError::Invalid(e.to_string())),
        }
    }
}
