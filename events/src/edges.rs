//! Events of the `edges` domain (network edge devices at customer sites),
//! version 1. Their schemas are `schemas/edges/*.v1.json`.
//!
//! An edge is registered, then reports its status (its state and a measure
//! of each of its links) again and again. Every report is recorded as
//! `edge_status_reported`, whether or not it changes anything; the transitions
//! it causes (offline, back online, a link degraded or recovered) are
//! recorded as their own events. Which report causes which transition is the
//! aggregate's decision, not this module's. When the outage monitor checks
//! an offline edge again and finds it still offline, the outage is
//! confirmed (`outage_confirmed`, once per outage).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::typed::typed_events;

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "edges";

/// Most links one status report may carry.
pub const MAX_LINKS: usize = 64;

/// How an edge is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeState {
    /// Up, every link within its thresholds.
    Online,
    /// Not reachable.
    Offline,
    /// Up, but at least one link is beyond a threshold.
    Degraded,
}

/// One link's measures in a status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkReport {
    /// The link's name on the edge, e.g. `wan1`.
    pub name: String,
    /// Round-trip latency in milliseconds, ≥ 0.
    pub latency_ms: f64,
    /// Jitter in milliseconds, ≥ 0.
    pub jitter_ms: f64,
    /// Packets lost, in percent (0 to 100).
    pub packet_loss_pct: f64,
}

/// Limits beyond which a link counts as degraded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Milliseconds, ≥ 0.
    pub latency_ms: f64,
    /// Milliseconds, ≥ 0.
    pub jitter_ms: f64,
    /// Percent, 0 to 100.
    pub packet_loss_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeRegistered {
    pub customer: String,
    /// The device's serial number.
    pub serial: String,
    /// Where the device is installed.
    pub site: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeStatusReported {
    pub state: EdgeState,
    /// At most [`MAX_LINKS`].
    pub links: Vec<LinkReport>,
    /// When the edge (or its monitor) took the measures, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeWentOffline {
    pub previous_state: EdgeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCameOnline {
    pub previous_state: EdgeState,
    /// When the edge went offline, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDegraded {
    /// The link's name.
    pub link: String,
    pub latency_ms: f64,
    pub jitter_ms: f64,
    pub packet_loss_pct: f64,
    /// The thresholds the measures were compared with.
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRecovered {
    /// The link's name.
    pub link: String,
}

/// This edge's own thresholds, overriding the customer's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeThresholdsSet {
    pub latency_ms: f64,
    pub jitter_ms: f64,
    pub packet_loss_pct: f64,
}

impl EdgeThresholdsSet {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            packet_loss_pct: self.packet_loss_pct,
        }
    }
}

