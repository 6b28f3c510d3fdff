//! The event types producers register at run time, as this process keeps
//! them: it registers new versions (deciding against the tenant's registry
//! stream `registry/schemas` and appending at the version it decided at, so
//! two processes registering at once cannot both win), loads every tenant's
//! registry at start, follows the log so a
//! registration made by any process sharing the store is applied here
//! within moments, and reads the stream again when a publisher names a type
//! or version not known yet (so a producer that registers through one
//! process and publishes through another is never refused for the gap).
//!
//! The registry itself — the validators and upcasters every part of the
//! process uses — is the [`EventRegistry`] this fills; clones of it share
//! what is installed.

use std::sync::Arc;

use futures::StreamExt;
use herald_events::registry::decide::{self, Accepted, Refused, Registration, RegistryLimits};
use herald_events::registry::events::{self as registry_events, RegistryChange};
use herald_events::registry::runtime::Installed;
use herald_events::{
    EventRegistry, EventType, Position, SchemaVersion, StreamId, StreamVersion, TenantId,
};
use herald_store::{EventStore, ExpectedVersion, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Registry events read per page.
const PAGE: usize = 500;
/// Tries of a registration that lost the race for the registry stream.
const REGISTER_TRIES: usize = 5;

/// Why a registration or deprecation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the registry of tenant {tenant} kept changing while this registration was decided")]
    Contended { tenant: TenantId },
    /// The new domain's topic could not be made ready; nothing registered.
    #[error("the broker topic of domain {domain} is not ready: {source}")]
    Topic {
        domain: String,
        #[source]
        source: herald_brokers::BrokerError,
    },
}

/// This process's runtime types: registering, loading and following.
pub struct RuntimeSchemas {
    store: Arc<dyn EventStore>,
    registry: EventRegistry,
    limits: RegistryLimits,
    /// One read of a registry stream at a time: concurrent misses of one
    /// tenant wait for one read instead of each sending their own.
    reading: tokio::sync::Mutex<()>,
    /// Where the relay publishes: a type of a new domain gets its topic
    /// (`herald.<domain>`) made ready before it is registered.
    broker: Option<Arc<dyn herald_brokers::Broker>>,
}

impl std::fmt::Debug for RuntimeSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSchemas")
            .field("store", &self.store.backend())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The stream every tenant's registry is kept in.
pub fn registry_stream() -> StreamId {
    StreamId::parse_parts(registry_events::DOMAIN, registry_events::STREAM_ID)
        .expect("a valid stream constant")
}

impl RuntimeSchemas {
    pub fn new(store: Arc<dyn EventStore>, registry: EventRegistry) -> Self {
        Self {
            store,
            registry,
            limits: RegistryLimits::default(),
            reading: tokio::sync::Mutex::new(()),
            broker: None,
        }
    }

