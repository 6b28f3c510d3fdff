//! Subjects' data keys and the privacy layer's secrets on Postgres, in
//! `herald_subject_keys` and `herald_personal_secrets` (migration 9). Every
//! write goes through the main pool, whose commits wait for their flush:
//! keys cannot be recomputed from the log. Races between processes are
//! settled by the database: the partial unique index on a subject's live
//! key and the secrets' primary key, with `ON CONFLICT DO NOTHING` and a
//! read of the winner in a statement of its own (whose snapshot sees it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::TenantId;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{pg_error, pool_error, PostgresStore, BACKEND};
use crate::error::StoreError;
use crate::personal::{SubjectKey, SubjectKeys};
use crate::sql_limit;

const COLUMNS: &str = "key_id, tenant, subject_ref, wrapped, wrapped_by, created_at, forgotten_at";

/// How many times a create tries again when the live key it lost to was
/// forgotten before it could read it.
const CREATE_ATTEMPTS: usize = 3;

fn record(row: &Row) -> Result<SubjectKey, StoreError> {
    let tenant: String = row.get(1);
    Ok(SubjectKey {
        key_id: row.get(0),
        tenant: TenantId::new(tenant).map_err(|e| StoreError::Backend {
            backend: BACKEND,
            detail: format!("subject key tenant: {e}"),
        })?,
        subject_ref: row.get(2),
        wrapped: row.get(3),
        wrapped_by: row.get(4),
        created_at: row.get::<_, DateTime<Utc>>(5),
        forgotten_at: row.get(6),
    })
}

impl PostgresStore {
    async fn query_keys(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
        client
            .query(&stmt, params)
            .await
            .map_err(pg_error)?
            .iter()
            .map(record)
            .collect()
    }
}

#[async_trait]
impl SubjectKeys for PostgresStore {
    async fn live_subject_key(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<Option<SubjectKey>, StoreError> {
        Ok(self
            .query_keys(
                &format!(
                    "SELECT {COLUMNS} FROM herald_subject_keys \
                     WHERE tenant = $1 AND subject_ref = $2 AND forgotten_at IS NULL"
                ),
                &[&tenant.as_str(), &subject_ref],
            )
            .await?
            .pop())
    }

    async fn create_subject_key(&self, key: &SubjectKey) -> Result<SubjectKey, StoreError> {
        key.check_new(BACKEND)?;
        let created_at = herald_events::envelope::to_stored_precision(key.created_at);
        for _ in 0..CREATE_ATTEMPTS {
            {
                let client = self.pool().get().await.map_err(pool_error)?;
                // No conflict target: a live key of the subject (the partial
                // unique index) and a repeated key id both make it do nothing;
                // a concurrent insert is waited for, then counts as there.
                let stmt = client
                    .prepare_cached(&format!(
                        "INSERT INTO herald_subject_keys \
                         (key_id, tenant, subject_ref, wrapped, wrapped_by, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING \
                         RETURNING {COLUMNS}"
                    ))
                    .await
                    .map_err(pg_error)?;
                let inserted = client
                    .query_opt(
                        &stmt,
                        &[
                            &key.key_id,
                            &key.tenant.as_str(),
                            &key.subject_ref,
                            &key.wrapped,
                            &key.wrapped_by,
                            &created_at,
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                if let Some(row) = inserted {
                    return record(&row);
                }
            }
            // A statement of its own, so its snapshot sees the winner's commit.
            if let Some(live) = self.live_subject_key(&key.tenant, &key.subject_ref).await? {
                return Ok(live);
            }
            if self.subject_key(key.key_id).await?.is_some() {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    detail: format!(
                        "subject key {} is already stored, forgotten; a new key needs a new id",
                        key.key_id
                    ),
                });
            }
            // The live key it met was forgotten meanwhile: try again.
        }
        Err(StoreError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "the subject's key was created and forgotten by others {CREATE_ATTEMPTS} times \
                 while key {} was being created",
                key.key_id
            ),
        })
    }

    async fn subject_key(&self, key_id: Uuid) -> Result<Option<SubjectKey>, StoreError> {
        Ok(self
            .query_keys(
                &format!("SELECT {COLUMNS} FROM herald_subject_keys WHERE key_id = $1"),
                &[&key_id],
            )
            .await?
            .pop())
    }

    async fn subject_keys(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.query_keys(
            &format!(
                "SELECT {COLUMNS} FROM herald_subject_keys \
                 WHERE tenant = $1 AND subject_ref = $2 ORDER BY created_at, key_id"
            ),
            &[&tenant.as_str(), &subject_ref],
        )
        .await
    }

    async fn forget_subject_keys(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let at = herald_events::envelope::to_stored_precision(at);
        let client = self.pool().get().await.map_err(pool_error)?;
        // One statement: the key is gone for every reader once it commits.
        // The row version holding the wrapped key stays in the table's files
        // as a dead tuple until (auto)vacuum removes it, and in the server's
        // WAL until that is recycled; nothing reads it from there, and both
        // are out of the store's hands. Backups taken before keep the key,
        // as they keep everything else.
        let rows = client
            .query(
                "UPDATE herald_subject_keys SET wrapped = NULL, forgotten_at = $3 \
                 WHERE tenant = $1 AND subject_ref = $2 AND forgotten_at IS NULL \
                 RETURNING key_id",
                &[&tenant.as_str(), &subject_ref, &at],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn keys_not_wrapped_by(
        &self,
        master_id: &str,
        limit: usize,
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.query_keys(
            &format!(
                "SELECT {COLUMNS} FROM herald_subject_keys \
                 WHERE forgotten_at IS NULL AND wrapped_by <> $1 \
                 ORDER BY created_at, key_id LIMIT $2"
            ),
            &[&master_id, &sql_limit(limit)],
        )
        .await
    }

    async fn rewrap_subject_key(
        &self,
        key_id: Uuid,
        old_master: &str,
        wrapped: &[u8],
        new_master: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let n = client
            .execute(
                "UPDATE herald_subject_keys SET wrapped = $3, wrapped_by = $4 \
                 WHERE key_id = $1 AND wrapped_by = $2 AND forgotten_at IS NULL",
                &[&key_id, &old_master, &wrapped, &new_master],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    async fn personal_secret(
        &self,
        name: &str,
        value_if_absent: &[u8],
        wrapped_by_if_absent: &str,
    ) -> Result<(Vec<u8>, String), StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO herald_personal_secrets (name, value, wrapped_by) \
                 VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&name, &value_if_absent, &wrapped_by_if_absent],
            )
            .await
            .map_err(pg_error)?;
        // A statement of its own, so its snapshot sees whichever insert won.
        let row = client
            .query_one(
                "SELECT value, wrapped_by FROM herald_personal_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg_error)?;
        Ok((row.get(0), row.get(1)))
    }

    async fn rewrap_personal_secret(
        &self,
        name: &str,
        old_wrapped_by: &str,
        value: &[u8],
        wrapped_by: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let n = client
            .execute(
                "UPDATE herald_personal_secrets SET value = $3, wrapped_by = $4 \
                 WHERE name = $1 AND wrapped_by = $2",
                &[&name, &old_wrapped_by, &value, &wrapped_by],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }
}
