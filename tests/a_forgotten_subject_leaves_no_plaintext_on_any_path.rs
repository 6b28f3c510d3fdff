//! Forgetting a person, as users run Herald: `herald serve` on its embedded
//! defaults, and on a Postgres cluster of the test's own with RabbitMQ.
//!
//! Two customers, A and B, each with an edge (its site is personal), a
//! ticket (description, opener, notes and their authors) and a draft (its
//! author). A key with `personal:read` (the admin) sees both in plaintext;
//! a key without it never sees either, on any path. Then A's customer id
//! and A's contact are forgotten, one through the HTTP API and one with
//! `herald forget`. From then on no read path holds A's plaintext — stream
//! reads, `/v1/events`, search, the websocket and server-sent events
//! (replayed from the start), the views, the aggregates' states and states
//! at a moment, the subject access request — while B's is intact; the
//! files of the store (SQLite files, or the whole Postgres data directory
//! with its WAL after a checkpoint), `herald audit export` and the broker's
//! messages hold no plaintext of anyone; `herald audit verify` is intact;
//! and after a restart every read answers the same.

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use herald_testkit::eventually;
use serde_json::{json, Value};
use support::cluster::Cluster;
use support::{free_port, Herald, WsClient};

/// What each customer's personal fields hold: unique text no other byte
/// of the system could contain by chance.
const A_SECRETS: [&str; 4] = [
    "Ann-Elm-Street-77-site",
    "Ann-router-smoking-4711",
    "Ann-note-about-her-cat",
    "ann.a@example.test",
];
const B_SECRETS: [&str; 4] = [
    "Bob-Oak-Avenue-12-site",
    "Bob-modem-blinking-0815",
    "Bob-note-about-his-dog",
    "bob.b@example.test",
];

struct Customer {
    id: &'static str,
    contact: &'static str,
    secrets: [&'static str; 4],
    edge: &'static str,
    ticket: &'static str,
    draft: &'static str,
}

const A: Customer = Customer {
    id: "cust-a",
    contact: "ann.a@example.test",
    secrets: A_SECRETS,
    edge: "E-A",
    ticket: "T-A",
    draft: "D-A",
};
const B: Customer = Customer {
    id: "cust-b",
    contact: "bob.b@example.test",
    secrets: B_SECRETS,
    edge: "E-B",
    ticket: "T-B",
    draft: "D-B",
};

/// `herald` with a store flag, in `dir`; answers stdout, panics on failure.
fn herald_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = support::herald_command()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run herald");
    assert!(
        out.status.success(),
        "herald {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, key: &str, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("herald answers");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }

    async fn get_text(&self, key: &str, path: &str) -> String {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("herald answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        text
    }

    /// How many events a search with `query` finds.
    async fn found(&self, key: &str, query: &str) -> usize {
        let page: Value = serde_json::from_str(
            &self
                .get_text(key, &format!("/v1/events/search?{query}&limit=1000"))
                .await,
        )
        .unwrap();
        page["events"].as_array().unwrap().len()
    }

    /// Every event frame of a websocket subscription from the start, until
    /// it is live.
    async fn websocket_history(&self, key: &str) -> String {
        let (mut ws, ready) = WsClient::connect(&self.base, key).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        ws.send(json!({"type": "subscribe", "id": "all", "filter": {"domains": ["tickets", "edges", "drafts"]}, "from": "start"}))
            .await;
        let mut frames = String::new();
        loop {
            let frame = ws.next().await.expect("a frame");
            match frame["type"].as_str() {
                Some("live") => break,
                Some("event") | Some("subscribed") => frames.push_str(&frame.to_string()),
                _ => panic!("unexpected frame {frame}"),
            }
        }
        frames
    }

    /// The server-sent events from the start, until the stream is live.
    async fn sse_history(&self, key: &str) -> String {
        let resp = self
            .http
            .get(format!(
                "{}/v1/events/stream?domain=tickets&domain=edges&domain=drafts&from=start",
                self.base
            ))
            .bearer_auth(key)
            .send()
            .await
            .expect("herald answers");
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut text = String::new();
        while !text.contains("event: live") {
            let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
                .await
                .expect("server-sent events within 20 s")
                .expect("the stream goes on")
                .expect("a chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    }

    /// What every read path answers `key`, concatenated.
    async fn every_read(&self, key: &str, admin: bool) -> String {
        let mut all = String::new();
        for c in [&A, &B] {
            for stream in [
                format!("edges/{}", c.edge),
                format!("tickets/{}", c.ticket),
                format!("drafts/{}", c.draft),
            ] {
                all += &self
                    .get_text(key, &format!("/v1/streams/{stream}/events"))
                    .await;
                all += &self.get_text(key, &format!("/v1/{stream}")).await;
                if admin {
                    let at =
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    all += &self
                        .get_text(key, &format!("/v1/streams/{stream}?at={at}"))
                        .await;
                }
            }
        }
        all += &self.get_text(key, "/v1/events?limit=1000").await;
        all += &self
            .get_text(
                key,
                "/v1/events/search?domain=tickets&domain=edges&domain=drafts&limit=1000",
            )
            .await;
        for view in ["tickets", "edges", "drafts"] {
            all += &self.get_text(key, &format!("/v1/views/{view}")).await;
        }
        all += &self
            .get_text(key, &format!("/v1/views/tickets/{}", A.ticket))
            .await;
        all += &self.websocket_history(key).await;
        all += &self.sse_history(key).await;
        all
    }
}

/// A search for the notes of `author`.
fn notes_by(author: &str) -> String {
    format!("type=tickets.note_appended&payload.author={author}")
}

fn assert_holds_none(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} holds {secret:?}");
    }
}

fn assert_holds_all(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(text.contains(secret), "{what} lacks {secret:?}");
    }
}

/// Every byte of every file under `dir`, searched for each secret.
fn assert_files_hold_none(dir: &Path, secrets: &[&str]) -> usize {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                for secret in secrets {
                    assert!(
                        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                        "{} holds {secret:?}",
                        path.display()
                    );
                }
            }
        }
    }
    files
}

