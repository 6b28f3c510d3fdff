//! A group member's side of a subscription: one channel and consumer per
//! shard queue, each looked after by a task that batches its
//! acknowledgements, hands the shard over to another member when asked,
//! and opens the channel again after it was lost; a task that decides which
//! shards to hand over; and the stream merging the shards' deliveries.
//!
//! A delivery counts as handed out when the stream yields it; messages the
//! server sent that the stream has not yielded yet go back to the queue, in
//! order, when the channel closes. That is what makes a hand-over safe: the
//! shard stops yielding, waits until everything it yielded is settled and
//! acknowledged, then closes the channel, and only then does the server let
//! the next member have the queue.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::publish::Rejected;
use super::topology::{self, shard_queue, short, string_headers};
use super::{backoff, close_channel, failure, Shared, ACK_BATCH, ACK_LINGER, BACKEND};
use crate::ack::ContiguousAcks;
use crate::error::BrokerError;
use crate::message::{decode, ConsumerGroup, Topic};
use crate::{telemetry, Delivery, Settle, Subscription};

/// How often a shard's task checks that its channel is still open (a lost
/// connection is usually noticed sooner, through the consumer).
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a member compares its active shards with its share.
const REBALANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a hand-over waits for the deliveries already handed out to be
/// settled; after that the member keeps the shard.
const HAND_OVER_PATIENCE: Duration = Duration::from_secs(10);

/// Joins `group` on `topics`: declares the group's queues, then consumes
/// every shard queue on its own channel before returning, so a member that
/// subscribes later waits behind this one.
pub(super) async fn subscribe(
    shared: Arc<Shared>,
    group: &ConsumerGroup,
    topics: &[Topic],
) -> Result<Subscription, BrokerError> {
    let partitions = shared.config.wire.partitions.max(1);
    // A topic named twice would have the member wait behind itself.
    let mut unique: Vec<&Topic> = Vec::with_capacity(topics.len());
    for topic in topics {
        if !unique.contains(&topic) {
            unique.push(topic);
        }
    }
    let topics = unique;
    for topic in &topics {
        for partition in 0..partitions {
            short("queue", &shard_queue(topic, group, partition))?;
        }
    }
    let live = shared.consume.connect().await?;
    let channel = live
        .connection
        .create_channel()
        .await
        .map_err(|e| failure("open a channel", &e))?;
    let declared = async {
        topology::declare_dead_letters(&channel, group).await?;
        for topic in &topics {
            topology::declare_exchange(&channel, topic.as_str()).await?;
            for partition in 0..partitions {
                topology::declare_shard(&channel, topic, group, partition).await?;
            }
        }
        Ok::<(), BrokerError>(())
    }
    .await;
    close_channel(&channel).await;
    declared?;

    let member = shared.next_member.fetch_add(1, Ordering::SeqCst);
    let ctx = Arc::new(MemberContext {
        shared,
        group: group.clone(),
        waker: AtomicWaker::new(),
        activated: Notify::new(),
        activations: AtomicU64::new(0),
    });
    let (stop, stopped) = watch::channel(());
    let mut shards = Vec::new();
    let mut tasks = Vec::new();
    for topic in &topics {
        for partition in 0..partitions {
            let (commands, inbox) = mpsc::unbounded_channel();
            let shard = Arc::new(Shard {
                queue: shard_queue(topic, group, partition),
                topic: Topic::clone(topic),
                partition,
                slot: Mutex::new(Slot::default()),
                commands,
            });
            let task = ShardTask {
                ctx: Arc::clone(&ctx),
                tag: format!(
                    "herald.{group}.{}.m{member}.{}",
                    std::process::id(),
                    shards.len()
                ),
                shard: Arc::clone(&shard),
                inbox,
                stop: stopped.clone(),
                lives: 0,
                connection: live.generation,
            };
            match task.open(false).await {
                Ok((opened, _)) => tasks.push((task, opened)),
                Err(e) => {
                    for (_, opened) in tasks {
                        close_channel(&opened.channel).await;
                    }
                    return Err(e);
                }
            }
            shards.push(shard);
        }
    }
    for (task, opened) in tasks {
        tokio::spawn(task.run(opened));
    }
    tokio::spawn(rebalance(Arc::clone(&ctx), shards.clone(), stopped));
    let ownership = Arc::new(super::requests::MemberOwnership {
        shards: shards.clone(),
        partitions,
    });
    Ok(Subscription::new(Member {
        shards,
        cursor: 0,
        ctx,
        _stop: stop,
    })
    .with_ownership(ownership))
}

