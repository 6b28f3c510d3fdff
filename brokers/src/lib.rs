//! Herald's broker layer. Events leave the store only through a [`Broker`]:
//! `publish_batch` returns once the broker confirmed every message, and
//! `subscribe` joins a consumer group whose members share the topics'
//! partitions and acknowledge (or dead-letter) each delivery. A stream always
//! maps to one partition, so its events reach a group in order.
//!
//! Backends: [`memory`] (in-process, the default), [`amqp`] (RabbitMQ) and
//! [`kafka`]; one conformance suite (`brokers/tests/`) runs against each.

mod ack;
#[cfg(feature = "amqp")]
pub mod amqp;
mod error;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod message;
pub mod progress;
pub mod request;
pub mod telemetry;

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use herald_events::{EventEnvelope, Position};

pub use ack::ContiguousAcks;
pub use error::{BrokerError, DecodeError, TopicProblem};
pub use message::{
    decode, encode, partition_for, partition_key, ClaimCheck, ConsumerGroup, EventLoader, Payload,
    ResolveError, Topic, WireMessage, WireSettings,
};

/// A message broker.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// How this broker puts events on the wire.
    fn wire(&self) -> &WireSettings;

    /// Publishes already-encoded messages; returns once the broker confirmed
    /// every one. On an error some may have been published (a retry then
    /// publishes them again: consumers are idempotent).
    async fn publish(&self, messages: Vec<WireMessage>) -> Result<(), BrokerError>;

    /// Publishes events in order, each to its domain's topic and its stream's
    /// partition, and returns once the broker confirmed every one.
    async fn publish_batch(&self, events: &[EventEnvelope]) -> Result<(), BrokerError> {
        let wire = self.wire();
        let messages = events
            .iter()
            .map(|e| message::encode(e, wire))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish(messages).await
    }

    /// Joins `group` on `topics`. Dropping the subscription leaves the group;
    /// what it had not acknowledged is delivered again to the group.
    async fn subscribe(
        &self,
        group: &ConsumerGroup,
        topics: &[Topic],
    ) -> Result<Subscription, BrokerError>;

    /// Up to `max` of the group's dead letters, oldest first, without
    /// removing them.
    async fn dead_letters(
        &self,
        group: &ConsumerGroup,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError>;

    /// For a broker that keeps nothing across a restart (the in-process
    /// one): the highest log position P such that every event at or below P
    /// that it was given has been settled (acknowledged or dead-lettered) by
    /// every consumer group it was for. The relay never saves a checkpoint
    /// past it, so after a crash the log is published again from where the
    /// slowest group's effects stopped. `None` for a broker that keeps what
    /// it confirmed (RabbitMQ, Kafka): its groups resume from their own
    /// durable offsets.
    fn settled_through(&self) -> Option<Position> {
        None
    }

    /// Opens an inbox for replies to requests this process sends to the
    /// members of a group ([`request`]). The in-process broker has none
    /// ([`BrokerError::Unsupported`]): its one process owns everything.
    async fn open_inbox(&self) -> Result<request::Inbox, BrokerError> {
        Err(BrokerError::Unsupported {
            backend: self.backend(),
            operation: "send requests to other processes",
        })
    }

    /// Sends the answer to a request to `reply_to` (the request's
    /// [`request::HEADER_REPLY_TO`]); best effort: an inbox that is gone
    /// drops it.
    async fn reply(
        &self,
        reply_to: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        let _ = (reply_to, headers, body);
        Err(BrokerError::Unsupported {
            backend: self.backend(),
            operation: "reply to requests",
        })
    }

    /// Succeeds when the broker answers.
    async fn check(&self) -> Result<(), BrokerError>;

    /// Makes the topics a process will use ready before it starts: `placed`
    /// are those it publishes events to (each to its stream's partition),
    /// `keyed` those it only consumes or that other producers fill. A
    /// backend creates what is missing where it can and refuses what cannot
    /// serve ([`BrokerError::Topics`], naming each topic). The default does
    /// nothing: the in-process broker and RabbitMQ declare as they go.
    async fn prepare_topics(&self, placed: &[Topic], keyed: &[Topic]) -> Result<(), BrokerError> {
        let _ = (placed, keyed);
        Ok(())
    }

    /// Releases connections; later calls fail with [`BrokerError::Closed`].
    async fn close(&self);
}

/// Settles one delivery with its broker.
#[async_trait]
pub trait Settle: Send {
    /// The effect is applied: never deliver this message to the group again.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// The message cannot be processed: move it to the group's dead letters
    /// with `reason`, and go on with the rest of its partition.
    async fn nack(self: Box<Self>, reason: String) -> Result<(), BrokerError>;

    /// The delivered message's headers, as sent.
    fn headers(&self) -> &[(String, String)];

    /// The delivered message's body, as sent.
    fn body(&self) -> &[u8];
}

/// One message delivered to a consumer.
pub struct Delivery {
    pub topic: Topic,
    pub partition: u32,
    /// True when the broker may have delivered it before.
    pub redelivered: bool,
    /// The event (or claim check), or why the message could not be read.
    pub content: Result<Payload, DecodeError>,
    settle: Box<dyn Settle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("redelivered", &self.redelivered)
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub fn new(
        topic: Topic,
        partition: u32,
        redelivered: bool,
        content: Result<Payload, DecodeError>,
        settle: Box<dyn Settle>,
    ) -> Self {
        Self {
            topic,
            partition,
            redelivered,
            content,
            settle,
        }
    }

    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle.ack().await
    }

    /// The message's headers as sent (for messages that are not envelopes,
    /// such as events published to an ingest topic).
    pub fn headers(&self) -> &[(String, String)] {
        self.settle.headers()
    }

    /// The message's body as sent.
    pub fn body(&self) -> &[u8] {
        self.settle.body()
    }

    pub async fn nack(self, reason: impl Into<String>) -> Result<(), BrokerError> {
        self.settle.nack(reason.into()).await
    }
}

/// A group member's deliveries.
pub struct Subscription {
    deliveries: Pin<Box<dyn Stream<Item = Result<Delivery, BrokerError>> + Send>>,
    ownership: Option<std::sync::Arc<dyn request::Ownership>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub fn new(
        deliveries: impl Stream<Item = Result<Delivery, BrokerError>> + Send + 'static,
    ) -> Self {
        Self {
            deliveries: Box::pin(deliveries),
            ownership: None,
        }
    }

    /// The same subscription, able to tell which partitions it owns.
    pub fn with_ownership(mut self, ownership: std::sync::Arc<dyn request::Ownership>) -> Self {
        self.ownership = Some(ownership);
        self
    }

    /// Which partitions this member owns now, where the backend can tell.
    pub fn ownership(&self) -> Option<std::sync::Arc<dyn request::Ownership>> {
        self.ownership.clone()
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.as_mut().poll_next(cx)
    }
}

/// A message a group rejected, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The topic it was consumed from.
    pub topic: Topic,
    pub error: String,
    pub content: Result<Payload, DecodeError>,
    pub message: WireMessage,
}
