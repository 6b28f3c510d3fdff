//! Requests to a group's members and their replies on RabbitMQ
//! ([`crate::request`]).
//!
//! An inbox is a channel of its own on the `requests` connection, consuming
//! RabbitMQ's direct reply-to pseudo-queue (`amq.rabbitmq.reply-to`, no
//! acknowledgements): the server routes a reply straight to that consumer,
//! with no queue to declare and nothing left behind when the process dies.
//! The server requires requests to be published on the channel that
//! consumes their replies, so the inbox's [`Requester`] publishes there (with
//! confirms, not persisted). The server rewrites the request's `reply-to`
//! property into an address for this channel; the consuming member sees it
//! as the [`HEADER_REPLY_TO`] header and replies through the default
//! exchange with the address as routing key, on a channel without confirms
//! (a reply to a consumer that is gone is dropped by the server anyway).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::mpsc;

use super::consume::Shard;
use super::topology::{self, header_table, short, string_headers};
use super::{failure, Shared, BACKEND};
use crate::error::BrokerError;
use crate::message::{Topic, WireMessage};
use crate::request::{Inbox, Ownership, Reply, Requester, HEADER_REPLY_TO};

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Longest a request waits for the server's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Not persisted: a request outlives neither the asker's wait nor the server.
const TRANSIENT: u8 = 1;

/// Opens an inbox: a channel consuming the direct reply-to pseudo-queue.
pub(super) async fn open_inbox(shared: &Arc<Shared>) -> Result<Inbox, BrokerError> {
    let live = shared.requests.connect().await?;
    let channel = super::open_channel(&live.connection, true).await?;
    let mut consumer = channel
        .basic_consume(
            short("queue", DIRECT_REPLY_TO)?,
            short(
                "consumer tag",
                &format!("herald.inbox.{}.{}", std::process::id(), live.generation),
            )?,
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failure("consume replies", &e))?;
    let (replies, inbox) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let reply = Reply {
                headers: string_headers(delivery.properties.headers().as_ref()),
                body: delivery.data,
            };
            if replies.send(reply).is_err() {
                break;
            }
        }
        // Ending `replies` tells the owner the inbox is gone.
    });
    Ok(Inbox {
        requester: Arc::new(AmqpRequester {
            channel,
            partitions: shared.config.wire.partitions.max(1),
            declared: Mutex::new(HashSet::new()),
        }),
        replies: inbox,
    })
}

#[derive(Debug)]
struct AmqpRequester {
    channel: Channel,
    partitions: u32,
    /// Exchanges declared on this channel (publishing to a missing one
    /// would close it).
    declared: Mutex<HashSet<String>>,
}

#[async_trait]
impl Requester for AmqpRequester {
    async fn send(&self, request: WireMessage) -> Result<(), BrokerError> {
        let topic = request.topic.as_str();
        let known = self
            .declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if !known {
            topology::declare_exchange(&self.channel, topic).await?;
            self.declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.to_owned());
        }
        // Built as every published message's properties, but transient: a
        // request outlives neither its caller's wait nor a broker restart.
        let properties = super::publish::properties(&request)?
            .with_delivery_mode(TRANSIENT)
            .with_reply_to(short("reply address", DIRECT_REPLY_TO)?);
        let confirm = self
            .channel
            .basic_publish(
                short("topic", topic)?,
                (request.partition % self.partitions).to_string().into(),
                BasicPublishOptions::default(),
                &request.body,
                properties,
            )
            .await
            .map_err(|e| failure("publish a request", &e))?;
        let not_confirmed = |detail: String| BrokerError::NotConfirmed {
            backend: BACKEND,
            topic: topic.to_owned(),
            detail,
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Nack(_))) => Err(not_confirmed("basic.nack".to_owned())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(not_confirmed(e.to_string())),
            Err(_) => Err(not_confirmed(format!(
                "no confirm within {} s",
                CONFIRM_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Sends a reply through the default exchange to a direct reply-to address.
pub(super) async fn reply(
    shared: &Arc<Shared>,
    reply_to: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<(), BrokerError> {
    let channel = reply_channel(shared).await?;
    let table = header_table(
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )?;
    let sent = channel
        .basic_publish(
            "".into(),
            short("reply address", reply_to)?,
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_delivery_mode(TRANSIENT)
                .with_headers(table),
        )
        .await;
    if let Err(e) = sent {
        *shared.replies.lock().await = None;
        return Err(failure("publish a reply", &e));
    }
    Ok(())
}

/// The channel replies go out on, opened when needed.
async fn reply_channel(shared: &Arc<Shared>) -> Result<Channel, BrokerError> {
    let mut slot = shared.replies.lock().await;
    if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
        return Ok(channel.clone());
    }
    let live = shared.requests.connect().await?;
    let channel = super::open_channel(&live.connection, false).await?;
    *slot = Some(channel.clone());
    Ok(channel)
}

/// The shards a member is the active consumer of.
pub(super) struct MemberOwnership {
    pub shards: Vec<Arc<Shard>>,
    pub partitions: u32,
}

impl std::fmt::Debug for MemberOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberOwnership")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Ownership for MemberOwnership {
    fn owns(&self, topic: &Topic, partition: u32) -> bool {
        let partition = partition % self.partitions;
        self.shards
            .iter()
            .find(|s| s.topic == *topic && s.partition == partition)
            .is_some_and(|s| s.active_since().is_some())
    }
}

/// The reply address of a delivered request, as a header.
pub(super) fn reply_header(properties: &BasicProperties) -> Option<(String, String)> {
    properties
        .reply_to()
        .as_ref()
        .map(|to| (HEADER_REPLY_TO.to_owned(), to.as_str().to_owned()))
}
