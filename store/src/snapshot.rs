//! Aggregate snapshots: the [`Snapshot`] of a stream's folded state that the
//! [`SnapshotStore`](crate::SnapshotStore) keeps, and the checks both
//! backends apply before storing one (a stream version of at least 1, a
//! state of at most [`MAX_SNAPSHOT_STATE_BYTES`] of JSON holding no U+0000,
//! a time within the years 1 to 9999).
//!
//! A snapshot is a cache of the log, not part of it: it is outside the hash
//! chain, one row per stream holds only the latest, and deleting it loses
//! nothing but the time to fold the stream again. The store does not read
//! the log to check a snapshot against it: the runtime saves only states it
//! has folded from events it has read, so the stream holds the snapshot's
//! `stream_version`.

use std::io;

use chrono::{DateTime, Utc};
use herald_events::envelope::to_stored_precision;
use herald_events::{StreamId, StreamVersion, TenantId};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::storable;

/// Largest state a snapshot may hold: its JSON text, in bytes (16 MiB).
pub const MAX_SNAPSHOT_STATE_BYTES: usize = 16 * 1024 * 1024;

/// The state of a stream's aggregate after folding its events up to
/// `stream_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub tenant: TenantId,
    pub stream: StreamId,
    /// The version of the last event folded into the state (≥ 1).
    pub stream_version: StreamVersion,
    /// The version of the state's shape; the runtime ignores snapshots of
    /// another version than the one its code folds.
    pub state_version: u32,
    pub state: Value,
    /// When the snapshot was taken; kept to the microsecond.
    pub taken_at: DateTime<Utc>,
}

impl Snapshot {
    /// A snapshot taken now (to the microsecond, as it is stored).
    pub fn new(
        tenant: TenantId,
        stream: StreamId,
        stream_version: StreamVersion,
        state_version: u32,
        state: Value,
    ) -> Self {
        Self {
            tenant,
            stream,
            stream_version,
            state_version,
            state,
            taken_at: to_stored_precision(Utc::now()),
        }
    }

    fn invalid(&self, reason: String) -> StoreError {
        StoreError::InvalidSnapshot {
            stream: self.stream.clone(),
            reason,
        }
    }

    /// `boundary` as a guard's operand: at most one past the snapshot's own
    /// version (a later boundary would let a stale save overwrite a newer
    /// snapshot), and within i64 (the version was checked to be).
    pub(crate) fn boundary(&self, boundary: StreamVersion) -> i64 {
        boundary
            .get()
            .min(self.stream_version.get().saturating_add(1))
            .min(i64::MAX as u64) as i64
    }

    /// Checks the snapshot and answers its state as JSON text, written once
    /// and never beyond the size limit.
    pub(crate) fn checked_state_json(&self) -> Result<String> {
        let version = self.stream_version.get();
        if version == 0 || version > i64::MAX as u64 {
            return Err(self.invalid(format!(
                "stream version {version} is out of range: a snapshot folds at least one event"
            )));
        }
        if !storable::is_storable_time(&self.taken_at) {
            return Err(self.invalid(format!(
                "taken_at {} is outside the years 1 to 9999",
                self.taken_at
            )));
        }
        let mut out = Bounded {
            bytes: Vec::new(),
            limit: MAX_SNAPSHOT_STATE_BYTES,
        };
        if let Err(e) = serde_json::to_writer(&mut out, &self.state) {
            return Err(self.invalid(if e.is_io() {
                format!("the state is over {MAX_SNAPSHOT_STATE_BYTES} bytes of JSON, the limit")
            } else {
                format!("the state cannot be written as JSON: {e}")
            }));
        }
        if let Some(found) = storable::find_unstorable(&self.state) {
            return Err(self.invalid(format!("{}", found.within("/state"))));
        }
        String::from_utf8(out.bytes)
            .map_err(|e| self.invalid(format!("the state's JSON is not UTF-8: {e}")))
    }

    /// The time as stored: to the microsecond.
    pub(crate) fn stored_taken_at(&self) -> DateTime<Utc> {
        to_stored_precision(self.taken_at)
    }
}

/// A buffer refusing to grow past a limit, so an oversized state is refused
/// after writing at most the limit, not all of it.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(io::Error::other("over the snapshot size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(version: u64, state: Value) -> Snapshot {
        Snapshot::new(
            TenantId::default_tenant(),
            "tickets/T-1".parse().unwrap(),
            StreamVersion(version),
            1,
            state,
        )
    }

    #[test]
    fn states_up_to_the_limit_are_kept_and_larger_ones_refused() {
        // A JSON string of n characters is n + 2 bytes with its quotes.
        let at_limit = snapshot(1, json!("x".repeat(MAX_SNAPSHOT_STATE_BYTES - 2)));
        assert_eq!(
            at_limit.checked_state_json().unwrap().len(),
            MAX_SNAPSHOT_STATE_BYTES
        );
        let over = snapshot(1, json!("x".repeat(MAX_SNAPSHOT_STATE_BYTES - 1)));
        let e = over.checked_state_json().unwrap_err();
        assert!(matches!(e, StoreError::InvalidSnapshot { .. }), "{e}");
        assert!(e.is_caller_error());
        assert_eq!(e.kind(), "invalid_snapshot");
    }

    #[test]
    fn version_zero_nul_and_far_times_are_refused() {
        assert!(snapshot(0, json!({})).checked_state_json().is_err());
        assert!(snapshot(1, json!({"a": ["x\u{0}"]}))
            .checked_state_json()
            .unwrap_err()
            .to_string()
            .contains("state/a/0"));
        let mut far = snapshot(1, json!({}));
        far.taken_at = DateTime::<Utc>::MAX_UTC;
        assert!(far.checked_state_json().is_err());
        assert_eq!(
            snapshot(1, json!({"a": 1})).checked_state_json().unwrap(),
            r#"{"a":1}"#
        );
    }
}
