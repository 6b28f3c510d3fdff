//! Envelope codecs for the wire: JSON (readable, the HTTP form) and bincode
//! (compact, the broker default). Bincode cannot carry a free-form JSON value,
//! so its wire form holds the payload as canonical JSON text.

use bincode::{Decode, Encode};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::chain::{canonical_json, ChainHash};
use crate::envelope::EventEnvelope;
use crate::error::{CodecError, IdError};
use crate::ids::{EventId, EventType, Position, SchemaVersion, StreamId, StreamVersion, TenantId};

/// An envelope encoding, named on the wire by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    Json,
    #[default]
    Bincode,
}

impl Codec {
    pub const JSON_CONTENT_TYPE: &'static str = "application/vnd.herald.envelope.v1+json";
    pub const BINCODE_CONTENT_TYPE: &'static str = "application/vnd.herald.envelope.v1+bincode";

    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => Self::JSON_CONTENT_TYPE,
            Codec::Bincode => Self::BINCODE_CONTENT_TYPE,
        }
    }

    pub fn from_content_type(content_type: &str) -> Result<Self, CodecError> {
        match content_type {
            Self::JSON_CONTENT_TYPE => Ok(Codec::Json),
            Self::BINCODE_CONTENT_TYPE => Ok(Codec::Bincode),
            other => Err(CodecError::UnknownContentType(other.to_owned())),
        }
    }

    pub fn encode(self, event: &EventEnvelope) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::Json => Ok(serde_json::to_vec(event)?),
            Codec::Bincode => Ok(bincode::encode_to_vec(
                WireEnvelope::from(event),
                bincode::config::standard(),
            )?),
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Result<EventEnvelope, CodecError> {
        match self {
            Codec::Json => Ok(serde_json::from_slice(bytes)?),
            Codec::Bincode => {
                let (wire, read): (WireEnvelope, usize) =
                    bincode::decode_from_slice(bytes, bincode::config::standard())?;
                if read != bytes.len() {
                    return Err(CodecError::TrailingBytes(bytes.len() - read));
                }
                wire.try_into()
            }
        }
    }
}

/// The bincode wire form: plain fields, times as microseconds since the epoch.
#[derive(Encode, Decode)]
struct WireEnvelope {
    id: [u8; 16],
    tenant: String,
    stream: String,
    stream_version: u64,
    position: u64,
    event_type: String,
    version: u32,
    occurred_at_micros: i64,
    recorded_at_micros: i64,
    correlation_id: [u8; 16],
    causation_id: [u8; 16],
    producer: String,
    payload_json: String,
    hash: [u8; 32],
}

impl From<&EventEnvelope> for WireEnvelope {
    fn from(e: &EventEnvelope) -> Self {
        Self {
            id: *e.id.as_uuid().as_bytes(),
            tenant: e.tenant.as_str().to_owned(),
            stream: e.stream.as_str().to_owned(),
            stream_version: e.stream_version.get(),
            position: e.position.get(),
            event_type: e.event_type.as_str().to_owned(),
            version: e.version.get(),
            occurred_at_micros: e.occurred_at.timestamp_micros(),
            recorded_at_micros: e.recorded_at.timestamp_micros(),
            correlation_id: *e.correlation_id.as_bytes(),
            causation_id: *e.causation_id.as_bytes(),
            producer: e.producer.clone(),
            payload_json: canonical_json(&e.payload),
            hash: e.hash.0,
        }
    }
}

fn field<T>(field: &'static str, r: Result<T, IdError>) -> Result<T, CodecError> {
    r.map_err(|source| CodecError::Field { field, source })
}

fn time(field: &'static str, micros: i64) -> Result<DateTime<Utc>, CodecError> {
    DateTime::from_timestamp_micros(micros).ok_or(CodecError::OutOfRange { field })
}

impl TryFrom<WireEnvelope> for EventEnvelope {
    type Error = CodecError;

    fn try_from(w: WireEnvelope) -> Result<Self, Self::Error> {
        Ok(EventEnvelope {
            id: EventId(Uuid::from_bytes(w.id)),
            tenant: field("tenant", TenantId::new(w.tenant))?,
            stream: field("stream", StreamId::parse_stored(&w.stream))?,
            stream_version: StreamVersion(w.stream_version),
            position: Position(w.position),
            event_type: field("type", w.event_type.parse::<EventType>())?,
            version: field("version", SchemaVersion::new(w.version))?,
            occurred_at: time("occurred_at", w.occurred_at_micros)?,
            recorded_at: time("recorded_at", w.recorded_at_micros)?,
            correlation_id: Uuid::from_bytes(w.correlation_id),
            causation_id: Uuid::from_bytes(w.causation_id),
            producer: w.producer,
            payload: serde_json::from_str(&w.payload_json)?,
            hash: ChainHash(w.hash),
        })
    }
}
