//! The errors of projecting, and which of them are worth retrying as they
//! are (transient) rather than treated as the fault of one event (poison).

use herald_events::Position;
use herald_store::StoreError;

/// What can go wrong while projecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A query on the read-model database failed.
    #[error("read-model database: {}", herald_store::postgres::describe(.0))]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the read-model pool.
    #[error("read-model pool: {}", herald_store::postgres::describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The Postgres URL of the read models does not parse.
    #[error("the read models' Postgres URL does not parse: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The read models' pool could not be built.
    #[error("read-model pool: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    /// A query on the embedded (SQLite) read models failed.
    #[error("embedded read models: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading the event store failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The projection cannot apply this event (raised by `apply`): the
    /// runner parks it.
    #[error("{event_type} at position {position}: {fault}")]
    Event {
        event_type: String,
        position: Position,
        fault: EventFault,
    },
    /// A number in an event is past what the read model can store (the
    /// runner parks the event that holds it).
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: u64 },
    /// A query the read model cannot answer as asked (a 400 over HTTP).
    #[error("{0}")]
    Query(#[from] QueryFault),
    /// The read model's tables hold what its code never writes.
    #[error("{0}")]
    Corrupt(#[from] Corruption),
    /// A task doing read-model work panicked or was cancelled.
    #[error("a read-model task ended: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The generations a runner or tool worked on changed under it.
    #[error("{0}")]
    Generations(#[from] GenerationFault),
    /// The checkpoint was written by another version of the projection; a
    /// rebuild is needed before this version may run over that read model.
    #[error(
        "projection {name} has a checkpoint of version {stored}, this code is version {code}; \
         rebuild the read model first"
    )]
    VersionMismatch {
        name: &'static str,
        stored: u32,
        code: u32,
    },
    /// Nothing serves this read model yet (its projection never started).
    #[error("the read model {0} is not being served yet")]
    NotServing(String),
    /// The generation being moved was retired meanwhile (a newer one took
    /// over); the runner looks again at what to move.
    #[error("a generation of {0} was retired while the runner moved it")]
    Retired(&'static str),
    /// No projection of that name is registered with the runner.
    #[error("no projection named {0} is registered")]
    UnknownProjection(String),
    /// `retry_parked` named an event that is not parked.
    #[error("projection {name} has no parked event at position {position}")]
    NotParked { name: String, position: Position },
}

/// Why a projection cannot apply an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventFault {
    /// The event's schema version is not the one this read model reads.
    #[error("v{version} is not known, only v{known}")]
    UnknownVersion { version: u32, known: u32 },
    /// The payload does not fit the event type's schema.
    #[error("the payload does not fit its schema: {0}")]
    Payload(#[source] serde_json::Error),
    /// The event is on a stream that was never created as `what`.
    #[error("{stream} is not a {what}")]
    NotCreated { stream: String, what: &'static str },
    /// The event creates what exists already.
    #[error("{stream} was already created")]
    AlreadyCreated { stream: String },
    /// The domain has no such event type (a newer one).
    #[error("the event type is unknown to this read model")]
    UnknownType,
    /// A projection's own reason (projections outside this crate).
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a read-model query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryFault {
    /// The cursor does not decode.
    #[error("the cursor is malformed; pass the next_cursor of an earlier answer unchanged")]
    MalformedCursor,
    /// The cursor belongs to another list (another sort or filter).
    #[error("the cursor does not belong to this list; pass next_cursor unchanged")]
    ForeignCursor,
}

/// What a read model's tables hold that its code never writes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A column holds a value outside its type's values.
    #[error("the {table} table holds an unknown {what} {value:?}")]
    UnknownValue {
        table: &'static str,
        what: &'static str,
        value: String,
    },
    /// A column that is always written is NULL.
    #[error("the column {column} is unexpectedly null")]
    Null { column: String },
    /// A stored time or day does not parse.
    #[error("the stored {kind} {value:?} does not parse: {reason}")]
    Unparsable {
        kind: &'static str,
        value: String,
        reason: String,
    },
    /// A stored JSON column does not parse.
    #[error("the stored JSON of {column} does not parse: {source}")]
    Json {
        column: String,
        source: serde_json::Error,
    },
    /// A row another row refers to is missing.
    #[error("{what} has no row of {missing}")]
    Missing { what: String, missing: String },
    /// A row of a batch write with as many values as its table has
    /// columns (a bug, caught before anything is written).
    #[error("{values} values for the {columns} columns of {table}")]
    WrongArity {
        table: &'static str,
        values: usize,
        columns: usize,
    },
    /// A value of another type than its column's (a bug, caught before
    /// anything is written).
    #[error("a value of another type for {table}.{column}")]
    WrongType {
        table: &'static str,
        column: &'static str,
    },
}

/// How the generations of a read model changed under a runner or tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerationFault {
    /// A rebuild made no generation.
    #[error("a rebuild of {0} made no generation")]
    NotMade(String),
    /// A detached generation was dropped or moved while being built.
    #[error("the detached generation {generation} of {name} was dropped or moved meanwhile")]
    DetachedMoved { name: String, generation: u32 },
    /// The serving generation moved on every attempt of a diff.
    #[error(
        "the serving generation of {0} kept moving while the diff caught up with it; try again"
    )]
    KeptMoving(String),
    /// A generation to drop is still in use.
    #[error("generation {generation} of {name} is {state}, not retired")]
    NotRetired {
        name: String,
        generation: u32,
        state: String,
    },
    /// A table a diff compares is not there.
    #[error("the table {0} does not exist")]
    NoTable(String),
    /// Two generations compared by a diff have different columns.
    #[error(
        "{live} and {rebuilt} have different columns ({} / {}): built by different versions?",
        live_columns.join(", "),
        rebuilt_columns.join(", ")
    )]
    Incomparable {
        live: String,
        rebuilt: String,
        live_columns: Vec<String>,
        rebuilt_columns: Vec<String>,
    },
}

