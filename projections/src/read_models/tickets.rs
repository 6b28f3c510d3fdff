//! The tickets read model: every ticket as its `tickets.*` events left it
//! (status, assignee, counts, the times of each step), its notes and its
//! history, and the queries that list and show them, on either database.
//!
//! A ticket's life starts with `ticket_opened`: the aggregate refuses every
//! other command on a ticket that was never opened, so any other event on
//! such a ticket can only come from publishing around it, and is left out
//! (a ticket without kind or customer means nothing to the views).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketReopened,
    TicketResolved, DOMAIN,
};
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{paginate, Cursor, Page, SortOrder};
use crate::sql::{
    decode, read_model, serve, Cell, Column, Db, DecodedBatch, Index, OnConflict, RowKey,
    RowReader, Rows, Serving, Table, Type,
};
use crate::ProjectionError;

/// The projection's name (checkpoint, schema prefix, metric label).
pub const NAME: &str = "tickets";

/// Where a ticket stands, as the ticket aggregate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Resolved,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Open, Self::Resolved, Self::Closed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The snake_case name of a ticket kind, as its events write it.
/// Every ticket kind.
pub const KINDS: [TicketKind; 3] = [TicketKind::Outage, TicketKind::Affecting, TicketKind::Other];

pub fn kind_name(kind: TicketKind) -> &'static str {
    match kind {
        TicketKind::Outage => "outage",
        TicketKind::Affecting => "affecting",
        TicketKind::Other => "other",
    }
}

/// The ticket kind named `text` (`outage`, `affecting` or `other`).
pub fn parse_kind(text: &str) -> Option<TicketKind> {
    KINDS.into_iter().find(|k| kind_name(*k) == text)
}

/// The version of the tables' shape and of the fold.
const VERSION: u32 = 1;

const TABLE_NAMES: &[&str] = &["tickets", "notes", "history"];

const TABLES: &[&Table] = &[&TICKETS, &NOTES, &HISTORY];

const TICKETS: Table = Table {
    name: "tickets",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("id", Type::Text),
        Column::new("kind", Type::Text),
        Column::new("status", Type::Text),
        Column::new("customer", Type::Text),
        Column::new("edge", Type::Text).null(),
        Column::new("description", Type::Text),
        Column::new("assignee", Type::Text).null(),
        Column::new("opened_by", Type::Text).null(),
        Column::new("opened_at", Type::Time),
        Column::new("updated_at", Type::Time),
        Column::new("resolved_at", Type::Time).null(),
        Column::new("closed_at", Type::Time).null(),
        Column::new("reopen_count", Type::Int),
        Column::new("note_count", Type::Int),
        Column::new("version", Type::Int),
    ],
    key: 2,
    indexes: &[
        Index {
            name: "tickets_by_opened_at",
            on: "tenant, opened_at, id",
        },
        Index {
            name: "tickets_by_updated_at",
            on: "tenant, updated_at, id",
        },
    ],
    on_conflict: OnConflict::Replace,
};

const NOTES: Table = Table {
    name: "notes",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("ticket_id", Type::Text),
        Column::new("stream_version", Type::Int),
        Column::new("note", Type::Text),
        Column::new("author", Type::Text).null(),
        Column::new("at", Type::Time),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Ignore,
};

const HISTORY: Table = Table {
    name: "history",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("ticket_id", Type::Text),
        Column::new("stream_version", Type::Int),
        Column::new("position", Type::Int),
        Column::new("event_type", Type::Text),
        Column::new("at", Type::Time),
        Column::new("summary", Type::Json),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Ignore,
};

/// Whether the tickets read model reads `event`.
fn accepts(event: &EventEnvelope) -> bool {
    event.event_type.domain() == DOMAIN && event.stream.domain().as_str() == DOMAIN
}

/// Projects `tickets.*` events into the `tickets`, `notes` and `history`
/// tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct TicketsProjection;

read_model!(TicketsProjection);

