//! Subjects' data keys and the privacy layer's secrets in the SQLite file,
//! in `herald_subject_keys` and `herald_personal_secrets` (migration 8).
//! Every write runs on the writer connection with full sync (keys cannot be
//! recomputed from the log), those that read before they write inside
//! `BEGIN IMMEDIATE`, SQLite's write lock, which settles races with other
//! processes sharing the file.
//!
//! Forgetting leaves no copy of the key in the files: the writer connection
//! runs with `secure_delete` on (see `open_connection`), so the row's old
//! content is zeroed in its page, and a forget then checkpoints the WAL
//! into the database and truncates it, so the page versions written before
//! (which held the key) leave the `-wal` file too.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::chain::canonical_time;
use herald_events::TenantId;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::{sqlite_error, EmbeddedStore, BACKEND, BUSY_TIMEOUT};
use crate::error::StoreError;
use crate::personal::{SubjectKey, SubjectKeys};
use crate::sql_limit;

const COLUMNS: &str = "key_id, tenant, subject_ref, wrapped, wrapped_by, created_at, forgotten_at";

/// How long the checkpoint after a forget waits for readers to move off
/// the WAL before leaving it to a later one (the writer is held meanwhile).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(1);

fn corrupt(detail: String) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        detail,
    }
}

fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("subject key time {text:?}: {e}")))
}

fn key_id_text(key_id: Uuid) -> String {
    key_id.hyphenated().to_string()
}

fn record(row: &Row<'_>) -> rusqlite::Result<Result<SubjectKey, StoreError>> {
    let key_id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let subject_ref: String = row.get(2)?;
    let wrapped: Option<Vec<u8>> = row.get(3)?;
    let wrapped_by: String = row.get(4)?;
    let created_at: String = row.get(5)?;
    let forgotten_at: Option<String> = row.get(6)?;
    Ok((|| {
        Ok(SubjectKey {
            key_id: Uuid::parse_str(&key_id)
                .map_err(|e| corrupt(format!("subject key id {key_id:?}: {e}")))?,
            tenant: TenantId::new(tenant)
                .map_err(|e| corrupt(format!("subject key tenant: {e}")))?,
            subject_ref,
            wrapped,
            wrapped_by,
            created_at: time(&created_at)?,
            forgotten_at: forgotten_at.as_deref().map(time).transpose()?,
        })
    })())
}

fn query_keys(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<SubjectKey>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
    let rows = stmt.query_map(params, record).map_err(sqlite_error)?;
    rows.map(|r| r.map_err(sqlite_error).and_then(|r| r))
        .collect()
}

fn live_key(
    conn: &Connection,
    tenant: &str,
    subject_ref: &str,
) -> Result<Option<SubjectKey>, StoreError> {
    Ok(query_keys(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM herald_subject_keys \
             WHERE tenant = ?1 AND subject_ref = ?2 AND forgotten_at IS NULL"
        ),
        params![tenant, subject_ref],
    )?
    .pop())
}

fn key_by_id(conn: &Connection, key_id: &str) -> Result<Option<SubjectKey>, StoreError> {
    Ok(query_keys(
        conn,
        &format!("SELECT {COLUMNS} FROM herald_subject_keys WHERE key_id = ?1"),
        params![key_id],
    )?
    .pop())
}

/// `BEGIN IMMEDIATE` on the writer connection (rolled back when dropped).
fn immediate(conn: &Connection) -> Result<Transaction<'_>, StoreError> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(sqlite_error)
}

/// Copies the WAL into the database and truncates it, so that page versions
/// written before a forget leave the `-wal` file. Best effort: a reader
/// still on an older snapshot (of this process or another) keeps the WAL
/// from being truncated; then the copies stay until a later checkpoint
/// overwrites them, which is logged.
fn checkpoint_truncate(conn: &Connection) {
    let result = conn.busy_timeout(CHECKPOINT_WAIT).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
    });
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::error!(error = %e, "Could not restore the writer's busy timeout.");
    }
    match result {
        Ok(0) => {}
        Ok(_) => tracing::warn!(
            "Readers kept the WAL from being truncated after a subject key was forgotten; \
             its earlier copy stays in the -wal file until a later checkpoint overwrites it."
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "Could not checkpoint the WAL after a subject key was forgotten; \
             its earlier copy stays in the -wal file until a later checkpoint overwrites it."
        ),
    }
}

