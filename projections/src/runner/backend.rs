//! What the one runner loop asks of a read-model database: [`Backend`],
//! implemented for Postgres ([`super::postgres`]) and SQLite
//! ([`super::sqlite`]). The loop decides (which generations to move, when
//! to park, when to switch, through [`crate::plan`]); a backend only does
//! the I/O: generation rows and checkpoints, a batch's transaction, parked
//! events, dropping tables, comparing two generations.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, EventId, Position};

use crate::diff::TableDiff;
use crate::embedded::SqliteProjection;
use crate::plan::Step;
use crate::schema::Generation;
use crate::{ParkedEvent, Projection, ProjectionError};

/// What the loop needs to know of a projection, whichever database it
/// writes to.
pub trait Describe: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    fn tables(&self) -> &'static [&'static str];
    fn accepts(&self, event: &EventEnvelope) -> bool;
}

macro_rules! describe {
    ($projection:path) => {
        impl Describe for dyn $projection {
            fn name(&self) -> &'static str {
                <Self as $projection>::name(self)
            }
            fn version(&self) -> u32 {
                <Self as $projection>::version(self)
            }
            fn tables(&self) -> &'static [&'static str] {
                <Self as $projection>::tables(self)
            }
            fn accepts(&self, event: &EventEnvelope) -> bool {
                <Self as $projection>::accepts(self, event)
            }
        }
    };
}

describe!(Projection);
describe!(SqliteProjection);

/// A decision taken on a read model's generation rows, read (and locked)
/// in the transaction that carries it out.
pub type Decide = Box<dyn FnOnce(&[Generation]) -> Result<Vec<Step>, ProjectionError> + Send>;

/// What [`Backend::carry_out`] did.
#[derive(Debug)]
pub struct Carried {
    /// The generation rows the decision was taken on.
    pub before: Vec<Generation>,
    /// The steps carried out.
    pub steps: Vec<Step>,
    /// The generation a step created, if one did.
    pub created: Option<u32>,
}

/// An event to park in a batch's transaction.
#[derive(Debug, Clone)]
pub struct Park {
    pub position: Position,
    pub event_id: EventId,
    pub error: String,
}

/// One batch's transaction: check that the generation's checkpoint is
/// still `expected`, apply `events`, park one if asked, move the
/// checkpoint to `to`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub generation: u32,
    pub expected: Position,
    pub events: Arc<[EventEnvelope]>,
    pub to: Position,
    pub park: Option<Park>,
    /// A detached build's batch: the generation must be retired (not
    /// serving, not building), and it expires at this moment now.
    pub detached: Option<DateTime<Utc>>,
}

/// What became of a batch's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// The checkpoint was not where the loop thought (another runner of the
    /// same projection moved it): nothing was applied.
    Moved(Position),
    /// The generation was retired or dropped meanwhile (for a detached
    /// build: it was made to serve or dropped): nothing was applied.
    Gone,
}

/// A read-model database as the runner loop uses it.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The projections it runs.
    type Projection: ?Sized + Describe;

    /// Where a generation's tables are: its schema or its table prefix.
    fn tables_in(&self, name: &str, generation: u32) -> String;

    /// Takes or renews the lease on running projection `name` in this
    /// database for `holder`, for `ttl`; true when `holder` holds it. One
    /// runner at a time moves a projection's read models in one database.
    async fn take_lease(
        &self,
        name: &'static str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, ProjectionError>;

    /// Gives up the lease on `name` if `holder` holds it.
    async fn release_lease(&self, name: &'static str, holder: &str) -> Result<(), ProjectionError>;

    /// Every generation of `name`, oldest first.
    async fn generations(&self, name: &'static str) -> Result<Vec<Generation>, ProjectionError>;

    /// In one transaction: reads and locks `p`'s generation rows, asks
    /// `decide` what to do and does it.
    async fn carry_out(
        &self,
        p: &Arc<Self::Projection>,
        decide: Decide,
    ) -> Result<Carried, ProjectionError>;

    /// One batch, in one transaction with its checkpoint.
    async fn commit(
        &self,
        p: &Arc<Self::Projection>,
        batch: Batch,
    ) -> Result<Outcome, ProjectionError>;

    /// Drops a retired generation, its tables and parked events; nothing
    /// when it is gone, an error when it serves or is being built.
    async fn drop_generation(
        &self,
        p: &Arc<Self::Projection>,
        generation: u32,
    ) -> Result<(), ProjectionError>;

    /// The events `generation` of `name` parked, in position order.
    async fn parked(
        &self,
        name: &'static str,
        generation: u32,
    ) -> Result<Vec<ParkedEvent>, ProjectionError>;

    /// Applies `event`, parked by the serving generation, again and
    /// un-parks it in one transaction; on failure the parked row keeps the
    /// new error.
    async fn retry(
        &self,
        p: &Arc<Self::Projection>,
        event: EventEnvelope,
    ) -> Result<(), ProjectionError>;

    /// Compares the serving generation `live` with `built`, both at
    /// `position`, while the serving one stands still; `None` when it is
    /// no longer `live` at `position`.
    async fn compare(
        &self,
        p: &Arc<Self::Projection>,
        live: u32,
        built: u32,
        position: Position,
        max_rows: usize,
    ) -> Result<Option<Vec<TableDiff>>, ProjectionError>;
}
