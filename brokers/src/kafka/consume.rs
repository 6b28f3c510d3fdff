//! Consuming: one librdkafka consumer per subscription, in the group, with
//! offsets committed only after the effect. Each delivery's acknowledgement
//! moves its partition's commit mark ([`PartitionProgress`]); marks are
//! committed asynchronously at most once per `commit_interval`, and
//! synchronously when partitions are revoked and when the member leaves, so
//! nothing acknowledged is delivered again needlessly and nothing
//! unacknowledged is ever committed past.
//!
//! A rebalance finishes or abandons in-flight work safely: before revoked
//! partitions are given up, what was acknowledged of them is committed, and
//! their deliveries still in the consumer's hands become stale (their late
//! acknowledgements are ignored), so the new owner starts from the commit
//! and gets every unacknowledged message again. Dropping the subscription
//! closes the consumer the same way (off the async runtime), so the group
//! hands its partitions to the remaining members.
//!
//! librdkafka runs rebalance callbacks inside `poll`, so they run in the
//! task that polls the subscription (whose thread the synchronous commit on
//! revocation holds for one round trip), and so do the periodic commits; a
//! member that stops polling holds up its group's rebalances (up to
//! `max.poll.interval.ms`), as any Kafka consumer does.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::client::{base_config, broker_error, client_error, log, DropOffRuntime};
use super::offsets::PartitionProgress;
use super::produce::Producer;
use super::{KafkaConfig, BACKEND};
use crate::error::BrokerError;
use crate::message::{decode, ConsumerGroup, Topic, WireMessage};
use crate::{telemetry, Delivery, Settle, Subscription};

/// A topic and partition, as librdkafka names them.
type PartitionKey = (String, i32);

/// Joins `group` on `topics`; deliveries start once the group assigned
/// partitions to this member.
pub(super) fn subscribe(
    config: &KafkaConfig,
    producer: Arc<Producer>,
    closed: watch::Receiver<bool>,
    group: &ConsumerGroup,
    topics: &[Topic],
) -> Result<Subscription, BrokerError> {
    if topics.is_empty() {
        return Err(BrokerError::Failed {
            backend: BACKEND,
            operation: "subscribe",
            detail: "no topics to subscribe to".to_owned(),
        });
    }
    let shared = Arc::new(Shared {
        group: group.clone(),
        state: Mutex::new(State::default()),
        acked: Notify::new(),
    });
    let mut client = base_config(config);
    client
        .set("group.id", group.as_str())
        .set("enable.partition.eof", "false");
    for (key, value) in &config.consumer_properties {
        client.set(key, value);
    }
    // Not overridable: the backend commits, and only after the effect; a
    // new group starts at the oldest retained message, as on every backend.
    client
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer<MemberContext> = client
        .create_with_context(MemberContext {
            shared: Arc::clone(&shared),
        })
        .map_err(|e| broker_error("create a consumer", &e))?;
    let consumer = DropOffRuntime::new(consumer);
    let names: Vec<&str> = topics.iter().map(Topic::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| broker_error("subscribe", &e))?;
    tracing::info!(backend = BACKEND, group = %group, topics = ?names, "Joining the consumer group.");
    let ownership = Arc::new(super::requests::MemberOwnership(Arc::clone(&shared)));
    let member = Member {
        consumer,
        shared,
        producer,
        topics: topics.to_vec(),
        closed,
        watching_close: true,
        commit_interval: config.commit_interval,
        next_commit: Instant::now(),
        failed: false,
    };
    Ok(
        Subscription::new(futures::stream::unfold(member, |mut member| async move {
            let item = member.next().await?;
            Some((item, member))
        }))
        .with_ownership(ownership),
    )
}

/// What the subscription, its deliveries and the rebalance callbacks share.
pub(super) struct Shared {
    group: ConsumerGroup,
    state: Mutex<State>,
    /// Woken when an acknowledgement moved a commit mark.
    acked: Notify,
}

#[derive(Default)]
struct State {
    /// Assignments so far; each assignment of a partition is a generation.
    generations: u64,
    /// The partitions assigned now.
    assigned: HashMap<PartitionKey, PartitionProgress>,
    /// Per partition, one past the highest offset this member handed out in
    /// any assignment: a lower offset is a redelivery.
    handed_below: HashMap<PartitionKey, i64>,
}

