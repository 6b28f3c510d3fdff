//! Typed domain events: a Rust type per event type and version, converted to
//! and from the envelope's JSON payload.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::envelope::NewEvent;
use crate::ids::{Domain, EventType, SchemaVersion};

/// A payload type bound to one event type and schema version.
pub trait TypedEvent: Serialize + DeserializeOwned {
    const DOMAIN: &'static str;
    const NAME: &'static str;
    const VERSION: u32;

    fn event_type() -> EventType {
        // The constants are checked by the registry tests, so they are valid.
        let domain = Domain::new(Self::DOMAIN).expect("a valid domain constant");
        EventType::new(&domain, Self::NAME).expect("a valid event name constant")
    }

    fn schema_version() -> SchemaVersion {
        SchemaVersion::new(Self::VERSION).expect("a valid version constant")
    }

    fn to_payload(&self) -> Value {
        serde_json::to_value(self).expect("typed events serialize to JSON objects")
    }

    fn from_payload(payload: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(payload)
    }

    /// A new event carrying this payload.
    fn to_new_event(&self) -> NewEvent {
        NewEvent::new(
            Self::event_type(),
            Self::schema_version(),
            self.to_payload(),
        )
    }
}
