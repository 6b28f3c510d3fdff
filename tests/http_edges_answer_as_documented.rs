//! The edges of Herald's HTTP answer as the README says, against `herald
//! serve` (raw TCP where a request must be malformed or must keep a path as
//! sent, since HTTP clients normalise `..` away):
//!
//! - `.` and `..` are refused as stream ids on every way in (appends,
//!   publish, commands; percent-encoded too) with 400 `invalid-stream-id`,
//!   and nothing is stored;
//! - a read of the log or of a stream past its end reports the real head and
//!   stream version, not the `from` asked for;
//! - every route answers other methods with 405 `method-not-allowed` and an
//!   `Allow` header naming exactly what it serves, `/healthz`, `/readyz`,
//!   `/metrics` and `/openapi.json` included;
//! - every POST with a JSON body refuses a missing or non-JSON
//!   `Content-Type` with 415 `unsupported-media-type`, storing nothing;
//! - requests the HTTP layer cannot parse get the documented bare answers
//!   (400 or 431, no body, `Connection: close`, the connection closed);
//! - `/v1/subscribe` without `herald.v1` is 400 `subprotocol-required`, and
//!   not as a websocket upgrade 426 `upgrade-required` with `Upgrade`;
//! - a position or version past what a store can hold (2^63 and beyond) is
//!   400 `invalid-query` wherever one is taken: the log's `from`, a stream's
//!   `from_version`, SSE cursors, search cursors, audit's `from`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use support::raw::{RawConnection, RawResponse};
use support::{free_port, Herald};

const WITHIN: Duration = Duration::from_secs(10);
/// 2^63: one past the largest position or version a store holds.
const PAST_STORES: &str = "9223372036854775808";
/// 2^64: past 64 bits altogether.
const PAST_U64: &str = "18446744073709551616";

fn opened() -> Value {
    json!({"type": "tickets.ticket_opened", "version": 1,
           "payload": {"kind": "other", "customer": "acme", "description": "edge case"}})
}

/// A request with a JSON body, written by hand.
fn post_json(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn raw(base: &str, request: &[u8]) -> (RawConnection, RawResponse) {
    let mut connection = RawConnection::open(base).await;
    connection.send(request).await;
    let answer = connection.response(WITHIN).await;
    (connection, answer)
}

fn assert_problem(answer: &RawResponse, status: u16, slug: &str, what: &str) -> Value {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    let body = answer.json();
    assert_eq!(
        body["type"],
        format!("urn:herald:problem:{slug}"),
        "{what}: {body}"
    );
    body
}

async fn problem_of(response: reqwest::Response, status: u16, slug: &str, what: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{what}");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{what}"
    );
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(
        body["type"],
        format!("urn:herald:problem:{slug}"),
        "{what}: {body}"
    );
    body
}

