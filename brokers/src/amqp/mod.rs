//! The RabbitMQ backend (lapin, plain `amqp://` on the ambient tokio
//! runtime): the topology a topic and a consumer group get on the server,
//! publishing with confirms, consuming a group's shard queues with batched
//! acknowledgements, dead letters, and reconnecting after the server went
//! away.
//!
//! # Topology
//!
//! | what | name | on the server |
//! |---|---|---|
//! | a topic | `herald.<domain>` (the topic's own name) | durable direct exchange |
//! | a group's shard of a topic | `<topic>.<group>.<shard>`, e.g. `herald.tickets.projections.3` | durable classic queue bound to the topic's exchange with routing key `<shard>` |
//! | dead letters | `herald.dead-letter` | durable direct exchange, shared by all groups |
//! | a group's dead letters | `herald.dlq.<group>` | durable classic queue bound to `herald.dead-letter` with its own name as routing key |
//!
//! A topic has `wire.partitions` shards; a message is published with its
//! [`WireMessage::partition`] (modulo the shard count) as routing key, so a
//! stream always lands in the same shard queue of every group. A group's
//! queues exist from its first `subscribe` on (a message published to a topic
//! before any group subscribed reaches nobody: the store is the log). Shard
//! queues are declared with `x-single-active-consumer` and dead-letter to
//! `herald.dead-letter` / `herald.dlq.<group>` (so messages the server itself
//! rejects are kept too). A name longer than AMQP's 255 bytes is refused with
//! [`BrokerError::InvalidName`]. Group names may contain dots, so a topic
//! named `herald.a.b` with group `c` and topic `herald.a` with group `b.c`
//! would share queues; topics made from domains (no dots) never do.
//!
//! # Connections
//!
//! A broker holds up to three connections, opened lazily and reopened with a
//! capped exponential backoff after they are lost: one publishes (one
//! confirm channel; dead letters go through it too), one consumes (a channel
//! per shard queue of every subscription, and one for reading dead letters),
//! and one carries requests to other processes and their replies (an
//! inbox's channel, and one replies go out on; see [`crate::request`]).
//! Separate connections keep RabbitMQ's flow control of publishers from
//! stalling acknowledgements.
//!
//! # Consuming
//!
//! Each member of a group consumes every shard queue of its topics on its own
//! channel (prefetch [`AmqpConfig::prefetch`]); the server lets one consumer
//! per queue be active and keeps the others waiting, so a shard is processed
//! by one member at a time, in order, and a waiting member takes over when the
//! active one leaves or dies (its unacknowledged messages go back to the head
//! of the queue). Single active consumer alone would let the first member
//! keep every shard, so members hand shards over: a member that is active on
//! more than its share (shard queues ÷ consumers of the queues, rounded up)
//! stops handing out that shard's messages, waits until what it handed out is
//! settled, and closes the shard's channel (the rest goes back to the queue in
//! order and the next waiting member becomes active); it then consumes the
//! queue again, at the back of the waiting line.
//!
//! Acknowledgements are batched per channel: acks may come in any order,
//! [`ContiguousAcks`](crate::ContiguousAcks) turns them into "everything below
//! N", and one `basic.ack` with `multiple` settles them, sent once
//! [`ACK_BATCH`] are contiguous or [`ACK_LINGER`] after the first unsent one.
//! A delivery that is not settled holds back every later ack of its channel;
//! nothing past it is ever acknowledged. A nack publishes a copy (confirmed)
//! with the reason to the group's dead letters, then acknowledges the
//! original.

mod consume;
mod dead_letter;
mod link;
mod publish;
mod requests;
#[cfg(test)]
mod server_tests;
mod topology;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_events::Backoff;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

use crate::error::BrokerError;
use crate::message::{ConsumerGroup, Topic, WireMessage, WireSettings};
use crate::{Broker, DeadLetter, Subscription};
use link::Link;
use publish::Publisher;

pub use topology::{dead_letter_queue, shard_queue, DEAD_LETTER_EXCHANGE};

pub(crate) const BACKEND: &str = "amqp";

/// Unacknowledged deliveries a shard channel may hold by default.
pub const DEFAULT_PREFETCH: u16 = 256;
/// Contiguous acknowledgements that are sent at once, without waiting.
pub const ACK_BATCH: u64 = 64;
/// Longest an acknowledgement waits for others to share its `basic.ack`.
pub const ACK_LINGER: Duration = Duration::from_millis(5);

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    pub wire: WireSettings,
    /// Unacknowledged deliveries a shard channel may hold.
    pub prefetch: u16,
}

impl AmqpConfig {
    pub fn new(url: impl Into<String>, wire: WireSettings) -> Self {
        Self {
            url: url.into(),
            wire,
            prefetch: DEFAULT_PREFETCH,
        }
    }
}

/// What a broker's publishers, subscriptions and settlements share.
#[derive(Debug)]
struct Shared {
    config: AmqpConfig,
    publisher: Publisher,
    consume: Link,
    /// Inboxes' channels and the channel replies go out on.
    requests: Link,
    replies: tokio::sync::Mutex<Option<lapin::Channel>>,
    /// The channel `dead_letters` reads with (on the consuming connection).
    browse: tokio::sync::Mutex<Option<lapin::Channel>>,
    closed: AtomicBool,
    next_member: AtomicU64,
}

