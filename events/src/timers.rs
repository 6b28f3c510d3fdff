//! Events of the `timers` domain (durable timers and email countdowns).
//! Their schemas are `schemas/timers/*.v{N}.json`; `countdown_created` and
//! `countdown_viewed` are at version 2, read from version 1 through the
//! upcasters in [`upcasts`].
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

/// A unit of time a countdown image can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountdownUnit {
    Days,
    Hours,
    Minutes,
    Seconds,
}

/// A font embedded in Herald (DejaVu, Bitstream Vera licence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountdownFont {
    /// DejaVu Sans.
    Sans,
    /// DejaVu Sans Bold.
    SansBold,
    /// DejaVu Sans Mono Bold.
    MonoBold,
}

/// The words under each unit's number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownLabels {
    pub days: String,
    pub hours: String,
    pub minutes: String,
    pub seconds: String,
}

/// How a countdown's image looks: fixed in its events, so an image renders
/// the same whatever the defaults of a later Herald are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownStyle {
    /// Pixels, 60 to 1200.
    pub width: u32,
    /// Pixels, 20 to 400.
    pub height: u32,
    /// `#rrggbb`, lower case.
    pub background: String,
    /// The numbers and separators, `#rrggbb`.
    pub foreground: String,
    /// The labels under the numbers, `#rrggbb`.
    pub label_colour: String,
    pub font: CountdownFont,
    /// The units shown, largest first, at least one; the largest shown
    /// absorbs the larger hidden ones (no days: hours go past 23).
    pub units: Vec<CountdownUnit>,
    /// The words under the numbers; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<CountdownLabels>,
    /// Shown once the deadline has passed; may be empty.
    pub expired_text: String,
}

impl CountdownStyle {
    /// The style of version 2 of `countdown_created` when none is given,
    /// and the one its upcaster gives countdowns created at version 1. It
    /// never changes: later defaults belong to later versions.
    pub fn v2_default() -> Self {
        Self {
            width: 480,
            height: 120,
            background: "#ffffff".into(),
            foreground: "#1f2933".into(),
            label_colour: "#616e7c".into(),
            font: CountdownFont::SansBold,
            units: vec![
                CountdownUnit::Days,
                CountdownUnit::Hours,
                CountdownUnit::Minutes,
                CountdownUnit::Seconds,
            ],
            labels: Some(CountdownLabels {
                days: "days".into(),
                hours: "hours".into(),
                minutes: "minutes".into(),
                seconds: "seconds".into(),
            }),
            expired_text: "Expired".into(),
        }
    }
}

/// Version 2: the image's style joined the deadline and label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownCreated {
    pub deadline: DateTime<Utc>,
    pub label: String,
    pub style: CountdownStyle,
}

/// A countdown's image changed style (any time, also after the deadline:
/// the expired image keeps being shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownRestyled {
    pub style: CountdownStyle,
}

/// The kind of mail client or agent that fetched a countdown image, from
/// its `User-Agent`: the coarse, non-personal data the statistics keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewerClient {
    /// Gmail's image proxy (fetches on the reader's behalf).
    GmailProxy,
    /// Apple Mail (including its privacy proxy's fetches).
    AppleMail,
    Outlook,
    /// Yahoo Mail's image proxy.
    YahooProxy,
    Thunderbird,
    /// A web browser opening the image directly.
    Browser,
    /// Anything else that sent a `User-Agent`.
    Other,
    /// No `User-Agent`, or a view recorded before version 2.
    Unknown,
}

/// Version 2: the kind of client joined the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownViewed {
    /// The number of views including this one, from 1.
    pub views: u64,
    pub viewed_at: DateTime<Utc>,
    pub client: ViewerClient,
}

/// A new image URL was issued for a countdown; it replaces (revokes) any
/// earlier one. Only the SHA-256 of the URL's secret is stored, so the log
/// (exports, subscriptions) never holds a working URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownImageUrlIssued {
    /// Lower-case hex SHA-256 of the URL's secret.
    pub key_sha256: String,
}

/// A countdown's image URL was revoked: it answers 404 from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownImageUrlRevoked {
    pub key_sha256: String,
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
    CountdownCreated => "countdown_created" @ 2,
    CountdownViewed => "countdown_viewed" @ 2,
    CountdownExpired => "countdown_expired",
    CountdownRestyled => "countdown_restyled",
    CountdownImageUrlIssued => "countdown_image_url_issued",
    CountdownImageUrlRevoked => "countdown_image_url_revoked",
}

