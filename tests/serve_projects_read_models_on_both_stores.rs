//! `herald serve` runs the read models on whichever store it has: on the
//! embedded defaults (SQLite beside the event store) and on Postgres, a
//! ticket opened by a command shows in `GET /v1/views/tickets`, every
//! projection reports its lag on `GET /v1/projections`, and the lag gauges
//! are on `/metrics`.

mod support;

use std::time::Duration;

use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(60);

async fn scenario(herald: &mut Herald, store: &str) {
    herald.wait_healthy(PATIENCE).await;
    let client = reqwest::Client::new();
    let base = herald.base.clone();
    let opened = client
        .post(format!("{base}/v1/tickets/T-1/open"))
        .json(&json!({"kind": "other", "customer": "acme", "description": "slow link"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201, "{store}");

    let listed = eventually(PATIENCE, || {
        let (client, base) = (&client, &base);
        async move {
            let Ok(answer) = client
                .get(format!("{base}/v1/views/tickets?status=open&customer=acme"))
                .send()
                .await
            else {
                return false;
            };
            if !answer.status().is_success() {
                return false;
            }
            let page: Value = answer.json().await.unwrap();
            page["items"]
                .as_array()
                .is_some_and(|items| items.len() == 1 && items[0]["id"] == "T-1")
        }
    })
    .await;
    assert!(listed, "{store}: the ticket shows in its read model");

    let caught_up = eventually(PATIENCE, || {
        let (client, base) = (&client, &base);
        async move {
            let status: Value = client
                .get(format!("{base}/v1/projections"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let all = status["projections"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            all.len() == 6
                && all
                    .iter()
                    .all(|p| p["lag_events"] == 0 && p["generation"] == 1)
        }
    })
    .await;
    assert!(caught_up, "{store}: every projection reports no lag");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for projection in [
        "tickets",
        "edges",
        "timers",
        "drafts",
        "statistics",
        "streams",
    ] {
        assert!(
            metrics.contains(&format!(
                "herald_projection_lag_events{{projection=\"{projection}\"}}"
            )),
            "{store}: /metrics has the lag of {projection}"
        );
    }
    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "{store}: herald stops cleanly ({status})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    scenario(&mut herald, "embedded").await;
    assert!(dir.path().join("data/read-models.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[("HERALD_STORE", db.url())],
    );
    scenario(&mut herald, "postgres").await;
}
