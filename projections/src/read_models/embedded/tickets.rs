//! The tickets read model on SQLite: the same tables, fold and queries as
//! [on Postgres](crate::read_models::tickets) — only the SQL plumbing is
//! SQLite's (instants as [`time_text`], the history's summaries as JSON
//! text).

use std::collections::HashMap;

use herald_events::{EventEnvelope, TenantId};
use rusqlite::{params, Connection, Transaction};

use crate::embedded::{time_text, EmbeddedReadModels, SqliteProjection};
use crate::read_models::tickets::{
    kind_name, BatchWrites, Change, DecodedBatch, DetailSql, Dialect, RowKey, TicketDetail,
    TicketHistoryEntry, TicketNote, TicketQuery, TicketRow, TicketStatus, TicketView,
    TicketsProjection, HISTORY_COLUMNS, NAME, NOTE_COLUMNS, TICKET_COLUMNS, TICKET_UPSERT,
};
use crate::read_models::Page;
use crate::ProjectionError;

/// The stored rows of the tickets `keys` names (those that exist).
fn stored_tickets(
    tx: &Transaction<'_>,
    prefix: &str,
    keys: &[RowKey],
) -> Result<HashMap<RowKey, TicketRow>, ProjectionError> {
    let sql = DetailSql::new(Dialect::Sqlite, prefix);
    let mut stored = HashMap::new();
    for (tenant, id) in keys {
        let found = rows(tx, &sql.ticket, params![tenant, id], |row| {
            TicketRow::from_row(row)
        })?;
        if let Some(ticket) = found.into_iter().next() {
            stored.insert((tenant.clone(), id.clone()), ticket);
        }
    }
    Ok(stored)
}

fn write(tx: &Transaction<'_>, prefix: &str, writes: BatchWrites) -> Result<(), ProjectionError> {
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO {prefix}tickets ({TICKET_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         {TICKET_UPSERT}"
    ))?;
    for t in writes.tickets.into_values() {
        upsert.execute(params![
            t.tenant,
            t.id,
            kind_name(t.kind),
            t.status.as_str(),
            t.customer,
            t.edge,
            t.description,
            t.assignee,
            t.opened_by,
            time_text(t.opened_at),
            time_text(t.updated_at),
            t.resolved_at.map(time_text),
            t.closed_at.map(time_text),
            t.reopen_count,
            t.note_count,
            t.version,
        ])?;
    }
    let n = &writes.notes;
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO {prefix}notes ({NOTE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT DO NOTHING"
    ))?;
    for i in 0..n.tenant.len() {
        insert.execute(params![
            n.tenant[i],
            n.ticket_id[i],
            n.stream_version[i],
            n.note[i],
            n.author[i],
            time_text(n.at[i]),
        ])?;
    }
    let h = &writes.history;
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO {prefix}history ({HISTORY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO NOTHING"
    ))?;
    for i in 0..h.tenant.len() {
        insert.execute(params![
            h.tenant[i],
            h.ticket_id[i],
            h.stream_version[i],
            h.position[i],
            h.event_type[i],
            time_text(h.at[i]),
            h.summary[i].to_string(),
        ])?;
    }
    Ok(())
}

/// The parts of a [`SqliteProjection`] that are its Postgres twin's: the
/// name, version, tables and events accepted.
macro_rules! as_on_postgres {
    () => {
        fn name(&self) -> &'static str {
            crate::Projection::name(self)
        }

        fn version(&self) -> u32 {
            crate::Projection::version(self)
        }

        fn tables(&self) -> &'static [&'static str] {
            crate::Projection::tables(self)
        }

        fn accepts(&self, event: &herald_events::EventEnvelope) -> bool {
            crate::Projection::accepts(self, event)
        }
    };
}
pub(super) use as_on_postgres;

impl SqliteProjection for TicketsProjection {
    as_on_postgres!();

