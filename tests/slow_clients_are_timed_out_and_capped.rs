//! A client that stops sending cannot hold a connection, and one address
//! cannot hold every connection. Against `herald serve` with a 1 s body
//! timeout and a cap of 4 connections per client address:
//!
//! - a body that stops half way (`Content-Length: 100`, one byte sent; or a
//!   chunked body that never ends) is answered 408 `request-timeout` once the
//!   timeout has passed, within a few seconds of slack, and the connection is
//!   closed; a body that arrives slowly but whole within the timeout is
//!   appended;
//! - a chunked body sent to a route that reads none is answered and its
//!   connection closed, not drained for as long as the client sends;
//! - a connection's first request head that never ends gets 408 after the
//!   5 s head timeout; a later request's head that never ends (after an
//!   answer on a kept-alive connection) closes the connection after 10 s
//!   (keep-alive and head timeout), while a subscription open for longer than
//!   that still receives events;
//! - with 4 connections open from 127.0.0.1 (websockets), a 5th is answered
//!   429 `too-many-connections` with `Retry-After` and closed, and served
//!   again once one of the 4 closes.
//!
//! The bounds are correctness bounds (the answer comes, and not before the
//! timeout), not a benchmark.

mod support;

use std::time::{Duration, Instant};

use support::raw::{RawConnection, RawResponse};
use support::{free_port, Herald};

const BODY_TIMEOUT: Duration = Duration::from_secs(1);
/// Herald's fixed head timeout (`HEAD_TIMEOUT` in `src/cli/serve.rs`).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed past a bound for the answer to arrive on a busy machine.
const SLACK: Duration = Duration::from_secs(4);
/// Connections per address: the three at once above, and one to append.
const CAP: usize = 4;
/// Herald's bound between requests on a kept-alive connection
/// (`BETWEEN_REQUESTS`: the 5 s keep-alive, then the 5 s head timeout).
const BETWEEN_REQUESTS: Duration = Duration::from_secs(10);

fn assert_request_timeout(answer: &RawResponse, what: &str) {
    assert_eq!(answer.status, 408, "{what}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    let body = answer.json();
    assert_eq!(body["type"], "urn:herald:problem:request-timeout", "{what}");
    assert_eq!(body["timeout_ms"], 1000, "{what}: {body}");
}

/// Sends `head` (and whatever body it carries), then waits for the answer;
/// returns it and how long it took from the send.
async fn answer_to(
    base: &str,
    request: &[u8],
    within: Duration,
) -> (RawConnection, RawResponse, Duration) {
    let mut connection = RawConnection::open(base).await;
    let sent = Instant::now();
    connection.send(request).await;
    let answer = connection.response(within).await;
    (connection, answer, sent.elapsed())
}

/// The head of a connection's first request never ends: 408 after the head
/// timeout, and closed.
async fn first_head_never_ends(base: &str) {
    let mut headless = RawConnection::open(base).await;
    let sent = Instant::now();
    headless
        .send(b"POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n")
        .await;
    let answer = headless.response(HEAD_TIMEOUT + SLACK).await;
    let took = sent.elapsed();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(500),
        "answered before the head timeout: {took:?}"
    );
    assert!(headless.closed_within(SLACK).await);
}

