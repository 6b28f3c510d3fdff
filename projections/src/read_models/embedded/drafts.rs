//! The drafts read model on SQLite: the same tables as on Postgres (drafts
//! with their current document, and the versions with their patches and a
//! snapshot every [`SNAPSHOT_EVERY`](crate::read_models::drafts::SNAPSHOT_EVERY)),
//! folded by the same [`Batch`], and the same queries answering the same
//! types: the document at a version is rebuilt from the snapshot at or below
//! it as on Postgres. Documents and patches are JSON text.

use herald_events::EventEnvelope;
use rusqlite::{params, Transaction};

use super::timers::{as_on_postgres, rows, tail, upsert};
use crate::embedded::{time_text, EmbeddedReadModels, SqliteProjection};
use crate::read_models::drafts::{
    draft_page, rebuild_document, rebuild_row, snapshot_below, version_after, version_at,
    version_page, Batch, DraftAt, DraftDocument, DraftQuery, DraftRow, DraftSummary, DraftVersion,
    DraftsProjection, VersionQuery, DRAFT_COLUMNS, NAME, SUMMARY_COLUMNS,
};
use crate::read_models::timers::{keys, page_size, Columns};
use crate::read_models::Page;
use crate::ProjectionError;

/// The columns of a version's description (`VERSION_COLUMNS` on Postgres).
const VERSION_COLUMNS: &str = "version, occurred_at, author, kind, \
    COALESCE(json_array_length(patch), 0) AS operations, published, published_at, published_by";

impl SqliteProjection for DraftsProjection {
    as_on_postgres!();

    fn setup(&self, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}drafts (
                 tenant TEXT NOT NULL,
                 id TEXT NOT NULL,
                 title TEXT NOT NULL,
                 document TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 stream_version INTEGER NOT NULL,
                 deleted INTEGER NOT NULL,
                 published_version INTEGER,
                 created_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL,
                 created_by TEXT,
                 size_bytes INTEGER NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS {prefix}drafts_by_updated
                 ON {prefix}drafts (tenant, updated_at, id);
             CREATE INDEX IF NOT EXISTS {prefix}drafts_by_created
                 ON {prefix}drafts (tenant, created_at, id);
             CREATE TABLE IF NOT EXISTS {prefix}versions (
                 tenant TEXT NOT NULL,
                 draft_id TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 kind TEXT NOT NULL CHECK (kind IN ('created', 'patched')),
                 document TEXT,
                 patch TEXT,
                 occurred_at TEXT NOT NULL,
                 author TEXT,
                 published INTEGER NOT NULL DEFAULT 0,
                 published_at TEXT,
                 published_by TEXT,
                 PRIMARY KEY (tenant, draft_id, version)
             );"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch::default();
        let mut load = tx.prepare_cached(&format!(
            "SELECT {DRAFT_COLUMNS} FROM {prefix}drafts WHERE tenant = ?1 AND id = ?2"
        ))?;
        for (tenant, id) in keys(events) {
            for draft in rows(&mut load, params![tenant, id], |row| {
                DraftRow::from_row(row)
            })? {
                batch
                    .drafts
                    .insert((draft.tenant.clone(), draft.id.clone()), draft);
            }
        }
        for event in events {
            batch.fold(event)?;
        }
        write(&batch, tx, prefix)
    }
}

