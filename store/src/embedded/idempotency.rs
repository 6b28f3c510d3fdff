//! Idempotency records in the SQLite file, in `herald_idempotency_keys`
//! (migration 7). A claim reads and, when the key is free or expired, takes
//! it in one immediate transaction on the writer connection (SQLite's write
//! lock orders claims, of this process and of others sharing the file).
//! The answer is JSON text, times text `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

use async_trait::async_trait;
use herald_events::chain::canonical_time;
use herald_events::{EventEnvelope, EventId, TenantId};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::{rows, sqlite_error, EmbeddedStore, BACKEND};
use crate::error::StoreError;
use crate::idempotency::{self, Claimed, IdempotencyClaim, IdempotencyKeys, PURGE_BATCH};

const READ: &str =
    "SELECT fingerprint, answer, created_at, expires_at FROM herald_idempotency_keys \
     WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3 AND idempotency_key = ?4";

const TAKE: &str = "INSERT OR REPLACE INTO herald_idempotency_keys \
     (tenant, domain, stream_id, idempotency_key, fingerprint, answer, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)";

const COMPLETE: &str = "INSERT INTO herald_idempotency_keys \
     (tenant, domain, stream_id, idempotency_key, fingerprint, answer, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (tenant, domain, stream_id, idempotency_key) DO UPDATE SET \
     answer = excluded.answer WHERE herald_idempotency_keys.fingerprint = excluded.fingerprint";

const RELEASE: &str = "DELETE FROM herald_idempotency_keys \
     WHERE tenant = ?1 AND domain = ?2 AND stream_id = ?3 AND idempotency_key = ?4 \
     AND fingerprint = ?5 AND answer IS NULL";

const PURGE: &str = "DELETE FROM herald_idempotency_keys WHERE rowid IN \
     (SELECT rowid FROM herald_idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)";

fn corrupt(detail: String) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        detail: format!("idempotency record: {detail}"),
    }
}

#[async_trait]
impl IdempotencyKeys for EmbeddedStore {
    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<Claimed, StoreError> {
        let (now, expires) = self.inner.keeping.times();
        let purge = self.inner.keeping.purge_due(now);
        let (now, expires) = (canonical_time(&now), canonical_time(&expires));
        let claim = claim.clone();
        self.write(move |conn| {
            if purge {
                // Bounded, on the connection that writes anyway: cheap.
                if let Err(e) = conn.execute(PURGE, params![now, PURGE_BATCH]) {
                    tracing::debug!(error = %e, "Expired idempotency keys not deleted yet.");
                }
            }
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let key = params![
                claim.tenant.as_str(),
                claim.stream.domain().as_str(),
                claim.stream.id(),
                claim.key
            ];
            let row = tx
                .query_row(READ, key, |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()
                .map_err(sqlite_error)?;
            let claimed = match row {
                // Text times in one format compare as the times do.
                Some((fingerprint, answer, created_at, expires_at)) if expires_at > now => {
                    let answer = answer
                        .map(|text| serde_json::from_str::<Value>(&text))
                        .transpose()
                        .map_err(|e| corrupt(format!("answer is not JSON: {e}")))?;
                    let first_used_at = chrono::DateTime::parse_from_rfc3339(&created_at)
                        .map_err(|e| corrupt(format!("created_at {created_at:?}: {e}")))?
                        .with_timezone(&chrono::Utc);
                    idempotency::settle(&claim, &fingerprint, answer, first_used_at)
                }
                _ => {
                    tx.execute(
                        TAKE,
                        params![
                            claim.tenant.as_str(),
                            claim.stream.domain().as_str(),
                            claim.stream.id(),
                            claim.key,
                            claim.fingerprint,
                            now,
                            expires
                        ],
                    )
                    .map_err(sqlite_error)?;
                    Claimed::New
                }
            };
            tx.commit().map_err(sqlite_error)?;
            Ok(claimed)
        })
        .await
    }

    async fn complete_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
        answer: &Value,
    ) -> Result<(), StoreError> {
        let (now, expires) = self.inner.keeping.times();
        let (now, expires) = (canonical_time(&now), canonical_time(&expires));
        let claim = claim.clone();
        let answer = answer.to_string();
        self.write(move |conn| {
            conn.execute(
                COMPLETE,
                params![
                    claim.tenant.as_str(),
                    claim.stream.domain().as_str(),
                    claim.stream.id(),
                    claim.key,
                    claim.fingerprint,
                    answer,
                    now,
                    expires
                ],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn release_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.write(move |conn| {
            conn.execute(
                RELEASE,
                params![
                    claim.tenant.as_str(),
                    claim.stream.domain().as_str(),
                    claim.stream.id(),
                    claim.key,
                    claim.fingerprint
                ],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn events_by_id(
        &self,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let tenant = tenant.clone();
        let ids: Vec<String> = ids
            .iter()
            .map(|id| id.as_uuid().hyphenated().to_string())
            .collect();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{} WHERE event_id = ?1 AND tenant = ?2",
                    rows::SELECT
                ))
                .map_err(sqlite_error)?;
            let mut found = Vec::new();
            for id in &ids {
                let event = stmt
                    .query_row(params![id, tenant.as_str()], rows::event)
                    .optional()
                    .map_err(sqlite_error)?;
                if let Some(event) = event {
                    found.push(event?);
                }
            }
            found.sort_by_key(|e| e.position);
            Ok(found)
        })
        .await
    }
}
