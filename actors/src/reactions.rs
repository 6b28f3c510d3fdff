//! Reactions: a group's consumer of other domains' events that sends
//! commands in answer (sagas, process managers).
//!
//! Each reaction consumes through the [`Broker`] as its own consumer group
//! (`reaction.<name>`), one delivery at a time per partition, and
//! acknowledges a delivery only after its commands took effect. Delivery is
//! at least once; the effect is at most once: every command a reaction
//! sends carries a dedupe key made of the reaction, the triggering event's
//! id and a step name, so its events get ids derived from that key and a
//! repeat appends nothing — the dedupe state is the events themselves,
//! committed in the same append as the effect. Caused events carry the
//! trigger's correlation id and the trigger's id as causation.
//!
//! A reaction that fails transiently (store or actor unavailable) leaves the
//! delivery unacknowledged and retries it with a backoff; one that fails
//! for good (a malformed event) dead-letters the delivery with the reason,
//! so its partition moves on.
//!
//! Each reaction reports its progress as `reaction.<name>`: work waits
//! while it holds a delivery it has not settled, or cannot join its group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use herald_brokers::progress::Progress;
use herald_brokers::{Broker, ConsumerGroup, EventLoader, Topic};
use herald_events::{Backoff, Domain, EventEnvelope, Position};
use herald_store::EventStore;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::actor::{CommandMeta, Executed};
use crate::error::CommandError;
use crate::group::Domains;
use crate::telemetry;

/// A reaction to events of some domains.
#[async_trait]
pub trait Reaction: Send + Sync + 'static {
    /// Its name: its consumer group is `reaction.<name>`.
    fn name(&self) -> &'static str;
    /// The domains whose events it reads.
    fn domains(&self) -> &'static [&'static str];
    /// Handles one event (it sees every event of its domains; it ignores
    /// what it does not care about).
    async fn react(
        &self,
        event: &EventEnvelope,
        ctx: &ReactionContext<'_>,
    ) -> Result<(), ReactionError>;
}

/// What a reaction's own failure carries: any error (a `&str` converts).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a reaction did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactionError {
    /// A command or state query it sent failed: retried when the store or
    /// the runtime failed or others kept winning, dead-lettered otherwise.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// Try again later; the delivery stays unacknowledged.
    #[error("transient: {0}")]
    Transient(#[source] Cause),
    /// It can never succeed; the delivery is dead-lettered with the reason.
    #[error("permanent: {0}")]
    Permanent(#[source] Cause),
}

impl ReactionError {
    /// Whether the delivery is tried again (else it is dead-lettered).
    pub fn is_transient(&self) -> bool {
        match self {
            ReactionError::Command(e) => matches!(
                e,
                CommandError::Store(_)
                    | CommandError::Busy { .. }
                    | CommandError::Unavailable { .. }
                    | CommandError::Contended { .. }
            ),
            ReactionError::Transient(_) => true,
            ReactionError::Permanent(_) => false,
        }
    }

    /// The reason, as a dead letter records it.
    fn reason(&self) -> String {
        match self {
            ReactionError::Command(e) => e.to_string(),
            ReactionError::Transient(cause) | ReactionError::Permanent(cause) => cause.to_string(),
        }
    }
}

/// What a reaction may do while handling one event.
pub struct ReactionContext<'a> {
    reaction: &'static str,
    event: &'a EventEnvelope,
    domains: &'a Domains,
}

impl std::fmt::Debug for ReactionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactionContext")
            .field("reaction", &self.reaction)
            .field("event", &self.event.id)
            .finish()
    }
}

impl<'a> ReactionContext<'a> {
    pub fn new(reaction: &'static str, event: &'a EventEnvelope, domains: &'a Domains) -> Self {
        Self {
            reaction,
            event,
            domains,
        }
    }

    /// Sends `command` to the aggregate `domain/id` of the event's tenant.
    /// `step` names this command among the reaction's commands for the same
    /// event: the same step for the same event appends nothing twice.
    pub async fn send(
        &self,
        domain: &str,
        id: &str,
        command: &str,
        body: Value,
        step: &str,
    ) -> Result<Executed, CommandError> {
        let target = self
            .domains
            .get(domain)
            .ok_or_else(|| CommandError::UnknownDomain {
                domain: domain.to_owned(),
                by: format!("reaction {}", self.reaction),
            })?;
        let meta = CommandMeta {
            correlation_id: Some(self.event.correlation_id),
            causation_id: Some(self.event.id.as_uuid()),
            dedupe_key: Some(format!("{}/{}/{step}", self.reaction, self.event.id)),
            producer: Some(format!("reaction:{}", self.reaction)),
            idempotency: None,
            decided_by_owner: false,
        };
        target
            .execute_json(&self.event.tenant, id, command, body, meta)
            .await
    }

    /// The current state of `domain/id` of the event's tenant, if it has one.
    pub async fn state(
        &self,
        domain: &str,
        id: &str,
    ) -> Result<Option<(Value, u64)>, CommandError> {
        let target = self
            .domains
            .get(domain)
            .ok_or_else(|| CommandError::UnknownDomain {
                domain: domain.to_owned(),
                by: format!("reaction {}", self.reaction),
            })?;
        target.state_json(&self.event.tenant, id).await
    }
}

