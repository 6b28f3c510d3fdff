//! The timer's decisions: which events each command causes in each state.

use chrono::{DateTime, TimeDelta, Utc};
use herald_events::timers::DeliveryKind;

use crate::aggregate::{Aggregate, CommandContext, Refusal};

use super::commands::{TimerCommand, NAMES};
use super::events::{
    CountdownCreated, CountdownExpired, CountdownImageUrlIssued, CountdownImageUrlRevoked,
    CountdownRestyled, CountdownStyle, CountdownViewed, Delivery, TimerCancelled, TimerEvent,
    TimerFired, TimerScheduled, ViewerClient,
};
use super::state::{Timer, TimerKind, TimerStatus};
use super::{LATE_AFTER, MAX_SECS};

impl Aggregate for Timer {
    const DOMAIN: &'static str = herald_events::timers::DOMAIN;
    const STATE_VERSION: u32 = 2;
    const COMMANDS: &'static [&'static str] = NAMES;
    type Command = TimerCommand;
    type Event = TimerEvent;

    fn apply(&mut self, event: &TimerEvent) {
        self.apply_event(event);
    }

    fn decide(
        &self,
        command: TimerCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<TimerEvent>, Refusal> {
        let id = ctx.stream.id();
        match command {
            TimerCommand::Schedule {
                at,
                after_secs,
                every_secs,
                deliver,
                correlation_id,
                label,
            } => {
                let due_at = match (at, after_secs) {
                    (Some(at), None) => at,
                    (None, Some(secs)) => after(ctx.now, secs).ok_or_else(|| {
                        Refusal::invalid(format!("after_secs is at most {MAX_SECS}"))
                    })?,
                    _ => {
                        return Err(Refusal::invalid(
                            "a timer is scheduled with exactly one of at and after_secs",
                        ))
                    }
                };
                if every_secs.is_some_and(|every| every == 0 || every > MAX_SECS) {
                    return Err(Refusal::invalid(format!("every_secs is 1 to {MAX_SECS}")));
                }
                check_delivery(&deliver)?;
                let scheduled = TimerScheduled {
                    due_at,
                    every_secs,
                    deliver,
                    correlation_id,
                    label,
                };
                self.schedule(id, scheduled, after_secs.is_some())
            }
            TimerCommand::Fire { occurrence, due_at } => self.fire(id, occurrence, due_at, ctx.now),
            TimerCommand::Cancel { reason } => self.cancel(id, reason),
            TimerCommand::CreateCountdown {
                deadline,
                label,
                style,
            } => {
                if label.trim().is_empty() {
                    return Err(Refusal::invalid("a countdown has a label"));
                }
                let style = super::style::resolve(
                    &CountdownStyle::v2_default(),
                    style.unwrap_or_default(),
                )?;
                self.create_countdown(
                    id,
                    CountdownCreated {
                        deadline,
                        label,
                        style,
                    },
                )
            }
            TimerCommand::RestyleCountdown { style } => {
                let current = self.countdown_style(id)?;
                let style = super::style::resolve(current, style)?;
                if style == *current {
                    return Ok(Vec::new());
                }
                Ok(vec![CountdownRestyled { style }.into()])
            }
            TimerCommand::RecordView { client, key_sha256 } => self.record_view(
                id,
                ctx.now,
                client.unwrap_or(ViewerClient::Unknown),
                key_sha256.as_deref(),
            ),
            TimerCommand::IssueImageUrl { key_sha256 } => {
                self.countdown_style(id)?;
                if key_sha256.len() != 64
                    || !key_sha256
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                {
                    return Err(Refusal::invalid(
                        "key_sha256 is a SHA-256 in 64 lower-case hex digits",
                    ));
                }
                if self.image_key_sha256.as_deref() == Some(key_sha256.as_str()) {
                    return Ok(Vec::new());
                }
                Ok(vec![CountdownImageUrlIssued { key_sha256 }.into()])
            }
            TimerCommand::RevokeImageUrl {} => {
                self.countdown_style(id)?;
                Ok(self
                    .image_key_sha256
                    .clone()
                    .map(|key_sha256| CountdownImageUrlRevoked { key_sha256 }.into())
                    .into_iter()
                    .collect())
            }
        }
    }
}

