//! Idempotency records on Postgres, in `herald_idempotency_keys` (migration
//! 8). A claim is one upsert that takes the key when it is free or expired
//! (the conflicting row's lock orders concurrent claims, so exactly one of
//! them takes a free key); when it does not, the row is read and compared.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, EventId, TenantId};
use serde_json::Value;
use uuid::Uuid;

use super::{pg_error, pool_error, rows, PostgresStore, SELECT_EVENT};
use crate::error::StoreError;
use crate::idempotency::{self, Claimed, IdempotencyClaim, IdempotencyKeys, PURGE_BATCH};

const CLAIM: &str = "INSERT INTO herald_idempotency_keys AS k \
     (tenant, domain, stream_id, idempotency_key, fingerprint, answer, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, NULL, $6, $7) \
     ON CONFLICT (tenant, domain, stream_id, idempotency_key) DO UPDATE SET \
     fingerprint = excluded.fingerprint, answer = NULL, \
     created_at = excluded.created_at, expires_at = excluded.expires_at \
     WHERE k.expires_at <= excluded.created_at \
     RETURNING 1";

const READ: &str = "SELECT fingerprint, answer, created_at FROM herald_idempotency_keys \
     WHERE tenant = $1 AND domain = $2 AND stream_id = $3 AND idempotency_key = $4 \
     AND expires_at > $5";

const COMPLETE: &str = "INSERT INTO herald_idempotency_keys AS k \
     (tenant, domain, stream_id, idempotency_key, fingerprint, answer, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (tenant, domain, stream_id, idempotency_key) DO UPDATE SET \
     answer = excluded.answer WHERE k.fingerprint = excluded.fingerprint";

const RELEASE: &str = "DELETE FROM herald_idempotency_keys \
     WHERE tenant = $1 AND domain = $2 AND stream_id = $3 AND idempotency_key = $4 \
     AND fingerprint = $5 AND answer IS NULL";

const PURGE: &str = "DELETE FROM herald_idempotency_keys WHERE ctid IN \
     (SELECT ctid FROM herald_idempotency_keys WHERE expires_at <= $1 LIMIT $2)";

impl PostgresStore {
    /// Deletes a batch of expired records in the background, at most once a
    /// minute; a failure waits for the next time.
    fn purge_expired(&self, now: DateTime<Utc>) {
        if !self.inner.keeping.purge_due(now) {
            return;
        }
        let pool = self.inner.pool.clone();
        tokio::spawn(async move {
            let result = async {
                let client = pool.get().await.map_err(pool_error)?;
                client
                    .execute(PURGE, &[&now, &PURGE_BATCH])
                    .await
                    .map_err(pg_error)
            }
            .await;
            match result {
                Ok(n) if n > 0 => tracing::debug!(deleted = n, "Expired idempotency keys deleted."),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "Expired idempotency keys not deleted yet."),
            }
        });
    }
}

#[async_trait]
impl IdempotencyKeys for PostgresStore {
    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<Claimed, StoreError> {
        let (now, expires) = self.inner.keeping.times();
        self.purge_expired(now);
        let client = self.pool().get().await.map_err(pool_error)?;
        let (tenant, domain, id) = (
            claim.tenant.as_str(),
            claim.stream.domain().as_str(),
            claim.stream.id(),
        );
        // A row deleted between the two statements (a purge of an expired
        // one) makes the claim go round again; twice is plenty.
        for _ in 0..3 {
            let taken = client
                .query_opt(
                    CLAIM,
                    &[
                        &tenant,
                        &domain,
                        &id,
                        &claim.key,
                        &claim.fingerprint,
                        &now,
                        &expires,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if taken.is_some() {
                return Ok(Claimed::New);
            }
            let row = client
                .query_opt(READ, &[&tenant, &domain, &id, &claim.key, &now])
                .await
                .map_err(pg_error)?;
            if let Some(row) = row {
                return Ok(idempotency::settle(
                    claim,
                    row.get::<_, &str>(0),
                    row.get::<_, Option<Value>>(1),
                    row.get::<_, DateTime<Utc>>(2),
                ));
            }
        }
        Err(StoreError::Unavailable {
            backend: super::BACKEND,
            detail: format!("the idempotency key {:?} kept changing", claim.key),
        })
    }

    async fn complete_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
        answer: &Value,
    ) -> Result<(), StoreError> {
        let (now, expires) = self.inner.keeping.times();
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .execute(
                COMPLETE,
                &[
                    &claim.tenant.as_str(),
                    &claim.stream.domain().as_str(),
                    &claim.stream.id(),
                    &claim.key,
                    &claim.fingerprint,
                    answer,
                    &now,
                    &expires,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(pool_error)?;
        client
            .execute(
                RELEASE,
                &[
                    &claim.tenant.as_str(),
                    &claim.stream.domain().as_str(),
                    &claim.stream.id(),
                    &claim.key,
                    &claim.fingerprint,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn events_by_id(
        &self,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool().get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE event_id = ANY($1) AND tenant = $2 ORDER BY position"
            ))
            .await
            .map_err(pg_error)?;
        let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        client
            .query(&stmt, &[&ids, &tenant.as_str()])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect()
    }
}
