//! `/metrics` of a fresh `herald serve`, on both stores, as a Prometheus
//! server and `promtool check metrics` read it: every family has HELP text
//! as well as a TYPE; the counters exist from the start at 0; the build
//! info and the process metrics (memory, CPU, file descriptors, start time)
//! are there; the connected-subscribers gauge follows a websocket and an SSE
//! stream connecting and going away; and the projections' last-progress
//! gauge appears once a command has been projected (on the embedded store
//! too).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_testkit::eventually;
use serde_json::json;
use support::probe::{metrics, value};
use support::{free_port, Herald, WsClient};

const PATIENCE: Duration = Duration::from_secs(30);

/// The families of a metrics text that have a `# TYPE` line, and those that
/// have a `# HELP` line with text.
fn families(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut typed = BTreeSet::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name), Some(_)) => {
                typed.insert(name.to_owned());
            }
            (Some("#"), Some("HELP"), Some(name), Some(help)) if !help.trim().is_empty() => {
                helped.insert(name.to_owned());
            }
            _ => {}
        }
    }
    (typed, helped)
}

/// The value of the one series of `family` whose labels include all of
/// `labels` (each `name="value"`).
fn series(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    scenario(&[], "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = herald_testkit::TestDatabase::create().await;
    scenario(&[("HERALD_STORE", db.url())], "postgres").await;
}

async fn scenario(env: &[(&str, &str)], backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], env);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let started = now_secs();

    let text = metrics(&base).await;
    let (typed, helped) = families(&text);
    assert!(typed.len() >= 30, "only {} families: {text}", typed.len());
    let undescribed: Vec<_> = typed.difference(&helped).collect();
    assert!(
        undescribed.is_empty(),
        "families without HELP: {undescribed:?}"
    );

    // Counters at 0 before anything happened.
    for (family, labels) in [
        (
            "herald_commands_total",
            vec!["domain=\"tickets\"", "outcome=\"done\""],
        ),
        (
            "herald_commands_total",
            vec!["domain=\"edges\"", "outcome=\"duplicate\""],
        ),
        ("herald_command_conflicts_total", vec!["domain=\"tickets\""]),
        ("herald_reactions_total", vec!["outcome=\"dead_lettered\""]),
        ("herald_timers_fired_total", vec!["late=\"true\""]),
        (
            "herald_timers_deliveries_total",
            vec!["kind=\"command\"", "outcome=\"delivered\""],
        ),
        ("herald_store_errors_total", vec!["kind=\"unavailable\""]),
        (
            "herald_broker_publish_errors_total",
            vec!["backend=\"memory\""],
        ),
        ("herald_ingest_duplicates_total", vec![]),
        ("herald_relay_republished_total", vec!["cause=\"retry\""]),
        ("herald_projection_parked_total", vec!["projection="]),
    ] {
        assert_eq!(
            series(&text, family, &labels),
            Some(0.0),
            "{family}{labels:?} at 0 from the start"
        );
    }
    assert_eq!(
        series(
            &text,
            "herald_store_appends_total",
            &[&format!("backend=\"{backend}\""), "outcome=\"written\""]
        ),
        Some(0.0)
    );
    // Only the Postgres writer plans on memory, and says how.
    if backend == "postgres" {
        for path in ["path=\"remembered\"", "path=\"careful\""] {
            assert_eq!(
                series(&text, "herald_store_batches_total", &[path]),
                Some(0.0),
                "{path}"
            );
        }
        assert_eq!(
            series(&text, "herald_store_replanned_total", &[]),
            Some(0.0)
        );
    }

    // Build info and process metrics.
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        series(&text, "herald_build_info", &[&version]),
        Some(1.0),
        "{text}"
    );
    assert!(value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
    assert!(value(&text, "process_cpu_seconds_total").is_some_and(|v| v > 0.0));
    assert!(value(&text, "process_open_fds").is_some_and(|v| v >= 3.0));
    assert!(value(&text, "process_max_fds").is_some_and(|v| v >= 3.0));
    let start = value(&text, "process_start_time_seconds").expect("a start time");
    assert!(
        start <= started + 1.0 && start > started - 120.0,
        "start time {start}, fetched at {started}"
    );
    for name in ["process_cpu_seconds_total", "process_open_fds"] {
        assert!(
            helped.contains(name) && typed.contains(name),
            "{name} described"
        );
    }

    // Subscribers: a websocket and an SSE stream, connecting and going away.
    let subscribers = |kind: &'static str| {
        let base = base.clone();
        async move {
            series(
                &metrics(&base).await,
                "herald_subscribers",
                &[&format!("kind=\"{kind}\"")],
            )
        }
    };
    assert_eq!(subscribers("websocket").await, Some(0.0));
    assert_eq!(subscribers("sse").await, Some(0.0));
    let (socket, ready) = WsClient::connect(&base, "").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(subscribers("websocket").await, Some(1.0));
    drop(socket);
    assert!(
        eventually(PATIENCE, || async {
            subscribers("websocket").await == Some(0.0)
        })
        .await,
        "the gauge goes back to 0 when the websocket goes away"
    );
    let sse = reqwest::get(format!("{base}/v1/events/stream?from=now"))
        .await
        .expect("the SSE stream opens");
    assert_eq!(sse.status(), 200);
    assert!(
        eventually(PATIENCE, || async { subscribers("sse").await == Some(1.0) }).await,
        "an SSE stream counts"
    );
    drop(sse);
    // The stream's task sees the client gone when actix drops the body (at
    // the latest, at a write after it went: heartbeats come every 15 s).
    assert!(
        eventually(2 * PATIENCE, || async {
            subscribers("sse").await == Some(0.0)
        })
        .await,
        "the gauge goes back to 0 when the SSE client goes away"
    );

    // A command, projected: the last-progress gauge appears.
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/v1/tickets/M-1/open"))
        .json(&json!({"kind": "other", "customer": "acme", "description": "metrics"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let progressed = eventually(PATIENCE, || async {
        let text = metrics(&base).await;
        series(
            &text,
            "herald_projection_last_progress_seconds",
            &["projection="],
        )
        .is_some_and(|at| (at - now_secs()).abs() < 60.0)
    })
    .await;
    assert!(
        progressed,
        "no herald_projection_last_progress_seconds on {backend}"
    );
    let text = metrics(&base).await;
    assert_eq!(
        series(
            &text,
            "herald_commands_total",
            &["domain=\"tickets\"", "outcome=\"done\""]
        ),
        Some(1.0)
    );
    assert!(series(&text, "herald_projection_lag_events", &["projection="]).is_some());
    let (typed, helped) = families(&text);
    let undescribed: Vec<_> = typed.difference(&helped).collect();
    assert!(
        undescribed.is_empty(),
        "families without HELP after work: {undescribed:?}"
    );
    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
}
