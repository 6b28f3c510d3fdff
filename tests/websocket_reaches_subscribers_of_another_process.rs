//! Two Herald processes on one Postgres store (and one RabbitMQ virtual
//! host: processes sharing a store share a broker): an event appended
//! through one reaches a websocket subscriber of the other promptly (woken
//! by LISTEN/NOTIFY), and a cursor issued by one process resumes on the
//! other.

mod support;

use std::time::{Duration, Instant};

use herald_testkit::{TestDatabase, TestVhost};
use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_one_process_reach_subscribers_of_another() {
    let db = TestDatabase::create().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let vhost = TestVhost::create().await;
    let env = [("HERALD_STORE", db.url()), ("HERALD_BROKER", vhost.url())];
    let mut a = Herald::start(
        dir_a.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &env,
    );
    let mut b = Herald::start(
        dir_b.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &env,
    );
    a.wait_healthy(Duration::from_secs(10)).await;
    b.wait_healthy(Duration::from_secs(10)).await;

    let (mut sub, _) = WsClient::connect(&b.base, "").await;
    sub.send(
        json!({"type": "subscribe", "id": "t", "filter": {"types": ["tickets.*"]}, "from": "now"}),
    )
    .await;
    loop {
        if sub.next().await.unwrap()["type"] == "live" {
            break;
        }
    }
    let http = reqwest::Client::new();
    let mut cursor = String::new();
    for i in 0..5 {
        let sent = Instant::now();
        let resp = http
            .post(format!("{}/v1/events", a.base))
            .json(&json!({"stream": "tickets/X-1", "type": "tickets.note_appended", "version": 1, "payload": {"note": format!("n{i}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let frame = sub.next().await.unwrap();
        assert_eq!(frame["type"], "event", "{frame}");
        assert_eq!(frame["event"]["payload"]["note"], format!("n{i}"));
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "took {took:?}: not woken by the other process's commit"
        );
        cursor = frame["cursor"].as_str().unwrap().to_owned();
    }

    // A cursor from process B resumes on process A.
    http.post(format!("{}/v1/events", b.base))
        .json(&json!({"stream": "tickets/X-1", "type": "tickets.note_appended", "version": 1, "payload": {"note": "after"}}))
        .send()
        .await
        .unwrap();
    let (mut other, _) = WsClient::connect(&a.base, "").await;
    other
        .send(json!({"type": "subscribe", "id": "t", "filter": {}, "from": cursor}))
        .await;
    let first: Value = loop {
        let f = other.next().await.unwrap();
        if f["type"] == "event" {
            break f;
        }
    };
    assert_eq!(first["event"]["payload"]["note"], "after");
}
