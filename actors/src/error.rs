//! Why a command (or a state query) was not done, in terms the HTTP edge
//! maps to statuses: refused by the aggregate, too busy, contended, or the
//! store failing.

use herald_events::IdError;
use herald_store::StoreError;

use crate::aggregate::{DecodeError, Refusal};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The aggregate refused the command (409 or 422 by its kind).
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The aggregate id is not a valid stream id (400).
    #[error("invalid aggregate id: {source}")]
    InvalidStream {
        domain: &'static str,
        #[source]
        source: IdError,
    },
    /// No such command in the domain (404).
    #[error("the {domain} domain has no command {command:?}")]
    UnknownCommand { domain: String, command: String },
    /// The command's body does not fit the command (422).
    #[error("the body of {command} is invalid: {source}")]
    InvalidBody {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    /// The aggregate's mailbox is full: try again later (503).
    #[error("the {domain} aggregate {stream} has {pending} commands waiting; try again later")]
    Busy {
        domain: String,
        stream: String,
        pending: usize,
    },
    /// The idempotency key was used for another command or body on this
    /// aggregate within its window (422).
    #[error("the idempotency key {key:?} was used for another request on this aggregate at {first_used_at}")]
    IdempotencyKeyReused {
        key: String,
        first_used_at: chrono::DateTime<chrono::Utc>,
    },
    /// Other writers kept changing the stream (409).
    #[error("the stream kept changing under the command ({attempts} attempts)")]
    Contended { attempts: u32 },
    /// A stored event is not one of the aggregate's (500).
    #[error(transparent)]
    Decode(DecodeError),
    /// The store failed (503 when unavailable, 500 otherwise).
    #[error(transparent)]
    Store(StoreError),
    /// The aggregate's actor kept stopping under the command: the runtime
    /// is stopping, or an actor died (503).
    #[error("the actor runtime is unavailable: the actor of {stream} kept stopping")]
    Unavailable { stream: String },
    /// A command was sent to a domain this process does not run (a bug in
    /// the sender: 500).
    #[error("no domain {domain:?} runs in this process (asked by {by})")]
    UnknownDomain { domain: String, by: String },
    /// The answer recorded for an idempotency key cannot be read back (500).
    #[error("the answer recorded for the idempotency key {key:?} is unreadable: {source}")]
    RecordedAnswer {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The aggregate's state cannot be written as JSON (a bug: 500).
    #[error("the state of a {domain} aggregate cannot be written as JSON: {source}")]
    StateEncoding {
        domain: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl CommandError {
    /// Whether trying the same command again later may succeed: the store
    /// or the runtime failed for the time being, or others kept winning.
    pub fn is_transient(&self) -> bool {
        match self {
            CommandError::Busy { .. }
            | CommandError::Contended { .. }
            | CommandError::Unavailable { .. } => true,
            CommandError::Store(e) => !e.is_caller_error(),
            _ => false,
        }
    }
}
