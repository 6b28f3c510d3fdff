//! What the conformance suite does not cover, against the test server
//! (`HERALD_TEST_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`):
//! closing a broker, and reading the dead letters of a group that has none.

use std::time::Duration;

use futures::StreamExt;

use super::{AmqpBroker, AmqpConfig};
use crate::error::BrokerError;
use crate::message::{ConsumerGroup, Topic, WireMessage, WireSettings};
use crate::Broker;

fn url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn connect() -> AmqpBroker {
    let url = url();
    AmqpBroker::connect(AmqpConfig::new(&url, WireSettings::default()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable at {}: {e}.\n\
                 Start it (Debian: `rabbitmq-server -detached`; \
                 Docker: `docker compose -f docker/compose.yaml up -d rabbitmq`) \
                 or point HERALD_TEST_AMQP_URL at a server the tests may create queues on.",
                super::redacted(&url)
            )
        })
}

fn unique(label: &str) -> String {
    format!(
        "{label}{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_ends_subscriptions_and_refuses_later_calls() {
    let topic = Topic::named(format!("herald.{}", unique("t"))).unwrap();
    let group = ConsumerGroup::new(unique("close-")).unwrap();
    let broker = connect().await;
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let message = WireMessage {
        topic: topic.clone(),
        partition: 1,
        key: "default/t/x".to_owned(),
        headers: vec![("herald-type".to_owned(), "t.x".to_owned())],
        body: b"not an envelope".to_vec(),
    };
    broker.publish(vec![message.clone()]).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a delivery")
        .expect("the subscription is open")
        .unwrap();
    assert_eq!(delivery.partition, 1);
    assert!(delivery.content.is_err());
    delivery.ack().await.unwrap();

    broker.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(30), sub.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the subscription goes on after close: {ended:?}"
    );
    assert!(matches!(
        broker.publish(vec![message]).await,
        Err(BrokerError::Closed)
    ));
    assert!(matches!(broker.check().await, Err(BrokerError::Closed)));

    let admin = connect().await;
    admin.check().await.unwrap();
    admin.delete_topology(&[topic], &[group]).await.unwrap();
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_never_subscribed_has_no_dead_letters() {
    let broker = connect().await;
    let group = ConsumerGroup::new(unique("never-")).unwrap();
    assert!(broker.dead_letters(&group, 10).await.unwrap().is_empty());
    // The channel the refusal closed is replaced.
    assert!(broker.dead_letters(&group, 10).await.unwrap().is_empty());
    broker.close().await;
}
