//! The Kafka backend (rdkafka). Being written: see the broker issue.

use crate::message::WireSettings;

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    pub wire: WireSettings,
}
