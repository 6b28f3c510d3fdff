//! On SIGTERM, `herald serve` stops taking connections, lets in-flight
//! appends finish and commits everything it acknowledged: after a restart,
//! every append that was answered 201 is in the store.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{free_port, Herald};

async fn acknowledged_appends_survive_sigterm(dir: &std::path::Path, env: &[(&str, &str)]) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir, &["serve", "--listen", &listen], env);
    herald.wait_healthy(Duration::from_secs(10)).await;

    let client = reqwest::Client::new();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let (client, base, acknowledged) = (client.clone(), herald.base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0.. {
                    let id = uuid::Uuid::now_v7();
                    let body = json!({"events": [{"id": id, "type": "tickets.note_appended", "version": 1,
                                                   "payload": {"note": format!("p{p}-{n}")}}]});
                    match client.post(format!("{base}/v1/streams/tickets/shutdown-{p}/events")).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            ids.push(id);
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        // Refused while shutting down, or the connection closed: not acknowledged.
                        _ => break,
                    }
                }
                ids
            })
        })
        .collect();

    assert!(
        eventually(Duration::from_secs(30), || async {
            acknowledged.load(Ordering::SeqCst) >= 200
        })
        .await
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = herald.terminate(Duration::from_secs(30));
        (status, herald)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "herald exited with {}", status.0);

    let mut acked = HashSet::new();
    for p in producers {
        acked.extend(p.await.unwrap());
    }
    assert!(acked.len() >= 200);

    let mut herald = Herald::start(dir, &["serve", "--listen", &listen], env);
    herald.wait_healthy(Duration::from_secs(10)).await;
    let mut stored = HashSet::new();
    let mut from = 0;
    loop {
        let page: Value = client
            .get(format!("{}/v1/events?from={from}&limit=1000", herald.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        stored.extend(
            events
                .iter()
                .map(|e| e["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()),
        );
        from = page["next"].as_u64().unwrap();
    }
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged appends are not stored, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_appends_survive_sigterm(dir.path(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    acknowledged_appends_survive_sigterm(dir.path(), &[("HERALD_STORE", db.url())]).await;
}
