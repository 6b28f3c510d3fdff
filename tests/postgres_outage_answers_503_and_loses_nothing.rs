//! A Postgres outage under load is a 503, never a 500, and loses nothing.
//!
//! The test runs a Postgres cluster of its own (initdb into a temporary
//! directory, pg_ctl on a free port) so that it may stop it. `herald serve`
//! runs on it while 8 producers append over HTTP and readers read the log, a
//! stream, a read-model view and `/readyz`, half of them with an API key
//! (looked up in the store on every request) and half with a JWT (checked
//! without the store, so their requests reach the handlers), and while
//! `herald publish` streams keyed lines. The cluster is stopped with
//! `-m immediate` under that load and started again (through crash recovery,
//! when Postgres answers 57P03 "starting up"). Every answer must be a
//! success, or a 503 `store-unavailable` with `Retry-After`; every event
//! acknowledged is in the store exactly once; `herald publish` ends with no
//! failed line; and the same process serves appends again without a
//! restart.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::eventually;
use serde_json::{json, Value};
use support::cluster::Cluster;
use support::{free_port, herald_command, Herald, Output};

const PRODUCERS: usize = 8;
const JWT_SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const STORE_UNAVAILABLE: &str = "urn:herald:problem:store-unavailable";

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Event ids answered 201 (or 200, a retry of an append that committed).
    acknowledged: Vec<String>,
    /// Answers breaking the rule, described.
    violations: Vec<String>,
    /// Per kind of request: successes and 503s.
    counts: HashMap<&'static str, (u64, u64)>,
    /// Per kind of request: the status of its latest answer.
    last: HashMap<&'static str, u16>,
}

impl Seen {
    fn ok(&self, kind: &str) -> u64 {
        self.counts.get(kind).map_or(0, |c| c.0)
    }

    fn unavailable(&self, kind: &str) -> u64 {
        self.counts.get(kind).map_or(0, |c| c.1)
    }
}

type Shared = Arc<Mutex<Seen>>;

/// Records one answer: a success (or one of `allowed`), or a 503 that must
/// be `store-unavailable` with `Retry-After`; anything else is a violation.
/// Returns the status and the body.
async fn record(
    seen: &Shared,
    kind: &'static str,
    allowed: &[u16],
    answer: reqwest::Result<reqwest::Response>,
) -> Option<(u16, Value)> {
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            // Herald runs throughout: it must always answer.
            seen.lock()
                .unwrap()
                .violations
                .push(format!("{kind}: no answer: {e}"));
            return None;
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let mut seen = seen.lock().unwrap();
    seen.last.insert(kind, status);
    let counts = seen.counts.entry(kind).or_default();
    if (200..300).contains(&status) || allowed.contains(&status) {
        counts.0 += 1;
    } else if status == 503 {
        counts.1 += 1;
        if body["type"] != STORE_UNAVAILABLE || retry_after.is_none() {
            seen.violations.push(format!(
                "{kind}: 503 without store-unavailable and Retry-After ({retry_after:?}): {body}"
            ));
        }
    } else {
        seen.violations.push(format!("{kind}: {status} {body}"));
    }
    Some((status, body))
}

/// One kind of read.
#[derive(Clone)]
struct Reader {
    kind: &'static str,
    path: &'static str,
    token: String,
    /// Answers besides 2xx that are right for it.
    allowed: &'static [u16],
}

