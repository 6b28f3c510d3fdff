//! The broker ingest: producers may publish events onto a topic of the
//! broker (`herald.ingest` by default) instead of `POST /v1/events`. This
//! module owns the task `herald serve` runs for it, and the check of one
//! published event ([`item`]) that it shares with `POST /v1/events`.
//!
//! The task consumes the topic as the consumer group [`GROUP`]. Each message
//! body is one event exactly like a `POST /v1/events` item; the tenant is
//! the `herald-tenant` header (`default` without one). A valid event is
//! appended and its message acknowledged only after the commit; an invalid
//! one (not JSON, unknown type or version, a payload breaking its schema, a
//! stale `expected_version`, a body over the size limit, a malformed
//! tenant, text holding U+0000…) is rejected, which moves it to the group's
//! dead letters with a reason naming the problem. So is a message whose
//! append fails in any way a retry cannot fix, so that one message never
//! holds up the ones after it. Only while the store is unreachable or
//! closing ([`StoreError::is_transient`]), or fails its health check, is nothing
//! acknowledged or rejected: the append is retried with backoff.
//!
//! Authorization: anyone who may publish to the ingest topic may append any
//! event type for any tenant. Access to the broker is the authorization;
//! API keys and scopes apply to HTTP only.
//!
//! Delivery is at least once, so a message may come twice; the event id is
//! what makes the second one a repeat the store answers without appending:
//! it is derived from the item's `idempotency_key` (as over HTTP), else the
//! item's own `id`, else the `herald-message-id` header, else a hash of the
//! tenant and the body (see [`message_event_id`] and [`body_event_id`]).
//!
//! Messages that arrive together are appended together: per stream, in the
//! order consumed, as few appends as the rules allow (one transaction per
//! stream and batch when nothing is refused), and different streams at once
//! (the store's group commit puts them in one transaction).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use herald_brokers::message::header;
use herald_brokers::progress::{Progress, Tracker};
use herald_brokers::{Broker, BrokerError, ConsumerGroup, Delivery, Topic};
use herald_events::{Backoff, EventId, EventRegistry, NewEvent, StreamId, TenantId};
use herald_store::{AppendOutcome, EventStore, ExpectedVersion, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::api::body::decode;
use crate::api::item::{prepare, PublishItem, MAX_IDEMPOTENCY_KEY};
use crate::api::problem::{Problem, ProblemKind};
use crate::auth::{Action, Identity, Scope, TypePattern};
use crate::runtime_schemas::RuntimeSchemas;

/// The topic consumed when nothing says otherwise.
pub const DEFAULT_TOPIC: &str = "herald.ingest";
/// The consumer group of every Herald process's ingest: the processes share
/// the topic's partitions.
pub const GROUP: &str = "herald-ingest";
/// Names the tenant the event is for; `default` when absent.
pub const HEADER_TENANT: &str = herald_brokers::message::HEADER_TENANT;
/// The producer's id of a message; the event id is derived from it when the
/// item carries neither an `idempotency_key` nor an `id`.
pub const HEADER_MESSAGE_ID: &str = "herald-message-id";

/// Events appended from the ingest topic (repeats not counted).
pub const APPENDED_TOTAL: &str = "herald_ingest_appended_total";
/// Messages that repeated an event already stored: acknowledged, nothing appended.
pub const DUPLICATES_TOTAL: &str = "herald_ingest_duplicates_total";
/// Messages moved to the dead letters, by reason (a problem slug).
pub const DEAD_LETTERED_TOTAL: &str = "herald_ingest_dead_lettered_total";
/// Appends retried after the store failed, by store error kind.
pub const RETRIES_TOTAL: &str = "herald_ingest_retries_total";

/// The ingest's name in progress reports (readiness, `herald_stalled`):
/// work waits while it holds messages it has not settled.
pub const COMPONENT: &str = "ingest";

/// The reason's kind for a message whose append failed permanently for a
/// reason that is not the message's (HTTP's `internal`).
const INTERNAL: &str = "internal";

/// The longest dead-letter reason kept; the message itself is kept whole.
const MAX_REASON: usize = 2000;

/// How the ingest runs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub topic: Topic,
    /// [`GROUP`] in production; tests use their own.
    pub group: ConsumerGroup,
    /// Largest message body accepted (HTTP's `max_body_bytes`); it also
    /// bounds the bodies of one append.
    pub max_body_bytes: usize,
    /// Most messages handled as one batch.
    pub batch_max: usize,
    /// Longest wait between retries after the store or the broker failed.
    pub max_backoff: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            topic: Topic::named(DEFAULT_TOPIC).expect("the default topic is a valid name"),
            group: ConsumerGroup::new(GROUP).expect("the group is a valid name"),
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            batch_max: 500,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The ingest of one process.
pub struct Ingest {
    store: Arc<dyn EventStore>,
    broker: Arc<dyn Broker>,
    registry: EventRegistry,
    config: IngestConfig,
    progress: Tracker,
    schemas: Option<Arc<RuntimeSchemas>>,
}

impl fmt::Debug for Ingest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingest")
            .field("store", &self.store.backend())
            .field("broker", &self.broker.backend())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A running ingest.
#[derive(Debug)]
pub struct IngestHandle {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl IngestHandle {
    /// Waits until the ingest has joined its group; false when it stopped
    /// first. On RabbitMQ the group's queues exist from then on, and a
    /// message published before that reaches nobody.
    pub async fn subscribed(&mut self) -> bool {
        self.subscribed.wait_for(|s| *s).await.is_ok()
    }

    /// Waits for the task to end (after shutdown was signalled).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "The ingest task failed.");
        }
    }
}

