//! `/readyz` answers within a second whatever the backends do. `herald
//! serve` reaches RabbitMQ (a test virtual host) through a TCP relay of the
//! test's own; once Herald is ready, the relay cuts every connection and
//! from then on accepts new ones and never speaks — a broker that hangs, as
//! one behind a stalled network or overloaded does. Every readiness answer
//! comes within a second: 503 `broker-unavailable`, saying the broker did
//! not answer in time, where a probe with a one-second timeout would
//! otherwise see nothing.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_testkit::TestVhost;
use serde_json::Value;
use support::{free_port, Herald};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(30);

/// Relays TCP connections to `upstream` until told to hang; from then on the
/// relayed connections are cut and new ones are accepted and held open,
/// unanswered.
struct HangingRelay {
    port: u16,
    hang: watch::Sender<bool>,
}

impl HangingRelay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hang, hanging) = watch::channel(false);
        let held: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *hanging.borrow() {
                    held.lock().unwrap().push(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut hanging = hanging.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = hanging.wait_for(|h| *h) => {}
                    }
                    // Dropped: both sides see the connection cut.
                });
            }
        });
        Self { port, hang }
    }

    fn hang(&self) {
        self.hang.send_replace(true);
    }
}

async fn readyz(base: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("readiness answers");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_accepts_and_never_speaks_gets_503_within_a_second() {
    let vhost = TestVhost::create().await;
    let url = vhost.url().to_owned();
    let (scheme_user, rest) = url.split_once('@').expect("user@host in the AMQP URL");
    let (host_port, path) = rest.split_once('/').expect("a vhost path");
    let relay = HangingRelay::start(host_port.to_owned()).await;
    let relayed = format!("{scheme_user}@127.0.0.1:{}/{path}", relay.port);

    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[("HERALD_BROKER", relayed.as_str())],
    );
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let ready =
        herald_testkit::eventually(PATIENCE, || async { readyz(&base).await.0 == 200 }).await;
    assert!(ready, "herald is ready on the relayed broker");

    relay.hang();
    let deadline = Instant::now() + PATIENCE;
    let mut timed_out = None;
    let mut answers = 0;
    while Instant::now() < deadline {
        let (status, body, took) = readyz(&base).await;
        answers += 1;
        assert!(
            took < Duration::from_secs(1),
            "readiness took {took:?} (answer {answers}: {status} {body})"
        );
        if status == 503 {
            assert_eq!(
                body["type"], "urn:herald:problem:broker-unavailable",
                "{body}"
            );
            assert_eq!(body["broker"], "amqp", "{body}");
            let detail = body["detail"].as_str().unwrap_or_default();
            if detail.contains("no answer within") {
                timed_out = Some(body);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = timed_out.expect("readiness said the hanging broker did not answer in time");
    assert!(
        body["detail"].as_str().unwrap().contains("broker"),
        "the answer names the broker: {body}"
    );
    // And it keeps answering promptly while the broker hangs.
    for _ in 0..3 {
        let (status, _, took) = readyz(&base).await;
        assert_eq!(status, 503);
        assert!(took < Duration::from_secs(1), "readiness took {took:?}");
    }
    drop(herald);
}
