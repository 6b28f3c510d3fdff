//! What goes into and comes out of the store: the expected-version check of an
//! append, the outcome of an append, and the head of the global log.

use std::fmt;

use chrono::{DateTime, Utc};
use herald_events::{ChainHash, EventEnvelope, EventId, Position, StreamVersion};
use serde::{Deserialize, Serialize};

/// What the stream's version must be for an append to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have exactly this many events; `Exact(0)` means it
    /// must not exist yet.
    Exact(StreamVersion),
}

impl ExpectedVersion {
    pub const NO_STREAM: Self = ExpectedVersion::Exact(StreamVersion::EMPTY);

    pub fn allows(self, actual: StreamVersion) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }

    /// `null` in JSON means any version.
    pub fn from_option(v: Option<u64>) -> Self {
        v.map_or(ExpectedVersion::Any, |v| {
            ExpectedVersion::Exact(StreamVersion(v))
        })
    }

    pub fn as_option(self) -> Option<u64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::Exact(v) => Some(v.get()),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::Exact(StreamVersion(0)) => f.write_str("no stream (version 0)"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedEvent {
    pub id: EventId,
    pub position: Position,
    pub stream_version: StreamVersion,
}

/// The answer to an append, given only after it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// One entry per event, in the order given.
    pub events: Vec<AppendedEvent>,
    /// The stream's version after this append.
    pub stream_version: StreamVersion,
    /// True when every event id was already stored by an identical earlier
    /// append: nothing new was written and these are the original positions.
    pub duplicate: bool,
}

impl AppendOutcome {
    pub fn first_position(&self) -> Position {
        self.events.first().map_or(Position::START, |e| e.position)
    }

    pub fn last_position(&self) -> Position {
        self.events.last().map_or(Position::START, |e| e.position)
    }
}

/// The last committed event of the global log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// 0 when the log is empty.
    pub position: Position,
    /// The chain hash of that event; all zeros when the log is empty.
    pub hash: ChainHash,
    pub recorded_at: Option<DateTime<Utc>>,
}

impl LogHead {
    pub const EMPTY: Self = LogHead {
        position: Position::START,
        hash: ChainHash::GENESIS,
        recorded_at: None,
    };

    pub(crate) fn after(event: &EventEnvelope) -> Self {
        LogHead {
            position: event.position,
            hash: event.hash,
            recorded_at: Some(event.recorded_at),
        }
    }
}
