//! The `edges` domain: network edge devices at customer sites. Read top to
//! bottom: [`commands`], [`events`] (the payloads live in herald-events),
//! [`state`] (`apply`), [`decide`], [`reactions`] (the outage monitor, which
//! turns edges' events into tickets' commands).
//!
//! Rules:
//!
//! - **Registering.** An edge is registered once (`edge_registered`, plus
//!   `edge_thresholds_set` when the registration carries thresholds).
//!   Registering it again with the same customer, serial, site and
//!   thresholds (equal to the edge's own thresholds now) changes nothing, so
//!   a provisioning system may retry; anything else is refused (409), as is
//!   registering a decommissioned edge. Every other command on an edge that
//!   was never registered is refused as not found (404).
//! - **Reports.** Every accepted status report is recorded as
//!   `edge_status_reported`, in arrival order, whether or not it changes
//!   anything: **a report that changes nothing emits only
//!   `edge_status_reported`**. The transitions it causes follow it, each
//!   only when something changes:
//!   - `edge_went_offline` when the reported state is `offline` and the
//!     edge's state was not. An edge that never reported counts as
//!     [`ASSUMED_INITIAL_STATE`] (`online`) since its registration, so a
//!     first report that says `offline` is a transition, with
//!     `previous_state: online`.
//!   - `edge_came_online` when the edge was offline and the report says
//!     `online` or `degraded`; it carries `offline_since`, the `reported_at`
//!     of the report that took the edge offline (unknown, and left out, when
//!     that report had none). `online` ↔ `degraded` is no transition: both
//!     are up, and the links' own events tell what changed.
//!   - per link in the report, in the report's order: `link_degraded` when
//!     one of its measures is beyond its threshold (`latency_ms >
//!     thresholds.latency_ms`, `jitter_ms > thresholds.jitter_ms` or
//!     `packet_loss_pct > thresholds.packet_loss_pct`; a measure equal to the
//!     threshold is within it) and it was not degraded already;
//!     `link_recovered` when it was degraded and all its measures are within
//!     the thresholds now. A degraded link missing from a report stays
//!     degraded: no measure is no news (an offline report usually carries no
//!     links). Links are judged in every report, whatever its state; the
//!     reported state is the reporter's word and is not checked against the
//!     links.
//!
//!   Reports on a decommissioned edge are refused (409).
//! - **Thresholds.** Without thresholds of its own, an edge's links are
//!   judged by [`DEFAULT_THRESHOLDS`]: latency 150 ms, jitter 30 ms, packet
//!   loss 2 %. Thresholds are per customer in the sense that the
//!   provisioning system sets each edge's thresholds from its customer's
//!   policy, at registration or later with `set_thresholds`; Herald keeps
//!   no per-customer table. Setting the same thresholds again changes
//!   nothing. New thresholds judge the next report: links already degraded
//!   stay so until a report shows them within the new thresholds.
//! - **Decommissioning.** An edge is decommissioned once; after that,
//!   reports, thresholds and a second decommissioning are refused (409).
//! - **Confirming an outage.** The outage monitor's recheck timer sends
//!   `confirm_outage {offline_since_version}`, the stream version of the
//!   `edge_went_offline` it saw. If the edge is still offline and has been
//!   continuously since a went-offline transition at or before that version
//!   (the state keeps the stream version of its last `edge_went_offline`),
//!   `outage_confirmed` records it, with that transition's version and
//!   `offline_since`. Otherwise — the edge came back, went offline again
//!   after that version, this outage is already confirmed, or the edge is
//!   decommissioned — nothing happens. Version 0, or a version past the
//!   stream's end, is refused as invalid (422).
//! - **Validation.** A malformed command is refused as invalid (422): an
//!   empty customer, serial, site or link name, the same link name twice in
//!   a report, more than [`MAX_LINKS`] links, a negative or non-finite
//!   measure or threshold, a percentage above 100. The events' schemas
//!   check the rest (lengths) when they are appended, also as 422. A command
//!   on an edge never registered is not found before it is checked.

pub mod commands;
pub mod decide;
pub mod events;
pub mod reactions;
pub mod state;

pub use commands::EdgeCommand;
pub use events::EdgeEvent;
pub use herald_events::edges::{EdgeState, LinkReport, Thresholds, MAX_LINKS};
pub use state::{Edge, Outage};

/// The thresholds of an edge that has none of its own: latency 150 ms,
/// jitter 30 ms, packet loss 2 %.
pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    latency_ms: 150.0,
    jitter_ms: 30.0,
    packet_loss_pct: 2.0,
};

/// The state an edge is taken to be in from its registration until its
/// first report.
pub const ASSUMED_INITIAL_STATE: EdgeState = EdgeState::Online;

/// The domain's registration: its aggregate and its events.
pub fn spec() -> crate::domain::AggregateDomain<Edge> {
    crate::domain::AggregateDomain::new(herald_events::edges::EVENT_TYPES)
}