/// What a member's stream, tasks and deliveries share.
struct MemberContext {
    shared: Arc<Shared>,
    group: ConsumerGroup,
    /// Wakes the stream when a shard gets a consumer again or ends.
    waker: AtomicWaker,
    /// Told when a shard turns out to be active here (it delivered).
    activated: Notify,
    activations: AtomicU64,
}

/// One channel's life on a shard; deliveries know theirs, so an
/// acknowledgement never reaches a later channel (delivery tags restart).
struct Life {
    id: u64,
    open: AtomicBool,
}

#[derive(Default)]
struct Slot {
    consumer: Option<Consumer>,
    life: Option<Arc<Life>>,
    /// False while the shard is being handed over or its channel replaced.
    handing_out: bool,
    /// Every delivery tag below this was handed out.
    handed_below: u64,
    /// When (in activation order) the shard started delivering here; 0 while
    /// it has not (it may be another member's, or idle).
    active_since: u64,
    /// Its task ended (the broker was closed).
    finished: bool,
}

/// One shard queue of the member.
pub(super) struct Shard {
    queue: String,
    pub(super) topic: Topic,
    pub(super) partition: u32,
    slot: Mutex<Slot>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn install(&self, consumer: Consumer, life: Arc<Life>) {
        let mut slot = self.lock();
        slot.consumer = Some(consumer);
        slot.life = Some(life);
        slot.handing_out = true;
        slot.handed_below = 1;
        slot.active_since = 0;
    }

    /// Stops handing out; returns the tag below which everything was.
    fn stop_handing_out(&self) -> u64 {
        let mut slot = self.lock();
        slot.handing_out = false;
        slot.handed_below
    }

    fn resume(&self) {
        let mut slot = self.lock();
        slot.handing_out = slot.consumer.is_some();
    }

    fn uninstall(&self) -> Option<Consumer> {
        let mut slot = self.lock();
        slot.handing_out = false;
        slot.life = None;
        slot.consumer.take()
    }

    fn finish(&self) {
        self.lock().finished = true;
    }

    /// The shard's activation order while it is delivering here.
    pub(super) fn active_since(&self) -> Option<u64> {
        let slot = self.lock();
        (slot.handing_out && slot.active_since > 0).then_some(slot.active_since)
    }
}

enum Command {
    /// A delivery was settled.
    Ack { life: u64, tag: u64 },
    /// Replace the channel: its consumer ended (`lost`), or a dead letter
    /// could not be written and closing the channel is how its message (and
    /// everything after it) goes back to the queue.
    Reopen { life: u64, lost: bool },
    /// Let another member have the shard.
    HandOver,
}

/// Why a channel's life ended.
enum Ended {
    /// The subscription was dropped.
    Stop,
    HandedOver,
    Reopen,
    Lost,
}

/// A freshly opened channel consuming a shard queue.
struct Opened {
    channel: Channel,
    consumer: Consumer,
}

/// Looks after one shard queue for the life of the subscription.
struct ShardTask {
    ctx: Arc<MemberContext>,
    shard: Arc<Shard>,
    /// The consumer tag (the same on every channel).
    tag: String,
    inbox: mpsc::UnboundedReceiver<Command>,
    stop: watch::Receiver<()>,
    lives: u64,
    /// The connection the topology was last declared on.
    connection: u64,
}

impl ShardTask {
    async fn run(mut self, first: Opened) {
        let mut next = Some(first);
        let mut failures = 0u32;
        // After a loss the queue may have gone with the server: declare it
        // again before consuming.
        let mut lost = false;
        loop {
            let opened = match next.take() {
                Some(opened) => opened,
                None => {
                    let mut stop = self.stop.clone();
                    let attempt = tokio::select! {
                        biased;
                        _ = stop.changed() => break,
                        attempt = self.open(lost) => attempt,
                    };
                    match attempt {
                        Ok((opened, connection)) => {
                            self.connection = connection;
                            if lost {
                                info!(
                                    backend = BACKEND,
                                    queue = %self.shard.queue,
                                    attempts = failures + 1,
                                    "Subscribed to the shard queue again."
                                );
                            }
                            failures = 0;
                            lost = false;
                            opened
                        }
                        Err(BrokerError::Closed) => break,
                        Err(e) => {
                            failures += 1;
                            lost = true;
                            let delay = backoff(failures);
                            warn!(
                                backend = BACKEND,
                                queue = %self.shard.queue,
                                attempt = failures,
                                retry_in_ms = delay.as_millis() as u64,
                                error = %e,
                                "Cannot subscribe to the shard queue; will try again."
                            );
                            tokio::select! {
                                biased;
                                _ = self.stop.changed() => break,
                                () = tokio::time::sleep(delay) => continue,
                            }
                        }
                    }
                }
            };
            match self.serve(opened).await {
                Ended::Stop => break,
                Ended::HandedOver | Ended::Reopen => {}
                Ended::Lost if self.ctx.shared.check_open().is_err() => break,
                Ended::Lost => {
                    warn!(
                        backend = BACKEND,
                        queue = %self.shard.queue,
                        "Lost the shard queue's channel; subscribing again."
                    );
                    lost = true;
                }
            }
        }
        self.shard.finish();
        self.ctx.waker.wake();
    }