/// Whether to go on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    /// Shutting down, or the store closed: what is not settled stays with
    /// the broker and is delivered again to the group.
    Stop,
}

/// What a batch did, for its log line.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    appended: u64,
    duplicates: u64,
    dead_lettered: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Self) {
        self.appended += other.appended;
        self.duplicates += other.duplicates;
        self.dead_lettered += other.dead_lettered;
    }
}

/// A checked message waiting for its append.
struct Pending {
    expected: ExpectedVersion,
    event: NewEvent,
    body_len: usize,
    delivery: Delivery,
}

/// A batch's messages of one stream, in the order consumed.
struct StreamBatch {
    tenant: TenantId,
    stream: StreamId,
    pending: VecDeque<Pending>,
}

/// The result of appending, retried until the store answers.
enum Appended {
    Ok(AppendOutcome),
    Refused(StoreError),
    Stop,
}

impl Ingest {
    pub fn new(
        store: Arc<dyn EventStore>,
        broker: Arc<dyn Broker>,
        registry: EventRegistry,
        config: IngestConfig,
    ) -> Self {
        Self {
            store,
            broker,
            registry,
            config,
            progress: Tracker::detached(COMPONENT),
            schemas: None,
        }
    }

    /// Checks runtime types against `schemas`, reading a tenant's registry
    /// again before refusing a type or version it does not know.
    pub fn with_runtime_schemas(mut self, schemas: Arc<RuntimeSchemas>) -> Self {
        self.schemas = Some(schemas);
        self
    }

    /// Reports the ingest's progress to `progress` (as [`COMPONENT`]).
    pub fn with_progress(mut self, progress: &Progress) -> Self {
        self.progress = progress.tracker(COMPONENT);
        self
    }

