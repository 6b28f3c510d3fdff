//! The RabbitMQ side of the conformance suite: the real server from
//! `HERALD_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//! Every test's topics and groups have unique names, so their exchanges and
//! queues are the test's own; `teardown` deletes them.

use std::sync::Arc;
use std::time::Duration;

use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, Topic};

/// The server tests use, unless `HERALD_TEST_AMQP_URL` names another.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The URL tests connect to.
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The URL without its password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> ! {
    panic!(
        "RabbitMQ is not reachable at {}: {e}.\n\
         Start it (Debian: `rabbitmq-server -detached`; \
         Docker: `docker compose -f docker/compose.yaml up -d rabbitmq`) \
         or point HERALD_TEST_AMQP_URL at a server the tests may create queues on.",
        shown(url)
    )
}

pub fn config(url: &str) -> AmqpConfig {
    AmqpConfig::new(url, super::wire())
}

/// Connects a broker to the test server, panicking with instructions when
/// the server cannot be reached.
pub async fn connect(url: &str) -> AmqpBroker {
    match tokio::time::timeout(Duration::from_secs(15), AmqpBroker::connect(config(url))).await {
        Ok(Ok(broker)) => broker,
        Ok(Err(e)) => unreachable(url, e),
        Err(_) => unreachable(url, "no answer within 15 s"),
    }
}

pub struct AmqpBackend {
    url: String,
    /// Declares and deletes the tests' topology.
    admin: AmqpBroker,
}

impl AmqpBackend {
    pub async fn new() -> Self {
        let url = amqp_url();
        let admin = connect(&url).await;
        Self { url, admin }
    }

    pub async fn open(&self) -> Arc<dyn Broker> {
        Arc::new(connect(&self.url).await)
    }

    pub async fn prepare(&self, topics: &[Topic]) {
        self.admin
            .declare_topics(topics)
            .await
            .unwrap_or_else(|e| panic!("cannot declare {topics:?}: {e}"));
    }

    pub async fn teardown(&self, topics: &[Topic], groups: &[ConsumerGroup]) {
        self.admin
            .delete_topology(topics, groups)
            .await
            .unwrap_or_else(|e| panic!("cannot delete what {topics:?} and {groups:?} left: {e}"));
        self.admin.close().await;
    }
}