/// A row of `tickets`.
#[derive(Debug, Clone)]
struct TicketRow {
    tenant: String,
    id: String,
    kind: TicketKind,
    status: TicketStatus,
    customer: String,
    edge: Option<String>,
    description: String,
    assignee: Option<String>,
    opened_by: Option<String>,
    opened_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    reopen_count: i64,
    note_count: i64,
    version: i64,
}

impl TicketRow {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        let kind = row.text("kind")?;
        let status = row.text("status")?;
        let corrupt = |what: &'static str, value: &str| {
            ProjectionError::from(crate::Corruption::UnknownValue {
                table: "tickets",
                what,
                value: value.to_owned(),
            })
        };
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            kind: parse_kind(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            status: TicketStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            customer: row.text("customer")?,
            edge: row.text_opt("edge")?,
            description: row.text("description")?,
            assignee: row.text_opt("assignee")?,
            opened_by: row.text_opt("opened_by")?,
            opened_at: row.time("opened_at")?,
            updated_at: row.time("updated_at")?,
            resolved_at: row.time_opt("resolved_at")?,
            closed_at: row.time_opt("closed_at")?,
            reopen_count: row.int("reopen_count")?,
            note_count: row.int("note_count")?,
            version: row.int("version")?,
        })
    }

    /// The row as [`TICKETS`] writes it.
    fn cells(self) -> [Cell; 16] {
        [
            self.tenant.into(),
            self.id.into(),
            kind_name(self.kind).into(),
            self.status.as_str().into(),
            self.customer.into(),
            self.edge.into(),
            self.description.into(),
            self.assignee.into(),
            self.opened_by.into(),
            self.opened_at.into(),
            self.updated_at.into(),
            self.resolved_at.into(),
            self.closed_at.into(),
            self.reopen_count.into(),
            self.note_count.into(),
            self.version.into(),
        ]
    }

    fn opened(tenant: &str, id: &str, opened: &TicketOpened, at: DateTime<Utc>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            kind: opened.kind,
            status: TicketStatus::Open,
            customer: opened.customer.clone(),
            edge: opened.edge.clone(),
            description: opened.description.clone(),
            assignee: None,
            opened_by: opened.opened_by.clone(),
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            closed_at: None,
            reopen_count: 0,
            note_count: 0,
            version: 0,
        }
    }

    /// Applies one event, as the aggregate's `apply_event` does, and keeps
    /// the times of each step.
    fn apply(&mut self, change: &Change, at: DateTime<Utc>) {
        match change {
            Change::Opened(e) => {
                // A second opening (only possible around the aggregate)
                // restates the ticket, as the aggregate would.
                self.kind = e.kind;
                self.status = TicketStatus::Open;
                self.customer = e.customer.clone();
                self.edge = e.edge.clone();
                self.description = e.description.clone();
                self.opened_by = e.opened_by.clone();
            }
            Change::Note(_) => self.note_count += 1,
            Change::Assigned(e) => self.assignee = Some(e.assignee.clone()),
            Change::Resolved(_) => {
                self.status = TicketStatus::Resolved;
                self.resolved_at = Some(at);
            }
            Change::Reopened(_) => {
                self.status = TicketStatus::Open;
                self.reopen_count += 1;
                self.resolved_at = None;
                self.closed_at = None;
            }
            Change::Closed(_) => {
                self.status = TicketStatus::Closed;
                self.closed_at = Some(at);
            }
        }
        self.updated_at = at;
    }
}

/// A decoded `tickets.*` event.
#[derive(Debug)]
enum Change {
    Opened(TicketOpened),
    Note(NoteAppended),
    Assigned(TicketAssigned),
    Resolved(TicketResolved),
    Reopened(TicketReopened),
    Closed(TicketClosed),
}

impl Change {
    /// The event's payload; `None` for an event type this model does not
    /// know (a newer one), which it leaves out.
    fn decode(event: &EventEnvelope) -> Result<Option<Self>, ProjectionError> {
        Ok(Some(match event.event_type.name() {
            TicketOpened::NAME => Change::Opened(decode(event)?),
            NoteAppended::NAME => Change::Note(decode(event)?),
            TicketAssigned::NAME => Change::Assigned(decode(event)?),
            TicketResolved::NAME => Change::Resolved(decode(event)?),
            TicketReopened::NAME => Change::Reopened(decode(event)?),
            TicketClosed::NAME => Change::Closed(decode(event)?),
            _ => return Ok(None),
        }))
    }