/// After an answer on a kept-alive connection, the next request's head
/// begins and never ends: the connection is closed once the bound between
/// requests has passed.
async fn later_head_never_ends(base: &str) {
    let mut connection = RawConnection::open(base).await;
    connection
        .send(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await;
    assert_eq!(connection.response(SLACK).await.status, 200);
    let answered = Instant::now();
    connection
        .send(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n")
        .await;
    assert!(
        connection.closed_within(BETWEEN_REQUESTS + SLACK).await,
        "a half-sent head holds its connection"
    );
    let took = answered.elapsed();
    assert!(
        took >= BETWEEN_REQUESTS - Duration::from_millis(500),
        "closed before the bound between requests: {took:?}"
    );
}

/// A subscription is a request in flight, however long: its connection is
/// not closed as idle, and an event appended after the bound still
/// arrives on it.
async fn a_subscription_is_not_idle(base: &str) {
    let mut subscription = RawConnection::open(base).await;
    subscription
        .send(b"GET /v1/events/stream?from=now&stream=tickets/T-live HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await;
    assert_eq!(subscription.response(SLACK).await.status, 200);
    tokio::time::sleep(BETWEEN_REQUESTS + Duration::from_secs(1)).await;
    let appended = reqwest::Client::new()
        .post(format!("{base}/v1/streams/tickets/T-live/events"))
        .json(
            &serde_json::json!({"events": [{"type": "tickets.ticket_opened", "version": 1,
            "payload": {"kind": "other", "customer": "acme", "description": "still here"}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), 201);
    assert!(
        subscription.read_until("still here", SLACK).await,
        "a subscription older than the bound between requests was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cap = CAP.to_string();
    let mut herald = Herald::start(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--body-timeout",
            "1s",
            "--max-connections-per-client",
            &cap,
        ],
        &[],
    );
    herald.wait_healthy(Duration::from_secs(20)).await;
    let base = herald.base.clone();

    // A body that stops after one of its 100 bytes.
    let (mut stalled, answer, took) = answer_to(
        &base,
        b"POST /v1/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{",
        BODY_TIMEOUT + SLACK,
    )
    .await;
    assert_request_timeout(&answer, "a stalled body");
    assert!(
        took >= BODY_TIMEOUT,
        "answered before the timeout: {took:?}"
    );
    assert!(
        stalled.closed_within(SLACK).await,
        "the connection of a stalled body stays open"
    );

    // A chunked body that never ends, on an append.
    let (mut stalled, answer, took) = answer_to(
        &base,
        b"POST /v1/streams/tickets/T-slow/events HTTP/1.1\r\nHost: herald\r\n\
          Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
        BODY_TIMEOUT + SLACK,
    )
    .await;
    assert_request_timeout(&answer, "a stalled chunked body");
    assert!(
        took >= BODY_TIMEOUT,
        "answered before the timeout: {took:?}"
    );
    assert!(
        stalled.closed_within(SLACK).await,
        "the connection of a stalled chunked body stays open"
    );

    // A chunked body that never ends, on a route that reads no body: the
    // answer comes at once, and the rest is not waited for.
    let (mut unread, answer, _) = answer_to(
        &base,
        b"GET /healthz HTTP/1.1\r\nHost: herald\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
        SLACK,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        unread.closed_within(SLACK).await,
        "a connection is held open to drain a body nobody reads"
    );

    // Slow but whole within the timeout: appended.
    let body = br#"{"events": [{"type": "tickets.ticket_opened", "version": 1, "payload": {"kind": "other", "customer": "acme", "description": "slow link"}}]}"#;
    let mut slow = RawConnection::open(&base).await;
    slow.send(
        format!(
            "POST /v1/streams/tickets/T-slow/events HTTP/1.1\r\nHost: herald\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    for piece in body.chunks(body.len() / 3 + 1) {
        tokio::time::sleep(BODY_TIMEOUT / 8).await;
        slow.send(piece).await;
    }
    let answer = slow.response(SLACK).await;
    assert_eq!(answer.status, 201, "{answer:?} {}", answer.json());
    drop(slow);

    // Heads that never end, and a subscription that outlives them, at once.
    tokio::join!(
        first_head_never_ends(&base),
        later_head_never_ends(&base),
        a_subscription_is_not_idle(&base),
    );

    // The cap: websockets hold every connection (a websocket's connection
    // ends as soon as its client closes it).
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut connection = RawConnection::open(&base).await;
        connection
            .send(
                b"GET /v1/subscribe HTTP/1.1\r\nHost: herald\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n",
            )
            .await;
        let answer = connection.response(SLACK).await;
        assert_eq!(answer.status, 101, "{answer:?}");
        held.push(connection);
    }
    let (mut refused, answer, _) = answer_to(
        &base,
        b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n",
        SLACK,
    )
    .await;
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.header("connection"), Some("close"));
    let body = answer.json();
    assert_eq!(
        body["type"], "urn:herald:problem:too-many-connections",
        "{body}"
    );
    assert_eq!(body["limit"], CAP, "{body}");
    assert!(
        refused.closed_within(SLACK).await,
        "an over-cap connection stays open"
    );

    // One closes: the address is served again (once Herald has seen the
    // close), and the refusals are counted.
    held.pop();
    let metrics: std::sync::Mutex<Option<String>> = Default::default();
    let served = herald_testkit::eventually(SLACK, || {
        let (base, metrics) = (base.clone(), &metrics);
        async move {
            let (_, answer, _) = answer_to(
                &base,
                b"GET /metrics HTTP/1.1\r\nHost: herald\r\n\r\n",
                SLACK,
            )
            .await;
            if answer.status != 200 {
                return false;
            }
            *metrics.lock().unwrap() = Some(String::from_utf8_lossy(&answer.body).into_owned());
            true
        }
    })
    .await;
    assert!(served, "a connection is refused after another one closed");
    let metrics = metrics.into_inner().unwrap().unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("herald_http_requests_total") && l.contains("status=\"429\"")),
        "the 429s are not counted in herald_http_requests_total: {metrics}"
    );
}
