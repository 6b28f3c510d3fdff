//! What a countdown reads at an instant: the time left split into the shown
//! units, or expired.

use chrono::{DateTime, Utc};

use crate::style::Units;

/// What one frame shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Display {
    /// Hidden units are 0.
    Running {
        days: u64,
        hours: u64,
        minutes: u64,
        seconds: u64,
    },
    Expired,
}

/// The display at instant `at` for `deadline` in `units`.
///
/// The seconds left are rounded up, so the countdown reads 00:00:01 during
/// the last second and turns Expired exactly at the deadline. The largest
/// shown unit absorbs the hidden larger ones (no days shown: hours can exceed
/// 23); hidden smaller units are dropped (rounded down).
pub fn display_at(units: Units, deadline: DateTime<Utc>, at: DateTime<Utc>) -> Display {
    let left = deadline - at;
    if left <= chrono::TimeDelta::zero() {
        return Display::Expired;
    }
    let whole = u64::try_from(left.num_seconds()).unwrap_or(0);
    let mut rest = whole + u64::from(left.subsec_nanos() > 0);
    // Largest first: each shown unit takes all it can of what the larger
    // shown units left, which is both absorption and dropping.
    let mut take = |shown: bool, size: u64| {
        if !shown {
            return 0;
        }
        let n = rest / size;
        rest %= size;
        n
    };
    Display::Running {
        days: take(units.days, 86_400),
        hours: take(units.hours, 3_600),
        minutes: take(units.minutes, 60),
        seconds: take(units.seconds, 1),
    }
}
