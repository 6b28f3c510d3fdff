//! The errors of projecting, and which of them are worth retrying as they
//! are (transient) rather than treated as the fault of one event (poison).

use herald_events::Position;
use herald_store::StoreError;

/// What can go wrong while projecting.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A query on the read-model database failed.
    #[error("read-model database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the read-model pool.
    #[error("read-model pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A query on the embedded (SQLite) read models failed.
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
    /// exhausted, serialization failure, store unavailable): the batch is
    /// retried as it is, with backoff. Any other error from `apply` is taken
    /// to be about the events, and leads to the poison-event search.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Database(e) => is_transient_pg(e),
            ProjectionError::Pool(_) | ProjectionError::Retired(_) => true,
            ProjectionError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            ProjectionError::Internal(_) => false,
            ProjectionError::Store(e) => {
                matches!(
                    e,
                    StoreError::Unavailable { .. } | StoreError::Backend { .. }
                )
            }
            ProjectionError::Rejected(_)
            | ProjectionError::NotServing(_)
            | ProjectionError::VersionMismatch { .. }
            | ProjectionError::UnknownProjection(_)
            | ProjectionError::NotParked { .. } => false,
        }
    }
}

fn is_transient_pg(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O or protocol failure, not a refusal of the data.
        None => true,
        Some(code) => {
            let code = code.code();
            // 08: connection exception; 40001/40P01: serialization failure and
            // deadlock; 53: insufficient resources; 57P: server shutting down.
            code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("53")
                || code.starts_with("57P")
        }
    }
}
