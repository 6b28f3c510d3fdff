//! Identifier and counter newtypes of the envelope: tenants, domains, streams,
//! event types, event ids, stream versions, global positions and schema
//! versions. Every constructor validates, so a value of one of these types is
//! always well-formed.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::IdError;

/// Longest tenant id accepted.
pub const MAX_TENANT_LEN: usize = 64;
/// Longest domain name accepted.
pub const MAX_DOMAIN_LEN: usize = 32;
/// Longest stream id (the part after the domain) accepted.
pub const MAX_STREAM_ID_LEN: usize = 128;
/// Longest event name (the part after the domain) accepted.
pub const MAX_EVENT_NAME_LEN: usize = 96;

fn check_len(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_chars(
    kind: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
    rule: &'static str,
) -> Result<(), IdError> {
    match value.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(IdError::InvalidChar {
            kind,
            value: value.chars().take(64).collect(),
            bad,
            rule,
        }),
        None => Ok(()),
    }
}

/// `[a-z][a-z0-9_]*`: the shape of domain names and event names.
fn check_snake(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    check_len(kind, value, max)?;
    const RULE: &str = "lowercase snake_case: a-z first, then a-z, 0-9 or _";
    check_chars(
        kind,
        value,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        RULE,
    )?;
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(IdError::InvalidChar {
            kind,
            value: value.to_owned(),
            bad: value.chars().next().unwrap_or(' '),
            rule: RULE,
        });
    }
    Ok(())
}

macro_rules! string_newtype_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The tenant an event belongs to: `[A-Za-z0-9_-]{1,64}`. Streams are scoped
/// by tenant, so two tenants may each have a stream `tickets/T-1`.
///
/// Ids are shared text (`Arc<str>`): they are cloned into every event and
/// every batch, so a clone must not allocate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant used when none is given (anonymous, single-tenant use).
    pub const DEFAULT: &'static str = "default";

    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_len("tenant", &value, MAX_TENANT_LEN)?;
        check_chars(
            "tenant",
            &value,
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "letters, digits, _ or -",
        )?;
        Ok(Self(value.into()))
    }

    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
string_newtype_serde!(TenantId);

/// A domain: a group of streams and event types, e.g. `tickets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(Arc<str>);

impl Domain {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_snake("domain", &value, MAX_DOMAIN_LEN)?;
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Domain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
string_newtype_serde!(Domain);

/// A stream: a domain plus an id within it, written `domain/id`
/// (`tickets/T-1001`). The id may use letters, digits and `-_.:@~`, so it is
/// safe as one URL path segment, but may not be `.` or `..`: URL-normalising
/// clients and proxies remove such a segment (`/v1/streams/tickets/../events`
/// becomes `/v1/streams/events`), so a stream named so could never be
/// reached again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    domain: Domain,
    /// `domain/id`, kept so `as_str` needs no allocation.
    full: Arc<str>,
}

impl StreamId {
    pub fn new(domain: Domain, id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id == "." || id == ".." {
            return Err(IdError::DotSegment {
                kind: "stream id",
                value: id,
            });
        }
        Self::stored(domain, id)
    }

    /// Builds a stream id from its two parts as strings.
    pub fn parse_parts(domain: &str, id: &str) -> Result<Self, IdError> {
        Self::new(Domain::new(domain)?, id)
    }

    /// Rebuilds a stream id read back from a store or a broker. Earlier
    /// Herald versions accepted `.` and `..` as ids: events stored under
    /// them stay readable (relayed, projected, verified), though no new one
    /// is accepted. Everything else is checked as by [`StreamId::new`].
    pub fn stored(domain: Domain, id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        check_len("stream id", &id, MAX_STREAM_ID_LEN)?;
        check_chars(
            "stream id",
            &id,
            |c| c.is_ascii_alphanumeric() || "-_.:@~".contains(c),
            "letters, digits or one of - _ . : @ ~",
        )?;
        let full = format!("{}/{}", domain.as_str(), id).into();
        Ok(Self { domain, full })
    }

    /// [`StreamId::stored`] from its two parts as strings.
    pub fn stored_parts(domain: &str, id: &str) -> Result<Self, IdError> {
        Self::stored(Domain::new(domain)?, id)
    }

    /// [`StreamId::stored`] from `domain/id`.
    pub fn parse_stored(text: &str) -> Result<Self, IdError> {
        match text.split_once('/') {
            Some((domain, id)) => Self::stored_parts(domain, id),
            None => Err(malformed_stream(text)),
        }
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The part after the domain.
    pub fn id(&self) -> &str {
        &self.full[self.domain.as_str().len() + 1..]
    }

    /// `domain/id`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn malformed_stream(text: &str) -> IdError {
    IdError::Malformed {
        kind: "stream",
        value: text.chars().take(64).collect(),
        expected: "domain/id",
    }
}

impl FromStr for StreamId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((domain, id)) => Self::parse_parts(domain, id),
            None => Err(malformed_stream(s)),
        }
    }
}
string_newtype_serde!(StreamId);

impl StreamId {
    /// Deserializes a stream id as [`StreamId::parse_stored`] reads it: for
    /// envelopes, which hold what a store already keeps.
    pub fn deserialize_stored<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse_stored(&raw).map_err(serde::de::Error::custom)
    }
}

