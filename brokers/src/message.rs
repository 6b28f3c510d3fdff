//! What travels on the broker: topic and consumer-group names, the wire
//! message (headers and body), how an event becomes one (the codec's
//! encoding, or a claim check when it is too large) and how a delivered one
//! is read back, and the partition an event's stream maps to.
//!
//! Naming: one topic per domain, `herald.<domain>` (a Kafka topic; on
//! RabbitMQ an exchange of that name with one queue per shard and group).
//! Dead letters of a group go to `herald.dlq.<group>`.

use std::fmt;

use herald_events::{Codec, Domain, EventEnvelope, EventId, Position, StreamId, TenantId};

use crate::error::{BrokerError, DecodeError};

/// Content type of the body (`application/vnd.herald.envelope.v1+bincode` or `+json`).
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// The event's id.
pub const HEADER_EVENT_ID: &str = "herald-event-id";
/// The event's global position.
pub const HEADER_POSITION: &str = "herald-position";
/// The event's tenant.
pub const HEADER_TENANT: &str = "herald-tenant";
/// The event's stream, `domain/id`.
pub const HEADER_STREAM: &str = "herald-stream";
/// The event's type.
pub const HEADER_TYPE: &str = "herald-type";
/// `1` when the body is empty and the event must be loaded from the store by position.
pub const HEADER_CLAIM_CHECK: &str = "herald-claim-check";
/// On a dead letter: why it was rejected.
pub const HEADER_ERROR: &str = "herald-error";
/// On a dead letter: the consumer group that rejected it.
pub const HEADER_GROUP: &str = "herald-group";
/// On a dead letter: the topic it was consumed from.
pub const HEADER_ORIGINAL_TOPIC: &str = "herald-original-topic";

/// Default largest body sent inline (1 MiB); larger events travel as claim checks.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default partitions per topic (shard queues per domain on RabbitMQ).
pub const DEFAULT_PARTITIONS: u32 = 4;

fn check_name(kind: &'static str, value: &str, max: usize) -> Result<(), BrokerError> {
    const RULE: &str = "1 to 100 characters of a-z, 0-9, '.', '_' or '-'";
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidName {
            kind,
            value: value.chars().take(120).collect(),
            rule: RULE,
        })
    }
}

/// A topic: `herald.<domain>` for a domain's events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(String);

impl Topic {
    pub const PREFIX: &'static str = "herald.";

    /// The topic carrying a domain's events.
    pub fn for_domain(domain: &Domain) -> Self {
        Self(format!("{}{}", Self::PREFIX, domain.as_str()))
    }

    /// Any well-formed topic name (ingest topics, dead-letter topics).
    pub fn named(name: impl Into<String>) -> Result<Self, BrokerError> {
        let name = name.into();
        check_name("topic", &name, 200)?;
        Ok(Self(name))
    }

