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
//! - `create_countdown {deadline, label, style?}` creates a countdown once
//!   (a repeat changes nothing; another deadline, label or style is
//!   Forbidden). Its image's style is the given settings over the defaults
//!   ([`style::resolve`]); a bad one is Invalid.
//! - `restyle_countdown {style}` changes the image's style, also after the
//!   deadline (the expired image is still shown); the same style again
//!   changes nothing.
//! - `issue_image_url {key_sha256}` sets the countdown's image URL key (it
//!   replaces the previous one, which stops working); `revoke_image_url {}`
//!   removes it. Only the key's SHA-256 is in the events.
//! - `record_view {client?, key_sha256?}` counts a view (`countdown_viewed`,
//!   views one more than before, with the kind of client) until the
//!   deadline: at or after it — expired or not yet marked — Forbidden, so
//!   `countdown_expired.views` counts exactly the views before the deadline.
//!   With a `key_sha256` that is not the current image URL key: NotFound.
//!
//! Delivery is the scheduler's, not the aggregate's: see [`scheduler`].

pub mod commands;
pub mod decide;
pub mod events;
pub mod scheduler;
pub mod state;
pub mod style;

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

/// The domain's registration: its aggregate, its events, and the
/// [`scheduler`] it runs beside its group (delivering to every group).
pub fn spec() -> TimersDomain {
    TimersDomain
}

/// The `timers` domain as a process runs it.
#[derive(Debug, Clone, Copy)]
pub struct TimersDomain;

const AGGREGATE: crate::domain::AggregateDomain<Timer> =
    crate::domain::AggregateDomain::new(herald_events::timers::EVENT_TYPES);

#[async_trait::async_trait]
impl crate::domain::DomainSpec for TimersDomain {
    fn name(&self) -> &'static str {
        AGGREGATE.name()
    }

    fn event_types(&self) -> Vec<(herald_events::EventType, herald_events::SchemaVersion)> {
        AGGREGATE.event_types()
    }

    fn commands(&self) -> &'static [&'static str] {
        AGGREGATE.commands()
    }

    fn start(&self, parts: &crate::domain::GroupParts<'_>) -> Option<crate::domain::StartedGroup> {
        let group = crate::domain::AggregateDomain::<Timer>::group(parts);
        let store = std::sync::Arc::clone(parts.store);
        let registry = parts.registry.clone();
        let timers = group.clone();
        Some(crate::domain::StartedGroup {
            group: std::sync::Arc::new(group),
            // Started once every group a timer may deliver to exists (it
            // keeps a copy of them).
            worker: Some(Box::new(move |domains, stop| {
                TimerScheduler::new(store, timers, domains, registry)
                    .spawn(stop)
                    .task
            })),
        })
    }

    async fn state_at(
        &self,
        store: &dyn herald_store::EventStore,
        tenant: &herald_events::TenantId,
        id: &str,
        at: crate::state_at::Moment,
        max_listed: Option<usize>,
    ) -> Result<crate::state_at::StateAt, crate::state_at::StateAtError> {
        AGGREGATE.state_at(store, tenant, id, at, max_listed).await
    }
}