    /// Makes each new domain's topic ready on `broker` before registering
    /// its first type (Kafka creates it; the others declare as they go).
    pub fn with_broker(mut self, broker: Arc<dyn herald_brokers::Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    async fn prepare_topic(&self, event_type: &EventType) -> Result<(), RegisterError> {
        let Some(broker) = &self.broker else {
            return Ok(());
        };
        let Ok(domain) = herald_events::Domain::new(event_type.domain()) else {
            return Ok(());
        };
        broker
            .prepare_topics(&[herald_brokers::Topic::for_domain(&domain)], &[])
            .await
            .map_err(|source| RegisterError::Topic {
                domain: domain.as_str().to_owned(),
                source,
            })
    }

    pub fn registry(&self) -> &EventRegistry {
        &self.registry
    }

    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    /// Reads the tenant's registry stream past what is applied here.
    pub async fn refresh(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let _reading = self.reading.lock().await;
        let stream = registry_stream();
        loop {
            let from = self.registry.runtime().applied(tenant) + 1;
            let page = self
                .store
                .read_stream(tenant, &stream, StreamVersion(from), PAGE)
                .await?;
            let full = page.len() == PAGE;
            for envelope in &page {
                match RegistryChange::from_envelope(envelope) {
                    Some(Ok(change)) => {
                        self.registry.runtime().install(
                            tenant,
                            envelope.stream_version.get(),
                            &change,
                        );
                    }
                    Some(Err(reason)) => {
                        return Err(StoreError::Corrupt {
                            position: envelope.position,
                            detail: format!("the schema registry of tenant {tenant}: {reason}"),
                        })
                    }
                    None => {}
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Makes sure the types a publisher names are as current as the store:
    /// the tenant's registry is read again when a named runtime type or
    /// version is not known here — it may have just been registered through
    /// another process ([`RuntimeSchemas::catch_up`]). Every other case
    /// costs nothing: the registry was loaded at start and the follower
    /// keeps it current.
    pub async fn prefetch<'a>(
        &self,
        tenant: &TenantId,
        named: impl IntoIterator<Item = (&'a str, Option<u64>)>,
    ) -> Result<(), StoreError> {
        let missing = named.into_iter().any(|(event_type, version)| {
            let Ok(event_type) = event_type.parse::<EventType>() else {
                return false;
            };
            if self.registry.is_builtin(&event_type) {
                return false;
            }
            let Some(version) = version
                .and_then(|v| u32::try_from(v).ok())
                .and_then(|v| SchemaVersion::new(v).ok())
            else {
                return false;
            };
            !self.registry.knows(tenant, &event_type, version)
        });
        if missing {
            self.catch_up(tenant).await?;
        }
        Ok(())
    }

    /// Reads the tenant's registry stream again if the store holds more of
    /// it than this process applied: the check of a miss, one indexed
    /// lookup when nothing is new.
    pub async fn catch_up(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let stored = self
            .store
            .stream_version(tenant, &registry_stream())
            .await?;
        if stored.get() > self.registry.runtime().applied(tenant) {
            self.refresh(tenant).await?;
        }
        Ok(())
    }

    /// Registers a version, or answers why not. A repeat of the latest
    /// registration answers it again and appends nothing.
    pub async fn register(
        &self,
        tenant: &TenantId,
        registration: Registration,
    ) -> Result<(Accepted, Option<Position>), RegisterError> {
        for _ in 0..REGISTER_TRIES {
            self.refresh(tenant).await?;
            let (applied, accepted) = self.decide(tenant, registration.clone())?;
            if accepted.changes.is_empty() {
                return Ok((accepted, None));
            }
            if accepted.version == 1 {
                self.prepare_topic(&registration.event_type).await?;
            }
            match self.append(tenant, applied, &accepted.changes).await {
                Ok(position) => return Ok((accepted, Some(position))),
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RegisterError::Contended {
            tenant: tenant.clone(),
        })
    }

    /// What registering would do, without registering: the check a
    /// producer's CI runs.
    pub async fn check(
        &self,
        tenant: &TenantId,
        registration: Registration,
    ) -> Result<Accepted, RegisterError> {
        self.refresh(tenant).await?;
        Ok(self.decide(tenant, registration)?.1)
    }

    fn decide(
        &self,
        tenant: &TenantId,
        registration: Registration,
    ) -> Result<(u64, Accepted), Refused> {
        let current = self.registry.runtime().tenant(tenant);
        let applied = current.as_ref().map_or(0, |t| t.applied());
        let empty = herald_events::RegisteredTypes::default();
        let folded = current.as_ref().map_or(&empty, |t| t.registered());
        let builtin = self.registry.builtin_domains();
        decide::register(folded, &builtin, registration, &self.limits).map(|a| (applied, a))
    }

    /// Deprecates a version; deprecating it again changes nothing.
    pub async fn deprecate(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: u32,
        reason: Option<String>,
    ) -> Result<bool, RegisterError> {
        self.change(tenant, |folded| {
            decide::deprecate(folded, event_type, version, reason.clone())
        })
        .await
    }

    /// Sets a type's rule for its next version; setting the rule it has
    /// changes nothing.
    pub async fn set_compatibility(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        compatibility: herald_events::Compatibility,
    ) -> Result<bool, RegisterError> {
        self.change(tenant, |folded| {
            decide::set_compatibility(folded, event_type, compatibility)
        })
        .await
    }

    /// Decides changes against the tenant's registry as stored and appends
    /// them at the version decided at, deciding again if another process
    /// moved the stream first; whether anything changed.
    async fn change(
        &self,
        tenant: &TenantId,
        decide: impl Fn(&herald_events::RegisteredTypes) -> Result<Vec<RegistryChange>, Refused>,
    ) -> Result<bool, RegisterError> {
        for _ in 0..REGISTER_TRIES {
            self.refresh(tenant).await?;
            let current = self.registry.runtime().tenant(tenant);
            let applied = current.as_ref().map_or(0, |t| t.applied());
            let empty = herald_events::RegisteredTypes::default();
            let folded = current.as_ref().map_or(&empty, |t| t.registered());
            let changes = decide(folded)?;
            if changes.is_empty() {
                return Ok(false);
            }
            match self.append(tenant, applied, &changes).await {
                Ok(_) => return Ok(true),
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RegisterError::Contended {
            tenant: tenant.clone(),
        })
    }

    /// Appends changes decided at registry stream version `applied`, and
    /// installs them here at once (read-your-writes for the caller).
    async fn append(
        &self,
        tenant: &TenantId,
        applied: u64,
        changes: &[RegistryChange],
    ) -> Result<Position, StoreError> {
        let events = changes.iter().map(RegistryChange::to_new_event).collect();
        let outcome = self
            .store
            .append(
                tenant,
                &registry_stream(),
                ExpectedVersion::Exact(StreamVersion(applied)),
                events,
            )
            .await?;
        for (change, appended) in changes.iter().zip(&outcome.events) {
            self.registry
                .runtime()
                .install(tenant, appended.stream_version.get(), change);
        }
        Ok(outcome.first_position())
    }

    /// Starts this process's registry: follows the log from its head, then
    /// loads every tenant's registry that has one (found through the event
    /// type's index, not by reading the log), so that parts that validate
    /// without a request — a timer delivering a runtime type — know every
    /// type from the start. What commits while the tenants load is seen by
    /// the follower, which started first. The follower runs until `stop`.
    pub async fn start(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, StoreError> {
        let head = self.store.head().await?.position;
        let follower = Arc::clone(&self).follow(head.next(), stop);
        let registered: EventType = format!(
            "{}.{}",
            registry_events::DOMAIN,
            <registry_events::SchemaRegistered as herald_events::TypedEvent>::NAME
        )
        .parse()
        .expect("a valid type constant");
        let tenants = self.store.tenants_with_type(&registered).await?;
        for tenant in &tenants {
            self.refresh(tenant).await?;
        }
        if !tenants.is_empty() {
            tracing::info!(
                tenants = tenants.len(),
                "Loaded the tenants' schema registries."
            );
        }
        Ok(follower)
    }

    /// Follows the log from `from` and applies every registry event, of
    /// any tenant, as it commits; a gap (events this process has not seen
    /// yet before it) reads the tenant's stream. Runs until `stop`.
    fn follow(self: Arc<Self>, from: Position, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut events = self.store.subscribe_all(from);
            loop {
                let next = tokio::select! {
                    _ = stop.changed() => break,
                    next = events.next() => next,
                };
                let Some(next) = next else { break };
                let envelope = match next {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(error = %e, "the schema registry's follower of the log failed a read");
                        continue;
                    }
                };
                let Some(change) = RegistryChange::from_envelope(&envelope) else {
                    continue;
                };
                let installed = match change {
                    Ok(change) => self.registry.runtime().install(
                        &envelope.tenant,
                        envelope.stream_version.get(),
                        &change,
                    ),
                    Err(reason) => {
                        tracing::error!(%reason, "a registry event does not read");
                        continue;
                    }
                };
                if let Installed::Gap { .. } = installed {
                    if let Err(e) = self.refresh(&envelope.tenant).await {
                        tracing::warn!(error = %e, tenant = %envelope.tenant, "reading a tenant's schema registry failed");
                    }
                }
            }
        })
    }
}
