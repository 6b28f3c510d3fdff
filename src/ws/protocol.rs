//! The `herald.v1` subscription protocol's data: cursors, filters, and the
//! JSON frames each side sends. `docs/websocket.md` is the same contract in
//! prose, with example frames.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use herald_events::{EventEnvelope, Position, StreamId};
use serde::{Deserialize, Serialize};

use crate::auth::{Action, Identity, TypePattern};

/// The websocket subprotocol.
pub const SUBPROTOCOL: &str = "herald.v1";

/// Close codes (RFC 6455 private range 4000–4999, plus standard ones).
pub mod close {
    /// A frame that is not valid `herald.v1`.
    pub const PROTOCOL_ERROR: u16 = 4000;
    /// No, wrong, or late authentication (the first frame must be `auth`).
    pub const AUTH_FAILED: u16 = 4001;
    /// The client sent nothing (not even a heartbeat) for too long.
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    /// The credentials were revoked, or no longer allow the subscriptions.
    pub const FORBIDDEN: u16 = 4003;
    /// The client reads too slowly; resume with the cursors in `closing`.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The cursor belongs to another store (or a rebuilt one): start over.
    pub const RESYNC_REQUIRED: u16 = 4009;
    /// The server is shutting down; reconnect, resuming with your cursors.
    pub const GOING_AWAY: u16 = 1001;
}

/// Where a subscription stands in the log: the store's epoch and the
/// position of the last event delivered. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: String,
    pub position: Position,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("h1.{}.{}", self.epoch, self.position.get()))
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| "the cursor is not one Herald issued".to_owned())?;
        let raw =
            String::from_utf8(raw).map_err(|_| "the cursor is not one Herald issued".to_owned())?;
        let mut parts = raw.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("h1"), Some(epoch), Some(position)) if !epoch.is_empty() => Ok(Self {
                epoch: epoch.to_owned(),
                // No store holds a position past Position::MAX.
                position: position
                    .parse()
                    .ok()
                    .map(Position)
                    .filter(|p| *p <= Position::MAX)
                    .ok_or_else(|| "the cursor is not one Herald issued".to_owned())?,
            }),
            _ => Err("the cursor is not one Herald issued".to_owned()),
        }
    }
}

/// Which events a subscription wants. Empty lists mean "any"; the lists
/// are AND-ed, their items OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Event-type patterns with `*` wildcards (`tickets.*`, `*.ticket_opened`).
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    /// Streams as `domain/id`.
    #[serde(default)]
    pub streams: Vec<String>,
}

/// A checked filter, bound to the subscriber's tenant and scopes.
#[derive(Debug, Clone)]
pub struct Filter {
    types: Vec<TypePattern>,
    domains: Vec<String>,
    streams: Vec<StreamId>,
    identity: Identity,
}

/// Most items in any one list of a filter.
const MAX_FILTER_ITEMS: usize = 100;
/// Longest type pattern of a filter: twice the longest event type, so any
/// sensible pattern fits and checking one against the scopes stays cheap.
const MAX_TYPE_PATTERN_LEN: usize = 256;

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// Malformed: too long, an unknown domain, a bad pattern or stream.
    Invalid(String),
    /// It could match a type the credentials may not subscribe to.
    Forbidden(String),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Invalid(why) | FilterError::Forbidden(why) => f.write_str(why),
        }
    }
}

