//! A ticket as its events left it.

use serde::{Deserialize, Serialize};

use super::events::{TicketEvent, TicketKind};

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Resolved,
    Closed,
}

/// The ticket aggregate's state. `status` is `None` until it is opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub status: Option<TicketStatus>,
    pub kind: Option<TicketKind>,
    pub customer: String,
    pub edge: Option<String>,
    pub description: String,
    pub assignee: Option<String>,
    pub notes: u64,
    pub times_reopened: u64,
}

impl Ticket {
    pub fn apply_event(&mut self, event: &TicketEvent) {
        match event {
            TicketEvent::Opened(e) => {
                self.status = Some(TicketStatus::Open);
                self.kind = Some(e.kind);
                self.customer = e.customer.clone();
                self.edge = e.edge.clone();
                self.description = e.description.clone();
            }
            TicketEvent::NoteAppended(_) => self.notes += 1,
            TicketEvent::Assigned(e) => self.assignee = Some(e.assignee.clone()),
            TicketEvent::Resolved(_) => self.status = Some(TicketStatus::Resolved),
            TicketEvent::Reopened(_) => {
                self.status = Some(TicketStatus::Open);
                self.times_reopened += 1;
            }
            TicketEvent::Closed(_) => self.status = Some(TicketStatus::Closed),
        }
    }
}
