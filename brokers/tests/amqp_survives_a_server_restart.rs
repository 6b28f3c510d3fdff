//! The RabbitMQ backend rides out a restart of the server: a publisher that
//! keeps publishing (retrying what fails, as the relay does) while the
//! server's application is stopped and started again reconnects on its own,
//! and so does a subscriber, which goes on receiving. Nothing confirmed is
//! lost and every stream stays in order (a version may come twice, but a new
//! one is always the next of its stream).
//!
//! This stops the RabbitMQ application of the test server
//! (`rabbitmqctl stop_app`), so it lives alone in this file: cargo runs test
//! binaries one after another, and nothing else talks to the server while it
//! is down. `HERALD_TEST_RABBITMQCTL` overrides the command (e.g.
//! `docker compose -f docker/compose.yaml exec -T rabbitmq rabbitmqctl`).
//! The application is started again however the test ends.
#![cfg(feature = "amqp")]

mod conformance;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conformance::amqp::{amqp_url, config, connect};
use conformance::{event, unique_domain, unique_group};
use futures::StreamExt;
use herald_brokers::amqp::AmqpBroker;
use herald_brokers::{Broker, Payload, Topic};
use herald_events::EventId;
use herald_testkit::eventually;

const STREAMS: usize = 8;
/// Events per publish call.
const CHUNK: usize = 10;
/// Events published after the restart before the publisher stops.
const AFTER_RESTART: usize = 500;

