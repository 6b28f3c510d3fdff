//! Requests to a group's members and their replies on Kafka
//! ([`crate::request`]).
//!
//! Replies travel on one topic, [`REPLY_TOPIC`], with the usual partition
//! count. An inbox is a consumer outside any group that assigns itself one
//! partition of it (chosen at random) from its high watermark at opening, so
//! it reads only replies sent after it opened, and commits nothing: nothing
//! is left behind when its process dies. Its address is
//! `<topic>/<partition>`; inboxes sharing a partition each see the other's
//! replies and keep only those whose request ids they wait for. Requests are
//! ordinary records on the request topic, placed in the partition the
//! request names, so the group member assigned that partition consumes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::admin::Need;
use super::client::{base_config, broker_error, LogContext};
use super::produce::Producer;
use super::{KafkaBroker, BACKEND};
use crate::error::BrokerError;
use crate::message::{Topic, WireMessage};
use crate::request::{Inbox, Reply, Requester, HEADER_REPLY_TO};

/// The topic replies travel on.
pub const REPLY_TOPIC: &str = "herald.replies";
/// How long one poll of an inbox waits before looking at whether it closed.
const POLL: Duration = Duration::from_millis(100);

/// Opens an inbox on a partition of [`REPLY_TOPIC`], from its end.
pub(super) async fn open_inbox(broker: &KafkaBroker) -> Result<Inbox, BrokerError> {
    broker.ensure(&[(REPLY_TOPIC, Need::Placed)]).await?;
    let config = broker.inner.config.clone();
    let partitions = config.wire.partitions.max(1);
    // Spread inboxes over the partitions; any choice is correct.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
        ^ std::process::id();
    let partition = seed % partitions;
    let (replies, inbox) = mpsc::unbounded_channel();
    let closed = broker.inner.closed.subscribe();
    let opened = Arc::new(AtomicBool::new(false));
    let (ready, started) = tokio::sync::oneshot::channel();
    let flag = Arc::clone(&opened);
    // librdkafka's calls block: the inbox polls on a thread of its own.
    std::thread::Builder::new()
        .name("herald-kafka-inbox".to_owned())
        .spawn(move || {
            let consumer = match assign_from_end(&config, partition) {
                Ok(consumer) => {
                    flag.store(true, Ordering::SeqCst);
                    let _ = ready.send(Ok(()));
                    consumer
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            poll_replies(&consumer, &replies, &closed);
        })
        .map_err(|e| BrokerError::Failed {
            backend: BACKEND,
            operation: "start an inbox",
            detail: e.to_string(),
        })?;
    started.await.map_err(|_| BrokerError::Failed {
        backend: BACKEND,
        operation: "open an inbox",
        detail: "the inbox thread ended".to_owned(),
    })??;
    debug_assert!(opened.load(Ordering::SeqCst));
    Ok(Inbox {
        requester: Arc::new(KafkaRequester {
            producer: Arc::clone(&broker.inner.producer),
            address: format!("{REPLY_TOPIC}/{partition}"),
        }),
        replies: inbox,
    })
}

fn assign_from_end(
    config: &super::KafkaConfig,
    partition: u32,
) -> Result<BaseConsumer<LogContext>, BrokerError> {
    let mut client = base_config(config);
    // librdkafka wants a group id even to assign partitions by hand; an
    // assigning consumer never joins it, and nothing is committed to it.
    client
        .set("group.id", "herald.inbox")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer<LogContext> = client
        .create_with_context(LogContext)
        .map_err(|e| broker_error("create an inbox", &e))?;
    let partition = i32::try_from(partition).unwrap_or(0);
    // From the end as it is now: a reply sent after this is read, even one
    // sent before the first fetch.
    let (_, high) = consumer
        .fetch_watermarks(REPLY_TOPIC, partition, config.request_timeout)
        .map_err(|e| broker_error("open an inbox", &e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(REPLY_TOPIC, partition, Offset::Offset(high))
        .map_err(|e| broker_error("open an inbox", &e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| broker_error("open an inbox", &e))?;
    Ok(consumer)
}

fn poll_replies(
    consumer: &BaseConsumer<LogContext>,
    replies: &mpsc::UnboundedSender<Reply>,
    closed: &watch::Receiver<bool>,
) {
    while !*closed.borrow() && !replies.is_closed() {
        match consumer.poll(POLL) {
            None => {}
            Some(Ok(m)) => {
                let headers = super::client::string_headers(&m);
                let body = m.payload().unwrap_or_default().to_vec();
                if replies.send(Reply { headers, body }).is_err() {
                    return;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(backend = BACKEND, error = %e, "An inbox could not read a reply.")
            }
        }
    }
}

struct KafkaRequester {
    producer: Arc<Producer>,
    address: String,
}

impl std::fmt::Debug for KafkaRequester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRequester")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Requester for KafkaRequester {
    async fn send(&self, mut request: WireMessage) -> Result<(), BrokerError> {
        request
            .headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case(HEADER_REPLY_TO));
        request
            .headers
            .push((HEADER_REPLY_TO.to_owned(), self.address.clone()));
        self.producer.publish(&[request]).await
    }
}

/// Sends a reply to `<topic>/<partition>`.
pub(super) async fn reply(
    broker: &KafkaBroker,
    reply_to: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<(), BrokerError> {
    let malformed = || BrokerError::Failed {
        backend: BACKEND,
        operation: "reply",
        detail: format!("malformed reply address {reply_to:?}"),
    };
    let (topic, partition) = reply_to.rsplit_once('/').ok_or_else(malformed)?;
    let partition: u32 = partition.parse().map_err(|_| malformed())?;
    let message = WireMessage {
        topic: Topic::named(topic)?,
        partition,
        key: reply_to.to_owned(),
        headers,
        body,
    };
    broker.inner.producer.publish(&[message]).await
}

/// The partitions a group member is assigned now.
pub(super) struct MemberOwnership(pub Arc<super::consume::Shared>);

impl std::fmt::Debug for MemberOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberOwnership").finish_non_exhaustive()
    }
}

impl crate::request::Ownership for MemberOwnership {
    fn owns(&self, topic: &Topic, partition: u32) -> bool {
        let Ok(partition) = i32::try_from(partition) else {
            return false;
        };
        self.0.is_assigned(topic.as_str(), partition)
    }
}
