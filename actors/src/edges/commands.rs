//! What can be asked of an edge. Over HTTP each is
//! `POST /v1/edges/{id}/{name}` with the variant's fields as the body.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::events::{EdgeState, LinkReport, Thresholds};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EdgeCommand {
    /// `register {customer, serial, site, thresholds?}`, thresholds being
    /// `{latency_ms, jitter_ms, packet_loss_pct}`.
    Register {
        customer: String,
        serial: String,
        site: String,
        #[serde(default)]
        thresholds: Option<Thresholds>,
    },
    /// `report_status {state, links, reported_at?}`: `state` is `online`,
    /// `offline` or `degraded`; each link is
    /// `{name, latency_ms, jitter_ms, packet_loss_pct}`; `reported_at` is
    /// RFC 3339.
    ReportStatus {
        state: EdgeState,
        links: Vec<LinkReport>,
        #[serde(default)]
        reported_at: Option<DateTime<Utc>>,
    },
    /// `set_thresholds {latency_ms, jitter_ms, packet_loss_pct}`
    SetThresholds {
        latency_ms: f64,
        jitter_ms: f64,
        packet_loss_pct: f64,
    },
    /// `decommission {reason?}`
    Decommission {
        #[serde(default)]
        reason: Option<String>,
    },
    /// `confirm_outage {offline_since_version}`: sent by the outage
    /// monitor's recheck timer.
    ConfirmOutage { offline_since_version: u64 },
}

/// The commands' names, as in URLs.
pub const NAMES: &[&str] = &[
    "register",
    "report_status",
    "set_thresholds",
    "decommission",
    "confirm_outage",
];
