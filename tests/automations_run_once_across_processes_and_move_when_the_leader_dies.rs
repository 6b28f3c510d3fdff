//! Several processes, one store: two `herald serve` on one Postgres and
//! RabbitMQ. An automation saved through one process acts on tickets opened
//! through either, once each — one engine leads, the other stands by —
//! and when the leading process is killed with SIGKILL the other takes
//! over within the lease (10 s): what is opened afterwards is still acted
//! on, once.

mod support;

use std::time::Duration;

use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{get_json, post_json, Herald};

const PATIENCE: Duration = Duration::from_secs(60);

fn serve(dir: &std::path::Path, db: &TestDatabase, amqp: &str) -> Herald {
    let listen = format!("127.0.0.1:{}", support::free_port());
    Herald::start(
        dir,
        &["serve"],
        &[
            ("HERALD_LISTEN", listen.as_str()),
            ("HERALD_STORE", db.url()),
            ("HERALD_BROKER", amqp),
            ("HERALD_INGEST", "off"),
            ("HERALD_LOG", "warn"),
        ],
    )
}

/// The notes of `automation:seen` on a ticket.
async fn seen(client: &reqwest::Client, base: &str, id: &str) -> usize {
    let page = get_json(
        client,
        format!("{base}/v1/streams/tickets/{id}/events?limit=1000"),
    )
    .await;
    page["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["producer"] == "automation:seen")
                .count()
        })
        .unwrap_or(0)
}

async fn engine_active(client: &reqwest::Client, base: &str) -> bool {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("herald answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .any(|l| l.starts_with("herald_automations_engine_active ") && l.ends_with(" 1"))
}

async fn open(client: &reqwest::Client, base: &str, id: &str) {
    let (status, body) = post_json(
        client,
        format!("{base}/v1/tickets/{id}/open"),
        json!({"kind": "other", "customer": "acme", "description": "d", "opened_by": "me"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn all_seen_once(client: &reqwest::Client, base: &str, ids: &[String]) -> bool {
    for id in ids {
        if seen(client, base, id).await != 1 {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_acts_once_and_another_takes_over() {
    let db = TestDatabase::create().await;
    let vhost = herald_testkit::TestVhost::create().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut processes = vec![
        serve(dirs[0].path(), &db, vhost.url()),
        serve(dirs[1].path(), &db, vhost.url()),
    ];
    for p in &mut processes {
        p.wait_healthy(PATIENCE).await;
    }
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    let client = reqwest::Client::new();
    let automation = json!({
        "name": "seen",
        "trigger": {"event": {"types": ["tickets.ticket_opened"]}},
        "actions": [{"command": {"domain": "tickets", "id": "{{ event.stream_id }}", "name": "append_note",
                                 "body": {"note": "seen", "author": "bot"}}}]
    });
    let (status, body) =
        post_json(&client, format!("{}/v1/automations", bases[0]), automation).await;
    assert_eq!(status, 201, "{body}");
    // Listed by the other process at once: it reads the same log.
    let listed = get_json(&client, format!("{}/v1/automations", bases[1])).await;
    assert_eq!(listed["automations"][0]["name"], "seen", "{listed}");

    // Tickets opened through both processes: each noted once.
    let first: Vec<String> = (0..8).map(|i| format!("A-{i}")).collect();
    for (i, id) in first.iter().enumerate() {
        open(&client, &bases[i % 2], id).await;
    }
    let ok = eventually(PATIENCE, || {
        let client = client.clone();
        let base = bases[1].clone();
        let ids = first.clone();
        async move { all_seen_once(&client, &base, &ids).await }
    })
    .await;
    assert!(ok, "not every ticket was noted once");
    // Exactly one engine leads.
    let active: Vec<bool> =
        futures::future::join_all(bases.iter().map(|b| engine_active(&client, b))).await;
    assert_eq!(active.iter().filter(|a| **a).count(), 1, "{active:?}");
    let leader = active.iter().position(|a| *a).unwrap();
    let survivor = 1 - leader;

    // The leader dies; the survivor's engine takes over.
    processes[leader].kill9();
    let second: Vec<String> = (0..6).map(|i| format!("B-{i}")).collect();
    for id in &second {
        open(&client, &bases[survivor], id).await;
    }
    let ok = eventually(PATIENCE, || {
        let client = client.clone();
        let base = bases[survivor].clone();
        let ids = second.clone();
        async move { all_seen_once(&client, &base, &ids).await }
    })
    .await;
    assert!(ok, "the survivor did not act on what came after the kill");
    assert!(engine_active(&client, &bases[survivor]).await);
    // And nothing from before was done twice by the new leader.
    assert!(all_seen_once(&client, &bases[survivor], &first).await);
    let shown: Value = get_json(&client, format!("{}/v1/automations/seen", bases[survivor])).await;
    assert_eq!(shown["stats"]["failed"], 0, "{shown}");
    let status = processes[survivor].terminate(PATIENCE);
    assert!(status.success());
}
