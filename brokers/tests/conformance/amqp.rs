//! The RabbitMQ side of the conformance suite: the real server from
//! `HERALD_TEST_AMQP_URL`. Being written: see the broker issue.

use std::sync::Arc;

use herald_brokers::{Broker, ConsumerGroup, Topic};

pub struct AmqpBackend {}

impl AmqpBackend {
    pub async fn new() -> Self {
        Self {}
    }

    pub async fn open(&self) -> Arc<dyn Broker> {
        unreachable!("the RabbitMQ backend is not written yet")
    }

    pub async fn prepare(&self, _topics: &[Topic]) {}

    pub async fn teardown(&self, _topics: &[Topic], _groups: &[ConsumerGroup]) {}
}