impl From<Thresholds> for EdgeThresholdsSet {
    fn from(t: Thresholds) -> Self {
        Self {
            latency_ms: t.latency_ms,
            jitter_ms: t.jitter_ms,
            packet_loss_pct: t.packet_loss_pct,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeDecommissioned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The edge was still offline, continuously, when the outage monitor
/// checked again: the outage that began with the `edge_went_offline` at
/// `offline_since_version` is confirmed. At most one per outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfirmed {
    /// The stream version of the `edge_went_offline` event that began the
    /// outage, ≥ 1.
    pub offline_since_version: u64,
    /// When the edge went offline (the `reported_at` of the report that
    /// took it offline), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_since: Option<DateTime<Utc>>,
}

typed_events! {
    EdgeRegistered => "edge_registered",
    EdgeStatusReported => "edge_status_reported",
    EdgeWentOffline => "edge_went_offline",
    EdgeCameOnline => "edge_came_online",
    LinkDegraded => "link_degraded",
    LinkRecovered => "link_recovered",
    EdgeThresholdsSet => "edge_thresholds_set",
    EdgeDecommissioned => "edge_decommissioned",
    OutageConfirmed => "outage_confirmed",
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

    fn now() -> DateTime<Utc> {
        "2025-03-01T12:30:00.25Z".parse().unwrap()
    }

    fn link(name: &str) -> LinkReport {
        LinkReport {
            name: name.into(),
            latency_ms: 12.5,
            jitter_ms: 0.0,
            packet_loss_pct: 100.0,
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            latency_ms: 150.0,
            jitter_ms: 30.0,
            packet_loss_pct: 2.5,
        }
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
            &EdgeRegistered {
                customer: "acme".into(),
                serial: "SN-0042".into(),
                site: "Berlin HQ".into(),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeStatusReported {
                state: EdgeState::Degraded,
                links: vec![link("wan1"), link("lte")],
                reported_at: Some(now()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeStatusReported {
                state: EdgeState::Offline,
                links: vec![],
                reported_at: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeStatusReported {
                state: EdgeState::Online,
                links: (0..MAX_LINKS).map(|i| link(&format!("l{i}"))).collect(),
                reported_at: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeWentOffline {
                previous_state: EdgeState::Online,
                reason: Some("no report for 90 s".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeWentOffline {
                previous_state: EdgeState::Degraded,
                reason: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeCameOnline {
                previous_state: EdgeState::Offline,
                offline_since: Some(now()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &EdgeCameOnline {
                previous_state: EdgeState::Offline,
                offline_since: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &LinkDegraded {
                link: "wan1".into(),
                latency_ms: 320.0,
                jitter_ms: 45.75,
                packet_loss_pct: 0.0,
                thresholds: thresholds(),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &LinkRecovered {
                link: "wan1".into(),
            },
        );
        assert_valid_and_round_trips(&r, &EdgeThresholdsSet::from(thresholds()));
        assert_valid_and_round_trips(&r, &EdgeDecommissioned { reason: None });
        assert_valid_and_round_trips(
            &r,
            &EdgeDecommissioned {
                reason: Some("site closed".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &OutageConfirmed {
                offline_since_version: 3,
                offline_since: Some(now()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &OutageConfirmed {
                offline_since_version: u64::MAX,
                offline_since: None,
            },
        );
    }

    #[test]
    fn the_wire_format_is_as_documented() {
        let e = EdgeStatusReported {
            state: EdgeState::Online,
            links: vec![link("wan1")],
            reported_at: Some(now()),
        };
        assert_eq!(
            e.to_payload(),
            json!({
                "state": "online",
                "links": [{"name": "wan1", "latency_ms": 12.5, "jitter_ms": 0.0, "packet_loss_pct": 100.0}],
                "reported_at": "2025-03-01T12:30:00.250Z",
            })
        );
        assert_eq!(
            EdgeWentOffline {
                previous_state: EdgeState::Degraded,
                reason: None
            }
            .to_payload(),
            json!({"previous_state": "degraded"})
        );
        let set = EdgeThresholdsSet::from(thresholds());
        assert_eq!(set.thresholds(), thresholds());
        assert_eq!(
            OutageConfirmed {
                offline_since_version: 7,
                offline_since: Some(now()),
            }
            .to_payload(),
            json!({"offline_since_version": 7, "offline_since": "2025-03-01T12:30:00.250Z"})
        );
        assert_eq!(
            OutageConfirmed {
                offline_since_version: 7,
                offline_since: None,
            }
            .to_payload(),
            json!({"offline_since_version": 7})
        );
    }

    #[test]
    fn payloads_outside_the_schemas_are_refused() {
        let r = registry();
        let good_link =
            json!({"name": "wan1", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1});
        let status = |state: serde_json::Value, links: serde_json::Value| json!({"state": state, "links": links});
        // Both the schema and serde refuse these.
        for bad in [
            status(json!("unknown"), json!([])),
            status(
                json!("online"),
                json!([{"name": "wan1", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1, "mtu": 1500}]),
            ),
            status(json!("online"), json!([{"name": "wan1", "latency_ms": 1}])),
            json!({"state": "online"}),
            json!({"state": "online", "links": [], "colour": "red"}),
            json!({"state": "online", "links": [], "reported_at": "yesterday"}),
        ] {
            assert_refused::<EdgeStatusReported>(&r, bad);
        }
        // The schema alone refuses these (serde has no ranges or lengths).
        for bad in [
            status(json!("online"), json!(vec![good_link; MAX_LINKS + 1])),
            status(
                json!("online"),
                json!([{"name": "wan1", "latency_ms": -1, "jitter_ms": 1, "packet_loss_pct": 1}]),
            ),
            status(
                json!("online"),
                json!([{"name": "wan1", "latency_ms": 1, "jitter_ms": -0.5, "packet_loss_pct": 1}]),
            ),
            status(
                json!("online"),
                json!([{"name": "wan1", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 100.5}]),
            ),
            status(
                json!("online"),
                json!([{"name": "", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1}]),
            ),
        ] {
            assert_schema_refuses::<EdgeStatusReported>(&r, &bad);
        }
        assert_refused::<EdgeRegistered>(&r, json!({"customer": "acme", "serial": "S"}));
        assert_refused::<EdgeWentOffline>(&r, json!({"previous_state": "gone"}));
        assert_refused::<EdgeCameOnline>(
            &r,
            json!({"previous_state": "offline", "offline_since": "2025-13-01T00:00:00Z"}),
        );
        assert_refused::<LinkDegraded>(
            &r,
            json!({"link": "wan1", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1,
                   "thresholds": {"latency_ms": 1, "jitter_ms": 1}}),
        );
        assert_refused::<LinkRecovered>(&r, json!({}));
        assert_refused::<EdgeThresholdsSet>(
            &r,
            json!({"latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1, "scope": "edge"}),
        );
        assert_refused::<EdgeDecommissioned>(&r, json!({"reason": 5}));
        for bad in [
            json!({"latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 101}),
            json!({"latency_ms": -1, "jitter_ms": 1, "packet_loss_pct": 1}),
        ] {
            assert_schema_refuses::<EdgeThresholdsSet>(&r, &bad);
        }
        for bad in [
            json!({}),
            json!({"offline_since": "2025-03-01T12:30:00Z"}),
            json!({"offline_since_version": -1}),
            json!({"offline_since_version": 1.5}),
            json!({"offline_since_version": "3"}),
            json!({"offline_since_version": 3, "offline_since": "2025-13-01T00:00:00Z"}),
            json!({"offline_since_version": 3, "edge": "E-17"}),
        ] {
            assert_refused::<OutageConfirmed>(&r, bad);
        }
        // Version 0 is no event: the schema alone refuses it.
        assert_schema_refuses::<OutageConfirmed>(&r, &json!({"offline_since_version": 0}));
    }

    fn state() -> impl Strategy<Value = EdgeState> {
        prop_oneof![
            Just(EdgeState::Online),
            Just(EdgeState::Offline),
            Just(EdgeState::Degraded),
        ]
    }

    fn ms() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), 0.0..1e7f64]
    }

    fn pct() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), Just(100.0), 0.0..=100.0f64]
    }

    fn link_report() -> impl Strategy<Value = LinkReport> {
        (text(), ms(), ms(), pct()).prop_map(|(name, latency_ms, jitter_ms, packet_loss_pct)| {
            LinkReport {
                name,
                latency_ms,
                jitter_ms,
                packet_loss_pct,
            }
        })
    }

    fn any_thresholds() -> impl Strategy<Value = Thresholds> {
        (ms(), ms(), pct()).prop_map(|(latency_ms, jitter_ms, packet_loss_pct)| Thresholds {
            latency_ms,
            jitter_ms,
            packet_loss_pct,
        })
    }

    proptest! {
        /// What the typed Rust events write is what their schemas accept,
        /// and it reads back as the same value.
        #[test]
        fn typed_edge_events_match_their_schemas(
            (a, b, c) in (text(), text(), text()),
            (s1, s2) in (state(), state()),
            links in prop::collection::vec(link_report(), 0..=MAX_LINKS),
            l in link_report(),
            t in any_thresholds(),
            (at, reason) in (proptest::option::of(time()), opt_text()),
            version in 1u64..=u64::MAX,
        ) {
            let r = registry();
            check(&r, &EdgeRegistered { customer: a.clone(), serial: b, site: c })?;
            check(&r, &EdgeStatusReported { state: s1, links, reported_at: at })?;
            check(&r, &EdgeWentOffline { previous_state: s2, reason: reason.clone() })?;
            check(&r, &EdgeCameOnline { previous_state: s1, offline_since: at })?;
            check(&r, &LinkDegraded {
                link: l.name,
                latency_ms: l.latency_ms,
                jitter_ms: l.jitter_ms,
                packet_loss_pct: l.packet_loss_pct,
                thresholds: t,
            })?;
            check(&r, &LinkRecovered { link: a })?;
            check(&r, &EdgeThresholdsSet::from(t))?;
            check(&r, &EdgeDecommissioned { reason })?;
            check(&r, &OutageConfirmed { offline_since_version: version, offline_since: at })?;
        }
    }
}
