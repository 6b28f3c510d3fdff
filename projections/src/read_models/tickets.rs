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
use tokio_postgres::{IsolationLevel, Transaction};
use utoipa::ToSchema;

use super::{paginate, Cursor, Page, SortOrder};
use crate::{Projection, ProjectionError, ReadModels};

// ------------------------------------------------- shared by both backends

/// The SQL of a statement both backends run, written for one of them:
/// Postgres (`{schema}.table`, typed `$n` parameters) or SQLite
/// (`{prefix}table`, `?n` parameters, instants as RFC 3339 text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Parameter `n` (from 1), of SQL type `ty` on Postgres.
    pub(crate) fn param(self, n: usize, ty: &str) -> String {
        match self {
            Dialect::Postgres => format!("${n}::{ty}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// A table of a generation: `at` is its schema (Postgres) or its table
    /// prefix (SQLite).
    pub(crate) fn table(self, at: &str, table: &str) -> String {
        match self {
            Dialect::Postgres => format!("{at}.{table}"),
            Dialect::Sqlite => format!("{at}{table}"),
        }
    }

    /// An instant before every stored one (what a missing time sorts as).
    pub(crate) fn earliest(self) -> &'static str {
        match self {
            Dialect::Postgres => "'-infinity'",
            Dialect::Sqlite => "''",
        }
    }
}

/// A stored row read by column name, on either backend: the read models'
/// rows are decoded once for both.
pub(crate) trait StoredRow {
    fn text(&self, column: &str) -> Result<String, ProjectionError>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, ProjectionError>;
    fn int(&self, column: &str) -> Result<i64, ProjectionError>;
    fn flag(&self, column: &str) -> Result<bool, ProjectionError>;
    fn maybe_real(&self, column: &str) -> Result<Option<f64>, ProjectionError>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, ProjectionError>;
    fn maybe_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError>;
    fn json(&self, column: &str) -> Result<Value, ProjectionError>;
}

impl StoredRow for tokio_postgres::Row {
    fn text(&self, column: &str) -> Result<String, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn maybe_real(&self, column: &str) -> Result<Option<f64>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn maybe_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn json(&self, column: &str) -> Result<Value, ProjectionError> {
        Ok(self.try_get(column)?)
    }
}

/// SQLite keeps instants as [`time_text`](crate::embedded::time_text) and
/// JSON as text.
impl StoredRow for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<String, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn maybe_real(&self, column: &str) -> Result<Option<f64>, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>, ProjectionError> {
        crate::embedded::parse_time(&self.text(column)?)
    }
    fn maybe_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        self.maybe_text(column)?
            .map(|text| crate::embedded::parse_time(&text))
            .transpose()
    }
    fn json(&self, column: &str) -> Result<Value, ProjectionError> {
        serde_json::from_str(&self.text(column)?).map_err(|e| {
            ProjectionError::Internal(format!("the stored JSON of {column} does not parse: {e}"))
        })
    }
}

/// The key of an entity's row: its tenant and its stream's id.
pub(crate) type RowKey = (String, String);

/// The events of a batch this model knows, decoded, and the keys of the
/// rows they touch (sorted, once each).
pub(crate) struct DecodedBatch<'a, C> {
    pub(crate) changes: Vec<(&'a EventEnvelope, C)>,
    pub(crate) keys: Vec<RowKey>,
}

impl<'a, C> DecodedBatch<'a, C> {
    /// Decodes `events` with `decode` (`None`: an event type left out).
    pub(crate) fn decode(
        events: &'a [EventEnvelope],
        decode: impl Fn(&EventEnvelope) -> Result<Option<C>, ProjectionError>,
    ) -> Result<Self, ProjectionError> {
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            if let Some(change) = decode(event)? {
                changes.push((event, change));
            }
        }
        let mut keys: Vec<RowKey> = changes
            .iter()
            .map(|(e, _)| (e.tenant.as_str().to_owned(), e.stream.id().to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Self { changes, keys })
    }
}

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

/// Projects `tickets.*` events into the `tickets`, `notes` and `history`
/// tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct TicketsProjection;

const TABLES: &[&str] = &["tickets", "notes", "history"];

/// The columns of `tickets`, in the order [`TicketRow::from_row`] and the
/// upsert use.
pub(super) const TICKET_COLUMNS: &str = "tenant, id, kind, status, customer, edge, description, \
    assignee, opened_by, opened_at, updated_at, resolved_at, closed_at, reopen_count, note_count, \
    version";

