//! Aggregate placement: which process decides for an aggregate when several
//! `herald serve` share one store and one broker.
//!
//! Every process joins the consumer group [`COMMAND_GROUP`] on the topic
//! [`COMMAND_TOPIC`]. A stream's commands go to partition `tenant/domain/id`
//! hashed (FNV-1a) modulo the command partitions — by default one
//! ([`DEFAULT_COMMAND_PARTITIONS`]), so one process decides and appends
//! everything; up to the topic's partition count to spread aggregates. The
//! broker gives each partition to one member at a time — Kafka's group
//! assignment, RabbitMQ's single active consumer per shard queue — and that
//! member is the partition's owner: it decides for every aggregate in it,
//! on the state it holds (no read before deciding). There is no membership
//! protocol of Herald's own.
//!
//! A command that arrives over HTTP at the owner runs at once, as in one
//! process. Any other process forwards it: the command, its body and its
//! metadata travel as a request on the partition, with the process's inbox
//! as the reply address ([`herald_brokers::request`]); the owner runs it
//! through its actor group and replies with the answer it would have given
//! itself (the events, or the problem), which the caller answers with.
//! Forwarded commands travel in batches, as appends do to the store: a
//! command for a partition no request is on its way to is sent at once, and
//! those that arrive meanwhile go together in the next request, which the
//! owner decides at once (each command through its aggregate's actor, so
//! its appends share group commits) and answers with one reply. A busy
//! process thus costs the broker two messages per batch, not per command.
//! RabbitMQ does not tell a waiting member that it became active, so a
//! process learns it owns a partition when a command arrives there; until
//! then it forwards (possibly to itself).
//!
//! When the owner dies, the broker moves its partitions to the others
//! (RabbitMQ at once when the connection drops, Kafka within the session
//! timeout), and requests it had not acknowledged are delivered again to the
//! new owner, which replies to the same inbox. A redelivered command must not
//! be applied twice: it carries the client's `Idempotency-Key` when there is
//! one, and otherwise a dedupe key made from the request id, from which its
//! events' ids derive, so the store refuses them a second time and the new
//! owner answers with the events already stored.
//!
//! The store's expected-version check still guards every decision: a
//! process that decides on an aggregate it no longer owns (during a
//! hand-over) is refused by the store and decides again on what the others
//! appended, as before placement.
//!
//! With the in-process broker one process owns everything and nothing is
//! forwarded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use herald_actors::{CommandError, CommandMeta, CommandTarget, Domains, Executed, Idempotency};
use herald_brokers::request::{Ownership, Reply, Requester, HEADER_REPLY_TO, HEADER_REQUEST_ID};
use herald_brokers::{Broker, BrokerError, ConsumerGroup, Delivery, Topic, WireMessage};
use herald_events::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch, RwLock};
use tokio::task::JoinSet;
use uuid::Uuid;

/// The topic commands travel on to their aggregate's owner.
pub const COMMAND_TOPIC: &str = "herald.commands";
/// The consumer group whose partition ownership places aggregates.
pub const COMMAND_GROUP: &str = "commands";
/// `herald_command_routes_total{domain, route}`.
pub const ROUTES_TOTAL: &str = "herald_command_routes_total";
/// The routes a command takes: decided here as the owner (`owner`), sent to
/// the owner (`forwarded`), decided here for another process
/// (`for_another`), or decided here because it could not be sent
/// (`fallback`).
pub const ROUTES: &[&str] = &["owner", "forwarded", "for_another", "fallback"];
/// `herald_command_forward_requests_total`: requests (batches of forwarded
/// commands) this process sent to owners; with
/// `herald_command_routes_total{route="forwarded"}` it gives the commands
/// per request.
pub const FORWARD_REQUESTS_TOTAL: &str = "herald_command_forward_requests_total";
/// Longest a forwarded command waits for its answer (a hand-over after the
/// owner died included) before the caller gets 503 with `Retry-After`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Partitions of the command group aggregates are placed over by default:
/// one process decides and appends every command. On one Postgres store the
/// log's head is one row that every writer locks in turn, so one writer
/// batching everything costs the database least (about half the CPU per
/// command of three writers, `benches/scaleout`).
pub const DEFAULT_COMMAND_PARTITIONS: u32 = 1;
/// Longest a stopping process waits for the commands it decides for others.
const DRAIN: Duration = Duration::from_secs(10);
/// Most commands sent to an owner in one request.
const MAX_BATCH_COMMANDS: usize = 64;
/// Most bytes of commands in one request (one larger command goes alone):
/// below Kafka's default `message.max.bytes` of 1 MB.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// A command as it travels to its owner.
#[derive(Debug, Serialize, Deserialize)]
struct ForwardedCommand {
    domain: String,
    tenant: String,
    id: String,
    command: String,
    body: Value,
    correlation_id: Option<Uuid>,
    producer: Option<String>,
    idempotency_key: Option<String>,
    idempotency_fingerprint: Option<String>,
    dedupe_key: Option<String>,
}

