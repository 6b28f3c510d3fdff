//! An edge as its events left it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{EdgeEvent, EdgeState, Thresholds};
use super::{ASSUMED_INITIAL_STATE, DEFAULT_THRESHOLDS};

/// The edge aggregate's state. `registered` is false until it is
/// registered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// How many events were applied: the stream version this state is at
    /// (every event of the stream is one of the edge's).
    pub version: u64,
    pub registered: bool,
    pub decommissioned: bool,
    pub customer: String,
    pub serial: String,
    pub site: String,
    /// The edge's own thresholds; `None`: [`DEFAULT_THRESHOLDS`].
    pub thresholds: Option<Thresholds>,
    /// The state of the latest report; `None`: never reported.
    pub state: Option<EdgeState>,
    /// How many reports were recorded.
    pub reports: u64,
    /// The `reported_at` of the latest report (`None` if it had none).
    pub last_reported_at: Option<DateTime<Utc>>,
    /// The links beyond a threshold in their latest report.
    pub degraded_links: BTreeSet<String>,
    /// The current outage, while the edge is offline.
    pub outage: Option<Outage>,
}

/// An edge's current outage: from its `edge_went_offline` until its
/// `edge_came_online`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// The stream version of the `edge_went_offline` that began it.
    pub since_version: u64,
    /// The `reported_at` of the report that took the edge offline.
    pub since: Option<DateTime<Utc>>,
    /// Whether `outage_confirmed` was recorded for it.
    pub confirmed: bool,
}

impl Edge {
    /// The thresholds its links are judged by.
    pub fn effective_thresholds(&self) -> Thresholds {
        self.thresholds.unwrap_or(DEFAULT_THRESHOLDS)
    }

    /// Its state now: the latest report's, or the assumed one before any.
    pub fn current_state(&self) -> EdgeState {
        self.state.unwrap_or(ASSUMED_INITIAL_STATE)
    }

    pub fn apply_event(&mut self, event: &EdgeEvent) {
        self.version += 1;
        match event {
            EdgeEvent::Registered(e) => {
                self.registered = true;
                self.customer = e.customer.clone();
                self.serial = e.serial.clone();
                self.site = e.site.clone();
            }
            EdgeEvent::StatusReported(e) => {
                self.state = Some(e.state);
                self.reports += 1;
                self.last_reported_at = e.reported_at;
            }
            // It follows the report that took the edge offline.
            EdgeEvent::WentOffline(_) => {
                self.outage = Some(Outage {
                    since_version: self.version,
                    since: self.last_reported_at,
                    confirmed: false,
                });
            }
            EdgeEvent::CameOnline(_) => self.outage = None,
            EdgeEvent::LinkDegraded(e) => {
                self.degraded_links.insert(e.link.clone());
            }
            EdgeEvent::LinkRecovered(e) => {
                self.degraded_links.remove(&e.link);
            }
            EdgeEvent::ThresholdsSet(e) => self.thresholds = Some(e.thresholds()),
            EdgeEvent::Decommissioned(_) => self.decommissioned = true,
            EdgeEvent::OutageConfirmed(_) => {
                if let Some(outage) = &mut self.outage {
                    outage.confirmed = true;
                }
            }
        }
    }
}
