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
pub use typed::TypedEvent;

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
    builder: RegistryBuilder,
) -> Result<RegistryBuilder, RegistryError> {
    // No domain has a second version yet.
    Ok(builder)
}