fn write(batch: &Batch, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
    if !batch.drafts.is_empty() {
        let mut upsert = tx.prepare_cached(&upsert(
            &format!("{prefix}drafts"),
            DRAFT_COLUMNS,
            &["tenant", "id"],
        ))?;
        for r in batch.drafts.values() {
            upsert.execute(params![
                r.tenant,
                r.id,
                r.title,
                r.document.to_string(),
                r.version,
                r.stream_version,
                r.deleted,
                r.published_version,
                time_text(r.created_at),
                time_text(r.updated_at),
                r.created_by,
                r.size_bytes(),
            ])?;
        }
    }
    if !batch.versions.is_empty() {
        let mut upsert = tx.prepare_cached(&upsert(
            &format!("{prefix}versions"),
            "tenant, draft_id, version, kind, document, patch, occurred_at, author",
            &["tenant", "draft_id", "version"],
        ))?;
        for r in &batch.versions {
            upsert.execute(params![
                r.tenant,
                r.draft_id,
                r.version,
                r.kind.as_str(),
                r.document.as_ref().map(ToString::to_string),
                r.patch.as_ref().map(ToString::to_string),
                time_text(r.occurred_at),
                r.author,
            ])?;
        }
    }
    if !batch.publications.is_empty() {
        // After the inserts, so a version made and published in the same
        // batch is found.
        let mut publish = tx.prepare_cached(&format!(
            "UPDATE {prefix}versions SET published = 1, published_at = ?4, published_by = ?5
             WHERE tenant = ?1 AND draft_id = ?2 AND version = ?3"
        ))?;
        for p in batch.latest_publications() {
            publish.execute(params![
                p.tenant,
                p.draft_id,
                p.version,
                time_text(p.at),
                p.by
            ])?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- queries

/// A page of the tenant's drafts.
pub async fn list_drafts(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    query: &DraftQuery,
) -> Result<Page<DraftSummary>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let (tenant, query) = (tenant.to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            // `substr` rather than `LIKE`: a prefix is case-sensitive, and
            // `%` or `_` in it are themselves, as `starts_with` on Postgres.
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM {prefix}drafts
                 WHERE tenant = ?1 AND deleted = ?2
                   AND (?3 IS NULL OR (published_version IS NOT NULL) = ?3)
                   AND (?4 IS NULL OR substr(title, 1, length(?4)) = ?4)
                 {}",
                tail(key, query.order, 5, 6, 7)
            ))?;
            let rows = rows(
                &mut statement,
                params![
                    tenant,
                    query.deleted,
                    query.published,
                    query.title_prefix,
                    after_value,
                    after_id,
                    page_size(query.limit),
                ],
                |row| DraftSummary::from_row(row),
            )?;
            Ok(draft_page(rows, &query))
        })
        .await
}

/// One of the tenant's drafts with its document at `at`; `None` when the
/// tenant has no draft of that id, or it has no such version, or it did
/// not exist yet at that instant.
pub async fn draft(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    id: &str,
    at: DraftAt,
) -> Result<Option<DraftDocument>, ProjectionError> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {DRAFT_COLUMNS} FROM {prefix}drafts WHERE tenant = ?1 AND id = ?2"
            ))?;
            let Some((draft, current)) = rows(&mut statement, params![tenant, id], |row| {
                Ok((DraftSummary::from_row(row)?, row.json("document")?))
            })?
            .pop() else {
                return Ok(None);
            };
            let latest = match at {
                DraftAt::Instant(instant) => conn
                    .prepare_cached(&format!(
                        "SELECT max(version) FROM {prefix}versions
                         WHERE tenant = ?1 AND draft_id = ?2 AND occurred_at <= ?3"
                    ))?
                    .query_row(params![tenant, id, time_text(instant)], |row| row.get(0))?,
                _ => None,
            };
            let Some(version) = version_at(at, draft.version, latest) else {
                return Ok(None);
            };
            let document = if version == draft.version {
                current
            } else {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT version, document, patch FROM {prefix}versions
                     WHERE tenant = ?1 AND draft_id = ?2 AND version BETWEEN ?3 AND ?4
                     ORDER BY version"
                ))?;
                let rebuild = rows(
                    &mut statement,
                    params![tenant, id, snapshot_below(version), version],
                    |row| rebuild_row(row),
                )?;
                rebuild_document(&tenant, &id, rebuild)
            };
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM {prefix}versions
                 WHERE tenant = ?1 AND draft_id = ?2 AND version = ?3"
            ))?;
            let meta = rows(&mut statement, params![tenant, id, version], |row| {
                DraftVersion::from_row(row)
            })?
            .pop()
            .ok_or_else(|| {
                ProjectionError::Internal(format!(
                    "draft {id:?} of {tenant:?} has no row of its version {version}"
                ))
            })?;
            Ok(Some(DraftDocument {
                draft,
                version: meta,
                document,
            }))
        })
        .await
}

/// A page of one of the tenant's drafts' versions; `None` when the tenant
/// has no draft of that id.
pub async fn draft_versions(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    id: &str,
    query: &VersionQuery,
) -> Result<Option<Page<DraftVersion>>, ProjectionError> {
    let after = version_after(query)?;
    let (tenant, id, query) = (tenant.to_owned(), id.to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            let exists = conn
                .prepare_cached(&format!(
                    "SELECT 1 FROM {prefix}drafts WHERE tenant = ?1 AND id = ?2"
                ))?
                .exists(params![tenant, id])?;
            if !exists {
                return Ok(None);
            }
            let (after_op, dir) = (query.order.after(), query.order.sql());
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM {prefix}versions
                 WHERE tenant = ?1 AND draft_id = ?2 AND (?3 IS NULL OR version {after_op} ?3)
                 ORDER BY version {dir} LIMIT ?4"
            ))?;
            let rows = rows(
                &mut statement,
                params![tenant, id, after, page_size(query.limit)],
                |row| DraftVersion::from_row(row),
            )?;
            Ok(Some(version_page(rows, &query)))
        })
        .await
}
