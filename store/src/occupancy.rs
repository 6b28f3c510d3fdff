//! Which processes use a store at once. A process whose work cannot be
//! shared (one running the in-process broker, whose consumers see only what
//! its own relay publishes) occupies the store alone; the others share it.
//! Each backend holds the claim with something the operating system or the
//! database releases when the process dies, however it dies — a lock on a
//! file beside the SQLite file, a session advisory lock on Postgres — so a
//! process killed with SIGKILL never blocks its successor.

use std::fmt;

/// How a process uses the store while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// No other process may use the store meanwhile.
    Alone,
    /// Other processes that share it may use it too.
    Shared,
}

/// A claim on the store; released when dropped (or when the process dies).
pub struct OccupancyGuard {
    _held: Box<dyn Send + Sync>,
}

impl OccupancyGuard {
    pub(crate) fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for OccupancyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupancyGuard").finish_non_exhaustive()
    }
}
