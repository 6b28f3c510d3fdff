//! The broker layer's one error type, with the context an operator needs.

use herald_events::CodecError;

/// Everything that can go wrong talking to a broker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached (connection refused, lost, timed out).
    #[error("the {backend} broker is unavailable: {detail}")]
    Unavailable {
        backend: &'static str,
        detail: String,
    },
    /// The broker refused or failed an operation.
    #[error("the {backend} broker failed to {operation}: {detail}")]
    Failed {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },
    /// The broker did not confirm a published message.
    #[error("the {backend} broker did not confirm a message to {topic}: {detail}")]
    NotConfirmed {
        backend: &'static str,
        topic: String,
        detail: String,
    },
    /// An event could not be encoded for the wire.
    #[error("event at position {position} cannot be encoded: {detail}")]
    Encode { position: u64, detail: String },
    /// A name (topic, group) is malformed.
    #[error("{kind} {value:?} is malformed: {rule}")]
    InvalidName {
        kind: &'static str,
        value: String,
        rule: &'static str,
    },
    /// Topics the backend needs are missing or too small, and it could not
    /// set them right (each problem names its topic).
    #[error("{} topics do not fit: {}", backend, TopicProblem::list(problems))]
    Topics {
        backend: &'static str,
        problems: Vec<TopicProblem>,
    },
    /// The broker was closed.
    #[error("the broker is closed")]
    Closed,
    /// The backend cannot do this (the in-process broker has no requests
    /// between processes).
    #[error("the {backend} broker cannot {operation}")]
    Unsupported {
        backend: &'static str,
        operation: &'static str,
    },
}

/// What is wrong with one topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicProblem {
    /// Herald places events in partitions `0..wanted` of the topic itself
    /// (a stream's partition is its key's hash modulo `wanted`), and the
    /// topic has fewer.
    #[error("topic {topic} has {partitions} partition(s), fewer than the {wanted} Herald places events in")]
    TooFewPartitions {
        topic: String,
        partitions: u32,
        wanted: u32,
    },
    /// The topic does not exist and could not be created.
    #[error("topic {topic} does not exist and could not be created ({reason})")]
    Missing { topic: String, reason: String },
}

impl TopicProblem {
    pub fn topic(&self) -> &str {
        match self {
            TopicProblem::TooFewPartitions { topic, .. } | TopicProblem::Missing { topic, .. } => {
                topic
            }
        }
    }

    fn list(problems: &[TopicProblem]) -> String {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl BrokerError {
    /// Every name [`BrokerError::kind`] answers, so that counters by kind
    /// can be shown at zero before the first failure.
    pub const KINDS: &'static [&'static str] = &[
        "unavailable",
        "failed",
        "not_confirmed",
        "encode",
        "invalid_name",
        "topics",
        "closed",
        "unsupported",
    ];

    /// A stable, low-cardinality name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerError::Unavailable { .. } => "unavailable",
            BrokerError::Failed { .. } => "failed",
            BrokerError::NotConfirmed { .. } => "not_confirmed",
            BrokerError::Encode { .. } => "encode",
            BrokerError::InvalidName { .. } => "invalid_name",
            BrokerError::Topics { .. } => "topics",
            BrokerError::Closed => "closed",
            BrokerError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Why a delivered message could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message has no {0} header")]
    MissingHeader(&'static str),
    #[error("header {header} is malformed: {detail}")]
    BadHeader {
        header: &'static str,
        detail: String,
    },
    #[error("body cannot be decoded: {0}")]
    Body(String),
}

impl From<CodecError> for DecodeError {
    fn from(e: CodecError) -> Self {
        DecodeError::Body(e.to_string())
    }
}
