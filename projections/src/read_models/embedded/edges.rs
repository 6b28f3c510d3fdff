//! The edges read model on SQLite: the same tables, fold and queries as
//! [on Postgres](crate::read_models::edges) — only the SQL plumbing is
//! SQLite's (instants as [`time_text`], flags as 0/1, the degraded links
//! as JSON text).

use herald_events::{EventEnvelope, TenantId};
use rusqlite::types::ToSql;
use rusqlite::{params, Transaction};

use super::tickets::{as_on_postgres, detail, rows};
use crate::embedded::{time_text, EmbeddedReadModels, SqliteProjection};
use crate::read_models::edges::{
    edge_view, state_name, Change, DetailSql, EdgeDetail, EdgeFold, EdgeIncident, EdgeQuery,
    EdgeRow, EdgeSort, EdgeView, EdgesProjection, IncidentRow, StoredEdges, EDGE_COLUMNS,
    EDGE_UPSERT, INCIDENT_COLUMNS, INCIDENT_UPSERT, NAME, RECENT_INCIDENTS,
};
use crate::read_models::tickets::{DecodedBatch, Dialect, RowKey};
use crate::read_models::Page;
use crate::ProjectionError;

/// The stored rows and open incidents of the edges `keys` names.
fn stored_edges(
    tx: &Transaction<'_>,
    prefix: &str,
    keys: &[RowKey],
) -> Result<StoredEdges, ProjectionError> {
    let sql = DetailSql::new(Dialect::Sqlite, prefix);
    let mut edges = StoredEdges::new();
    for (tenant, id) in keys {
        let found = rows(tx, &sql.edge, params![tenant, id], |row| {
            EdgeRow::from_row(row)
        })?;
        for edge in found {
            edges.insert((tenant.clone(), id.clone()), EdgeFold::stored(edge));
        }
        let open = rows(tx, &sql.open_incidents, params![tenant, id], |row| {
            IncidentRow::from_row(row)
        })?;
        for incident in open {
            EdgeFold::add_open(&mut edges, tenant.clone(), id.clone(), incident);
        }
    }
    Ok(edges)
}

fn write(tx: &Transaction<'_>, prefix: &str, folds: &[EdgeFold]) -> Result<(), ProjectionError> {
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO {prefix}edges ({EDGE_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19) \
         {EDGE_UPSERT}"
    ))?;
    for fold in folds {
        let e = &fold.edge;
        upsert.execute(params![
            e.tenant,
            e.id,
            e.registered,
            e.customer,
            e.serial,
            e.site,
            state_name(e.state),
            e.last_contact_at.map(time_text),
            e.offline_since.map(time_text),
            e.decommissioned,
            e.decommissioned_at.map(time_text),
            e.thresholds.map(|t| t.latency_ms),
            e.thresholds.map(|t| t.jitter_ms),
            e.thresholds.map(|t| t.packet_loss_pct),
            e.links_json().to_string(),
            fold.open.len() as i64,
            e.registered_at.map(time_text),
            time_text(e.updated_at),
            e.version,
        ])?;
    }
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO {prefix}incidents ({INCIDENT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         {INCIDENT_UPSERT}"
    ))?;
    for fold in folds {
        for i in fold.incidents() {
            upsert.execute(params![
                fold.edge.tenant,
                fold.edge.id,
                i.seq,
                i.kind.as_str(),
                i.link,
                time_text(i.started_at),
                i.ended_at.map(time_text),
                i.confirmed_at.map(time_text),
            ])?;
        }
    }
    Ok(())
}

impl SqliteProjection for EdgesProjection {
    as_on_postgres!();

    fn setup(&self, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}edges (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                registered INTEGER NOT NULL,
                customer TEXT,
                serial TEXT,
                site TEXT,
                state TEXT NOT NULL,
                last_contact_at TEXT,
                offline_since TEXT,
                decommissioned INTEGER NOT NULL,
                decommissioned_at TEXT,
                latency_ms REAL,
                jitter_ms REAL,
                packet_loss_pct REAL,
                degraded_links TEXT NOT NULL,
                open_incidents INTEGER NOT NULL,
                registered_at TEXT,
                updated_at TEXT NOT NULL,
                version INTEGER NOT NULL,
                PRIMARY KEY (tenant, id)
            ) STRICT;
            CREATE INDEX IF NOT EXISTS {prefix}edges_by_last_contact
                ON {prefix}edges (tenant, {}, id);
            CREATE TABLE IF NOT EXISTS {prefix}incidents (
                tenant TEXT NOT NULL,
                edge_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                link TEXT,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                confirmed_at TEXT,
                PRIMARY KEY (tenant, edge_id, seq)
            ) STRICT;",
            EdgeSort::LastContactAt.key(Dialect::Sqlite)
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let batch = DecodedBatch::decode(events, Change::of)?;
        if batch.keys.is_empty() {
            return Ok(());
        }
        let stored = stored_edges(tx, prefix, &batch.keys)?;
        write(tx, prefix, &EdgeFold::fold_batch(stored, &batch.changes))
    }
}

/// A page of `tenant`'s edges.
pub async fn list(
    read_models: &EmbeddedReadModels,
    tenant: &TenantId,
    query: &EdgeQuery,
) -> Result<Page<EdgeView>, ProjectionError> {
    let (tenant, query) = (tenant.as_str().to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            let after = query.after()?;
            // Both sorts' cursor values are text here.
            let cursor_value = match query.sort {
                EdgeSort::Id => after.id.map(str::to_owned),
                EdgeSort::LastContactAt => after.contact.map(time_text),
            };
            let edges = rows(
                conn,
                &query.sql(Dialect::Sqlite, prefix),
                params![
                    tenant,
                    query.state.map(state_name),
                    query.customer,
                    query.site,
                    query.has_open_incident,
                    cursor_value,
                    after.id,
                    query.limit as i64 + 1,
                ],
                |row| edge_view(row),
            )?;
            Ok(query.page(edges))
        })
        .await
}

/// `tenant`'s edge `id` with its open and recent incidents; `None` when
/// there is no such edge.
pub async fn get(
    read_models: &EmbeddedReadModels,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<EdgeDetail>, ProjectionError> {
    detail(
        read_models,
        NAME,
        tenant,
        id,
        |conn, prefix, [tenant, id]| {
            let sql = DetailSql::new(Dialect::Sqlite, prefix);
            let Some(edge) =
                rows(conn, &sql.edge, params![tenant, id], |row| edge_view(row))?.pop()
            else {
                return Ok(None);
            };
            let incidents = |sql: &str, params: &[&dyn ToSql]| {
                rows(conn, sql, params, |row| EdgeIncident::from_row(row))
            };
            Ok(Some(EdgeDetail {
                edge,
                open_incidents: incidents(&sql.open_incidents, params![tenant, id])?,
                recent_incidents: incidents(
                    &sql.recent_incidents,
                    params![tenant, id, RECENT_INCIDENTS as i64],
                )?,
            }))
        },
    )
    .await
}
