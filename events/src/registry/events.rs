//! Events of the `registry` domain, version 1: the schema registry's own
//! history. A tenant's registrations are the events of its stream
//! `registry/schemas`, so the contracts in force are hash-chained, exported,
//! replayed and audited like every other event. Their schemas are
//! `schemas/registry/*.v1.json`.
//!
//! Only Herald appends these (through `POST /v1/schemas`, which checks
//! compatibility first); producers cannot publish them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compat::Compatibility;
use crate::declarative::UpcasterSpec;
use crate::envelope::EventEnvelope;
use crate::typed::{typed_events, TypedEvent};

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "registry";

/// The id of every tenant's registry stream (`registry/schemas`).
pub const STREAM_ID: &str = "schemas";

/// A version of a runtime event type was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistered {
    /// The event type, `domain.name`.
    pub event_type: String,
    /// Its schema version: 1 for a new type, then one more each time.
    pub version: u32,
    /// The JSON Schema (2020-12) its payloads must satisfy.
    pub schema: Value,
    /// The type's compatibility rule once this version is in.
    pub compatibility: Compatibility,
    /// How events of the previous version are brought to this one on
    /// read, when they are not already valid instances of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcaster: Option<UpcasterSpec>,
    /// True when every instance of the previous version is an instance of
    /// this one (decided when it was registered), so old events read as
    /// this version unchanged.
    #[serde(default)]
    pub reads_previous: bool,
}

/// A version is no longer accepted for new events; stored ones still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDeprecated {
    pub event_type: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A type's compatibility rule changed; the next version is checked by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibilitySet {
    pub event_type: String,
    pub compatibility: Compatibility,
}

typed_events! {
    SchemaRegistered => "schema_registered",
    SchemaDeprecated => "schema_deprecated",
    CompatibilitySet => "compatibility_set",
}

/// One change to a tenant's registry, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    Registered(SchemaRegistered),
    Deprecated(SchemaDeprecated),
    CompatibilitySet(CompatibilitySet),
}

impl RegistryChange {
    /// The change a stored event records: `None` for events of other
    /// domains, an error for a registry event whose payload does not read.
    pub fn from_envelope(envelope: &EventEnvelope) -> Option<Result<Self, String>> {
        if envelope.event_type.domain() != DOMAIN {
            return None;
        }
        let payload = envelope.payload.clone();
        let name = envelope.event_type.name();
        let change = if name == SchemaRegistered::NAME {
            SchemaRegistered::from_payload(payload).map(Self::Registered)
        } else if name == SchemaDeprecated::NAME {
            SchemaDeprecated::from_payload(payload).map(Self::Deprecated)
        } else if name == CompatibilitySet::NAME {
            CompatibilitySet::from_payload(payload).map(Self::CompatibilitySet)
        } else {
            return Some(Err(format!(
                "unknown registry event {}",
                envelope.event_type
            )));
        };
        Some(change.map_err(|e| {
            format!(
                "{} at position {}: {e}",
                envelope.event_type, envelope.position
            )
        }))
    }

    /// The event type the change is about.
    pub fn event_type(&self) -> &str {
        match self {
            Self::Registered(e) => &e.event_type,
            Self::Deprecated(e) => &e.event_type,
            Self::CompatibilitySet(e) => &e.event_type,
        }
    }

    pub fn to_new_event(&self) -> crate::NewEvent {
        match self {
            Self::Registered(e) => e.to_new_event(),
            Self::Deprecated(e) => e.to_new_event(),
            Self::CompatibilitySet(e) => e.to_new_event(),
        }
    }
}