impl Shared {
    /// True while `partition` of `topic` is assigned to this member.
    pub(super) fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.lock()
            .assigned
            .contains_key(&(topic.to_owned(), partition))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new generation for each of `partitions`: deliveries of an
    /// earlier assignment of the same partition are stale from now on.
    fn assign(&self, partitions: &TopicPartitionList) {
        let mut state = self.lock();
        for p in partitions.elements() {
            state.generations += 1;
            let generation = state.generations;
            state.assigned.insert(
                (p.topic().to_owned(), p.partition()),
                PartitionProgress::new(generation),
            );
        }
    }

    /// Forgets `partitions`, so their deliveries become stale; returns the
    /// marks to commit for them.
    fn revoke(&self, partitions: &TopicPartitionList) -> TopicPartitionList {
        let mut state = self.lock();
        let revoked: Vec<(PartitionKey, PartitionProgress)> = partitions
            .elements()
            .iter()
            .filter_map(|p| {
                let key = (p.topic().to_owned(), p.partition());
                state.assigned.remove_entry(&key)
            })
            .collect();
        let mut marks = TopicPartitionList::with_capacity(revoked.len());
        for ((topic, partition), progress) in &revoked {
            // Committed again even if an asynchronous commit carried the
            // same mark: that one may still be in flight, or have failed.
            if let Some(mark) = progress.progressed() {
                add_mark(&mut marks, topic, *partition, mark);
            }
        }
        marks
    }

    /// Records that a message is handed out; its generation and whether
    /// this member handed it out before, or `None` when its partition is no
    /// longer assigned.
    fn handed_out(&self, topic: &str, partition: i32, offset: i64) -> Option<(u64, bool)> {
        let offset_u = u64::try_from(offset).ok()?;
        let mut state = self.lock();
        let key = (topic.to_owned(), partition);
        let progress = state.assigned.get_mut(&key)?;
        progress.handed_out(offset_u);
        let generation = progress.generation();
        let below = state.handed_below.entry(key).or_insert(0);
        let redelivered = offset < *below;
        *below = (*below).max(offset + 1);
        Some((generation, redelivered))
    }

    /// Records an acknowledgement; false when it is stale (the partition
    /// was revoked since the message was handed out).
    fn ack(&self, topic: &str, partition: i32, generation: u64, offset: u64) -> bool {
        let moved = {
            let mut state = self.lock();
            match state.assigned.get_mut(&(topic.to_owned(), partition)) {
                Some(p) if p.generation() == generation => p.ack(offset),
                _ => return false,
            }
        };
        if moved {
            self.acked.notify_one();
        }
        true
    }

    fn is_current(&self, topic: &str, partition: i32, generation: u64) -> bool {
        self.lock()
            .assigned
            .get(&(topic.to_owned(), partition))
            .is_some_and(|p| p.generation() == generation)
    }

    fn commit_due(&self) -> bool {
        self.lock()
            .assigned
            .values()
            .any(|p| p.commit_due().is_some())
    }

    /// Commits every mark that moved, without waiting for the answer.
    fn commit_async(&self, consumer: &StreamConsumer<MemberContext>) {
        // Enqueuing does not block. It happens in the member's task, as do
        // the rebalance callbacks (or after it, when the consumer closes),
        // so a revocation's synchronous commit is always enqueued after
        // this one: a lower mark never overtakes a higher one.
        let mut state = self.lock();
        let mut marks = TopicPartitionList::new();
        for ((topic, partition), progress) in &mut state.assigned {
            if let Some(mark) = progress.commit_due() {
                progress.committing(mark);
                add_mark(&mut marks, topic, *partition, mark);
            }
        }
        if marks.count() == 0 {
            return;
        }
        if let Err(e) = consumer.commit(&marks, CommitMode::Async) {
            tracing::warn!(backend = BACKEND, group = %self.group, error = %e, "Cannot commit acknowledged offsets; retrying later.");
            for p in marks.elements() {
                if let (Some(progress), Offset::Offset(mark)) = (
                    state
                        .assigned
                        .get_mut(&(p.topic().to_owned(), p.partition())),
                    p.offset(),
                ) {
                    progress.commit_failed(u64::try_from(mark).unwrap_or_default());
                }
            }
        }
    }

