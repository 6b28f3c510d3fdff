//! Exactly once in effect, as users run it: a `herald serve` with two
//! automations — one that notes every opened ticket and appends an event of
//! a runtime type, one that notes a ticket still unresolved 2 s after it
//! opened (an absence) — is killed with SIGKILL while tickets are being
//! opened and restarted. Afterwards every ticket has exactly one note and
//! one event from the first automation, every absence ended exactly once,
//! and a ticket got the "unresolved" note exactly when no resolution came
//! before its wait ended. Nothing with a dedupe key happened twice, nothing
//! was skipped. On the embedded defaults and on Postgres.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(60);
const TICKETS: usize = 60;
/// SIGKILL after this many tickets were acknowledged.
const KILL_AFTER: usize = 25;

const SEEN: &str = r#"{
  "name": "seen",
  "trigger": {"event": {"types": ["tickets.ticket_opened"]}},
  "actions": [
    {"command": {"domain": "tickets", "id": "{{ event.stream_id }}", "name": "append_note",
                 "body": {"note": "seen by automation", "author": "bot"}}},
    {"event": {"stream": "audit/{{ event.stream_id }}", "type": "audit.ticket_seen",
               "payload": {"ticket": "{{ event.stream_id }}", "customer": "{{ event.payload.customer }}"}}}
  ]
}"#;

const UNRESOLVED: &str = r#"{
  "name": "unresolved",
  "trigger": {"absence": {
    "start": {"types": ["tickets.ticket_opened"]},
    "missing": {"types": ["tickets.ticket_resolved"]},
    "within": "2s",
    "correlate": "event.stream"}},
  "actions": [
    {"command": {"domain": "tickets", "id": "{{ event.stream_id }}", "name": "append_note",
                 "body": {"note": "still unresolved after 2 s", "author": "bot"}}}
  ]
}"#;

async fn post(client: &reqwest::Client, url: String, body: &Value) -> Result<(u16, Value), String> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn events(client: &reqwest::Client, base: &str, stream: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let resp = client
            .get(format!(
                "{base}/v1/streams/{stream}/events?from_version={from}&limit=1000"
            ))
            .send()
            .await
            .expect("herald answers");
        if resp.status().as_u16() == 404 {
            return all;
        }
        let page: Value = resp.json().await.expect("a JSON page");
        let batch = page["events"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        from = batch.last().unwrap()["stream_version"].as_u64().unwrap() + 1;
        all.extend(batch);
    }
}

fn ticket(i: usize) -> String {
    format!("T-{i:03}")
}

