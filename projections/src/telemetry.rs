//! The projections' metrics, recorded through the `metrics` facade (the
//! binary installs the Prometheus exporter and describes them). Names
//! follow `herald_projection_<name>_<unit>`; the one label is the
//! projection's name. The runner loop records them the same way whichever
//! database holds the read models.

use chrono::{DateTime, Utc};
use herald_events::Position;

/// The last log position the serving generation applied (gauge).
pub const POSITION: &str = "herald_projection_position";
/// Events committed to the log and not yet projected (gauge).
pub const LAG_EVENTS: &str = "herald_projection_lag_events";
/// Unix time in seconds of the last applied batch (gauge): a timestamp
/// rather than an age, so that it stays right when the runner itself is
/// stuck and stops updating gauges (alert on `time() - x`).
pub const LAST_PROGRESS_SECONDS: &str = "herald_projection_last_progress_seconds";
/// Events the projection could not apply and parked (counter).
pub const PARKED_TOTAL: &str = "herald_projection_parked_total";
/// Rebuilt generations that took over serving (counter).
pub const SWITCHES_TOTAL: &str = "herald_projection_switches_total";

/// 1 in the one process that runs the projection, 0 in those standing by
/// (gauge).
pub const RUNNING: &str = "herald_projection_running";

/// Publishes whether this process runs a projection.
pub(crate) fn running(name: &'static str, running: bool) {
    metrics::gauge!(RUNNING, "projection" => name).set(if running { 1.0 } else { 0.0 });
}

/// Publishes a projection's position and lag against the head.
pub(crate) fn position(name: &'static str, position: Position, head: Position) {
    metrics::gauge!(POSITION, "projection" => name).set(position.get() as f64);
    metrics::gauge!(LAG_EVENTS, "projection" => name)
        .set(head.get().saturating_sub(position.get()) as f64);
}

/// Publishes the time of a projection's last progress.
pub(crate) fn progressed(name: &'static str, at: DateTime<Utc>) {
    metrics::gauge!(LAST_PROGRESS_SECONDS, "projection" => name)
        .set(at.timestamp_micros() as f64 / 1e6);
}

/// Counts an event parked.
pub(crate) fn parked(name: &'static str) {
    metrics::counter!(PARKED_TOTAL, "projection" => name).increment(1);
}

/// Counts a rebuilt generation taking over.
pub(crate) fn switched(name: &'static str) {
    metrics::counter!(SWITCHES_TOTAL, "projection" => name).increment(1);
}
