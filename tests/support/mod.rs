//! Shared helpers of the end-to-end tests: Herald's HTTP app in process over
//! a fresh embedded store, and the `herald` binary as a child process.
#![allow(dead_code)]

pub mod cluster;
pub mod kafka;
pub mod openapi;
pub mod probe;
pub mod raw;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::api::{AppState, Limits};
use herald::auth::ApiKey;
use herald_events::{EventRegistry, TenantId};
use herald_store::{ApiKeyRecord, EmbeddedConfig, EmbeddedStore, EventStore};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Limits used in process unless a test sets its own.
pub const TEST_LIMITS: Limits = Limits {
    max_body_bytes: 64 * 1024,
    max_events_per_append: 10,
    body_timeout: herald::config::DEFAULT_BODY_TIMEOUT,
};

/// App state over a fresh embedded store in `dir`.
pub async fn embedded_state(dir: &Path, limits: Limits) -> AppState {
    let store = EmbeddedStore::open(EmbeddedConfig::in_dir(dir))
        .await
        .expect("open the embedded store");
    state(Arc::new(store), limits).await
}

/// App state over `store`, authenticating as a loopback server would.
pub async fn state(store: Arc<dyn EventStore>, limits: Limits) -> AppState {
    let auth = herald::auth::Authenticator::start(
        Arc::clone(&store),
        &herald::auth::AuthSettings::default(),
        "127.0.0.1:8080".parse().expect("an address"),
    )
    .await
    .expect("start authentication");
    // One registry, shared: runtime types installed through any part are
    // seen by all, as in `herald serve`.
    let registry = EventRegistry::builtin().expect("builtin registry");
    let hub = herald::ws::Hub::start(Arc::clone(&store), registry.clone())
        .await
        .expect("start the hub");
    let schemas = Arc::new(herald::runtime_schemas::RuntimeSchemas::new(
        Arc::clone(&store),
        registry.clone(),
    ));
    // The in-process app has no reveal middleware (`herald serve` wraps
    // it): its appends stay as sent. Sealing is tested through the binary.
    let privacy = herald_privacy::Privacy::open_without_sealing(
        Arc::clone(&store),
        registry.clone(),
        herald_privacy::MasterSource::Stored,
    )
    .await
    .expect("open the privacy layer");
    let automations = Arc::new(
        herald::automations::Automations::new(
            Arc::clone(&store),
            herald::domains::shared_builtin(),
        )
        .with_privacy(Arc::clone(&privacy)),
    );
    AppState {
        privacy,
        domains: herald_actors::Domains::default(),
        placement: herald::placement::Placement::alone(),
        auth,
        hub,
        store,
        broker: Arc::new(herald_brokers::memory::MemoryBroker::default()),
        registry,
        schemas,
        automations,
        limits,
        metrics: PrometheusBuilder::new().build_recorder().handle(),
        read_side: None,
        countdown_images: herald::api::countdowns::image_cache(60),
        progress: Default::default(),
    }
}