    /// What the history shows of the event: its payload without the long
    /// texts (the description and the note), which the ticket and its notes
    /// hold.
    fn summary(&self) -> Value {
        let mut payload = match self {
            Change::Opened(e) => e.to_payload(),
            Change::Note(e) => e.to_payload(),
            Change::Assigned(e) => e.to_payload(),
            Change::Resolved(e) => e.to_payload(),
            Change::Reopened(e) => e.to_payload(),
            Change::Closed(e) => e.to_payload(),
        };
        if let Some(fields) = payload.as_object_mut() {
            fields.remove("description");
            fields.remove("note");
        }
        payload
    }
}

/// Writes the effect of a batch: loads the tickets it touches, folds its
/// events over them, and writes the tickets, notes and history entries.
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    let batch = DecodedBatch::decode(events, Change::decode)?;
    if batch.keys.is_empty() {
        return Ok(());
    }
    let mut tickets: HashMap<RowKey, TicketRow> = HashMap::new();
    for ticket in db
        .load(&TICKETS, "id", &batch.keys, "", "", TicketRow::from_row)
        .await?
    {
        tickets.insert((ticket.tenant.clone(), ticket.id.clone()), ticket);
    }
    let mut notes = Rows::new(&NOTES);
    let mut history = Rows::new(&HISTORY);
    for (event, change) in &batch.changes {
        let tenant = event.tenant.as_str();
        let id = event.stream.id();
        let at = event.occurred_at;
        let key = (tenant.to_owned(), id.to_owned());
        let ticket = match (tickets.get_mut(&key), change) {
            (Some(ticket), _) => ticket,
            (None, Change::Opened(opened)) => tickets
                .entry(key)
                .or_insert_with(|| TicketRow::opened(tenant, id, opened, at)),
            (None, _) => {
                tracing::debug!(tenant, ticket = id, event = %event.event_type, "An event on a ticket never opened is left out.");
                continue;
            }
        };
        ticket.apply(change, at);
        let stream_version = event.stream_version.get() as i64;
        ticket.version = ticket.version.max(stream_version);
        if let Change::Note(note) = change {
            notes.push([
                tenant.into(),
                id.into(),
                stream_version.into(),
                note.note.as_str().into(),
                note.author.as_deref().into(),
                at.into(),
            ]);
        }
        history.push([
            tenant.into(),
            id.into(),
            stream_version.into(),
            (event.position.get() as i64).into(),
            event.event_type.as_str().into(),
            at.into(),
            change.summary().into(),
        ]);
    }
    let mut rows = Rows::new(&TICKETS);
    for ticket in tickets.into_values() {
        rows.push(ticket.cells());
    }
    db.upsert(&rows).await?;
    db.upsert(&notes).await?;
    db.upsert(&history).await
}

// ---------------------------------------------------------------- queries

/// A ticket as the list and the detail show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TicketView {
    /// The ticket's id (its stream is `tickets/{id}`).
    pub id: String,
    /// `outage`, `affecting` or `other`.
    #[schema(example = "outage")]
    pub kind: String,
    pub status: TicketStatus,
    pub customer: String,
    /// The edge device the incident concerns, if any.
    pub edge: Option<String>,
    pub description: String,
    /// Who it is assigned to, once it is.
    pub assignee: Option<String>,
    /// Who or what opened it, if it said.
    pub opened_by: Option<String>,
    /// When it was opened (the event's `occurred_at`).
    pub opened_at: DateTime<Utc>,
    /// When its latest event occurred.
    pub updated_at: DateTime<Utc>,
    /// When it was resolved, while it stays resolved (or closed after).
    pub resolved_at: Option<DateTime<Utc>>,
    /// When it was closed, while it stays closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times it was reopened.
    pub reopen_count: u64,
    /// How many notes it has.
    pub note_count: u64,
    /// The stream version of its latest event.
    pub version: u64,
}

