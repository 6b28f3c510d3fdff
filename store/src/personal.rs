//! What the store keeps for "forget a person": personal fields of events are
//! encrypted per subject (a person), each subject with a data key of its own,
//! and forgetting the subject destroys that key, which leaves its fields in
//! the log unreadable for good while the log itself (and its hash chain)
//! stays as written.
//!
//! This module owns the store's side of it, for both backends:
//! - [`SubjectKey`] and [`SubjectKeys`]: the subjects' data keys, kept
//!   wrapped (encrypted) by a master key the store never sees, in
//!   `herald_subject_keys`; at most one live key per subject of a tenant,
//!   enforced by the database, and forgetting overwrites the wrapped key
//!   (on the embedded store with SQLite's `secure_delete`, so no copy stays
//!   in the file);
//! - named deployment secrets (the blind-index key), wrapped the same way,
//!   in `herald_personal_secrets`, first writer wins;
//! - [`PayloadSealer`]: the hook through which the layer above (Herald's
//!   privacy layer, which holds the master key and does the cryptography)
//!   rewrites payloads before every append.
//!
//! Subjects are named by a keyed hash of their id (`subject_ref`); the id
//! itself is never stored here.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::{NewEvent, TenantId};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// One subject's data key, as stored: wrapped (encrypted) by a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub key_id: Uuid,
    pub tenant: TenantId,
    /// A keyed hash of the subject's id (hex); the id itself is never stored.
    pub subject_ref: String,
    /// The wrapped key; `None` once forgotten.
    pub wrapped: Option<Vec<u8>>,
    /// Which master key wrapped it (an id, not the key).
    pub wrapped_by: String,
    /// When the key was made; kept to the microsecond.
    pub created_at: DateTime<Utc>,
    /// When the key was destroyed; kept to the microsecond.
    pub forgotten_at: Option<DateTime<Utc>>,
}

impl SubjectKey {
    /// Checks that `self` can be stored as a new live key: it carries its
    /// wrapped key and is not forgotten (the tables enforce the same).
    pub(crate) fn check_new(&self, backend: &'static str) -> Result<()> {
        if self.wrapped.is_none() || self.forgotten_at.is_some() {
            return Err(StoreError::Backend {
                backend,
                detail: format!(
                    "subject key {} cannot be created: a new key carries its wrapped key \
                     and is not forgotten",
                    self.key_id
                ),
            });
        }
        Ok(())
    }
}

/// The subjects' data keys and the deployment's personal secrets; part of
/// every [`EventStore`](crate::EventStore) (each backend implements it in
/// its own `personal` module). Keys and secrets are written with durable
/// commits, never relaxed ones: unlike checkpoints and snapshots, they
/// cannot be recomputed from the log.
#[async_trait]
pub trait SubjectKeys: Send + Sync {
    /// The subject's live (not forgotten) key, if any.
    async fn live_subject_key(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
    ) -> Result<Option<SubjectKey>>;

    /// Stores `key` as the subject's live key unless the subject already has
    /// one (another process may race): answers the live key, the given one
    /// or the one already there. At most one live key per
    /// (tenant, subject_ref), enforced by the database (a partial unique
    /// index). `key` must carry its wrapped key and no `forgotten_at`.
    async fn create_subject_key(&self, key: &SubjectKey) -> Result<SubjectKey>;

    /// A key by id, live or forgotten.
    async fn subject_key(&self, key_id: Uuid) -> Result<Option<SubjectKey>>;

    /// Every key a subject ever had, oldest first.
    async fn subject_keys(&self, tenant: &TenantId, subject_ref: &str) -> Result<Vec<SubjectKey>>;

    /// Destroys the subject's live keys: `wrapped` becomes NULL and
    /// `forgotten_at` = `at`, in one statement. Answers the ids destroyed now
    /// (empty when there was none, e.g. forgotten twice).
    async fn forget_subject_keys(
        &self,
        tenant: &TenantId,
        subject_ref: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>>;

    /// Up to `limit` live keys wrapped by another master key than
    /// `master_id` (for re-wrapping after a master key rotation), oldest
    /// first.
    async fn keys_not_wrapped_by(&self, master_id: &str, limit: usize) -> Result<Vec<SubjectKey>>;

    /// Replaces a live key's wrapping if it is still live and still wrapped
    /// by `old_master`; false otherwise.
    async fn rewrap_subject_key(
        &self,
        key_id: Uuid,
        old_master: &str,
        wrapped: &[u8],
        new_master: &str,
    ) -> Result<bool>;

    /// A named deployment secret (e.g. the blind-index key), stored once:
    /// answers (value, wrapped_by) already stored, or stores the given ones
    /// first (first writer wins across processes).
    async fn personal_secret(
        &self,
        name: &str,
        value_if_absent: &[u8],
        wrapped_by_if_absent: &str,
    ) -> Result<(Vec<u8>, String)>;

    /// Replaces a secret's value if still wrapped by `old_wrapped_by`; false
    /// otherwise.
    async fn rewrap_personal_secret(
        &self,
        name: &str,
        old_wrapped_by: &str,
        value: &[u8],
        wrapped_by: &str,
    ) -> Result<bool>;
}

/// Rewrites events' payloads before they are appended (Herald's privacy
/// layer encrypts personal fields with it). Must be deterministic for the
/// same input, so a repeated append stays an identical, idempotent one.
///
/// An error fails the append, which writes nothing; the store answers the
/// error as the sealer gave it, so a sealer passes on a store error of its
/// own lookups ([`StoreError::Unavailable`] stays retryable), answers
/// [`StoreError::InvalidAppend`] for a payload it refuses, and
/// [`StoreError::Sealing`] when it fails itself.
#[async_trait]
pub trait PayloadSealer: Send + Sync + std::fmt::Debug {
    async fn seal(&self, tenant: &TenantId, events: &mut [NewEvent]) -> Result<()>;
}

/// Where a backend keeps its installed sealer: set once, read by every append.
pub(crate) type SealerSlot = OnceLock<Arc<dyn PayloadSealer>>;

/// Installs `sealer` in `slot` unless one is there; true when installed.
pub(crate) fn install(slot: &SealerSlot, sealer: Arc<dyn PayloadSealer>) -> bool {
    let installed = slot.set(sealer).is_ok();
    if !installed {
        tracing::warn!("A payload sealer is installed already; the second one is ignored.");
    }
    installed
}

/// Runs `events` through the sealer in `slot`, if any.
pub(crate) async fn seal(
    slot: &SealerSlot,
    tenant: &TenantId,
    events: &mut [NewEvent],
) -> Result<()> {
    match slot.get() {
        Some(sealer) if !events.is_empty() => sealer.seal(tenant, events).await,
        _ => Ok(()),
    }
}
