//! The Kafka backend (rdkafka over the bundled librdkafka): one topic per
//! domain with `wire.partitions` partitions, each event sent to the
//! partition its stream maps to; consumer groups are Kafka consumer groups.
//!
//! - Publishing (`produce`) uses an idempotent producer with `acks=all` and
//!   returns once every record of the batch is confirmed.
//! - Consuming (`consume`) commits a partition's offset only past
//!   acknowledged deliveries, hands revoked partitions over with what was
//!   acknowledged committed, and leaves the group when a subscription is
//!   dropped, so the group gets every unacknowledged message again.
//! - A rejected delivery is copied, with the reason, to the group's
//!   dead-letter topic `herald.dlq.<group>` before it is acknowledged
//!   (`dead_letters` reads them back).
//!
//! Correctness does not rest on Kafka transactions: delivery is
//! at-least-once and consumers are idempotent. librdkafka connects lazily
//! and reconnects by itself; [`Broker::check`] tells whether the cluster
//! answers. With `manage_topics` (as `herald serve` runs it) the backend
//! creates missing topics with the admin API and refuses topics with fewer
//! partitions than it places events in (`admin`), and the producer never
//! lets the cluster auto-create a topic; otherwise topics are the
//! cluster's business. Brokers or topics must accept records of
//! `wire.max_message_bytes` plus 64 KiB (Kafka's default limit is 1 MiB,
//! just under what Herald sends inline); created topics are given that.

mod admin;
mod client;
mod consume;
mod dead_letters;
mod offsets;
mod produce;
mod requests;

pub use requests::REPLY_TOPIC;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::message::{ConsumerGroup, Topic, WireMessage, WireSettings};
use crate::{Broker, DeadLetter, Subscription};
use admin::{Need, Topics};
use produce::Producer;

pub(crate) const BACKEND: &str = "kafka";

/// How to reach Kafka, and how to use it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    pub wire: WireSettings,
    /// librdkafka properties for every client (`security.protocol`,
    /// `client.id`, …); they override the backend's defaults, except
    /// idempotence and `acks` on the producer.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only (`group.protocol`,
    /// `session.timeout.ms`, …); offset commits and `auto.offset.reset`
    /// stay the backend's.
    pub consumer_properties: BTreeMap<String, String>,
    /// Create missing topics (and the groups' dead-letter topics) with the
    /// admin API, `wire.partitions` partitions each, and refuse topics
    /// with fewer partitions than Herald places events in; the producer
    /// then never has the cluster auto-create a topic. Off: topics are
    /// left to the cluster (tests that create them on the mock).
    pub manage_topics: bool,
    /// Replication factor of created topics; `None` for the broker's default.
    pub replication_factor: Option<i32>,
    /// Longest wait for metadata, topic creation, reading dead letters and
    /// flushing at close.
    pub request_timeout: Duration,
    /// Longest wait for the cluster to confirm a published record.
    pub delivery_timeout: Duration,
    /// Acknowledged offsets are committed at most this often (and always
    /// when partitions are revoked or the member leaves).
    pub commit_interval: Duration,
}

impl KafkaConfig {
    /// Defaults for everything but where the cluster is.
    pub fn new(bootstrap_servers: impl Into<String>, wire: WireSettings) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            wire,
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            manage_topics: false,
            replication_factor: None,
            request_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            commit_interval: Duration::from_secs(1),
        }
    }
}

/// The Kafka broker. Cheap to clone; clones share the producer.
/// Subscriptions and their deliveries go on when every handle is dropped,
/// and end when the broker is closed.
#[derive(Clone)]
pub struct KafkaBroker {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: Arc<Producer>,
    topics: Option<Topics>,
    closed: watch::Sender<bool>,
}

