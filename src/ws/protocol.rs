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

impl Filter {
    /// Checks a filter against the subscriber's scopes: it must be able to
    /// see some of what it asks for.
    pub fn new(spec: FilterSpec, identity: &Identity) -> Result<Self, String> {
        if spec.types.len() > MAX_FILTER_ITEMS
            || spec.domains.len() > MAX_FILTER_ITEMS
            || spec.streams.len() > MAX_FILTER_ITEMS
        {
            return Err(format!(
                "a filter list may hold at most {MAX_FILTER_ITEMS} items"
            ));
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
                return Err(format!(
                    "filter {list}[{i}] holds the character U+0000, which Herald refuses in all text"
                ));
            }
        }
        let types = spec
            .types
            .iter()
            .map(|t| TypePattern::new(t))
            .collect::<Result<Vec<_>, _>>()?;
        let streams = spec
            .streams
            .iter()
            .map(|s| {
                s.parse::<StreamId>()
                    .map_err(|e| format!("stream {s:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for d in &spec.domains {
            herald_events::Domain::new(d.as_str()).map_err(|e| format!("domain {d:?}: {e}"))?;
        }
        let mut wanted_domains: Vec<String> = spec.domains.clone();
        wanted_domains.extend(streams.iter().map(|s| s.domain().to_string()));
        let visible = if wanted_domains.is_empty() {
            identity
                .scopes
                .iter()
                .any(|s| s.action == Action::Subscribe || s.action == Action::Admin)
        } else {
            wanted_domains
                .iter()
                .any(|d| identity.touches_domain(Action::Subscribe, d))
        };
        if !visible {
            return Err("these credentials may not subscribe to any of that".into());
        }
        Ok(Self {
            types,
            domains: spec.domains,
            streams,
            identity: identity.clone(),
        })
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
