//! How far behind the log a projection is: [`ProjectionStatus`] on request,
//! and the same numbers as gauges so that a consumer that stops quietly shows
//! up on a dashboard (position flat, lag growing, last progress old).

use chrono::{DateTime, Utc};
use herald_events::Position;
use serde::Serialize;

/// A projection's progress against the store's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// The version of the projection in this code.
    pub version: u32,
    /// The version that built the serving generation (lower than `version`
    /// while a new version is being built beside it); `None` before the
    /// first start.
    pub serving_version: Option<u32>,
    /// The serving generation (its tables are in `rm_<name>_g<generation>`).
    pub generation: Option<u32>,
    /// The last position applied (or skipped as not accepted, or parked).
    pub position: Position,
    /// The store's head.
    pub head: Position,
    /// Events committed to the store and not yet projected.
    pub lag_events: u64,
    /// `recorded_at` of the head minus that of the checkpoint's event (of
    /// the first event, before any progress); 0 when caught up.
    pub lag_seconds: f64,
    /// When the checkpoint last moved; `None` before it first moved.
    pub last_progress_at: Option<DateTime<Utc>>,
    /// Events parked by the serving generation.
    pub parked: usize,
    /// A blue-green rebuild under way.
    pub rebuild: Option<RebuildStatus>,
}

/// A generation being built beside the serving one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebuildStatus {
    pub generation: u32,
    pub version: u32,
    pub position: Position,
    pub lag_events: u64,
}

/// Publishes position and lag gauges for a projection.
pub(crate) fn record(name: &'static str, position: Position, head: Position) {
    metrics::gauge!("herald_projection_position", "projection" => name).set(position.get() as f64);
    metrics::gauge!("herald_projection_lag_events", "projection" => name)
        .set(head.get().saturating_sub(position.get()) as f64);
}

/// Publishes the time of the last progress, as a Unix timestamp in seconds: a
/// timestamp rather than an age, so that it stays right when the runner
/// itself is stuck and stops updating gauges (alert on `time() - x`).
pub(crate) fn record_progress(name: &'static str, at: DateTime<Utc>) {
    metrics::gauge!("herald_projection_last_progress_seconds", "projection" => name)
        .set(at.timestamp_micros() as f64 / 1e6);
}
