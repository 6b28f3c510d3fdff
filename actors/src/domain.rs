//! A domain's registration as the actor side sees it: its name, its event
//! types with their schemas and upcasters, how its actor group starts (and
//! any worker it runs beside it, like the timers' scheduler), and how an
//! aggregate's past state is folded ([`crate::state_at`]). A process holds a
//! list of them ([`DomainSpecs`]) and derives from that one list the event
//! registry, the actor groups and the state-at dispatch; the binary adds its
//! own per-domain parts (views, OpenAPI paths, read models) beside each.
//!
//! [`AggregateDomain`] registers a domain with an [`Aggregate`];
//! [`EventsDomain`] one that only has events (read models follow it, no
//! commands are taken).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use herald_events::schemas::parse_schema_path;
use herald_events::{
    Domain, EventRegistry, EventType, RegistryBuilder, RegistryError, SchemaVersion, TenantId,
};
use herald_store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aggregate::Aggregate;
use crate::group::{ActorRuntime, AggregateGroup, CommandTarget, Domains, GroupConfig};
use crate::state_at::{fold, Moment, StateAt, StateAtError};

/// What a domain's group is started with.
pub struct GroupParts<'a> {
    pub store: &'a Arc<dyn EventStore>,
    pub registry: &'a EventRegistry,
    pub runtime: &'a Arc<ActorRuntime>,
    pub config: &'a GroupConfig,
}

impl fmt::Debug for GroupParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupParts")
            .field("store", &self.store.backend())
            .field("config", self.config)
            .finish_non_exhaustive()
    }
}

/// A task a domain runs beside its group once every group of the process
/// exists (it is given them all), until the stop signal.
pub type Worker = Box<dyn FnOnce(Domains, watch::Receiver<bool>) -> JoinHandle<()> + Send>;

/// A started domain: its group, and its worker if it has one.
pub struct StartedGroup {
    pub group: Arc<dyn CommandTarget>,
    pub worker: Option<Worker>,
}

impl fmt::Debug for StartedGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartedGroup")
            .field("domain", &self.group.domain())
            .field("worker", &self.worker.is_some())
            .finish()
    }
}

/// One domain's registration on the actor side.
#[async_trait]
pub trait DomainSpec: Send + Sync + 'static {
    /// The domain: the first part of its streams and event types.
    fn name(&self) -> &'static str;

    /// Every event type and version its code declares; each must have a
    /// schema (shipped in `schemas/` or given by [`DomainSpec::register`]).
    fn event_types(&self) -> Vec<(EventType, SchemaVersion)>;

    /// Adds what the shipped `schemas/` do not hold: schemas of its own,
    /// upcasters.
    fn register(&self, builder: RegistryBuilder) -> Result<RegistryBuilder, RegistryError> {
        Ok(builder)
    }

    /// The commands it takes over `POST /v1/{domain}/{id}/{command}`; none
    /// when it has no aggregate.
    fn commands(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether [`DomainSpec::state_at`] folds its streams: every domain
    /// with an aggregate, and the registry, whose state is folded though it
    /// takes no commands.
    fn folds_state(&self) -> bool {
        !self.commands().is_empty()
    }

    /// Starts its actor group; `None` when it has no aggregate.
    fn start(&self, _parts: &GroupParts<'_>) -> Option<StartedGroup> {
        None
    }

    /// Its aggregate `id` of `tenant` as it was at `at`
    /// ([`crate::state_at`]); refused when it has no aggregate.
    async fn state_at(
        &self,
        _store: &dyn EventStore,
        _tenant: &TenantId,
        _id: &str,
        _at: Moment,
        _max_listed: Option<usize>,
    ) -> Result<StateAt, StateAtError> {
        Err(StateAtError::UnknownDomain {
            domain: self.name().to_owned(),
            known: Vec::new(),
        })
    }
}

impl fmt::Debug for dyn DomainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `(type name, version)` pairs of a domain, as `herald_events` declares
/// them, made into event types.
pub(crate) fn declared(domain: &str, types: &[(&str, u32)]) -> Vec<(EventType, SchemaVersion)> {
    let domain = Domain::new(domain).expect("a valid domain constant");
    types
        .iter()
        .map(|(name, version)| {
            (
                EventType::new(&domain, name).expect("a valid event name constant"),
                SchemaVersion::new(*version).expect("a valid version constant"),
            )
        })
        .collect()
}

/// Schema files `(path, text)` named `<domain>/<event>.v<N>.json`, added
/// to a registry.
fn add_schemas(
    mut builder: RegistryBuilder,
    schemas: &[(&str, &str)],
) -> Result<RegistryBuilder, RegistryError> {
    for (path, text) in schemas {
        let (event_type, version) = parse_schema_path(path)?;
        let schema = serde_json::from_str(text).map_err(|e| RegistryError::SchemaNotJson {
            path: (*path).to_owned(),
            reason: e.to_string(),
        })?;
        builder = builder.schema(event_type, version, schema)?;
    }
    Ok(builder)
}

/// A domain with an aggregate `A`.
pub struct AggregateDomain<A: Aggregate> {
    events: &'static [(&'static str, u32)],
    schemas: &'static [(&'static str, &'static str)],
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> fmt::Debug for AggregateDomain<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateDomain")
            .field("domain", &A::DOMAIN)
            .field("events", &self.events.len())
            .field("schemas", &self.schemas.len())
            .finish()
    }
}

