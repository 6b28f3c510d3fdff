//! The `timers` domain: durable timers, and countdowns (as embedded in
//! emails) that expire through the same mechanism. Read top to bottom:
//! [`commands`], [`events`] (the payloads live in herald-events), [`state`]
//! (`apply`), [`decide`], and the [`scheduler`] that fires them.
//!
//! One aggregate, [`Timer`], on the streams `timers/{id}`. A stream is a
//! timer or a countdown, decided by its first event (`schedule` or
//! `create_countdown`); the other kind's commands are refused there
//! (Forbidden). A countdown's expiry is its timer occurrence 1, due at its
//! deadline: the scheduler fires it like any other occurrence, and the
//! aggregate answers `countdown_expired` instead of `timer_fired`.
//!
//! Rules:
//! - `schedule` names exactly one of `at` (RFC 3339) and `after_secs` (from
//!   the decision's time), and optionally `every_secs` (1 to [`MAX_SECS`]);
//!   otherwise Invalid. A due time in the past is allowed: it fires at once
//!   (late if more than [`LATE_AFTER`] past). A timer delivers commands
//!   anywhere, but appends no events to `timers` streams (Invalid).
//! - A timer id is used once: scheduling an existing timer — active, fired
//!   or cancelled — is Forbidden, except a repeat of the same request, which
//!   changes nothing (for `after_secs` the repeat is recognised by all its
//!   other fields, as its due time moves with the clock). Occurrence
//!   numbers and dedupe keys are per id, which is why ids are not reused.
//! - `fire {occurrence, due_at}` (the scheduler's command) fires only the
//!   next occurrence of an active timer, at its due time: it answers
//!   `timer_fired` with `fired_at` = the decision's time and `late` when
//!   that is more than [`LATE_AFTER`] after `due_at`. Any other occurrence
//!   or due time, or a finished or cancelled timer, changes nothing — so
//!   two processes firing the same occurrence write one event (the second
//!   re-decides after the conflict and finds it fired). Firing before the
//!   due time is Forbidden (the scheduler tries again).
//! - A recurring timer stays active; each firing names `next_due_at`, the
//!   first instant of its rhythm (`due_at` + k × `every_secs`) after the
//!   firing. Occurrences missed while Herald was down are not replayed: one
//!   late firing stands for them, then the rhythm resumes. A one-shot
//!   timer is finished (`fired`) after its occurrence 1.
//! - `cancel` stops an active timer (`timer_cancelled`); cancelling a
//!   cancelled timer again changes nothing; a fired one-shot timer is
//!   Forbidden (nothing to cancel), as is a countdown (it runs to its
//!   deadline). An unknown id is NotFound.
//! - `create_countdown {deadline, label}` creates a countdown once (a
//!   repeat changes nothing; another deadline or label is Forbidden).
//! - `record_view {}` counts a view (`countdown_viewed`, views one more
//!   than before) until the deadline: at or after it — expired or not yet
//!   marked — Forbidden, so `countdown_expired.views` counts exactly the
//!   views before the deadline.
//!
//! Delivery is the scheduler's, not the aggregate's: see [`scheduler`].

pub mod commands;
pub mod decide;
pub mod events;
pub mod scheduler;
pub mod state;

use chrono::TimeDelta;

pub use commands::TimerCommand;
pub use events::TimerEvent;
pub use scheduler::{CatchUp, SchedulerConfig, SchedulerHandle, TimerScheduler};
pub use state::{Timer, TimerKind, TimerStatus};

/// A firing more than this long after its due time is marked late.
pub const LATE_AFTER: TimeDelta = TimeDelta::seconds(2);

/// The longest delay (`after_secs`) and interval (`every_secs`): about a
/// century, so due times never overflow.
pub const MAX_SECS: u64 = 100 * 366 * 24 * 3600;