/// The domain's released vN → vN+1 changes: (event name, from version, the
/// declarative upcaster). Version 1 of `countdown_created` had no style: it
/// gets [`CountdownStyle::v2_default`]; version 1 of `countdown_viewed` had
/// no client: it gets `unknown`.
pub fn upcasts() -> Vec<(&'static str, u32, crate::UpcasterSpec)> {
    let style =
        serde_json::to_value(CountdownStyle::v2_default()).expect("a style serializes to JSON");
    vec![
        (
            "countdown_created",
            1,
            crate::UpcasterSpec {
                defaults: [("style".to_owned(), style)].into(),
                ..Default::default()
            },
        ),
        (
            "countdown_viewed",
            1,
            crate::UpcasterSpec {
                defaults: [("client".to_owned(), Value::from("unknown"))].into(),
                ..Default::default()
            },
        ),
    ]
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
        let versions: Vec<(&str, u32)> = EVENT_TYPES
            .iter()
            .filter(|(_, v)| *v != 1)
            .copied()
            .collect();
        assert_eq!(
            versions,
            [("countdown_created", 2), ("countdown_viewed", 2)]
        );
        let r = registry();
        for (name, version) in EVENT_TYPES {
            let t = crate::EventType::new(&crate::Domain::new(DOMAIN).unwrap(), name).unwrap();
            for v in 1..=*version {
                assert!(
                    r.contains(&t, crate::SchemaVersion::new(v).unwrap()),
                    "{name} v{v}"
                );
            }
        }
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
                style: CountdownStyle::v2_default(),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &CountdownCreated {
                deadline: at("2025-12-24T18:00:00Z"),
                label: "Offer ends".into(),
                style: CountdownStyle {
                    units: vec![CountdownUnit::Hours, CountdownUnit::Minutes],
                    labels: None,
                    expired_text: String::new(),
                    font: CountdownFont::MonoBold,
                    ..CountdownStyle::v2_default()
                },
            },
        );
        assert_valid_and_round_trips(
            &r,
            &CountdownViewed {
                views: 1,
                viewed_at: at("2025-12-01T08:00:00Z"),
                client: ViewerClient::GmailProxy,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &CountdownRestyled {
                style: CountdownStyle::v2_default(),
            },
        );
        let key = "ab".repeat(32);
        assert_valid_and_round_trips(
            &r,
            &CountdownImageUrlIssued {
                key_sha256: key.clone(),
            },
        );
        assert_valid_and_round_trips(&r, &CountdownImageUrlRevoked { key_sha256: key });
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
        let style = serde_json::to_value(CountdownStyle::v2_default()).unwrap();
        assert_refused::<CountdownCreated>(&r, json!({"deadline": "2025-12-24T18:00:00Z"}));
        assert_refused::<CountdownCreated>(
            &r,
            json!({"deadline": "2025-12-24T18:00:00Z", "label": "x"}),
        );
        assert_schema_refuses::<CountdownCreated>(
            &r,
            &json!({"deadline": "2025-12-24T18:00:00Z", "label": "", "style": style}),
        );
        for (field, bad) in [
            ("width", json!(59)),
            ("height", json!(401)),
            ("background", json!("#FFF")),
            ("foreground", json!("red")),
            ("units", json!([])),
            ("units", json!(["days", "days"])),
            ("expired_text", json!("x".repeat(65))),
        ] {
            let mut style = style.clone();
            style[field] = bad;
            assert_schema_refuses::<CountdownRestyled>(&r, &json!({ "style": style }));
        }
        let mut font = style;
        font["font"] = json!("comic_sans");
        assert_refused::<CountdownRestyled>(&r, json!({ "style": font }));
        assert_schema_refuses::<CountdownViewed>(
            &r,
            &json!({"views": 0, "viewed_at": "2025-12-24T18:00:00Z", "client": "other"}),
        );
        assert_refused::<CountdownViewed>(
            &r,
            json!({"views": -1, "viewed_at": "2025-12-24T18:00:00Z", "client": "other"}),
        );
        assert_refused::<CountdownViewed>(
            &r,
            json!({"views": 1, "viewed_at": "2025-12-24T18:00:00Z", "client": "curl/8.1"}),
        );
        assert_schema_refuses::<CountdownImageUrlIssued>(&r, &json!({"key_sha256": "AB"}));
        assert_refused::<CountdownExpired>(&r, json!({"deadline": "2025-12-24T18:00:00Z"}));
    }

    /// Events stored at version 1 read as version 2: through the registry
    /// (what subscribers and the API see) and through `from_stored` (what
    /// the aggregate and the read models fold), the same way.
    #[test]
    fn version_1_countdowns_read_as_version_2() {
        let r = registry();
        let created = json!({"deadline": "2025-12-24T18:00:00Z", "label": "Offer ends"});
        let viewed = json!({"views": 3, "viewed_at": "2025-12-01T08:00:00Z"});
        let one = crate::SchemaVersion::new(1).unwrap();
        let (version, upcast) = r
            .upcast_payload(&CountdownCreated::event_type(), one, created.clone())
            .unwrap();
        assert_eq!(version.get(), 2);
        r.validate(&CountdownCreated::event_type(), version, &upcast)
            .unwrap();
        let typed = CountdownCreated::from_stored(1, &created).unwrap();
        assert_eq!(typed.style, CountdownStyle::v2_default());
        assert_eq!(CountdownCreated::from_payload(upcast).unwrap(), typed);
        let typed = CountdownViewed::from_stored(1, &viewed).unwrap();
        assert_eq!(typed.client, ViewerClient::Unknown);
        assert_eq!(typed.views, 3);
        let (_, upcast) = r
            .upcast_payload(&CountdownViewed::event_type(), one, viewed)
            .unwrap();
        assert_eq!(upcast["client"], "unknown");
        // A version the code does not know yet is refused, not guessed.
        assert!(matches!(
            CountdownViewed::from_stored(3, &json!({})),
            Err(crate::StoredPayloadError::UnknownVersion {
                version: 3,
                known: 2
            })
        ));
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
            check(&r, &CountdownCreated { deadline: t1, label, style: CountdownStyle::v2_default() })?;
            check(&r, &CountdownViewed { views: n, viewed_at: t2, client: ViewerClient::Other })?;
            check(&r, &CountdownExpired { deadline: t1, views })?;
        }
    }
}