/// One command of a batch, with the id its caller waits on.
#[derive(Debug, Deserialize)]
struct Forwarded {
    request_id: String,
    command: ForwardedCommand,
}

/// What the owner answered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Done(Executed),
    Failed(Failure),
}

/// One answer of a batch.
#[derive(Debug, Serialize, Deserialize)]
struct Answered {
    request_id: String,
    answer: Answer,
}

/// What a forwarding caller is told.
enum Told {
    Answer(Answer),
    /// The batch holding its command could not be sent.
    Unsent,
}

/// Commands waiting to be sent to one partition, and whether a sender is
/// at work on them.
#[derive(Default)]
struct Outbox {
    queued: Vec<(String, Vec<u8>)>,
    sending: bool,
}

/// A command's failure as the HTTP edge describes it (a problem's kind,
/// detail and members), so the caller answers exactly as the owner would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// The problem kind's slug (`command-refused`, `busy`, …).
    pub kind: String,
    pub detail: String,
    #[serde(default)]
    pub extensions: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
}

/// How a command failure becomes a [`Failure`] (the HTTP edge's mapping).
pub type Describe = fn(CommandError) -> Failure;

/// Where a command was decided, and its outcome.
#[derive(Debug)]
pub enum Outcome {
    /// Decided in this process.
    Here(Result<Executed, CommandError>),
    /// Decided by the owner in another process (or this one, through the
    /// broker).
    There(Result<Executed, Failure>),
}

