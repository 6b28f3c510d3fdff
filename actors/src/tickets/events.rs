//! The ticket aggregate's events: one variant per `tickets.*` event type.

pub use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketReopened,
    TicketResolved,
};

crate::domain_events! {
    /// Everything that can happen to a ticket.
    pub enum TicketEvent for herald_events::tickets::DOMAIN {
        Opened(TicketOpened),
        NoteAppended(NoteAppended),
        Assigned(TicketAssigned),
        Resolved(TicketResolved),
        Reopened(TicketReopened),
        Closed(TicketClosed),
    }
}
