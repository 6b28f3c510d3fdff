//! The read models of every domain: one module each, serving both
//! read-model databases (Postgres, and SQLite beside the embedded store):
//! its tables, its projection (a [`Projection`](crate::Projection) and a
//! [`SqliteProjection`](crate::embedded::SqliteProjection) from one fold,
//! written with the [SQL kit](crate::sql)) and the queries that serve it,
//! which take either database's read models and answer the same types
//! (the HTTP handlers in the `herald` crate call these). Shared here: the
//! page and cursor conventions of every list.

pub mod drafts;
pub mod edges;
pub mod statistics;
pub mod streams;
pub mod tickets;
pub mod timers;

mod page;

pub use page::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};

use std::sync::Arc;

use crate::embedded::SqliteProjection;
use crate::{Projection, ReadModelSet};

/// Every read model this crate ships, one line each, for both databases.
/// Tests and benches use it; `herald serve` takes each read model from its
/// domain's line in `herald::domains::builtin` (a test there checks the two
/// agree).
pub fn shipped() -> ReadModelSet {
    ReadModelSet::default()
        .with(tickets::TicketsProjection)
        .with(edges::EdgesProjection)
        .with(timers::TimersProjection)
        .with(drafts::DraftsProjection)
        .with(statistics::StatisticsProjection)
        .with(streams::StreamsProjection)
}

/// Every read model's Postgres projection.
pub fn all() -> Vec<Arc<dyn Projection>> {
    shipped().postgres
}

/// Every read model's SQLite projection.
pub fn all_embedded() -> Vec<Arc<dyn SqliteProjection>> {
    shipped().sqlite
}