/// Places commands on their aggregates' owners. Cheap to clone.
#[derive(Clone)]
pub struct Placement {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("forwarding", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner {
    broker: Arc<dyn Broker>,
    topic: Topic,
    partitions: u32,
    ownership: Option<Arc<dyn Ownership>>,
    requester: RwLock<Option<Arc<dyn Requester>>>,
    /// Held while an inbox is opened.
    opening: tokio::sync::Mutex<()>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Told>>>,
    outboxes: Mutex<HashMap<u32, Outbox>>,
}

impl Placement {
    /// One process owns everything: every command is decided here.
    pub fn alone() -> Self {
        Self { inner: None }
    }

    /// Joins the command group on `broker` and starts deciding the commands
    /// of the partitions it is given; stops (handing them back) when `stop`
    /// turns true. The returned task ends once the commands in hand are
    /// answered.
    pub async fn join(
        broker: Arc<dyn Broker>,
        command_partitions: u32,
        domains: Domains,
        describe: Describe,
        stop: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), BrokerError> {
        let topic = Topic::named(COMMAND_TOPIC)?;
        let group = ConsumerGroup::new(COMMAND_GROUP)?;
        let subscription = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await?;
        let inner = Arc::new(Inner {
            partitions: command_partitions.clamp(1, broker.wire().partitions.max(1)),
            broker: Arc::clone(&broker),
            topic,
            ownership: subscription.ownership(),
            requester: RwLock::new(None),
            opening: tokio::sync::Mutex::new(()),
            waiting: Mutex::new(HashMap::new()),
            outboxes: Mutex::new(HashMap::new()),
        });
        inner.open_inbox().await?;
        let task = tokio::spawn(serve(
            Arc::clone(&inner),
            domains,
            describe,
            subscription,
            stop,
        ));
        Ok((Self { inner: Some(inner) }, task))
    }

    /// Runs `command` on `domain/id` of `tenant`: through `group` (the
    /// domain's actors here) when this process owns its partition (or runs
    /// alone), otherwise on the owner.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute(
        &self,
        group: &dyn CommandTarget,
        domain: &str,
        tenant: &TenantId,
        id: &str,
        command: &str,
        body: Value,
        meta: CommandMeta,
    ) -> Outcome {
        let Some(inner) = &self.inner else {
            return Outcome::Here(group.execute_json(tenant, id, command, body, meta).await);
        };
        let partition = herald_brokers::partition_for(
            &format!("{}/{domain}/{id}", tenant.as_str()),
            inner.partitions,
        );
        if inner
            .ownership
            .as_ref()
            .is_some_and(|o| o.owns(&inner.topic, partition))
        {
            route(domain, "owner");
            let meta = CommandMeta {
                decided_by_owner: true,
                ..meta
            };
            return Outcome::Here(group.execute_json(tenant, id, command, body, meta).await);
        }
        let request_id = Uuid::now_v7().to_string();
        let client_keyed = meta.idempotency.is_some();
        let forwarded = ForwardedCommand {
            domain: domain.to_owned(),
            tenant: tenant.as_str().to_owned(),
            id: id.to_owned(),
            command: command.to_owned(),
            body,
            correlation_id: meta.correlation_id,
            producer: meta.producer.clone(),
            idempotency_key: meta.idempotency.as_ref().map(|i| i.key.clone()),
            idempotency_fingerprint: meta.idempotency.as_ref().map(|i| i.fingerprint.clone()),
            // A redelivery to a new owner appends nothing twice.
            dedupe_key: meta
                .dedupe_key
                .clone()
                .or_else(|| (!client_keyed).then(|| format!("forwarded:{request_id}"))),
        };
        match inner.forward(&request_id, partition, &forwarded).await {
            Ok(answer) => {
                route(domain, "forwarded");
                Outcome::There(answer.map(|executed| Executed {
                    // Only a client's own key makes a repeat: one this process
                    // made up for a redelivery answers as the first time.
                    duplicate: executed.duplicate && client_keyed,
                    ..executed
                }))
            }
            Err(Unsent(body)) => {
                // The broker could not take it: decide here; the store's
                // version check still holds if the owner decides too.
                route(domain, "fallback");
                Outcome::Here(group.execute_json(tenant, id, command, body, meta).await)
            }
        }
    }
}

/// The command could not be sent; its body comes back.
struct Unsent(Value);

impl Inner {
    async fn open_inbox(self: &Arc<Self>) -> Result<(), BrokerError> {
        let inbox = self.broker.open_inbox().await?;
        *self.requester.write().await = Some(inbox.requester);
        let inner = Arc::downgrade(self);
        let mut replies = inbox.replies;
        tokio::spawn(async move {
            while let Some(reply) = replies.recv().await {
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                inner.answered(&reply);
            }
            // The inbox is gone: the next forward opens another.
            if let Some(inner) = inner.upgrade() {
                *inner.requester.write().await = None;
            }
        });
        Ok(())
    }

    async fn requester(self: &Arc<Self>) -> Option<Arc<dyn Requester>> {
        if let Some(requester) = self.requester.read().await.clone() {
            return Some(requester);
        }
        // One opening at a time: senders of several partitions that find
        // the inbox gone wait for the one being opened instead of each
        // opening another.
        let _opening = self.opening.lock().await;
        if let Some(requester) = self.requester.read().await.clone() {
            return Some(requester);
        }
        if let Err(e) = self.open_inbox().await {
            tracing::warn!(error = %e, "Cannot open an inbox for answers; commands are decided here.");
        }
        self.requester.read().await.clone()
    }