    /// Runs the ingest until `shutdown` turns true; then it finishes the
    /// batch in hand and stops.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> IngestHandle {
        let (subscribed_tx, subscribed) = watch::channel(false);
        let topic = self.config.topic.clone();
        let task = tokio::spawn(async move {
            self.run(shutdown, subscribed_tx).await;
            tracing::info!(%topic, "Ingest stopped.");
        });
        IngestHandle { task, subscribed }
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>, subscribed: watch::Sender<bool>) {
        let topics = [self.config.topic.clone()];
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let subscription = match self.broker.subscribe(&self.config.group, &topics).await {
                Ok(subscription) => subscription,
                Err(BrokerError::Closed) => return,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(
                        error = %e,
                        topic = %self.config.topic,
                        "Ingest cannot join its consumer group; retrying."
                    );
                    // Messages may wait on the topic meanwhile.
                    self.progress.waiting();
                    self.progress
                        .trouble(format_args!("cannot join its consumer group: {e}"));
                    if wait(&mut shutdown, self.backoff(failures)).await {
                        return;
                    }
                    continue;
                }
            };
            failures = 0;
            self.progress.idle();
            tracing::info!(
                topic = %self.config.topic,
                group = %self.config.group,
                broker = self.broker.backend(),
                "Ingest is consuming."
            );
            subscribed.send_replace(true);
            let mut batches = subscription.ready_chunks(self.config.batch_max.max(1));
            loop {
                let batch = tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    batch = batches.next() => batch,
                };
                let Some(batch) = batch else {
                    break;
                };
                let mut deliveries = Vec::with_capacity(batch.len());
                for item in batch {
                    match item {
                        Ok(delivery) => deliveries.push(delivery),
                        Err(e) => tracing::warn!(error = %e, "Ingest subscription failed."),
                    }
                }
                if deliveries.is_empty() {
                    self.progress.trouble("its subscription failed");
                    // Only errors: do not spin on a failing subscription.
                    if wait(&mut shutdown, self.backoff(1)).await {
                        return;
                    }
                    continue;
                }
                let span = tracing::info_span!(
                    "ingest_batch",
                    topic = %self.config.topic,
                    messages = deliveries.len()
                );
                self.progress.waiting();
                if self.handle(deliveries, &shutdown).instrument(span).await == Flow::Stop {
                    return;
                }
                self.progress.progressed();
                self.progress.idle();
            }
            subscribed.send_replace(false);
            tracing::warn!(topic = %self.config.topic, "Ingest subscription ended; joining again.");
            if wait(&mut shutdown, self.backoff(1)).await {
                return;
            }
        }
    }

    /// 100 ms doubling per failure, at most `max_backoff`.
    fn backoff(&self, failures: u32) -> Duration {
        Backoff::new(Duration::from_millis(100), self.config.max_backoff).delay(failures)
    }

    /// Checks, appends and settles one batch.
    async fn handle(&self, deliveries: Vec<Delivery>, shutdown: &watch::Receiver<bool>) -> Flow {
        let mut tally = Tally::default();
        let mut streams: Vec<StreamBatch> = Vec::new();
        let mut by_stream: HashMap<(TenantId, StreamId), usize> = HashMap::new();
        for delivery in deliveries {
            let mut checked = check_message(
                delivery.headers(),
                delivery.body(),
                &self.registry,
                self.config.max_body_bytes,
            );
            if let (Err(rejection), Some(schemas)) = (&checked, &self.schemas) {
                // The type may have been registered since this process last
                // read the tenant's registry: check again before refusing.
                if rejection.names_unknown_type() {
                    let tenant = message_tenant(delivery.headers());
                    if let Some(tenant) = tenant {
                        match schemas.catch_up(&tenant).await {
                            Ok(()) => {
                                checked = check_message(
                                    delivery.headers(),
                                    delivery.body(),
                                    &self.registry,
                                    self.config.max_body_bytes,
                                );
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, %tenant, "reading the tenant's schema registry failed");
                            }
                        }
                    }
                }
            }
            match checked {
                Ok(checked) => {
                    let key = (checked.tenant.clone(), checked.stream.clone());
                    let index = *by_stream.entry(key).or_insert_with(|| {
                        streams.push(StreamBatch {
                            tenant: checked.tenant,
                            stream: checked.stream,
                            pending: VecDeque::new(),
                        });
                        streams.len() - 1
                    });
                    streams[index].pending.push_back(Pending {
                        expected: checked.expected,
                        event: checked.event,
                        body_len: delivery.body().len(),
                        delivery,
                    });
                }
                Err(rejection) => tally += self.dead_letter(delivery, &rejection).await,
            }
        }
        let results = join_all(
            streams
                .into_iter()
                .map(|batch| self.append_stream(batch, shutdown.clone())),
        )
        .await;
        let mut flow = Flow::Go;
        for (stream_flow, stream_tally) in results {
            tally += stream_tally;
            if stream_flow == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        tracing::debug!(
            appended = tally.appended,
            duplicates = tally.duplicates,
            dead_lettered = tally.dead_lettered,
            "Ingest batch settled."
        );
        flow
    }

    /// Appends one stream's messages of a batch, in order.
    async fn append_stream(
        &self,
        mut batch: StreamBatch,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Flow, Tally) {
        let mut tally = Tally::default();
        while !batch.pending.is_empty() {
            let n = run_length(&batch.pending, self.config.max_body_bytes);
            let run: Vec<Pending> = batch.pending.drain(..n).collect();
            let expected = run[0].expected;
            let events: Vec<NewEvent> = run.iter().map(|p| p.event.clone()).collect();
            match self
                .append(
                    &batch.tenant,
                    &batch.stream,
                    expected,
                    &events,
                    &mut shutdown,
                )
                .await
            {
                Appended::Ok(outcome) => tally += settle_appended(run, &outcome).await,
                Appended::Stop => return (Flow::Stop, tally),
                Appended::Refused(_) if run.len() > 1 => {
                    // One of them is refused (a stale expected version, an id
                    // stored elsewhere…); one at a time, only it is rejected.
                    for pending in run {
                        match self
                            .append(
                                &batch.tenant,
                                &batch.stream,
                                pending.expected,
                                std::slice::from_ref(&pending.event),
                                &mut shutdown,
                            )
                            .await
                        {
                            Appended::Ok(outcome) => {
                                tally += settle_appended(vec![pending], &outcome).await
                            }
                            Appended::Refused(e) => {
                                tally += self
                                    .dead_letter(pending.delivery, &Rejection::from_store(e))
                                    .await
                            }
                            Appended::Stop => return (Flow::Stop, tally),
                        }
                    }
                }
                Appended::Refused(e) => {
                    let pending = run.into_iter().next().expect("a run is never empty");
                    tally += self
                        .dead_letter(pending.delivery, &Rejection::from_store(e))
                        .await;
                }
            }
        }
        (Flow::Go, tally)
    }

    /// Appends, retrying with backoff while the store fails in a way that
    /// passes ([`StoreError::is_transient`]); any other failure is the answer.
    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Appended {
        let mut failures = 0u32;
        loop {
            match self
                .store
                .append(tenant, stream, expected, events.to_vec())
                .await
            {
                Ok(outcome) => return Appended::Ok(outcome),
                Err(StoreError::Closed) => return Appended::Stop,
                Err(e) if self.is_permanent(&e).await => return Appended::Refused(e),
                Err(e) => {
                    failures += 1;
                    metrics::counter!(RETRIES_TOTAL, "kind" => e.kind()).increment(1);
                    tracing::warn!(
                        error = %e,
                        %stream,
                        failures,
                        "Ingest cannot append; retrying."
                    );
                    self.progress.trouble(format_args!("cannot append: {e}"));
                    if wait(shutdown, self.backoff(failures)).await {
                        return Appended::Stop;
                    }
                }
            }
        }
    }

    /// True when an append that failed with `e` would fail again however
    /// often it is retried, so its message is dead-lettered: a refusal of
    /// the append itself, or an error of the store that is not transient
    /// ([`StoreError::is_transient`]) while the store answers its health check. When the
    /// store fails that check too, the error is the store's and not the
    /// message's (a connection refused for a reason the store does not
    /// classify as passing): every message would meet it, so it is retried.
    async fn is_permanent(&self, e: &StoreError) -> bool {
        if e.is_caller_error() {
            return true;
        }
        !e.is_transient() && self.store.check().await.is_ok()
    }

    /// Moves a message to the group's dead letters with the reason.
    async fn dead_letter(&self, delivery: Delivery, rejection: &Rejection) -> Tally {
        match delivery.nack(rejection.reason()).await {
            Ok(()) => {
                metrics::counter!(DEAD_LETTERED_TOTAL, "reason" => rejection.kind).increment(1);
                // The detail may quote the payload: it goes to the dead
                // letter, not to the log.
                tracing::info!(
                    reason = rejection.kind,
                    topic = %self.config.topic,
                    "Ingest dead-lettered a message."
                );
                Tally {
                    dead_lettered: 1,
                    ..Tally::default()
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    reason = rejection.kind,
                    "Ingest could not dead-letter a message; it will be delivered again."
                );
                Tally::default()
            }
        }
    }
}