/// The command that controls the test server's RabbitMQ.
fn rabbitmqctl() -> Vec<String> {
    std::env::var("HERALD_TEST_RABBITMQCTL")
        .unwrap_or_else(|_| "rabbitmqctl".to_owned())
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn run_rabbitmqctl(action: &str) -> Result<(), String> {
    let command = rabbitmqctl();
    let output = std::process::Command::new(&command[0])
        .args(&command[1..])
        .arg(action)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {command:?} {action}: {e}; this test restarts the test server's \
                 RabbitMQ and needs rabbitmqctl (or HERALD_TEST_RABBITMQCTL naming the command)"
            )
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The server's application, stopped until [`Outage::end`], or until this is
/// dropped, whatever happened in between.
struct Outage {
    over: bool,
}

impl Outage {
    async fn begin() -> Self {
        let outage = Self { over: false };
        tokio::task::spawn_blocking(|| run_rabbitmqctl("stop_app"))
            .await
            .expect("rabbitmqctl stop_app ran")
            .unwrap_or_else(|e| panic!("{e}"));
        outage
    }

    async fn end(&mut self) {
        self.over = true;
        tokio::task::spawn_blocking(|| run_rabbitmqctl("start_app"))
            .await
            .expect("rabbitmqctl start_app ran")
            .unwrap_or_else(|e| panic!("{e}"));
        let url = amqp_url();
        let up = eventually(Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                match AmqpBroker::connect(config(&url)).await {
                    Ok(broker) => {
                        broker.close().await;
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(
            up,
            "RabbitMQ did not accept connections within 60 s of start_app"
        );
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            if let Err(e) = run_rabbitmqctl("start_app") {
                eprintln!("could not start RabbitMQ again after the test: {e}");
            }
        }
    }
}

/// What the publisher has done.
#[derive(Default)]
struct Published {
    /// Events confirmed, in order.
    confirmed: AtomicUsize,
    /// Publish calls that failed (and were retried).
    failures: AtomicUsize,
    ids: Mutex<HashSet<EventId>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_and_consuming_survive_a_server_restart() {
    let url = amqp_url();
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    let group = unique_group("restart");
    let admin = connect(&url).await;
    admin
        .declare_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();

    // The subscriber: records every delivery in the order received.
    let subscriber = connect(&url).await;
    let mut sub = subscriber
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::<(EventId, String, u64)>::new()));
    let distinct = Arc::new(Mutex::new(HashSet::<EventId>::new()));
    let consumer = tokio::spawn({
        let (received, distinct) = (received.clone(), distinct.clone());
        async move {
            while let Some(delivery) = sub.next().await {
                let delivery = delivery.expect("a subscription goes on through a restart");
                let Ok(Payload::Event(e)) = &delivery.content else {
                    panic!("inline events expected, got {:?}", delivery.content);
                };
                let (id, stream, version) =
                    (e.id, e.stream.id().to_owned(), e.stream_version.get());
                received.lock().unwrap().push((id, stream, version));
                distinct.lock().unwrap().insert(id);
                // Acknowledging may fail across the restart: the message then
                // comes again.
                let _ = delivery.ack().await;
            }
        }
    });

    // The publisher: chunks of events over STREAMS streams, each retried
    // until confirmed, paced so it is still publishing when the server stops.
    let publisher: Arc<dyn Broker> = Arc::new(connect(&url).await);
    let published = Arc::new(Published::default());
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn({
        let (publisher, published, stop) = (
            publisher.clone(),
            published.clone(),
            stop_publishing.clone(),
        );
        let domain = domain.clone();
        async move {
            let mut versions = [0u64; STREAMS];
            let mut position = 0u64;
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::SeqCst) {
                pace.tick().await;
                let chunk: Vec<_> = (0..CHUNK)
                    .map(|i| {
                        let s = (position as usize + i) % STREAMS;
                        versions[s] += 1;
                        event(
                            &domain,
                            &format!("s{s}"),
                            versions[s],
                            position + i as u64 + 1,
                        )
                    })
                    .collect();
                position += CHUNK as u64;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                while let Err(e) = publisher.publish_batch(&chunk).await {
                    published.failures.fetch_add(1, Ordering::SeqCst);
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "publishing still fails after 120 s: {e}"
                    );
                }
                published
                    .ids
                    .lock()
                    .unwrap()
                    .extend(chunk.iter().map(|e| e.id));
                published.confirmed.fetch_add(CHUNK, Ordering::SeqCst);
            }
        }
    });

    let flowing = eventually(Duration::from_secs(30), || async {
        distinct.lock().unwrap().len() >= 200
    })
    .await;
    assert!(flowing, "events did not flow before the restart");

    let mut outage = Outage::begin().await;
    let failed = eventually(Duration::from_secs(30), || async {
        published.failures.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(failed, "no publish failed while RabbitMQ was stopped");
    let before_restart = published.confirmed.load(Ordering::SeqCst);
    outage.end().await;

    let resumed = eventually(Duration::from_secs(120), || async {
        published.confirmed.load(Ordering::SeqCst) >= before_restart + AFTER_RESTART
    })
    .await;
    assert!(resumed, "publishing did not resume after the restart");
    stop_publishing.store(true, Ordering::SeqCst);
    producer.await.unwrap();

    let expected = published.ids.lock().unwrap().clone();
    let complete = eventually(Duration::from_secs(120), || async {
        distinct.lock().unwrap().is_superset(&expected)
    })
    .await;
    let missing = expected.difference(&distinct.lock().unwrap()).count();
    assert!(
        complete,
        "{missing} of {} confirmed events never arrived after the restart",
        expected.len()
    );
    consumer.abort();

    // Per-stream order: a version may come again, a new one is the next.
    let received = received.lock().unwrap().clone();
    let mut highest: HashMap<String, u64> = HashMap::new();
    for (_, stream, version) in &received {
        let top = highest.entry(stream.clone()).or_insert(0);
        if *version > *top {
            assert_eq!(
                *version,
                *top + 1,
                "stream {stream} jumped from version {top} to {version}"
            );
            *top = *version;
        }
    }
    let distinct = distinct.lock().unwrap().len();
    assert_eq!(distinct, expected.len(), "events nobody published arrived");
    eprintln!(
        "{} events confirmed ({} publish calls failed and were retried), \
         {} deliveries ({} repeated)",
        expected.len(),
        published.failures.load(Ordering::SeqCst),
        received.len(),
        received.len() - distinct
    );

    admin.delete_topology(&[topic], &[group]).await.unwrap();
    admin.close().await;
}
