//! Publishing with confirms on the publishing connection: topic messages
//! (pipelined, up to [`WINDOW`] awaiting their confirm) and dead-letter
//! copies, declaring the exchanges and queues they need on the way.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tracing::debug;

use super::link::Link;
use super::topology::{self, short, DEAD_LETTER_EXCHANGE};
use super::{close_channel, failure, soft_error, BACKEND};
use crate::error::BrokerError;
use crate::message::{
    ConsumerGroup, Topic, WireMessage, HEADER_CONTENT_TYPE, HEADER_ERROR, HEADER_EVENT_ID,
    HEADER_GROUP, HEADER_ORIGINAL_TOPIC,
};
use crate::telemetry;

/// Messages published and not yet confirmed, at most.
pub(super) const WINDOW: usize = 1000;
/// Longest a message waits for its confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// AMQP's delivery mode of messages written to disk.
const PERSISTENT: u8 = 2;

/// Carries the message's partition key (so a dead letter can be given back whole).
pub(super) const HEADER_KEY: &str = "herald-key";
/// On a dead letter: the partition (shard) it was consumed from.
pub(super) const HEADER_ORIGINAL_PARTITION: &str = "herald-original-partition";

/// The confirm channel and the connection it belongs to.
struct Open {
    channel: Channel,
    generation: u64,
}

/// A message a group rejected, to be copied to its dead letters.
pub(super) struct Rejected<'a> {
    pub group: &'a ConsumerGroup,
    pub topic: &'a Topic,
    pub partition: u32,
    pub properties: &'a BasicProperties,
    pub body: &'a [u8],
    pub reason: &'a str,
}

pub(super) struct Publisher {
    link: Link,
    partitions: u32,
    channel: tokio::sync::Mutex<Option<Open>>,
    /// Exchanges (by name) and groups' dead-letter queues (`dlq:<group>`)
    /// declared on the current connection.
    declared: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("link", &self.link)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(link: Link, partitions: u32) -> Self {
        Self {
            link,
            partitions,
            channel: tokio::sync::Mutex::new(None),
            declared: Mutex::new(HashSet::new()),
        }
    }

