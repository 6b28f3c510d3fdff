//! API keys and the store epoch in the SQLite file.

use async_trait::async_trait;
use herald_events::chain::canonical_time;
use herald_events::TenantId;
use rusqlite::{params, OptionalExtension, Row};

use super::{sqlite_error, EmbeddedStore, BACKEND};
use crate::error::StoreError;
use crate::{ApiKeyRecord, ApiKeyStore};

const COLUMNS: &str =
    "key_id, tenant, scopes, secret_sha256, label, rate_per_sec, created_at, revoked_at";

fn time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Backend {
            backend: BACKEND,
            detail: format!("api key time {text:?}: {e}"),
        })
}

fn record(row: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let key_id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let scopes: String = row.get(2)?;
    let hash: Vec<u8> = row.get(3)?;
    let label: Option<String> = row.get(4)?;
    let rate: Option<i64> = row.get(5)?;
    let created_at: String = row.get(6)?;
    let revoked_at: Option<String> = row.get(7)?;
    Ok((|| {
        let corrupt = |detail: String| StoreError::Backend {
            backend: BACKEND,
            detail,
        };
        Ok(ApiKeyRecord {
            key_id,
            tenant: TenantId::new(tenant).map_err(|e| corrupt(format!("api key tenant: {e}")))?,
            scopes: serde_json::from_str(&scopes)
                .map_err(|e| corrupt(format!("api key scopes: {e}")))?,
            secret_sha256: hash
                .try_into()
                .map_err(|_| corrupt("api key hash is not 32 bytes".into()))?,
            label,
            rate_per_sec: rate.map(|r| r as u32),
            created_at: time(&created_at)?,
            revoked_at: revoked_at.as_deref().map(time).transpose()?,
        })
    })())
}

#[async_trait]
impl ApiKeyStore for EmbeddedStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| {
            let scopes = serde_json::to_string(&key.scopes).unwrap_or_else(|_| "[]".into());
            conn.execute(
                "INSERT INTO herald_api_keys (key_id, tenant, scopes, secret_sha256, label, \
                 rate_per_sec, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.key_id,
                    key.tenant.as_str(),
                    scopes,
                    key.secret_sha256.as_slice(),
                    key.label,
                    key.rate_per_sec.map(i64::from),
                    canonical_time(&key.created_at),
                ],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM herald_api_keys WHERE key_id = ?1"),
                [&key_id],
                record,
            )
            .optional()
            .map_err(sqlite_error)?
            .transpose()
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            let now = canonical_time(&chrono::Utc::now());
            let n = conn
                .execute(
                    "UPDATE herald_api_keys SET revoked_at = coalesce(revoked_at, ?2) \
                     WHERE key_id = ?1",
                    params![key_id, now],
                )
                .map_err(sqlite_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM herald_api_keys ORDER BY created_at, key_id"
                ))
                .map_err(sqlite_error)?;
            let rows = stmt.query_map([], record).map_err(sqlite_error)?;
            rows.map(|r| r.map_err(sqlite_error).and_then(|r| r))
                .collect()
        })
        .await
    }

    async fn epoch(&self) -> Result<String, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT value FROM herald_meta WHERE key = 'epoch'",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite_error)
        })
        .await
    }
}
