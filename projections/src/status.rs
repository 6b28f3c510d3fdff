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

/// The status of projection `name` (of `version` in this code) from its
/// generation rows and parked count, against the store's head; records the
/// gauges on the way. Both runners answer with this.
pub(crate) async fn assemble(
    store: &dyn herald_store::EventStore,
    name: &'static str,
    version: u32,
    generations: &[crate::schema::Generation],
    parked: usize,
) -> Result<ProjectionStatus, crate::ProjectionError> {
    use crate::schema::GenerationState;
    let find = |state| generations.iter().find(|g| g.state == state).copied();
    let (active, building) = (
        find(GenerationState::Active),
        find(GenerationState::Building),
    );
    let position = active.map_or(Position::START, |g| g.position);
    let head = store.head().await?;
    let lag_events = head.position.get().saturating_sub(position.get());
    let mut lag_seconds = 0.0;
    if lag_events > 0 {
        // The checkpoint's event, or the first event before any progress.
        let since = store.read_all(position.max(Position(1)), 1).await?;
        if let (Some(event), Some(head_at)) = (since.first(), head.recorded_at) {
            lag_seconds = ((head_at - event.recorded_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6)
                .max(0.0);
        }
    }
    crate::telemetry::position(name, position, head.position);
    let moved = active.is_some_and(|a| a.position > Position::START);
    Ok(ProjectionStatus {
        name: name.to_owned(),
        version,
        serving_version: active.map(|g| g.version),
        generation: active.map(|g| g.generation),
        position,
        head: head.position,
        lag_events,
        lag_seconds,
        last_progress_at: active.filter(|_| moved).map(|g| g.updated_at),
        parked,
        rebuild: building.map(|b| RebuildStatus {
            generation: b.generation,
            version: b.version,
            position: b.position,
            lag_events: head.position.get().saturating_sub(b.position.get()),
        }),
    })
}
