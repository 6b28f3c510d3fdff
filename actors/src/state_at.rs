//! An aggregate's state as it was at a moment, for auditors: the stream's
//! events folded from its first one with the domain's own
//! [`Aggregate::apply`] — what the runtime does when it rehydrates an
//! aggregate — stopping before the first event past the moment: past the
//! position, or recorded after the instant (the log's record time, which
//! is what the system knew then; an event's `occurred_at` is the producer's
//! claim and is shown beside it). No snapshot is used: a snapshot is the
//! latest state, not a past one. `GET /v1/streams/{domain}/{id}?at=` and
//! `herald replay state` both answer with [`fold`], reached through the
//! domain's registration ([`crate::domain::DomainSpec::state_at`]).

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, StreamId, StreamVersion, TenantId};
use herald_store::{EventStore, StoreError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::aggregate::{Aggregate, DecodeError, DomainEvent};

/// Events read per page while folding.
const READ_PAGE: usize = 1000;

/// The moment a state is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// After the events at or before this log position.
    Position(u64),
    /// After the events recorded at or before this instant.
    Instant(DateTime<Utc>),
}

impl Moment {
    /// A whole number is a position; anything else must be an RFC 3339
    /// instant.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse()
                .map(Moment::Position)
                .map_err(|_| format!("the position {text} is too large"));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Moment::Instant(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "{:?} is neither a log position (a whole number) nor an RFC 3339 instant \
                     (2026-11-30T12:00:00Z)",
                    text.chars().take(64).collect::<String>()
                )
            })
    }

    /// Whether `event` happened at or before the moment.
    pub fn includes(&self, event: &EventEnvelope) -> bool {
        match self {
            Moment::Position(p) => event.position.get() <= *p,
            Moment::Instant(t) => event.recorded_at <= *t,
        }
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::Position(p) => write!(f, "position {p}"),
            Moment::Instant(t) => write!(f, "{}", herald_events::chain::canonical_time(t)),
        }
    }
}

/// An aggregate's state at a moment, and the events that made it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StateAt {
    pub domain: String,
    pub id: String,
    pub tenant: String,
    /// The moment asked for.
    pub at: Moment,
    /// The stream version the state is at: how many of its events it folds.
    pub version: u64,
    /// The log position of the last event folded.
    pub position: u64,
    /// When the last event folded was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The aggregate's state, as `GET /v1/{domain}/{id}` shows a current one.
    #[schema(value_type = Object)]
    pub state: Value,
    /// Every event folded, oldest first (the last `limit` of them over HTTP;
    /// `version` says how many there are).
    pub events: Vec<EventAt>,
}

/// One event that made a state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventAt {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "tickets.ticket_opened")]
    pub event_type: String,
    /// The schema version it is read in (the latest, after upcasting).
    pub schema_version: u32,
    pub stream_version: u64,
    pub position: u64,
    /// When it happened, as its producer said.
    pub occurred_at: DateTime<Utc>,
    /// When the store committed it.
    pub recorded_at: DateTime<Utc>,
}

impl EventAt {
    pub fn of(event: &EventEnvelope) -> Self {
        Self {
            id: event.id.as_uuid(),
            event_type: event.event_type.to_string(),
            schema_version: event.version.get(),
            stream_version: event.stream_version.get(),
            position: event.position.get(),
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
        }
    }
}

/// Why there is no state to show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateAtError {
    /// No aggregate type for this domain.
    #[error("no domain {domain:?} has aggregates here; the domains are {}", known.join(", "))]
    UnknownDomain {
        domain: String,
        known: Vec<&'static str>,
    },
    /// The id cannot name a stream.
    #[error("{0}")]
    InvalidStream(#[source] herald_events::IdError),
    /// The stream has no events at all.
    #[error("{stream} of tenant {tenant} has no events")]
    NoStream { stream: String, tenant: String },
    /// The stream's first event came after the moment.
    #[error(
        "{stream} of tenant {tenant} had no events yet at {at}: its first is at position \
         {first_position}, recorded at {first_recorded_at}",
        first_recorded_at = herald_events::chain::canonical_time(first_recorded_at)
    )]
    NotYet {
        stream: String,
        tenant: String,
        at: Moment,
        first_position: u64,
        first_recorded_at: DateTime<Utc>,
    },
    /// A stored event is not one of the aggregate's (a bug or a foreign event).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug: the state cannot be shown as JSON.
    #[error("the {domain} state cannot be shown as JSON: {source}")]
    StateEncoding {
        domain: &'static str,
        source: serde_json::Error,
    },
}

/// Folds the stream's events up to the moment with `A::apply`, as the actor
/// runtime's rehydration does.
pub async fn fold<A: Aggregate>(
    store: &dyn EventStore,
    tenant: &TenantId,
    id: &str,
    at: Moment,
    max_listed: Option<usize>,
) -> Result<StateAt, StateAtError> {
    let stream = StreamId::parse_parts(A::DOMAIN, id).map_err(StateAtError::InvalidStream)?;
    let mut state = A::default();
    let mut listed: VecDeque<EventAt> = VecDeque::new();
    let mut last: Option<EventAt> = None;
    let mut next = StreamVersion(1);
    'pages: loop {
        let page = store.read_stream(tenant, &stream, next, READ_PAGE).await?;
        let full = page.len() == READ_PAGE;
        for envelope in &page {
            if !at.includes(envelope) {
                if last.is_none() {
                    return Err(StateAtError::NotYet {
                        stream: stream.to_string(),
                        tenant: tenant.to_string(),
                        at,
                        first_position: envelope.position.get(),
                        first_recorded_at: envelope.recorded_at,
                    });
                }
                break 'pages;
            }
            let event = A::Event::from_envelope(envelope)?;
            state.apply(&event);
            let shown = EventAt::of(envelope);
            if max_listed.is_none_or(|max| max > 0) {
                if max_listed.is_some_and(|max| listed.len() >= max) {
                    listed.pop_front();
                }
                listed.push_back(shown.clone());
            }
            last = Some(shown);
            next = envelope.stream_version.next();
        }
        if !full {
            break;
        }
    }
    let Some(last) = last else {
        return Err(StateAtError::NoStream {
            stream: stream.to_string(),
            tenant: tenant.to_string(),
        });
    };
    let state = serde_json::to_value(&state).map_err(|source| StateAtError::StateEncoding {
        domain: A::DOMAIN,
        source,
    })?;
    Ok(StateAt {
        domain: A::DOMAIN.to_owned(),
        id: stream.id().to_owned(),
        tenant: tenant.to_string(),
        at,
        version: last.stream_version,
        position: last.position,
        recorded_at: last.recorded_at,
        state,
        events: listed.into(),
    })
}
