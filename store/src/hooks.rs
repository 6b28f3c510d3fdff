//! Fault-injection points in the write path, for tests that must make
//! transactions interleave in a chosen way (hold one open before commit while
//! others try to append). Production code passes none.

use std::fmt;

use async_trait::async_trait;
use herald_events::EventEnvelope;

/// Called by a backend's writer around each batch transaction.
#[async_trait]
pub trait AppendHooks: Send + Sync + fmt::Debug {
    /// Before the writer asks for the log lock.
    async fn before_lock(&self) {}
    /// After the batch's rows are written, before the transaction commits.
    /// An `Err` rolls the transaction back, as a crash before commit would.
    async fn before_commit(&self, _rows: &[EventEnvelope]) -> Result<(), String> {
        Ok(())
    }
}
