//! API keys and the store epoch on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::TenantId;
use tokio_postgres::Row;

use super::{pg_error, pool_error, PostgresStore, BACKEND};
use crate::error::StoreError;
use crate::{ApiKeyRecord, ApiKeyStore};

const COLUMNS: &str =
    "key_id, tenant, scopes, secret_sha256, label, rate_per_sec, created_at, revoked_at";

fn record(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let corrupt = |detail: String| StoreError::Backend {
        backend: BACKEND,
        detail,
    };
    let hash: Vec<u8> = row.get(3);
    Ok(ApiKeyRecord {
        key_id: row.get(0),
        tenant: TenantId::new(row.get::<_, String>(1))
            .map_err(|e| corrupt(format!("api key tenant: {e}")))?,
        scopes: row.get(2),
        secret_sha256: hash
            .try_into()
            .map_err(|_| corrupt("api key hash is not 32 bytes".into()))?,
        label: row.get(4),
        rate_per_sec: row.get::<_, Option<i32>>(5).map(|r| r as u32),
        created_at: row.get::<_, DateTime<Utc>>(6),
        revoked_at: row.get(7),
    })
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let rate = key.rate_per_sec.map(|r| r as i32);
        client
            .execute(
                "INSERT INTO herald_api_keys (key_id, tenant, scopes, secret_sha256, label, \
                 rate_per_sec, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.key_id,
                    &key.tenant.as_str(),
                    &key.scopes,
                    &key.secret_sha256.as_slice(),
                    &key.label,
                    &rate,
                    &key.created_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM herald_api_keys WHERE key_id = $1"
            ))
            .await
            .map_err(pg_error)?;
        client
            .query_opt(&stmt, &[&key_id])
            .await
            .map_err(pg_error)?
            .map(|r| record(&r))
            .transpose()
    }

    async fn revoke_api_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let n = client
            .execute(
                "UPDATE herald_api_keys SET revoked_at = coalesce(revoked_at, now()) \
                 WHERE key_id = $1",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        // This process knows at once; the others when told, after the
        // commit, so that they look up the key as revoked.
        self.key_changes()
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        client
            .execute("SELECT pg_notify($1, $2)", &[&super::KEYS_CHANNEL, &key_id])
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    fn api_key_changes(&self) -> Option<u64> {
        Some(
            self.key_changes()
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .query(
                &format!("SELECT {COLUMNS} FROM herald_api_keys ORDER BY created_at, key_id"),
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(record)
            .collect()
    }

    async fn epoch(&self) -> Result<String, StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT value FROM herald_meta WHERE key = 'epoch'", &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }
}
