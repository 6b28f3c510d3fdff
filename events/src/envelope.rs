//! The envelope every stored event travels in, and the shape of an event that
//! is about to be appended. Times are kept at microsecond precision, the
//! precision every store backend keeps, so what is hashed is what is stored.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::chain::ChainHash;
use crate::ids::{EventId, EventType, Position, SchemaVersion, StreamId, StreamVersion, TenantId};

/// Truncates a time to the microsecond precision every store keeps.
pub fn to_stored_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// A committed event as read from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: EventId,
    pub tenant: TenantId,
    #[serde(deserialize_with = "StreamId::deserialize_stored")]
    pub stream: StreamId,
    pub stream_version: StreamVersion,
    pub position: Position,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub version: SchemaVersion,
    #[serde(with = "micros")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub recorded_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub producer: String,
    pub payload: Value,
    pub hash: ChainHash,
}

/// Times written as the chain and the stores write them
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), read from any RFC 3339 form.
mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::chain::canonical_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// An event proposed for appending. The store adds the tenant, stream,
/// stream version, position, record time and hash when it commits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub version: SchemaVersion,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub producer: String,
    pub payload: Value,
}

impl NewEvent {
    /// The producer recorded when none is named.
    pub const DEFAULT_PRODUCER: &'static str = "herald";

    /// A new event with a fresh v7 id, occurring now, starting its own
    /// correlation (correlation and causation ids are its own id).
    pub fn new(event_type: EventType, version: SchemaVersion, payload: Value) -> Self {
        let id = EventId::new_v7();
        Self {
            id,
            event_type,
            version,
            occurred_at: to_stored_precision(Utc::now()),
            correlation_id: id.as_uuid(),
            causation_id: id.as_uuid(),
            producer: Self::DEFAULT_PRODUCER.to_owned(),
            payload,
        }
    }

    pub fn with_id(mut self, id: EventId) -> Self {
        if self.correlation_id == self.id.as_uuid() {
            self.correlation_id = id.as_uuid();
        }
        if self.causation_id == self.id.as_uuid() {
            self.causation_id = id.as_uuid();
        }
        self.id = id;
        self
    }

    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = to_stored_precision(at);
        self
    }

    pub fn producer(mut self, producer: impl Into<String>) -> Self {
        self.producer = producer.into();
        self
    }

    /// Marks this event as caused by `cause`, inheriting its correlation.
    pub fn caused_by(mut self, cause: &EventEnvelope) -> Self {
        self.correlation_id = cause.correlation_id;
        self.causation_id = cause.id.as_uuid();
        self
    }

    pub fn correlation(mut self, correlation_id: Uuid, causation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self.causation_id = causation_id;
        self
    }
}