impl From<TicketRow> for TicketView {
    fn from(t: TicketRow) -> Self {
        Self {
            id: t.id,
            kind: kind_name(t.kind).to_owned(),
            status: t.status,
            customer: t.customer,
            edge: t.edge,
            description: t.description,
            assignee: t.assignee,
            opened_by: t.opened_by,
            opened_at: t.opened_at,
            updated_at: t.updated_at,
            resolved_at: t.resolved_at,
            closed_at: t.closed_at,
            reopen_count: t.reopen_count as u64,
            note_count: t.note_count as u64,
            version: t.version as u64,
        }
    }
}

/// A note on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TicketNote {
    /// The stream version of its `note_appended` event: notes in order.
    pub stream_version: u64,
    pub note: String,
    pub author: Option<String>,
    pub at: DateTime<Utc>,
}

impl TicketNote {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            stream_version: row.int("stream_version")? as u64,
            note: row.text("note")?,
            author: row.text_opt("author")?,
            at: row.time("at")?,
        })
    }
}

/// One event of a ticket's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TicketHistoryEntry {
    pub stream_version: u64,
    /// The event's position in the global log.
    pub position: u64,
    /// The event type, e.g. `tickets.ticket_assigned`.
    pub event_type: String,
    /// When it occurred.
    pub at: DateTime<Utc>,
    /// The event's payload without its long texts (description, note).
    #[schema(value_type = Object)]
    pub summary: Value,
}

impl TicketHistoryEntry {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            stream_version: row.int("stream_version")? as u64,
            position: row.int("position")? as u64,
            event_type: row.text("event_type")?,
            at: row.time("at")?,
            summary: row.json("summary")?,
        })
    }
}

/// A ticket with its notes and its history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TicketDetail {
    pub ticket: TicketView,
    pub notes: Vec<TicketNote>,
    pub history: Vec<TicketHistoryEntry>,
}

/// What a ticket list is ordered by (then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketSort {
    #[default]
    OpenedAt,
    UpdatedAt,
}

impl TicketSort {
    /// The `sort` values, the default first.
    pub const NAMES: &'static [&'static str] = &["opened_at", "updated_at"];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketSort::OpenedAt => "opened_at",
            TicketSort::UpdatedAt => "updated_at",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::OpenedAt, Self::UpdatedAt]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    fn value(self, ticket: &TicketView) -> DateTime<Utc> {
        match self {
            TicketSort::OpenedAt => ticket.opened_at,
            TicketSort::UpdatedAt => ticket.updated_at,
        }
    }
}

/// A page of a tenant's tickets: filters (all optional, combined with
/// and), sort, order, size and where to start.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    pub kind: Option<TicketKind>,
    pub customer: Option<String>,
    pub edge: Option<String>,
    pub assignee: Option<String>,
    pub sort: TicketSort,
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for TicketQuery {
    fn default() -> Self {
        Self {
            status: None,
            kind: None,
            customer: None,
            edge: None,
            assignee: None,
            sort: TicketSort::default(),
            order: SortOrder::default(),
            limit: 50,
            cursor: None,
        }
    }
}

/// The time a cursor of a time sort points after.
fn cursor_time(cursor: &Cursor) -> Result<DateTime<Utc>, ProjectionError> {
    cursor
        .value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| crate::QueryFault::MalformedCursor.into())
}

