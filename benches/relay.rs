//! The relay from store append to consumer receipt, per broker backend,
//! beside the raw publish rate of the same broker measured in the same run.
//!
//! For each backend (in-process always; RabbitMQ and Kafka when herald is
//! built with the `amqp` / `kafka` features):
//! - **raw**: what the broker itself takes — messages of the same size
//!   published with confirms, pipelined (in-process: `MemoryBroker::publish`;
//!   RabbitMQ: lapin `basic_publish` with a window of 1000 unconfirmed;
//!   Kafka: rdkafka `FutureProducer` on the mock cluster);
//! - **relay throughput**: events already committed in Postgres, published
//!   by a starting relay and received (and acknowledged) by a consumer group,
//!   per second; printed as a ratio of the raw rate;
//! - **latency**: appends paced at 2,000 events/s while the relay runs;
//!   p50 and p99 of append start → consumer receipt.
//!
//! Run with `cargo bench --bench relay` (add `--features amqp,kafka` for
//! all backends). `HERALD_BENCH_SECONDS` sets the length of the latency run
//! (default 5). `-- --test` (as `cargo test --benches` runs it) does a smoke
//! run of seconds. Postgres comes from `HERALD_TEST_DATABASE_URL`, RabbitMQ
//! from `HERALD_TEST_AMQP_URL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::relay::{Relay, RelayConfig};
use herald_brokers::memory::{MemoryBroker, MemoryConfig};
use herald_brokers::{Broker, ConsumerGroup, Topic, WireMessage};
use herald_events::{Domain, EventId, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::json;
use tokio::runtime::Runtime;

/// The allocator the `herald` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Target rate of the latency run.
const PACED_RATE: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Smoke,
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Events the relay publishes in the throughput run.
    backlog: usize,
    /// Messages in the raw publish run.
    raw: usize,
    /// Length of the paced latency run.
    paced: Duration,
}

impl Sizes {
    fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Smoke => Self {
                backlog: 200,
                raw: 200,
                paced: Duration::from_millis(300),
            },
            Mode::Full => {
                let seconds = std::env::var("HERALD_BENCH_SECONDS")
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| *s > 0.0)
                    .unwrap_or(5.0);
                Self {
                    backlog: 20_000,
                    raw: 20_000,
                    paced: Duration::from_secs_f64(seconds),
                }
            }
        }
    }
}

/// A backend under test: a way to get a broker, and its raw publish rate.
#[async_trait::async_trait]
trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    async fn broker(&self) -> Arc<dyn Broker>;
    /// Raw publish rate (messages/s) of `count` messages like `sample`.
    async fn raw_rate(&self, sample: &WireMessage, count: usize) -> f64;
    /// Removes what the run created on a shared server.
    async fn teardown(&self, _topic: &Topic, _group: &ConsumerGroup) {}
}

struct InProcess;

#[async_trait::async_trait]
impl Backend for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(MemoryBroker::new(MemoryConfig::default()))
    }

    async fn raw_rate(&self, sample: &WireMessage, count: usize) -> f64 {
        let broker = MemoryBroker::new(MemoryConfig::default());
        let started = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let messages = chunk.iter().map(|_| sample.clone()).collect();
            broker
                .publish(messages)
                .await
                .expect("raw in-process publish");
        }
        count as f64 / started.elapsed().as_secs_f64()
    }
}

#[cfg(feature = "amqp")]
mod amqp_backend {
    //! RabbitMQ: the real server; raw rate with lapin directly.
    include!("relay_backends/amqp.rs");
}

#[cfg(feature = "kafka")]
mod kafka_backend {
    //! Kafka: librdkafka's mock cluster; raw rate with rdkafka directly.
    include!("relay_backends/kafka.rs");
}

#[derive(Debug)]
struct Figures {
    backend: &'static str,
    raw: f64,
    relay: f64,
    p50: Duration,
    p99: Duration,
    paced_rate: f64,
}