    /// An asynchronous commit failed: its marks are due again.
    fn commit_failed(&self, marks: &TopicPartitionList) {
        let mut state = self.lock();
        for p in marks.elements() {
            if let (Some(progress), Offset::Offset(mark)) = (
                state
                    .assigned
                    .get_mut(&(p.topic().to_owned(), p.partition())),
                p.offset(),
            ) {
                progress.commit_failed(u64::try_from(mark).unwrap_or_default());
            }
        }
        drop(state);
        self.acked.notify_one();
    }
}

fn add_mark(marks: &mut TopicPartitionList, topic: &str, partition: i32, mark: u64) {
    let offset = Offset::Offset(i64::try_from(mark).unwrap_or(i64::MAX));
    // Only an invalid offset makes this fail, and offsets come from Kafka.
    if let Err(e) = marks.add_partition_offset(topic, partition, offset) {
        tracing::warn!(backend = BACKEND, topic, partition, mark, error = %e, "Cannot record an offset to commit.");
    }
}

fn describe(partitions: &TopicPartitionList) -> Vec<String> {
    partitions
        .elements()
        .iter()
        .map(|p| format!("{}/{}", p.topic(), p.partition()))
        .collect()
}

/// Runs the rebalance callbacks (inside `poll`) and reports commit results.
struct MemberContext {
    shared: Arc<Shared>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let group = &self.shared.group;
        let marks = match rebalance {
            Rebalance::Assign(_) => return,
            Rebalance::Revoke(partitions) => {
                tracing::info!(backend = BACKEND, group = %group, partitions = ?describe(partitions), "Partitions revoked; committing what was acknowledged.");
                self.shared.revoke(partitions)
            }
            Rebalance::Error(e) => {
                // Names no partitions: forgetting any could skip messages of
                // one still assigned. The next assignment starts new
                // generations for whatever it hands over.
                tracing::warn!(backend = BACKEND, group = %group, error = %e, "Rebalance failed.");
                return;
            }
        };
        if marks.count() == 0 {
            return;
        }
        if consumer.assignment_lost() {
            tracing::warn!(backend = BACKEND, group = %group, partitions = ?describe(&marks), "Partitions were lost before their acknowledged offsets could be committed; their new owner gets those messages again.");
            return;
        }
        // Synchronous: the partitions must not move before their offsets
        // are committed, or the new owner would start from an older commit.
        if let Err(e) = consumer.commit(&marks, CommitMode::Sync) {
            tracing::warn!(backend = BACKEND, group = %group, partitions = ?describe(&marks), error = %e, "Cannot commit acknowledged offsets of revoked partitions; their new owner gets those messages again.");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(backend = BACKEND, group = %self.shared.group, partitions = ?describe(partitions), "Partitions assigned.");
            self.shared.assign(partitions);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(backend = BACKEND, group = %self.shared.group, partitions = ?describe(offsets), error = %e, "Committing acknowledged offsets failed; retrying.");
            self.shared.commit_failed(offsets);
        }
    }
}

/// One member's side of a subscription. Dropping it closes the consumer,
/// which commits what was acknowledged and leaves the group.
struct Member {
    consumer: DropOffRuntime<StreamConsumer<MemberContext>>,
    shared: Arc<Shared>,
    producer: Arc<Producer>,
    topics: Vec<Topic>,
    /// Turns true when the broker is closed.
    closed: watch::Receiver<bool>,
    /// False once every handle of the broker is gone (and so cannot close
    /// it): the subscription goes on by itself.
    watching_close: bool,
    commit_interval: Duration,
    next_commit: Instant,
    failed: bool,
}

