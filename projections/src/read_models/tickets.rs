//! The tickets read model: every ticket as its `tickets.*` events left it
//! (status, assignee, counts, the times of each step), its notes and its
//! history, and the queries that list and show them.
//!
//! A ticket's life starts with `ticket_opened`: the aggregate refuses every
//! other command on a ticket that was never opened, so any other event on
//! such a ticket can only come from publishing around it, and is left out
//! (a ticket without kind or customer means nothing to the views).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketReopened,
    TicketResolved, DOMAIN,
};
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row, Transaction};
use utoipa::ToSchema;

use super::{paginate, Cursor, Page, SortOrder};
use crate::{Projection, ProjectionError, ReadModels};

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
pub fn kind_name(kind: TicketKind) -> &'static str {
    match kind {
        TicketKind::Outage => "outage",
        TicketKind::Affecting => "affecting",
        TicketKind::Other => "other",
    }
}

/// The ticket kind named `text` (`outage`, `affecting` or `other`).
pub fn parse_kind(text: &str) -> Option<TicketKind> {
    [TicketKind::Outage, TicketKind::Affecting, TicketKind::Other]
        .into_iter()
        .find(|k| kind_name(*k) == text)
}

/// Projects `tickets.*` events into the `tickets`, `notes` and `history`
/// tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct TicketsProjection;

const TABLES: &[&str] = &["tickets", "notes", "history"];