impl Filter {
    /// Checks a filter against the subscriber's scopes: every type it can
    /// match must be one they may subscribe to, so that a subscription never
    /// stands for more than the credentials allow (events outside the scopes
    /// would be left out anyway; refusing says so instead of staying silent).
    pub fn new(spec: FilterSpec, identity: &Identity) -> Result<Self, FilterError> {
        use FilterError::Invalid;
        if spec.types.len() > MAX_FILTER_ITEMS
            || spec.domains.len() > MAX_FILTER_ITEMS
            || spec.streams.len() > MAX_FILTER_ITEMS
        {
            return Err(Invalid(format!(
                "a filter list may hold at most {MAX_FILTER_ITEMS} items"
            )));
        }
        // Refused like every text holding U+0000, before the checks of
        // each kind (which would refuse it too, less plainly).
        let lists = [
            ("types", &spec.types),
            ("domains", &spec.domains),
            ("streams", &spec.streams),
        ];
        for (list, items) in lists {
            if let Some(i) = items
                .iter()
                .position(|t| !herald_store::storable::is_storable(t))
            {
                return Err(Invalid(format!(
                    "filter {list}[{i}] holds the character U+0000, which Herald refuses in all text"
                )));
            }
        }
        if let Some(i) = spec
            .types
            .iter()
            .position(|t| t.len() > MAX_TYPE_PATTERN_LEN)
        {
            return Err(Invalid(format!(
                "filter types[{i}] is longer than {MAX_TYPE_PATTERN_LEN} bytes"
            )));
        }
        let types = spec
            .types
            .iter()
            .map(|t| TypePattern::new(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Invalid)?;
        let streams = spec
            .streams
            .iter()
            .map(|s| {
                s.parse::<StreamId>()
                    .map_err(|e| Invalid(format!("stream {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for d in &spec.domains {
            herald_events::Domain::new(d.as_str())
                .map_err(|e| Invalid(format!("domain {d:?}: {e}")))?;
        }
        let filter = Self {
            types,
            domains: spec.domains,
            streams,
            identity: identity.clone(),
        };
        filter.check_scopes()?;
        Ok(filter)
    }

    /// Refuses the filter unless each type it can match lies within one of
    /// the identity's `subscribe` (or `admin`) scopes.
    fn check_scopes(&self) -> Result<(), FilterError> {
        let scopes: Vec<&TypePattern> = self
            .identity
            .scopes
            .iter()
            .filter(|s| s.action == Action::Subscribe || s.action == Action::Admin)
            .map(|s| &s.pattern)
            .collect();
        let any = TypePattern::new(TypePattern::ANY).expect("a valid pattern");
        let types: Vec<&TypePattern> = if self.types.is_empty() {
            vec![&any]
        } else {
            self.types.iter().collect()
        };
        // The domains an event may be in: those of `domains` and of
        // `streams`, when both are given those of both (the lists are
        // AND-ed); `None` is any domain.
        let stream_domains: Vec<&str> = self.streams.iter().map(|s| s.domain().as_str()).collect();
        let domains: Option<Vec<&str>> = match (self.domains.is_empty(), stream_domains.is_empty())
        {
            (true, true) => None,
            (false, true) => Some(self.domains.iter().map(String::as_str).collect()),
            (true, false) => Some(stream_domains),
            (false, false) => Some(
                self.domains
                    .iter()
                    .map(String::as_str)
                    .filter(|d| stream_domains.contains(d))
                    .collect(),
            ),
        };
        let allowed = |part: &TypePattern| scopes.iter().any(|scope| part.within(scope));
        for pattern in types {
            let uncovered = match &domains {
                None => (!allowed(pattern)).then(|| pattern.to_string()),
                Some(domains) => domains.iter().find_map(|domain| {
                    pattern
                        .in_domain(domain)
                        .iter()
                        .any(|part| !allowed(part))
                        .then(|| format!("{pattern} in domain {domain}"))
                }),
            };
            if let Some(what) = uncovered {
                let held: Vec<String> = scopes.iter().map(|p| p.to_string()).collect();
                let held = if held.is_empty() {
                    "none".to_owned()
                } else {
                    held.join(", ")
                };
                return Err(FilterError::Forbidden(format!(
                    "these credentials may not subscribe to every type matching {what} (their \
                     subscribe scopes cover: {held}); a filter may only match types they cover"
                )));
            }
        }
        Ok(())
    }

    /// The streams named by the filter (empty: any).
    pub fn streams(&self) -> &[StreamId] {
        &self.streams
    }

    /// The domains named by the filter (empty: any).
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// True when the event is the subscriber's to see and the filter's.
    pub fn matches(&self, event: &EventEnvelope) -> bool {
        event.tenant == self.identity.tenant
            && (self.types.is_empty()
                || self.types.iter().any(|t| t.matches_type(&event.event_type)))
            && (self.domains.is_empty()
                || self
                    .domains
                    .iter()
                    .any(|d| d == event.stream.domain().as_str()))
            && (self.streams.is_empty() || self.streams.contains(&event.stream))
            && self.identity.allows(Action::Subscribe, &event.event_type)
    }
}

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Subscribe {
        id: String,
        #[serde(default)]
        filter: FilterSpec,
        /// A cursor, `"now"` (only new events) or `"start"` (the whole
        /// history); absent means `"now"`.
        #[serde(default)]
        from: Option<String>,
        /// Optional; when given it must be the credentials' own tenant.
        #[serde(default)]
        tenant: Option<String>,
    },
    Unsubscribe {
        id: String,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
}

/// A JSON string literal (quotes and escapes included).
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            epoch: "0a1b".into(),
            position: Position(42),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nope").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("h1.x.notanumber")).is_err());
    }

    #[test]
    fn frames_parse_and_unknown_ones_are_refused() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","id":"s1","filter":{"types":["tickets.*"]},"from":"now"}"#,
        )
        .unwrap();
        assert!(matches!(f, ClientFrame::Subscribe { .. }));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"launch"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"auth","token":"x","extra":1}"#)
                .is_err()
        );
    }
}