fn jwt(subject: &str) -> String {
    let claims = json!({"sub": subject, "exp": chrono::Utc::now().timestamp() + 3600,
                        "tenant": "acme", "scope": "publish:* read:*"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn ticket(stream: &str, key: &str) -> Value {
    json!({"stream": stream, "type": "tickets.ticket_opened", "version": 1,
           "payload": {"kind": "other", "customer": "acme", "description": "outage test"},
           "idempotency_key": key})
}

/// Appends one new ticket after another; a 503 is retried with the same
/// idempotency key until it is acknowledged or the load ends.
async fn produce(base: String, token: String, p: usize, seen: Shared, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let event = ticket(&format!("tickets/P{p}-{n}"), &format!("p{p}-{n}"));
        while !stop.load(Ordering::SeqCst) {
            let answer = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&token)
                .json(&event)
                .send()
                .await;
            match record(&seen, "append", &[], answer).await {
                Some((200 | 201, body)) => {
                    let id = body["id"].as_str().expect("the event id").to_owned();
                    seen.lock().unwrap().acknowledged.push(id);
                    break;
                }
                Some((503, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => break,
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `path` over and over (with no credentials when `token` is empty).
async fn read(base: String, reader: Reader, seen: Shared, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    while !stop.load(Ordering::SeqCst) {
        let mut request = client.get(format!("{base}{}", reader.path));
        if !reader.token.is_empty() {
            request = request.bearer_auth(&reader.token);
        }
        record(&seen, reader.kind, reader.allowed, request.send().await).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Feeds `herald publish` one keyed line every few milliseconds until
/// `stop`; returns how many it wrote.
fn feed(mut stdin: std::process::ChildStdin, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let line = ticket(&format!("tickets/CLI-{n}"), &format!("cli-{n}"));
        if writeln!(stdin, "{line}").is_err() {
            break;
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

/// A child process, killed when dropped, so that a failed assertion
/// leaves none behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_and_loses_nothing() {
    let cluster = Arc::new(blocking(Cluster::start_new).await);
    let url = cluster.url();

    // An API key, so that every request made with it asks the store who
    // is calling.
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(url.clone()))
            .await
            .expect("open the test's own cluster"),
    );
    let (_, key) =
        support::create_key(&store, "acme", &["publish:*", "read:*"], Some(100_000)).await;
    store.close().await;
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[
            ("HERALD_STORE", url.as_str()),
            ("HERALD_JWT_HS256_SECRET", JWT_SECRET),
        ],
    );
    herald.wait_healthy(Duration::from_secs(30)).await;
    let pid = herald.child.id();
    let base = herald.base.clone();
    // The read models answer 503 `read-model-unavailable` until their
    // projections are installed; the load starts once they serve.
    let view = format!("{base}/v1/views/tickets?limit=1");
    let token = jwt("setup");
    let http = reqwest::Client::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            let request = http.get(&view).bearer_auth(&token).send();
            async move { request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await,
        "the tickets view never answered 200"
    );

    let seen: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let token = if p % 2 == 0 {
            key.clone()
        } else {
            jwt(&format!("producer-{p}"))
        };
        tasks.push(tokio::spawn(produce(
            base.clone(),
            token,
            p,
            seen.clone(),
            stop.clone(),
        )));
    }
    let reader = |kind, path, token, allowed| Reader {
        kind,
        path,
        token,
        allowed,
    };
    let readers = [
        reader("log", "/v1/events?from=0&limit=50", jwt("reader-log"), &[]),
        // 404 until the stream's first event is stored.
        reader(
            "stream",
            "/v1/streams/tickets/P1-0/events",
            jwt("reader-stream"),
            &[404],
        ),
        reader(
            "view",
            "/v1/views/tickets?limit=10",
            jwt("reader-view"),
            &[],
        ),
        reader("keyed-read", "/v1/events?from=0&limit=5", key.clone(), &[]),
        reader("readyz", "/readyz", String::new(), &[]),
    ];
    for r in readers {
        tasks.push(tokio::spawn(read(
            base.clone(),
            r,
            seen.clone(),
            stop.clone(),
        )));
    }
    let mut publish = Running(
        herald_command()
            .args(["publish", "--url", &base, "--batch", "1", "--json"])
            .env("HERALD_API_KEY", &key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herald publish"),
    );
    let mut publish_output = Output::collect(&mut publish.0);
    let feed_stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stdin, stop) = (publish.0.stdin.take().unwrap(), feed_stop.clone());
        std::thread::spawn(move || feed(stdin, stop))
    };

    let progress = |kinds: &'static [&'static str], ok: u64, unavailable: u64| {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move {
                let seen = seen.lock().unwrap();
                kinds
                    .iter()
                    .all(|k| seen.ok(k) >= ok && seen.unavailable(k) >= unavailable)
            }
        }
    };
    const ALL: &[&str] = &["append", "log", "stream", "view", "keyed-read", "readyz"];
    assert!(
        eventually(Duration::from_secs(30), progress(ALL, 20, 0)).await,
        "the load did not get going: {:?}",
        seen.lock().unwrap().counts
    );

    // The outage: every kind of request meets it before the store returns.
    let before = seen.lock().unwrap().acknowledged.len();
    let c = cluster.clone();
    let stopped_at = Instant::now();
    blocking(move || c.stop_immediately()).await;
    assert!(
        eventually(Duration::from_secs(20), progress(ALL, 0, 3)).await,
        "not every kind of request met the outage: {:?}",
        seen.lock().unwrap().counts
    );
    let c = cluster.clone();
    blocking(move || c.start()).await;
    let down_for = stopped_at.elapsed();

    // The same process serves appends and reads again, without a restart.
    let at_restart = seen.lock().unwrap().acknowledged.len();
    let recovered = eventually(Duration::from_secs(30), || {
        let seen = seen.clone();
        async move {
            let seen = seen.lock().unwrap();
            seen.acknowledged.len() >= at_restart + 4 * PRODUCERS
                && ALL
                    .iter()
                    .all(|k| seen.last.get(k).is_some_and(|s| *s < 300))
        }
    })
    .await;
    assert!(
        recovered,
        "herald did not serve again within 30 s of the restart: {:?}, last answers {:?}",
        seen.lock().unwrap().counts,
        seen.lock().unwrap().last
    );
    assert!(
        herald.child.try_wait().unwrap().is_none(),
        "herald exited during the outage"
    );
    assert_eq!(herald.child.id(), pid);

    stop.store(true, Ordering::SeqCst);
    feed_stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let fed = feeder.join().unwrap();
    let status = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = publish.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "herald publish did not finish");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    })
    .await;
    let (publish_lines, publish_stderr) = publish_output.finish();

    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("every task ended")
        .into_inner()
        .unwrap();
    assert!(
        seen.violations.is_empty(),
        "{} answers other than success or 503 store-unavailable with Retry-After, e.g. {:#?}",
        seen.violations.len(),
        &seen.violations[..seen.violations.len().min(10)]
    );
    assert!(seen.acknowledged.len() > before);

    // herald publish rode out the outage: every line it read published.
    assert!(
        status.success(),
        "herald publish failed ({status}): {publish_stderr}"
    );
    let summary: Value = serde_json::from_str(publish_lines.last().expect("a summary")).unwrap();
    let summary = &summary["summary"];
    assert!(
        publish_stderr.contains("503 store-unavailable") && publish_stderr.contains("retrying"),
        "herald publish never met the outage: {publish_stderr}"
    );
    assert_eq!(summary["lines"], fed, "{publish_stderr}");
    assert_eq!(summary["failed"], 0, "{publish_stderr}");
    let published_ids: Vec<String> = publish_lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["ok"] == true)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(published_ids.len() as u64, fed);

    // Every acknowledged event is in the store, exactly once.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let stored: HashMap<String, i64> = client
        .query(
            "SELECT event_id::text, count(*) FROM herald_events GROUP BY event_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for id in seen.acknowledged.iter().chain(&published_ids) {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged event {id} is not stored exactly once"
        );
    }
    drop(client);
    let _ = connection.await;
    eprintln!(
        "acknowledged {} appends and {} published lines; answers (ok, 503) {:?}; \
         the cluster was down for {down_for:?}",
        seen.acknowledged.len(),
        published_ids.len(),
        seen.counts
    );
}