/// The columns of `tickets`, in the order [`TicketRow::from_row`] and the
/// upsert use.
const TICKET_COLUMNS: &str = "tenant, id, kind, status, customer, edge, description, assignee, \
    opened_by, opened_at, updated_at, resolved_at, closed_at, reopen_count, note_count, version";

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
    fn from_row(row: &Row) -> Result<Self, ProjectionError> {
        let kind: &str = row.get("kind");
        let status: &str = row.get("status");
        let corrupt = |what: &str, value: &str| {
            ProjectionError::Rejected(format!(
                "the tickets table holds an unknown {what} {value:?}"
            ))
        };
        Ok(Self {
            tenant: row.get("tenant"),
            id: row.get("id"),
            kind: parse_kind(kind).ok_or_else(|| corrupt("kind", kind))?,
            status: TicketStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
            customer: row.get("customer"),
            edge: row.get("edge"),
            description: row.get("description"),
            assignee: row.get("assignee"),
            opened_by: row.get("opened_by"),
            opened_at: row.get("opened_at"),
            updated_at: row.get("updated_at"),
            resolved_at: row.get("resolved_at"),
            closed_at: row.get("closed_at"),
            reopen_count: row.get("reopen_count"),
            note_count: row.get("note_count"),
            version: row.get("version"),
        })
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

fn decode<T: TypedEvent>(event: &EventEnvelope) -> Result<T, ProjectionError> {
    T::deserialize(&event.payload).map_err(|e| {
        ProjectionError::Rejected(format!(
            "{} at position {} does not fit its schema: {e}",
            event.event_type, event.position
        ))
    })
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

/// The rows one batch writes: the final state of each ticket it touched,
/// and the notes and history entries it added.
#[derive(Default)]
struct BatchWrites {
    tickets: HashMap<(String, String), TicketRow>,
    notes: NoteColumns,
    history: HistoryColumns,
}

#[derive(Default)]
struct NoteColumns {
    tenant: Vec<String>,
    ticket_id: Vec<String>,
    stream_version: Vec<i64>,
    note: Vec<String>,
    author: Vec<Option<String>>,
    at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct HistoryColumns {
    tenant: Vec<String>,
    ticket_id: Vec<String>,
    stream_version: Vec<i64>,
    position: Vec<i64>,
    event_type: Vec<String>,
    at: Vec<DateTime<Utc>>,
    summary: Vec<Value>,
}

impl BatchWrites {
    /// Folds the batch's events over the stored state of their tickets.
    fn fold(
        stored: HashMap<(String, String), TicketRow>,
        events: &[(&EventEnvelope, Change)],
    ) -> Self {
        let mut writes = BatchWrites {
            tickets: stored,
            ..BatchWrites::default()
        };
        for (event, change) in events {
            let tenant = event.tenant.as_str();
            let id = event.stream.id();
            let at = event.occurred_at;
            let key = (tenant.to_owned(), id.to_owned());
            let ticket = match (writes.tickets.get_mut(&key), change) {
                (Some(ticket), _) => ticket,
                (None, Change::Opened(opened)) => writes
                    .tickets
                    .entry(key)
                    .or_insert_with(|| TicketRow::opened(tenant, id, opened, at)),
                (None, _) => {
                    tracing::debug!(tenant, ticket = id, event = %event.event_type, "event on a ticket never opened; left out");
                    continue;
                }
            };
            ticket.apply(change, at);
            let stream_version = event.stream_version.get() as i64;
            ticket.version = ticket.version.max(stream_version);
            if let Change::Note(note) = change {
                let n = &mut writes.notes;
                n.tenant.push(tenant.to_owned());
                n.ticket_id.push(id.to_owned());
                n.stream_version.push(stream_version);
                n.note.push(note.note.clone());
                n.author.push(note.author.clone());
                n.at.push(at);
            }
            let h = &mut writes.history;
            h.tenant.push(tenant.to_owned());
            h.ticket_id.push(id.to_owned());
            h.stream_version.push(stream_version);
            h.position.push(event.position.get() as i64);
            h.event_type.push(event.event_type.as_str().to_owned());
            h.at.push(at);
            h.summary.push(change.summary());
        }
        writes
    }
}

/// The stored rows of the tickets `keys` names (those that exist).
async fn stored_tickets(
    tx: &Transaction<'_>,
    schema: &str,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), TicketRow>, ProjectionError> {
    let (tenants, ids): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(t, i)| (t.as_str(), i.as_str())).unzip();
    let rows = tx
        .query(
            &format!(
                "SELECT {TICKET_COLUMNS} FROM {schema}.tickets \
                 WHERE (tenant, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
            ),
            &[&tenants, &ids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let ticket = TicketRow::from_row(row)?;
            Ok(((ticket.tenant.clone(), ticket.id.clone()), ticket))
        })
        .collect()
}

async fn write_tickets(
    tx: &Transaction<'_>,
    schema: &str,
    tickets: Vec<TicketRow>,
) -> Result<(), ProjectionError> {
    if tickets.is_empty() {
        return Ok(());
    }
    let mut tenant = Vec::new();
    let mut id = Vec::new();
    let mut kind = Vec::new();
    let mut status = Vec::new();
    let mut customer = Vec::new();
    let mut edge = Vec::new();
    let mut description = Vec::new();
    let mut assignee = Vec::new();
    let mut opened_by = Vec::new();
    let mut opened_at = Vec::new();
    let mut updated_at = Vec::new();
    let mut resolved_at = Vec::new();
    let mut closed_at = Vec::new();
    let mut reopen_count = Vec::new();
    let mut note_count = Vec::new();
    let mut version = Vec::new();
    for t in tickets {
        tenant.push(t.tenant);
        id.push(t.id);
        kind.push(kind_name(t.kind));
        status.push(t.status.as_str());
        customer.push(t.customer);
        edge.push(t.edge);
        description.push(t.description);
        assignee.push(t.assignee);
        opened_by.push(t.opened_by);
        opened_at.push(t.opened_at);
        updated_at.push(t.updated_at);
        resolved_at.push(t.resolved_at);
        closed_at.push(t.closed_at);
        reopen_count.push(t.reopen_count);
        note_count.push(t.note_count);
        version.push(t.version);
    }
    let columns: [&(dyn ToSql + Sync); 16] = [
        &tenant,
        &id,
        &kind,
        &status,
        &customer,
        &edge,
        &description,
        &assignee,
        &opened_by,
        &opened_at,
        &updated_at,
        &resolved_at,
        &closed_at,
        &reopen_count,
        &note_count,
        &version,
    ];
    tx.execute(
        &format!(
            "INSERT INTO {schema}.tickets ({TICKET_COLUMNS}) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], \
                 $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::bigint[], \
                 $15::bigint[], $16::bigint[]) \
             ON CONFLICT (tenant, id) DO UPDATE SET kind = EXCLUDED.kind, \
                 status = EXCLUDED.status, customer = EXCLUDED.customer, edge = EXCLUDED.edge, \
                 description = EXCLUDED.description, assignee = EXCLUDED.assignee, \
                 opened_by = EXCLUDED.opened_by, opened_at = EXCLUDED.opened_at, \
                 updated_at = EXCLUDED.updated_at, resolved_at = EXCLUDED.resolved_at, \
                 closed_at = EXCLUDED.closed_at, reopen_count = EXCLUDED.reopen_count, \
                 note_count = EXCLUDED.note_count, version = EXCLUDED.version"
        ),
        &columns,
    )
    .await?;
    Ok(())
}

async fn write_notes(
    tx: &Transaction<'_>,
    schema: &str,
    n: &NoteColumns,
) -> Result<(), ProjectionError> {
    if n.tenant.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT INTO {schema}.notes (tenant, ticket_id, stream_version, note, author, at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::timestamptz[]) \
             ON CONFLICT DO NOTHING"
        ),
        &[
            &n.tenant,
            &n.ticket_id,
            &n.stream_version,
            &n.note,
            &n.author,
            &n.at,
        ],
    )
    .await?;
    Ok(())
}

