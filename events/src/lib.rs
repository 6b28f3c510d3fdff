//! Herald's events: the envelope every event travels in, the identifiers in
//! it, every domain's event types and versions, the registry that validates
//! payloads against `schemas/` and upcasts old versions, the JSON and bincode
//! codecs, and the audit hash chain. This crate does no I/O.

pub mod automations;
pub mod backoff;
pub mod chain;
pub mod codec;
pub mod compat;
pub mod declarative;
pub mod drafts;
pub mod edges;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod registry;
pub mod schemas;
pub mod statistics;
pub mod subjects;
pub mod tickets;
pub mod timers;
pub mod typed;

pub use backoff::Backoff;
pub use chain::{chain_hash, ChainHash};
pub use codec::Codec;
pub use compat::{Compatibility, Incompatibility};
pub use declarative::UpcasterSpec;
pub use envelope::{EventEnvelope, NewEvent};
pub use error::{
    CodecError, IdError, RegistryError, SchemaViolation, UpcastError, ValidationError,
};
pub use ids::{
    Domain, EventId, EventType, Position, SchemaVersion, StreamId, StreamVersion, TenantId,
};
pub use registry::events::RegistryChange;
pub use registry::personal::PersonalField;
pub use registry::runtime::{RegisteredTypes, RuntimeTypes};
pub use registry::{EventRegistry, RegistryBuilder, Upcaster};
pub use typed::{StoredPayloadError, TypedEvent};

/// Every event type and version that domain code declares; each must have a
/// schema file.
pub fn declared_event_types() -> Vec<(EventType, SchemaVersion)> {
    let domains: &[(&str, &[(&str, u32)])] = &[
        (tickets::DOMAIN, tickets::EVENT_TYPES),
        (edges::DOMAIN, edges::EVENT_TYPES),
        (timers::DOMAIN, timers::EVENT_TYPES),
        (drafts::DOMAIN, drafts::EVENT_TYPES),
        (statistics::DOMAIN, statistics::EVENT_TYPES),
        (registry::events::DOMAIN, registry::events::EVENT_TYPES),
        (automations::DOMAIN, automations::EVENT_TYPES),
        (subjects::DOMAIN, subjects::EVENT_TYPES),
    ];
    domains
        .iter()
        .flat_map(|(domain, types)| {
            types.iter().map(move |(name, version)| {
                let domain = Domain::new(*domain).expect("a valid domain constant");
                (
                    EventType::new(&domain, name).expect("a valid event name constant"),
                    SchemaVersion::new(*version).expect("a valid version constant"),
                )
            })
        })
        .collect()
}

/// Registers every domain's upcasters. Each released vN → vN+1 change adds
/// one here.
pub(crate) fn register_upcasters(
    mut builder: RegistryBuilder,
) -> Result<RegistryBuilder, RegistryError> {
    for (event_type, from, spec) in builtin_upcasters().iter().cloned() {
        builder = builder.upcaster(event_type, from, move |payload| spec.apply(payload))?;
    }
    Ok(builder)
}

/// Every built-in domain's released vN → vN+1 upcasters, as declarative
/// specs: (event type, from version, spec).
pub fn builtin_upcasters() -> &'static [(EventType, SchemaVersion, UpcasterSpec)] {
    static UPCASTERS: std::sync::LazyLock<Vec<(EventType, SchemaVersion, UpcasterSpec)>> =
        std::sync::LazyLock::new(|| {
            let domain = Domain::new(timers::DOMAIN).expect("a valid domain constant");
            timers::upcasts()
                .into_iter()
                .map(|(name, from, spec)| {
                    (
                        EventType::new(&domain, name).expect("a valid event name constant"),
                        SchemaVersion::new(from).expect("a valid version constant"),
                        spec,
                    )
                })
                .collect()
        });
    &UPCASTERS
}

/// `payload` of the built-in type `domain.name` at `version`, upcast
/// through each later version's upcaster to the latest.
pub(crate) fn upcast_builtin(
    domain: &str,
    name: &str,
    version: u32,
    mut payload: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let mut at = version;
    loop {
        let next = builtin_upcasters()
            .iter()
            .find(|(t, from, _)| t.domain() == domain && t.name() == name && from.get() == at);
        match next {
            Some((_, _, spec)) => {
                payload = spec.apply(payload)?;
                at += 1;
            }
            None if at == version => {
                return Err(format!(
                    "{domain}.{name} has no upcaster from version {version}"
                ))
            }
            None => return Ok(payload),
        }
    }
}
