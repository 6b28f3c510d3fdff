//! A relay that makes no progress while events wait is visible within 10 s
//! and stops being so when the fault goes, end to end against librdkafka's
//! mock cluster: the broker refuses every produce request with
//! NOT_ENOUGH_REPLICAS (a cluster short of in-sync replicas; the producer
//! retries), an event is appended, and `/readyz` turns 503 `stalled`
//! naming the relay, `herald_stalled{component="relay"}` turns 1 and the
//! log says so, while the broker itself still answers; the refusals stop,
//! the event is published, and readiness, gauge and log say the relay
//! moves again.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::kafka::{self, Serve, PARTITIONS};
use support::probe;

const VISIBLE_WITHIN: Duration = Duration::from_secs(10);
const PATIENCE: Duration = Duration::from_secs(60);
const STALLED_RELAY: &str = r#"herald_stalled{component="relay"}"#;

/// Waits until `check` holds, at most until `limit` after `since`; answers
/// how long after `since` it held.
async fn within(
    since: Instant,
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    loop {
        if check().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_stalled_by_refused_publishes_shows_in_readiness_metrics_and_log() {
    let mock = kafka::cluster();
    let servers = mock.bootstrap_servers();
    kafka::create_topics(&mock, &kafka::needed(&servers), |_| PARTITIONS as i32);
    let dir = tempfile::tempdir().unwrap();
    let herald = Serve::start(dir.path(), &servers, &[]);
    let base = herald.base.clone();
    within(Instant::now(), PATIENCE, "readiness", async || {
        probe::readyz(&base).await.0 == 200
    })
    .await;
    within(Instant::now(), PATIENCE, "a relay gauge at 0", async || {
        probe::metric(&base, STALLED_RELAY).await == Some(0.0)
    })
    .await;

    let append = |i: u32| {
        let base = base.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/events"))
                .json(&json!({"events": [{
                    "stream": "tickets/T-1",
                    "type": "tickets.note_appended",
                    "version": 1,
                    "payload": {"note": format!("note {i}")},
                }]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
            let answer: serde_json::Value = response.json().await.unwrap();
            answer["results"][0]["position"]
                .as_u64()
                .unwrap_or_else(|| panic!("a position in {answer}")) as f64
        }
    };
    let first = append(0).await;
    within(
        Instant::now(),
        PATIENCE,
        "the first event published",
        async || probe::metric(&base, "herald_relay_checkpoint_position").await == Some(first),
    )
    .await;

    // The fault: every produce request is refused (more than the relay
    // can use up in this test).
    mock.refuse_produce(100_000);
    let waiting = append(1).await;
    let appended = Instant::now();
    let readiness = within(
        appended,
        VISIBLE_WITHIN,
        "a stalled readiness",
        async || {
            let (status, body) = probe::readyz(&base).await;
            status == 503
                && body["type"] == "urn:herald:problem:stalled"
                && body["stalled"][0]["component"] == "relay"
        },
    )
    .await;
    let gauge = within(appended, VISIBLE_WITHIN, "the stall gauge", async || {
        probe::metric(&base, STALLED_RELAY).await == Some(1.0)
    })
    .await;
    let logged = within(appended, VISIBLE_WITHIN, "the stall logged", async || {
        herald.log().iter().any(|l| {
            l.contains("Component makes no progress while work waits.")
                && l.contains("component=relay")
        })
    })
    .await;
    let (_, body) = probe::readyz(&base).await;
    assert_eq!(body["status"], 503);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("relay has made no progress for")),
        "{body}"
    );
    assert!(body["stalled"][0]["stalled_seconds"].as_u64().unwrap() >= 5);
    assert!(
        body["stalled"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("has not confirmed")),
        "{body}"
    );
    assert_eq!(
        probe::metric(&base, "herald_relay_checkpoint_position").await,
        Some(first),
        "nothing past the stall was checkpointed"
    );
    eprintln!(
        "stall visible after the append: readiness {readiness:?}, gauge {gauge:?}, log {logged:?}"
    );

    // The fault goes: the relay publishes the waiting event and moves on.
    mock.accept_produce();
    let accepted = Instant::now();
    let recovered = within(accepted, PATIENCE, "readiness again", async || {
        probe::readyz(&base).await.0 == 200
    })
    .await;
    within(accepted, PATIENCE, "the gauge back at 0", async || {
        probe::metric(&base, STALLED_RELAY).await == Some(0.0)
    })
    .await;
    within(accepted, PATIENCE, "the recovery logged", async || {
        herald
            .log()
            .iter()
            .any(|l| l.contains("Component makes progress again.") && l.contains("component=relay"))
    })
    .await;
    // The checkpoint follows once the log is quiet (200 ms), not at once.
    within(
        accepted,
        PATIENCE,
        "the waiting event published and checkpointed",
        async || {
            probe::metric(&base, "herald_relay_checkpoint_position")
                .await
                .is_some_and(|p| p >= waiting)
        },
    )
    .await;
    assert!(
        !herald
            .log()
            .iter()
            .any(|l| l.contains("Relay lost its lease")),
        "the relay kept its lease through the slow publish"
    );
    eprintln!("ready again {recovered:?} after the refusals stopped");
}
