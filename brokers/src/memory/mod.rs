//! The in-process broker, Herald's default: topics with partitions held in
//! memory, consumer groups whose members share the partitions, per-partition
//! order, acknowledgements, redelivery of what a departed member left
//! unacknowledged, and dead letters.
//!
//! Memory is bounded: a partition keeps at most `partition_capacity`
//! messages, and publishing waits (backpressure) while the slowest group
//! with live members is that far behind. Messages are dropped once every
//! group with live members has acknowledged them, or, when a full partition
//! has no live group needing them, oldest first; so a group that has no
//! member may find, when it returns, that older messages are gone. A new
//! group starts at the oldest message retained.
//!
//! Nothing here survives a restart, so the broker tells the relay how far
//! its groups got: [`Broker::settled_through`] is the highest log position
//! below which every event it was given has been settled (acknowledged or
//! dead-lettered) by every group. The relay never checkpoints past it, so
//! after a crash the store's log is published again from where the slowest
//! group's effects stopped, and every group sees every event at least once.
//!
//! When a member joins, partitions move to it only after the member that had
//! them has acknowledged what it was handed, so a stream is never processed
//! by two members at once.

mod group;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use herald_events::Position;
use tokio::sync::Notify;

use crate::error::BrokerError;
use crate::message::{decode, ConsumerGroup, Topic, WireMessage, WireSettings, HEADER_POSITION};
use crate::{telemetry, Broker, DeadLetter, Delivery, Settle, Subscription};
use group::{GroupState, MemberId};

pub(crate) const BACKEND: &str = "memory";

/// Limits of the in-process broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    pub wire: WireSettings,
    /// Messages a partition keeps at most.
    pub partition_capacity: usize,
    /// Unacknowledged deliveries a member may hold per partition.
    pub prefetch: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            wire: WireSettings::default(),
            partition_capacity: 100_000,
            prefetch: 1_000,
        }
    }
}

/// A partition's retained messages; `messages[i]` has offset `start + i`
/// and carries the log position `positions[i]` (0 for a message that is
/// not an event of the log).
#[derive(Debug)]
struct PartitionLog {
    start: u64,
    messages: VecDeque<WireMessage>,
    positions: VecDeque<u64>,
    /// The positions held rise with the offsets (the relay publishes in log
    /// order; only a relay starting over from its checkpoint breaks that).
    rising: bool,
    /// The highest position pushed since the log was last empty.
    highest: u64,
}

impl Default for PartitionLog {
    fn default() -> Self {
        Self {
            start: 0,
            messages: VecDeque::new(),
            positions: VecDeque::new(),
            rising: true,
            highest: 0,
        }
    }
}

impl PartitionLog {
    fn push(&mut self, message: WireMessage) {
        let position = message
            .header(HEADER_POSITION)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if position > 0 {
            self.rising &= position >= self.highest;
            self.highest = self.highest.max(position);
        }
        self.messages.push_back(message);
        self.positions.push_back(position);
    }

    fn pop(&mut self) -> bool {
        self.positions.pop_front();
        let popped = self.messages.pop_front().is_some();
        if popped {
            self.start += 1;
        }
        if self.messages.is_empty() {
            self.rising = true;
            self.highest = 0;
        }
        popped
    }

    /// The lowest log position among the messages from `offset` on: the
    /// first one found while positions rise, else the least of all.
    fn lowest_position_from(&self, offset: u64) -> Option<u64> {
        let skip = offset.saturating_sub(self.start) as usize;
        let mut held = self.positions.iter().skip(skip).copied().filter(|p| *p > 0);
        if self.rising {
            held.next()
        } else {
            held.min()
        }
    }

    fn end(&self) -> u64 {
        self.start + self.messages.len() as u64
    }

    fn get(&self, offset: u64) -> Option<&WireMessage> {
        offset
            .checked_sub(self.start)
            .and_then(|i| self.messages.get(i as usize))
    }
}

#[derive(Debug)]
struct TopicState {
    partitions: Vec<PartitionLog>,
    groups: HashMap<ConsumerGroup, GroupState>,
}

