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
pub mod tickets;
pub mod timers;

mod page;

pub use page::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};

use std::sync::Arc;

use crate::embedded::SqliteProjection;
use crate::Projection;

/// Every domain's Postgres projection (tests and benches use this;
/// `herald serve` takes each from its domain's registration in
/// `herald::domains::builtin`).
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(tickets::TicketsProjection),
        Arc::new(edges::EdgesProjection),
        Arc::new(timers::TimersProjection),
        Arc::new(drafts::DraftsProjection),
        Arc::new(statistics::StatisticsProjection),
    ]
}

/// Every domain's SQLite projection, as `herald serve` runs them on the
/// embedded store.
pub fn all_embedded() -> Vec<Arc<dyn SqliteProjection>> {
    vec![
        Arc::new(tickets::TicketsProjection),
        Arc::new(edges::EdgesProjection),
        Arc::new(timers::TimersProjection),
        Arc::new(drafts::DraftsProjection),
        Arc::new(statistics::StatisticsProjection),
    ]
}