impl fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .field("closed", &*self.inner.closed.borrow())
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// Creates the clients. librdkafka connects in the background and keeps
    /// reconnecting; use [`Broker::check`] to know whether the cluster answers.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaBroker, BrokerError> {
        if config.bootstrap_servers.trim().is_empty() {
            return Err(BrokerError::Failed {
                backend: BACKEND,
                operation: "connect",
                detail: "no bootstrap servers given".to_owned(),
            });
        }
        let producer = Arc::new(Producer::new(&config)?);
        let topics = if config.manage_topics {
            Some(Topics::new(&config)?)
        } else {
            None
        };
        tracing::info!(backend = BACKEND, bootstrap_servers = %config.bootstrap_servers, manage_topics = config.manage_topics, "Kafka clients created.");
        Ok(KafkaBroker {
            inner: Arc::new(Inner {
                config,
                producer,
                topics,
                closed: watch::Sender::new(false),
            }),
        })
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if *self.inner.closed.borrow() {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// With `manage_topics`: creates those of the topics that are missing
    /// and checks that every one of `placed` (those Herald publishes to,
    /// choosing the partition) has at least `wire.partitions` partitions;
    /// `keyed` ones (consumed only, or filled by other producers) may have
    /// any count. The error lists every problem, each naming its topic.
    /// Without `manage_topics` it does nothing.
    pub async fn ensure_topics(
        &self,
        placed: &[Topic],
        keyed: &[Topic],
    ) -> Result<(), BrokerError> {
        self.check_open()?;
        let needed: Vec<(&str, Need)> = placed
            .iter()
            .map(|t| (t.as_str(), Need::Placed))
            .chain(keyed.iter().map(|t| (t.as_str(), Need::Keyed)))
            .collect();
        self.ensure(&needed).await
    }

    async fn ensure(&self, topics: &[(&str, Need)]) -> Result<(), BrokerError> {
        match &self.inner.topics {
            Some(admin) => admin.ensure(topics).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn wire(&self) -> &WireSettings {
        &self.inner.config.wire
    }

    async fn publish(&self, messages: Vec<WireMessage>) -> Result<(), BrokerError> {
        self.check_open()?;
        if messages.is_empty() {
            return Ok(());
        }
        let topics: Vec<(&str, Need)> = messages
            .iter()
            .map(|m| (m.topic.as_str(), Need::Placed))
            .collect();
        self.ensure(&topics).await?;
        self.inner.producer.publish(&messages).await
    }

    async fn subscribe(
        &self,
        group: &ConsumerGroup,
        topics: &[Topic],
    ) -> Result<Subscription, BrokerError> {
        self.check_open()?;
        let dead_letters = Topic::dead_letters(group);
        let mut needed: Vec<(&str, Need)> =
            topics.iter().map(|t| (t.as_str(), Need::Keyed)).collect();
        needed.push((dead_letters.as_str(), Need::Keyed));
        self.ensure(&needed).await?;
        consume::subscribe(
            &self.inner.config,
            Arc::clone(&self.inner.producer),
            self.inner.closed.subscribe(),
            group,
            topics,
        )
    }

    async fn dead_letters(
        &self,
        group: &ConsumerGroup,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        self.check_open()?;
        dead_letters::read(&self.inner.config, group, max).await
    }

    async fn open_inbox(&self) -> Result<crate::request::Inbox, BrokerError> {
        self.check_open()?;
        requests::open_inbox(self).await
    }

    async fn reply(
        &self,
        reply_to: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        self.check_open()?;
        requests::reply(self, reply_to, headers, body).await
    }

    async fn check(&self) -> Result<(), BrokerError> {
        self.check_open()?;
        self.inner
            .producer
            .check(self.inner.config.request_timeout)
            .await
    }

    async fn prepare_topics(&self, placed: &[Topic], keyed: &[Topic]) -> Result<(), BrokerError> {
        self.ensure_topics(placed, keyed).await
    }

    async fn close(&self) {
        if self.inner.closed.send_replace(true) {
            return;
        }
        // Subscriptions end (and leave their groups) on the signal.
        self.inner
            .producer
            .close(self.inner.config.request_timeout)
            .await;
        tracing::info!(backend = BACKEND, "Kafka broker closed.");
    }
}

#[cfg(test)]
mod tests;