impl TopicState {
    fn new(partitions: u32) -> Self {
        Self {
            partitions: (0..partitions.max(1))
                .map(|_| PartitionLog::default())
                .collect(),
            groups: HashMap::new(),
        }
    }

    /// Drops messages every group with live members has acknowledged.
    fn trim(&mut self, partition: usize) {
        let log = &mut self.partitions[partition];
        let Some(keep_from) = self
            .groups
            .values()
            .filter(|g| g.has_members())
            .map(|g| g.committed(partition, log.start))
            .min()
        else {
            return;
        };
        while log.start < keep_from && log.pop() {}
    }

    /// True when a group with live members still needs the partition's
    /// oldest message, so a full partition must wait rather than drop it.
    fn oldest_is_needed(&self, partition: usize) -> bool {
        let start = self.partitions[partition].start;
        self.groups
            .values()
            .any(|g| g.has_members() && g.committed(partition, start) <= start)
    }
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<Topic, TopicState>,
    dead: HashMap<ConsumerGroup, Vec<DeadLetter>>,
    /// The highest log position of any message accepted.
    accepted_through: u64,
}

impl State {
    /// See [`Broker::settled_through`]: a message a group has not settled
    /// holds the mark below its position, whether or not the group has a
    /// live member (one that left comes back for it).
    fn settled_through(&self) -> u64 {
        let mut mark = self.accepted_through;
        for topic in self.topics.values() {
            for (p, log) in topic.partitions.iter().enumerate() {
                for group in topic.groups.values() {
                    let first_unsettled = group.committed(p, log.start);
                    if let Some(lowest) = log.lowest_position_from(first_unsettled) {
                        mark = mark.min(lowest - 1);
                    }
                }
            }
        }
        mark
    }
}

#[derive(Debug)]
struct Inner {
    config: MemoryConfig,
    state: Mutex<State>,
    changed: Notify,
    closed: AtomicBool,
    next_member: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn topic<'a>(&self, state: &'a mut State, topic: &Topic) -> &'a mut TopicState {
        state
            .topics
            .entry(topic.clone())
            .or_insert_with(|| TopicState::new(self.config.wire.partitions))
    }
}

/// The in-process broker. Cheap to clone; clones share topics and groups.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl MemoryBroker {
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                closed: AtomicBool::new(false),
                next_member: AtomicU64::new(1),
            }),
        }
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Appends one message, or says which partition is full.
    fn try_append(&self, message: &WireMessage) -> Result<(), ()> {
        let mut state = self.inner.lock();
        let topic = self.inner.topic(&mut state, &message.topic);
        let partition = message.partition as usize % topic.partitions.len();
        topic.trim(partition);
        if topic.partitions[partition].messages.len() >= self.inner.config.partition_capacity {
            if topic.oldest_is_needed(partition) {
                return Err(());
            }
            // Nobody live needs the oldest message: retention is a window.
            topic.partitions[partition].pop();
        }
        let mut message = message.clone();
        message.partition = partition as u32;
        topic.partitions[partition].push(message);
        if let Some(position) = message_position(&topic.partitions[partition]) {
            state.accepted_through = state.accepted_through.max(position);
        }
        Ok(())
    }
}

/// The log position of the partition's newest message, if it has one.
fn message_position(log: &PartitionLog) -> Option<u64> {
    log.positions.back().copied().filter(|p| *p > 0)
}