/// Acknowledges the messages of a committed append.
async fn settle_appended(run: Vec<Pending>, outcome: &AppendOutcome) -> Tally {
    let n = run.len() as u64;
    let tally = if outcome.duplicate {
        metrics::counter!(DUPLICATES_TOTAL).increment(n);
        Tally {
            duplicates: n,
            ..Tally::default()
        }
    } else {
        metrics::counter!(APPENDED_TOTAL).increment(n);
        Tally {
            appended: n,
            ..Tally::default()
        }
    };
    for pending in run {
        if let Err(e) = pending.delivery.ack().await {
            // Committed already: when it comes again the store answers it
            // as a repeat.
            tracing::warn!(
                error = %e,
                "Ingest could not acknowledge a message; it will be delivered again."
            );
        }
    }
    tally
}

/// How many of the stream's next messages go into one append. The store
/// checks one expected version per append, before its first event, so only
/// the first may carry one; an id twice would make the append invalid; and
/// their bodies stay within one request's limit.
fn run_length(pending: &VecDeque<Pending>, max_bytes: usize) -> usize {
    let mut ids = HashSet::new();
    let mut bytes = 0usize;
    let mut n = 0;
    for (i, p) in pending.iter().enumerate() {
        let fits =
            i == 0 || (p.expected == ExpectedVersion::Any && bytes + p.body_len <= max_bytes);
        if !fits || !ids.insert(p.event.id) {
            break;
        }
        bytes += p.body_len;
        n += 1;
    }
    n.max(1)
}