impl Timer {
    fn schedule(
        &self,
        id: &str,
        scheduled: TimerScheduled,
        relative: bool,
    ) -> Result<Vec<TimerEvent>, Refusal> {
        match (self.kind(), &self.schedule) {
            (None, _) => Ok(vec![scheduled.into()]),
            (Some(TimerKind::Timer), Some(existing)) => {
                // A repeat of the same request changes nothing. A relative
                // due time moves with the clock, so a repeat of an
                // `after_secs` schedule is recognised by everything else.
                let same = existing.every_secs == scheduled.every_secs
                    && existing.deliver == scheduled.deliver
                    && existing.correlation_id == scheduled.correlation_id
                    && existing.label == scheduled.label
                    && (relative || existing.due_at == scheduled.due_at);
                if same {
                    Ok(Vec::new())
                } else {
                    Err(Refusal::forbidden(format!(
                        "timer {id} exists ({}); a timer id is used once, schedule another id",
                        status_name(self.status)
                    )))
                }
            }
            _ => Err(Refusal::forbidden(format!(
                "timers/{id} is a countdown, not a timer"
            ))),
        }
    }

    fn fire(
        &self,
        id: &str,
        occurrence: u64,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TimerEvent>, Refusal> {
        let Some(kind) = self.kind() else {
            return Err(Refusal::not_found(format!(
                "timer {id} has not been scheduled"
            )));
        };
        // Only the next occurrence of an active timer fires; anything else
        // (fired already, by this process or another, or cancelled) is a
        // repeat and changes nothing.
        let Some((next, due)) = self.pending() else {
            return Ok(Vec::new());
        };
        if occurrence != next || due_at != due {
            return Ok(Vec::new());
        }
        if now < due {
            return Err(Refusal::forbidden(format!(
                "occurrence {occurrence} of timer {id} is not due until {due}"
            )));
        }
        let event = match kind {
            TimerKind::Countdown => CountdownExpired {
                deadline: due,
                views: self.views,
            }
            .into(),
            TimerKind::Timer => TimerFired {
                occurrence,
                due_at: due,
                fired_at: now,
                late: now - due > LATE_AFTER,
                next_due_at: self
                    .schedule
                    .as_ref()
                    .and_then(|s| s.every_secs)
                    .and_then(|every| next_due(due, every, now)),
            }
            .into(),
        };
        Ok(vec![event])
    }

    fn cancel(&self, id: &str, reason: Option<String>) -> Result<Vec<TimerEvent>, Refusal> {
        match (self.kind(), self.status) {
            (None, _) => Err(Refusal::not_found(format!(
                "timer {id} has not been scheduled"
            ))),
            (Some(TimerKind::Countdown), _) => Err(Refusal::forbidden(format!(
                "timers/{id} is a countdown; it runs to its deadline"
            ))),
            (Some(TimerKind::Timer), Some(TimerStatus::Active)) => {
                Ok(vec![TimerCancelled { reason }.into()])
            }
            (Some(TimerKind::Timer), Some(TimerStatus::Cancelled)) => Ok(Vec::new()),
            (Some(TimerKind::Timer), status) => Err(Refusal::forbidden(format!(
                "timer {id} is {}: nothing to cancel",
                status_name(status)
            ))),
        }
    }

    fn create_countdown(
        &self,
        id: &str,
        created: CountdownCreated,
    ) -> Result<Vec<TimerEvent>, Refusal> {
        match (self.kind(), &self.countdown) {
            (None, _) => Ok(vec![created.into()]),
            (Some(TimerKind::Countdown), Some(existing)) if *existing == created => Ok(Vec::new()),
            (Some(TimerKind::Countdown), Some(existing)) => Err(Refusal::forbidden(format!(
                "countdown {id} exists (to {}); a countdown id is used once",
                existing.deadline
            ))),
            _ => Err(Refusal::forbidden(format!(
                "timers/{id} is a timer, not a countdown"
            ))),
        }
    }

    /// The countdown's style: NotFound before it exists, Forbidden on a
    /// timer.
    fn countdown_style(&self, id: &str) -> Result<&CountdownStyle, Refusal> {
        match (self.kind(), self.current_style()) {
            (None, _) => Err(Refusal::not_found(format!(
                "countdown {id} has not been created"
            ))),
            (Some(TimerKind::Countdown), Some(style)) => Ok(style),
            _ => Err(Refusal::forbidden(format!(
                "timers/{id} is a timer, not a countdown"
            ))),
        }
    }

    fn record_view(
        &self,
        id: &str,
        now: DateTime<Utc>,
        client: ViewerClient,
        key_sha256: Option<&str>,
    ) -> Result<Vec<TimerEvent>, Refusal> {
        let Some(kind) = self.kind() else {
            return Err(Refusal::not_found(format!(
                "countdown {id} has not been created"
            )));
        };
        let Some(countdown) = self
            .countdown
            .as_ref()
            .filter(|_| kind == TimerKind::Countdown)
        else {
            return Err(Refusal::forbidden(format!(
                "timers/{id} is a timer, not a countdown"
            )));
        };
        // A revoked image URL counts nothing, and says no more than an
        // unknown countdown would.
        if key_sha256.is_some_and(|key| self.image_key_sha256.as_deref() != Some(key)) {
            return Err(Refusal::not_found(format!(
                "countdown {id} has no such image URL"
            )));
        }
        if self.status == Some(TimerStatus::Expired) || now >= countdown.deadline {
            return Err(Refusal::forbidden(format!(
                "countdown {id} expired at {}",
                countdown.deadline
            )));
        }
        Ok(vec![CountdownViewed {
            views: self.views + 1,
            viewed_at: now,
            client,
        }
        .into()])
    }
}

/// `now + secs`, for `secs` up to [`MAX_SECS`].
fn after(now: DateTime<Utc>, secs: u64) -> Option<DateTime<Utc>> {
    if secs > MAX_SECS {
        return None;
    }
    now.checked_add_signed(TimeDelta::try_seconds(i64::try_from(secs).ok()?)?)
}

/// The first due time of a recurring timer after `now`: one interval after
/// `due`, or more when firings were missed (they are not replayed).
pub(super) fn next_due(
    due: DateTime<Utc>,
    every_secs: u64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let every_ms = i64::try_from(every_secs).ok()?.checked_mul(1000)?;
    let behind_ms = (now - due).num_milliseconds().max(0);
    let steps = behind_ms / every_ms + 1;
    due.checked_add_signed(TimeDelta::try_milliseconds(steps.checked_mul(every_ms)?)?)
}

/// What a delivery may target; the rest is checked when it is delivered.
fn check_delivery(deliver: &Delivery) -> Result<(), Refusal> {
    if deliver.kind == DeliveryKind::Event && deliver.domain == herald_events::timers::DOMAIN {
        return Err(Refusal::invalid(
            "a timer appends no events to timers streams (their aggregate writes them); deliver a command instead",
        ));
    }
    Ok(())
}

fn status_name(status: Option<TimerStatus>) -> &'static str {
    match status {
        None => "not scheduled",
        Some(TimerStatus::Active) => "active",
        Some(TimerStatus::Fired) => "fired",
        Some(TimerStatus::Cancelled) => "cancelled",
        Some(TimerStatus::Expired) => "expired",
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use herald_events::timers::{CountdownUnit, DeliveryKind};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::RefusalKind;
    use crate::testing::given;
    use crate::timers::commands::StyleSettings;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    const DUE: &str = "2025-03-01T09:00:00Z";

    fn deliver() -> Delivery {
        Delivery {
            kind: DeliveryKind::Command,
            domain: "tickets".into(),
            stream_id: "T-1".into(),
            name: "append_note".into(),
            body: json!({"note": "no answer"}).as_object().unwrap().clone(),
        }
    }

    fn schedule_at(at: DateTime<Utc>, every_secs: Option<u64>) -> TimerCommand {
        TimerCommand::Schedule {
            at: Some(at),
            after_secs: None,
            every_secs,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        }
    }

    fn scheduled(due_at: DateTime<Utc>, every_secs: Option<u64>) -> TimerEvent {
        TimerScheduled {
            due_at,
            every_secs,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        }
        .into()
    }

    fn fire(occurrence: u64, due_at: DateTime<Utc>) -> TimerCommand {
        TimerCommand::Fire { occurrence, due_at }
    }

    fn fired(
        occurrence: u64,
        due_at: DateTime<Utc>,
        fired_at: DateTime<Utc>,
        next_due_at: Option<DateTime<Utc>>,
    ) -> TimerEvent {
        TimerFired {
            occurrence,
            due_at,
            fired_at,
            late: fired_at - due_at > LATE_AFTER,
            next_due_at,
        }
        .into()
    }

    fn cancel() -> TimerCommand {
        TimerCommand::Cancel {
            reason: Some("answered".into()),
        }
    }

    fn cancelled() -> TimerEvent {
        TimerCancelled {
            reason: Some("answered".into()),
        }
        .into()
    }

    fn countdown(deadline: DateTime<Utc>) -> TimerCommand {
        TimerCommand::CreateCountdown {
            deadline,
            label: "Offer ends".into(),
            style: None,
        }
    }

    fn countdown_created(deadline: DateTime<Utc>) -> TimerEvent {
        CountdownCreated {
            deadline,
            label: "Offer ends".into(),
            style: CountdownStyle::v2_default(),
        }
        .into()
    }

    fn view() -> TimerCommand {
        TimerCommand::RecordView {
            client: None,
            key_sha256: None,
        }
    }

    fn viewed(views: u64, at: DateTime<Utc>) -> TimerEvent {
        CountdownViewed {
            views,
            viewed_at: at,
            client: ViewerClient::Unknown,
        }
        .into()
    }

    fn settings(body: serde_json::Value) -> StyleSettings {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_countdown_is_created_in_a_style_and_restyled() {
        let deadline = t("2025-12-24T18:00:00Z");
        let create = |style: serde_json::Value| TimerCommand::CreateCountdown {
            deadline,
            label: "Offer ends".into(),
            style: Some(settings(style)),
        };
        let styled = CountdownStyle {
            width: 600,
            background: "#0a0b0c".into(),
            units: vec![CountdownUnit::Hours, CountdownUnit::Minutes],
            labels: None,
            ..CountdownStyle::v2_default()
        };
        let created: TimerEvent = CountdownCreated {
            deadline,
            label: "Offer ends".into(),
            style: styled.clone(),
        }
        .into();
        let body = json!({"width": 600, "background": "#0A0B0C",
                          "units": ["minutes", "hours"], "labels": null});
        given::<Timer>([])
            .when(create(body.clone()))
            .then([created.clone()]);
        // A repeat changes nothing; another style is another countdown.
        given::<Timer>([created.clone()])
            .when(create(body))
            .then_nothing();
        given::<Timer>([created.clone()])
            .when(create(json!({"width": 601})))
            .then_refused(RefusalKind::Forbidden);
        for bad in [
            json!({"width": 59}),
            json!({"height": 401}),
            json!({"background": "red"}),
            json!({"foreground": "#12345"}),
            json!({"units": []}),
            json!({"units": ["days", "days"]}),
            json!({"expired_text": "x".repeat(65)}),
            json!({"labels": {"days": "d".repeat(33), "hours": "h", "minutes": "m", "seconds": "s"}}),
        ] {
            given::<Timer>([])
                .when(create(bad.clone()))
                .then_refused(RefusalKind::Invalid);
        }
        assert!(serde_json::from_value::<StyleSettings>(json!({"font": "comic"})).is_err());
        assert!(serde_json::from_value::<StyleSettings>(json!({"size": 3})).is_err());

        let restyled = CountdownStyle {
            expired_text: "Offer over".into(),
            ..styled
        };
        let state = given::<Timer>([created.clone()])
            .when(TimerCommand::RestyleCountdown {
                style: settings(json!({"expired_text": "Offer over"})),
            })
            .then([CountdownRestyled {
                style: restyled.clone(),
            }
            .into()]);
        assert_eq!(state.current_style(), Some(&restyled));
        assert_eq!(state.style_revision, 1);
        // After the deadline too: the expired image is still shown.
        given::<Timer>([
            created.clone(),
            CountdownExpired { deadline, views: 0 }.into(),
        ])
        .when(TimerCommand::RestyleCountdown {
            style: settings(json!({"expired_text": "Offer over"})),
        })
        .then([CountdownRestyled { style: restyled }.into()]);
        given::<Timer>([created])
            .when(TimerCommand::RestyleCountdown {
                style: settings(json!({"width": 600})),
            })
            .then_nothing();
        given::<Timer>([])
            .when(TimerCommand::RestyleCountdown {
                style: StyleSettings::default(),
            })
            .then_refused(RefusalKind::NotFound);
        given::<Timer>([scheduled(deadline, None)])
            .when(TimerCommand::RestyleCountdown {
                style: StyleSettings::default(),
            })
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn an_image_url_key_counts_views_until_it_is_revoked_or_replaced() {
        let deadline = t("2025-12-24T18:00:00Z");
        let at = deadline - secs(60);
        let (k1, k2) = ("1".repeat(64), "2".repeat(64));
        let issued = |key: &str| -> TimerEvent {
            CountdownImageUrlIssued {
                key_sha256: key.to_owned(),
            }
            .into()
        };
        let keyed = |key: &str| TimerCommand::RecordView {
            client: Some(ViewerClient::GmailProxy),
            key_sha256: Some(key.to_owned()),
        };
        given::<Timer>([countdown_created(deadline)])
            .when(TimerCommand::IssueImageUrl {
                key_sha256: k1.clone(),
            })
            .then([issued(&k1)]);
        given::<Timer>([countdown_created(deadline), issued(&k1)])
            .when(TimerCommand::IssueImageUrl {
                key_sha256: k1.clone(),
            })
            .then_nothing();
        given::<Timer>([countdown_created(deadline)])
            .when(TimerCommand::IssueImageUrl {
                key_sha256: "A".repeat(64),
            })
            .then_refused(RefusalKind::Invalid);
        given::<Timer>([])
            .when(TimerCommand::IssueImageUrl {
                key_sha256: k1.clone(),
            })
            .then_refused(RefusalKind::NotFound);
        given::<Timer>([countdown_created(deadline), issued(&k1)])
            .at(at)
            .when(keyed(&k1))
            .then([CountdownViewed {
                views: 1,
                viewed_at: at,
                client: ViewerClient::GmailProxy,
            }
            .into()]);
        // The replaced key and no key at all count nothing.
        given::<Timer>([countdown_created(deadline), issued(&k1), issued(&k2)])
            .at(at)
            .when(keyed(&k1))
            .then_refused(RefusalKind::NotFound);
        given::<Timer>([countdown_created(deadline)])
            .at(at)
            .when(keyed(&k1))
            .then_refused(RefusalKind::NotFound);
        let revoked: TimerEvent = CountdownImageUrlRevoked {
            key_sha256: k1.clone(),
        }
        .into();
        given::<Timer>([countdown_created(deadline), issued(&k1)])
            .when(TimerCommand::RevokeImageUrl {})
            .then([revoked.clone()]);
        given::<Timer>([countdown_created(deadline), issued(&k1), revoked.clone()])
            .when(TimerCommand::RevokeImageUrl {})
            .then_nothing();
        given::<Timer>([countdown_created(deadline), issued(&k1), revoked])
            .at(at)
            .when(keyed(&k1))
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn a_timer_is_scheduled_at_an_instant_or_after_a_delay() {
        let due = t(DUE);
        let state = given::<Timer>([])
            .when(schedule_at(due, None))
            .then([scheduled(due, None)]);
        assert_eq!(state.status, Some(TimerStatus::Active));
        assert_eq!(state.pending(), Some((1, due)));

        let now = t("2025-03-01T08:00:00Z");
        let correlation = Uuid::now_v7();
        given::<Timer>([])
            .at(now)
            .when(TimerCommand::Schedule {
                at: None,
                after_secs: Some(90),
                every_secs: Some(60),
                deliver: deliver(),
                correlation_id: Some(correlation),
                label: Some("nudge".into()),
            })
            .then([TimerScheduled {
                due_at: now + secs(90),
                every_secs: Some(60),
                deliver: deliver(),
                correlation_id: Some(correlation),
                label: Some("nudge".into()),
            }
            .into()]);
    }

    #[test]
    fn a_schedule_names_exactly_one_due_time_and_a_sane_interval() {
        let both = TimerCommand::Schedule {
            at: Some(t(DUE)),
            after_secs: Some(5),
            every_secs: None,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        };
        given::<Timer>([])
            .when(both)
            .then_refused(RefusalKind::Invalid);
        let neither = TimerCommand::Schedule {
            at: None,
            after_secs: None,
            every_secs: None,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        };
        given::<Timer>([])
            .when(neither)
            .then_refused(RefusalKind::Invalid);
        given::<Timer>([])
            .when(schedule_at(t(DUE), Some(0)))
            .then_refused(RefusalKind::Invalid);
        given::<Timer>([])
            .when(schedule_at(t(DUE), Some(MAX_SECS + 1)))
            .then_refused(RefusalKind::Invalid);
        let far = TimerCommand::Schedule {
            at: None,
            after_secs: Some(u64::MAX),
            every_secs: None,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        };
        given::<Timer>([])
            .when(far)
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn a_timer_appends_no_events_to_timers_streams() {
        let into_timers = TimerCommand::Schedule {
            at: Some(t(DUE)),
            after_secs: None,
            every_secs: None,
            deliver: Delivery {
                kind: DeliveryKind::Event,
                domain: "timers".into(),
                stream_id: "other".into(),
                name: "timer_cancelled".into(),
                body: Default::default(),
            },
            correlation_id: None,
            label: None,
        };
        given::<Timer>([])
            .when(into_timers)
            .then_refused(RefusalKind::Invalid);
        // A command to another timer is fine (e.g. cancel it).
        let command = TimerCommand::Schedule {
            at: Some(t(DUE)),
            after_secs: None,
            every_secs: None,
            deliver: Delivery {
                kind: DeliveryKind::Command,
                domain: "timers".into(),
                stream_id: "other".into(),
                name: "cancel".into(),
                body: Default::default(),
            },
            correlation_id: None,
            label: None,
        };
        assert!(given::<Timer>([]).when(command).decided().is_ok());
    }

    #[test]
    fn scheduling_an_existing_timer_is_forbidden_unless_it_repeats_the_request() {
        let due = t(DUE);
        given::<Timer>([scheduled(due, None)])
            .when(schedule_at(due, None))
            .then_nothing();
        let why = given::<Timer>([scheduled(due, None)])
            .when(schedule_at(due + secs(1), None))
            .then_refused(RefusalKind::Forbidden);
        assert!(why.contains("used once"), "{why}");
        // Fired or cancelled, the id stays taken.
        given::<Timer>([scheduled(due, None), cancelled()])
            .when(schedule_at(due + secs(60), None))
            .then_refused(RefusalKind::Forbidden);
        given::<Timer>([scheduled(due, None), fired(1, due, due + secs(1), None)])
            .when(schedule_at(due + secs(60), None))
            .then_refused(RefusalKind::Forbidden);
        // A relative repeat is recognised by everything but its due time.
        let relative = || TimerCommand::Schedule {
            at: None,
            after_secs: Some(30),
            every_secs: None,
            deliver: deliver(),
            correlation_id: None,
            label: None,
        };
        let now = t(DUE);
        given::<Timer>([scheduled(now + secs(30), None)])
            .at(now + secs(2))
            .when(relative())
            .then_nothing();
        // A countdown's id is not a timer's.
        given::<Timer>([countdown_created(due)])
            .when(schedule_at(due, None))
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn only_the_next_due_occurrence_of_an_active_timer_fires() {
        let due = t(DUE);
        // On time.
        let state = given::<Timer>([scheduled(due, None)])
            .at(due + TimeDelta::milliseconds(30))
            .when(fire(1, due))
            .then([fired(1, due, due + TimeDelta::milliseconds(30), None)]);
        assert_eq!(state.status, Some(TimerStatus::Fired));
        assert_eq!(state.pending(), None);
        // The same occurrence again (another process, a repeat): nothing.
        given::<Timer>([scheduled(due, None), fired(1, due, due, None)])
            .at(due + secs(5))
            .when(fire(1, due))
            .then_nothing();
        // Another occurrence or another due time: nothing.
        given::<Timer>([scheduled(due, None)])
            .at(due)
            .when(fire(2, due))
            .then_nothing();
        given::<Timer>([scheduled(due, None)])
            .at(due + secs(1))
            .when(fire(1, due + secs(1)))
            .then_nothing();
        // Cancelled: nothing.
        given::<Timer>([scheduled(due, None), cancelled()])
            .at(due)
            .when(fire(1, due))
            .then_nothing();
        // Not yet due: refused, so the scheduler tries again later.
        let why = given::<Timer>([scheduled(due, None)])
            .at(due - TimeDelta::milliseconds(1))
            .when(fire(1, due))
            .then_refused(RefusalKind::Forbidden);
        assert!(why.contains("not due"), "{why}");
        // Never scheduled.
        given::<Timer>([])
            .when(fire(1, due))
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn a_firing_more_than_two_seconds_after_its_due_time_is_late() {
        let due = t(DUE);
        let at_limit = given::<Timer>([scheduled(due, None)])
            .at(due + LATE_AFTER)
            .when(fire(1, due))
            .then([TimerFired {
                occurrence: 1,
                due_at: due,
                fired_at: due + LATE_AFTER,
                late: false,
                next_due_at: None,
            }
            .into()]);
        assert_eq!(at_limit.late_firings, 0);
        let late_at = due + LATE_AFTER + TimeDelta::milliseconds(1);
        let state = given::<Timer>([scheduled(due, None)])
            .at(late_at)
            .when(fire(1, due))
            .then([TimerFired {
                occurrence: 1,
                due_at: due,
                fired_at: late_at,
                late: true,
                next_due_at: None,
            }
            .into()]);
        assert_eq!(state.late_firings, 1);
    }

    #[test]
    fn a_recurring_timer_fires_occurrence_after_occurrence_until_cancelled() {
        let due = t(DUE);
        let every = Some(60);
        let first = due + TimeDelta::milliseconds(10);
        let state = given::<Timer>([scheduled(due, every)])
            .at(first)
            .when(fire(1, due))
            .then([fired(1, due, first, Some(due + secs(60)))]);
        assert_eq!(state.status, Some(TimerStatus::Active));
        assert_eq!(state.pending(), Some((2, due + secs(60))));
        let history = [
            scheduled(due, every),
            fired(1, due, first, Some(due + secs(60))),
        ];
        given::<Timer>(history.clone())
            .at(due + secs(60))
            .when(fire(2, due + secs(60)))
            .then([fired(
                2,
                due + secs(60),
                due + secs(60),
                Some(due + secs(120)),
            )]);
        // Occurrence 1 again is a repeat.
        given::<Timer>(history.clone())
            .at(due + secs(60))
            .when(fire(1, due))
            .then_nothing();
        // Cancelled: no more occurrences.
        let mut after_cancel = history.to_vec();
        after_cancel.push(cancelled());
        given::<Timer>(after_cancel.clone())
            .at(due + secs(60))
            .when(fire(2, due + secs(60)))
            .then_nothing();
        assert_eq!(given::<Timer>(after_cancel).state().pending(), None);
    }

    #[test]
    fn a_recurring_timer_that_missed_firings_fires_once_late_then_keeps_its_rhythm() {
        let due = t(DUE);
        // Down for 10 minutes and 30 s: the missed occurrences are not
        // replayed; the next is the first one on the schedule after now.
        let now = due + secs(630);
        given::<Timer>([scheduled(due, Some(60))])
            .at(now)
            .when(fire(1, due))
            .then([TimerFired {
                occurrence: 1,
                due_at: due,
                fired_at: now,
                late: true,
                next_due_at: Some(due + secs(660)),
            }
            .into()]);
        assert_eq!(next_due(due, 60, due + secs(60)), Some(due + secs(120)));
        assert_eq!(next_due(due, 60, due), Some(due + secs(60)));
        assert_eq!(
            next_due(due, 1, due + TimeDelta::milliseconds(999)),
            Some(due + secs(1))
        );
    }

    #[test]
    fn an_active_timer_is_cancelled_a_cancelled_one_again_changes_nothing() {
        let due = t(DUE);
        let state = given::<Timer>([scheduled(due, Some(5))])
            .when(cancel())
            .then([cancelled()]);
        assert_eq!(state.status, Some(TimerStatus::Cancelled));
        given::<Timer>([scheduled(due, None), cancelled()])
            .when(cancel())
            .then_nothing();
        let why = given::<Timer>([scheduled(due, None), fired(1, due, due, None)])
            .when(cancel())
            .then_refused(RefusalKind::Forbidden);
        assert!(why.contains("fired"), "{why}");
        given::<Timer>([])
            .when(cancel())
            .then_refused(RefusalKind::NotFound);
        given::<Timer>([countdown_created(due)])
            .when(cancel())
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn a_countdown_is_created_once() {
        let deadline = t("2025-12-24T18:00:00Z");
        let state = given::<Timer>([])
            .when(countdown(deadline))
            .then([countdown_created(deadline)]);
        assert_eq!(state.pending(), Some((1, deadline)));
        given::<Timer>([countdown_created(deadline)])
            .when(countdown(deadline))
            .then_nothing();
        given::<Timer>([countdown_created(deadline)])
            .when(countdown(deadline + secs(1)))
            .then_refused(RefusalKind::Forbidden);
        given::<Timer>([scheduled(deadline, None)])
            .when(countdown(deadline))
            .then_refused(RefusalKind::Forbidden);
        given::<Timer>([])
            .when(TimerCommand::CreateCountdown {
                deadline,
                label: " ".into(),
                style: None,
            })
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn views_are_counted_until_the_deadline() {
        let deadline = t("2025-12-24T18:00:00Z");
        let v1 = deadline - secs(100);
        let v2 = deadline - secs(50);
        given::<Timer>([countdown_created(deadline)])
            .at(v1)
            .when(view())
            .then([viewed(1, v1)]);
        let state = given::<Timer>([countdown_created(deadline), viewed(1, v1)])
            .at(v2)
            .when(view())
            .then([viewed(2, v2)]);
        assert_eq!(state.views, 2);
        // At or past the deadline, even before the expiry is recorded.
        given::<Timer>([countdown_created(deadline), viewed(1, v1)])
            .at(deadline)
            .when(view())
            .then_refused(RefusalKind::Forbidden);
        given::<Timer>([
            countdown_created(deadline),
            CountdownExpired { deadline, views: 0 }.into(),
        ])
        .at(v1)
        .when(view())
        .then_refused(RefusalKind::Forbidden);
        given::<Timer>([])
            .when(view())
            .then_refused(RefusalKind::NotFound);
        given::<Timer>([scheduled(deadline, None)])
            .when(view())
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn a_countdown_expires_through_its_occurrence_with_its_views() {
        let deadline = t("2025-12-24T18:00:00Z");
        let history = [
            countdown_created(deadline),
            viewed(1, deadline - secs(9)),
            viewed(2, deadline - secs(3)),
        ];
        let state = given::<Timer>(history.clone())
            .at(deadline + TimeDelta::milliseconds(5))
            .when(fire(1, deadline))
            .then([CountdownExpired { deadline, views: 2 }.into()]);
        assert_eq!(state.status, Some(TimerStatus::Expired));
        assert_eq!(state.pending(), None);
        given::<Timer>(history.clone())
            .at(deadline - secs(1))
            .when(fire(1, deadline))
            .then_refused(RefusalKind::Forbidden);
        let mut expired = history.to_vec();
        expired.push(CountdownExpired { deadline, views: 2 }.into());
        given::<Timer>(expired)
            .at(deadline + secs(1))
            .when(fire(1, deadline))
            .then_nothing();
    }

    #[test]
    fn command_bodies_read_as_documented() {
        let body = |name: &str, body: serde_json::Value| -> TimerCommand {
            serde_json::from_value(json!({ name: body })).unwrap()
        };
        assert_eq!(
            body(
                "schedule",
                json!({"at": "2025-03-01T10:00:00+01:00", "deliver": {
                    "kind": "command", "domain": "tickets", "stream_id": "T-1",
                    "name": "append_note", "body": {"note": "no answer"}}})
            ),
            schedule_at(t(DUE), None)
        );
        assert_eq!(
            body("fire", json!({"occurrence": 1, "due_at": DUE})),
            fire(1, t(DUE))
        );
        assert_eq!(
            body("cancel", json!({})),
            TimerCommand::Cancel { reason: None }
        );
        assert_eq!(
            body(
                "create_countdown",
                json!({"deadline": DUE, "label": "Offer ends"})
            ),
            countdown(t(DUE))
        );
        assert_eq!(body("record_view", json!({})), view());
        assert_eq!(
            body("record_view", json!({"client": "apple_mail"})),
            TimerCommand::RecordView {
                client: Some(ViewerClient::AppleMail),
                key_sha256: None
            }
        );
        assert!(
            serde_json::from_value::<TimerCommand>(json!({"record_view": {"views": 3}})).is_err()
        );
        assert!(serde_json::from_value::<TimerCommand>(
            json!({"schedule": {"at": "tomorrow", "deliver": {}}})
        )
        .is_err());
    }
}
