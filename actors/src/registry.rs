//! The schema registry as a domain: each tenant's stream
//! `registry/schemas` folds into the runtime types it registered
//! ([`SchemaRegistry`]), so `herald replay state registry schemas --at …`
//! and `GET /v1/streams/registry/schemas?at=…` show the contracts in force
//! at any instant, with the same fold the running registry uses. It takes
//! no commands here: registrations go through `POST /v1/schemas`, which
//! checks compatibility and appends these events itself.

use async_trait::async_trait;
use herald_events::registry::events::{
    CompatibilitySet, RegistryChange, SchemaDeprecated, SchemaRegistered, DOMAIN, EVENT_TYPES,
};
use herald_events::{EventType, RegisteredTypes, SchemaVersion, TenantId};
use herald_store::EventStore;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, CommandContext, Refusal};
use crate::domain::DomainSpec;
use crate::state_at::{fold, Moment, StateAt, StateAtError};

crate::domain_events! {
    /// Every change to a tenant's registry.
    pub enum RegistryEvent for herald_events::registry::events::DOMAIN {
        Registered(SchemaRegistered),
        Deprecated(SchemaDeprecated),
        CompatibilitySet(CompatibilitySet),
    }
}

impl RegistryEvent {
    fn change(&self) -> RegistryChange {
        match self {
            Self::Registered(e) => RegistryChange::Registered(e.clone()),
            Self::Deprecated(e) => RegistryChange::Deprecated(e.clone()),
            Self::CompatibilitySet(e) => RegistryChange::CompatibilitySet(e.clone()),
        }
    }
}

/// No command reaches the registry through the actor runtime.
#[derive(Debug, Clone, Deserialize)]
pub enum RegistryCommand {}

/// A tenant's registry: its runtime types, as its stream folds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaRegistry(pub RegisteredTypes);

impl Aggregate for SchemaRegistry {
    const DOMAIN: &'static str = DOMAIN;
    const STATE_VERSION: u32 = 1;
    const COMMANDS: &'static [&'static str] = &[];
    type Command = RegistryCommand;
    type Event = RegistryEvent;

    fn apply(&mut self, event: &RegistryEvent) {
        self.0.apply(&event.change());
    }

    fn decide(
        &self,
        command: RegistryCommand,
        _ctx: &CommandContext,
    ) -> Result<Vec<RegistryEvent>, Refusal> {
        match command {}
    }
}

/// The registry domain's registration: its events, and its state at an
/// instant; no actor group.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryDomain;

#[async_trait]
impl DomainSpec for RegistryDomain {
    fn name(&self) -> &'static str {
        DOMAIN
    }

    fn event_types(&self) -> Vec<(EventType, SchemaVersion)> {
        crate::domain::declared(DOMAIN, EVENT_TYPES)
    }

    fn folds_state(&self) -> bool {
        true
    }

    async fn state_at(
        &self,
        store: &dyn EventStore,
        tenant: &TenantId,
        id: &str,
        at: Moment,
        max_listed: Option<usize>,
    ) -> Result<StateAt, StateAtError> {
        fold::<SchemaRegistry>(store, tenant, id, at, max_listed).await
    }
}