/// Waits `pause` or until shutdown; true on shutdown.
async fn wait(shutdown: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        _ = tokio::time::sleep(pause) => false,
    }
}

/// Why a message was rejected: a stable kind (a problem slug, also the
/// metric's label) and a detail naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: &'static str,
    pub detail: String,
}

impl Rejection {
    /// True when the message names a type or version not known here.
    fn names_unknown_type(&self) -> bool {
        self.kind == ProblemKind::UnknownEventType.slug()
            || self.kind == ProblemKind::UnknownSchemaVersion.slug()
    }

    fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The problem HTTP would answer, without the `events[0]: ` that locates
    /// an item in a request body (a message holds one).
    fn from_problem(problem: Problem) -> Self {
        let detail = problem
            .detail
            .strip_prefix("events[0]: ")
            .map(str::to_owned)
            .unwrap_or(problem.detail);
        Self::new(problem.kind.slug(), detail)
    }

    /// For permanent failures of an append ([`StoreError::is_transient`] is false): a
    /// refusal of the append as HTTP answers it, any other error as
    /// `internal` with the store's own words, which HTTP would only log.
    fn from_store(e: StoreError) -> Self {
        if e.is_caller_error() {
            Self::from_problem(Problem::from(e))
        } else {
            tracing::error!(
                error = %e,
                kind = e.kind(),
                "Ingest cannot append a message; dead-lettering it."
            );
            Self::new(INTERNAL, e.to_string())
        }
    }

    /// The reason given to the dead letter: `<kind>: <detail>`.
    pub fn reason(&self) -> String {
        let mut reason = format!("{}: {}", self.kind, self.detail);
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        reason
    }
}

/// A message that passed every check the store does not make.
#[derive(Debug)]
pub struct Checked {
    pub tenant: TenantId,
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub event: NewEvent,
}

