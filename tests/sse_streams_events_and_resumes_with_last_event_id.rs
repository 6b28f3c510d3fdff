//! Server-sent events at `/v1/events/stream`: the same filters as the
//! websocket, each event's `id` its cursor, and a reconnect with
//! `Last-Event-ID` continuing exactly after the last event received.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::{free_port, Herald};

/// Reads SSE events (id, data) until `count` arrived.
async fn read_events(resp: reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("events keep coming")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            let mut kind = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_owned());
                }
            }
            if kind.as_deref() == Some("event") {
                events.push((id.unwrap(), serde_json::from_str(&data.unwrap()).unwrap()));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_stream_with_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[],
    );
    herald.wait_healthy(Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    let publish = |stream: &str, n: usize| {
        let body = json!({"events": (0..n).map(|i| json!({"stream": stream, "type": "tickets.note_appended", "version": 1, "payload": {"note": format!("{stream} {i}")}})).collect::<Vec<_>>()});
        http.post(format!("{}/v1/events", herald.base))
            .json(&body)
            .send()
    };
    assert_eq!(publish("tickets/S-1", 5).await.unwrap().status(), 201);
    assert_eq!(publish("tickets/S-2", 5).await.unwrap().status(), 201);

    let url = format!(
        "{}/v1/events/stream?stream=tickets/S-1&from=start",
        herald.base
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = read_events(resp, 3).await;
    assert!(first.iter().all(|(_, e)| e["stream"] == "tickets/S-1"));
    let (last_id, last) = first.last().unwrap().clone();
    assert_eq!(last["payload"]["note"], "tickets/S-1 2");

    // Reconnect with Last-Event-ID: the next event is the one after.
    assert_eq!(publish("tickets/S-1", 2).await.unwrap().status(), 201);
    let resp = http
        .get(&url)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let rest = read_events(resp, 4).await;
    let notes: Vec<&str> = rest
        .iter()
        .map(|(_, e)| e["payload"]["note"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "tickets/S-1 3",
            "tickets/S-1 4",
            "tickets/S-1 0",
            "tickets/S-1 1"
        ]
    );

    // Bad parameters are problems.
    let resp = http
        .get(format!("{}/v1/events/stream?colour=red", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
