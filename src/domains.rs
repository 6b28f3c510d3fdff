//! Starts the domains of `herald serve`: the actor runtime, one actor group
//! per domain, the reactions (the outage monitor) and the timer scheduler,
//! and stops them in order at shutdown.

use std::sync::Arc;
use std::time::Duration;

use herald_actors::drafts::Draft;
use herald_actors::edges::Edge;
use herald_actors::outage::OutageMonitor;
use herald_actors::reactions::{spawn_reaction, Reaction};
use herald_actors::tickets::Ticket;
use herald_actors::timers::{Timer, TimerScheduler};
use herald_actors::{ActorRuntime, Aggregate, AggregateGroup, Domains};
use herald_brokers::progress::Progress;
use herald_brokers::{Broker, ConsumerGroup};
use herald_events::EventRegistry;
use herald_store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ActorSettings;

/// The running domains.
pub struct RunningDomains {
    pub domains: Domains,
    runtime: Arc<ActorRuntime>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningDomains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDomains")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// How long startup waits for the reactions to join their groups.
const SUBSCRIBE_PATIENCE: Duration = Duration::from_secs(30);

/// Starts every domain and waits (bounded) until its reactions listen, so
/// that events of the first commands reach them; its background tasks stop
/// when `stop` turns true, and the reactions report their progress to
/// `progress`. Must be called inside the actix system.
pub async fn start(
    settings: &ActorSettings,
    store: &Arc<dyn EventStore>,
    registry: &EventRegistry,
    broker: &Arc<dyn Broker>,
    progress: &Progress,
    stop: watch::Receiver<bool>,
) -> RunningDomains {
    let runtime = ActorRuntime::start(settings.threads);
    let tickets = group::<Ticket>(store, registry, &runtime, settings);
    let edges = group::<Edge>(store, registry, &runtime, settings);
    let drafts = group::<Draft>(store, registry, &runtime, settings);
    let timers = group::<Timer>(store, registry, &runtime, settings);
    // Every group a timer may deliver to is in `domains` before the
    // scheduler starts (it keeps a copy).
    let domains = Domains::default()
        .with(Arc::new(tickets))
        .with(Arc::new(edges))
        .with(Arc::new(drafts))
        .with(Arc::new(timers.clone()));
    let mut reactions: Vec<_> = reactions(settings)
        .into_iter()
        .map(|reaction| {
            spawn_reaction(
                reaction,
                Arc::clone(broker),
                Arc::clone(store),
                domains.clone(),
                progress,
                stop.clone(),
            )
        })
        .collect();
    for reaction in &mut reactions {
        if !reaction.subscribed(SUBSCRIBE_PATIENCE).await {
            tracing::warn!("A reaction has not joined its consumer group yet; it keeps trying.");
        }
    }
    let mut tasks: Vec<JoinHandle<()>> = reactions.into_iter().map(|r| r.task).collect();
    let scheduler =
        TimerScheduler::new(Arc::clone(store), timers, domains.clone(), registry.clone())
            .spawn(stop);
    tasks.push(scheduler.task);
    tracing::info!(domains = ?domains, threads = settings.threads, "Actor runtime started.");
    RunningDomains {
        domains,
        runtime,
        tasks,
    }
}

/// The reactions `herald serve` runs.
pub fn reactions(settings: &ActorSettings) -> Vec<Arc<dyn Reaction>> {
    vec![Arc::new(OutageMonitor {
        recheck: settings.outage_recheck,
    })]
}

/// The consumer groups of [`reactions`] (`reaction.<name>`).
pub fn reaction_groups(settings: &ActorSettings) -> Vec<ConsumerGroup> {
    reactions(settings)
        .iter()
        .filter_map(|r| herald_actors::reactions::consumer_group(r.name()).ok())
        .collect()
}

/// The actor group of one domain, with the process's settings.
fn group<A: Aggregate>(
    store: &Arc<dyn EventStore>,
    registry: &EventRegistry,
    runtime: &Arc<ActorRuntime>,
    settings: &ActorSettings,
) -> AggregateGroup<A> {
    AggregateGroup::new(
        Arc::clone(store),
        registry.clone(),
        Arc::clone(runtime),
        settings.group.clone(),
    )
}

impl RunningDomains {
    /// Waits for the background tasks (after the stop signal), then stops
    /// the actors.
    pub async fn stop(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.runtime.stop();
    }
}
