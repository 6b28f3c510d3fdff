//! Herald's read side: the [`ProjectionRunner`], which projects the event
//! store's global log into Postgres read models with exactly-once effect,
//! rebuilds them blue-green, and the [`read_models`] of every domain with
//! their queries (served over HTTP by the `herald` crate).
//!
//! Each [`Projection`] consumes the log as a named group. A batch's writes and
//! the projection's checkpoint commit in one transaction, so a crash before
//! the commit redoes the batch and a crash after it skips it. A poison event
//! is parked with its error (in the same transaction that moves the
//! checkpoint past it) and can be retried later; lag and last progress are
//! reported by [`ProjectionRunner::status`] and as metrics.

pub mod diff;
pub mod embedded;
mod error;
mod live;
mod plan;
mod projection;
pub mod read_models;
mod read_side;
mod runner;
mod schema;
mod serving;
mod sql;
mod status;
pub mod telemetry;

pub use error::{Corruption, EventFault, GenerationFault, ProjectionError, QueryFault};
pub use live::LIVE_GROUP;
pub use projection::Projection;
pub use read_side::{postgres_pool, ReadModelSet, ReadSide, ReadSideSettings, READ_MODELS_FILE};
pub use runner::{EmbeddedRunner, ProjectionRunner, Runner, RunnerConfig};
pub use schema::{schema_name, GenerationState, ParkedEvent};
pub use serving::ReadModels;
pub use sql::Serving;
pub use status::{ProjectionStatus, RebuildStatus};