    async fn forward(
        self: &Arc<Self>,
        request_id: &str,
        partition: u32,
        command: &ForwardedCommand,
    ) -> Result<Result<Executed, Failure>, Unsent> {
        let give_back = || Unsent(command.body.clone());
        let Ok(encoded) = serde_json::to_vec(command) else {
            return Err(give_back());
        };
        let (answered, answer) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.to_owned(), answered);
        let start_sender = {
            let mut outboxes = self.outboxes.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = outboxes.entry(partition).or_default();
            outbox.queued.push((request_id.to_owned(), encoded));
            !std::mem::replace(&mut outbox.sending, true)
        };
        if start_sender {
            tokio::spawn(Arc::clone(self).send_queued(partition));
        }
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(Told::Answer(answer))) => answer,
            Ok(Ok(Told::Unsent)) => return Err(give_back()),
            // The inbox was lost, or the owner and its successor were silent.
            _ => {
                self.forget(request_id);
                return Ok(Err(Failure {
                    kind: "busy".to_owned(),
                    detail: format!(
                        "the process that owns {}/{} did not answer within {} s; the command may \
                         have been done: retry it with the same Idempotency-Key",
                        command.domain,
                        command.id,
                        ANSWER_TIMEOUT.as_secs()
                    ),
                    extensions: Map::new(),
                    retry_after_secs: Some(1),
                }));
            }
        };
        Ok(match answer {
            Answer::Done(executed) => Ok(executed),
            Answer::Failed(failure) => Err(failure),
        })
    }

    /// Sends what is queued for `partition`, as batches, until nothing is:
    /// the commands that arrive while a batch is on its way (waiting for
    /// the broker's confirm) go together in the next, so a busy process
    /// sends one request for many commands, and the owner decides them
    /// together and answers once.
    async fn send_queued(self: Arc<Self>, partition: u32) {
        loop {
            let batch = {
                let mut outboxes = self.outboxes.lock().unwrap_or_else(|p| p.into_inner());
                let outbox = outboxes.entry(partition).or_default();
                let mut size = 0;
                let take = outbox
                    .queued
                    .iter()
                    .take_while(|(_, encoded)| {
                        size += encoded.len();
                        size <= MAX_BATCH_BYTES
                    })
                    .count()
                    .clamp(1.min(outbox.queued.len()), MAX_BATCH_COMMANDS);
                if take == 0 {
                    outbox.sending = false;
                    return;
                }
                outbox.queued.drain(..take).collect::<Vec<_>>()
            };
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            metrics::counter!(FORWARD_REQUESTS_TOTAL).increment(1);
            let sent = match self.requester().await {
                Some(requester) => requester
                    .send(self.batch_request(partition, batch))
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("no inbox for answers".to_owned()),
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, commands = ids.len(), "Commands could not be sent to their owner; deciding them here.");
                let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    if let Some(waiter) = waiting.remove(&id) {
                        let _ = waiter.send(Told::Unsent);
                    }
                }
            }
        }
    }

    /// One request carrying `batch`: a JSON array of `{request_id, command}`.
    fn batch_request(&self, partition: u32, batch: Vec<(String, Vec<u8>)>) -> WireMessage {
        let batch_id = Uuid::now_v7().to_string();
        let mut body = Vec::with_capacity(batch.iter().map(|(_, c)| c.len() + 64).sum());
        body.push(b'[');
        for (n, (request_id, command)) in batch.into_iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"request_id\":");
            body.extend_from_slice(&serde_json::to_vec(&request_id).unwrap_or_default());
            body.extend_from_slice(b",\"command\":");
            body.extend_from_slice(&command);
            body.push(b'}');
        }
        body.push(b']');
        WireMessage {
            topic: self.topic.clone(),
            partition,
            key: format!("batch/{batch_id}"),
            headers: vec![
                (HEADER_REQUEST_ID.to_owned(), batch_id),
                (
                    herald_brokers::message::HEADER_CONTENT_TYPE.to_owned(),
                    "application/json".to_owned(),
                ),
            ],
            body,
        }
    }

    /// Hands each answer of a reply to the caller waiting for it.
    fn answered(&self, reply: &Reply) {
        let answers: Vec<Answered> = match serde_json::from_slice(&reply.body) {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "An owner's answer cannot be read; its callers time out.");
                return;
            }
        };
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for Answered { request_id, answer } in answers {
            if let Some(waiter) = waiting.remove(&request_id) {
                let _ = waiter.send(Told::Answer(answer));
            }
        }
    }

    fn forget(&self, request_id: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id);
    }
}

