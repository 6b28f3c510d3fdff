//! The `tickets` domain: network-incident tickets. Read top to bottom:
//! [`commands`], [`events`] (the payloads live in herald-events), [`state`]
//! (`apply`), [`decide`].
//!
//! Rules: a ticket is opened once; no note on a closed ticket; only an open
//! ticket is resolved; a resolved or closed ticket may be reopened. At most
//! one outage ticket is open per edge, by construction: an edge's outage
//! ticket is always the stream `tickets/outage.<edge>` (see
//! [`outage_ticket_id`]), so a new outage of the edge reopens it rather
//! than opening a second one, and its history stays in one place.

pub mod commands;
pub mod decide;
pub mod events;
pub mod state;

pub use commands::TicketCommand;
pub use events::TicketEvent;
pub use state::{Ticket, TicketStatus};

/// The id of an edge's outage ticket.
pub fn outage_ticket_id(edge: &str) -> String {
    format!("outage.{edge}")
}

/// The domain's registration: its aggregate and its events.
pub fn spec() -> crate::domain::AggregateDomain<Ticket> {
    crate::domain::AggregateDomain::new(herald_events::tickets::EVENT_TYPES)
}