    /// The dead-letter topic of a consumer group.
    pub fn dead_letters(group: &ConsumerGroup) -> Self {
        Self(format!("{}dlq.{}", Self::PREFIX, group.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A consumer group: every group gets every message of its topics once,
/// spread over the group's members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerGroup(String);

impl ConsumerGroup {
    pub fn new(name: impl Into<String>) -> Result<Self, BrokerError> {
        let name = name.into();
        check_name("consumer group", &name, 100)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConsumerGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How events are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireSettings {
    pub codec: Codec,
    /// Largest body sent inline; a larger event travels as a claim check.
    pub max_message_bytes: usize,
    /// Partitions per topic; a stream always maps to the same one.
    pub partitions: u32,
}

impl Default for WireSettings {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

/// A message as the broker carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    pub topic: Topic,
    pub partition: u32,
    /// The partition key: `tenant/domain/id` of the event's stream.
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WireMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header called `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The partition key of a stream.
pub fn partition_key(tenant: &TenantId, stream: &StreamId) -> String {
    format!("{}/{}", tenant.as_str(), stream.as_str())
}

/// The partition a key maps to: FNV-1a (64 bit) of the key, modulo the
/// partition count. Fixed here rather than left to each broker's client so
/// every backend puts a stream in the same partition.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// Encodes an event for the wire (a claim check when the body is too large).
pub fn encode(event: &EventEnvelope, settings: &WireSettings) -> Result<WireMessage, BrokerError> {
    let body = settings
        .codec
        .encode(event)
        .map_err(|e| BrokerError::Encode {
            position: event.position.get(),
            detail: e.to_string(),
        })?;
    let key = partition_key(&event.tenant, &event.stream);
    let mut headers = vec![
        (
            HEADER_CONTENT_TYPE.to_owned(),
            settings.codec.content_type().to_owned(),
        ),
        (HEADER_EVENT_ID.to_owned(), event.id.to_string()),
        (HEADER_POSITION.to_owned(), event.position.to_string()),
        (HEADER_TENANT.to_owned(), event.tenant.to_string()),
        (HEADER_STREAM.to_owned(), event.stream.to_string()),
        (HEADER_TYPE.to_owned(), event.event_type.to_string()),
    ];
    let body = if body.len() > settings.max_message_bytes {
        headers.push((HEADER_CLAIM_CHECK.to_owned(), "1".to_owned()));
        Vec::new()
    } else {
        body
    };
    Ok(WireMessage {
        topic: Topic::for_domain(event.stream.domain()),
        partition: partition_for(&key, settings.partitions),
        key,
        headers,
        body,
    })
}

/// An event too large to travel inline: what is needed to load it from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCheck {
    pub position: Position,
    pub id: EventId,
    pub tenant: TenantId,
    pub stream: StreamId,
}

/// What a delivered message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Event(Box<EventEnvelope>),
    ClaimCheck(ClaimCheck),
}

impl Payload {
    /// The event's id, either way.
    pub fn event_id(&self) -> EventId {
        match self {
            Payload::Event(e) => e.id,
            Payload::ClaimCheck(c) => c.id,
        }
    }

    /// The event's position, either way.
    pub fn position(&self) -> Position {
        match self {
            Payload::Event(e) => e.position,
            Payload::ClaimCheck(c) => c.position,
        }
    }

    /// The event, loading it through `loader` when this is a claim check.
    pub async fn resolve<L: EventLoader + ?Sized>(
        self,
        loader: &L,
    ) -> Result<EventEnvelope, ResolveError> {
        match self {
            Payload::Event(e) => Ok(*e),
            Payload::ClaimCheck(c) => match loader.load(c.position).await {
                Ok(Some(e)) if e.id == c.id => Ok(e),
                Ok(Some(e)) => Err(ResolveError::Mismatch {
                    position: c.position,
                    expected: c.id,
                    found: e.id,
                }),
                Ok(None) => Err(ResolveError::Missing {
                    position: c.position,
                }),
                Err(detail) => Err(ResolveError::Load {
                    position: c.position,
                    detail,
                }),
            },
        }
    }
}

/// Loads a stored event by position, to resolve claim checks.
#[async_trait::async_trait]
pub trait EventLoader: Send + Sync {
    async fn load(&self, position: Position) -> Result<Option<EventEnvelope>, String>;
}

/// Why a claim check could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("claim check for position {position}: no such event in the store")]
    Missing { position: Position },
    #[error("claim check for position {position} names event {expected}, the store has {found}")]
    Mismatch {
        position: Position,
        expected: EventId,
        found: EventId,
    },
    #[error("claim check for position {position}: the store failed: {detail}")]
    Load { position: Position, detail: String },
}

fn required<'a>(
    headers: &'a [(String, String)],
    name: &'static str,
) -> Result<&'a str, DecodeError> {
    header(headers, name).ok_or(DecodeError::MissingHeader(name))
}

fn parsed<T: std::str::FromStr>(
    headers: &[(String, String)],
    name: &'static str,
) -> Result<T, DecodeError>
where
    T::Err: fmt::Display,
{
    required(headers, name)?
        .parse()
        .map_err(|e: T::Err| DecodeError::BadHeader {
            header: name,
            detail: e.to_string(),
        })
}

/// Reads a delivered message back.
pub fn decode(headers: &[(String, String)], body: &[u8]) -> Result<Payload, DecodeError> {
    if header(headers, HEADER_CLAIM_CHECK) == Some("1") {
        return Ok(Payload::ClaimCheck(ClaimCheck {
            position: Position(parsed(headers, HEADER_POSITION)?),
            id: parsed(headers, HEADER_EVENT_ID)?,
            tenant: parsed(headers, HEADER_TENANT)?,
            // As stored: it may name a stream no longer accepted anew.
            stream: StreamId::parse_stored(required(headers, HEADER_STREAM)?).map_err(|e| {
                DecodeError::BadHeader {
                    header: HEADER_STREAM,
                    detail: e.to_string(),
                }
            })?,
        }));
    }
    let codec = Codec::from_content_type(required(headers, HEADER_CONTENT_TYPE)?)?;
    Ok(Payload::Event(Box::new(codec.decode(body)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_events::{ChainHash, SchemaVersion, StreamVersion};

    fn event(payload_len: usize) -> EventEnvelope {
        let now = chrono_now();
        EventEnvelope {
            id: EventId::new_v7(),
            tenant: TenantId::default_tenant(),
            stream: "tickets/T-1".parse().unwrap(),
            stream_version: StreamVersion(1),
            position: Position(7),
            event_type: "tickets.note_appended".parse().unwrap(),
            version: SchemaVersion::V1,
            occurred_at: now,
            recorded_at: now,
            correlation_id: EventId::new_v7().as_uuid(),
            causation_id: EventId::new_v7().as_uuid(),
            producer: "test".into(),
            payload: serde_json::json!({"note": "x".repeat(payload_len)}),
            hash: ChainHash::GENESIS,
        }
    }

    fn chrono_now() -> chrono::DateTime<chrono::Utc> {
        herald_events::envelope::to_stored_precision(chrono::Utc::now())
    }

    #[test]
    fn events_round_trip_in_both_codecs() {
        for codec in [Codec::Bincode, Codec::Json] {
            let settings = WireSettings {
                codec,
                ..WireSettings::default()
            };
            let e = event(10);
            let m = encode(&e, &settings).unwrap();
            assert_eq!(m.topic.as_str(), "herald.tickets");
            assert_eq!(m.header(HEADER_CONTENT_TYPE), Some(codec.content_type()));
            assert_eq!(
                decode(&m.headers, &m.body).unwrap(),
                Payload::Event(Box::new(e))
            );
        }
    }

    #[test]
    fn large_events_become_claim_checks() {
        let settings = WireSettings {
            max_message_bytes: 100,
            ..WireSettings::default()
        };
        let e = event(500);
        let m = encode(&e, &settings).unwrap();
        assert!(m.body.is_empty());
        let Payload::ClaimCheck(c) = decode(&m.headers, &m.body).unwrap() else {
            panic!("expected a claim check");
        };
        assert_eq!((c.position, c.id), (e.position, e.id));
    }

    #[test]
    fn streams_stored_by_earlier_versions_travel_both_ways() {
        // `.` and `..` are refused anew, but a store may hold them.
        let mut e = event(500);
        e.stream = StreamId::parse_stored("tickets/..").unwrap();
        for max_message_bytes in [100, 1 << 20] {
            for codec in [Codec::Bincode, Codec::Json] {
                let settings = WireSettings {
                    codec,
                    max_message_bytes,
                    ..WireSettings::default()
                };
                let m = encode(&e, &settings).unwrap();
                let stream = match decode(&m.headers, &m.body).unwrap() {
                    Payload::Event(decoded) => decoded.stream,
                    Payload::ClaimCheck(c) => c.stream,
                };
                assert_eq!(stream, e.stream, "{codec:?}, {max_message_bytes} bytes");
            }
        }
    }

    #[test]
    fn a_stream_always_maps_to_the_same_partition() {
        let p = partition_for("default/tickets/T-1", 4);
        assert_eq!(p, partition_for("default/tickets/T-1", 4));
        let spread: std::collections::HashSet<u32> = (0..100)
            .map(|i| partition_for(&format!("default/tickets/T-{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let headers = vec![(
            HEADER_CONTENT_TYPE.to_owned(),
            Codec::Bincode.content_type().to_owned(),
        )];
        assert!(decode(&headers, b"\x01\x02garbage").is_err());
        assert_eq!(
            decode(&[], b"").unwrap_err(),
            DecodeError::MissingHeader(HEADER_CONTENT_TYPE)
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(ConsumerGroup::new("projections.tickets").is_ok());
        assert!(ConsumerGroup::new("Bad Name").is_err());
        assert!(Topic::named("").is_err());
    }
}