/// The log's head as `GET /v1/events` reports it.
async fn head(client: &reqwest::Client, base: &str) -> u64 {
    let page: Value = client
        .get(format!("{base}/v1/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["head"].as_u64().expect("a head")
}

/// A request path for a route template.
fn sample(template: &str) -> String {
    template
        .replace("{domain}", "tickets")
        .replace("{id}", "T-1")
        .replace("{command}", "open")
        .replace("{name}", "tickets")
        .replace("{position}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_edges_answer_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(20)).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();

    // `.` and `..` as stream ids, on every way in.
    let append = json!({"events": [opened()]});
    for path in [
        "/v1/streams/tickets/../events",
        "/v1/streams/tickets/./events",
        "/v1/streams/tickets/%2E%2E/events",
        "/v1/streams/tickets/%2e/events",
    ] {
        let (_, answer) = raw(&base, &post_json(path, &append)).await;
        let body = assert_problem(&answer, 400, "invalid-stream-id", path);
        assert!(
            body["detail"].as_str().unwrap().contains("path segment"),
            "{path}: {body}"
        );
    }
    for stream in ["tickets/..", "tickets/."] {
        let mut event = opened();
        event["stream"] = json!(stream);
        let answer = client
            .post(format!("{base}/v1/events"))
            .json(&event)
            .send()
            .await
            .unwrap();
        problem_of(answer, 400, "invalid-stream-id", stream).await;
    }
    for path in [
        "/v1/tickets/../open",
        "/v1/tickets/./open",
        "/v1/tickets/%2E%2E/open",
    ] {
        let command = json!({"kind": "other", "customer": "acme", "description": "x"});
        let (_, answer) = raw(&base, &post_json(path, &command)).await;
        assert_problem(&answer, 400, "invalid-stream-id", path);
    }
    assert_eq!(head(&client, &base).await, 0, "a dot stream was stored");

    // Past the end: the real head and stream version.
    let appended = client
        .post(format!("{base}/v1/streams/tickets/T-1/events"))
        .json(&json!({"events": [opened(), {"type": "tickets.note_appended", "version": 1, "payload": {"note": "n"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), 201);
    let page: Value = client
        .get(format!("{base}/v1/events?from=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["head"], 2, "{page}");
    assert_eq!(page["next"], 1000, "{page}");
    let page: Value = client
        .get(format!(
            "{base}/v1/streams/tickets/T-1/events?from_version=50"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["stream_version"], 2, "{page}");

    // 405 with Allow on every route, for every method it does not serve.
    for template in herald::api::ROUTES
        .iter()
        .map(|(_, path)| *path)
        .collect::<BTreeSet<_>>()
    {
        let served: BTreeSet<&str> = herald::api::ROUTES
            .iter()
            .filter(|(_, path)| *path == template)
            .map(|(method, _)| *method)
            .collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.contains(method) {
                continue;
            }
            let what = format!("{method} {template}");
            let answer = client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{base}{}", sample(template)),
                )
                .send()
                .await
                .unwrap();
            let allow: BTreeSet<String> = answer
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{what}: no Allow header"))
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(
                allow,
                served.iter().map(|m| m.to_string()).collect(),
                "{what}"
            );
            let body = problem_of(answer, 405, "method-not-allowed", &what).await;
            let listed: BTreeSet<&str> = body["allow"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no allow member: {body}"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(listed, served, "{what}");
        }
    }

    // 415 where a JSON body is expected, with or without a Content-Type.
    let before = head(&client, &base).await;
    let posts = [
        (
            "/v1/streams/tickets/T-415/events",
            json!({"events": [opened()]}),
        ),
        ("/v1/events", {
            let mut event = opened();
            event["stream"] = json!("tickets/T-415");
            event
        }),
        (
            "/v1/tickets/T-416/open",
            json!({"kind": "other", "customer": "acme", "description": "x"}),
        ),
    ];
    for (path, body) in &posts {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut request = client.post(format!("{base}{path}")).body(body.to_string());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let answer = request.send().await.unwrap();
            problem_of(
                answer,
                415,
                "unsupported-media-type",
                &format!("{path} with {content_type:?}"),
            )
            .await;
        }
        // The same body as JSON is taken.
        let answer = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
    }
    assert!(
        head(&client, &base).await > before,
        "the JSON requests were not taken"
    );

    // What the HTTP layer answers itself: status, no body, closed.
    let headers: String = (0..97).map(|i| format!("X-Filler-{i}: x\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(130 * 1024));
    let broken: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a request line that is not one",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a malformed method",
            b"G(T /healthz HTTP/1.1\r\nHost: herald\r\n\r\n".to_vec(),
            400,
        ),
        (
            "an unknown HTTP version",
            b"GET /healthz HTTP/9.9\r\nHost: herald\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Content-Length and Transfer-Encoding both",
            b"POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "two Content-Lengths that disagree",
            b"POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Length: 5\r\n\
              Content-Length: 6\r\n\r\nhello!"
                .to_vec(),
            400,
        ),
        (
            "a Content-Length that is not a number",
            b"POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Length: five\r\n\r\n".to_vec(),
            400,
        ),
        (
            "more than 96 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: herald\r\n{headers}\r\n").into_bytes(),
            431,
        ),
        (
            "a head over 128 KiB",
            format!("GET /healthz HTTP/1.1\r\nHost: herald\r\n{big}\r\n").into_bytes(),
            431,
        ),
    ];
    for (what, request, status) in broken {
        let (mut connection, answer) = raw(&base, &request).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert_eq!(answer.header("content-length"), Some("0"), "{what}");
        assert_eq!(answer.header("connection"), Some("close"), "{what}");
        assert!(connection.closed_within(WITHIN).await, "{what}: left open");
    }
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "Herald serves on after broken requests"
    );

    // The websocket endpoint's handshake.
    let upgrade = |protocol: &str| {
        format!(
            "GET /v1/subscribe HTTP/1.1\r\nHost: herald\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{protocol}\r\n"
        )
        .into_bytes()
    };
    let (_, answer) = raw(&base, &upgrade("")).await;
    assert_problem(&answer, 400, "subprotocol-required", "no subprotocol");
    let (_, answer) = raw(&base, &upgrade("Sec-WebSocket-Protocol: herald.v2\r\n")).await;
    assert_problem(&answer, 400, "subprotocol-required", "another subprotocol");
    let (_, answer) = raw(
        &base,
        &upgrade("Sec-WebSocket-Protocol: chat, herald.v1\r\n"),
    )
    .await;
    assert_eq!(answer.status, 101, "herald.v1 among others: {answer:?}");
    let (_, answer) = raw(
        &base,
        b"GET /v1/subscribe HTTP/1.1\r\nHost: herald\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n",
    )
    .await;
    assert_problem(&answer, 426, "upgrade-required", "not an upgrade");
    assert_eq!(answer.header("upgrade"), Some("websocket"));

    // Positions and versions past what a store holds.
    for (path, parameter) in [
        (format!("/v1/events?from={PAST_U64}"), Some("from")),
        (format!("/v1/events?from={PAST_STORES}"), Some("from")),
        (
            format!("/v1/streams/tickets/T-1/events?from_version={PAST_STORES}"),
            Some("from_version"),
        ),
        (
            format!("/v1/streams/tickets/T-1/events?from_version={PAST_U64}"),
            Some("from_version"),
        ),
        (format!("/v1/audit/verify?from={PAST_STORES}"), None),
        (format!("/v1/audit/verify?from={PAST_U64}"), None),
        (
            format!(
                "/v1/events/search?cursor={}",
                URL_SAFE_NO_PAD.encode(format!("s1:{PAST_STORES}"))
            ),
            None,
        ),
    ] {
        let answer = client.get(format!("{base}{path}")).send().await.unwrap();
        let body = problem_of(answer, 400, "invalid-query", &path).await;
        if let Some(parameter) = parameter {
            assert_eq!(body["parameter"], parameter, "{path}: {body}");
        }
    }
    // An SSE cursor of this store, moved past what it can hold.
    let mut stream = client
        .get(format!("{base}/v1/events/stream?from=start"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut text = String::new();
    let cursor = tokio::time::timeout(WITHIN, async {
        loop {
            let chunk = stream.next().await.expect("the stream goes on").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(id) = text
                .lines()
                .find_map(|line| line.strip_prefix("id: "))
                .map(str::to_owned)
            {
                return id;
            }
        }
    })
    .await
    .expect("an event with its cursor");
    drop(stream);
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
    let (kept, _) = decoded.rsplit_once('.').expect("h1.<epoch>.<position>");
    for past in [PAST_STORES, PAST_U64] {
        let moved = URL_SAFE_NO_PAD.encode(format!("{kept}.{past}"));
        let answer = client
            .get(format!("{base}/v1/events/stream?from={moved}"))
            .send()
            .await
            .unwrap();
        problem_of(answer, 400, "invalid-query", &format!("SSE from {past}")).await;
    }
}
