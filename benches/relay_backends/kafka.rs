// Included into `benches/relay.rs` as its `kafka_backend` module (a file in a
// subfolder, so cargo does not take it for a bench of its own).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_brokers::kafka::{KafkaBroker, KafkaConfig};
use herald_brokers::{Broker, WireMessage, WireSettings};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Unconfirmed records in flight at most in the raw run.
const WINDOW: usize = 1000;

/// The mock cluster lives on a thread of its own (its handle cannot move
/// between threads) until this is dropped.
pub struct Kafka {
    bootstrap_servers: String,
    _keep_alive: std::sync::mpsc::Sender<()>,
}

impl Kafka {
    pub async fn new() -> Self {
        let (servers_tx, servers_rx) = std::sync::mpsc::channel();
        let (keep_alive, stop) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let cluster: MockCluster<'static, DefaultProducerContext> =
                MockCluster::new(1).expect("librdkafka's mock cluster");
            let wire = WireSettings::default();
            cluster
                .create_topic("herald.tickets", wire.partitions as i32, 1)
                .expect("create herald.tickets on the mock");
            cluster
                .create_topic("herald.bench-raw", 1, 1)
                .expect("create the raw topic on the mock");
            let _ = servers_tx.send(cluster.bootstrap_servers());
            // Returns once the sender is dropped; the cluster goes with it.
            let _ = stop.recv();
        });
        Self {
            bootstrap_servers: servers_rx.recv().expect("the mock cluster started"),
            _keep_alive: keep_alive,
        }
    }
}

#[async_trait::async_trait]
impl super::Backend for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn broker(&self) -> Arc<dyn Broker> {
        let mut config = KafkaConfig::new(self.bootstrap_servers.clone(), WireSettings::default());
        // The mock holds a new group's first join for 3 s; a session must outlast it.
        config
            .consumer_properties
            .insert("session.timeout.ms".into(), "6000".into());
        // The mock answers a fetch only when its wait runs out, not when a
        // record arrives as a real broker does (fetch.min.bytes=1), so the
        // default 500 ms wait would be measured as latency.
        config
            .consumer_properties
            .insert("fetch.wait.max.ms".into(), "10".into());
        Arc::new(
            KafkaBroker::connect(config)
                .await
                .expect("connect to the mock cluster"),
        )
    }

    /// rdkafka alone: an idempotent producer with `acks=all`, up to `WINDOW`
    /// records awaiting confirmation.
    async fn raw_rate(&self, sample: &WireMessage, count: usize) -> f64 {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers.clone())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .create()
            .expect("a producer");
        let started = Instant::now();
        let mut pending = VecDeque::with_capacity(WINDOW);
        for _ in 0..count {
            let record = FutureRecord::to("herald.bench-raw")
                .key(&sample.key)
                .payload(&sample.body);
            pending.push_back(producer.send_result(record).expect("queue a record"));
            if pending.len() >= WINDOW {
                if let Some(oldest) = pending.pop_front() {
                    oldest.await.expect("delivery").expect("confirmed");
                }
            }
        }
        for delivery in pending {
            delivery.await.expect("delivery").expect("confirmed");
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5));
        })
        .await;
        rate
    }
}
