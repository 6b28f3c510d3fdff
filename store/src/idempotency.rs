//! Idempotency keys of HTTP requests: what a client's `Idempotency-Key` was
//! first used for on an aggregate (or stream) of a tenant, and the answer it
//! got, kept for a window (24 h unless configured) so that a retry gets the
//! first answer instead of being done twice.
//!
//! The events a keyed request appends get ids derived from the key
//! ([`IdempotencyClaim::event_id`]), and the store is idempotent on event
//! ids atomically with the append. So the log itself says whether a request
//! took effect, whatever happened to the process after it committed; the
//! record here adds what the log cannot hold: what the key was used for (a
//! retry with another body is refused instead of answered with the old
//! result) and the answer of a request that appended nothing (a command
//! that changed nothing). A record is claimed before the request runs,
//! completed with its answer after, and released when the request was
//! refused (it changed nothing, so the key may be used again).
//!
//! Both backends keep the records in `herald_idempotency_keys` and delete
//! expired ones as they go (at most once a minute, a bounded number at a
//! time); an expired record counts as absent even before it is deleted.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, EventId, StreamId, TenantId};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::Result;

/// How long a key is kept from its first use unless configured otherwise.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The longest window kept.
const MAX_WINDOW: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Most characters in an idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Expired records deleted by one purge.
pub(crate) const PURGE_BATCH: i64 = 1000;

/// One use of an idempotency key: by whom (tenant), on what (stream), and
/// for what (the fingerprint of the request: the command and its body, or
/// the append's body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub tenant: TenantId,
    pub stream: StreamId,
    pub key: String,
    /// Hex SHA-256 of what the key is used for; see [`fingerprint`].
    pub fingerprint: String,
}

impl IdempotencyClaim {
    /// The id of the `index`-th event this request appends. Derived from
    /// the tenant, the stream, the key and the fingerprint: a retry gets the
    /// same ids (so the store appends nothing twice), another tenant's or
    /// another aggregate's use of the same key gets others, and so does a
    /// new use of the key after its window.
    pub fn event_id(&self, index: usize) -> EventId {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d69_6465_6d70_6b65_7973);
        EventId(Uuid::new_v5(
            &NAMESPACE,
            format!(
                "{}\n{}\n{}\n{}\n{index}",
                self.tenant, self.stream, self.fingerprint, self.key
            )
            .as_bytes(),
        ))
    }
}

/// The fingerprint of a request: hex SHA-256 of its parts, each preceded by
/// its length so that no two lists of parts run together alike.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// The key was free (never used, or its window passed): the request
    /// runs, and is recorded as under way.
    New,
    /// The key was used for the same request, whose answer is recorded.
    Answered(Value),
    /// The key was used for the same request, whose outcome is unknown: it
    /// is under way, or its process died before recording its answer. The
    /// log tells whether its events were appended.
    Unsettled,
    /// The key was used for another request (another command or body).
    Conflict { first_used_at: DateTime<Utc> },
}

/// Idempotency records, part of every [`EventStore`](crate::EventStore).
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Claims the key for the request, or tells what it was used for.
    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<Claimed>;

    /// Records the answer of the claimed request. A record since claimed
    /// for another request (after the window) is left as it is.
    async fn complete_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
        answer: &Value,
    ) -> Result<()>;

    /// Forgets an unanswered claim (the request was refused and changed
    /// nothing); an answered one, or another request's, is kept.
    async fn release_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<()>;

    /// The stored events of `tenant` among `ids`, in position order.
    async fn events_by_id(&self, tenant: &TenantId, ids: &[EventId]) -> Result<Vec<EventEnvelope>>;
}

/// What a backend needs to keep records: the window, the clock, and when it
/// last purged.
#[derive(Debug)]
pub(crate) struct Keeping {
    pub window: Duration,
    pub clock: Arc<dyn Clock>,
    /// Unix seconds of the last purge.
    last_purge: AtomicI64,
}

impl Keeping {
    pub fn new(window: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            window,
            clock,
            last_purge: AtomicI64::new(0),
        }
    }

    /// Now and when a record claimed now expires.
    pub fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let now = herald_events::envelope::to_stored_precision(self.clock.now());
        // Ten years at most, so the expiry stays a time both stores keep.
        let window = chrono::Duration::from_std(self.window.min(MAX_WINDOW))
            .unwrap_or(chrono::Duration::zero());
        (now, now + window)
    }

    /// True at most once a minute: time for a purge of expired records.
    pub fn purge_due(&self, now: DateTime<Utc>) -> bool {
        let now = now.timestamp();
        let last = self.last_purge.load(Ordering::Relaxed);
        now - last >= 60
            && self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Checks what a backend read against the claim.
pub(crate) fn settle(
    claim: &IdempotencyClaim,
    fingerprint: &str,
    answer: Option<Value>,
    first_used_at: DateTime<Utc>,
) -> Claimed {
    if fingerprint != claim.fingerprint {
        Claimed::Conflict { first_used_at }
    } else {
        answer.map_or(Claimed::Unsettled, Claimed::Answered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(tenant: &str, stream: &str, key: &str, fingerprint: &str) -> IdempotencyClaim {
        IdempotencyClaim {
            tenant: TenantId::new(tenant).unwrap(),
            stream: stream.parse().unwrap(),
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    #[test]
    fn event_ids_differ_by_tenant_stream_key_fingerprint_and_index() {
        let base = claim("acme", "tickets/T-1", "k", "f");
        let others = [
            claim("other", "tickets/T-1", "k", "f"),
            claim("acme", "tickets/T-2", "k", "f"),
            claim("acme", "tickets/T-1", "k2", "f"),
            claim("acme", "tickets/T-1", "k", "g"),
        ];
        let same = claim("acme", "tickets/T-1", "k", "f");
        assert_eq!(base.event_id(0), same.event_id(0));
        assert_ne!(base.event_id(0), base.event_id(1));
        for other in others {
            assert_ne!(base.event_id(0), other.event_id(0), "{other:?}");
        }
    }

    #[test]
    fn fingerprints_keep_parts_apart() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["b", "a"]));
    }

    #[test]
    fn a_claim_settles_by_fingerprint_then_answer() {
        let c = claim("acme", "tickets/T-1", "k", "f");
        let at = Utc::now();
        assert_eq!(
            settle(&c, "g", None, at),
            Claimed::Conflict { first_used_at: at }
        );
        assert_eq!(settle(&c, "f", None, at), Claimed::Unsettled);
        assert_eq!(
            settle(&c, "f", Some(Value::Bool(true)), at),
            Claimed::Answered(Value::Bool(true))
        );
    }
}