async fn write_history(
    tx: &Transaction<'_>,
    schema: &str,
    h: &HistoryColumns,
) -> Result<(), ProjectionError> {
    if h.tenant.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT INTO {schema}.history \
                 (tenant, ticket_id, stream_version, position, event_type, at, summary) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                 $5::text[], $6::timestamptz[], $7::jsonb[]) \
             ON CONFLICT DO NOTHING"
        ),
        &[
            &h.tenant,
            &h.ticket_id,
            &h.stream_version,
            &h.position,
            &h.event_type,
            &h.at,
            &h.summary,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for TicketsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.event_type.domain() == DOMAIN && event.stream.domain().as_str() == DOMAIN
    }

    async fn setup(&self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.tickets (
                tenant text NOT NULL,
                id text NOT NULL,
                kind text NOT NULL,
                status text NOT NULL,
                customer text NOT NULL,
                edge text,
                description text NOT NULL,
                assignee text,
                opened_by text,
                opened_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                resolved_at timestamptz,
                closed_at timestamptz,
                reopen_count bigint NOT NULL,
                note_count bigint NOT NULL,
                version bigint NOT NULL,
                PRIMARY KEY (tenant, id)
            );
            CREATE INDEX IF NOT EXISTS tickets_by_opened_at
                ON {schema}.tickets (tenant, opened_at, id);
            CREATE INDEX IF NOT EXISTS tickets_by_updated_at
                ON {schema}.tickets (tenant, updated_at, id);
            CREATE TABLE IF NOT EXISTS {schema}.notes (
                tenant text NOT NULL,
                ticket_id text NOT NULL,
                stream_version bigint NOT NULL,
                note text NOT NULL,
                author text,
                at timestamptz NOT NULL,
                PRIMARY KEY (tenant, ticket_id, stream_version)
            );
            CREATE TABLE IF NOT EXISTS {schema}.history (
                tenant text NOT NULL,
                ticket_id text NOT NULL,
                stream_version bigint NOT NULL,
                position bigint NOT NULL,
                event_type text NOT NULL,
                at timestamptz NOT NULL,
                summary jsonb NOT NULL,
                PRIMARY KEY (tenant, ticket_id, stream_version)
            );"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            if let Some(change) = Change::decode(event)? {
                changes.push((event, change));
            }
        }
        let mut keys: Vec<(String, String)> = changes
            .iter()
            .map(|(e, _)| (e.tenant.as_str().to_owned(), e.stream.id().to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let stored = stored_tickets(tx, schema, &keys).await?;
        let writes = BatchWrites::fold(stored, &changes);
        write_tickets(tx, schema, writes.tickets.into_values().collect()).await?;
        write_notes(tx, schema, &writes.notes).await?;
        write_history(tx, schema, &writes.history).await?;
        Ok(())
    }
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
        .ok_or_else(|| {
            ProjectionError::Rejected(
                "the cursor is malformed; pass the next_cursor of an earlier answer unchanged"
                    .into(),
            )
        })
}

