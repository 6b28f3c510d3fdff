//! Text no store can keep (U+0000) gets the same 4xx problem naming the
//! field on the embedded store and on Postgres, wherever it comes in: event
//! fields and payload keys (422 `invalid-append` with a JSON pointer), a
//! command body (422 `invalid-request`), every view's filters and ids, search
//! `payload.*` paths and values, the log, SSE filters (400 `invalid-query`
//! naming the parameter), and websocket filters (an `invalid-filter` frame).
//! Nothing is stored. On main, Postgres answered most of these with 500.

mod support;

use std::time::Duration;

use herald_testkit::TestDatabase;
use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

const PATIENCE: Duration = Duration::from_secs(30);

/// (method, path and query, body, status, problem slug, JSON pointer to a
/// member of the problem, its value)
type Probe = (
    &'static str,
    String,
    Option<Value>,
    u16,
    &'static str,
    &'static str,
    Value,
);

fn probes() -> Vec<Probe> {
    let note = |extra: (&str, Value)| {
        let mut e = json!({"stream": "tickets/T-1", "type": "tickets.note_appended", "version": 1,
                           "payload": {"note": "x"}});
        e[extra.0] = extra.1;
        e
    };
    let mut probes: Vec<Probe> = vec![
        (
            "POST",
            "/v1/events".into(),
            Some(note(("producer", json!("p\u{0}")))),
            422,
            "invalid-append",
            "/pointer",
            json!("/producer"),
        ),
        (
            "POST",
            "/v1/events".into(),
            Some(note(("idempotency_key", json!("k\u{0}")))),
            422,
            "invalid-append",
            "/pointer",
            json!("/idempotency_key"),
        ),
        (
            "POST",
            "/v1/events".into(),
            Some(json!({"atomic": true,
                        "events": [note(("payload", json!({"note": "x", "author": "a\u{0}"})))]})),
            422,
            "invalid-append",
            "/errors/0/problem/pointer",
            json!("/payload/author"),
        ),
        (
            "POST",
            "/v1/streams/tickets/T-1/events".into(),
            Some(
                json!({"events": [{"type": "tickets.note_appended", "version": 1,
                                    "payload": {"note": "x", "k\u{0}": 1}}]}),
            ),
            422,
            "invalid-append",
            "/in_key",
            json!(true),
        ),
        (
            "POST",
            "/v1/tickets/T-1/open".into(),
            Some(json!({"kind": "other", "customer": "acme\u{0}", "description": "d"})),
            422,
            "invalid-request",
            "/pointer",
            json!("/customer"),
        ),
        (
            "GET",
            "/v1/events/search?payload.note=%00".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("payload.note"),
        ),
        (
            "GET",
            "/v1/events/search?payload.a%00b=1".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("payload.a\u{0}b"),
        ),
        (
            "GET",
            "/v1/events/search?stream=tickets/T%00".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("stream"),
        ),
        (
            "GET",
            "/v1/events?from=%00".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("from"),
        ),
        (
            "GET",
            "/v1/events/stream?type=tickets.%00".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("type"),
        ),
        (
            "GET",
            "/v1/streams/tickets/T%00/events".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("id"),
        ),
        (
            "GET",
            "/v1/tickets/T%00".into(),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("id"),
        ),
    ];
    let filters: &[(&str, &[&str])] = &[
        (
            "tickets",
            &["status", "kind", "customer", "edge", "assignee", "cursor"],
        ),
        ("edges", &["state", "customer", "site", "cursor"]),
        ("drafts", &["cursor"]),
        ("statistics", &["customer", "group_by", "from"]),
        ("timers", &["cursor"]),
        ("countdowns", &["cursor"]),
    ];
    for (view, params) in filters {
        for param in *params {
            probes.push((
                "GET",
                format!("/v1/views/{view}?{param}=a%00"),
                None,
                400,
                "invalid-query",
                "/parameter",
                json!(param),
            ));
        }
    }
    for view in ["tickets", "edges", "drafts", "timers", "countdowns"] {
        probes.push((
            "GET",
            format!("/v1/views/{view}/a%00b"),
            None,
            400,
            "invalid-query",
            "/parameter",
            json!("id"),
        ));
    }
    probes.push((
        "GET",
        "/v1/views/drafts/a%00/versions".into(),
        None,
        400,
        "invalid-query",
        "/parameter",
        json!("id"),
    ));
    probes
}

async fn refused_alike(base: &str, store: &str) {
    let client = reqwest::Client::new();
    let probes = probes();
    for (method, path, body, status, slug, member, value) in &probes {
        let url = format!("{base}{path}");
        let request = match *method {
            "POST" => client.post(&url).json(body.as_ref().unwrap()),
            _ => client.get(&url),
        };
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, *status, "{store}: {method} {path}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            problem["type"],
            format!("urn:herald:problem:{slug}"),
            "{store}: {method} {path}: {text}"
        );
        assert_eq!(
            problem.pointer(member),
            Some(value),
            "{store}: {method} {path}: {text}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("the character U+0000"),
            "{store}: {method} {path}: {text}"
        );
    }
    eprintln!("{store}: {} probes refused alike", probes.len());

    let (mut ws, ready) = WsClient::connect(base, "").await;
    assert_eq!(ready["type"], "ready", "{store}: {ready}");
    ws.send(json!({"type": "subscribe", "id": "s", "filter": {"types": ["tickets.\u{0}"]}}))
        .await;
    let frame = ws.next().await.unwrap();
    assert_eq!(frame["type"], "error", "{store}: {frame}");
    assert_eq!(frame["code"], "invalid-filter", "{store}: {frame}");
    assert!(
        frame["message"].as_str().unwrap().contains("U+0000"),
        "{store}: {frame}"
    );

    // Nothing was stored, and the log reads.
    let log: Value = client
        .get(format!("{base}/v1/events?from=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["events"], json!([]), "{store}: {log}");
}

fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Herald {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec![("HERALD_RELAY", "false")];
    all.extend_from_slice(env);
    Herald::start(dir, &["serve", "--listen", &listen], &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = serve(dir.path(), &[]);
    herald.wait_healthy(PATIENCE).await;
    refused_alike(&herald.base, "embedded").await;
    assert!(herald.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut herald = serve(dir.path(), &[("HERALD_STORE", db.url())]);
    herald.wait_healthy(PATIENCE).await;
    refused_alike(&herald.base, "postgres").await;
    assert!(herald.terminate(PATIENCE).success());
}