/// What an upsert of [`TICKET_COLUMNS`] does to a stored ticket.
pub(super) const TICKET_UPSERT: &str =
    "ON CONFLICT (tenant, id) DO UPDATE SET kind = EXCLUDED.kind, \
    status = EXCLUDED.status, customer = EXCLUDED.customer, edge = EXCLUDED.edge, \
    description = EXCLUDED.description, assignee = EXCLUDED.assignee, \
    opened_by = EXCLUDED.opened_by, opened_at = EXCLUDED.opened_at, \
    updated_at = EXCLUDED.updated_at, resolved_at = EXCLUDED.resolved_at, \
    closed_at = EXCLUDED.closed_at, reopen_count = EXCLUDED.reopen_count, \
    note_count = EXCLUDED.note_count, version = EXCLUDED.version";

pub(super) const NOTE_COLUMNS: &str = "tenant, ticket_id, stream_version, note, author, at";

pub(super) const HISTORY_COLUMNS: &str =
    "tenant, ticket_id, stream_version, position, event_type, at, summary";

/// A row of `tickets`.
#[derive(Debug, Clone)]
pub(super) struct TicketRow {
    pub(super) tenant: String,
    pub(super) id: String,
    pub(super) kind: TicketKind,
    pub(super) status: TicketStatus,
    pub(super) customer: String,
    pub(super) edge: Option<String>,
    pub(super) description: String,
    pub(super) assignee: Option<String>,
    pub(super) opened_by: Option<String>,
    pub(super) opened_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) resolved_at: Option<DateTime<Utc>>,
    pub(super) closed_at: Option<DateTime<Utc>>,
    pub(super) reopen_count: i64,
    pub(super) note_count: i64,
    pub(super) version: i64,
}