impl Member {
    /// The next delivery; `None` once the broker is closed or after a fatal
    /// error was reported.
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        loop {
            if self.failed || *self.closed.borrow() {
                return None;
            }
            let shared = Arc::clone(&self.shared);
            tokio::select! {
                biased;
                changed = self.closed.changed(), if self.watching_close => {
                    if changed.is_err() {
                        self.watching_close = false;
                    }
                }
                () = commit_wait(&shared, self.next_commit) => {
                    self.shared.commit_async(&self.consumer);
                    self.next_commit = Instant::now() + self.commit_interval;
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => match self.delivery(&message) {
                        Ok(Some(delivery)) => return Some(Ok(delivery)),
                        Ok(None) => {}
                        Err(e) => {
                            self.failed = true;
                            return Some(Err(e));
                        }
                    },
                    Err(KafkaError::PartitionEOF(_)) => {}
                    Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                        tracing::error!(backend = BACKEND, group = %self.shared.group, error = %e, "The consumer failed for good; the subscription ends.");
                        self.failed = true;
                        return Some(Err(broker_error("consume", &e)));
                    }
                    // librdkafka recovers from the others by itself.
                    Err(e) => client_error(&e, "consume"),
                },
            }
        }
    }

    /// The delivery of a consumed message, or `None` when its partition is
    /// no longer this member's.
    fn delivery(&self, m: &BorrowedMessage<'_>) -> Result<Option<Delivery>, BrokerError> {
        let Some(topic) = self.topics.iter().find(|t| t.as_str() == m.topic()) else {
            return Err(BrokerError::Failed {
                backend: BACKEND,
                operation: "consume",
                detail: format!("a message of topic {} was not subscribed to", m.topic()),
            });
        };
        let partition = u32::try_from(m.partition()).map_err(|_| BrokerError::Failed {
            backend: BACKEND,
            operation: "consume",
            detail: format!("partition {} of {topic} is out of range", m.partition()),
        })?;
        let Some((generation, redelivered)) =
            self.shared
                .handed_out(topic.as_str(), m.partition(), m.offset())
        else {
            // librdkafka discards what it fetched for revoked partitions, so
            // this is not expected; the message comes again from the commit.
            tracing::warn!(backend = BACKEND, group = %self.shared.group, topic = %topic, partition, offset = m.offset(), "Dropped a message of a partition not assigned to this member.");
            return Ok(None);
        };
        if redelivered {
            telemetry::redelivered(BACKEND);
        }
        let headers = super::client::string_headers(m);
        let key = m
            .key()
            .map(String::from_utf8_lossy)
            .map(Cow::into_owned)
            .unwrap_or_default();
        let body = m.payload().unwrap_or_default().to_vec();
        let content = decode(&headers, &body);
        let settle = KafkaSettle {
            shared: Arc::clone(&self.shared),
            producer: Arc::clone(&self.producer),
            generation,
            offset: u64::try_from(m.offset()).unwrap_or_default(),
            message: WireMessage {
                topic: topic.clone(),
                partition,
                key,
                headers,
                body,
            },
        };
        Ok(Some(Delivery::new(
            topic.clone(),
            partition,
            redelivered,
            content,
            Box::new(settle),
        )))
    }
}

/// Resolves when a commit mark moved and the commit interval has passed.
async fn commit_wait(shared: &Shared, at: Instant) {
    // The state is the authority; the notification only ends the wait.
    while !shared.commit_due() {
        shared.acked.notified().await;
    }
    tokio::time::sleep_until(at).await;
}

struct KafkaSettle {
    shared: Arc<Shared>,
    producer: Arc<Producer>,
    generation: u64,
    offset: u64,
    message: WireMessage,
}

impl KafkaSettle {
    fn partition(&self) -> i32 {
        // Came from an i32.
        self.message.partition as i32
    }

    fn settle(&self) {
        let current = self.shared.ack(
            self.message.topic.as_str(),
            self.partition(),
            self.generation,
            self.offset,
        );
        if !current {
            tracing::debug!(backend = BACKEND, group = %self.shared.group, topic = %self.message.topic, partition = self.message.partition, offset = self.offset, "Ignored a late settlement: the partition moved and its new owner gets the message again.");
        }
    }
}

#[async_trait]
impl Settle for KafkaSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.settle();
        telemetry::settled(BACKEND, "ack");
        Ok(())
    }

    async fn nack(self: Box<Self>, reason: String) -> Result<(), BrokerError> {
        self.producer.check_open()?;
        let topic = self.message.topic.as_str();
        if !self
            .shared
            .is_current(topic, self.partition(), self.generation)
        {
            // The new owner gets it again and decides; a copy from here
            // would only duplicate its dead letter.
            self.settle();
            return Ok(());
        }
        self.producer
            .dead_letter(&self.shared.group, &self.message, &reason)
            .await?;
        tracing::info!(backend = BACKEND, group = %self.shared.group, topic, partition = self.message.partition, offset = self.offset, reason, "Dead-lettered a message.");
        self.settle();
        telemetry::settled(BACKEND, "nack");
        Ok(())
    }

    fn headers(&self) -> &[(String, String)] {
        &self.message.headers
    }

    fn body(&self) -> &[u8] {
        &self.message.body
    }
}