/// An event type, `domain.snake_case_past_tense` (`tickets.ticket_opened`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType {
    full: Arc<str>,
    /// Byte index of the dot between domain and name.
    dot: usize,
}

impl EventType {
    pub fn new(domain: &Domain, name: &str) -> Result<Self, IdError> {
        check_snake("event name", name, MAX_EVENT_NAME_LEN)?;
        Ok(Self {
            full: format!("{}.{}", domain.as_str(), name).into(),
            dot: domain.as_str().len(),
        })
    }

    pub fn domain(&self) -> &str {
        &self.full[..self.dot]
    }

    /// The part after the domain (`ticket_opened`).
    pub fn name(&self) -> &str {
        &self.full[self.dot + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for EventType {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((domain, name)) => Self::new(&Domain::new(domain)?, name),
            None => Err(IdError::Malformed {
                kind: "event type",
                value: s.chars().take(64).collect(),
                expected: "domain.event_name",
            }),
        }
    }
}
string_newtype_serde!(EventType);

/// An event's unique id: a UUID, v7 (time-ordered) when Herald makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh time-ordered id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::Malformed {
                kind: "event id",
                value: s.chars().take(64).collect(),
                expected: "a UUID",
            })
    }
}

/// A stream's version: the number of events in it. An event's stream version
/// is 1-based and gapless per stream; version 0 means the stream is empty.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct StreamVersion(pub u64);

impl StreamVersion {
    pub const EMPTY: Self = Self(0);
    /// The largest stream version a store can hold (SQL's signed 64-bit
    /// `BIGINT`).
    pub const MAX: Self = Self(i64::MAX as u64);

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's place in the global log, assigned by the store in commit order:
/// 1-based, gapless and strictly increasing. Position 0 means "before the
/// first event".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    pub const START: Self = Self(0);
    /// The largest position a store can hold (SQL's signed 64-bit
    /// `BIGINT`): a reader asking for more names a position that cannot be.
    pub const MAX: Self = Self(i64::MAX as u64);

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version of an event type's schema, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SchemaVersion(u32);

impl SchemaVersion {
    pub const V1: Self = Self(1);

    pub fn new(version: u32) -> Result<Self, IdError> {
        if version == 0 {
            return Err(IdError::Empty {
                kind: "schema version (versions start at 1)",
            });
        }
        Ok(Self(version))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u32::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_through_their_text_form() {
        let s: StreamId = "tickets/T-1001".parse().unwrap();
        assert_eq!(s.domain().as_str(), "tickets");
        assert_eq!(s.id(), "T-1001");
        assert_eq!(s.to_string(), "tickets/T-1001");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"tickets/T-1001\"");
    }

    #[test]
    fn malformed_ids_are_refused_with_the_reason() {
        assert!(matches!(
            "Tickets/x".parse::<StreamId>(),
            Err(IdError::InvalidChar { kind: "domain", .. })
        ));
        assert!(matches!(
            "tickets/a b".parse::<StreamId>(),
            Err(IdError::InvalidChar {
                kind: "stream id",
                bad: ' ',
                ..
            })
        ));
        let long = format!("tickets/{}", "x".repeat(MAX_STREAM_ID_LEN + 1));
        assert!(matches!(
            long.parse::<StreamId>(),
            Err(IdError::TooLong {
                kind: "stream id",
                ..
            })
        ));
        assert!(matches!(
            "tickets".parse::<StreamId>(),
            Err(IdError::Malformed { .. })
        ));
        assert!("tickets.".parse::<EventType>().is_err());
        assert!("tickets.9lives".parse::<EventType>().is_err());
        assert!(TenantId::new("acme corp").is_err());
        assert!(SchemaVersion::new(0).is_err());
    }

    #[test]
    fn dot_segments_are_refused_anew_but_read_back_when_stored() {
        for id in [".", ".."] {
            let text = format!("tickets/{id}");
            assert!(matches!(
                text.parse::<StreamId>(),
                Err(IdError::DotSegment {
                    kind: "stream id",
                    ..
                })
            ));
            assert!(StreamId::parse_parts("tickets", id).is_err());
            assert!(serde_json::from_value::<StreamId>(serde_json::json!(text)).is_err());
            let stored = StreamId::parse_stored(&text).expect("a stored id reads back");
            assert_eq!(stored.id(), id);
            assert_eq!(StreamId::stored_parts("tickets", id).unwrap(), stored);
        }
        // Dots elsewhere are ordinary characters.
        for id in ["...", ".a", "a..b", "v1.2"] {
            assert!(StreamId::parse_parts("tickets", id).is_ok(), "{id}");
        }
        // Stored ids are checked for everything else all the same.
        assert!(StreamId::parse_stored("tickets/a b").is_err());
        assert!(StreamId::parse_stored("tickets").is_err());
    }

    #[test]
    fn event_types_split_into_domain_and_name() {
        let t: EventType = "tickets.ticket_opened".parse().unwrap();
        assert_eq!(t.domain(), "tickets");
        assert_eq!(t.name(), "ticket_opened");
    }
}
