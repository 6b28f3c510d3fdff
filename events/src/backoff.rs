//! How long a retrying loop waits after its failures: one rule, doubling
//! from a first delay up to a bound, for every loop in Herald that retries
//! (the relay, ingest, reactions, the timer scheduler, store listeners,
//! broker links, the CLI). It only computes; the loops sleep.
//!
//! It lives here, beneath every other crate, because it is pure arithmetic
//! that each of them needs.

use std::time::Duration;

/// A doubling backoff: `first` after the first failure, twice that after
/// the second, and so on, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits `first`, then doubles up to `max` (`max` below `first` caps
    /// every wait at `max`).
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The first wait.
    pub const fn first(&self) -> Duration {
        self.first
    }

    /// The longest wait.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The wait after `failures` failures in a row (0 and 1 both give the
    /// first wait).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait after `current`: twice it, at most `max` (for loops that
    /// keep the wait rather than a count of failures).
    pub fn after(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_doubles_from_the_first_wait_up_to_its_bound() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(6), Duration::from_millis(3200));
        assert_eq!(b.delay(7), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
        assert_eq!(
            b.after(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
        assert_eq!(b.after(Duration::from_secs(4)), Duration::from_secs(5));
    }
}
