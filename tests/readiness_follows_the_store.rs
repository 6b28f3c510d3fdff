//! `/healthz` answers while the process runs; `/readyz` answers 200 only
//! while the store answers, and a problem (503) when it does not.

mod support;

use std::time::Duration;

use herald_testkit::{database_url, eventually, TestDatabase};
use serde_json::Value;
use support::{free_port, Herald};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_when_postgres_goes_away() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[("HERALD_STORE", db.url())],
    );
    herald.wait_healthy(Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{}/readyz", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["store"], "postgres");

    // Take the database away under the running process.
    let (admin, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name()))
        .await
        .unwrap();

    let url = format!("{}/readyz", herald.base);
    assert!(
        eventually(Duration::from_secs(15), || {
            let request = client.get(&url).send();
            async move { request.await.is_ok_and(|r| r.status() == 503) }
        })
        .await,
        "/readyz never reported the store gone"
    );
    let problem = client.get(&url).send().await.unwrap();
    assert_eq!(
        problem.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = problem.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:store-unavailable");
    let health = client
        .get(format!("{}/healthz", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness must not depend on the store"
    );
}
