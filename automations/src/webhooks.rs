//! The webhook dispatcher: delivers the `automations.webhook_requested`
//! events the engine queues, at least once, and records each outcome as an
//! event of the automation's stream (`delivery_succeeded`, or
//! `delivery_dead_lettered` when the retry window ended).
//!
//! - **One dispatcher** across the processes sharing the store (a lease);
//!   it follows the log from its checkpoint, which carries the deliveries
//!   still pending, so a restart (or another process taking over) goes on
//!   where it stopped. A delivery whose outcome was not recorded before a
//!   crash is sent again — with the same `Herald-Delivery` id, so a
//!   receiver can drop the repeat.
//! - **Signed.** Each attempt carries `Herald-Delivery` (stable),
//!   `Herald-Timestamp` (seconds since the epoch, of this attempt),
//!   `Herald-Automation`, `Herald-Event` (the trigger's id) and, when the
//!   action names a secret, `Herald-Signature: v1=<hex>`: HMAC-SHA256 of
//!   `<timestamp>.<body>` with the secret. Receivers recompute it, compare
//!   in constant time and refuse old timestamps.
//! - **Retried** with exponential backoff and full jitter (1 s doubling up
//!   to 5 min) while the answer is not 2xx, the connection fails or the
//!   attempt times out, until `retry_for` after the request; then
//!   dead-lettered. `POST /v1/automations/{name}/deliveries/{id}/retry`
//!   queues a dead letter again with a new window.
//! - **In order per stream, bounded per endpoint.** Deliveries with the
//!   same endpoint (scheme, host, port) and order key (the trigger's
//!   stream) go one at a time in log order; an endpoint has at most
//!   [`DispatcherConfig::per_endpoint`] deliveries in flight.
//! - **Egress**: see [`crate::egress`]; a refused address is dead-lettered
//!   at once (retrying cannot help).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_events::automations::{
    DeliveryDeadLettered, DeliveryRetryRequested, DeliverySucceeded, EmailRequested,
    WebhookRequested, DOMAIN,
};
use herald_events::{EventEnvelope, EventId, Position, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, SearchQuery, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::egress::{self, Egress};
use crate::engine::{automation_stream, event_id};

/// Webhook attempts, per automation and outcome: delivered, retried,
/// dead_lettered.
pub const DELIVERIES_TOTAL: &str = "herald_webhook_deliveries_total";

/// The dispatcher's lease and checkpoint.
pub const DISPATCHER: &str = "automations-webhooks";

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub lease_ttl: Duration,
    pub standby_poll: Duration,
    /// Deliveries in flight per endpoint.
    pub per_endpoint: usize,
    /// The first retry's wait; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Redirects followed (each checked like the URL).
    pub max_redirects: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(10),
            standby_poll: Duration::from_secs(1),
            per_endpoint: 4,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_redirects: 5,
        }
    }
}

/// What is delivered: a webhook's POST or an email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Webhook(WebhookRequested),
    Email(EmailRequested),
}

impl Job {
    pub fn delivery_id(&self) -> Uuid {
        match self {
            Job::Webhook(r) => r.delivery_id,
            Job::Email(r) => r.delivery_id,
        }
    }

    pub fn automation(&self) -> &str {
        match self {
            Job::Webhook(r) => &r.automation,
            Job::Email(r) => &r.automation,
        }
    }

    fn trigger_event(&self) -> Uuid {
        match self {
            Job::Webhook(r) => r.trigger_event,
            Job::Email(r) => r.trigger_event,
        }
    }

    fn retry_for_secs(&self) -> u64 {
        match self {
            Job::Webhook(r) => r.retry_for_secs,
            Job::Email(r) => r.retry_for_secs,
        }
    }

    fn order_key(&self) -> &str {
        match self {
            Job::Webhook(r) => &r.order_key,
            Job::Email(r) => &r.order_key,
        }
    }

    /// Where it goes: a webhook's endpoint, or the SMTP server.
    fn endpoint(&self) -> String {
        match self {
            Job::Webhook(r) => endpoint(&r.url),
            Job::Email(_) => "smtp".to_owned(),
        }
    }

    /// The job a stored event queues.
    pub fn of(event: &EventEnvelope) -> Option<Job> {
        if event.event_type.domain() != DOMAIN {
            return None;
        }
        let name = event.event_type.name();
        if name == WebhookRequested::NAME {
            WebhookRequested::from_payload(event.payload.clone())
                .ok()
                .map(Job::Webhook)
        } else if name == EmailRequested::NAME {
            EmailRequested::from_payload(event.payload.clone())
                .ok()
                .map(Job::Email)
        } else {
            None
        }
    }
}

