//! A client whose connection drops cannot tell whether its command
//! committed; with an `Idempotency-Key` it can simply send it again. Against
//! `herald serve` on both stores: a keyed command and a keyed append are
//! answered, the process is killed with SIGKILL, restarted, and the same
//! requests sent again get the original answers (200, `duplicate: true`,
//! `Idempotent-Replayed: true`, the same events) while the log holds one set
//! of events; a command that changed nothing answers the same on a repeat
//! even after the state moved on; the key with another body is refused
//! (422 `idempotency-key-reused`, naming the key); keys are scoped to the
//! aggregate. Then 24 keyed commands are in flight when the process is
//! killed: sent again after the restart, each is answered with its events
//! (never refused as already done) and each aggregate holds exactly one.
//! Finally two processes on one Postgres store (one RabbitMQ vhost) answer
//! the same key alike.

mod support;

use std::time::Duration;

use herald_testkit::{TestDatabase, TestVhost};
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(30);

/// An answer: status, whether it says it is a replay, and the JSON body.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    replayed: bool,
    body: Value,
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Answer {
    let mut request = client.post(format!("{base}{path}")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let resp = request.send().await.expect("herald answers");
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    Answer {
        status,
        replayed,
        body: resp.json().await.unwrap_or(Value::Null),
    }
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

fn open(customer: &str) -> Value {
    json!({"kind": "other", "customer": customer, "description": "retry me"})
}

/// The first answer, as a repeat says it: the same but `duplicate`.
fn as_repeat(first: &Value) -> Value {
    let mut repeat = first.clone();
    repeat["duplicate"] = json!(true);
    repeat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = TestDatabase::create().await;
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

    // A keyed command, a keyed no-op and a keyed append, each answered.
    let opened = post(
        &client,
        &base,
        "/v1/tickets/T-1/open",
        Some("open-1"),
        &open("acme"),
    )
    .await;
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    assert!(!opened.replayed);
    assert_eq!(opened.body["duplicate"], false);
    let assign = json!({"assignee": "ann"});
    let first = post(&client, &base, "/v1/tickets/T-1/assign", None, &assign).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let unchanged = post(
        &client,
        &base,
        "/v1/tickets/T-1/assign",
        Some("assign-ann"),
        &assign,
    )
    .await;
    assert_eq!(unchanged.status, 200, "{:?}", unchanged.body);
    assert_eq!(
        unchanged.body["events"],
        json!([]),
        "assigning ann again changes nothing"
    );
    let append = json!({"events": [
        {"type": "tickets.note_appended", "version": 1, "payload": {"note": "one"}},
        {"type": "tickets.note_appended", "version": 1, "payload": {"note": "two"}},
    ]});
    let appended = post(
        &client,
        &base,
        "/v1/streams/tickets/S-1/events",
        Some("append-1"),
        &append,
    )
    .await;
    assert_eq!(appended.status, 201, "{:?}", appended.body);

    // Killed at once, as a crash would, and started again.
    herald.kill9();
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;

    let again = post(
        &client,
        &base,
        "/v1/tickets/T-1/open",
        Some("open-1"),
        &open("acme"),
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert!(again.replayed, "a repeat says so in Idempotent-Replayed");
    assert_eq!(
        again.body,
        as_repeat(&opened.body),
        "the first answer, marked as a repeat"
    );
    let again = post(
        &client,
        &base,
        "/v1/streams/tickets/S-1/events",
        Some("append-1"),
        &append,
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert!(again.replayed);
    assert_eq!(again.body, as_repeat(&appended.body));
    assert_eq!(
        events(&client, &base, "tickets/S-1").await.len(),
        2,
        "one set of events"
    );

    // The no-op repeated after the state moved on: still the first answer,
    // not a new assignment.
    let bob = post(
        &client,
        &base,
        "/v1/tickets/T-1/assign",
        None,
        &json!({"assignee": "bob"}),
    )
    .await;
    assert_eq!(bob.status, 201, "{:?}", bob.body);
    let again = post(
        &client,
        &base,
        "/v1/tickets/T-1/assign",
        Some("assign-ann"),
        &assign,
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body, as_repeat(&unchanged.body));
    let state: Value = client
        .get(format!("{base}/v1/tickets/T-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["state"]["assignee"], "bob", "{state}");
    let opened_events: Vec<Value> = events(&client, &base, "tickets/T-1")
        .await
        .into_iter()
        .filter(|e| e["type"] == "tickets.ticket_opened")
        .collect();
    assert_eq!(opened_events.len(), 1);

    // The key with another body, or another command, is refused by name;
    // on another aggregate it is another key.
    for (path, body) in [
        ("/v1/tickets/T-1/open", open("globex")),
        ("/v1/tickets/T-1/append_note", json!({"note": "x"})),
    ] {
        let reused = post(&client, &base, path, Some("open-1"), &body).await;
        assert_eq!(reused.status, 422, "{:?}", reused.body);
        assert_eq!(
            reused.body["type"],
            "urn:herald:problem:idempotency-key-reused"
        );
        assert_eq!(reused.body["idempotency_key"], "open-1");
        assert!(reused.body["detail"].as_str().unwrap().contains("open-1"));
    }
    let mut other_body = append.clone();
    other_body["events"][1]["payload"]["note"] = json!("three");
    let reused = post(
        &client,
        &base,
        "/v1/streams/tickets/S-1/events",
        Some("append-1"),
        &other_body,
    )
    .await;
    assert_eq!(reused.status, 422, "{:?}", reused.body);
    assert_eq!(
        reused.body["type"],
        "urn:herald:problem:idempotency-key-reused"
    );
    assert_eq!(events(&client, &base, "tickets/S-1").await.len(), 2);
    let elsewhere = post(
        &client,
        &base,
        "/v1/tickets/T-2/open",
        Some("open-1"),
        &open("acme"),
    )
    .await;
    assert_eq!(elsewhere.status, 201, "{:?}", elsewhere.body);
    assert_ne!(
        elsewhere.body["events"][0]["id"],
        opened.body["events"][0]["id"]
    );

    // A refused command keeps nothing: the key serves the corrected one.
    let refused = post(
        &client,
        &base,
        "/v1/tickets/T-3/open",
        Some("open-3"),
        &open(" "),
    )
    .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let corrected = post(
        &client,
        &base,
        "/v1/tickets/T-3/open",
        Some("open-3"),
        &open("acme"),
    )
    .await;
    assert_eq!(corrected.status, 201, "{:?}", corrected.body);

    // A malformed key is refused, naming the header.
    let bad = post(
        &client,
        &base,
        "/v1/tickets/T-4/open",
        Some("with space"),
        &open("acme"),
    )
    .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(bad.body["header"], "Idempotency-Key");

    // 24 keyed commands in flight when the process dies.
    let sent: Vec<_> = (0..24)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let path = format!("/v1/tickets/K-{i}/open");
                let key = format!("kill-{i}");
                let mut request = client
                    .post(format!("{base}{path}"))
                    .header("Idempotency-Key", key)
                    .json(&open("acme"));
                request = request.timeout(PATIENCE);
                match request.send().await {
                    Ok(resp) if resp.status().as_u16() == 201 => resp.json::<Value>().await.ok(),
                    _ => None,
                }
            })
        })
        .collect();
    // The first answer shows the commands are being taken; then SIGKILL.
    let answered =
        herald_testkit::eventually(PATIENCE, || async { sent.iter().any(|t| t.is_finished()) })
            .await;
    assert!(answered, "no command was answered");
    herald.kill9();
    let mut first_answers = Vec::new();
    for task in sent {
        first_answers.push(task.await.unwrap());
    }
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    let mut unanswered = 0;
    for (i, first) in first_answers.iter().enumerate() {
        let again = post(
            &client,
            &base,
            &format!("/v1/tickets/K-{i}/open"),
            Some(&format!("kill-{i}")),
            &open("acme"),
        )
        .await;
        match first {
            Some(first) => {
                assert_eq!(again.status, 200, "K-{i}: {:?}", again.body);
                assert_eq!(again.body, as_repeat(first), "K-{i}");
            }
            None => {
                unanswered += 1;
                // Committed before the kill (200, its events) or not (201):
                // never refused as already open.
                assert!(
                    again.status == 200 || again.status == 201,
                    "K-{i}: {} {:?}",
                    again.status,
                    again.body
                );
                assert_eq!(again.body["events"].as_array().map(Vec::len), Some(1));
            }
        }
        let stored = events(&client, &base, &format!("tickets/K-{i}")).await;
        assert_eq!(stored.len(), 1, "K-{i} holds one set of events: {stored:?}");
        assert_eq!(stored[0]["id"], again.body["events"][0]["id"]);
    }
    eprintln!("{unanswered} of 24 commands were unanswered when the process was killed");
    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_store_answer_a_key_alike() {
    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
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
    a.wait_healthy(PATIENCE).await;
    b.wait_healthy(PATIENCE).await;
    let client = reqwest::Client::new();

    let first = post(
        &client,
        &a.base,
        "/v1/tickets/P-1/open",
        Some("shared"),
        &open("acme"),
    )
    .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let repeat = post(
        &client,
        &b.base,
        "/v1/tickets/P-1/open",
        Some("shared"),
        &open("acme"),
    )
    .await;
    assert_eq!(repeat.status, 200, "{:?}", repeat.body);
    assert!(repeat.replayed);
    assert_eq!(repeat.body, as_repeat(&first.body));
    let reused = post(
        &client,
        &b.base,
        "/v1/tickets/P-1/open",
        Some("shared"),
        &open("globex"),
    )
    .await;
    assert_eq!(reused.status, 422, "{:?}", reused.body);

    let append = json!({"events": [{"type": "tickets.note_appended", "version": 1, "payload": {"note": "n"}}]});
    let first = post(
        &client,
        &b.base,
        "/v1/streams/tickets/P-2/events",
        Some("shared"),
        &append,
    )
    .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let repeat = post(
        &client,
        &a.base,
        "/v1/streams/tickets/P-2/events",
        Some("shared"),
        &append,
    )
    .await;
    assert_eq!(repeat.status, 200, "{:?}", repeat.body);
    assert_eq!(repeat.body, as_repeat(&first.body));
    assert_eq!(events(&client, &a.base, "tickets/P-1").await.len(), 1);
    assert_eq!(events(&client, &a.base, "tickets/P-2").await.len(), 1);
}
