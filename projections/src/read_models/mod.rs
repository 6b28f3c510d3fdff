//! The read models of every domain: one module each, holding its
//! [`Projection`](crate::Projection) and the queries that serve it (the HTTP
//! handlers in the `herald` crate call these). Shared here: the page and
//! cursor conventions of every list.

pub mod drafts;
pub mod edges;
pub mod statistics;
pub mod tickets;
pub mod timers;

pub mod embedded;
mod page;

pub use page::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};

use std::sync::Arc;

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
