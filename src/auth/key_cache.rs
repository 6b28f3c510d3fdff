//! API key records looked up in the store, kept for the requests that follow
//! while the store says no key has been revoked since ([`api_key_changes`]):
//! a revocation by any process moves that count, and the next request with
//! the key looks it up again, so revoking still stops a key at once. On a
//! store that cannot tell (the embedded one, revoked from another process by
//! `herald keys revoke`), every request looks its key up, as before.
//!
//! [`api_key_changes`]: herald_store::ApiKeyStore::api_key_changes

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_store::{ApiKeyRecord, EventStore, StoreError};

/// Kept at most this long even when nothing was announced: a bound on what
/// an announcement lost without a reconnect could cost.
const MAX_AGE: Duration = Duration::from_secs(10);
/// Keys kept at most; past it the cache starts again empty.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct KeyCache {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    record: ApiKeyRecord,
    /// The store's change count when it was looked up.
    changes: u64,
    at: Instant,
}

impl KeyCache {
    /// The key with this id, from the cache while it is current, else from
    /// the store. Unknown keys are not kept: a key created later works at once.
    pub async fn get(
        &self,
        store: &dyn EventStore,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        // Read before the lookup: a revocation during it moves the count,
        // and the record kept below is then never used.
        let Some(changes) = store.api_key_changes() else {
            return store.api_key(key_id).await;
        };
        if let Some(entry) = self.lock().get(key_id) {
            if entry.changes == changes && entry.at.elapsed() < MAX_AGE {
                return Ok(Some(entry.record.clone()));
            }
        }
        let record = store.api_key(key_id).await?;
        if let Some(record) = &record {
            let mut entries = self.lock();
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(
                key_id.to_owned(),
                Entry {
                    record: record.clone(),
                    changes,
                    at: Instant::now(),
                },
            );
        }
        Ok(record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
