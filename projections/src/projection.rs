//! The [`Projection`] trait: what a read model implements to be fed the log.

use async_trait::async_trait;
use herald_events::EventEnvelope;

use crate::ProjectionError;

/// A read model fed from the event store's global log.
///
/// Every generation of a read model lives in a Postgres schema of its own
/// (`rm_<name>_g<generation>`, passed to `setup` and `apply` as `schema`):
/// a rebuild (blue-green) fills a new generation while the serving one keeps
/// answering queries, and the switch between them is one row update. A
/// projection therefore names its tables `{schema}.<table>` and never
/// hard-codes a schema.
///
/// The runner calls `apply` inside the transaction that also advances the
/// generation's checkpoint, so `apply` must write only through `tx` (writes
/// elsewhere would escape the exactly-once guarantee) and must not commit.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: its checkpoint, schema prefix and metric label.
    /// Lower-case ASCII letters, digits and `_`, starting with a letter.
    fn name(&self) -> &'static str;

    /// The version of the read model's shape and logic. Bumping it makes the
    /// runner build a new generation from the start of the log while the old
    /// one keeps serving, then switch to it.
    fn version(&self) -> u32;

    /// The tables `setup` creates in the schema, for comparing two
    /// generations (`rebuilt = live`) and for diffs. Their content must be
    /// a function of the events alone (no `now()`), or two builds differ.
    fn tables(&self) -> &'static [&'static str];

    /// A cheap filter (by domain, type, tenant): events it refuses are not
    /// passed to `apply`, but the checkpoint still moves past them.
    fn accepts(&self, event: &EventEnvelope) -> bool;

    /// Creates the read model's tables in `schema` (which exists), with
    /// `IF NOT EXISTS`: it runs at every start.
    async fn setup(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        schema: &str,
    ) -> Result<(), ProjectionError>;

    /// Writes the effect of a batch of accepted events, in position order,
    /// into the tables of `schema`. Batches can hold thousands of events
    /// during a rebuild: fold them in memory and write with few statements.
    /// An error rolls the batch back; the runner then retries the events one
    /// by one to find, and park, the one at fault.
    async fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError>;
}