    /// Opens a channel consuming the shard queue (declaring the group's
    /// queues first when asked or on another connection); also says which
    /// connection it is on.
    async fn open(&self, declare: bool) -> Result<(Opened, u64), BrokerError> {
        let live = self.ctx.shared.consume.connect().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| failure("open a channel", &e))?;
        let consumed = async {
            if declare || live.generation != self.connection {
                topology::declare_dead_letters(&channel, &self.ctx.group).await?;
                topology::declare_exchange(&channel, self.shard.topic.as_str()).await?;
                topology::declare_shard(
                    &channel,
                    &self.shard.topic,
                    &self.ctx.group,
                    self.shard.partition,
                )
                .await?;
            }
            channel
                .basic_qos(self.ctx.shared.config.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| failure("set the prefetch", &e))?;
            channel
                .basic_consume(
                    short("queue", &self.shard.queue)?,
                    short("consumer tag", &self.tag)?,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| failure("consume", &e))
        }
        .await;
        match consumed {
            Ok(consumer) => Ok((Opened { channel, consumer }, live.generation)),
            Err(e) => {
                close_channel(&channel).await;
                Err(e)
            }
        }
    }

    /// Runs one channel's life: installs its consumer for the stream,
    /// acknowledges what is settled, and ends it as asked.
    async fn serve(&mut self, opened: Opened) -> Ended {
        let Opened { channel, consumer } = opened;
        self.lives += 1;
        let life = Arc::new(Life {
            id: self.lives,
            open: AtomicBool::new(true),
        });
        self.shard.install(consumer, Arc::clone(&life));
        self.ctx.waker.wake();

        let mut acks = Acks::new(channel.clone());
        let mut hand_over: Option<(u64, Instant)> = None;
        let mut health =
            tokio::time::interval_at(Instant::now() + HEALTH_INTERVAL, HEALTH_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            if let Some((until, give_up)) = hand_over {
                if acks.settled_below() >= until {
                    break Ended::HandedOver;
                }
                if Instant::now() >= give_up {
                    debug!(
                        backend = BACKEND,
                        queue = %self.shard.queue,
                        "Deliveries handed out stay unsettled; keeping the shard."
                    );
                    hand_over = None;
                    self.shard.resume();
                    self.ctx.waker.wake();
                }
            }
            let linger = acks.deadline();
            let give_up = hand_over.map(|(_, at)| at);
            tokio::select! {
                biased;
                _ = self.stop.changed() => break Ended::Stop,
                command = self.inbox.recv() => {
                    let Some(command) = command else { break Ended::Stop };
                    let mut outcome = self.apply(command, &life, &mut acks, &mut hand_over);
                    while outcome.is_none() {
                        match self.inbox.try_recv() {
                            Ok(command) => {
                                outcome = self.apply(command, &life, &mut acks, &mut hand_over);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Some(ended) = outcome {
                        break ended;
                    }
                    if acks.unsent() >= ACK_BATCH && acks.flush().await.is_err() {
                        break Ended::Lost;
                    }
                }
                () = sleep_until(linger), if linger.is_some() => {
                    if acks.flush().await.is_err() {
                        break Ended::Lost;
                    }
                }
                () = sleep_until(give_up), if give_up.is_some() => {}
                _ = health.tick() => {
                    if !channel.status().connected() {
                        break Ended::Lost;
                    }
                }
            }
        };

        // Nothing more is handed out from this channel. What was settled is
        // acknowledged before the channel closes, so only the rest goes back
        // to the queue; the consumer is dropped only after the close, as
        // cancelling it first would let the next member start before those
        // messages are back in place.
        self.shard.stop_handing_out();
        if !matches!(ended, Ended::Lost) {
            while let Ok(command) = self.inbox.try_recv() {
                if let Command::Ack { life: id, tag } = command {
                    if id == life.id {
                        acks.record(tag);
                    }
                }
            }
            let _ = acks.flush().await;
        }
        life.open.store(false, Ordering::SeqCst);
        close_channel(&channel).await;
        drop(self.shard.uninstall());
        ended
    }

    fn apply(
        &self,
        command: Command,
        life: &Life,
        acks: &mut Acks,
        hand_over: &mut Option<(u64, Instant)>,
    ) -> Option<Ended> {
        match command {
            Command::Ack { life: id, tag } if id == life.id => acks.record(tag),
            // From an earlier channel: its unacknowledged messages went back
            // to the queue when it closed.
            Command::Ack { .. } => {}
            Command::Reopen { life: id, lost } if id == life.id => {
                return Some(if lost { Ended::Lost } else { Ended::Reopen });
            }
            Command::Reopen { .. } => {}
            Command::HandOver => {
                if hand_over.is_none() {
                    let until = self.shard.stop_handing_out();
                    *hand_over = Some((until, Instant::now() + HAND_OVER_PATIENCE));
                }
            }
        }
        None
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A channel's acknowledgements: settled tags in any order in, one
/// `basic.ack` with `multiple` for everything contiguous out.
struct Acks {
    channel: Channel,
    contiguous: ContiguousAcks,
    /// Everything below this has been acknowledged to the server.
    sent_below: u64,
    /// When the oldest settled-but-unsent acknowledgement became sendable.
    since: Option<Instant>,
}

impl Acks {
    fn new(channel: Channel) -> Self {
        Self {
            channel,
            // Delivery tags count from 1 on every channel.
            contiguous: ContiguousAcks::starting_at(1),
            sent_below: 1,
            since: None,
        }
    }

    fn record(&mut self, tag: u64) {
        self.contiguous.ack(tag);
        if self.unsent() > 0 && self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    fn settled_below(&self) -> u64 {
        self.contiguous.settled_below().unwrap_or(1)
    }

    fn unsent(&self) -> u64 {
        self.settled_below().saturating_sub(self.sent_below)
    }

    /// When the unsent acknowledgements must go out at the latest.
    fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + ACK_LINGER)
    }

    async fn flush(&mut self) -> Result<(), lapin::Error> {
        self.since = None;
        let below = self.settled_below();
        if below > self.sent_below {
            self.channel
                .basic_ack(below - 1, BasicAckOptions { multiple: true })
                .await?;
            self.sent_below = below;
        }
        Ok(())
    }
}

/// Hands shards over while this member is active on more than its share:
/// the shard queues divided by the consumers of the queues (every member
/// consumes every shard), rounded up. The shards it became active on last go.
async fn rebalance(
    ctx: Arc<MemberContext>,
    shards: Vec<Arc<Shard>>,
    mut stop: watch::Receiver<()>,
) {
    if shards.len() < 2 {
        return;
    }
    let mut channel: Option<Channel> = None;
    let mut tick =
        tokio::time::interval_at(Instant::now() + REBALANCE_INTERVAL, REBALANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = ctx.activated.notified() => {}
            _ = tick.tick() => {}
        }
        let mut active: Vec<(u64, usize)> = shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.active_since().map(|since| (since, i)))
            .collect();
        if active.len() < 2 {
            continue;
        }
        let consumers = tokio::select! {
            biased;
            _ = stop.changed() => break,
            consumers = count_consumers(&ctx, &shards, &mut channel) => consumers,
        };
        let Some(consumers) = consumers else {
            continue;
        };
        let share = shards.len().div_ceil(consumers.max(1));
        if active.len() <= share {
            continue;
        }
        active.sort_unstable();
        for (_, i) in &active[share..] {
            let _ = shards[*i].commands.send(Command::HandOver);
        }
        debug!(
            backend = BACKEND,
            group = %ctx.group,
            consumers,
            active = active.len(),
            share,
            "Handing shards over to other members of the group."
        );
    }
    if let Some(channel) = channel {
        close_channel(&channel).await;
    }
}

/// The most consumers any of the shard queues has (waiting ones included).
async fn count_consumers(
    ctx: &MemberContext,
    shards: &[Arc<Shard>],
    slot: &mut Option<Channel>,
) -> Option<usize> {
    let channel = match slot.as_ref().filter(|c| c.status().connected()) {
        Some(channel) => channel.clone(),
        None => {
            let live = ctx.shared.consume.connect().await.ok()?;
            let channel = live.connection.create_channel().await.ok()?;
            *slot = Some(channel.clone());
            channel
        }
    };
    let mut most = 0;
    for shard in shards {
        let queue = short("queue", &shard.queue).ok()?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue, passive, FieldTable::default())
            .await
        {
            Ok(queue) => most = most.max(queue.consumer_count() as usize),
            Err(_) => {
                *slot = None;
                return None;
            }
        }
    }
    Some(most)
}