impl ProjectionError {
    /// An event the projection cannot apply, for `fault`.
    pub fn event(event: &herald_events::EventEnvelope, fault: EventFault) -> Self {
        ProjectionError::Event {
            event_type: event.event_type.to_string(),
            position: event.position,
            fault,
        }
    }
}

impl ProjectionError {
    /// An error of the kind that goes away by itself (connection lost, pool
    /// exhausted, server starting or shutting down, serialization failure,
    /// store unavailable): the batch is retried as it is, with backoff, and
    /// a query answers 503. Any other error from `apply` is taken to be
    /// about the events, and leads to the poison-event search. Postgres
    /// errors are classified by the store's one table
    /// ([`herald_store::postgres::classify`]).
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Database(e) => herald_store::postgres::is_transient(e),
            // Not getting a connection is never the fault of the events in
            // hand, whatever the reason.
            ProjectionError::Pool(_) | ProjectionError::Retired(_) => true,
            ProjectionError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            ProjectionError::Task(_) => false,
            // Failing to read the log is never the fault of the events being
            // projected either, so a store error that is not transient for a
            // client is still retried here rather than parking an event.
            ProjectionError::Store(e) => {
                e.is_transient() || matches!(e, StoreError::Backend { .. })
            }
            ProjectionError::Event { .. }
            | ProjectionError::OutOfRange { .. }
            | ProjectionError::Query(_)
            | ProjectionError::Corrupt(_)
            | ProjectionError::Generations(_)
            | ProjectionError::NotServing(_)
            | ProjectionError::VersionMismatch { .. }
            | ProjectionError::UnknownProjection(_)
            | ProjectionError::NotParked { .. }
            | ProjectionError::InvalidUrl(_)
            | ProjectionError::PoolBuild(_) => false,
        }
    }
}
