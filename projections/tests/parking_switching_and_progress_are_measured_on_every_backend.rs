//! The runner records the same metrics whichever database holds the read
//! models (the projections' conformance suite, on Postgres and on SQLite):
//! an event the read model cannot apply is counted as parked (by the
//! serving generation, and again by a rebuild that meets it), a rebuilt
//! generation taking over is counted as a switch, and the serving
//! generation's position and the time of its last progress are exported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use herald_events::tickets::{TicketKind, TicketOpened};
use herald_events::{NewEvent, SchemaVersion, TypedEvent};
use herald_projections::read_models::tickets;
use herald_projections::telemetry::{
    LAG_EVENTS, LAST_PROGRESS_SECONDS, PARKED_TOTAL, POSITION, SWITCHES_TOTAL,
};
use herald_projections::RunnerConfig;
use herald_testkit::eventually;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::json;

mod common;
mod conformance;

use conformance::{Backend, Fixture, WAIT};

/// Every counter and gauge recorded in this process, by name and
/// projection (histograms are not kept).
#[derive(Debug, Default)]
struct Recorded {
    values: Mutex<HashMap<(String, String), Arc<AtomicU64>>>,
}

impl Recorded {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let projection = key
            .labels()
            .find(|l| l.key() == "projection")
            .map_or_else(String::new, |l| l.value().to_owned());
        let mut values = self.values.lock().unwrap();
        Arc::clone(
            values
                .entry((key.name().to_owned(), projection))
                .or_default(),
        )
    }

    fn counter(&self, name: &str, projection: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(&(name.to_owned(), projection.to_owned()))
            .map_or(0, |v| v.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, projection: &str) -> Option<f64> {
        self.values
            .lock()
            .unwrap()
            .get(&(name.to_owned(), projection.to_owned()))
            .map(|v| f64::from_bits(v.load(Ordering::SeqCst)))
    }
}

impl Recorder for &'static Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The process's recorder, installed at the first call.
fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<&'static Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded: &'static Recorded = Box::leak(Box::default());
        metrics::set_global_recorder(recorded).expect("the only recorder");
        recorded
    })
}

/// The two backends' tests share the metrics (one projection name): one
/// at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn parking_switching_and_progress_are_measured(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let metrics = recorded();
    let name = tickets::NAME;
    let parked_before = metrics.counter(PARKED_TOTAL, name);
    let switches_before = metrics.counter(SWITCHES_TOTAL, name);
    let started = Utc::now().timestamp_micros() as f64 / 1e6;

    let config = RunnerConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(20),
        retire_grace: Duration::ZERO,
        ..RunnerConfig::default()
    };
    let mut f = Fixture::new(backend, &[name], config.clone(), config).await;
    let opened = TicketOpened {
        kind: TicketKind::Outage,
        customer: "northwind".into(),
        edge: None,
        description: "down".into(),
        opened_by: None,
    };
    f.append("acme", "tickets/T-1", vec![opened.to_new_event()])
        .await;
    let malformed = NewEvent::new(
        "tickets.ticket_opened".parse().unwrap(),
        SchemaVersion::V1,
        json!({"kind": "meltdown"}),
    );
    f.append("acme", "tickets/T-2", vec![malformed]).await;
    f.append("acme", "tickets/T-3", vec![opened.to_new_event()])
        .await;
    f.start_tested();

    let caught_up = eventually(WAIT, || async {
        f.tested
            .status(name)
            .await
            .is_ok_and(|s| s.lag_events == 0 && s.parked == 1)
    })
    .await;
    assert!(caught_up, "{:?}", f.tested.status(name).await);
    assert_eq!(
        metrics.counter(PARKED_TOTAL, name) - parked_before,
        1,
        "the parked event is counted on {}",
        backend.name()
    );
    let progress = metrics.gauge(LAST_PROGRESS_SECONDS, name);
    assert!(
        progress.is_some_and(|at| at >= started.floor()),
        "the last progress is exported on {}: {progress:?} (started at {started})",
        backend.name()
    );
    let head = f.store.head().await.unwrap().position.get() as f64;
    assert_eq!(metrics.gauge(POSITION, name), Some(head));
    assert_eq!(metrics.gauge(LAG_EVENTS, name), Some(0.0));
    assert_eq!(metrics.counter(SWITCHES_TOTAL, name), switches_before);

    // The rebuild parks the event again, in its own generation, and takes
    // over once.
    f.rebuild(name).await;
    assert_eq!(
        metrics.counter(SWITCHES_TOTAL, name) - switches_before,
        1,
        "the switch is counted on {}",
        backend.name()
    );
    assert_eq!(metrics.counter(PARKED_TOTAL, name) - parked_before, 2);
    assert_eq!(f.tested.parked(name).await.unwrap().len(), 1);

    f.stop().await;
}
conformance!(parking_switching_and_progress_are_measured);