impl<A: Aggregate> AggregateDomain<A> {
    /// `A`'s domain with its declared `(event, version)` pairs, whose
    /// schemas ship in `schemas/`.
    pub const fn new(events: &'static [(&'static str, u32)]) -> Self {
        Self {
            events,
            schemas: &[],
            aggregate: PhantomData,
        }
    }

    /// With schema files of its own, `(<domain>/<event>.v<N>.json, text)`
    /// (a domain built outside this workspace).
    pub const fn with_schemas(mut self, schemas: &'static [(&'static str, &'static str)]) -> Self {
        self.schemas = schemas;
        self
    }

    /// Its group, typed.
    pub fn group(parts: &GroupParts<'_>) -> AggregateGroup<A> {
        AggregateGroup::new(
            Arc::clone(parts.store),
            parts.registry.clone(),
            Arc::clone(parts.runtime),
            parts.config.clone(),
        )
    }
}

#[async_trait]
impl<A: Aggregate> DomainSpec for AggregateDomain<A> {
    fn name(&self) -> &'static str {
        A::DOMAIN
    }

    fn event_types(&self) -> Vec<(EventType, SchemaVersion)> {
        declared(A::DOMAIN, self.events)
    }

    fn register(&self, builder: RegistryBuilder) -> Result<RegistryBuilder, RegistryError> {
        add_schemas(builder, self.schemas)
    }

    fn commands(&self) -> &'static [&'static str] {
        A::COMMANDS
    }

    fn start(&self, parts: &GroupParts<'_>) -> Option<StartedGroup> {
        Some(StartedGroup {
            group: Arc::new(Self::group(parts)),
            worker: None,
        })
    }

    async fn state_at(
        &self,
        store: &dyn EventStore,
        tenant: &TenantId,
        id: &str,
        at: Moment,
        max_listed: Option<usize>,
    ) -> Result<StateAt, StateAtError> {
        fold::<A>(store, tenant, id, at, max_listed).await
    }
}

/// A domain of events only: no aggregate, no commands.
#[derive(Debug, Clone, Copy)]
pub struct EventsDomain {
    pub name: &'static str,
    pub events: &'static [(&'static str, u32)],
}

impl DomainSpec for EventsDomain {
    fn name(&self) -> &'static str {
        self.name
    }

    fn event_types(&self) -> Vec<(EventType, SchemaVersion)> {
        declared(self.name, self.events)
    }
}

/// The domains of a process, in order: the one list the registry, the
/// groups and the state-at dispatch come from.
#[derive(Clone, Default)]
pub struct DomainSpecs {
    specs: Vec<Arc<dyn DomainSpec>>,
}

impl fmt::Debug for DomainSpecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl FromIterator<Arc<dyn DomainSpec>> for DomainSpecs {
    fn from_iter<I: IntoIterator<Item = Arc<dyn DomainSpec>>>(iter: I) -> Self {
        Self {
            specs: iter.into_iter().collect(),
        }
    }
}

/// Every group started, and the workers to spawn once all exist.
pub struct StartedGroups {
    pub domains: Domains,
    pub workers: Vec<Worker>,
}

impl fmt::Debug for StartedGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartedGroups")
            .field("domains", &self.domains)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl DomainSpecs {
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DomainSpec>> {
        self.specs.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.specs.iter().map(|s| s.name())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DomainSpec>> {
        self.specs.iter().find(|s| s.name() == name)
    }

    /// The domains whose states fold ([`DomainSpec::folds_state`]), in
    /// order.
    pub fn with_state(&self) -> impl Iterator<Item = &Arc<dyn DomainSpec>> {
        self.specs.iter().filter(|s| s.folds_state())
    }

    /// The domains that have aggregates (take commands), in order.
    pub fn with_aggregates(&self) -> impl Iterator<Item = &Arc<dyn DomainSpec>> {
        self.specs.iter().filter(|s| !s.commands().is_empty())
    }

    /// The event registry: every shipped schema, each domain's own schemas
    /// and upcasters, and a check that every declared type has a schema.
    pub fn registry(&self) -> Result<EventRegistry, RegistryError> {
        let mut builder = EventRegistry::builder().embedded_schemas()?;
        for spec in &self.specs {
            builder = spec.register(builder)?;
        }
        builder = builder.require(self.specs.iter().flat_map(|s| s.event_types()))?;
        Ok(builder.build())
    }

    /// Starts every domain's group; their workers are the caller's to
    /// spawn, once it has every group.
    pub fn start(&self, parts: &GroupParts<'_>) -> StartedGroups {
        let mut domains = Domains::default();
        let mut workers = Vec::new();
        for spec in &self.specs {
            if let Some(started) = spec.start(parts) {
                domains = domains.with(started.group);
                workers.extend(started.worker);
            }
        }
        StartedGroups { domains, workers }
    }

    /// The state of `domain/id` of `tenant` at `at`, by the domain's own
    /// rules, with the events that made it (only the last `max_listed` of
    /// them when given).
    pub async fn state_at(
        &self,
        store: &dyn EventStore,
        tenant: &TenantId,
        domain: &str,
        id: &str,
        at: Moment,
        max_listed: Option<usize>,
    ) -> Result<StateAt, StateAtError> {
        match self.with_state().find(|s| s.name() == domain) {
            Some(spec) => spec.state_at(store, tenant, id, at, max_listed).await,
            None => Err(self.unknown(domain)),
        }
    }

    /// The refusal of a domain with no aggregate here.
    pub fn unknown(&self, domain: &str) -> StateAtError {
        StateAtError::UnknownDomain {
            domain: domain.chars().take(64).collect(),
            known: self.with_state().map(|s| s.name()).collect(),
        }
    }
}