    fn setup(&self, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}tickets (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                customer TEXT NOT NULL,
                edge TEXT,
                description TEXT NOT NULL,
                assignee TEXT,
                opened_by TEXT,
                opened_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                resolved_at TEXT,
                closed_at TEXT,
                reopen_count INTEGER NOT NULL,
                note_count INTEGER NOT NULL,
                version INTEGER NOT NULL,
                PRIMARY KEY (tenant, id)
            ) STRICT;
            CREATE INDEX IF NOT EXISTS {prefix}tickets_by_opened_at
                ON {prefix}tickets (tenant, opened_at, id);
            CREATE INDEX IF NOT EXISTS {prefix}tickets_by_updated_at
                ON {prefix}tickets (tenant, updated_at, id);
            CREATE TABLE IF NOT EXISTS {prefix}notes (
                tenant TEXT NOT NULL,
                ticket_id TEXT NOT NULL,
                stream_version INTEGER NOT NULL,
                note TEXT NOT NULL,
                author TEXT,
                at TEXT NOT NULL,
                PRIMARY KEY (tenant, ticket_id, stream_version)
            ) STRICT;
            CREATE TABLE IF NOT EXISTS {prefix}history (
                tenant TEXT NOT NULL,
                ticket_id TEXT NOT NULL,
                stream_version INTEGER NOT NULL,
                position INTEGER NOT NULL,
                event_type TEXT NOT NULL,
                at TEXT NOT NULL,
                summary TEXT NOT NULL,
                PRIMARY KEY (tenant, ticket_id, stream_version)
            ) STRICT;"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let batch = DecodedBatch::decode(events, Change::decode)?;
        if batch.keys.is_empty() {
            return Ok(());
        }
        let stored = stored_tickets(tx, prefix, &batch.keys)?;
        write(tx, prefix, BatchWrites::fold(stored, &batch.changes))
    }
}

/// The rows `sql` finds with `params`, each read by `read`.
pub(super) fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl Fn(&rusqlite::Row<'_>) -> Result<T, ProjectionError>,
) -> Result<Vec<T>, ProjectionError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(read(row)?);
    }
    Ok(all)
}

/// A page of `tenant`'s tickets.
pub async fn list(
    read_models: &EmbeddedReadModels,
    tenant: &TenantId,
    query: &TicketQuery,
) -> Result<Page<TicketView>, ProjectionError> {
    let (tenant, query) = (tenant.as_str().to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            let after = query.after()?.map(|(time, id)| (time_text(time), id));
            let tickets = rows(
                conn,
                &query.sql(Dialect::Sqlite, prefix),
                params![
                    tenant,
                    query.status.map(TicketStatus::as_str),
                    query.kind.map(kind_name),
                    query.customer,
                    query.edge,
                    query.assignee,
                    after.as_ref().map(|(time, _)| time),
                    after.as_ref().map(|(_, id)| id),
                    query.limit as i64 + 1,
                ],
                |row| TicketRow::from_row(row),
            )?;
            Ok(query.page(tickets))
        })
        .await
}

/// Reads the detail of `tenant`'s `id` in `name`'s serving generation with
/// `read` (given the connection, the table prefix and the key), in one
/// snapshot: the counts of an entity agree with the rows shown beside it,
/// even while the runner commits a batch.
pub(super) async fn detail<T, F>(
    read_models: &EmbeddedReadModels,
    name: &str,
    tenant: &TenantId,
    id: &str,
    read: F,
) -> Result<Option<T>, ProjectionError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &str, [&str; 2]) -> Result<Option<T>, ProjectionError> + Send + 'static,
{
    let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
    read_models
        .serving(name, move |conn, prefix| {
            let tx = conn.unchecked_transaction()?;
            let answer = read(&tx, prefix, [&tenant, &id])?;
            tx.commit()?;
            Ok(answer)
        })
        .await
}

/// `tenant`'s ticket `id` with its notes and history; `None` when there is
/// no such ticket.
pub async fn get(
    read_models: &EmbeddedReadModels,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<TicketDetail>, ProjectionError> {
    detail(read_models, NAME, tenant, id, |conn, prefix, key| {
        let sql = DetailSql::new(Dialect::Sqlite, prefix);
        let Some(ticket) = rows(conn, &sql.ticket, key, |row| TicketRow::from_row(row))?.pop()
        else {
            return Ok(None);
        };
        Ok(Some(TicketDetail {
            ticket: TicketView::from(ticket),
            notes: rows(conn, &sql.notes, key, |row| TicketNote::from_row(row))?,
            history: rows(conn, &sql.history, key, |row| {
                TicketHistoryEntry::from_row(row)
            })?,
        }))
    })
    .await
}
