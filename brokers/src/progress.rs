//! Whether the process's workers move: one small mechanism shared by the
//! relay, the broker ingest and the reactions (any worker that moves events
//! from one place to the next), so that a worker that makes no progress
//! while work waits shows up the same way for each — in readiness, as a
//! metric and in the log — instead of stopping quietly.
//!
//! A worker holds a [`Tracker`] and says when work is waiting
//! ([`Tracker::waiting`]), when it moved ([`Tracker::progressed`]), when
//! nothing waits any more ([`Tracker::idle`]) and, while stuck, why
//! ([`Tracker::trouble`]). It is *stalled* when work has been waiting for
//! [`Progress::stall_after`] without any progress in that time. Idle
//! workers never stall: a relay standing by or a consumer with nothing
//! delivered is not stuck.
//!
//! [`Progress::stalled`] answers on demand (readiness asks it); the task
//! of [`Progress::watch`] looks every second, keeps the gauges
//! [`STALLED`] and [`LAST_PROGRESS_SECONDS`] per component, and logs each
//! change between moving and stalled. So a stall is visible within
//! `stall_after` plus a second.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// 1 while a component is stalled, else 0; by `component`.
pub const STALLED: &str = "herald_stalled";
/// When a component last made progress, as a Unix time in seconds (0
/// before its first progress); by `component`. A timestamp rather than an
/// age, so it stays right when nothing updates it (alert on `time() - x`).
pub const LAST_PROGRESS_SECONDS: &str = "herald_last_progress_seconds";

/// How long work may wait without progress before the worker counts as
/// stalled, unless the process says otherwise.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(5);

/// How often the watcher looks.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The progress of every worker of a process. Cheap to clone; clones share
/// the workers.
#[derive(Clone)]
pub struct Progress {
    components: Arc<Mutex<BTreeMap<String, Arc<Mutex<State>>>>>,
    stall_after: Duration,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(DEFAULT_STALL_AFTER)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("components", &lock(&self.components).keys())
            .field("stall_after", &self.stall_after)
            .finish()
    }
}