async fn write_customer(api: &Api, admin: &str, c: &Customer) {
    api.post(
        admin,
        &format!("/v1/edges/{}/register", c.edge),
        json!({"customer": c.id, "serial": format!("SN-{}", c.edge), "site": c.secrets[0]}),
    )
    .await;
    api.post(
        admin,
        &format!("/v1/tickets/{}/open", c.ticket),
        json!({"kind": "other", "customer": c.id, "description": c.secrets[1], "opened_by": c.contact}),
    )
    .await;
    // Enough events to cross the snapshot boundary (HERALD_SNAPSHOT_EVERY=2).
    for i in 0..3 {
        api.post(
            admin,
            &format!("/v1/tickets/{}/append_note", c.ticket),
            json!({"note": format!("{} #{i}", c.secrets[2]), "author": c.contact}),
        )
        .await;
    }
    api.post(
        admin,
        &format!("/v1/drafts/{}/create", c.draft),
        json!({"title": "quote", "document": {"lines": 1}, "created_by": c.contact}),
    )
    .await;
}

struct Setup<'a> {
    dir: &'a Path,
    /// `--store` and broker settings of `herald serve` and the CLI.
    env: Vec<(&'static str, String)>,
    /// Where the store's files are.
    files: std::path::PathBuf,
}

impl Setup<'_> {
    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn serve(&self) -> Herald {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut env = self.env();
        env.push(("HERALD_SNAPSHOT_EVERY", "2"));
        Herald::start(self.dir, &["serve", "--listen", &listen], &env)
    }
}

