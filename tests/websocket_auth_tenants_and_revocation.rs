//! The websocket authenticates in its first frame, never shows one tenant's
//! events to another, refuses subscriptions outside the credentials' tenant
//! and any filter that could match a type outside their `subscribe` scopes
//! (as server-sent events do), and closes a connection whose key is revoked
//! (4003).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

fn key(dir: &std::path::Path, tenant: &str, scopes: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir)
        .env_remove("HERALD_STORE")
        .args([
            "keys", "--json", "create", "--tenant", tenant, "--scopes", scopes,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn publish(base: &str, key: &str, stream: &str, note: &str) -> u64 {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(&json!({"stream": stream, "type": "tickets.note_appended", "version": 1, "payload": {"note": note}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap()
}

/// The next frame that is not `subscribed`/`live`.
async fn next_interesting(client: &mut WsClient) -> Value {
    loop {
        let frame = client.next().await.expect("a frame");
        if frame["type"] != "subscribed" && frame["type"] != "live" {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_bound_every_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let (acme_id, acme) = key(dir.path(), "acme", "subscribe:tickets,publish:tickets");
    let (_, globex) = key(dir.path(), "globex", "subscribe:*,publish:*");
    let (_, acme_edges) = key(dir.path(), "acme", "subscribe:edges");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(10)).await;
    let base = herald.base.clone();

    // Authentication comes first, and must succeed.
    let mut client = WsClient::open(&base).await;
    client
        .send(json!({"type": "subscribe", "id": "s", "filter": {}}))
        .await;
    let closed = loop {
        let f = client.next().await.unwrap();
        if f["type"] == "close" {
            break f;
        }
    };
    assert_eq!(closed["code"], 4001, "{closed}");
    let (mut client, frame) = WsClient::connect(&base, "hk_0000000000000000_wrong").await;
    assert_eq!(frame["type"], "error");
    let closed = client.next().await.unwrap();
    assert_eq!(closed["code"], 4001, "{closed}");

    // Each tenant sees only its own events.
    let (mut a, ready) = WsClient::connect(&base, &acme).await;
    assert_eq!(ready["tenant"], "acme");
    a.send(json!({"type": "subscribe", "id": "t", "filter": {"domains": ["tickets"]}, "from": "start"})).await;
    let (mut g, _) = WsClient::connect(&base, &globex).await;
    g.send(json!({"type": "subscribe", "id": "t", "filter": {}, "from": "start"}))
        .await;
    publish(&base, &globex, "tickets/T-1", "globex's").await;
    publish(&base, &acme, "tickets/T-1", "acme's").await;
    let seen_a = next_interesting(&mut a).await;
    assert_eq!(seen_a["event"]["tenant"], "acme", "{seen_a}");
    assert_eq!(seen_a["event"]["payload"]["note"], "acme's");
    let seen_g = next_interesting(&mut g).await;
    assert_eq!(seen_g["event"]["tenant"], "globex", "{seen_g}");

    // Another tenant, or outside the scopes: refused, connection kept.
    a.send(json!({"type": "subscribe", "id": "x", "filter": {}, "tenant": "globex"}))
        .await;
    let refused = next_interesting(&mut a).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{refused}"
    );
    let (mut e, _) = WsClient::connect(&base, &acme_edges).await;
    e.send(json!({"type": "subscribe", "id": "x", "filter": {"domains": ["tickets"]}}))
        .await;
    let refused = next_interesting(&mut e).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // A filter is taken only if every type it can match is within a
    // `subscribe` scope: with `subscribe:edges`, wider filters are refused
    // before any `subscribed` frame, the connection kept.
    for filter in [
        json!({"types": ["tickets.*"]}),
        json!({"types": ["tickets.ticket_opened"]}),
        json!({"streams": ["tickets/T-1"]}),
        json!({"types": ["*.edge_went_offline"]}),
        json!({"types": ["edges.*", "tickets.*"]}),
        json!({"domains": ["edges", "tickets"]}),
        json!({}),
        json!({"types": ["*"]}),
    ] {
        let (mut e, _) = WsClient::connect(&base, &acme_edges).await;
        e.send(json!({"type": "subscribe", "id": "wide", "filter": filter, "from": "start"}))
            .await;
        let first = e.next().await.expect("an answer");
        assert_eq!(
            (first["type"].as_str(), first["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{filter}: {first}"
        );
        assert_eq!(first["subscription"], "wide", "{first}");
        assert!(
            first["message"].as_str().unwrap().contains("edges.*"),
            "the refusal names the scopes: {first}"
        );
        e.send(json!({"type": "ping", "id": "after"})).await;
        let next = e.next().await.expect("the connection stays open");
        assert_eq!(next["type"], "pong", "{filter}: nothing else comes: {next}");
    }
    for filter in [
        json!({"types": ["edges.*"]}),
        json!({"domains": ["edges"]}),
        json!({"streams": ["edges/E-17"]}),
        json!({"types": ["*.edge_*"], "domains": ["edges"]}),
        json!({"types": ["*"], "streams": ["edges/E-17"]}),
        json!({"domains": ["edges", "tickets"], "streams": ["edges/E-17"]}),
    ] {
        let (mut e, _) = WsClient::connect(&base, &acme_edges).await;
        e.send(json!({"type": "subscribe", "id": "narrow", "filter": filter, "from": "start"}))
            .await;
        let first = e.next().await.expect("an answer");
        assert_eq!(first["type"], "subscribed", "{filter}: {first}");
    }
    // Server-sent events answer the same filter the same way.
    let sse = reqwest::Client::new()
        .get(format!("{base}/v1/events/stream?type=tickets.*"))
        .bearer_auth(&acme_edges)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 403);
    let problem: Value = sse.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:forbidden", "{problem}");
    a.send(json!({"type": "ping", "id": "still-there"})).await;
    assert_eq!(next_interesting(&mut a).await["type"], "pong");

    // Revoking the key closes its connections.
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir.path())
        .env_remove("HERALD_STORE")
        .args(["keys", "revoke", &acme_id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let closing = tokio::time::timeout(Duration::from_secs(10), next_interesting(&mut a))
        .await
        .expect("closed within 10 s");
    assert_eq!(closing["type"], "closing", "{closing}");
    assert_eq!(closing["code"], 4003);
}