#[async_trait]
impl SubjectKeys for EmbeddedStore {
    async fn live_subject_key(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<Option<SubjectKey>, StoreError> {
        let (tenant, subject_ref) = (tenant.clone(), subject_ref.to_owned());
        self.read(move |conn| live_key(conn, tenant.as_str(), &subject_ref))
            .await
    }

    async fn create_subject_key(&self, key: &SubjectKey) -> Result<SubjectKey, StoreError> {
        key.check_new(BACKEND)?;
        let key = key.clone();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            if let Some(live) = live_key(&tx, key.tenant.as_str(), &key.subject_ref)? {
                tx.commit().map_err(sqlite_error)?;
                return Ok(live);
            }
            let id = key_id_text(key.key_id);
            if key_by_id(&tx, &id)?.is_some() {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    detail: format!(
                        "subject key {id} is already stored, forgotten; a new key needs a new id"
                    ),
                });
            }
            tx.execute(
                "INSERT INTO herald_subject_keys \
                 (key_id, tenant, subject_ref, wrapped, wrapped_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    key.tenant.as_str(),
                    key.subject_ref,
                    key.wrapped,
                    key.wrapped_by,
                    canonical_time(&key.created_at),
                ],
            )
            .map_err(sqlite_error)?;
            let stored = key_by_id(&tx, &id)?
                .ok_or_else(|| corrupt(format!("subject key {id} did not read back")))?;
            tx.commit().map_err(sqlite_error)?;
            Ok(stored)
        })
        .await
    }

    async fn subject_key(&self, key_id: Uuid) -> Result<Option<SubjectKey>, StoreError> {
        self.read(move |conn| key_by_id(conn, &key_id_text(key_id)))
            .await
    }

    async fn subject_keys(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let (tenant, subject_ref) = (tenant.clone(), subject_ref.to_owned());
        self.read(move |conn| {
            query_keys(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM herald_subject_keys \
                     WHERE tenant = ?1 AND subject_ref = ?2 ORDER BY created_at, key_id"
                ),
                params![tenant.as_str(), subject_ref],
            )
        })
        .await
    }

    async fn forget_subject_keys(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let (tenant, subject_ref) = (tenant.clone(), subject_ref.to_owned());
        let at = canonical_time(&at);
        self.write(move |conn| {
            let ids: Vec<String> = {
                let mut stmt = conn
                    .prepare(
                        "UPDATE herald_subject_keys SET wrapped = NULL, forgotten_at = ?3 \
                         WHERE tenant = ?1 AND subject_ref = ?2 AND forgotten_at IS NULL \
                         RETURNING key_id",
                    )
                    .map_err(sqlite_error)?;
                let rows = stmt
                    .query_map(params![tenant.as_str(), subject_ref, at], |r| r.get(0))
                    .map_err(sqlite_error)?;
                rows.collect::<Result<_, _>>().map_err(sqlite_error)?
            };
            if !ids.is_empty() {
                checkpoint_truncate(conn);
            }
            ids.iter()
                .map(|id| {
                    Uuid::parse_str(id).map_err(|e| corrupt(format!("subject key id {id:?}: {e}")))
                })
                .collect()
        })
        .await
    }

    async fn keys_not_wrapped_by(
        &self,
        master_id: &str,
        limit: usize,
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let master_id = master_id.to_owned();
        self.read(move |conn| {
            query_keys(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM herald_subject_keys \
                     WHERE forgotten_at IS NULL AND wrapped_by <> ?1 \
                     ORDER BY created_at, key_id LIMIT ?2"
                ),
                params![master_id, sql_limit(limit)],
            )
        })
        .await
    }

    async fn rewrap_subject_key(
        &self,
        key_id: Uuid,
        old_master: &str,
        wrapped: &[u8],
        new_master: &str,
    ) -> Result<bool, StoreError> {
        let (old_master, wrapped, new_master) = (
            old_master.to_owned(),
            wrapped.to_vec(),
            new_master.to_owned(),
        );
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE herald_subject_keys SET wrapped = ?3, wrapped_by = ?4 \
                     WHERE key_id = ?1 AND wrapped_by = ?2 AND forgotten_at IS NULL",
                    params![key_id_text(key_id), old_master, wrapped, new_master],
                )
                .map_err(sqlite_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn personal_secret(
        &self,
        name: &str,
        value_if_absent: &[u8],
        wrapped_by_if_absent: &str,
    ) -> Result<(Vec<u8>, String), StoreError> {
        let (name, value, wrapped_by) = (
            name.to_owned(),
            value_if_absent.to_vec(),
            wrapped_by_if_absent.to_owned(),
        );
        self.write(move |conn| {
            let tx = immediate(conn)?;
            tx.execute(
                "INSERT INTO herald_personal_secrets (name, value, wrapped_by) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                params![name, value, wrapped_by],
            )
            .map_err(sqlite_error)?;
            let stored = tx
                .query_row(
                    "SELECT value, wrapped_by FROM herald_personal_secrets WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sqlite_error)?
                .ok_or_else(|| corrupt(format!("personal secret {name:?} did not read back")))?;
            tx.commit().map_err(sqlite_error)?;
            Ok(stored)
        })
        .await
    }

    async fn rewrap_personal_secret(
        &self,
        name: &str,
        old_wrapped_by: &str,
        value: &[u8],
        wrapped_by: &str,
    ) -> Result<bool, StoreError> {
        let (name, old_wrapped_by, value, wrapped_by) = (
            name.to_owned(),
            old_wrapped_by.to_owned(),
            value.to_vec(),
            wrapped_by.to_owned(),
        );
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE herald_personal_secrets SET value = ?3, wrapped_by = ?4 \
                     WHERE name = ?1 AND wrapped_by = ?2",
                    params![name, old_wrapped_by, value, wrapped_by],
                )
                .map_err(sqlite_error)?;
            Ok(n == 1)
        })
        .await
    }
}
