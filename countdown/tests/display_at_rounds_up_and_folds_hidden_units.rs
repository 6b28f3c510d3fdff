//! `display_at`: seconds left rounded up, expiry exactly at the deadline,
//! hidden larger units folded into the largest shown one, hidden smaller
//! units dropped.

use chrono::{DateTime, TimeDelta, Utc};
use herald_countdown::{display_at, Display, Units};

fn deadline() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn units(days: bool, hours: bool, minutes: bool, seconds: bool) -> Units {
    Units {
        days,
        hours,
        minutes,
        seconds,
    }
}

fn running(days: u64, hours: u64, minutes: u64, seconds: u64) -> Display {
    Display::Running {
        days,
        hours,
        minutes,
        seconds,
    }
}

fn left(d: i64, h: i64, m: i64, s: i64) -> TimeDelta {
    TimeDelta::days(d) + TimeDelta::hours(h) + TimeDelta::minutes(m) + TimeDelta::seconds(s)
}

#[test]
fn part_seconds_left_round_up() {
    let all = Units::ALL;
    let at = |before: TimeDelta| display_at(all, deadline(), deadline() - before);
    assert_eq!(at(TimeDelta::milliseconds(1)), running(0, 0, 0, 1));
    assert_eq!(at(TimeDelta::milliseconds(999)), running(0, 0, 0, 1));
    assert_eq!(at(TimeDelta::seconds(1)), running(0, 0, 0, 1));
    assert_eq!(at(TimeDelta::milliseconds(1001)), running(0, 0, 0, 2));
    assert_eq!(
        at(TimeDelta::nanoseconds(59_000_000_001)),
        running(0, 0, 1, 0)
    );
    assert_eq!(at(left(2, 4, 13, 59)), running(2, 4, 13, 59));
    assert_eq!(
        at(left(2, 4, 13, 58) + TimeDelta::milliseconds(500)),
        running(2, 4, 13, 59)
    );
}

#[test]
fn the_countdown_expires_exactly_at_the_deadline() {
    let all = Units::ALL;
    assert_eq!(display_at(all, deadline(), deadline()), Display::Expired);
    assert_eq!(
        display_at(all, deadline(), deadline() + TimeDelta::nanoseconds(1)),
        Display::Expired
    );
    assert_eq!(
        display_at(all, deadline(), deadline() + TimeDelta::days(400)),
        Display::Expired
    );
    assert_eq!(
        display_at(all, deadline(), deadline() - TimeDelta::nanoseconds(1)),
        running(0, 0, 0, 1)
    );
}

#[test]
fn the_largest_shown_unit_absorbs_hidden_larger_ones() {
    let at = |u: Units, before: TimeDelta| display_at(u, deadline(), deadline() - before);
    let time = left(3, 5, 7, 9);
    assert_eq!(
        at(units(false, true, true, true), time),
        running(0, 77, 7, 9)
    );
    assert_eq!(
        at(units(false, false, true, true), time),
        running(0, 0, 3 * 1440 + 5 * 60 + 7, 9)
    );
    assert_eq!(
        at(units(false, false, false, true), time),
        running(0, 0, 0, ((3 * 24 + 5) * 60 + 7) * 60 + 9)
    );
}

#[test]
fn hidden_smaller_units_are_dropped() {
    let at = |u: Units, before: TimeDelta| display_at(u, deadline(), deadline() - before);
    let time = left(3, 5, 7, 9);
    assert_eq!(
        at(units(true, true, false, false), time),
        running(3, 5, 0, 0)
    );
    assert_eq!(
        at(units(true, false, false, false), time),
        running(3, 0, 0, 0)
    );
    // Less than a whole shown unit left still counts down, not expires.
    assert_eq!(
        at(units(true, false, false, false), left(0, 23, 59, 59)),
        running(0, 0, 0, 0)
    );
    // A hidden middle unit folds into the next smaller shown one.
    assert_eq!(
        at(units(true, false, true, false), time),
        running(3, 0, 307, 0)
    );
}
