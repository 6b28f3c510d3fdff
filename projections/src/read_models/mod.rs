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

/// The domains whose events the read models read: the broker topics a
/// live runner follows.
pub const DOMAINS: &[&str] = &["tickets", "edges", "drafts", "timers", "statistics"];

/// Every domain's projection, as `herald serve` runs them.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(tickets::TicketsProjection),
        Arc::new(edges::EdgesProjection),
        Arc::new(timers::TimersProjection),
        Arc::new(drafts::DraftsProjection),
        Arc::new(statistics::StatisticsProjection),
    ]
}