/// Starts `n` `herald serve` processes side by side, each in a directory of
/// its own and on a free port, with `env` and the `extra` arguments, and
/// waits until each answers `/healthz`. The directories must outlive the
/// processes.
pub async fn start_serves(
    n: usize,
    env: &[(&str, &str)],
    extra: &[&str],
    within: Duration,
) -> (Vec<tempfile::TempDir>, Vec<Herald>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut processes: Vec<Herald> = dirs
        .iter()
        .map(|dir| {
            let listen = format!("127.0.0.1:{}", free_port());
            let args = [&["serve", "--listen", &listen][..], extra].concat();
            Herald::start(dir.path(), &args, env)
        })
        .collect();
    for p in &mut processes {
        p.wait_healthy(within).await;
    }
    (dirs, processes)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Stores a new API key of `tenant` with `scopes` (and its own rate, if
/// given); returns its id and the full key to present.
pub async fn create_key(
    store: &Arc<dyn EventStore>,
    tenant: &str,
    scopes: &[&str],
    rate: Option<u32>,
) -> (String, String) {
    let key = ApiKey::generate();
    store
        .insert_api_key(&ApiKeyRecord {
            key_id: key.id.clone(),
            tenant: TenantId::new(tenant).expect("a valid tenant"),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            secret_sha256: key.secret_sha256(),
            label: None,
            rate_per_sec: rate,
            created_at: Utc::now(),
            revoked_at: None,
        })
        .await
        .expect("store the key");
    (key.id.clone(), key.reveal())
}

/// The `herald` binary, with no `HERALD_*` variable of the test's
/// environment (so a developer's settings cannot change a test).
pub fn herald_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A child's output, read on threads as it comes: stdout line by line,
/// stderr whole.
pub struct Output {
    stdout: Arc<Mutex<Vec<String>>>,
    out_reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<String>>,
}

impl Output {
    /// Takes the child's piped stdout and stderr.
    pub fn collect(child: &mut Child) -> Self {
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let out_reader = {
            let (pipe, stdout) = (child.stdout.take().expect("piped stdout"), stdout.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    stdout.lock().unwrap().push(line.unwrap());
                }
            })
        };
        let err_reader = {
            let mut pipe = child.stderr.take().expect("piped stderr");
            std::thread::spawn(move || {
                let mut text = String::new();
                pipe.read_to_string(&mut text).unwrap();
                text
            })
        };
        Self {
            stdout,
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
        }
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// After the child exited: every stdout line and the whole stderr.
    pub fn finish(&mut self) -> (Vec<String>, String) {
        if let Some(reader) = self.out_reader.take() {
            reader.join().unwrap();
        }
        let stderr = self
            .err_reader
            .take()
            .map(|r| r.join().unwrap())
            .unwrap_or_default();
        (self.lines(), stderr)
    }
}

/// `POST url` with a JSON body: the status and the JSON answer (`null`
/// when there is none).
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("herald answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// `GET url`: the JSON answer.
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("herald answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// A running `herald` process, killed when dropped.
pub struct Herald {
    pub child: Child,
    pub base: String,
}

impl Herald {
    /// Starts `herald <args>` in `cwd` with no `HERALD_*` variable but `env`.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = herald_command();
        cmd.current_dir(cwd)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let listen = args
            .windows(2)
            .find(|w| w[0] == "--listen")
            .map(|w| w[1].to_owned())
            .or_else(|| {
                env.iter()
                    .find(|(k, _)| *k == "HERALD_LISTEN")
                    .map(|(_, v)| (*v).to_owned())
            })
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let child = cmd.spawn().expect("spawn herald");
        Self {
            child,
            base: format!("http://{listen}"),
        }
    }

    /// Waits until `/healthz` answers 200; returns how long that took.
    pub async fn wait_healthy(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        let healthy = herald_testkit::eventually(within, || {
            let request = client.get(&url).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("herald exited early with {status}");
        }
        assert!(healthy, "herald did not answer /healthz within {within:?}");
        started.elapsed()
    }

    /// Kills the process with SIGKILL (no chance to clean up, as after a
    /// crash or power loss) and reaps it.
    pub fn kill9(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL failed");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait_exit(within)
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for herald") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not stop within {within:?}"
            );
            // std has no wait with a timeout, so poll the exit status.
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `herald.v1` websocket client for tests.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects to `base` (http://host:port) and authenticates with `token`;
    /// returns the client and the `ready` frame.
    pub async fn connect(base: &str, token: &str) -> (Self, serde_json::Value) {
        let mut client = Self::open(base).await;
        client
            .send(serde_json::json!({"type": "auth", "token": token}))
            .await;
        let ready = client.next().await.expect("a frame after auth");
        (client, ready)
    }

    /// Connects without authenticating.
    pub async fn open(base: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/subscribe", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("a websocket request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "herald.v1".parse().expect("a header value"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the websocket opens");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("herald.v1")
        );
        Self { socket }
    }

    pub async fn send(&mut self, frame: serde_json::Value) {
        use futures::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
            .expect("send a frame");
    }

    /// The next JSON frame (skipping heartbeats and pings), or `None` when
    /// the socket closed. Panics after 30 s of silence.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        use futures::StreamExt;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("a frame within 30 s")?;
            match message {
                Ok(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&text).expect("frames are JSON");
                    if value["type"] != "heartbeat" {
                        return Some(value);
                    }
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                    return Some(serde_json::json!({
                        "type": "close",
                        "code": frame.as_ref().map(|f| u16::from(f.code)),
                        "reason": frame.as_ref().map(|f| f.reason.to_string()),
                    }));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// App state over a Postgres store on `db` with read models: a projection
/// runner of `projections` (polling every 20 ms) runs in the background
/// until the returned sender is dropped or sends `true`.
pub async fn postgres_state_with_projections(
    db: &herald_testkit::TestDatabase,
    projections: Vec<Arc<dyn herald_projections::Projection>>,
) -> (
    AppState,
    herald_projections::ProjectionRunner,
    tokio::sync::watch::Sender<bool>,
) {
    let store = herald_store::PostgresStore::open(herald_store::PostgresConfig::new(db.url()))
        .await
        .expect("open the Postgres store");
    let pool = store.pool().clone();
    let store: Arc<dyn EventStore> = Arc::new(store);
    let runner = herald_projections::ProjectionRunner::new(pool, Arc::clone(&store), projections)
        .with_config(herald_projections::RunnerConfig {
            poll_interval: Duration::from_millis(20),
            ..herald_projections::RunnerConfig::default()
        });
    runner.install().await.expect("install the projections");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = runner.clone();
    tokio::spawn(async move { running.run(stop).await });
    let mut state = state(store, TEST_LIMITS).await;
    state.read_side = Some(runner.clone().into());
    (state, runner, stop_tx)
}

/// Waits until every projection of `runner` has applied the store's head.
pub async fn caught_up(runner: &herald_projections::ProjectionRunner, within: Duration) {
    let done = herald_testkit::eventually(within, || async {
        match runner.statuses().await {
            Ok(all) => all.iter().all(|s| s.lag_events == 0 && s.rebuild.is_none()),
            Err(_) => false,
        }
    })
    .await;
    assert!(done, "the projections catch up within {within:?}");
}