/// A page of `tenant`'s tickets.
pub async fn list(
    read_models: &ReadModels,
    tenant: &TenantId,
    query: &TicketQuery,
) -> Result<Page<TicketView>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let after = query.cursor.as_ref().map(cursor_time).transpose()?;
    let after_id = query.cursor.as_ref().map(|c| c.id.as_str());
    let column = query.sort.as_str();
    let (direction, beyond) = (query.order.sql(), query.order.after());
    // Absent filters are NULL parameters: one statement serves every
    // combination, and the planner drops the NULL tests of each call.
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM {schema}.tickets
         WHERE tenant = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR kind = $3)
           AND ($4::text IS NULL OR customer = $4)
           AND ($5::text IS NULL OR edge = $5)
           AND ($6::text IS NULL OR assignee = $6)
           AND ($8::text IS NULL OR ({column}, id) {beyond} ($7::timestamptz, $8))
         ORDER BY {column} {direction}, id {direction}
         LIMIT $9"
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant.as_str(),
                &query.status.map(TicketStatus::as_str),
                &query.kind.map(kind_name),
                &query.customer,
                &query.edge,
                &query.assignee,
                &after,
                &after_id,
                &(query.limit as i64 + 1),
            ],
        )
        .await?;
    let tickets = rows
        .iter()
        .map(|row| TicketRow::from_row(row).map(TicketView::from))
        .collect::<Result<Vec<_>, _>>()?;
    let sort = query.sort;
    Ok(paginate(tickets, query.limit, |t| Cursor {
        sort: sort.as_str().to_owned(),
        value: Value::String(sort.value(t).to_rfc3339_opts(SecondsFormat::Micros, true)),
        id: t.id.clone(),
    }))
}

/// `tenant`'s ticket `id` with its notes and history; `None` when there is
/// no such ticket.
pub async fn get(
    read_models: &ReadModels,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<TicketDetail>, ProjectionError> {
    let (mut client, schema) = read_models.serving(NAME).await?;
    // One snapshot: the ticket's counts agree with the notes and history
    // shown, even while the runner commits a batch.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let key: [&(dyn ToSql + Sync); 2] = [&tenant.as_str(), &id];
    let Some(row) = tx
        .query_opt(
            &format!("SELECT {TICKET_COLUMNS} FROM {schema}.tickets WHERE tenant = $1 AND id = $2"),
            &key,
        )
        .await?
    else {
        return Ok(None);
    };
    let ticket = TicketView::from(TicketRow::from_row(&row)?);
    let notes = tx
        .query(
            &format!(
                "SELECT stream_version, note, author, at FROM {schema}.notes
                 WHERE tenant = $1 AND ticket_id = $2 ORDER BY stream_version"
            ),
            &key,
        )
        .await?
        .iter()
        .map(|r| TicketNote {
            stream_version: r.get::<_, i64>(0) as u64,
            note: r.get(1),
            author: r.get(2),
            at: r.get(3),
        })
        .collect();
    let history = tx
        .query(
            &format!(
                "SELECT stream_version, position, event_type, at, summary FROM {schema}.history
                 WHERE tenant = $1 AND ticket_id = $2 ORDER BY stream_version"
            ),
            &key,
        )
        .await?
        .iter()
        .map(|r| TicketHistoryEntry {
            stream_version: r.get::<_, i64>(0) as u64,
            position: r.get::<_, i64>(1) as u64,
            event_type: r.get(2),
            at: r.get(3),
            summary: r.get(4),
        })
        .collect();
    tx.commit().await?;
    Ok(Some(TicketDetail {
        ticket,
        notes,
        history,
    }))
}