async fn scenario(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["serve", "--listen", listen.as_str()];
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();

    let (status, body) = post(
        &client,
        format!("{base}/v1/schemas"),
        &json!({"type": "audit.ticket_seen", "schema": {
            "type": "object", "required": ["ticket", "customer"],
            "properties": {"ticket": {"type": "string"}, "customer": {"type": "string"}}}}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    for text in [SEEN, UNRESOLVED] {
        let definition: Value = serde_json::from_str(text).unwrap();
        let (status, body) = post(&client, format!("{base}/v1/automations"), &definition)
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
    }

    // Open tickets from four clients; resolve every third one at once. Kill
    // Herald once enough were acknowledged, while the rest are in flight.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let open = {
        let client = client.clone();
        let base = base.clone();
        move |i: usize| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let body = json!({"kind": "other", "customer": format!("c-{}", i % 7), "description": "d", "opened_by": "me"});
                let opened = post(
                    &client,
                    format!("{base}/v1/tickets/{}/open", ticket(i)),
                    &body,
                )
                .await;
                if !matches!(opened, Ok((201 | 200 | 409, _))) {
                    return false;
                }
                if i.is_multiple_of(3) {
                    let resolved = post(
                        &client,
                        format!("{base}/v1/tickets/{}/resolve", ticket(i)),
                        &json!({"resolution": "done"}),
                    )
                    .await;
                    if !matches!(resolved, Ok((200 | 201 | 409, _))) {
                        return false;
                    }
                }
                true
            }
        }
    };
    let mut done = [false; TICKETS];
    let (kill_tx, mut kill_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let open = open.clone();
            let acknowledged = Arc::clone(&acknowledged);
            let kill_tx = kill_tx.clone();
            tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in (w..TICKETS).step_by(4) {
                    let good = open(i).await;
                    if good && acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        let _ = kill_tx.send(true);
                    }
                    ok.push((i, good));
                }
                ok
            })
        })
        .collect();
    kill_rx.wait_for(|k| *k).await.unwrap();
    herald.kill9();
    for worker in workers {
        for (i, good) in worker.await.unwrap() {
            done[i] = good;
        }
    }
    assert!(
        done.iter().any(|d| !d),
        "the kill came after every ticket: nothing was in flight"
    );

    // Restart on the same store and finish what was not acknowledged, as
    // a client retrying would.
    let mut herald = Herald::start(dir.path(), &args, env);
    herald.wait_healthy(PATIENCE).await;
    for (i, good) in done.iter().enumerate() {
        if !good {
            assert!(
                open(i).await,
                "ticket {i} could not be opened after the restart"
            );
        }
    }

    // Every absence ends (2 s after its ticket opened), and the engine
    // handles it.
    let all_ended = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let elapsed = events(&client, &base, "automations/unresolved").await;
            let ended = elapsed
                .iter()
                .filter(|e| e["type"] == "automations.absence_elapsed")
                .count();
            if ended < TICKETS {
                return false;
            }
            let shown: Value = client
                .get(format!("{base}/v1/automations/unresolved"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let stats = &shown["stats"];
            stats["matched"].as_u64().unwrap_or(0) + stats["cancelled"].as_u64().unwrap_or(0)
                >= TICKETS as u64
        }
    })
    .await;
    assert!(all_ended, "not every absence ended and was handled");

    let elapsed = events(&client, &base, "automations/unresolved").await;
    let mut ended_at: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in elapsed
        .iter()
        .filter(|e| e["type"] == "automations.absence_elapsed")
    {
        ended_at
            .entry(e["payload"]["trigger_event"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["position"].as_u64().unwrap());
    }
    assert!(
        elapsed
            .iter()
            .all(|e| e["type"] != "automations.action_failed"),
        "an action failed: {elapsed:?}"
    );

    for i in 0..TICKETS {
        let id = ticket(i);
        // Wait for the first automation's effects, then count them.
        let settled = eventually(PATIENCE, || {
            let client = client.clone();
            let base = base.clone();
            let id = id.clone();
            async move {
                let notes = events(&client, &base, &format!("tickets/{id}")).await;
                let audit = events(&client, &base, &format!("audit/{id}")).await;
                notes
                    .iter()
                    .any(|e| e["payload"]["note"] == "seen by automation")
                    && !audit.is_empty()
            }
        })
        .await;
        assert!(settled, "{id}: the first automation did not act");
        let stream = events(&client, &base, &format!("tickets/{id}")).await;
        let opened = stream
            .iter()
            .find(|e| e["type"] == "tickets.ticket_opened")
            .expect("opened");
        let seen = stream
            .iter()
            .filter(|e| e["payload"]["note"] == "seen by automation")
            .count();
        assert_eq!(seen, 1, "{id}: the note of `seen` {seen} times");
        let audit = events(&client, &base, &format!("audit/{id}")).await;
        assert_eq!(
            audit.len(),
            1,
            "{id}: the audit event {} times",
            audit.len()
        );
        assert_eq!(audit[0]["producer"], "automation:seen");
        assert_eq!(audit[0]["causation_id"], opened["id"]);

        let ends = ended_at
            .get(opened["id"].as_str().unwrap())
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            ends.len(),
            1,
            "{id}: its absence ended {} times",
            ends.len()
        );
        let resolved_before = stream.iter().any(|e| {
            e["type"] == "tickets.ticket_resolved" && e["position"].as_u64().unwrap() < ends[0]
        });
        let expected = usize::from(!resolved_before);
        let got = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            let base = base.clone();
            let id = id.clone();
            async move {
                let stream = events(&client, &base, &format!("tickets/{id}")).await;
                stream
                    .iter()
                    .filter(|e| e["payload"]["note"] == "still unresolved after 2 s")
                    .count()
                    == expected
            }
        })
        .await;
        assert!(
            got,
            "{id}: the unresolved note is not there exactly {expected} times"
        );
    }
    // Nothing more comes: the counts hold once the engine is at the head.
    let shown: Value = client
        .get(format!("{base}/v1/automations/seen"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["stats"]["failed"], 0, "{shown}");
    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
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
