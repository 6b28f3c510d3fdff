//! Server-sent events as a browser's `EventSource` uses them: it cannot set
//! an `Authorization` header, so `/v1/events/stream` (and no other route)
//! takes the credentials as `?access_token=` — an API key or a JWT, checked
//! as the header's: scopes, tenant, expiry — and refuses them twice; and it
//! reconnects with the URL it started with plus `Last-Event-ID`, which
//! therefore wins over `from`.

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use support::{free_port, herald_command, Herald};

const SECRET: &str = "a-browser-test-secret-of-at-least-32-bytes";

/// Reads SSE events (id, event) until `count` arrived.
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
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_owned))
            };
            if field("event: ").as_deref() == Some("event") {
                events.push((
                    field("id: ").unwrap(),
                    serde_json::from_str(&field("data: ").unwrap()).unwrap(),
                ));
            }
        }
    }
    events
}

fn create_key(dir: &Path, tenant: &str, scopes: &str) -> String {
    let out = herald_command()
        .current_dir(dir)
        .args(["keys", "create", "--tenant", tenant, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn jwt(tenant: &str, scope: &str, exp_offset_secs: i64) -> String {
    encode(
        &Header::default(),
        &json!({"sub": "browser-user", "tenant": tenant, "scope": scope,
                "exp": chrono::Utc::now().timestamp() + exp_offset_secs}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn encoded(token: &str) -> String {
    form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

async fn publish(base: &str, key: Option<&str>, stream: &str, n: usize) {
    let body = json!({"events": (0..n).map(|i| json!({"stream": stream, "type": "tickets.note_appended", "version": 1, "payload": {"note": format!("{stream} {i}")}})).collect::<Vec<_>>()});
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    assert_eq!(request.send().await.unwrap().status(), 201);
}

fn notes(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["payload"]["note"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_token_authenticates_the_stream_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_key(dir.path(), "acme", "admin");
    let subscriber = create_key(dir.path(), "acme", "subscribe:tickets");
    let edges_only = create_key(dir.path(), "acme", "subscribe:edges.*");
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[("HERALD_JWT_HS256_SECRET", SECRET)],
    );
    herald.wait_healthy(Duration::from_secs(15)).await;
    let base = herald.base.clone();
    publish(&base, Some(&admin), "tickets/S-1", 3).await;
    let http = reqwest::Client::new();
    let stream = |query: &str| {
        http.get(format!(
            "{base}/v1/events/stream?stream=tickets/S-1&from=start{query}"
        ))
    };

    // A key, and a short-lived JWT, in the query: the stream flows.
    for token in [subscriber.clone(), jwt("acme", "subscribe:tickets", 300)] {
        let resp = stream(&format!("&access_token={}", encoded(&token)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = read_events(resp, 3).await;
        assert_eq!(
            notes(&events),
            ["tickets/S-1 0", "tickets/S-1 1", "tickets/S-1 2"]
        );
        assert!(events.iter().all(|(_, e)| e["tenant"] == "acme"));
    }

    // Checked as the header's: none, unknown, expired, another tenant's
    // scopes, outside the scopes.
    let problem = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    };
    for (query, expected) in [
        (String::new(), 401),
        ("&access_token=".to_owned(), 401),
        (
            format!("&access_token={}", encoded("hk_0123456789abcdef_nope")),
            401,
        ),
        (
            format!(
                "&access_token={}",
                encoded(&jwt("acme", "subscribe:tickets", -3600))
            ),
            401,
        ),
        (
            format!("&access_token={}&tenant=globex", encoded(&subscriber)),
            403,
        ),
        (format!("&access_token={}", encoded(&edges_only)), 403),
    ] {
        let (status, body) = problem(stream(&query).send().await.unwrap()).await;
        assert_eq!(status, expected, "{query}: {body}");
    }

    // Credentials twice are refused, naming the parameter.
    let (status, body) = problem(
        stream(&format!("&access_token={}", encoded(&subscriber)))
            .bearer_auth(&subscriber)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:invalid-query");
    assert_eq!(body["parameter"], "access_token");

    // No other route reads credentials from its query.
    for path in [
        "/v1/events?from=0",
        "/v1/events/search?type=tickets.*",
        "/v1/streams/tickets/S-1/events?from_version=1",
    ] {
        let resp = http
            .get(format!("{base}{path}&access_token={}", encoded(&admin)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path} took the query's credentials");
    }
    assert!(herald.terminate(Duration::from_secs(15)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_wins_over_from() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[],
    );
    herald.wait_healthy(Duration::from_secs(15)).await;
    let base = herald.base.clone();
    publish(&base, None, "tickets/S-1", 5).await;
    let http = reqwest::Client::new();
    let url = |from: &str| format!("{base}/v1/events/stream?stream=tickets/S-1&from={from}");
    let first = read_events(http.get(url("start")).send().await.unwrap(), 5).await;
    let (c1, c2) = (first[0].0.clone(), first[1].0.clone());

    // An EventSource reconnecting: the URL it started with (`from=start`)
    // and the last id it got. It continues after that id.
    for (from, last_event_id, next) in [
        ("start", &c2, "tickets/S-1 2"),
        ("now", &c1, "tickets/S-1 1"),
        (c2.as_str(), &c1, "tickets/S-1 1"),
        (c1.as_str(), &c2, "tickets/S-1 2"),
    ] {
        let resp = http
            .get(url(from))
            .header("last-event-id", last_event_id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let events = read_events(resp, 1).await;
        assert_eq!(
            notes(&events),
            [next],
            "from={from}, Last-Event-ID {last_event_id}"
        );
    }
    // Without the header, `from` decides.
    let events = read_events(http.get(url(&c2)).send().await.unwrap(), 1).await;
    assert_eq!(notes(&events), ["tickets/S-1 2"]);
    assert!(herald.terminate(Duration::from_secs(15)).success());
}
