//! The websocket hub reads the log only while someone is subscribed. Across
//! the spells when nobody is — before the first subscriber, after the last
//! one leaves — a subscriber that resumes from a cursor still gets exactly
//! the events after it (history, then live, none twice, none missing), and
//! one that subscribes from now gets only what is appended after its
//! `subscribed` frame, not what was appended while the hub was idle.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

/// Appends `n` notes to one ticket stream; their positions.
async fn append(client: &reqwest::Client, base: &str, label: &str, n: usize) -> Vec<u64> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"stream": "tickets/T-quiet", "type": "tickets.note_appended", "version": 1,
                   "payload": {"note": format!("{label} {i}")}})
        })
        .collect();
    let resp = client
        .post(format!("{base}/v1/events"))
        .json(&json!({ "events": events }))
        .send()
        .await
        .expect("append");
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let body: Value = resp.json().await.unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect()
}

/// Reads frames of subscription `id` until `want` events arrived: their
/// positions and the last event's cursor. Fails on `closing`.
async fn events(client: &mut WsClient, id: &str, want: usize) -> (Vec<u64>, String) {
    let (mut positions, mut cursor) = (Vec::new(), String::new());
    while positions.len() < want {
        let frame = client.next().await.expect("a frame within 30 s");
        match frame["type"].as_str() {
            Some("event") if frame["subscription"] == id => {
                positions.push(frame["event"]["position"].as_u64().unwrap());
                cursor = frame["cursor"].as_str().unwrap().to_owned();
            }
            Some("closing") | Some("close") => panic!("closed: {frame}"),
            _ => {}
        }
    }
    (positions, cursor)
}

/// Waits for the `live` frame of subscription `id`; no event may come first.
async fn live(client: &mut WsClient, id: &str) {
    loop {
        let frame = client.next().await.expect("a frame within 30 s");
        match frame["type"].as_str() {
            Some("live") if frame["subscription"] == id => return,
            Some("event") => panic!("an event before the live edge: {frame}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_resume_exactly_after_the_hub_was_idle() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(10)).await;
    let base = herald.base.clone();
    let http = reqwest::Client::new();

    // Appended before anyone subscribed.
    append(&http, &base, "before", 5).await;

    // A subscribes from now and gets only what follows.
    let (mut a, ready) = WsClient::connect(&base, "").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    a.send(json!({"type": "subscribe", "id": "a", "filter": {"streams": ["tickets/T-quiet"]}, "from": "now"}))
        .await;
    live(&mut a, "a").await;
    let for_a = append(&http, &base, "for a", 5).await;
    let (got, a_cursor) = events(&mut a, "a", 5).await;
    assert_eq!(got, for_a, "A: exactly the events after it subscribed");
    drop(a);

    // Nobody is subscribed: the hub goes idle while these are appended.
    let mut missed = Vec::new();
    for round in 0..4 {
        missed.extend(append(&http, &base, &format!("idle {round}"), 5).await);
    }

    // B resumes from A's last cursor: the idle spell's events as history,
    // then live ones, each once and in order.
    let (mut b, _) = WsClient::connect(&base, "").await;
    b.send(json!({"type": "subscribe", "id": "b", "filter": {"streams": ["tickets/T-quiet"]}, "from": a_cursor}))
        .await;
    let (history, _) = events(&mut b, "b", missed.len()).await;
    assert_eq!(
        history, missed,
        "B: the events A had not seen, nothing else"
    );
    live(&mut b, "b").await;
    let for_b = append(&http, &base, "for b", 5).await;
    let (got, _) = events(&mut b, "b", 5).await;
    assert_eq!(got, for_b, "B: then the live ones");
    drop(b);

    // Idle again; C subscribes from now and must not be handed what was
    // appended while nobody listened.
    let idle_again = append(&http, &base, "idle again", 5).await;
    let (mut c, _) = WsClient::connect(&base, "").await;
    c.send(json!({"type": "subscribe", "id": "c", "filter": {"streams": ["tickets/T-quiet"]}, "from": "now"}))
        .await;
    live(&mut c, "c").await;
    let for_c = append(&http, &base, "for c", 3).await;
    let (got, _) = events(&mut c, "c", 3).await;
    assert_eq!(got, for_c, "C: only what followed its subscription");

    // A second subscriber joining a live hub resumes exactly too.
    let (mut d, _) = WsClient::connect(&base, "").await;
    d.send(json!({"type": "subscribe", "id": "d", "filter": {"streams": ["tickets/T-quiet"]}, "from": a_cursor}))
        .await;
    let everything_after_a: Vec<u64> = missed
        .iter()
        .chain(&for_b)
        .chain(&idle_again)
        .chain(&for_c)
        .copied()
        .collect();
    let (got, _) = events(&mut d, "d", everything_after_a.len()).await;
    assert_eq!(got, everything_after_a, "D: everything after A's cursor");
    assert!(herald.terminate(Duration::from_secs(10)).success());
}