fn note(i: usize) -> NewEvent {
    NewEvent::new(
        "tickets.note_appended".parse().expect("a valid type"),
        SchemaVersion::V1,
        json!({"note": format!("{i:08} {}", "x".repeat(200)), "author": "bench"}),
    )
}

fn stream(i: usize) -> StreamId {
    format!("tickets/bench-{}", i % 200)
        .parse()
        .expect("a valid stream")
}

/// Appends `count` events, 100 per append.
async fn backlog(store: &Arc<dyn EventStore>, count: usize) {
    for start in (0..count).step_by(100) {
        let events: Vec<NewEvent> = (start..(start + 100).min(count)).map(note).collect();
        store
            .append(
                &TenantId::default_tenant(),
                &stream(start / 100),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append the backlog");
    }
}

async fn measure(backend: &dyn Backend, db: &TestDatabase, sizes: Sizes) -> Figures {
    let mut config = PostgresConfig::new(db.url());
    config.pool_size = 8;
    let store: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(config).await.expect("open the store"));
    // A clean log per backend: a fresh checkpoint name and only new events.
    store
        .save_checkpoint(
            &format!("bench-{}", backend.name()),
            store.head().await.expect("head").position,
            None,
        )
        .await
        .expect("start checkpoint");

    let domain = Domain::new("tickets").expect("a domain");
    let topic = Topic::for_domain(&domain);
    let group =
        ConsumerGroup::new(format!("bench-{}", uuid::Uuid::now_v7().simple())).expect("a group");
    let broker = backend.broker().await;
    let mut subscription = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("subscribe");

    // Raw publish rate with a message of the same size as the relay's.
    let sample_event = {
        let probe = store
            .append(
                &TenantId::default_tenant(),
                &stream(0),
                ExpectedVersion::Any,
                vec![note(0)],
            )
            .await
            .expect("append a probe");
        store
            .read_all(probe.first_position(), 1)
            .await
            .expect("read the probe")
            .remove(0)
    };
    let sample = herald_brokers::encode(&sample_event, broker.wire()).expect("encode");
    let raw = backend.raw_rate(&sample, sizes.raw).await;

    // Throughput: a backlog published by a starting relay.
    let before = store.head().await.expect("head").position;
    backlog(&store, sizes.backlog).await;
    let relay_config = RelayConfig {
        name: format!("bench-{}", backend.name()),
        ..RelayConfig::default()
    };
    store
        .save_checkpoint(&relay_config.name, before, None)
        .await
        .expect("checkpoint");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let relay = Relay::new(store.clone(), broker.clone(), relay_config).spawn(stop_rx);
    let mut received = 0usize;
    while received < sizes.backlog {
        let delivery = tokio::time::timeout(Duration::from_secs(60), subscription.next())
            .await
            .expect("the relay keeps delivering")
            .expect("the subscription goes on")
            .expect("a delivery");
        // The probe and anything older may come first; count only the backlog.
        if delivery
            .content
            .as_ref()
            .map(|c| c.position() > before)
            .unwrap_or(false)
        {
            received += 1;
        }
        delivery.ack().await.expect("ack");
    }
    let relay_rate = sizes.backlog as f64 / started.elapsed().as_secs_f64();

    // Latency at a paced 2,000 events/s.
    let sent: Arc<Mutex<HashMap<EventId, Instant>>> = Arc::default();
    let pacer = {
        let (store, sent) = (store.clone(), sent.clone());
        tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            let per_tick = (PACED_RATE / 100) as usize;
            let mut interval = tokio::time::interval(tick);
            let started = Instant::now();
            let mut n = 0usize;
            while started.elapsed() < sizes.paced {
                interval.tick().await;
                let appends: Vec<_> = (0..per_tick)
                    .map(|k| {
                        let (store, sent) = (store.clone(), sent.clone());
                        let event = note(n + k);
                        let s = stream(n + k);
                        tokio::spawn(async move {
                            sent.lock()
                                .expect("sent map")
                                .insert(event.id, Instant::now());
                            store
                                .append(
                                    &TenantId::default_tenant(),
                                    &s,
                                    ExpectedVersion::Any,
                                    vec![event],
                                )
                                .await
                                .expect("paced append");
                        })
                    })
                    .collect();
                n += per_tick;
                for a in appends {
                    a.await.expect("append task");
                }
            }
            (n, started.elapsed())
        })
    };
    let paced_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let (sent, paced_done) = (sent.clone(), paced_done.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let finished = paced_done.load(std::sync::atomic::Ordering::SeqCst)
                    && sent.lock().expect("sent map").is_empty();
                if finished {
                    break;
                }
                let Ok(Some(Ok(delivery))) =
                    tokio::time::timeout(Duration::from_secs(10), subscription.next()).await
                else {
                    break;
                };
                let at = Instant::now();
                if let Ok(content) = &delivery.content {
                    if let Some(start) = sent.lock().expect("sent map").remove(&content.event_id())
                    {
                        latencies.push(at - start);
                    }
                }
                delivery.ack().await.expect("ack");
            }
            (latencies, subscription)
        })
    };
    let (paced, paced_for) = pacer.await.expect("pacer");
    paced_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut latencies, subscription) = receiver.await.expect("receiver");
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let figures = Figures {
        backend: backend.name(),
        raw,
        relay: relay_rate,
        p50: pick(0.50),
        p99: pick(0.99),
        paced_rate: paced as f64 / paced_for.as_secs_f64(),
    };

    let _ = stop.send(true);
    let _ = relay.await;
    drop(subscription);
    backend.teardown(&topic, &group).await;
    broker.close().await;
    store.close().await;
    figures
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("relay: bench");
        return;
    }
    let mode = if args.iter().any(|a| a == "--test") {
        Mode::Smoke
    } else {
        Mode::Full
    };
    let sizes = Sizes::for_mode(mode);
    let runtime = Runtime::new().expect("a Tokio runtime");
    let results = runtime.block_on(async {
        let db = TestDatabase::create().await;
        #[allow(unused_mut)] // the feature-gated backends push onto it
        let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(InProcess)];
        #[cfg(feature = "amqp")]
        backends.push(Box::new(amqp_backend::Amqp::new().await));
        #[cfg(feature = "kafka")]
        backends.push(Box::new(kafka_backend::Kafka::new().await));
        let mut results = Vec::new();
        for backend in &backends {
            results.push(measure(backend.as_ref(), &db, sizes).await);
        }
        results
    });

    if mode == Mode::Smoke {
        println!("relay bench SMOKE RUN (the numbers mean nothing)");
    } else {
        println!(
            "relay bench (Postgres store; backlog {} events; paced run {:?} at {PACED_RATE} events/s)",
            sizes.backlog, sizes.paced
        );
    }
    for f in &results {
        println!(
            "{:<11} raw publish {:>8.0} msg/s | relay {:>8.0} events/s ({:.2}x raw) | paced {:>5.0} events/s: p50 {:>6.1} ms, p99 {:>6.1} ms",
            f.backend,
            f.raw,
            f.relay,
            f.relay / f.raw,
            f.paced_rate,
            f.p50.as_secs_f64() * 1000.0,
            f.p99.as_secs_f64() * 1000.0,
        );
    }
    for f in &results {
        let latency_target = f.p99 < Duration::from_millis(25);
        match f.backend {
            "in-process" => println!(
                "target in-process: p99 < 25 ms at 2,000 events/s: {}",
                if latency_target { "MET" } else { "NOT MET" }
            ),
            "amqp" => println!(
                "target amqp: relay >= 0.70x raw pipelined-confirm publish: {}; p99 < 25 ms at 2,000 events/s: {}",
                if f.relay >= 0.7 * f.raw { "MET" } else { "NOT MET" },
                if latency_target { "MET" } else { "NOT MET" }
            ),
            _ => {}
        }
    }
}
