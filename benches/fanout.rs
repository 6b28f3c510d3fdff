//! Fan-out to websocket subscribers on embedded defaults: `herald serve`
//! with no configuration (SQLite store, in-process broker), N websocket
//! subscribers each filtered to about 10% of the events (one of ten groups
//! of streams), and events appended over HTTP at a paced rate. Prints
//! subscribers × events/s and the p50/p99/max latency from the append
//! request to delivery on a subscriber's socket, and whether every
//! subscriber got every event of its filter.
//!
//! Run with `cargo bench --bench fanout`. `HERALD_BENCH_SUBSCRIBERS`
//! (default 1000), `HERALD_BENCH_RATE` (events/s, default 2000) and
//! `HERALD_BENCH_SECONDS` (default 5) change the load;
//! `HERALD_BENCH_BINARY` runs another `herald` build. `-- --test` does a
//! smoke run of 20 subscribers for a second. The server and the clients
//! share the machine's cores, so the figure includes the clients' cost.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The allocator the `herald` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GROUPS: usize = 10;
const STREAMS_PER_GROUP: usize = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stream(group: usize, n: usize) -> String {
    format!("tickets/G{group}-{}", n % STREAMS_PER_GROUP)
}

/// The event id inside an `event` frame, found without parsing the frame
/// (the clients share the server's cores, so they do as little as they can).
fn event_id(frame: &str) -> Option<u128> {
    let at = frame.find(r#""event":{"id":""#)? + r#""event":{"id":""#.len();
    uuid::Uuid::parse_str(frame.get(at..at + 36)?)
        .ok()
        .map(|u| u.as_u128())
}

fn main() {
    // The clients share the machine with the server: like `herald` itself,
    // they run without transparent huge pages, whose 2 MiB page-zeroing
    // faults would otherwise stall them and count as delivery latency.
    herald::telemetry::disable_transparent_huge_pages();
    let smoke = std::env::args().any(|a| a == "--test");
    if std::env::args().any(|a| a == "--list") {
        println!("fanout: bench");
        return;
    }
    let subscribers = if smoke {
        20
    } else {
        env_or("HERALD_BENCH_SUBSCRIBERS", 1000) as usize
    };
    let rate = if smoke {
        200
    } else {
        env_or("HERALD_BENCH_RATE", 2000)
    };
    let seconds = if smoke {
        1
    } else {
        env_or("HERALD_BENCH_SECONDS", 5)
    };

    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    // Another build than the bench's own, to compare two in one sitting.
    let binary = std::env::var_os("HERALD_BENCH_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_herald").into());
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            command.env_remove(key);
        }
    }
    let _server = Server(
        command
            .current_dir(dir.path())
            // Every subscriber connects from 127.0.0.1: no per-client cap.
            .args([
                "serve",
                "--listen",
                &listen,
                "--log",
                "warn",
                "--max-connections-per-client",
                "0",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start herald"),
    );
    let base = format!("http://{listen}");

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let http = reqwest::Client::new();
        let up = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(up.elapsed() < Duration::from_secs(20), "herald did not start");
            tokio::task::yield_now().await;
        }

        // Subscribers: subscriber i follows group i mod 10. Each keeps its own
        // arrival times (no lock shared between readers) and counts into one
        // atomic so the main task knows when everything has arrived.
        let arrived = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut readers = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let url = format!("ws://{listen}/v1/subscribe");
            let mut request = url.into_client_request().expect("a request");
            request
                .headers_mut()
                .insert("sec-websocket-protocol", "herald.v1".parse().expect("a header"));
            // A small read buffer: tungstenite zeroes its buffer on every
            // read, and each read here holds one or two frames.
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(8 * 1024);
            let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .expect("connect");
            let group = i % GROUPS;
            let streams: Vec<String> = (0..STREAMS_PER_GROUP).map(|n| stream(group, n)).collect();
            socket
                .send(Message::Text(json!({"type": "auth", "token": ""}).to_string().into()))
                .await
                .expect("auth");
            socket
                .send(Message::Text(
                    json!({"type": "subscribe", "id": "s", "filter": {"streams": streams}, "from": "now"})
                        .to_string()
                        .into(),
                ))
                .await
                .expect("subscribe");
            // Wait for `live`, so no event is missed by a late subscription.
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(t))) if t.contains(r#""type":"live""#) => break,
                    Some(Ok(_)) => continue,
                    other => panic!("subscriber {i} failed: {other:?}"),
                }
            }
            let arrived = Arc::clone(&arrived);
            let mut stopped = stopped.clone();
            readers.push(tokio::spawn(async move {
                let mut got: HashMap<u128, Instant> =
                    HashMap::with_capacity((rate * seconds) as usize / GROUPS + 64);
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        message = socket.next() => match message {
                            Some(Ok(Message::Text(text))) => {
                                if let Some(id) = event_id(&text) {
                                    got.insert(id, Instant::now());
                                    arrived.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
                got
            }));
        }

        // Appends, paced: a batch every 10 ms.
        let per_tick = (rate / 100).max(1) as usize;
        let mut sent: Vec<(u128, usize, Instant)> = Vec::new();
        let append_times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let mut items = Vec::with_capacity(per_tick);
            let at = Instant::now();
            for _ in 0..per_tick {
                let group = n % GROUPS;
                let id = uuid::Uuid::now_v7();
                items.push(json!({"id": id.to_string(), "stream": stream(group, n / GROUPS), "type": "tickets.note_appended",
                                  "version": 1, "payload": {"note": format!("event {n}")}}));
                sent.push((id.as_u128(), group, at));
                n += 1;
            }
            let http = http.clone();
            let url = format!("{base}/v1/events");
            let append_times = Arc::clone(&append_times);
            tokio::spawn(async move {
                let resp = http.post(url).json(&json!({"events": items})).send().await.expect("append");
                assert!(resp.status().is_success(), "append failed: {}", resp.status());
                append_times.lock().expect("append times").push(at.elapsed());
            });
        }
        let appending = started.elapsed();

        // Wait (bounded) for every expected delivery.
        let expected: usize = (0..subscribers)
            .map(|i| sent.iter().filter(|(_, g, _)| *g == i % GROUPS).count())
            .sum();
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrived.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        let mut received = Vec::with_capacity(subscribers);
        for r in readers {
            received.push(r.await.expect("a reader"));
        }
        let mut latencies = Vec::with_capacity(expected);
        let mut missing = 0usize;
        for (i, got) in received.iter().enumerate() {
            for (id, group, at) in &sent {
                if *group != i % GROUPS {
                    continue;
                }
                match got.get(id) {
                    Some(delivered) => latencies.push(delivered.saturating_duration_since(*at)),
                    None => missing += 1,
                }
            }
        }
        latencies.sort();
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p50, p99, max) = (pick(0.5), pick(0.99), latencies.last().copied().unwrap_or_default());
        let mut appends = append_times.lock().expect("append times").clone();
        appends.sort();
        let append_pick = |q: f64| {
            appends
                .get(((appends.len() as f64 * q) as usize).min(appends.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        if smoke {
            println!("fanout bench SMOKE RUN (the numbers mean nothing)");
        } else {
            println!("fanout bench (herald serve on embedded defaults; {seconds} s)");
        }
        println!(
            "{subscribers} subscribers x {:.0} events/s appended (each subscriber filtered to 1/{GROUPS}): \
             {} deliveries, {missing} missing; append -> delivered p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            n as f64 / appending.as_secs_f64(),
            latencies.len(),
            ms(p50),
            ms(p99),
            ms(max),
        );
        println!(
            "of which the append request (until its answer, after commit): p50 {:.1} ms, p99 {:.1} ms",
            ms(append_pick(0.5)),
            ms(append_pick(0.99)),
        );
        println!(
            "target: 1,000 subscribers, 2,000 events/s, p99 < 50 ms: {}",
            if !smoke && subscribers >= 1000 && rate >= 2000 && missing == 0 && p99 < Duration::from_millis(50) {
                "MET"
            } else if smoke {
                "n/a (smoke run)"
            } else {
                "NOT MET"
            }
        );
    });
}
