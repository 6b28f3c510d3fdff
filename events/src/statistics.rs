//! Events of the `statistics` domain (usage reported by external producers,
//! such as the editor), version 1. Their schemas are
//! `schemas/statistics/*.v1.json`.
//!
//! Herald does not decide anything about these events: a producer publishes
//! them (`POST /v1/events`) and the statistics read model counts them. An
//! editor session is the stream `statistics/<session id>`: it starts (who
//! edits, optionally which draft and for which customer) and later ends. The
//! session id is the stream's, so the payloads do not repeat it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::typed::typed_events;

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "statistics";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    /// The user id of the editor.
    pub editor: String,
    /// The draft being edited (the id in `drafts/<id>`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    /// The customer the session works for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// When the session started, by the producer's clock.
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionEnded {
    /// When the session ended, by the producer's clock.
    pub ended_at: DateTime<Utc>,
    /// Why it ended (closed, timed out, …), if the producer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

typed_events! {
    SessionStarted => "session_started",
    SessionEnded => "session_ended",
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::typed::testing::{
        assert_refused, assert_schema_refuses, assert_valid_and_round_trips, check,
        domain_schema_names, opt_text, registry, text, time,
    };
    use crate::typed::TypedEvent;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn started_payload() -> Value {
        json!({"editor": "ada", "draft": "D-7", "customer": "acme", "started_at": "2026-03-01T09:00:00Z"})
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
            &SessionStarted {
                editor: "ada".into(),
                draft: Some("D-7".into()),
                customer: Some("acme".into()),
                started_at: at("2026-03-01T09:00:00Z"),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &SessionStarted {
                editor: "grace".into(),
                draft: None,
                customer: None,
                started_at: at("2026-03-01T09:00:00.123456Z"),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &SessionEnded {
                ended_at: at("2026-03-01T09:30:00Z"),
                reason: Some("closed".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &SessionEnded {
                ended_at: at("2026-03-01T09:30:00Z"),
                reason: None,
            },
        );
    }

    #[test]
    fn the_wire_format_is_as_documented() {
        let e = SessionStarted::from_payload(started_payload()).unwrap();
        assert_eq!(e.editor, "ada");
        assert_eq!(e.draft.as_deref(), Some("D-7"));
        assert_eq!(e.to_payload(), started_payload());
        assert_eq!(
            SessionEnded {
                ended_at: at("2026-03-01T10:00:00Z"),
                reason: None
            }
            .to_payload(),
            json!({"ended_at": "2026-03-01T10:00:00Z"})
        );
    }

    #[test]
    fn payloads_outside_the_schemas_are_refused() {
        let r = registry();
        let with = |field: &str, value: Value| {
            let mut p = started_payload();
            p[field] = value;
            p
        };
        let without = |field: &str| {
            let mut p = started_payload();
            p.as_object_mut().unwrap().remove(field);
            p
        };
        // Both the schema and serde refuse these.
        for bad in [
            without("editor"),
            without("started_at"),
            with("started_at", json!("2026-03-01 09:00")),
            with("started_at", json!(1_772_355_600)),
            with("editor", json!(7)),
            with("session_id", json!("S-1")),
        ] {
            assert_refused::<SessionStarted>(&r, bad);
        }
        // The schema alone refuses these (serde has no lengths).
        for bad in [
            with("editor", json!("")),
            with("editor", json!("x".repeat(201))),
            with("customer", json!("")),
            with("draft", json!("x".repeat(129))),
        ] {
            assert_schema_refuses::<SessionStarted>(&r, &bad);
        }
        assert_refused::<SessionEnded>(&r, json!({}));
        assert_refused::<SessionEnded>(&r, json!({"ended_at": "yesterday"}));
        assert_refused::<SessionEnded>(
            &r,
            json!({"ended_at": "2026-03-01T10:00:00Z", "minutes": 3}),
        );
        assert_schema_refuses::<SessionEnded>(
            &r,
            &json!({"ended_at": "2026-03-01T10:00:00Z", "reason": "x".repeat(1001)}),
        );
    }

    proptest! {
        /// What the typed Rust events write is what their schemas accept,
        /// and it reads back as the same value.
        #[test]
        fn typed_statistics_events_match_their_schemas(
            editor in text(),
            (draft, customer, reason) in (opt_text(), opt_text(), opt_text()),
            (started_at, ended_at) in (time(), time()),
        ) {
            let r = registry();
            check(&r, &SessionStarted { editor, draft, customer, started_at })?;
            check(&r, &SessionEnded { ended_at, reason })?;
        }
    }
}
