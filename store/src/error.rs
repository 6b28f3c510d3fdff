//! The store's one error type. Variants carry the context an operator or a
//! caller needs (which stream, which versions, which backend), and
//! [`StoreError::kind`] gives each a stable name for metrics and APIs.

use herald_events::{EventId, Position, StreamId, StreamVersion, TenantId};

use crate::model::ExpectedVersion;

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream is not at the version the append expected; nothing was written.
    #[error(
        "stream {stream} of tenant {tenant} is at version {actual}, the append expected {expected}"
    )]
    WrongExpectedVersion {
        tenant: TenantId,
        stream: StreamId,
        expected: ExpectedVersion,
        actual: StreamVersion,
    },
    /// An event id in the append is already stored elsewhere (another stream,
    /// or in an append that this one only partly repeats); nothing was written.
    #[error("event id {id} is already stored at position {position} in stream {stream}; an append is idempotent only when it repeats a whole earlier append")]
    DuplicateEventId {
        id: EventId,
        stream: StreamId,
        position: Position,
    },
    /// The append is malformed (no events, an event of another domain, a
    /// payload the store cannot keep); nothing was written.
    #[error("invalid append to {stream}: {reason}")]
    InvalidAppend { stream: StreamId, reason: String },
    /// A search is malformed or over its bounds (a limit, a pattern, a
    /// payload path); nothing was read.
    #[error("invalid query: {reason}")]
    InvalidQuery { reason: String },
    /// A snapshot the store cannot keep (version 0, a state too large or
    /// holding U+0000, a time out of range); nothing was written.
    #[error("invalid snapshot of {stream}: {reason}")]
    InvalidSnapshot { stream: StreamId, reason: String },
    /// The backend cannot serve now (unreachable, starting, shutting down,
    /// out of resources, a lost serialization race); the same request may
    /// succeed later. An append that met it may still have committed (the
    /// connection can drop between the commit and its answer), so a retry
    /// sends the same event ids, which the store takes as a repeat. On
    /// Postgres, `herald_store::postgres::classify` decides.
    #[error("the {backend} store is unavailable: {detail}")]
    Unavailable {
        backend: &'static str,
        detail: String,
    },
    /// The backend answered with an error that a retry would repeat.
    #[error("the {backend} store failed: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
    /// A stored row could not be read back as an event.
    #[error("the event at position {position} cannot be decoded: {detail}")]
    Corrupt { position: Position, detail: String },
    /// A schema migration failed or the database has one this build does not know.
    #[error("migration {version} failed: {detail}")]
    Migration { version: i64, detail: String },
    /// The store was closed; no more appends are taken.
    #[error("the store is closed")]
    Closed,
    /// Another process holds a claim on the store that this one's would
    /// conflict with (see [`crate::Coordination::occupy`]).
    #[error("the store is in use by {}", by.join(", "))]
    Occupied { by: Vec<String> },
    /// The installed [`PayloadSealer`](crate::PayloadSealer) failed on its
    /// own account (no key to seal with, a cipher error) while sealing an
    /// append's payloads; nothing was written. A sealer passes on errors of
    /// the store as they are, and answers [`StoreError::InvalidAppend`] for
    /// a payload it refuses.
    #[error("the payloads could not be sealed before they were stored: {0}")]
    Sealing(String),
}

impl StoreError {
    /// A stable, low-cardinality name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::WrongExpectedVersion { .. } => "wrong_expected_version",
            StoreError::DuplicateEventId { .. } => "duplicate_event_id",
            StoreError::InvalidAppend { .. } => "invalid_append",
            StoreError::InvalidQuery { .. } => "invalid_query",
            StoreError::InvalidSnapshot { .. } => "invalid_snapshot",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Backend { .. } => "backend",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Migration { .. } => "migration",
            StoreError::Closed => "closed",
            StoreError::Occupied { .. } => "occupied",
            StoreError::Sealing(_) => "sealing",
        }
    }

    /// True when the append, query or snapshot was refused for what it asked (so
    /// retrying the same request cannot succeed), false for failures of the
    /// store itself.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            StoreError::WrongExpectedVersion { .. }
                | StoreError::DuplicateEventId { .. }
                | StoreError::InvalidAppend { .. }
                | StoreError::InvalidQuery { .. }
                | StoreError::InvalidSnapshot { .. }
        )
    }

    /// True when the same request may succeed if sent again later: the
    /// store is unavailable (down, restarting, overloaded) or this process's
    /// store is closing (another process, or this one restarted, can take
    /// it). Everything else is permanent: the caller's own fault
    /// ([`StoreError::is_caller_error`]) or a failure a retry would repeat.
    /// HTTP answers a transient error with 503 and `Retry-After`; consumers
    /// retry it and never dead-letter a message for it. This is the one
    /// place that decides.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. } | StoreError::Closed)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