/// A delivery not finished yet, as the checkpoint keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    tenant: String,
    position: u64,
    job: Job,
    /// When this window of retries began (the request, or its retry).
    since: chrono::DateTime<chrono::Utc>,
    attempts: u32,
    /// How many times it was dead-lettered and retried.
    generation: u32,
    /// No attempt before this instant.
    #[serde(default)]
    next_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    pending: Vec<Pending>,
}

/// What one attempt gave.
#[derive(Debug)]
struct Outcome {
    delivery: Uuid,
    status: Option<u16>,
    latency_ms: u64,
    result: Result<(), String>,
    /// Retrying cannot help (a refused address, a bad URL).
    permanent: bool,
}

/// The dispatcher.
pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    egress: Arc<Egress>,
    config: DispatcherConfig,
    holder: String,
    client: reqwest::Client,
    mailer: Option<Arc<Mailer>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("holder", &self.holder)
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(store: Arc<dyn EventStore>, egress: Egress, config: DispatcherConfig) -> Self {
        let egress = Arc::new(egress);
        let checked = Arc::clone(&egress);
        let max_redirects = config.max_redirects;
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(egress.resolver()))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max_redirects {
                    return attempt.error(format!("more than {max_redirects} redirects"));
                }
                if let Err(why) = egress::check_url(attempt.url().as_str())
                    .and_then(|u| egress::check_literal(&checked, &u))
                {
                    return attempt.error(format!("redirect {why}"));
                }
                attempt.follow()
            }))
            .build()
            .expect("the webhook client builds");
        Self {
            store,
            egress,
            config,
            holder: format!("webhooks-{}", Uuid::now_v7()),
            client,
            mailer: None,
        }
    }

    /// Sends email actions through `mailer` (without one they are
    /// dead-lettered: no SMTP server is configured).
    pub fn with_mailer(mut self, mailer: Mailer) -> Self {
        self.mailer = Some(Arc::new(mailer));
        self
    }

    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self
                .store
                .acquire_lease(DISPATCHER, &self.holder, self.config.lease_ttl)
                .await
            {
                Ok(true) => {}
                _ => {
                    if wait(&mut shutdown, self.config.standby_poll).await {
                        return;
                    }
                    continue;
                }
            }
            tracing::info!(holder = %self.holder, "Webhook dispatcher is active.");
            let shutting_down = self.lead(&mut shutdown).await;
            if shutting_down {
                let _ = self.store.release_lease(DISPATCHER, &self.holder).await;
                return;
            }
        }
    }

    /// One term as the dispatcher; true when the process is stopping.
    async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let (start, saved) = loop {
            match self.store.checkpoint_state(DISPATCHER).await {
                Ok(Some((p, Some(text)))) => {
                    break (p, serde_json::from_str::<Saved>(&text).unwrap_or_default())
                }
                Ok(Some((p, None))) => break (p, Saved::default()),
                Ok(None) => match self.first_start().await {
                    Ok(start) => break (start, Saved::default()),
                    Err(e) => {
                        tracing::warn!(error = %e, "Webhook dispatcher cannot read the log head; retrying.");
                        if wait(shutdown, self.config.standby_poll).await {
                            return true;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "Webhook dispatcher cannot read its checkpoint; retrying.");
                    if wait(shutdown, self.config.standby_poll).await {
                        return true;
                    }
                }
            }
        };
        let mut pending: BTreeMap<Uuid, Pending> = saved
            .pending
            .into_iter()
            .map(|p| (p.job.delivery_id(), p))
            .collect();
        let mut in_flight: HashMap<Uuid, String> = HashMap::new();
        let mut per_endpoint: HashMap<String, usize> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(64);
        let mut events = self.store.subscribe_all(start.next());
        let mut position = start;
        let mut dirty = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renew = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let _ = self.save(position, &pending).await;
                    return true;
                }
                Some(outcome) = done_rx.recv() => {
                    if let Some(endpoint) = in_flight.remove(&outcome.delivery) {
                        if let Some(n) = per_endpoint.get_mut(&endpoint) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    if self.settle(&mut pending, outcome, shutdown).await {
                        return true;
                    }
                    dirty = true;
                }
                next = events.next() => {
                    let event = match next {
                        Some(Ok(event)) => event,
                        Some(Err(StoreError::Closed)) | None => return true,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Webhook dispatcher lost its log subscription; resubscribing.");
                            if wait(shutdown, self.config.standby_poll).await {
                                return true;
                            }
                            events = self.store.subscribe_all(position.next());
                            continue;
                        }
                    };
                    self.follow(&mut pending, &event).await;
                    position = event.position;
                    dirty = true;
                }
                _ = tick.tick() => {
                    if last_renew.elapsed() >= self.config.standby_poll {
                        last_renew = tokio::time::Instant::now();
                        match self.store.acquire_lease(DISPATCHER, &self.holder, self.config.lease_ttl).await {
                            Ok(false) => return false,
                            Ok(true) => {}
                            Err(e) => tracing::warn!(error = %e, "Webhook dispatcher could not renew its lease."),
                        }
                        if dirty && self.save(position, &pending).await.is_ok() {
                            dirty = false;
                        }
                    }
                }
            }
            self.start_due(&pending, &mut in_flight, &mut per_endpoint, &done_tx);
        }
    }

    /// Where a dispatcher that never ran starts: at the head when nothing
    /// was ever queued (however long the log), else at the start. The head
    /// is read first, so a request queued meanwhile is found either way.
    async fn first_start(&self) -> Result<Position, StoreError> {
        let head = self.store.head().await?.position;
        for name in [WebhookRequested::NAME, EmailRequested::NAME] {
            let queued: herald_events::EventType = format!("{DOMAIN}.{name}")
                .parse()
                .expect("a valid event type constant");
            if !self.store.tenants_with_type(&queued).await?.is_empty() {
                return Ok(Position::START);
            }
        }
        Ok(head)
    }

    /// Applies one log event to the pending deliveries.
    async fn follow(&self, pending: &mut BTreeMap<Uuid, Pending>, event: &EventEnvelope) {
        if event.event_type.domain() != DOMAIN {
            return;
        }
        let name = event.event_type.name();
        if let Some(job) = Job::of(event) {
            pending.entry(job.delivery_id()).or_insert(Pending {
                tenant: event.tenant.to_string(),
                position: event.position.get(),
                job,
                since: event.recorded_at,
                attempts: 0,
                generation: 0,
                next_at: None,
            });
        } else if name == DeliverySucceeded::NAME {
            if let Ok(d) = DeliverySucceeded::from_payload(event.payload.clone()) {
                pending.remove(&d.delivery_id);
            }
        } else if name == DeliveryDeadLettered::NAME {
            if let Ok(d) = DeliveryDeadLettered::from_payload(event.payload.clone()) {
                pending.remove(&d.delivery_id);
            }
        } else if name == DeliveryRetryRequested::NAME {
            if let Ok(retry) = DeliveryRetryRequested::from_payload(event.payload.clone()) {
                if pending.contains_key(&retry.delivery_id) {
                    return;
                }
                match find_request(
                    &*self.store,
                    &event.tenant,
                    &retry.automation,
                    retry.delivery_id,
                )
                .await
                {
                    Ok(Some((position, job))) => {
                        let generation = retry_generation(
                            &*self.store,
                            &event.tenant,
                            &retry.automation,
                            retry.delivery_id,
                            event.position,
                        )
                        .await
                        .unwrap_or(1);
                        pending.insert(
                            retry.delivery_id,
                            Pending {
                                tenant: event.tenant.to_string(),
                                position,
                                job,
                                since: event.recorded_at,
                                attempts: 0,
                                generation,
                                next_at: None,
                            },
                        );
                    }
                    Ok(None) => {
                        tracing::warn!(delivery = %retry.delivery_id, "A retry names no webhook delivery.")
                    }
                    Err(e) => tracing::warn!(error = %e, "A webhook retry could not be read."),
                }
            }
        }
    }

    /// Starts every delivery that may go now: the head of its order queue,
    /// due, and within its endpoint's bound.
    fn start_due(
        &self,
        pending: &BTreeMap<Uuid, Pending>,
        in_flight: &mut HashMap<Uuid, String>,
        per_endpoint: &mut HashMap<String, usize>,
        done: &mpsc::Sender<Outcome>,
    ) {
        let now = chrono::Utc::now();
        // The head of each (endpoint, order key) queue, by log position.
        let mut queues: BTreeMap<(String, String, String), VecDeque<&Pending>> = BTreeMap::new();
        let mut ordered: Vec<&Pending> = pending.values().collect();
        ordered.sort_by_key(|p| p.position);
        for p in ordered {
            queues
                .entry((
                    p.tenant.clone(),
                    p.job.endpoint(),
                    p.job.order_key().to_owned(),
                ))
                .or_default()
                .push_back(p);
        }
        for ((_, endpoint, _), queue) in queues {
            let Some(head) = queue.front() else { continue };
            if in_flight.contains_key(&head.job.delivery_id()) {
                continue;
            }
            if head.next_at.is_some_and(|t| t > now) {
                continue;
            }
            let busy = per_endpoint.entry(endpoint.clone()).or_default();
            if *busy >= self.config.per_endpoint {
                continue;
            }
            *busy += 1;
            in_flight.insert(head.job.delivery_id(), endpoint);
            let client = self.client.clone();
            let egress = Arc::clone(&self.egress);
            let job = head.job.clone();
            let mailer = self.mailer.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let outcome = match &job {
                    Job::Webhook(request) => attempt(&client, &egress, request).await,
                    Job::Email(request) => send_email(mailer.as_deref(), request).await,
                };
                let _ = done.send(outcome).await;
            });
        }
    }

    /// Records an attempt's outcome: delivered, retried later, or
    /// dead-lettered. True when the process is stopping.
    async fn settle(
        &self,
        pending: &mut BTreeMap<Uuid, Pending>,
        outcome: Outcome,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let Some(p) = pending.get_mut(&outcome.delivery) else {
            return false;
        };
        p.attempts += 1;
        let now = chrono::Utc::now();
        let record = match &outcome.result {
            Ok(()) => {
                metrics::counter!(DELIVERIES_TOTAL, "automation" => p.job.automation().to_owned(), "outcome" => "delivered").increment(1);
                Some(
                    DeliverySucceeded {
                        automation: p.job.automation().to_owned(),
                        delivery_id: p.job.delivery_id(),
                        status: outcome.status.unwrap_or(200),
                        attempts: p.attempts,
                        latency_ms: outcome.latency_ms,
                    }
                    .to_new_event()
                    .with_id(EventId(event_id(&format!(
                        "{}/delivered",
                        p.job.delivery_id()
                    )))),
                )
            }
            Err(why) => {
                let window_end = p.since
                    + chrono::Duration::seconds(p.job.retry_for_secs().min(i64::MAX as u64) as i64);
                let wait = backoff(&self.config, p.attempts);
                let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                if outcome.permanent || next > window_end {
                    metrics::counter!(DELIVERIES_TOTAL, "automation" => p.job.automation().to_owned(), "outcome" => "dead_lettered").increment(1);
                    tracing::warn!(automation = %p.job.automation(), delivery = %p.job.delivery_id(), attempts = p.attempts, error = %why, "A webhook delivery is dead-lettered.");
                    Some(
                        DeliveryDeadLettered {
                            automation: p.job.automation().to_owned(),
                            delivery_id: p.job.delivery_id(),
                            attempts: p.attempts,
                            last_status: outcome.status,
                            error: why.chars().take(4000).collect(),
                        }
                        .to_new_event()
                        .with_id(EventId(event_id(&format!(
                            "{}/dead/{}",
                            p.job.delivery_id(),
                            p.generation
                        )))),
                    )
                } else {
                    metrics::counter!(DELIVERIES_TOTAL, "automation" => p.job.automation().to_owned(), "outcome" => "retried").increment(1);
                    tracing::info!(automation = %p.job.automation(), delivery = %p.job.delivery_id(), attempts = p.attempts, error = %why, retry_in_ms = wait.as_millis() as u64, "A webhook delivery failed; retrying.");
                    p.next_at = Some(next);
                    None
                }
            }
        };
        let Some(record) = record else { return false };
        let Ok(tenant) = p.tenant.parse::<TenantId>() else {
            pending.remove(&outcome.delivery);
            return false;
        };
        let stream = automation_stream(p.job.automation());
        let record = record
            .correlation(p.job.trigger_event(), p.job.trigger_event())
            .producer(crate::engine::producer(p.job.automation()));
        let mut failures = 0;
        loop {
            match self
                .store
                .append(&tenant, &stream, ExpectedVersion::Any, vec![record.clone()])
                .await
            {
                // Settled: not started again while its outcome comes back
                // through the log (which removes it after a restart too).
                Ok(_) => {
                    pending.remove(&outcome.delivery);
                    return false;
                }
                Err(e) if e.is_caller_error() => {
                    tracing::error!(error = %e, "A webhook outcome could not be recorded.");
                    pending.remove(&outcome.delivery);
                    return false;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "A webhook outcome could not be recorded yet; retrying.");
                    if wait(
                        shutdown,
                        backoff(&self.config, failures).min(Duration::from_secs(5)),
                    )
                    .await
                    {
                        return true;
                    }
                }
            }
        }
    }

    async fn save(
        &self,
        position: Position,
        pending: &BTreeMap<Uuid, Pending>,
    ) -> Result<(), StoreError> {
        if !self
            .store
            .acquire_lease(DISPATCHER, &self.holder, self.config.lease_ttl)
            .await?
        {
            return Ok(());
        }
        let saved = Saved {
            pending: pending.values().cloned().collect(),
        };
        let text = serde_json::to_string(&saved).expect("pending deliveries serialize");
        self.store
            .save_checkpoint_state(DISPATCHER, position, &text)
            .await
    }
}