/// A stalled worker, as readiness reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    /// The worker's name (`relay`, `ingest`, `reaction.outage-monitor`).
    pub component: String,
    /// How long work has waited without progress.
    pub stalled_for: Duration,
    /// The latest trouble the worker reported, if any.
    pub reason: Option<String>,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has made no progress for {} s while work waits",
            self.component,
            self.stalled_for.as_secs()
        )?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl Progress {
    /// Workers count as stalled after `stall_after` without progress while
    /// work waits.
    pub fn new(stall_after: Duration) -> Self {
        Self {
            components: Arc::default(),
            stall_after,
        }
    }

    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// The tracker of `component`, idle until told otherwise. Asking again
    /// for the same name gives a tracker of the same state (a worker that
    /// restarts keeps its history).
    pub fn tracker(&self, component: impl Into<String>) -> Tracker {
        let component = component.into();
        let state = Arc::clone(lock(&self.components).entry(component.clone()).or_default());
        Tracker {
            component: component.into(),
            state,
        }
    }

    /// The workers stalled now, by name.
    pub fn stalled(&self) -> Vec<Stall> {
        self.stalled_at(Instant::now())
    }

    fn stalled_at(&self, now: Instant) -> Vec<Stall> {
        self.each(|component, state| state.stall(component, now, self.stall_after))
            .into_iter()
            .flatten()
            .collect()
    }

    fn each<T>(&self, mut f: impl FnMut(&str, &State) -> T) -> Vec<T> {
        let components: Vec<(String, Arc<Mutex<State>>)> = lock(&self.components)
            .iter()
            .map(|(name, state)| (name.clone(), Arc::clone(state)))
            .collect();
        components
            .iter()
            .map(|(name, state)| f(name, &lock(state)))
            .collect()
    }

    /// Looks at every worker each second until `stop` turns true: keeps the
    /// gauges and logs when a worker stalls and when it moves again.
    pub fn watch(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let progress = self.clone();
        tokio::spawn(async move {
            let mut stalled: BTreeMap<String, bool> = BTreeMap::new();
            loop {
                progress.look(&mut stalled);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    }

    /// One look: gauges for every worker, a log line for every change.
    fn look(&self, was_stalled: &mut BTreeMap<String, bool>) {
        let now = Instant::now();
        let seen = self.each(|component, state| {
            (
                component.to_owned(),
                state.stall(component, now, self.stall_after),
                state.last_progress_wall,
            )
        });
        for (component, stall, last_progress) in seen {
            let stalled = stall.is_some();
            metrics::gauge!(STALLED, "component" => component.clone()).set(if stalled {
                1.0
            } else {
                0.0
            });
            let at = last_progress
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!(LAST_PROGRESS_SECONDS, "component" => component.clone()).set(at);
            let before = was_stalled.insert(component.clone(), stalled);
            match (before.unwrap_or(false), stall) {
                (false, Some(stall)) => tracing::warn!(
                    component = %stall.component,
                    stalled_secs = stall.stalled_for.as_secs(),
                    reason = stall.reason.as_deref().unwrap_or("none reported"),
                    "Component makes no progress while work waits."
                ),
                (true, None) => {
                    tracing::info!(component = %component, "Component makes progress again.")
                }
                _ => {}
            }
        }
    }
}

/// One worker's handle on its progress.
#[derive(Clone)]
pub struct Tracker {
    component: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker nobody watches, for workers run outside a process's
    /// [`Progress`] (tests, tools).
    pub fn detached(component: &str) -> Self {
        Progress::default().tracker(component)
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Work is waiting (from now on, unless it already was).
    pub fn waiting(&self) {
        lock(&self.state).waiting(Instant::now());
    }

    /// The worker moved forward just now; the last trouble is forgotten.
    pub fn progressed(&self) {
        lock(&self.state).progressed(Instant::now(), SystemTime::now());
    }

    /// Nothing waits for the worker.
    pub fn idle(&self) {
        lock(&self.state).idle();
    }

    /// Why the worker does not move (the latest reason is kept until it
    /// progresses).
    pub fn trouble(&self, reason: impl fmt::Display) {
        lock(&self.state).reason = Some(reason.to_string());
    }
}

/// A worker's progress.
#[derive(Debug, Default)]
struct State {
    /// Since when work has waited; `None` while idle.
    waiting_since: Option<Instant>,
    last_progress: Option<Instant>,
    last_progress_wall: Option<SystemTime>,
    reason: Option<String>,
}

impl State {
    fn waiting(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    fn progressed(&mut self, now: Instant, wall: SystemTime) {
        self.last_progress = Some(now);
        self.last_progress_wall = Some(wall);
        self.reason = None;
    }

    fn idle(&mut self) {
        self.waiting_since = None;
        self.reason = None;
    }

    fn stall(&self, component: &str, now: Instant, after: Duration) -> Option<Stall> {
        let since = self.waiting_since?;
        // Progress made while work waited counts from its moment.
        let quiet_since = self.last_progress.map_or(since, |p| p.max(since));
        let stalled_for = now.saturating_duration_since(quiet_since);
        (stalled_for >= after).then(|| Stall {
            component: component.to_owned(),
            stalled_for,
            reason: self.reason.clone(),
        })
    }
}

/// Poisoning cannot leave these maps half-changed: every change is one
/// assignment.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(5);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn state(progress: &Progress, name: &str) -> Arc<Mutex<State>> {
        Arc::clone(&progress.tracker(name).state)
    }

    #[test]
    fn an_idle_worker_never_stalls() {
        let progress = Progress::new(AFTER);
        let t0 = Instant::now();
        let _ = progress.tracker("relay");
        assert!(progress.stalled_at(t0 + secs(3600)).is_empty());
    }

    #[test]
    fn waiting_without_progress_stalls_after_the_threshold_with_the_reason() {
        let progress = Progress::new(AFTER);
        let relay = state(&progress, "relay");
        let t0 = Instant::now();
        lock(&relay).waiting(t0);
        lock(&relay).reason = Some("the broker refused".into());
        assert!(progress.stalled_at(t0 + secs(4)).is_empty());
        let stalled = progress.stalled_at(t0 + secs(5));
        assert_eq!(
            stalled,
            [Stall {
                component: "relay".into(),
                stalled_for: secs(5),
                reason: Some("the broker refused".into()),
            }]
        );
        assert_eq!(
            stalled[0].to_string(),
            "relay has made no progress for 5 s while work waits (the broker refused)"
        );
    }

    #[test]
    fn progress_while_busy_keeps_a_worker_moving_and_idling_ends_a_stall() {
        let progress = Progress::new(AFTER);
        let ingest = state(&progress, "ingest");
        let t0 = Instant::now();
        let wall = SystemTime::now();
        lock(&ingest).waiting(t0);
        // Busy for a minute, moving every 4 s: never stalled.
        for step in 1..=15 {
            let at = t0 + secs(4 * step);
            assert!(progress.stalled_at(at).is_empty(), "step {step}");
            lock(&ingest).progressed(at, wall);
        }
        let last = t0 + secs(60);
        assert_eq!(progress.stalled_at(last + secs(5)).len(), 1);
        lock(&ingest).progressed(last + secs(6), wall);
        assert!(progress.stalled_at(last + secs(7)).is_empty());
        lock(&ingest).idle();
        assert!(progress.stalled_at(last + secs(600)).is_empty());
        // Waiting again counts from the new start, not the old progress.
        lock(&ingest).waiting(last + secs(600));
        assert!(progress.stalled_at(last + secs(604)).is_empty());
        assert_eq!(progress.stalled_at(last + secs(605)).len(), 1);
    }

    #[test]
    fn trackers_of_one_name_share_their_state() {
        let progress = Progress::new(AFTER);
        let t0 = Instant::now();
        lock(&state(&progress, "reaction.x")).waiting(t0);
        lock(&state(&progress, "reaction.x")).reason = Some("busy".into());
        let stalled = progress.stalled_at(t0 + secs(9));
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].component, "reaction.x");
        assert_eq!(stalled[0].reason.as_deref(), Some("busy"));
    }
}