async fn forget_one_of_two(setup: Setup<'_>, broker_capture: Option<Capture>) {
    let env = setup.env();
    let admin = herald_cli(
        setup.dir,
        &["keys", "create", "--tenant", "default", "--scopes", "admin"],
        &env,
    )
    .trim()
    .to_owned();
    let reader = herald_cli(
        setup.dir,
        &[
            "keys",
            "create",
            "--tenant",
            "default",
            "--scopes",
            "read:*,subscribe:*,publish:*,automations:read",
        ],
        &env,
    )
    .trim()
    .to_owned();
    let decrypter = herald_cli(
        setup.dir,
        &[
            "keys",
            "create",
            "--tenant",
            "default",
            "--scopes",
            "personal:decrypt",
        ],
        &env,
    )
    .trim()
    .to_owned();

    let mut serve = setup.serve();
    serve.wait_healthy(Duration::from_secs(60)).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: serve.base.clone(),
    };
    write_customer(&api, &admin, &A).await;
    write_customer(&api, &admin, &B).await;
    // The read models have caught up when the views list both drafts.
    let caught_up = eventually(Duration::from_secs(30), || async {
        let drafts = api.get_text(&admin, "/v1/views/drafts").await;
        let tickets = api.get_text(&admin, "/v1/views/tickets").await;
        drafts.contains(A.draft) && drafts.contains(B.draft) && tickets.contains(B.ticket)
    })
    .await;
    assert!(caught_up, "the read models did not catch up");

    // Before: the admin reads both customers in plaintext; a key without
    // personal:read reads neither, anywhere.
    let before = api.every_read(&admin, true).await;
    assert_holds_all("the admin's reads", &before, &A_SECRETS);
    assert_holds_all("the admin's reads", &before, &B_SECRETS);
    let reader_before = api.every_read(&reader, false).await;
    assert_holds_none("a reader's reads", &reader_before, &A_SECRETS);
    assert_holds_none("a reader's reads", &reader_before, &B_SECRETS);
    assert!(
        reader_before.contains("[personal]"),
        "no marker for a reader"
    );

    // Search by a personal value: sealed as it would be stored.
    assert_eq!(api.found(&admin, &notes_by(A.contact)).await, 3);
    assert_eq!(api.found(&admin, &notes_by(B.contact)).await, 3);
    let by_description = format!(
        "type=tickets.ticket_opened&payload.customer={}&payload.description={}",
        A.id, A.secrets[1]
    );
    assert_eq!(api.found(&admin, &by_description).await, 1);
    let resp = api
        .http
        .get(format!(
            "{}/v1/events/search?type=tickets.ticket_opened&payload.description={}",
            api.base, A.secrets[1]
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "a personal field searched without its subject"
    );

    // Forget A: the customer through the API, the contact with the CLI.
    let forgotten = api
        .post(
            &admin,
            &format!("/v1/subjects/{}/forget", A.id),
            json!({"reason": "DSR-2026-001"}),
        )
        .await;
    assert_eq!(forgotten["keys_destroyed"].as_array().unwrap().len(), 1);
    let cli_env: Vec<(&str, &str)> = vec![("HERALD_URL", &serve.base), ("HERALD_API_KEY", &admin)];
    let said = herald_cli(
        setup.dir,
        &["forget", A.contact, "--reason", "DSR-2026-001"],
        &cli_env,
    );
    assert!(said.contains("forgotten"), "{said}");

    let after = api.every_read(&admin, true).await;
    assert_holds_none("the admin's reads after forgetting A", &after, &A_SECRETS);
    assert_holds_all("the admin's reads after forgetting A", &after, &B_SECRETS);
    assert!(after.contains("[forgotten]"), "no forgotten marker");
    assert_eq!(api.found(&admin, &notes_by(A.contact)).await, 0);
    assert_eq!(api.found(&admin, &by_description).await, 0);
    assert_eq!(api.found(&admin, &notes_by(B.contact)).await, 3);
    let reader_after = api.every_read(&reader, false).await;
    assert_holds_none("a reader's reads", &reader_after, &A_SECRETS);
    assert_holds_none("a reader's reads", &reader_after, &B_SECRETS);

    // The erasure is recorded, with no personal data in it.
    let erasures = api
        .get_text(&admin, "/v1/events/search?domain=subjects&limit=100")
        .await;
    assert_eq!(
        erasures.matches("subjects.subject_forgotten").count(),
        2,
        "{erasures}"
    );
    assert_holds_none("the erasure events", &erasures, &A_SECRETS);
    assert_holds_none("the erasure events", &erasures, &[A.id]);

    // Subject access: everything about B, decrypted; A's is forgotten.
    let b_record = api
        .get_text(&admin, &format!("/v1/subjects/{}/events", B.contact))
        .await;
    assert_holds_all("B's contact's record", &b_record, &B_SECRETS[2..]);
    let exported = herald_cli(setup.dir, &["subject", "export", B.id], &cli_env);
    assert_holds_all("herald subject export", &exported, &B_SECRETS[..2]);
    let a_record = api
        .get_text(&admin, &format!("/v1/subjects/{}/events", A.id))
        .await;
    assert_holds_none("A's record", &a_record, &A_SECRETS);
    assert!(a_record.contains("\"forgotten\":true"), "{a_record}");

    // The broker carried ciphertext only; the decrypt API opens B's, not A's.
    if let Some(capture) = broker_capture {
        let messages = capture.drain(Duration::from_secs(10)).await;
        let all: Vec<u8> = messages.concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("hpd1."),
            "the broker's messages carry no sealed value"
        );
        assert_holds_none("the broker's messages", &text, &A_SECRETS);
        assert_holds_none("the broker's messages", &text, &B_SECRETS);
        let tokens: Vec<Value> = text
            .split('"')
            .filter(|s| s.starts_with("hpd1."))
            .map(|s| Value::String(s.to_owned()))
            .collect();
        let revealed = api
            .post(
                &decrypter,
                "/v1/personal/reveal",
                json!({ "tokens": tokens }),
            )
            .await
            .to_string();
        assert_holds_all("the broker's messages, decrypted", &revealed, &B_SECRETS);
        assert_holds_none("the broker's messages, decrypted", &revealed, &A_SECRETS);
    }

    // Stop; the files, the export and the chain.
    let status = serve.terminate(Duration::from_secs(30));
    assert!(status.success(), "herald serve ended with {status}");
    let export_file = setup.dir.join("export.jsonl");
    herald_cli(
        setup.dir,
        &["audit", "export", "--output", export_file.to_str().unwrap()],
        &env,
    );
    let export = std::fs::read_to_string(&export_file).unwrap();
    assert!(
        export.contains("hpd1."),
        "the export carries the sealed values"
    );
    assert!(
        export.contains("subjects.subject_forgotten"),
        "the export states what was forgotten"
    );
    assert_holds_none("the export", &export, &A_SECRETS);
    assert_holds_none("the export", &export, &B_SECRETS);
    std::fs::remove_file(&export_file).unwrap();
    let verified = herald_cli(setup.dir, &["audit", "verify"], &env);
    assert!(verified.to_lowercase().contains("intact"), "{verified}");
    let scanned = assert_files_hold_none(&setup.files, &[&A_SECRETS[..], &B_SECRETS[..]].concat());
    assert!(
        scanned > 0,
        "no store file scanned under {}",
        setup.files.display()
    );

    // A restart changes nothing.
    let mut serve = setup.serve();
    serve.wait_healthy(Duration::from_secs(60)).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: serve.base.clone(),
    };
    let restarted = api.every_read(&admin, true).await;
    assert_holds_none("the admin's reads after a restart", &restarted, &A_SECRETS);
    assert_holds_all("the admin's reads after a restart", &restarted, &B_SECRETS);
    let status = serve.terminate(Duration::from_secs(30));
    assert!(status.success(), "herald serve ended with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        dir: dir.path(),
        env: Vec::new(),
        files: dir.path().join("data"),
    };
    forget_one_of_two(setup, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_and_rabbitmq_with_a_master_key() {
    let cluster = Cluster::start_new();
    let vhost = herald_testkit::TestVhost::create().await;
    let capture = Capture::start(vhost.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let master = herald_cli(dir.path(), &["personal", "new-master-key"], &[])
        .trim()
        .to_owned();
    let setup = Setup {
        dir: dir.path(),
        env: vec![
            ("HERALD_STORE", cluster.url()),
            ("HERALD_BROKER", vhost.url().to_owned()),
            ("HERALD_MASTER_KEY", master),
        ],
        files: cluster.data(),
    };
    forget_one_of_two_with_checkpoint(setup, capture, &cluster).await;
}

/// The Postgres run: the WAL and heap are scanned after a checkpoint, so
/// what the server holds in memory is on disk too.
async fn forget_one_of_two_with_checkpoint(setup: Setup<'_>, capture: Capture, cluster: &Cluster) {
    let url = cluster.url();
    forget_one_of_two(setup, Some(capture)).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test's cluster");
    tokio::spawn(connection);
    client.batch_execute("CHECKPOINT").await.unwrap();
    let snapshots = client
        .query("SELECT state::text FROM herald_snapshots", &[])
        .await
        .unwrap();
    assert!(!snapshots.is_empty(), "no snapshot was taken");
    let all: String = snapshots.iter().map(|r| r.get::<_, String>(0)).collect();
    assert!(
        all.contains("hpd1."),
        "snapshots hold the sealed values: {all}"
    );
    assert_holds_none("the snapshots", &all, &A_SECRETS);
    assert_holds_none("the snapshots", &all, &B_SECRETS);
    let scanned =
        assert_files_hold_none(&cluster.data(), &[&A_SECRETS[..], &B_SECRETS[..]].concat());
    assert!(scanned > 100, "the cluster's files were not scanned");
}

/// A RabbitMQ consumer of its own, bound to every partition of the
/// domains' exchanges before Herald publishes.
struct Capture {
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl Capture {
    async fn start(url: &str) -> Self {
        use lapin::options::*;
        use lapin::types::FieldTable;
        let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for exchange in ["herald.tickets", "herald.edges", "herald.drafts"] {
            channel
                .exchange_declare(
                    exchange.into(),
                    lapin::ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            for key in 0..4 {
                channel
                    .queue_bind(
                        queue.name().clone(),
                        exchange.into(),
                        key.to_string().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
            }
        }
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "privacy-capture".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _connection: connection,
            consumer,
        }
    }

    /// Every message delivered so far (waiting until none came for 1 s,
    /// at most `within`).
    async fn drain(mut self, within: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), self.consumer.next()).await {
                Ok(Some(Ok(delivery))) => out.push(delivery.data),
                _ => break,
            }
        }
        assert!(!out.is_empty(), "the broker delivered nothing");
        out
    }
}
