//! The errors of projecting, and which of them are worth retrying as they
//! are (transient) rather than treated as the fault of one event (poison).

use herald_events::Position;
use herald_store::StoreError;

/// What can go wrong while projecting.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A query on the read-model database failed.
    #[error("read-model database: {}", herald_store::postgres::describe(.0))]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the read-model pool.
    #[error("read-model pool: {}", herald_store::postgres::describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A query on the embedded (SQLite) read models failed.
    #[error("the read models' Postgres URL does not parse: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),

    #[error("read-model pool: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),

    #[error("embedded read models: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A bug: a task panicked or an invariant broke.
    #[error("internal error: {0}")]
    Internal(String),
    /// Reading the event store failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The projection refused an event (raised by `Projection::apply`).
    #[error("{0}")]
    Rejected(String),
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
            ProjectionError::Internal(_) => false,
            // Failing to read the log is never the fault of the events being
            // projected either, so a store error that is not transient for a
            // client is still retried here rather than parking an event.
            ProjectionError::Store(e) => {
                e.is_transient() || matches!(e, StoreError::Backend { .. })
            }
            ProjectionError::Rejected(_)
            | ProjectionError::NotServing(_)
            | ProjectionError::VersionMismatch { .. }
            | ProjectionError::UnknownProjection(_)
            | ProjectionError::NotParked { .. }
            | ProjectionError::InvalidUrl(_)
            | ProjectionError::PoolBuild(_) => false,
        }
    }
}
