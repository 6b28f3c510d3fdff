//! Requests to whichever member of a consumer group owns a partition, and
//! the replies that come back to the process that asked.
//!
//! A request is an ordinary message on a topic that a group consumes, so
//! the broker's own partition ownership (Kafka's group assignment,
//! RabbitMQ's single active consumer per shard queue) decides which member
//! answers it. The asking process opens an [`Inbox`]: its [`Requester`]
//! publishes requests carrying the inbox's address in
//! [`HEADER_REPLY_TO`], and the member that consumed one sends its answer
//! there with [`Broker::reply`](crate::Broker::reply). Replies are matched
//! to requests by [`HEADER_REQUEST_ID`], which the asker sets and the
//! answerer copies.
//!
//! Replies are not durable: an inbox lives as long as its process (a
//! RabbitMQ direct reply-to consumer, a Kafka reply partition read from its
//! end), and a reply to an inbox that is gone is dropped. A request whose
//! reply never comes is the asker's to time out.
//!
//! [`Ownership`] lets a member ask whether it owns a partition now, so it
//! can serve a request itself instead of sending it through the broker.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::BrokerError;
use crate::message::{header, Topic, WireMessage};

/// Where the answer to a request goes (set by the [`Requester`]).
pub const HEADER_REPLY_TO: &str = "herald-reply-to";
/// Matches a reply to its request (set by the asker, copied by the answerer).
pub const HEADER_REQUEST_ID: &str = "herald-request-id";

/// A reply that reached an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The request this answers, from [`HEADER_REQUEST_ID`].
    pub fn request_id(&self) -> Option<&str> {
        header(&self.headers, HEADER_REQUEST_ID)
    }
}

/// Publishes requests whose replies come to one inbox.
#[async_trait]
pub trait Requester: Send + Sync + fmt::Debug {
    /// Publishes `request` to its topic's partition with this inbox's
    /// address in [`HEADER_REPLY_TO`]; returns once the broker confirmed
    /// it. Requests are not persisted to disk: one lost with the broker
    /// gets no reply.
    async fn send(&self, request: WireMessage) -> Result<(), BrokerError>;
}

/// A process's inbox for replies. `replies` ends when the inbox is lost
/// (its connection closed): requests still waiting will get no reply, and
/// the process opens another.
#[derive(Debug)]
pub struct Inbox {
    pub requester: Arc<dyn Requester>,
    pub replies: mpsc::UnboundedReceiver<Reply>,
}

/// Which partitions a subscription's member is the one consuming now.
pub trait Ownership: Send + Sync + fmt::Debug {
    /// True while this member consumes `partition` of `topic` and no other
    /// member of its group does. It turns false when the broker takes the
    /// partition away, and may stay false for a partition this member
    /// would own until its first message arrives (RabbitMQ does not tell a
    /// waiting consumer that it became the active one).
    fn owns(&self, topic: &Topic, partition: u32) -> bool;
}
