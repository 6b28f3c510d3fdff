//! Typed domain events: a Rust type per event type and version, converted to
//! and from the envelope's JSON payload.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::envelope::NewEvent;
use crate::ids::{Domain, EventType, SchemaVersion};

/// Why a stored payload cannot be read as its typed event.
#[derive(Debug, thiserror::Error)]
pub enum StoredPayloadError {
    #[error("version {version} is not known here (the latest known is {known})")]
    UnknownVersion { version: u32, known: u32 },
    #[error("the upcaster from an older version failed: {0}")]
    Upcast(String),
    #[error(transparent)]
    Payload(serde_json::Error),
}

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

    /// Reads a stored payload written at `version`: as is at
    /// [`TypedEvent::VERSION`], through the built-in upcasters from an
    /// older one. A newer version than the code knows is refused.
    fn from_stored(version: u32, payload: &Value) -> Result<Self, StoredPayloadError> {
        if version == Self::VERSION {
            return Self::deserialize(payload).map_err(StoredPayloadError::Payload);
        }
        if version > Self::VERSION || version == 0 {
            return Err(StoredPayloadError::UnknownVersion {
                version,
                known: Self::VERSION,
            });
        }
        let upcast = crate::upcast_builtin(Self::DOMAIN, Self::NAME, version, payload.clone())
            .map_err(StoredPayloadError::Upcast)?;
        Self::deserialize(&upcast).map_err(StoredPayloadError::Payload)
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

/// Implements [`TypedEvent`] for each payload type of a domain module, at
/// version 1 or the one given (`Type => "name" @ 2`), and defines the
/// module's `EVENT_TYPES` (every event type of the domain with its current
/// version). The calling module must define `DOMAIN`.
macro_rules! typed_events {
    ($($ty:ident => $name:literal $(@ $version:literal)?),* $(,)?) => {
        $(impl $crate::typed::TypedEvent for $ty {
            const DOMAIN: &'static str = DOMAIN;
            const NAME: &'static str = $name;
            const VERSION: u32 = $crate::typed::typed_events!(@version $($version)?);
        })*

        /// Every event type of the domain with its current version.
        pub const EVENT_TYPES: &[(&str, u32)] =
            &[$(($name, $crate::typed::typed_events!(@version $($version)?))),*];
    };
    (@version) => { 1 };
    (@version $version:literal) => { $version };
}
pub(crate) use typed_events;

/// Helpers for the domain modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::fmt::Debug;
    use std::sync::LazyLock;

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::TypedEvent;
    use crate::registry::EventRegistry;
    use crate::schemas::embedded_schema_files;

    static REGISTRY: LazyLock<EventRegistry> =
        LazyLock::new(|| EventRegistry::builtin().expect("the builtin registry builds"));

    /// The registry Herald runs with (built once per test binary).
    pub(crate) fn registry() -> EventRegistry {
        REGISTRY.clone()
    }

    /// The event names of `domain` that have a v1 schema file, sorted.
    pub(crate) fn domain_schema_names(domain: &str) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = embedded_schema_files()
            .unwrap()
            .into_iter()
            .filter(|f| f.event_type.domain() == domain && f.version.get() == 1)
            .map(|f| {
                f.path
                    .strip_prefix(domain)
                    .and_then(|p| p.strip_prefix('/'))
                    .and_then(|p| p.strip_suffix(".v1.json"))
                    .unwrap()
            })
            .collect();
        names.sort_unstable();
        names
    }

    /// The event's payload passes its schema, and it reads back equal both
    /// from the payload value and from JSON text.
    pub(crate) fn check<T: TypedEvent + PartialEq + Debug>(
        registry: &EventRegistry,
        event: &T,
    ) -> Result<(), TestCaseError> {
        let payload = event.to_payload();
        prop_assert!(payload.is_object(), "{payload}");
        registry
            .validate(&T::event_type(), T::schema_version(), &payload)
            .map_err(|e| TestCaseError::fail(format!("{e}\npayload: {payload}")))?;
        let back =
            T::from_payload(payload.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, event);
        prop_assert_eq!(back.to_payload(), payload);
        let text = serde_json::to_string(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed: T =
            serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, event);
        Ok(())
    }

    pub(crate) fn assert_valid_and_round_trips<T: TypedEvent + PartialEq + Debug>(
        registry: &EventRegistry,
        event: &T,
    ) {
        if let Err(e) = check(registry, event) {
            panic!("{} {event:?}: {e}", T::event_type());
        }
    }

    /// Neither the schema nor the Rust type accepts `payload`.
    pub(crate) fn assert_refused<T: TypedEvent + Debug>(registry: &EventRegistry, payload: Value) {
        assert_schema_refuses::<T>(registry, &payload);
        if let Ok(e) = T::from_payload(payload.clone()) {
            panic!("{} read {payload} as {e:?}", T::event_type());
        }
    }

    /// The schema refuses `payload`.
    pub(crate) fn assert_schema_refuses<T: TypedEvent>(registry: &EventRegistry, payload: &Value) {
        assert!(
            registry
                .validate(&T::event_type(), T::schema_version(), payload)
                .is_err(),
            "{} v{} accepted {payload}",
            T::event_type(),
            T::schema_version()
        );
    }

    pub(crate) fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 äé日本-]{1,40}"
    }

    pub(crate) fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    /// Instants from 1970 to 9999 (RFC 3339 has four-digit years), whole
    /// seconds or with nanoseconds.
    pub(crate) fn time() -> impl Strategy<Value = DateTime<Utc>> {
        let nanos = prop_oneof![Just(0u32), 0u32..1_000_000_000];
        (0i64..253_402_300_800, nanos)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).expect("in chrono's range"))
    }
}
