//! The ticket's decisions: which events each command causes in each state.

use crate::aggregate::{Aggregate, CommandContext, Refusal};

use super::commands::{TicketCommand, NAMES};
use super::events::{
    NoteAppended, TicketAssigned, TicketClosed, TicketEvent, TicketKind, TicketOpened,
    TicketReopened, TicketResolved,
};
use super::outage_ticket_id;
use super::state::{Ticket, TicketStatus};

impl Aggregate for Ticket {
    const DOMAIN: &'static str = herald_events::tickets::DOMAIN;
    const STATE_VERSION: u32 = 1;
    const COMMANDS: &'static [&'static str] = NAMES;
    type Command = TicketCommand;
    type Event = TicketEvent;

    fn apply(&mut self, event: &TicketEvent) {
        self.apply_event(event);
    }

    fn decide(
        &self,
        command: TicketCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<TicketEvent>, Refusal> {
        let id = ctx.stream.id();
        if let TicketCommand::Open {
            kind,
            customer,
            edge,
            description,
            opened_by,
        } = command
        {
            if self.status.is_some() {
                return Err(Refusal::forbidden(format!(
                    "ticket {id} is already open or was opened before; reopen it instead"
                )));
            }
            if kind == TicketKind::Outage {
                let Some(edge) = &edge else {
                    return Err(Refusal::invalid("an outage ticket names its edge"));
                };
                let expected = outage_ticket_id(edge);
                if id != expected {
                    return Err(Refusal::invalid(format!(
                        "the outage ticket of edge {edge} is {expected} (one per edge), not {id}"
                    )));
                }
            }
            if customer.trim().is_empty() {
                return Err(Refusal::invalid("customer must not be empty"));
            }
            return Ok(vec![TicketOpened {
                kind,
                customer,
                edge,
                description,
                opened_by,
            }
            .into()]);
        }
        let Some(status) = self.status else {
            return Err(Refusal::not_found(format!(
                "ticket {id} has not been opened"
            )));
        };
        match command {
            TicketCommand::Open { .. } => unreachable!("handled above"),
            TicketCommand::AppendNote { note, author } => {
                if status == TicketStatus::Closed {
                    return Err(Refusal::forbidden(format!(
                        "ticket {id} is closed: no more notes"
                    )));
                }
                Ok(vec![NoteAppended { note, author }.into()])
            }
            TicketCommand::Assign {
                assignee,
                assigned_by,
            } => {
                if status == TicketStatus::Closed {
                    return Err(Refusal::forbidden(format!("ticket {id} is closed")));
                }
                if self.assignee.as_deref() == Some(assignee.as_str()) {
                    return Ok(Vec::new());
                }
                Ok(vec![TicketAssigned {
                    assignee,
                    assigned_by,
                }
                .into()])
            }
            TicketCommand::Resolve {
                resolution,
                resolved_by,
            } => {
                if status != TicketStatus::Open {
                    return Err(Refusal::forbidden(format!(
                        "only an open ticket is resolved; ticket {id} is {}",
                        status_name(status)
                    )));
                }
                Ok(vec![TicketResolved {
                    resolution,
                    resolved_by,
                }
                .into()])
            }
            TicketCommand::Reopen {
                reason,
                reopened_by,
            } => {
                if status == TicketStatus::Open {
                    return Err(Refusal::forbidden(format!("ticket {id} is already open")));
                }
                Ok(vec![TicketReopened {
                    reason,
                    reopened_by,
                }
                .into()])
            }
            TicketCommand::Close { reason, closed_by } => {
                if status == TicketStatus::Closed {
                    return Err(Refusal::forbidden(format!("ticket {id} is already closed")));
                }
                Ok(vec![TicketClosed { reason, closed_by }.into()])
            }
        }
    }
}

fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Open => "open",
        TicketStatus::Resolved => "resolved",
        TicketStatus::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::RefusalKind;
    use crate::testing::given;

    fn opened(kind: TicketKind, edge: Option<&str>) -> TicketEvent {
        TicketOpened {
            kind,
            customer: "acme".into(),
            edge: edge.map(str::to_owned),
            description: "down".into(),
            opened_by: None,
        }
        .into()
    }

    fn open(kind: TicketKind, edge: Option<&str>) -> TicketCommand {
        TicketCommand::Open {
            kind,
            customer: "acme".into(),
            edge: edge.map(str::to_owned),
            description: "down".into(),
            opened_by: None,
        }
    }

    fn note(text: &str) -> TicketCommand {
        TicketCommand::AppendNote {
            note: text.into(),
            author: None,
        }
    }

    fn resolve() -> TicketCommand {
        TicketCommand::Resolve {
            resolution: None,
            resolved_by: None,
        }
    }

    fn resolved() -> TicketEvent {
        TicketResolved {
            resolution: None,
            resolved_by: None,
        }
        .into()
    }

    fn closed() -> TicketEvent {
        TicketClosed {
            reason: None,
            closed_by: None,
        }
        .into()
    }

    #[test]
    fn a_ticket_opens_once() {
        let state = given::<Ticket>([])
            .when(open(TicketKind::Other, None))
            .then([opened(TicketKind::Other, None)]);
        assert_eq!(state.status, Some(TicketStatus::Open));
        given::<Ticket>([opened(TicketKind::Other, None)])
            .when(open(TicketKind::Other, None))
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn no_note_on_a_closed_ticket() {
        given::<Ticket>([opened(TicketKind::Other, None)])
            .when(note("looking"))
            .then([NoteAppended {
                note: "looking".into(),
                author: None,
            }
            .into()]);
        let why = given::<Ticket>([opened(TicketKind::Other, None), closed()])
            .when(note("too late"))
            .then_refused(RefusalKind::Forbidden);
        assert!(why.contains("closed"), "{why}");
    }

    #[test]
    fn only_an_open_ticket_is_resolved() {
        given::<Ticket>([opened(TicketKind::Other, None)])
            .when(resolve())
            .then([resolved()]);
        given::<Ticket>([opened(TicketKind::Other, None), resolved()])
            .when(resolve())
            .then_refused(RefusalKind::Forbidden);
        given::<Ticket>([opened(TicketKind::Other, None), closed()])
            .when(resolve())
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn resolved_and_closed_tickets_reopen_open_ones_do_not() {
        let reopen = || TicketCommand::Reopen {
            reason: None,
            reopened_by: None,
        };
        let reopened: TicketEvent = TicketReopened {
            reason: None,
            reopened_by: None,
        }
        .into();
        given::<Ticket>([opened(TicketKind::Other, None), resolved()])
            .when(reopen())
            .then([reopened.clone()]);
        given::<Ticket>([opened(TicketKind::Other, None), closed()])
            .when(reopen())
            .then([reopened]);
        given::<Ticket>([opened(TicketKind::Other, None)])
            .when(reopen())
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn commands_on_a_ticket_never_opened_are_not_found() {
        given::<Ticket>([])
            .when(resolve())
            .then_refused(RefusalKind::NotFound);
        given::<Ticket>([])
            .when(note("x"))
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn an_outage_ticket_lives_at_its_edge_s_id() {
        // The scenario's stream id is not the edge's outage id.
        let why = given::<Ticket>([])
            .when(open(TicketKind::Outage, Some("E-17")))
            .then_refused(RefusalKind::Invalid);
        assert!(why.contains("outage.E-17"), "{why}");
        given::<Ticket>([])
            .when(open(TicketKind::Outage, None))
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn assigning_the_same_assignee_again_changes_nothing() {
        let assign = || TicketCommand::Assign {
            assignee: "noc".into(),
            assigned_by: None,
        };
        let assigned: TicketEvent = TicketAssigned {
            assignee: "noc".into(),
            assigned_by: None,
        }
        .into();
        given::<Ticket>([opened(TicketKind::Other, None)])
            .when(assign())
            .then([assigned.clone()]);
        given::<Ticket>([opened(TicketKind::Other, None), assigned])
            .when(assign())
            .then_nothing();
    }
}
