//! The read models on the embedded store's backend (SQLite): for each
//! domain, the [`SqliteProjection`](crate::embedded::SqliteProjection) of the
//! same struct as its Postgres projection, and the same queries answering
//! the same types — so the HTTP API is one whatever the store.

pub mod drafts;
pub mod edges;
pub mod statistics;
pub mod tickets;
pub mod timers;

use std::sync::Arc;

use crate::embedded::SqliteProjection;

/// Every domain's SQLite projection, as `herald serve` runs them on the
/// embedded store.
pub fn all() -> Vec<Arc<dyn SqliteProjection>> {
    vec![
        Arc::new(super::tickets::TicketsProjection),
        Arc::new(super::edges::EdgesProjection),
        Arc::new(super::timers::TimersProjection),
        Arc::new(super::drafts::DraftsProjection),
        Arc::new(super::statistics::StatisticsProjection),
    ]
}
