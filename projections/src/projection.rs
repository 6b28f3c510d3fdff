//! The [`Projection`] trait: what a read model implements to be fed the log.

use async_trait::async_trait;
use herald_events::EventEnvelope;

use crate::ProjectionError;

/// A read model fed from the event store's global log.
///
/// The runner calls `apply` inside the transaction that also advances the
/// projection's checkpoint, so `apply` must write only through `tx` (writes
/// elsewhere would escape the exactly-once guarantee) and must not commit.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: its consumer group, checkpoint and metric label.
    fn name(&self) -> &'static str;

    /// The version of the read model's shape and logic. It is stored with the
    /// checkpoint; a checkpoint of another version stops the runner (a
    /// blue-green rebuild is how a new version will take over).
    fn version(&self) -> u32;

    /// A cheap filter (by domain, type, tenant): events it refuses are not
    /// passed to `apply`, but the checkpoint still moves past them.
    fn accepts(&self, event: &EventEnvelope) -> bool;

    /// Creates the read model's tables (`IF NOT EXISTS`); run once per start.
    async fn setup(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), ProjectionError>;

    /// Writes the effect of a batch of accepted events, in position order.
    /// An error rolls the batch back; the runner then retries the events one
    /// by one to find, and park, the one at fault.
    async fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError>;
}