    fn declared(&self) -> MutexGuard<'_, HashSet<String>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.declared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn connect(&self) -> Result<(), BrokerError> {
        self.link.connect().await.map(drop)
    }

    pub async fn close(&self) {
        if let Some(open) = self.channel.lock().await.take() {
            close_channel(&open.channel).await;
        }
        self.link.close().await;
    }

    /// The confirm channel, opened (and the connection too) when needed.
    async fn channel(&self, slot: &mut Option<Open>) -> Result<Channel, BrokerError> {
        if let Some(open) = slot.as_ref() {
            if open.channel.status().connected() {
                return Ok(open.channel.clone());
            }
        }
        let live = self.link.connect().await?;
        if slot
            .as_ref()
            .is_none_or(|o| o.generation != live.generation)
        {
            // Another connection, maybe another server: declare again.
            self.declared().clear();
        }
        *slot = None;
        let channel = super::open_channel(&live.connection, true).await?;
        *slot = Some(Open {
            channel: channel.clone(),
            generation: live.generation,
        });
        Ok(channel)
    }

    /// After a failure the channel may be closed and what was declared may
    /// be gone (a deleted exchange closes the channel): start afresh.
    async fn forget(&self, slot: &mut Option<Open>) {
        self.declared().clear();
        if let Some(open) = slot.take() {
            close_channel(&open.channel).await;
        }
    }

    async fn declare_exchanges<'a>(
        &self,
        channel: &Channel,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BrokerError> {
        for topic in topics {
            if self.declared().contains(topic) {
                continue;
            }
            topology::declare_exchange(channel, topic).await?;
            self.declared().insert(topic.to_owned());
        }
        Ok(())
    }

    pub async fn declare_topics(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        let mut slot = self.channel.lock().await;
        let result = async {
            let channel = self.channel(&mut slot).await?;
            self.declare_exchanges(&channel, topics.iter().map(Topic::as_str))
                .await
        }
        .await;
        if result.is_err() {
            self.forget(&mut slot).await;
        }
        result
    }

    /// Publishes every message and waits for all confirms.
    pub async fn publish(&self, messages: Vec<WireMessage>) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut slot = self.channel.lock().await;
        let result = self.publish_on(&mut slot, &messages).await;
        match &result {
            Ok(()) => telemetry::published(BACKEND, messages.len()),
            Err(e) => {
                telemetry::publish_failed(BACKEND, e.kind());
                self.forget(&mut slot).await;
            }
        }
        result
    }

    async fn publish_on(
        &self,
        slot: &mut Option<Open>,
        messages: &[WireMessage],
    ) -> Result<(), BrokerError> {
        let channel = self.channel(slot).await?;
        let topics: BTreeSet<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        self.declare_exchanges(&channel, topics).await?;
        let mut pending: VecDeque<(PublisherConfirm, &Topic)> =
            VecDeque::with_capacity(messages.len().min(WINDOW));
        for message in messages {
            if pending.len() >= WINDOW {
                if let Some((confirm, topic)) = pending.pop_front() {
                    confirmed(confirm, topic).await?;
                }
            }
            let shard = message.partition % self.partitions;
            let confirm = channel
                .basic_publish(
                    short("topic", message.topic.as_str())?,
                    shard.to_string().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties(message)?,
                )
                .await
                .map_err(|e| failure("publish", &e))?;
            pending.push_back((confirm, &message.topic));
        }
        while let Some((confirm, topic)) = pending.pop_front() {
            confirmed(confirm, topic).await?;
        }
        Ok(())
    }

    /// Publishes a copy of a rejected message to its group's dead letters,
    /// with the reason, and waits for the confirm. Declares the dead-letter
    /// queue when it is missing (the copy is published `mandatory`, so one
    /// no queue took comes back).
    pub async fn dead_letter(&self, rejected: Rejected<'_>) -> Result<(), BrokerError> {
        let queue = topology::dead_letter_queue(rejected.group);
        let key = format!("dlq:{}", rejected.group);
        let mut headers = rejected.properties.headers().clone().unwrap_or_default();
        for (name, value) in [
            (HEADER_ERROR, rejected.reason.to_owned()),
            (HEADER_GROUP, rejected.group.to_string()),
            (HEADER_ORIGINAL_TOPIC, rejected.topic.to_string()),
            (HEADER_ORIGINAL_PARTITION, rejected.partition.to_string()),
        ] {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let properties = rejected
            .properties
            .clone()
            .with_delivery_mode(PERSISTENT)
            .with_headers(headers);
        let topic = Topic::dead_letters(rejected.group);
        let mut slot = self.channel.lock().await;
        let mut last = None;
        for _attempt in 0..2 {
            let result = async {
                let channel = self.channel(&mut slot).await?;
                if !self.declared().contains(&key) {
                    topology::declare_dead_letters(&channel, rejected.group).await?;
                    self.declared().insert(key.clone());
                }
                let confirm = channel
                    .basic_publish(
                        DEAD_LETTER_EXCHANGE.into(),
                        short("queue", &queue)?,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        rejected.body,
                        properties.clone(),
                    )
                    .await
                    .map_err(|e| failure("dead-letter a message", &e))?;
                match confirmed(confirm, &topic).await? {
                    Confirmation::Ack(Some(returned)) => Err(BrokerError::Failed {
                        backend: BACKEND,
                        operation: "dead-letter a message",
                        detail: format!(
                            "no queue took it: {} {}",
                            returned.reply_code, returned.reply_text
                        ),
                    }),
                    _ => Ok(()),
                }
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    debug!(
                        backend = BACKEND,
                        queue = %queue,
                        error = %e,
                        "Dead-lettering failed; declaring the queue again."
                    );
                    self.forget(&mut slot).await;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(BrokerError::Closed))
    }

    /// See [`super::AmqpBroker::delete_topology`].
    pub async fn delete_topology(
        &self,
        topics: &[Topic],
        groups: &[ConsumerGroup],
        partitions: u32,
    ) -> Result<(), BrokerError> {
        let live = self.link.connect().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| failure("open a channel", &e))?;
        for topic in topics {
            for group in groups {
                for shard in 0..partitions {
                    topology::delete_queue(&channel, &topology::shard_queue(topic, group, shard))
                        .await?;
                }
            }
        }
        for group in groups {
            topology::delete_queue(&channel, &topology::dead_letter_queue(group)).await?;
            self.declared().remove(&format!("dlq:{group}"));
        }
        for topic in topics {
            topology::delete_exchange(&channel, topic.as_str(), false).await?;
            self.declared().remove(topic.as_str());
        }
        // Shared by every group: deleted only when no group's queue is bound
        // to it any more (the server refuses otherwise, closing the channel).
        match channel
            .exchange_delete(
                DEAD_LETTER_EXCHANGE.into(),
                lapin::options::ExchangeDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(()) => {}
            Err(e)
                if soft_error(&e) == Some(&lapin::protocol::AMQPSoftError::PRECONDITIONFAILED) => {}
            Err(e) => return Err(failure("delete the dead-letter exchange", &e)),
        }
        close_channel(&channel).await;
        Ok(())
    }
}

/// Waits for one message's confirm: a nack, an error or no answer in time
/// means it may not have been stored.
async fn confirmed(confirm: PublisherConfirm, topic: &Topic) -> Result<Confirmation, BrokerError> {
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::NotConfirmed {
            backend: BACKEND,
            topic: topic.to_string(),
            detail: "the server refused it (basic.nack)".to_owned(),
        }),
        Ok(Ok(confirmation)) => Ok(confirmation),
        Ok(Err(e)) => Err(match failure("publish", &e) {
            BrokerError::Unavailable { detail, .. } => BrokerError::NotConfirmed {
                backend: BACKEND,
                topic: topic.to_string(),
                detail,
            },
            other => other,
        }),
        Err(_) => Err(BrokerError::NotConfirmed {
            backend: BACKEND,
            topic: topic.to_string(),
            detail: format!("no confirm within {} s", CONFIRM_TIMEOUT.as_secs()),
        }),
    }
}

/// A message's AMQP properties: persistent, Herald's headers (and the
/// partition key) as long strings, content type and event id where known.
pub(super) fn properties(message: &WireMessage) -> Result<BasicProperties, BrokerError> {
    let headers = topology::header_table(
        message
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain([(HEADER_KEY, message.key.as_str())]),
    )?;
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(content_type) = message
        .header(HEADER_CONTENT_TYPE)
        .and_then(|v| ShortString::try_new(v).ok())
    {
        properties = properties.with_content_type(content_type);
    }
    if let Some(id) = message
        .header(HEADER_EVENT_ID)
        .and_then(|v| ShortString::try_new(v).ok())
    {
        properties = properties.with_message_id(id);
    }
    Ok(properties)
}
