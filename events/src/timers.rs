//! Events of the `timers` domain (durable timers and email countdowns),
//! version 1. Their schemas are `schemas/timers/*.v1.json`.
//!
//! A timer is scheduled for an instant, optionally recurring every so many
//! seconds, and carries what to deliver when it fires: a command to an
//! aggregate, or an event to append to a stream. Each firing is recorded
//! with its occurrence number and whether it was late.
//!
//! A countdown (as embedded in an email) counts down to a deadline; each
//! view of it is recorded, and so is its expiry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::typed::typed_events;

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "timers";

/// What a timer delivers when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// A command, sent to the aggregate `domain/stream_id`.
    Command,
    /// An event, appended to the stream `domain/stream_id`.
    Event,
}

/// The command or event a timer delivers when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub kind: DeliveryKind,
    /// The target's domain, e.g. `tickets`.
    pub domain: String,
    /// The target aggregate's id within its domain (the part after
    /// `domain/`); for an event, the stream to append to.
    pub stream_id: String,
    /// The command's name, or the event's type name within the domain.
    pub name: String,
    /// The command's body, or the event's payload. It is checked against
    /// its own schema when it is delivered, not when the timer is scheduled.
    pub body: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerScheduled {
    /// When the timer first fires.
    pub due_at: DateTime<Utc>,
    /// For a recurring timer: seconds between firings, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    pub deliver: Delivery,
    /// Correlation id given to what the timer delivers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerFired {
    /// Which firing this is, from 1.
    pub occurrence: u64,
    /// When this firing was due.
    pub due_at: DateTime<Utc>,
    /// When it actually fired.
    pub fired_at: DateTime<Utc>,
    /// Whether it fired late (e.g. Herald was down at `due_at`).
    pub late: bool,
    /// For a recurring timer: when it fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerCancelled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownCreated {
    pub deadline: DateTime<Utc>,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownViewed {
    /// The number of views including this one, from 1.
    pub views: u64,
    pub viewed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownExpired {
    pub deadline: DateTime<Utc>,
    /// The number of views before the deadline passed.
    pub views: u64,
}

typed_events! {
    TimerScheduled => "timer_scheduled",
    TimerFired => "timer_fired",
    TimerCancelled => "timer_cancelled",
    CountdownCreated => "countdown_created",
    CountdownViewed => "countdown_viewed",
    CountdownExpired => "countdown_expired",
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::typed::testing::{
        assert_refused, assert_schema_refuses, assert_valid_and_round_trips, check,
        domain_schema_names, opt_text, registry, text, time,
    };
    use crate::typed::TypedEvent;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn delivery(kind: DeliveryKind) -> Delivery {
        let body = json!({"note": "no answer from the customer", "author": "timer"});
        Delivery {
            kind,
            domain: "tickets".into(),
            stream_id: "T-1001".into(),
            name: "note_appended".into(),
            body: body.as_object().unwrap().clone(),
        }
    }

    fn scheduled_payload() -> Value {
        json!({
            "due_at": "2025-03-01T09:00:00Z",
            "deliver": {"kind": "command", "domain": "tickets", "stream_id": "T-1", "name": "close", "body": {}},
        })
    }

    #[test]
    fn every_event_type_has_exactly_its_schema() {
        let mut declared: Vec<&str> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
        declared.sort_unstable();
        assert_eq!(domain_schema_names(DOMAIN), declared);
        assert!(EVENT_TYPES.iter().all(|(_, v)| *v == 1));
    }

    #[test]
    fn examples_validate_and_round_trip() {
        let r = registry();
        assert_valid_and_round_trips(
            &r,
            &TimerScheduled {
                due_at: at("2025-03-01T09:00:00Z"),
                every_secs: Some(3600),
                deliver: delivery(DeliveryKind::Event),
                correlation_id: Some(Uuid::now_v7()),
                label: Some("hourly nudge".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &TimerScheduled {
                due_at: at("2025-03-01T09:00:00.123456789Z"),
                every_secs: None,
                deliver: Delivery {
                    body: Map::new(),
                    ..delivery(DeliveryKind::Command)
                },
                correlation_id: None,
                label: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &TimerFired {
                occurrence: 1,
                due_at: at("2025-03-01T09:00:00Z"),
                fired_at: at("2025-03-01T09:00:00.004Z"),
                late: false,
                next_due_at: Some(at("2025-03-01T10:00:00Z")),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &TimerFired {
                occurrence: 7,
                due_at: at("2025-03-01T09:00:00Z"),
                fired_at: at("2025-03-01T11:12:13Z"),
                late: true,
                next_due_at: None,
            },
        );
        assert_valid_and_round_trips(&r, &TimerCancelled { reason: None });
        assert_valid_and_round_trips(
            &r,
            &TimerCancelled {
                reason: Some("ticket closed".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &CountdownCreated {
                deadline: at("2025-12-24T18:00:00Z"),
                label: "Offer ends".into(),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &CountdownViewed {
                views: 1,
                viewed_at: at("2025-12-01T08:00:00Z"),
            },
        );
        for views in [0, 42] {
            assert_valid_and_round_trips(
                &r,
                &CountdownExpired {
                    deadline: at("2025-12-24T18:00:00Z"),
                    views,
                },
            );
        }
    }

    #[test]
    fn the_wire_format_is_as_documented() {
        let id = Uuid::from_u128(0x0193_5a1e_0000_7000_8000_0000_0000_0001);
        let e = TimerScheduled {
            due_at: at("2025-03-01T09:00:00Z"),
            every_secs: Some(60),
            deliver: delivery(DeliveryKind::Command),
            correlation_id: Some(id),
            label: None,
        };
        assert_eq!(
            e.to_payload(),
            json!({
                "due_at": "2025-03-01T09:00:00Z",
                "every_secs": 60,
                "deliver": {
                    "kind": "command",
                    "domain": "tickets",
                    "stream_id": "T-1001",
                    "name": "note_appended",
                    "body": {"note": "no answer from the customer", "author": "timer"},
                },
                "correlation_id": "01935a1e-0000-7000-8000-000000000001",
            })
        );
    }

    #[test]
    fn payloads_outside_the_schemas_are_refused() {
        let r = registry();
        let with = |pointer: &str, value: Value| {
            let mut p = scheduled_payload();
            *p.pointer_mut(pointer).unwrap() = value;
            p
        };
        assert!(TimerScheduled::from_payload(scheduled_payload()).is_ok());
        r.validate(
            &TimerScheduled::event_type(),
            TimerScheduled::schema_version(),
            &scheduled_payload(),
        )
        .unwrap();
        // Both the schema and serde refuse these.
        let mut unknown = scheduled_payload();
        unknown["deliver"]["priority"] = json!(1);
        let mut correlation = scheduled_payload();
        correlation["correlation_id"] = json!("not-a-uuid");
        let mut negative = scheduled_payload();
        negative["every_secs"] = json!(-5);
        for bad in [
            with("/deliver/kind", json!("webhook")),
            with("/deliver/body", json!([1, 2])),
            with("/deliver/body", json!("text")),
            with("/due_at", json!("2025-03-01 09:00")),
            with("/due_at", json!(1_740_819_600)),
            unknown,
            correlation,
            negative,
            json!({"due_at": "2025-03-01T09:00:00Z"}),
        ] {
            assert_refused::<TimerScheduled>(&r, bad);
        }
        // The schema alone refuses these (serde has no ranges or lengths).
        let mut zero = scheduled_payload();
        zero["every_secs"] = json!(0);
        let mut empty_label = scheduled_payload();
        empty_label["label"] = json!("");
        for bad in [
            zero,
            empty_label,
            with("/deliver/domain", json!("Tickets")),
            with("/deliver/domain", json!("")),
            with("/deliver/stream_id", json!("T 1")),
            with("/deliver/stream_id", json!("a/b")),
            with("/deliver/stream_id", json!("x".repeat(129))),
            with("/deliver/name", json!("")),
        ] {
            assert_schema_refuses::<TimerScheduled>(&r, &bad);
        }

        let fired = json!({"occurrence": 1, "due_at": "2025-03-01T09:00:00Z",
                           "fired_at": "2025-03-01T09:00:01Z", "late": false});
        assert!(TimerFired::from_payload(fired.clone()).is_ok());
        let mut zero = fired.clone();
        zero["occurrence"] = json!(0);
        assert_schema_refuses::<TimerFired>(&r, &zero);
        let mut late = fired.clone();
        late["late"] = json!("no");
        assert_refused::<TimerFired>(&r, late);
        let mut fraction = fired;
        fraction["occurrence"] = json!(1.5);
        assert_refused::<TimerFired>(&r, fraction);

        assert_refused::<TimerCancelled>(&r, json!({"reason": "x", "by": "me"}));
        assert_refused::<CountdownCreated>(&r, json!({"deadline": "2025-12-24T18:00:00Z"}));
        assert_schema_refuses::<CountdownCreated>(
            &r,
            &json!({"deadline": "2025-12-24T18:00:00Z", "label": ""}),
        );
        assert_schema_refuses::<CountdownViewed>(
            &r,
            &json!({"views": 0, "viewed_at": "2025-12-24T18:00:00Z"}),
        );
        assert_refused::<CountdownViewed>(
            &r,
            json!({"views": -1, "viewed_at": "2025-12-24T18:00:00Z"}),
        );
        assert_refused::<CountdownExpired>(&r, json!({"deadline": "2025-12-24T18:00:00Z"}));
    }

    fn snake(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-z][a-z0-9_]{{0,{}}}", max - 1))
            .expect("a valid regex")
    }

    fn body() -> impl Strategy<Value = Map<String, Value>> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        prop::collection::btree_map("[a-z_]{1,12}", leaf, 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    fn any_delivery() -> impl Strategy<Value = Delivery> {
        (
            prop_oneof![Just(DeliveryKind::Command), Just(DeliveryKind::Event)],
            snake(32),
            "[A-Za-z0-9._:@~-]{1,128}",
            snake(96),
            body(),
        )
            .prop_map(|(kind, domain, stream_id, name, body)| Delivery {
                kind,
                domain,
                stream_id,
                name,
                body,
            })
    }

    proptest! {
        /// What the typed Rust events write is what their schemas accept,
        /// and it reads back as the same value.
        #[test]
        fn typed_timer_events_match_their_schemas(
            (t1, t2) in (time(), time()),
            next in proptest::option::of(time()),
            every in proptest::option::of(1u64..=u64::MAX),
            deliver in any_delivery(),
            correlation in proptest::option::of(any::<u128>().prop_map(Uuid::from_u128)),
            (label, opt_label) in (text(), opt_text()),
            (n, views, late) in (1u64..=u64::MAX, 0u64..=u64::MAX, any::<bool>()),
        ) {
            let r = registry();
            check(&r, &TimerScheduled {
                due_at: t1,
                every_secs: every,
                deliver,
                correlation_id: correlation,
                label: opt_label.clone(),
            })?;
            check(&r, &TimerFired { occurrence: n, due_at: t1, fired_at: t2, late, next_due_at: next })?;
            check(&r, &TimerCancelled { reason: opt_label })?;
            check(&r, &CountdownCreated { deadline: t1, label })?;
            check(&r, &CountdownViewed { views: n, viewed_at: t2 })?;
            check(&r, &CountdownExpired { deadline: t1, views })?;
        }
    }
}
