// Included into `benches/relay.rs` as its `amqp_backend` module (a file in a
// subfolder, so cargo does not take it for a bench of its own).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, Topic, WireMessage, WireSettings};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

/// Unconfirmed messages in flight at most, as in the raw figure.
const WINDOW: usize = 1000;

pub struct Amqp {
    url: String,
}

impl Amqp {
    pub async fn new() -> Self {
        Self {
            url: std::env::var("HERALD_TEST_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        }
    }
}

#[async_trait::async_trait]
impl super::Backend for Amqp {
    fn name(&self) -> &'static str {
        "amqp"
    }

    async fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(
            AmqpBroker::connect(AmqpConfig::new(self.url.clone(), WireSettings::default()))
                .await
                .expect("connect to RabbitMQ (start it with `rabbitmq-server -detached`)"),
        )
    }

    /// lapin alone: a durable exchange and queue, persistent messages,
    /// publisher confirms with up to `WINDOW` unconfirmed.
    async fn raw_rate(&self, sample: &WireMessage, count: usize) -> f64 {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        let name = format!("herald.bench-raw-{}", uuid::Uuid::now_v7().simple());
        channel
            .exchange_declare(
                name.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the exchange");
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the queue");
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                "0".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let properties = BasicProperties::default().with_delivery_mode(2);
        let started = Instant::now();
        let mut pending = VecDeque::with_capacity(WINDOW);
        for _ in 0..count {
            let confirm = channel
                .basic_publish(
                    name.as_str().into(),
                    "0".into(),
                    BasicPublishOptions::default(),
                    &sample.body,
                    properties.clone(),
                )
                .await
                .expect("publish");
            pending.push_back(confirm);
            if pending.len() >= WINDOW {
                if let Some(oldest) = pending.pop_front() {
                    oldest.await.expect("confirmed");
                }
            }
        }
        for confirm in pending {
            confirm.await.expect("confirmed");
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await;
        let _ = connection.close(0, "bench done".into()).await;
        rate
    }

    async fn teardown(&self, topic: &Topic, group: &ConsumerGroup) {
        let broker =
            AmqpBroker::connect(AmqpConfig::new(self.url.clone(), WireSettings::default()))
                .await
                .expect("connect to RabbitMQ");
        let _ = broker
            .delete_topology(std::slice::from_ref(topic), std::slice::from_ref(group))
            .await;
        broker.close().await;
    }
}