impl TicketRow {
    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
        let kind = row.text("kind")?;
        let status = row.text("status")?;
        let corrupt = |what: &str, value: &str| {
            ProjectionError::Rejected(format!(
                "the tickets table holds an unknown {what} {value:?}"
            ))
        };
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            kind: parse_kind(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            status: TicketStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            customer: row.text("customer")?,
            edge: row.maybe_text("edge")?,
            description: row.text("description")?,
            assignee: row.maybe_text("assignee")?,
            opened_by: row.maybe_text("opened_by")?,
            opened_at: row.time("opened_at")?,
            updated_at: row.time("updated_at")?,
            resolved_at: row.maybe_time("resolved_at")?,
            closed_at: row.maybe_time("closed_at")?,
            reopen_count: row.int("reopen_count")?,
            note_count: row.int("note_count")?,
            version: row.int("version")?,
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
pub(super) enum Change {
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
    pub(super) fn decode(event: &EventEnvelope) -> Result<Option<Self>, ProjectionError> {
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
pub(super) struct BatchWrites {
    pub(super) tickets: HashMap<RowKey, TicketRow>,
    pub(super) notes: NoteColumns,
    pub(super) history: HistoryColumns,
}

#[derive(Default)]
pub(super) struct NoteColumns {
    pub(super) tenant: Vec<String>,
    pub(super) ticket_id: Vec<String>,
    pub(super) stream_version: Vec<i64>,
    pub(super) note: Vec<String>,
    pub(super) author: Vec<Option<String>>,
    pub(super) at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct HistoryColumns {
    pub(super) tenant: Vec<String>,
    pub(super) ticket_id: Vec<String>,
    pub(super) stream_version: Vec<i64>,
    pub(super) position: Vec<i64>,
    pub(super) event_type: Vec<String>,
    pub(super) at: Vec<DateTime<Utc>>,
    pub(super) summary: Vec<Value>,
}

impl BatchWrites {
    /// Folds the batch's events over the stored state of their tickets.
    pub(super) fn fold(
        stored: HashMap<RowKey, TicketRow>,
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
    keys: &[RowKey],
) -> Result<HashMap<RowKey, TicketRow>, ProjectionError> {
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
             {TICKET_UPSERT}"
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
            "INSERT INTO {schema}.notes ({NOTE_COLUMNS}) \
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
            "INSERT INTO {schema}.history ({HISTORY_COLUMNS}) \
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
        let batch = DecodedBatch::decode(events, Change::decode)?;
        if batch.keys.is_empty() {
            return Ok(());
        }
        let stored = stored_tickets(tx, schema, &batch.keys).await?;
        let writes = BatchWrites::fold(stored, &batch.changes);
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

impl TicketNote {
    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
        Ok(Self {
            stream_version: row.int("stream_version")? as u64,
            note: row.text("note")?,
            author: row.maybe_text("author")?,
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
    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
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
pub(super) fn cursor_time(cursor: &Cursor) -> Result<DateTime<Utc>, ProjectionError> {
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

impl TicketQuery {
    /// The statement of a page, on either backend. Its parameters: the
    /// tenant, the five filters (status, kind, customer, edge, assignee;
    /// NULL when absent), the cursor's time and id (NULL without a cursor)
    /// and the row limit.
    pub(super) fn sql(&self, dialect: Dialect, at: &str) -> String {
        let p = |n, ty| dialect.param(n, ty);
        let tickets = dialect.table(at, "tickets");
        let column = self.sort.as_str();
        let (direction, beyond) = (self.order.sql(), self.order.after());
        // Absent filters are NULL parameters: one statement serves every
        // combination, and the planner drops the NULL tests of each call.
        format!(
            "SELECT {TICKET_COLUMNS} FROM {tickets}
             WHERE tenant = {}
               AND ({} IS NULL OR status = {})
               AND ({} IS NULL OR kind = {})
               AND ({} IS NULL OR customer = {})
               AND ({} IS NULL OR edge = {})
               AND ({} IS NULL OR assignee = {})
               AND ({} IS NULL OR ({column}, id) {beyond} ({}, {}))
             ORDER BY {column} {direction}, id {direction}
             LIMIT {}",
            p(1, "text"),
            p(2, "text"),
            p(2, "text"),
            p(3, "text"),
            p(3, "text"),
            p(4, "text"),
            p(4, "text"),
            p(5, "text"),
            p(5, "text"),
            p(6, "text"),
            p(6, "text"),
            p(8, "text"),
            p(7, "timestamptz"),
            p(8, "text"),
            p(9, "bigint"),
        )
    }

    /// The cursor's time and id, if there is a cursor.
    pub(super) fn after(&self) -> Result<Option<(DateTime<Utc>, &str)>, ProjectionError> {
        self.cursor
            .as_ref()
            .map(|c| Ok((cursor_time(c)?, c.id.as_str())))
            .transpose()
    }

    /// The page of the `limit + 1` rows the statement found.
    pub(super) fn page(&self, rows: Vec<TicketRow>) -> Page<TicketView> {
        let tickets = rows.into_iter().map(TicketView::from).collect();
        let sort = self.sort;
        paginate(tickets, self.limit, |t| Cursor {
            sort: sort.as_str().to_owned(),
            value: Value::String(sort.value(t).to_rfc3339_opts(SecondsFormat::Micros, true)),
            id: t.id.clone(),
        })
    }
}

/// The statements of a ticket's detail, on either backend; each takes the
/// tenant and the ticket's id.
pub(super) struct DetailSql {
    pub(super) ticket: String,
    pub(super) notes: String,
    pub(super) history: String,
}

impl DetailSql {
    pub(super) fn new(dialect: Dialect, at: &str) -> Self {
        let (tenant, id) = (dialect.param(1, "text"), dialect.param(2, "text"));
        let of_ticket =
            format!("WHERE tenant = {tenant} AND ticket_id = {id} ORDER BY stream_version");
        Self {
            ticket: format!(
                "SELECT {TICKET_COLUMNS} FROM {} WHERE tenant = {tenant} AND id = {id}",
                dialect.table(at, "tickets")
            ),
            notes: format!(
                "SELECT {NOTE_COLUMNS} FROM {} {of_ticket}",
                dialect.table(at, "notes")
            ),
            history: format!(
                "SELECT {HISTORY_COLUMNS} FROM {} {of_ticket}",
                dialect.table(at, "history")
            ),
        }
    }
}

/// A page of `tenant`'s tickets.
pub async fn list(
    read_models: &ReadModels,
    tenant: &TenantId,
    query: &TicketQuery,
) -> Result<Page<TicketView>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let after = query.after()?;
    let rows = client
        .query(
            &query.sql(Dialect::Postgres, &schema),
            &[
                &tenant.as_str(),
                &query.status.map(TicketStatus::as_str),
                &query.kind.map(kind_name),
                &query.customer,
                &query.edge,
                &query.assignee,
                &after.map(|(time, _)| time),
                &after.map(|(_, id)| id),
                &(query.limit as i64 + 1),
            ],
        )
        .await?;
    let tickets = rows
        .iter()
        .map(TicketRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(query.page(tickets))
}

/// `tenant`'s ticket `id` with its notes and history; `None` when there is
/// no such ticket.
pub async fn get(
    read_models: &ReadModels,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<TicketDetail>, ProjectionError> {
    let (mut client, schema) = read_models.serving(NAME).await?;
    let sql = DetailSql::new(Dialect::Postgres, &schema);
    // One snapshot: the ticket's counts agree with the notes and history
    // shown, even while the runner commits a batch.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let key: [&(dyn ToSql + Sync); 2] = [&tenant.as_str(), &id];
    let Some(row) = tx.query_opt(&sql.ticket, &key).await? else {
        return Ok(None);
    };
    let ticket = TicketView::from(TicketRow::from_row(&row)?);
    let notes = tx
        .query(&sql.notes, &key)
        .await?
        .iter()
        .map(TicketNote::from_row)
        .collect::<Result<_, _>>()?;
    let history = tx
        .query(&sql.history, &key)
        .await?
        .iter()
        .map(TicketHistoryEntry::from_row)
        .collect::<Result<_, _>>()?;
    tx.commit().await?;
    Ok(Some(TicketDetail {
        ticket,
        notes,
        history,
    }))
}
