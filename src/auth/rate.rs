//! Per-identity request rate limits (token buckets from `governor`), each
//! key at its own rate or the server's default.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The buckets of every identity seen.
#[derive(Debug)]
pub struct RateLimits {
    default_per_sec: NonZeroU32,
    buckets: Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
}

impl RateLimits {
    pub fn new(default_per_sec: u32) -> Self {
        Self {
            default_per_sec: NonZeroU32::new(default_per_sec).unwrap_or(NonZeroU32::MIN),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `who`'s bucket; `Err` holds how long to wait.
    pub fn check(&self, who: &str, per_sec: Option<u32>) -> Result<(), Duration> {
        let rate = per_sec
            .and_then(NonZeroU32::new)
            .unwrap_or(self.default_per_sec);
        let limiter = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let entry = buckets
                .entry(who.to_owned())
                .or_insert_with(|| (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate)))));
            if entry.0 != rate {
                *entry = (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate))));
            }
            Arc::clone(&entry.1)
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_rate_is_refused_with_a_wait() {
        let limits = RateLimits::new(5);
        let refused = (0..20).filter(|_| limits.check("k", None).is_err()).count();
        assert!(refused >= 14, "{refused}");
        assert!(
            limits.check("other", None).is_ok(),
            "buckets are per identity"
        );
        let wait = limits.check("k", None).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
    }
}