fn route(domain: &str, route: &'static str) {
    metrics::counter!(ROUTES_TOTAL, "domain" => domain.to_owned(), "route" => route).increment(1);
}

/// Decides the commands delivered to this member, each as it comes (an
/// aggregate's actor still takes them one at a time), until `stop`.
async fn serve(
    inner: Arc<Inner>,
    domains: Domains,
    describe: Describe,
    mut subscription: herald_brokers::Subscription,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_hand = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = in_hand.join_next(), if !in_hand.is_empty() => {}
            delivery = subscription.next() => match delivery {
                Some(Ok(delivery)) => {
                    in_hand.spawn(decide(
                        Arc::clone(&inner),
                        domains.clone(),
                        describe,
                        delivery,
                    ));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "The command group's subscription failed; it goes on.");
                }
                None => break,
            },
        }
    }
    // Answer what is in hand; the rest goes back to the group.
    let drained = tokio::time::timeout(DRAIN, async {
        while in_hand.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("Commands decided for other processes did not finish in time; they are delivered again to the next owner.");
    }
    drop(subscription);
}

/// Decides a delivered batch — its commands at once, each through its
/// aggregate's actor — and answers it with one reply, then acknowledges it.
async fn decide(inner: Arc<Inner>, domains: Domains, describe: Describe, delivery: Delivery) {
    let batch: Vec<Forwarded> = match serde_json::from_slice(delivery.body()) {
        Ok(batch) => batch,
        Err(e) => {
            let reason = format!("not a batch of forwarded commands: {e}");
            if let Err(e) = delivery.nack(reason).await {
                tracing::warn!(error = %e, "A malformed command could not be dead-lettered.");
            }
            return;
        }
    };
    let reply_to =
        herald_brokers::message::header(delivery.headers(), HEADER_REPLY_TO).map(str::to_owned);
    let batch_id =
        herald_brokers::message::header(delivery.headers(), HEADER_REQUEST_ID).map(str::to_owned);
    let answers: Vec<Answered> = futures::future::join_all(batch.into_iter().map(
        |Forwarded {
             request_id,
             command,
         }| {
            let domains = &domains;
            async move {
                Answered {
                    request_id,
                    answer: decide_one(domains, describe, command).await,
                }
            }
        },
    ))
    .await;
    if let (Some(reply_to), Some(batch_id)) = (reply_to, batch_id) {
        match serde_json::to_vec(&answers) {
            Ok(body) => {
                let headers = vec![(HEADER_REQUEST_ID.to_owned(), batch_id)];
                if let Err(e) = inner.broker.reply(&reply_to, headers, body).await {
                    tracing::warn!(error = %e, "Commands' answers could not be sent back; their callers time out.");
                }
            }
            Err(e) => tracing::error!(error = %e, "Commands' answers cannot be encoded."),
        }
    }
    if let Err(e) = delivery.ack().await {
        tracing::debug!(error = %e, "Decided commands were not acknowledged; a redelivery appends nothing twice.");
    }
}

async fn decide_one(domains: &Domains, describe: Describe, command: ForwardedCommand) -> Answer {
    match (
        domains.get(&command.domain),
        TenantId::new(command.tenant.clone()),
    ) {
        (Some(group), Ok(tenant)) => {
            route(&command.domain, "for_another");
            let idempotency = match (command.idempotency_key, command.idempotency_fingerprint) {
                (Some(key), Some(fingerprint)) => Some(Idempotency { key, fingerprint }),
                _ => None,
            };
            let meta = CommandMeta {
                correlation_id: command.correlation_id,
                causation_id: None,
                dedupe_key: command.dedupe_key,
                producer: command.producer,
                idempotency,
                decided_by_owner: true,
            };
            match group
                .execute_json(&tenant, &command.id, &command.command, command.body, meta)
                .await
            {
                Ok(executed) => Answer::Done(executed),
                Err(e) => Answer::Failed(describe(e)),
            }
        }
        _ => Answer::Failed(Failure {
            kind: "not-found".to_owned(),
            detail: format!("no domain {:?} takes commands here", command.domain),
            extensions: Map::new(),
            retry_after_secs: None,
        }),
    }
}
