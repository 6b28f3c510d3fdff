//! The time source of the store, passed in so tests can control record times.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Tells the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
