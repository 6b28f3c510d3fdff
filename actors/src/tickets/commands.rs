//! What can be asked of a ticket. Over HTTP each is
//! `POST /v1/tickets/{id}/{name}` with the variant's fields as the body.

use serde::Deserialize;

use super::events::TicketKind;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TicketCommand {
    /// `open {kind, customer, edge?, description, opened_by?}`
    Open {
        kind: TicketKind,
        customer: String,
        #[serde(default)]
        edge: Option<String>,
        description: String,
        #[serde(default)]
        opened_by: Option<String>,
    },
    /// `append_note {note, author?}`
    AppendNote {
        note: String,
        #[serde(default)]
        author: Option<String>,
    },
    /// `assign {assignee, assigned_by?}`
    Assign {
        assignee: String,
        #[serde(default)]
        assigned_by: Option<String>,
    },
    /// `resolve {resolution?, resolved_by?}`
    Resolve {
        #[serde(default)]
        resolution: Option<String>,
        #[serde(default)]
        resolved_by: Option<String>,
    },
    /// `reopen {reason?, reopened_by?}`
    Reopen {
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        reopened_by: Option<String>,
    },
    /// `close {reason?, closed_by?}`
    Close {
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        closed_by: Option<String>,
    },
}

/// The commands' names, as in URLs.
pub const NAMES: &[&str] = &[
    "open",
    "append_note",
    "assign",
    "resolve",
    "reopen",
    "close",
];