/// The tenant a message's header names (the default tenant without one);
/// `None` when the header is not a tenant (the check refuses it).
fn message_tenant(headers: &[(String, String)]) -> Option<TenantId> {
    match header(headers, HEADER_TENANT) {
        None => Some(TenantId::default_tenant()),
        Some(value) => TenantId::new(value).ok(),
    }
}

/// Checks one message of the ingest topic as `POST /v1/events` checks one
/// item, for the tenant its header names, and gives its event the id the
/// rules above derive.
pub fn check_message(
    headers: &[(String, String)],
    body: &[u8],
    registry: &EventRegistry,
    max_body_bytes: usize,
) -> Result<Checked, Rejection> {
    let tenant = match header(headers, HEADER_TENANT) {
        None => TenantId::default_tenant(),
        Some(value) => TenantId::new(value).map_err(|e| {
            Rejection::new(
                "invalid-tenant",
                format!(
                    "the {HEADER_TENANT} header {:?} is not a tenant: {e}",
                    shorten(value)
                ),
            )
        })?,
    };
    if body.len() > max_body_bytes {
        return Err(Rejection::new(
            "body-too-large",
            format!(
                "the body is {} bytes, larger than the limit of {max_body_bytes} bytes",
                body.len()
            ),
        ));
    }
    let message_id = header(headers, HEADER_MESSAGE_ID);
    if message_id.is_some_and(|id| id.is_empty() || id.len() > MAX_IDEMPOTENCY_KEY) {
        return Err(Rejection::new(
            "invalid-request",
            format!("the {HEADER_MESSAGE_ID} header is 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    if message_id.is_some_and(|id| !herald_store::storable::is_storable(id)) {
        return Err(Rejection::new(
            "invalid-request",
            format!(
                "the {HEADER_MESSAGE_ID} header holds the character U+0000, which Herald refuses \
                 in all text"
            ),
        ));
    }
    let item: PublishItem = decode(body).map_err(Rejection::from_problem)?;
    if let Some(named) = item.tenant.as_deref().filter(|t| *t != tenant.as_str()) {
        return Err(Rejection::new(
            "invalid-tenant",
            format!(
                "the event names tenant {:?}, the message is for tenant {tenant} \
                 (its {HEADER_TENANT} header, or default without one)",
                shorten(named)
            ),
        ));
    }
    let has_id = item.idempotency_key.is_some() || item.id.is_some();
    let prepared =
        prepare(0, item, registry, &identity(&tenant)).map_err(Rejection::from_problem)?;
    let mut event = prepared.event;
    if !has_id {
        let id = match message_id {
            Some(message_id) => message_event_id(&tenant, message_id),
            None => body_event_id(&tenant, body),
        };
        event = event.with_id(id);
    }
    Ok(Checked {
        tenant,
        stream: prepared.stream,
        expected: prepared.expected,
        event,
    })
}

/// What the ingest may do for a tenant: publish every type, since access to
/// the broker is the authorization.
fn identity(tenant: &TenantId) -> Identity {
    let mut identity = Identity::anonymous();
    identity.tenant = tenant.clone();
    identity.scopes = vec![Scope {
        action: Action::Publish,
        pattern: TypePattern::new(TypePattern::ANY).expect("`*` is a valid pattern"),
    }];
    identity.subject = "broker-ingest".into();
    identity
}

/// The event id of a message without idempotency key or id that carries a
/// `herald-message-id` header, within its tenant.
pub fn message_event_id(tenant: &TenantId, message_id: &str) -> EventId {
    // Its own namespace: a message id never stands for the same event as an
    // equal idempotency key or body.
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d6d_7367_2d69_6400_0001);
    EventId(Uuid::new_v5(
        &NAMESPACE,
        format!("{tenant}\n{message_id}").as_bytes(),
    ))
}

/// The event id of a message with no idempotency key, id or message id: the
/// same body for the same tenant is the same event.
pub fn body_event_id(tenant: &TenantId, body: &[u8]) -> EventId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d62_6f64_792d_6964_0001);
    let mut name = Vec::with_capacity(tenant.as_str().len() + 1 + body.len());
    name.extend_from_slice(tenant.as_str().as_bytes());
    name.push(b'\n');
    name.extend_from_slice(body);
    EventId(Uuid::new_v5(&NAMESPACE, &name))
}

