//! The Kafka side of the conformance suite: librdkafka's in-process mock
//! cluster, one per test, speaking the real protocol on a local port. Its
//! topics are created through the mock (it has no admin API), with the
//! suite's partition count; dead-letter topics are auto-created by the
//! producer on the first rejection, as the mock allows.
//!
//! Groups use the classic protocol, as on most clusters today. Like a real
//! broker (`group.initial.rebalance.delay.ms`), the mock holds a new
//! group's first join for 3 s, so members that subscribe together form one
//! group; every later join or leave takes `session.timeout.ms` − 1 s. The
//! session is as short as the mock allows: its session timer ticks every
//! second and must not expire a member waiting out that first 3 s.
//!
//! `HERALD_TEST_KAFKA_GROUP_PROTOCOL=consumer` runs the suite on the
//! KIP-848 consumer protocol instead, whose rebalances are incremental: on
//! the mock a first member gets every partition at once and partitions
//! move on the next heartbeat (every 3 s), so the per-stream-order test's
//! check that both members took part fails there (the first member has
//! consumed everything before the second is given partitions); the other
//! tests pass and exercise incremental revocation.

use std::sync::Arc;

use herald_brokers::kafka::{KafkaBroker, KafkaConfig};
use herald_brokers::{Broker, ConsumerGroup, Topic};
use herald_testkit::kafka::MockCluster;

const INITIAL_REBALANCE_DELAY_MS: i32 = 500;
const SESSION_TIMEOUT_MS: &str = "2000";

/// Chooses the group protocol the suite runs on.
pub const GROUP_PROTOCOL_VAR: &str = "HERALD_TEST_KAFKA_GROUP_PROTOCOL";

pub struct KafkaBackend {
    /// Lives as long as the test body: every client it opened is dropped
    /// before it (consumers closing in the background after that only find
    /// the cluster gone, as after an outage).
    cluster: MockCluster,
    bootstrap_servers: String,
}

impl KafkaBackend {
    pub async fn new() -> Self {
        let cluster = MockCluster::new(INITIAL_REBALANCE_DELAY_MS)
            .unwrap_or_else(|e| panic!("librdkafka's mock cluster cannot start: {e}"));
        let bootstrap_servers = cluster.bootstrap_servers();
        Self {
            cluster,
            bootstrap_servers,
        }
    }

    /// The configuration every client of the test uses.
    pub fn config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.bootstrap_servers.clone(), super::wire());
        let consumer = &mut config.consumer_properties;
        match std::env::var(GROUP_PROTOCOL_VAR).as_deref() {
            Ok("classic") | Err(_) => {
                consumer.insert("group.protocol".into(), "classic".into());
                consumer.insert("session.timeout.ms".into(), SESSION_TIMEOUT_MS.into());
                consumer.insert("heartbeat.interval.ms".into(), "500".into());
            }
            Ok("consumer") => {
                consumer.insert("group.protocol".into(), "consumer".into());
            }
            Ok(other) => panic!("{GROUP_PROTOCOL_VAR} must be classic or consumer, not {other:?}"),
        }
        config
    }

    pub async fn open(&self) -> Arc<dyn Broker> {
        let broker = KafkaBroker::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the mock cluster: {e}"));
        Arc::new(broker)
    }

    pub async fn prepare(&self, topics: &[Topic]) {
        let partitions = i32::try_from(super::wire().partitions).expect("a small partition count");
        for topic in topics {
            self.cluster
                .create_topic(topic.as_str(), partitions, 1)
                .unwrap_or_else(|e| panic!("the mock cluster cannot create {topic}: {e}"));
        }
    }

    /// Nothing to remove: the cluster and all it holds go with the backend.
    pub async fn teardown(&self, _topics: &[Topic], _groups: &[ConsumerGroup]) {}
}