#[async_trait]
impl Broker for MemoryBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn settled_through(&self) -> Option<Position> {
        Some(Position(self.inner.lock().settled_through()))
    }

    fn wire(&self) -> &WireSettings {
        &self.inner.config.wire
    }

    async fn publish(&self, messages: Vec<WireMessage>) -> Result<(), BrokerError> {
        let count = messages.len();
        for message in &messages {
            loop {
                self.check_open()?;
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.try_append(message).is_ok() {
                    break;
                }
                // Full: wait for consumers to acknowledge (backpressure).
                notified.await;
            }
            self.inner.changed.notify_waiters();
        }
        telemetry::published(BACKEND, count);
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &ConsumerGroup,
        topics: &[Topic],
    ) -> Result<Subscription, BrokerError> {
        self.check_open()?;
        let member = MemberId(self.inner.next_member.fetch_add(1, Ordering::SeqCst));
        {
            let mut state = self.inner.lock();
            for topic in topics {
                let topic_state = self.inner.topic(&mut state, topic);
                let starts: Vec<u64> = topic_state.partitions.iter().map(|p| p.start).collect();
                topic_state
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupState::new(&starts))
                    .join(member, &starts);
            }
        }
        self.inner.changed.notify_waiters();
        let consumer = Consumer {
            inner: Arc::clone(&self.inner),
            group: group.clone(),
            topics: topics.to_vec(),
            member,
            cursor: 0,
        };
        Ok(Subscription::new(futures::stream::unfold(
            consumer,
            |mut consumer| async move {
                let delivery = consumer.next().await?;
                Some((Ok(delivery), consumer))
            },
        )))
    }

    async fn dead_letters(
        &self,
        group: &ConsumerGroup,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let state = self.inner.lock();
        Ok(state
            .dead
            .get(group)
            .map(|d| d.iter().take(max).cloned().collect())
            .unwrap_or_default())
    }

    async fn check(&self) -> Result<(), BrokerError> {
        self.check_open()
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
    }
}

/// One member's side of a subscription; leaving the group when dropped.
struct Consumer {
    inner: Arc<Inner>,
    group: ConsumerGroup,
    topics: Vec<Topic>,
    member: MemberId,
    /// Where the next search for a deliverable partition starts, for fairness.
    cursor: usize,
}

impl Consumer {
    /// The next delivery, waiting for one; `None` once the broker is closed.
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                return None;
            }
            let inner = Arc::clone(&self.inner);
            let notified = inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(delivery) = self.take() {
                return Some(delivery);
            }
            notified.await;
        }
    }

    /// Hands out the next message of one of this member's partitions.
    fn take(&mut self) -> Option<Delivery> {
        let prefetch = self.inner.config.prefetch as u64;
        let mut state = self.inner.lock();
        let slots: Vec<(usize, usize)> = self
            .topics
            .iter()
            .enumerate()
            .flat_map(|(t, topic)| {
                let n = state.topics.get(topic).map_or(0, |s| s.partitions.len());
                (0..n).map(move |p| (t, p))
            })
            .collect();
        if slots.is_empty() {
            return None;
        }
        for i in 0..slots.len() {
            let (t, p) = slots[(self.cursor + i) % slots.len()];
            let topic = &self.topics[t];
            let topic_state = state.topics.get_mut(topic)?;
            let log = &topic_state.partitions[p];
            let (start, end) = (log.start, log.end());
            let Some(group) = topic_state.groups.get_mut(&self.group) else {
                continue;
            };
            let Some((offset, redelivered)) = group.hand_out(self.member, p, start, end, prefetch)
            else {
                continue;
            };
            let message = topic_state.partitions[p].get(offset)?.clone();
            self.cursor = (self.cursor + i + 1) % slots.len();
            drop(state);
            if redelivered {
                telemetry::redelivered(BACKEND);
            }
            let content = decode(&message.headers, &message.body);
            let settle = MemorySettle {
                inner: Arc::clone(&self.inner),
                group: self.group.clone(),
                partition: p,
                offset,
                message,
            };
            return Some(Delivery::new(
                topic.clone(),
                p as u32,
                redelivered,
                content,
                Box::new(settle),
            ));
        }
        None
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        {
            let mut state = self.inner.lock();
            for topic in &self.topics {
                if let Some(topic_state) = state.topics.get_mut(topic) {
                    let starts: Vec<u64> = topic_state.partitions.iter().map(|p| p.start).collect();
                    if let Some(group) = topic_state.groups.get_mut(&self.group) {
                        group.leave(self.member, &starts);
                    }
                }
            }
        }
        self.inner.changed.notify_waiters();
    }
}

struct MemorySettle {
    inner: Arc<Inner>,
    group: ConsumerGroup,
    partition: usize,
    offset: u64,
    message: WireMessage,
}

