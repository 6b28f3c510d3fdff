//! A durable timer survives `kill -9`: scheduled through the HTTP API of a
//! `herald serve` that is then killed with SIGKILL before the timer is due,
//! it fires once after the restart (marked late if it came due while Herald
//! was down) and its command is delivered once. Killed again right after
//! the firing and restarted, nothing fires or is delivered a second time.

mod support;

use std::time::Duration;

use chrono::Utc;
use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(30);

async fn post(client: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("herald answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn events(client: &reqwest::Client, base: &str, stream: &str) -> Vec<Value> {
    let resp = client
        .get(format!("{base}/v1/streams/{stream}/events?limit=1000"))
        .send()
        .await
        .expect("herald answers");
    if resp.status().as_u16() == 404 {
        return Vec::new();
    }
    let page: Value = resp.json().await.expect("a JSON page");
    page["events"].as_array().cloned().unwrap_or_default()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = herald_testkit::TestDatabase::create().await;
    scenario(&[("HERALD_STORE", db.url())]).await;
}

async fn scenario(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["serve", "--listen", listen.as_str()];
    let client = reqwest::Client::new();

    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let (status, body) = post(
        &client,
        &base,
        "/v1/tickets/T-1/open",
        json!({"kind": "other", "customer": "acme", "description": "watch"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let due = Utc::now() + chrono::Duration::seconds(2);
    let (status, body) = post(
        &client,
        &base,
        "/v1/timers/reminder-1/schedule",
        json!({
            "at": due.to_rfc3339(),
            "deliver": {"kind": "command", "domain": "tickets", "stream_id": "T-1", "name": "append_note", "body": {"note": "reminder"}},
            "label": "reminder",
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Killed before the timer is due; down until after it is due.
    herald.kill9();
    // The condition here is the clock itself: stay down past the due time.
    // Past the 2 s after which a firing counts as late.
    let down_until = due + chrono::Duration::milliseconds(3000);
    if let Ok(left) = (down_until - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    assert!(Utc::now() > due);
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    let noted = eventually(PATIENCE, || async {
        types(&events(&client, &base, "tickets/T-1").await)
            .contains(&"tickets.note_appended".to_owned())
    })
    .await;
    assert!(
        noted,
        "the timer's command was not delivered after the restart"
    );
    let fired: Vec<Value> = events(&client, &base, "timers/reminder-1")
        .await
        .into_iter()
        .filter(|e| e["type"] == "timers.timer_fired")
        .collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0]["payload"]["late"], true,
        "it came due while Herald was down"
    );

    // Killed again right after: the restart re-delivers idempotently. A
    // second timer, fired after the restart, marks the point by which the
    // scheduler has gone over the first one again.
    herald.kill9();
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    let (status, body) = post(
        &client,
        &base,
        "/v1/timers/reminder-2/schedule",
        json!({
            "after_secs": 1,
            "deliver": {"kind": "command", "domain": "tickets", "stream_id": "T-1", "name": "append_note", "body": {"note": "second"}},
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let second = eventually(PATIENCE, || async {
        types(&events(&client, &base, "tickets/T-1").await)
            .iter()
            .filter(|t| *t == "tickets.note_appended")
            .count()
            >= 2
    })
    .await;
    assert!(second, "the second timer did not deliver");
    let notes: Vec<Value> = events(&client, &base, "tickets/T-1")
        .await
        .into_iter()
        .filter(|e| e["type"] == "tickets.note_appended")
        .collect();
    assert_eq!(notes.len(), 2, "each timer delivered once: {notes:?}");
    assert_eq!(notes[0]["payload"]["note"], "reminder");
    assert_eq!(notes[1]["payload"]["note"], "second");
    let fired = events(&client, &base, "timers/reminder-1")
        .await
        .into_iter()
        .filter(|e| e["type"] == "timers.timer_fired")
        .count();
    assert_eq!(fired, 1);
    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
}