/// The subscription's stream: deliveries of every shard, taken in turn.
struct Member {
    shards: Vec<Arc<Shard>>,
    cursor: usize,
    ctx: Arc<MemberContext>,
    /// Dropped with the subscription: tells the tasks to close the channels.
    _stop: watch::Sender<()>,
}

impl Member {
    fn delivery(
        &self,
        shard: &Arc<Shard>,
        life: Arc<Life>,
        d: lapin::message::Delivery,
    ) -> Delivery {
        if d.redelivered {
            telemetry::redelivered(BACKEND);
        }
        let mut headers = string_headers(d.properties.headers().as_ref());
        headers.extend(super::requests::reply_header(&d.properties));
        let content = decode(&headers, &d.data);
        let settle = AmqpSettle {
            ctx: Arc::clone(&self.ctx),
            shard: Arc::clone(shard),
            life,
            tag: d.delivery_tag,
            properties: d.properties,
            headers,
            body: d.data,
        };
        Delivery::new(
            shard.topic.clone(),
            shard.partition,
            d.redelivered,
            content,
            Box::new(settle),
        )
    }
}

impl Stream for Member {
    type Item = Result<Delivery, BrokerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.ctx.waker.register(cx.waker());
        let n = this.shards.len();
        let mut finished = 0;
        for i in 0..n {
            let index = (this.cursor + i) % n;
            let shard = Arc::clone(&this.shards[index]);
            let mut slot = shard.lock();
            if slot.finished {
                finished += 1;
                continue;
            }
            if !slot.handing_out {
                continue;
            }
            let Some(life) = slot.life.clone() else {
                continue;
            };
            while let Some(consumer) = slot.consumer.as_mut() {
                match consumer.poll_next_unpin(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(delivery))) => {
                        if !life.open.load(Ordering::SeqCst) {
                            // Its channel is closing: it goes back to the queue.
                            continue;
                        }
                        slot.handed_below = delivery.delivery_tag + 1;
                        let first = slot.active_since == 0;
                        if first {
                            slot.active_since =
                                this.ctx.activations.fetch_add(1, Ordering::SeqCst) + 1;
                        }
                        drop(slot);
                        if first {
                            this.ctx.activated.notify_one();
                        }
                        this.cursor = (index + 1) % n;
                        return Poll::Ready(Some(Ok(this.delivery(&shard, life, delivery))));
                    }
                    Poll::Ready(Some(Err(_)) | None) => {
                        // The channel or its consumer is gone; the shard's
                        // task opens another.
                        slot.handing_out = false;
                        let _ = shard.commands.send(Command::Reopen {
                            life: life.id,
                            lost: true,
                        });
                        break;
                    }
                }
            }
        }
        if n > 0 && finished == n {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Settles one delivery through its shard's task.
struct AmqpSettle {
    ctx: Arc<MemberContext>,
    shard: Arc<Shard>,
    life: Arc<Life>,
    tag: u64,
    properties: BasicProperties,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl AmqpSettle {
    fn gone(&self) -> BrokerError {
        BrokerError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "the channel it came on ({}) closed first; it will be delivered again",
                self.shard.queue
            ),
        }
    }

    /// Hands the acknowledgement to the shard's task, which sends it with
    /// others.
    fn acknowledge(&self) -> Result<(), BrokerError> {
        if !self.life.open.load(Ordering::SeqCst) {
            return Err(self.gone());
        }
        self.shard
            .commands
            .send(Command::Ack {
                life: self.life.id,
                tag: self.tag,
            })
            .map_err(|_| self.gone())
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.acknowledge()?;
        telemetry::settled(BACKEND, "ack");
        Ok(())
    }

    async fn nack(self: Box<Self>, reason: String) -> Result<(), BrokerError> {
        if !self.life.open.load(Ordering::SeqCst) {
            return Err(self.gone());
        }
        let rejected = Rejected {
            group: &self.ctx.group,
            topic: &self.shard.topic,
            partition: self.shard.partition,
            properties: &self.properties,
            body: &self.body,
            reason: &reason,
        };
        if let Err(e) = self.ctx.shared.publisher.dead_letter(rejected).await {
            // Unacknowledged, it would hold back every later acknowledgement
            // of the channel: close the channel so it comes again.
            let _ = self.shard.commands.send(Command::Reopen {
                life: self.life.id,
                lost: false,
            });
            return Err(e);
        }
        self.acknowledge()?;
        telemetry::settled(BACKEND, "nack");
        Ok(())
    }

    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn body(&self) -> &[u8] {
        &self.body
    }
}