impl MemorySettle {
    fn settle(&self, dead: Option<String>) {
        {
            let mut state = self.inner.lock();
            if let Some(topic_state) = state.topics.get_mut(&self.message.topic) {
                let start = topic_state.partitions[self.partition].start;
                if let Some(group) = topic_state.groups.get_mut(&self.group) {
                    group.ack(self.partition, self.offset, start);
                }
                topic_state.trim(self.partition);
            }
            if let Some(error) = dead {
                state
                    .dead
                    .entry(self.group.clone())
                    .or_default()
                    .push(DeadLetter {
                        topic: self.message.topic.clone(),
                        error,
                        content: decode(&self.message.headers, &self.message.body),
                        message: self.message.clone(),
                    });
            }
        }
        self.inner.changed.notify_waiters();
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.settle(None);
        telemetry::settled(BACKEND, "ack");
        Ok(())
    }

    async fn nack(self: Box<Self>, reason: String) -> Result<(), BrokerError> {
        self.settle(Some(reason));
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn message(topic: &Topic, partition: u32, position: u64) -> WireMessage {
        WireMessage {
            topic: topic.clone(),
            partition,
            key: format!("k{partition}"),
            headers: vec![(HEADER_POSITION.to_owned(), position.to_string())],
            body: Vec::new(),
        }
    }

    fn settled(broker: &MemoryBroker) -> u64 {
        broker
            .settled_through()
            .expect("the in-process broker answers")
            .get()
    }

    #[tokio::test]
    async fn the_settled_mark_stops_below_the_lowest_event_a_group_has_not_settled() {
        let broker = MemoryBroker::default();
        let topic = Topic::named("herald.t").unwrap();
        let unwatched = Topic::named("herald.u").unwrap();
        let group = ConsumerGroup::new("g").unwrap();
        let mut sub = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .unwrap();
        assert_eq!(settled(&broker), 0);

        // Positions 1..=3 on two partitions, 4 on a topic no group reads.
        broker
            .publish(vec![
                message(&topic, 0, 1),
                message(&topic, 1, 2),
                message(&topic, 0, 3),
                message(&unwatched, 0, 4),
            ])
            .await
            .unwrap();
        assert_eq!(settled(&broker), 0, "nothing is settled yet");

        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(sub.next().await.unwrap().unwrap());
        }
        let position = |d: &Delivery| d.headers()[0].1.parse::<u64>().unwrap();
        held.sort_by_key(position);
        let [one, two, three]: [Delivery; 3] = held.try_into().unwrap();
        three.ack().await.unwrap();
        assert_eq!(settled(&broker), 0, "1 and 2 are still open");
        one.ack().await.unwrap();
        assert_eq!(settled(&broker), 1, "2 is still open");
        two.nack("poison").await.unwrap();
        assert_eq!(settled(&broker), 4, "a dead letter is settled too");

        // A group that left still holds the mark for what it has not settled.
        drop(sub);
        broker.publish(vec![message(&topic, 1, 5)]).await.unwrap();
        assert_eq!(settled(&broker), 4);
        let mut sub = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .unwrap();
        sub.next().await.unwrap().unwrap().ack().await.unwrap();
        assert_eq!(settled(&broker), 5);
    }

    #[tokio::test]
    async fn a_relay_starting_over_lowers_the_mark_to_what_it_sends_again() {
        let broker = MemoryBroker::default();
        let topic = Topic::named("herald.t").unwrap();
        let group = ConsumerGroup::new("g").unwrap();
        let mut sub = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .unwrap();
        broker
            .publish(vec![message(&topic, 0, 7), message(&topic, 0, 8)])
            .await
            .unwrap();
        // Published again from an older checkpoint, behind what is held.
        broker
            .publish(vec![message(&topic, 0, 5), message(&topic, 0, 6)])
            .await
            .unwrap();
        assert_eq!(settled(&broker), 4);
        for _ in 0..2 {
            sub.next().await.unwrap().unwrap().ack().await.unwrap();
        }
        assert_eq!(settled(&broker), 4, "5 and 6 are still open");
        for _ in 0..2 {
            sub.next().await.unwrap().unwrap().ack().await.unwrap();
        }
        assert_eq!(settled(&broker), 8);
    }
}