/// Loads claim-checked events from the store.
struct StoreLoader(Arc<dyn EventStore>);

#[async_trait]
impl EventLoader for StoreLoader {
    async fn load(&self, position: Position) -> Result<Option<EventEnvelope>, String> {
        let events = self
            .0
            .read_all(position, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(events.into_iter().next().filter(|e| e.position == position))
    }
}

/// A running reaction.
#[derive(Debug)]
pub struct ReactionHandle {
    pub task: tokio::task::JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl ReactionHandle {
    /// Waits until the reaction has joined its group (on RabbitMQ, events
    /// published before that reach nobody); false if it did not within
    /// `within`.
    pub async fn subscribed(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.subscribed.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The consumer group of the reaction named `name`: `reaction.<name>`.
pub fn consumer_group(name: &str) -> Result<ConsumerGroup, herald_brokers::BrokerError> {
    ConsumerGroup::new(format!("reaction.{name}"))
}

/// Runs one reaction until `shutdown` turns true, reporting its progress
/// to `progress`.
pub fn spawn_reaction(
    reaction: Arc<dyn Reaction>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn EventStore>,
    domains: Domains,
    progress: &Progress,
    mut shutdown: watch::Receiver<bool>,
) -> ReactionHandle {
    let (subscribed_tx, subscribed) = watch::channel(false);
    let tracker = progress.tracker(format!("reaction.{}", reaction.name()));
    let task = tokio::spawn(async move {
        let name = reaction.name();
        let group = match consumer_group(name) {
            Ok(group) => group,
            Err(e) => {
                tracing::error!(reaction = name, error = %e, "Reaction has an invalid name; not started.");
                return;
            }
        };
        let topics: Vec<Topic> = reaction
            .domains()
            .iter()
            .filter_map(|d| Domain::new(*d).ok().map(|d| Topic::for_domain(&d)))
            .collect();
        let loader = StoreLoader(store);
        let mut failures = 0u32;
        loop {
            let mut subscription = match broker.subscribe(&group, &topics).await {
                Ok(subscription) => subscription,
                Err(e) => {
                    tracing::warn!(reaction = name, error = %e, "Reaction cannot subscribe; retrying.");
                    tracker.waiting();
                    tracker.trouble(format_args!("cannot join its consumer group: {e}"));
                    if pause(&mut shutdown, backoff(&mut failures)).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(reaction = name, "Reaction subscribed.");
            tracker.idle();
            let _ = subscribed_tx.send(true);
            loop {
                let delivery = tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    delivery = subscription.next() => delivery,
                };
                let Some(delivery) = delivery else { break };
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(e) => {
                        tracing::warn!(reaction = name, error = %e, "Reaction subscription failed.");
                        break;
                    }
                };
                tracker.waiting();
                let event = match delivery.content.clone() {
                    Ok(payload) => payload.resolve(&loader).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let event = match event {
                    Ok(event) => event,
                    Err(why) => {
                        telemetry::reaction(name, "dead_lettered");
                        let _ = delivery.nack(format!("unreadable: {why}")).await;
                        tracker.progressed();
                        tracker.idle();
                        continue;
                    }
                };
                // Retry this delivery until it takes effect, fails for
                // good, or the process stops (it is then delivered again).
                loop {
                    let ctx = ReactionContext::new(name, &event, &domains);
                    let span = tracing::info_span!("reaction", reaction = name, event = %event.id, event_type = %event.event_type, stream = %event.stream);
                    match reaction.react(&event, &ctx).instrument(span).await {
                        Ok(()) => {
                            failures = 0;
                            telemetry::reaction(name, "done");
                            if let Err(e) = delivery.ack().await {
                                tracing::warn!(reaction = name, error = %e, "Reaction could not acknowledge; the event comes again.");
                            }
                            tracker.progressed();
                            tracker.idle();
                            break;
                        }
                        Err(e) if !e.is_transient() => {
                            let why = e.reason();
                            tracing::warn!(reaction = name, event = %event.id, reason = %why, "Reaction failed for good; dead-lettering.");
                            telemetry::reaction(name, "dead_lettered");
                            let _ = delivery.nack(why).await;
                            tracker.progressed();
                            tracker.idle();
                            break;
                        }
                        Err(e) => {
                            let why = e.reason();
                            tracing::warn!(reaction = name, event = %event.id, reason = %why, "Reaction failed; retrying.");
                            telemetry::reaction(name, "retried");
                            tracker.trouble(format_args!("retrying an event: {why}"));
                            if pause(&mut shutdown, backoff(&mut failures)).await {
                                return;
                            }
                        }
                    }
                }
            }
            if pause(&mut shutdown, backoff(&mut failures)).await {
                return;
            }
        }
    });
    ReactionHandle { task, subscribed }
}

/// Counts one more failure and answers its wait: 200 ms doubling up to 5 s.
fn backoff(failures: &mut u32) -> Duration {
    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    *failures = failures.saturating_add(1);
    BACKOFF.delay(*failures)
}

/// Waits `d`; true when the process is stopping.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
    }
}