/// A value quoted in a reason, cut short.
fn shorten(value: &str) -> String {
    value.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn check(pairs: &[(&str, &str)], body: &Value) -> Result<Checked, Rejection> {
        let headers: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let body = serde_json::to_vec(body).unwrap();
        check_message(&headers, &body, &EventRegistry::builtin().unwrap(), 300)
    }

    fn note() -> Value {
        json!({"stream": "tickets/T-1", "type": "tickets.note_appended", "version": 1,
               "payload": {"note": "x"}})
    }

    fn with(mut item: Value, key: &str, value: Value) -> Value {
        item[key] = value;
        item
    }

    #[test]
    fn ids_come_from_the_key_the_id_the_message_id_or_the_body() {
        let acme = TenantId::new("acme").unwrap();
        let id = |pairs: &[(&str, &str)], body: &Value| check(pairs, body).unwrap().event.id;
        let both = [("herald-tenant", "acme"), ("herald-message-id", "m")];
        let keyed = with(note(), "idempotency_key", json!("k"));
        assert_eq!(
            id(&both, &keyed),
            crate::api::item::idempotent_id(&acme, "k")
        );
        let own = "0190b0a6-5c1e-7c3a-9f10-2b3c4d5e6f70";
        assert_eq!(id(&both, &with(note(), "id", json!(own))).to_string(), own);
        assert_eq!(id(&both, &note()), message_event_id(&acme, "m"));
        let body = serde_json::to_vec(&note()).unwrap();
        assert_eq!(
            id(&[("herald-tenant", "acme")], &note()),
            body_event_id(&acme, &body)
        );
        assert_ne!(id(&[], &note()), id(&[("herald-tenant", "acme")], &note()));
        assert_ne!(
            message_event_id(&acme, "k"),
            crate::api::item::idempotent_id(&acme, "k")
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let kind = |pairs: &[(&str, &str)], body: &Value| check(pairs, body).unwrap_err().kind;
        assert_eq!(kind(&[], &json!({"events": []})), "invalid-request");
        assert_eq!(
            kind(&[("herald-tenant", "no way")], &note()),
            "invalid-tenant"
        );
        let globex = with(note(), "tenant", json!("globex"));
        assert_eq!(
            kind(&[("herald-tenant", "acme")], &globex),
            "invalid-tenant"
        );
        assert_eq!(
            kind(&[("herald-message-id", "")], &note()),
            "invalid-request"
        );
        let long = with(note(), "payload", json!({"note": "x".repeat(300)}));
        assert_eq!(kind(&[], &long), "body-too-large");
        let schema = check(&[], &with(note(), "payload", json!({}))).unwrap_err();
        assert!(
            schema
                .reason()
                .starts_with("schema-violation: payload of tickets.note_appended"),
            "{}",
            schema.reason()
        );
        let unknown = check(&[], &with(note(), "type", json!("tickets.nope"))).unwrap_err();
        assert_eq!(unknown.kind, "unknown-event-type");
        assert!(
            unknown.detail.contains("tickets.nope"),
            "{}",
            unknown.detail
        );
        // Refused as over HTTP: no URL could reach such a stream.
        for stream in ["tickets/..", "tickets/."] {
            let dots = with(note(), "stream", json!(stream));
            assert_eq!(kind(&[], &dots), "invalid-stream-id", "{stream}");
        }
        let registry = EventRegistry::builtin().unwrap();
        let raw = |body: &[u8]| check_message(&[], body, &registry, 300).unwrap_err().kind;
        assert_eq!(raw(b"{\"stream\": "), "invalid-json");
        assert_eq!(raw(b"\xff"), "invalid-utf8");
    }

    #[test]
    fn reasons_are_bounded() {
        let long = Rejection::new("schema-violation", "é".repeat(5000));
        assert!(long.reason().len() <= MAX_REASON + '…'.len_utf8());
    }
}