/// The endpoint a URL names: scheme, host and port.
fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_owned(),
    }
}

/// The wait before retry `n` (from 1): exponential, capped, full jitter.
fn backoff(config: &DispatcherConfig, n: u32) -> Duration {
    let exp = config
        .first_backoff
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(30)))
        .min(config.max_backoff);
    let jitter: f64 = rand::random::<f64>();
    // Never less than half the step: full jitter, with a floor so a burst
    // of failures does not retry at once.
    exp.mul_f64(0.5 + jitter / 2.0)
}

/// The signature of a body: `v1=` and the hex HMAC-SHA256 of
/// `<timestamp>.<body>` with the secret.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One attempt of a delivery.
async fn attempt(client: &reqwest::Client, egress: &Egress, request: &WebhookRequested) -> Outcome {
    let started = std::time::Instant::now();
    let fail = |why: String, status: Option<u16>, permanent: bool| Outcome {
        delivery: request.delivery_id,
        status,
        latency_ms: started.elapsed().as_millis() as u64,
        result: Err(why),
        permanent,
    };
    let url = match egress::check_url(&request.url)
        .and_then(|u| egress::check_literal(egress, &u).map(|()| u))
    {
        Ok(u) => u,
        Err(why) => return fail(why, None, true),
    };
    let body = serde_json::to_vec(&request.body).expect("a JSON value serializes");
    let timestamp = chrono::Utc::now().timestamp();
    let mut builder = client
        .post(url)
        .timeout(Duration::from_millis(request.timeout_ms))
        .header("content-type", "application/json")
        .header("herald-delivery", request.delivery_id.to_string())
        .header("herald-timestamp", timestamp.to_string())
        .header("herald-automation", &request.automation)
        .header("herald-event", request.trigger_event.to_string());
    for (name, value) in &request.headers {
        if let Some(value) = value.as_str() {
            builder = builder.header(name.as_str(), value);
        }
    }
    if let Some(env) = &request.secret_env {
        match std::env::var(env) {
            Ok(secret) if !secret.is_empty() => {
                builder = builder.header(
                    "herald-signature",
                    signature(secret.as_bytes(), timestamp, &body),
                );
            }
            _ => {
                return fail(
                    format!("the signing secret's variable {env} is not set in this process"),
                    None,
                    false,
                )
            }
        }
    }
    match builder.body(body).send().await {
        Ok(resp) if resp.status().is_success() => Outcome {
            delivery: request.delivery_id,
            status: Some(resp.status().as_u16()),
            latency_ms: started.elapsed().as_millis() as u64,
            result: Ok(()),
            permanent: false,
        },
        Ok(resp) => {
            let status = resp.status().as_u16();
            fail(format!("answered {status}"), Some(status), false)
        }
        Err(e) => {
            let refused = error_chain(&e).contains("refused:");
            let why = if e.is_timeout() {
                format!("no answer within {} ms", request.timeout_ms)
            } else {
                error_chain(&e)
            };
            fail(why, None, refused)
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The queued request of a delivery, found through the type's index.
pub async fn find_request(
    store: &dyn EventStore,
    tenant: &TenantId,
    automation: &str,
    delivery: Uuid,
) -> Result<Option<(u64, Job)>, StoreError> {
    let mut query = SearchQuery::new(tenant.clone());
    query.types = vec![
        format!("{DOMAIN}.{}", WebhookRequested::NAME),
        format!("{DOMAIN}.{}", EmailRequested::NAME),
    ];
    query.streams = vec![automation_stream(automation)];
    query.payload_equals = vec![(
        vec!["delivery_id".into()],
        serde_json::Value::String(delivery.to_string()),
    )];
    query.limit = 1;
    let page = store.search(&query).await?;
    Ok(page
        .events
        .into_iter()
        .next()
        .and_then(|e| Job::of(&e).map(|job| (e.position.get(), job))))
}

/// How many retries of a delivery were requested up to `upto`.
async fn retry_generation(
    store: &dyn EventStore,
    tenant: &TenantId,
    automation: &str,
    delivery: Uuid,
    upto: Position,
) -> Result<u32, StoreError> {
    let mut query = SearchQuery::new(tenant.clone());
    query.types = vec![format!("{DOMAIN}.{}", DeliveryRetryRequested::NAME)];
    query.streams = vec![automation_stream(automation)];
    query.payload_equals = vec![(
        vec!["delivery_id".into()],
        serde_json::Value::String(delivery.to_string()),
    )];
    query.limit = 1000;
    let page = store.search(&query).await?;
    Ok(page.events.iter().filter(|e| e.position <= upto).count() as u32)
}

async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
    }
}

/// The SMTP server email actions go through (`HERALD_SMTP_URL`), and the
/// default sender (`HERALD_SMTP_FROM`).
pub struct Mailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// `smtp://[user:password@]host[:port]` (plain SMTP; port 25 by
    /// default) and the default sender.
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if parsed.scheme() != "smtp" {
            return Err(format!(
                "{url:?}: the SMTP server is smtp://host[:port] (this build speaks plain SMTP)"
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} names no host"))?;
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
                .port(parsed.port().unwrap_or(25))
                .timeout(Some(Duration::from_secs(30)));
        if !parsed.username().is_empty() {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    parsed.username().to_owned(),
                    parsed.password().unwrap_or_default().to_owned(),
                ));
        }
        let from = from
            .parse()
            .map_err(|e| format!("HERALD_SMTP_FROM {from:?} is not an email address: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

/// One attempt of an email.
async fn send_email(mailer: Option<&Mailer>, request: &EmailRequested) -> Outcome {
    use lettre::AsyncTransport;
    let started = std::time::Instant::now();
    let fail = |why: String, status: Option<u16>, permanent: bool| Outcome {
        delivery: request.delivery_id,
        status,
        latency_ms: started.elapsed().as_millis() as u64,
        result: Err(why),
        permanent,
    };
    let Some(mailer) = mailer else {
        return fail(
            "no SMTP server is configured (HERALD_SMTP_URL)".into(),
            None,
            false,
        );
    };
    let from = match &request.from {
        Some(f) => match f.parse() {
            Ok(m) => m,
            Err(e) => return fail(format!("{f:?} is not an email address: {e}"), None, true),
        },
        None => mailer.from.clone(),
    };
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(request.subject.clone())
        .message_id(Some(format!("<{}@herald>", request.delivery_id)))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &request.to {
        match to.parse() {
            Ok(m) => builder = builder.to(m),
            Err(e) => return fail(format!("{to:?} is not an email address: {e}"), None, true),
        }
    }
    let message = match builder.body(request.body.clone()) {
        Ok(m) => m,
        Err(e) => return fail(format!("the message cannot be built: {e}"), None, true),
    };
    match mailer.transport.send(message).await {
        Ok(response) => Outcome {
            delivery: request.delivery_id,
            status: Some(u16::from(response.code())),
            latency_ms: started.elapsed().as_millis() as u64,
            result: Ok(()),
            permanent: false,
        },
        Err(e) => {
            let status = e.status().map(u16::from);
            // A permanent refusal (5xx) will not change by retrying.
            fail(error_chain(&e), status, e.is_permanent())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        let sig = signature(b"Jefe", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(sig.len(), 3 + 64);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = DispatcherConfig::default();
        for n in 1..20 {
            let d = backoff(&c, n);
            let step = c
                .first_backoff
                .saturating_mul(1 << (n - 1).min(30))
                .min(c.max_backoff);
            assert!(
                d >= step / 2 && d <= step,
                "retry {n}: {d:?} not within half of {step:?}"
            );
        }
    }

    #[test]
    fn endpoints_are_scheme_host_and_port() {
        assert_eq!(endpoint("http://a.example/x"), "http://a.example:80");
        assert_eq!(
            endpoint("https://a.example:8443/y?z"),
            "https://a.example:8443"
        );
    }
}