impl TicketQuery {
    /// The statement of a page. Its parameters: the tenant, the five
    /// filters (status, kind, customer, edge, assignee; NULL when absent),
    /// the cursor's time and id (NULL without a cursor) and the row limit.
    fn sql(&self, db: &impl Db) -> String {
        let dialect = db.dialect();
        let p = |n, ty| dialect.param(n, ty);
        let tickets = db.table("tickets");
        let column = self.sort.as_str();
        let (direction, beyond) = (self.order.sql(), self.order.after());
        // Absent filters are NULL parameters: one statement serves every
        // combination, and the planner drops the NULL tests of each call.
        format!(
            "SELECT {} FROM {tickets}
             WHERE tenant = {}
               AND ({} IS NULL OR status = {})
               AND ({} IS NULL OR kind = {})
               AND ({} IS NULL OR customer = {})
               AND ({} IS NULL OR edge = {})
               AND ({} IS NULL OR assignee = {})
               AND ({} IS NULL OR ({column}, id) {beyond} ({}, {}))
             ORDER BY {column} {direction}, id {direction}
             LIMIT {}",
            TICKETS.column_list(),
            p(1, Type::Text),
            p(2, Type::Text),
            p(2, Type::Text),
            p(3, Type::Text),
            p(3, Type::Text),
            p(4, Type::Text),
            p(4, Type::Text),
            p(5, Type::Text),
            p(5, Type::Text),
            p(6, Type::Text),
            p(6, Type::Text),
            p(8, Type::Text),
            p(7, Type::Time),
            p(8, Type::Text),
            p(9, Type::Int),
        )
    }

    /// The page of the `limit + 1` rows the statement found.
    fn page(&self, rows: Vec<TicketRow>) -> Page<TicketView> {
        let tickets = rows.into_iter().map(TicketView::from).collect();
        let sort = self.sort;
        paginate(tickets, self.limit, |t| Cursor {
            sort: sort.as_str().to_owned(),
            value: Value::String(sort.value(t).to_rfc3339_opts(SecondsFormat::Micros, true)),
            id: t.id.clone(),
        })
    }
}

/// A page of `tenant`'s tickets.
pub async fn list<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &TenantId,
    query: &TicketQuery,
) -> Result<Page<TicketView>, ProjectionError> {
    let after = query
        .cursor
        .as_ref()
        .map(|c| Ok::<_, ProjectionError>((cursor_time(c)?, c.id.clone())))
        .transpose()?;
    let params: Vec<Cell> = vec![
        tenant.as_str().into(),
        query.status.map(TicketStatus::as_str).into(),
        query.kind.map(kind_name).into(),
        query.customer.clone().into(),
        query.edge.clone().into(),
        query.assignee.clone().into(),
        after.as_ref().map(|(time, _)| *time).into(),
        after.map(|(_, id)| id).into(),
        (query.limit as i64 + 1).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let rows = db
            .rows(&query.sql(db), &params, TicketRow::from_row)
            .await?;
        Ok(query.page(rows))
    })
}

/// `tenant`'s ticket `id` with its notes and history; `None` when there is
/// no such ticket.
pub async fn get<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<TicketDetail>, ProjectionError> {
    let key: Vec<Cell> = vec![tenant.as_str().into(), id.into()];
    // One snapshot: the ticket's counts agree with the notes and history
    // shown, even while the runner commits a batch.
    serve!(
        read_models.into(),
        NAME,
        snapshot
            | db
            | async move {
                let (tenant, id) = (
                    db.dialect().param(1, Type::Text),
                    db.dialect().param(2, Type::Text),
                );
                let of_ticket =
                    format!("WHERE tenant = {tenant} AND ticket_id = {id} ORDER BY stream_version");
                let sql = format!(
                    "SELECT {} FROM {} WHERE tenant = {tenant} AND id = {id}",
                    TICKETS.column_list(),
                    db.table("tickets")
                );
                let Some(ticket) = db.row(&sql, &key, TicketRow::from_row).await? else {
                    return Ok(None);
                };
                let sql = format!(
                    "SELECT {} FROM {} {of_ticket}",
                    NOTES.column_list(),
                    db.table("notes")
                );
                let notes = db.rows(&sql, &key, TicketNote::from_row).await?;
                let sql = format!(
                    "SELECT {} FROM {} {of_ticket}",
                    HISTORY.column_list(),
                    db.table("history")
                );
                let history = db.rows(&sql, &key, TicketHistoryEntry::from_row).await?;
                Ok::<_, ProjectionError>(Some(TicketDetail {
                    ticket: TicketView::from(ticket),
                    notes,
                    history,
                }))
            }
    )
}
