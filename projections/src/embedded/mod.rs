//! Read models on the embedded store's backend: SQLite, in a file of their
//! own beside the event store's (`read-models.db` in the data directory),
//! so `herald serve` with no server still serves every view.
//!
//! The same rules as on Postgres: a batch and its checkpoint commit in one
//! transaction (exactly-once effect), poison events are parked, and every
//! generation of a read model has tables of its own — named with the prefix
//! `rm_<name>_g<N>_` rather than a schema — so a rebuild fills new tables
//! while the serving ones answer, and one row update switches them. The
//! runner is the one loop ([`crate::runner`]) over its SQLite backend,
//! which writes through one connection; queries use a small pool of read
//! connections (WAL lets them read beside it).

pub(crate) mod schema;
pub(crate) mod serving;

pub use crate::runner::EmbeddedRunner;
pub use serving::EmbeddedReadModels;

use herald_events::EventEnvelope;

use crate::ProjectionError;

/// A read model fed from the log into SQLite: the embedded twin of
/// [`Projection`](crate::Projection), synchronous since SQLite is.
///
/// Tables are named `{prefix}<table>`; `apply` writes only through `tx`
/// and must not commit.
pub trait SqliteProjection: Send + Sync + 'static {
    /// The same name as the Postgres projection of the read model.
    fn name(&self) -> &'static str;
    /// The version of the read model's shape and logic.
    fn version(&self) -> u32;
    /// The tables `setup` creates (without the prefix).
    fn tables(&self) -> &'static [&'static str];
    /// Which events `apply` sees.
    fn accepts(&self, event: &EventEnvelope) -> bool;
    /// Creates the tables `IF NOT EXISTS`.
    fn setup(&self, tx: &rusqlite::Transaction<'_>, prefix: &str) -> Result<(), ProjectionError>;
    /// Writes the effect of a batch of accepted events, in position order.
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError>;
}

pub use crate::sql::{parse_time, time_text};

/// The table-name prefix of a generation.
pub fn table_prefix(name: &str, generation: u32) -> String {
    format!("rm_{name}_g{generation}_")
}
