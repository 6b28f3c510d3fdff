//! What a domain writes to be run by the runtime: an [`Aggregate`] in the
//! decide/apply shape, its events ([`DomainEvent`]), the refusal a decision
//! may end in ([`Refusal`]), and what a decision may know besides its state
//! ([`CommandContext`]).
//!
//! `decide` is pure: it looks at the state and the command and answers with
//! the events that would happen, or a refusal; it never does I/O and never
//! reads a clock other than `ctx.now`. `apply` folds one event into the
//! state and cannot fail: an event is a fact. The runtime persists what
//! `decide` returns and only then applies it.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, NewEvent, StreamId, TenantId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One aggregate type: the state of one stream of a domain.
pub trait Aggregate:
    Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static
{
    /// The domain: the first part of its streams and event types.
    const DOMAIN: &'static str;
    /// The version of the state's shape. Snapshots taken under another
    /// version are ignored (the state is rebuilt from the events), so bump
    /// it whenever `apply` or the state's fields change meaning.
    const STATE_VERSION: u32;

    /// The commands, as one enum; over HTTP `POST /v1/{domain}/{id}/{name}`
    /// with body `B` is deserialized from `{"name": B}`, so an externally
    /// tagged enum with `rename_all = "snake_case"` fits.
    type Command: DeserializeOwned + Clone + Debug + Send + 'static;
    /// The commands' names, as they appear in URLs (the enum's tags).
    const COMMANDS: &'static [&'static str];
    /// The events, as one enum.
    type Event: DomainEvent;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The events the command causes in this state, or why it cannot be
    /// done. An empty list is a command that changes nothing.
    fn decide(
        &self,
        command: Self::Command,
        ctx: &CommandContext,
    ) -> Result<Vec<Self::Event>, Refusal>;
}

/// A domain's events: converted to the store's [`NewEvent`] and back from
/// a stored envelope (already upcast to the latest schema version).
pub trait DomainEvent: Clone + Debug + PartialEq + Send + Sync + 'static {
    fn to_new_event(&self) -> NewEvent;
    fn from_envelope(envelope: &EventEnvelope) -> Result<Self, DecodeError>;
    /// The event an unstored one holds (after the store sealed its
    /// personal fields, the actor keeps what is stored).
    fn from_new_event(new: &NewEvent) -> Result<Self, DecodeError>;
    /// The event's type name within its domain (`ticket_opened`).
    fn name(&self) -> &'static str;
}

/// A stored event that is not one of the aggregate's events.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event {event_type} v{version} at position {position} cannot be read as a {domain} event: {reason}")]
pub struct DecodeError {
    pub domain: &'static str,
    pub event_type: String,
    pub version: u32,
    pub position: u64,
    pub reason: String,
}

impl DecodeError {
    /// For an event not stored yet (it has no position: 0).
    pub fn unstored(domain: &'static str, new: &NewEvent, reason: impl Into<String>) -> Self {
        Self {
            domain,
            event_type: new.event_type.to_string(),
            version: new.version.get(),
            position: 0,
            reason: reason.into(),
        }
    }

    pub fn new(domain: &'static str, envelope: &EventEnvelope, reason: impl Into<String>) -> Self {
        Self {
            domain,
            event_type: envelope.event_type.to_string(),
            version: envelope.version.get(),
            position: envelope.position.get(),
            reason: reason.into(),
        }
    }
}

/// Implements [`DomainEvent`] for an enum whose every variant wraps one
/// [`herald_events::TypedEvent`] payload of the domain.
#[macro_export]
macro_rules! domain_events {
    ($(#[$meta:meta])* $vis:vis enum $name:ident for $domain:path { $($variant:ident($ty:ty)),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $($variant($ty)),*
        }

        impl $crate::aggregate::DomainEvent for $name {
            fn to_new_event(&self) -> herald_events::NewEvent {
                use herald_events::TypedEvent;
                match self {
                    $($name::$variant(payload) => payload.to_new_event()),*
                }
            }

            fn from_envelope(
                envelope: &herald_events::EventEnvelope,
            ) -> Result<Self, $crate::aggregate::DecodeError> {
                use herald_events::TypedEvent;
                let name = envelope.event_type.name();
                $(
                    if name == <$ty as TypedEvent>::NAME {
                        // Older versions are read through the built-in upcasters.
                        return <$ty as TypedEvent>::from_stored(envelope.version.get(), &envelope.payload)
                            .map($name::$variant)
                            .map_err(|e| $crate::aggregate::DecodeError::new($domain, envelope, e.to_string()));
                    }
                )*
                Err($crate::aggregate::DecodeError::new($domain, envelope, "not an event of this aggregate"))
            }

            fn from_new_event(
                new: &herald_events::NewEvent,
            ) -> Result<Self, $crate::aggregate::DecodeError> {
                use herald_events::TypedEvent;
                let name = new.event_type.name();
                $(
                    if name == <$ty as TypedEvent>::NAME {
                        return <$ty as TypedEvent>::from_payload(new.payload.clone())
                            .map($name::$variant)
                            .map_err(|e| $crate::aggregate::DecodeError::unstored($domain, new, e.to_string()));
                    }
                )*
                Err($crate::aggregate::DecodeError::unstored($domain, new, "not an event of this aggregate"))
            }

            fn name(&self) -> &'static str {
                use herald_events::TypedEvent;
                match self {
                    $($name::$variant(_) => <$ty as TypedEvent>::NAME),*
                }
            }
        }

        $(impl From<$ty> for $name {
            fn from(payload: $ty) -> Self {
                $name::$variant(payload)
            }
        })*
    };
}

/// Why a command was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

/// What kind of refusal: it decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The aggregate's current state forbids the command (HTTP 409).
    Forbidden,
    /// The command itself is malformed (HTTP 422).
    Invalid,
    /// The command needs an aggregate that does not exist yet (HTTP 404).
    NotFound,
}

impl Refusal {
    /// The current state forbids the command.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Forbidden,
            message: message.into(),
        }
    }

    /// The aggregate does not exist yet.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::NotFound,
            message: message.into(),
        }
    }

    /// The command is malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Invalid,
            message: message.into(),
        }
    }
}

/// What a decision may know besides the state and the command.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant: TenantId,
    pub stream: StreamId,
    /// The stream's version the decision is made at (0: no events yet).
    pub version: u64,
    /// The time of the decision: the only clock `decide` may read.
    pub now: DateTime<Utc>,
}