impl Shared {
    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The RabbitMQ broker. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

impl AmqpBroker {
    /// Connects the publishing side (the consuming side connects on first
    /// subscribe); fails with [`BrokerError::Unavailable`] when the server
    /// cannot be reached.
    pub async fn connect(config: AmqpConfig) -> Result<Self, BrokerError> {
        let publisher = Publisher::new(
            Link::new(&config.url, "publish"),
            config.wire.partitions.max(1),
        );
        let shared = Arc::new(Shared {
            consume: Link::new(&config.url, "consume"),
            requests: Link::new(&config.url, "requests"),
            replies: tokio::sync::Mutex::new(None),
            config,
            publisher,
            browse: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            next_member: AtomicU64::new(1),
        });
        shared.publisher.connect().await?;
        Ok(Self { shared })
    }

    /// Declares the exchanges of `topics` (publishing declares them too).
    pub async fn declare_topics(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        self.shared.check_open()?;
        self.shared.publisher.declare_topics(topics).await
    }

    /// Deletes what `topics` and `groups` have on the server: the topics'
    /// exchanges, the groups' shard queues on those topics and their
    /// dead-letter queues, and the shared dead-letter exchange once no group
    /// uses it. Messages in them are lost; for tests and operators.
    pub async fn delete_topology(
        &self,
        topics: &[Topic],
        groups: &[ConsumerGroup],
    ) -> Result<(), BrokerError> {
        self.shared.check_open()?;
        self.shared
            .publisher
            .delete_topology(topics, groups, self.shared.config.wire.partitions.max(1))
            .await
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn wire(&self) -> &WireSettings {
        &self.shared.config.wire
    }

    async fn publish(&self, messages: Vec<WireMessage>) -> Result<(), BrokerError> {
        self.shared.check_open()?;
        self.shared.publisher.publish(messages).await
    }

    async fn subscribe(
        &self,
        group: &ConsumerGroup,
        topics: &[Topic],
    ) -> Result<Subscription, BrokerError> {
        self.shared.check_open()?;
        consume::subscribe(Arc::clone(&self.shared), group, topics).await
    }

    async fn dead_letters(
        &self,
        group: &ConsumerGroup,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        self.shared.check_open()?;
        dead_letter::browse(&self.shared, group, max).await
    }

    async fn open_inbox(&self) -> Result<crate::request::Inbox, BrokerError> {
        self.shared.check_open()?;
        requests::open_inbox(&self.shared).await
    }

    async fn reply(
        &self,
        reply_to: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        self.shared.check_open()?;
        requests::reply(&self.shared, reply_to, headers, body).await
    }

    async fn check(&self) -> Result<(), BrokerError> {
        self.shared.check_open()?;
        self.shared.publisher.connect().await
    }

    async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(channel) = self.shared.browse.lock().await.take() {
            close_channel(&channel).await;
        }
        if let Some(channel) = self.shared.replies.lock().await.take() {
            close_channel(&channel).await;
        }
        self.shared.publisher.close().await;
        self.shared.consume.close().await;
        self.shared.requests.close().await;
    }
}

/// A lapin error as the broker layer's error: the server being unreachable
/// (I/O, a lost or closed connection or channel, a connection-level error)
/// is [`BrokerError::Unavailable`]; anything the server refused is
/// [`BrokerError::Failed`].
fn failure(operation: &'static str, error: &lapin::Error) -> BrokerError {
    use lapin::ErrorKind as K;
    let unavailable = match error.kind() {
        K::IOError(_)
        | K::RuntimeShutdownError(_)
        | K::InvalidConnectionState(_)
        | K::InvalidChannelState(..)
        | K::InvalidChannel(_)
        | K::MissingHeartbeatError => true,
        K::ProtocolError(e) => matches!(e.kind(), AMQPErrorKind::Hard(_)),
        _ => false,
    };
    if unavailable {
        BrokerError::Unavailable {
            backend: BACKEND,
            detail: format!("{operation}: {error}"),
        }
    } else {
        BrokerError::Failed {
            backend: BACKEND,
            operation,
            detail: error.to_string(),
        }
    }
}

/// The channel-level error the server closed a channel with, if that is
/// what happened (404 not found, 406 precondition failed, …).
fn soft_error(error: &lapin::Error) -> Option<&AMQPSoftError> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// A new channel on `connection`, in confirm mode when `confirms`.
async fn open_channel(
    connection: &lapin::Connection,
    confirms: bool,
) -> Result<lapin::Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| failure("open a channel", &e))?;
    if confirms {
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .map_err(|e| failure("enable publisher confirms", &e))?;
    }
    Ok(channel)
}

/// Closes a channel, giving up after a few seconds (a half-dead connection
/// must not hold up a shutdown); a channel already closed is left alone.
async fn close_channel(channel: &lapin::Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(5), channel.close(200, "OK".into())).await;
    }
}

/// A capped exponential backoff: 100 ms, 200 ms, … up to 5 s.
fn backoff(failures: u32) -> Duration {
    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    BACKOFF.delay(failures)
}

/// The URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redacted("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }
}
