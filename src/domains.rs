//! The domains `herald serve` runs — the one list ([`builtin`]) — and
//! their start: the actor runtime, one actor group per domain with any
//! worker it runs beside it (the timers' scheduler), the reactions (the
//! outage monitor), stopped in order at shutdown.
//!
//! A [`Domain`] is one domain's registration: its actor side (a
//! [`DomainSpec`]: events and schemas, aggregate, state-at) and the
//! binary's parts (its views with their OpenAPI paths, its read models).
//! The event registry, the actor groups, the state-at dispatch, the view
//! routes, the OpenAPI document and the projections all come from one
//! [`DomainList`]. Adding a domain is its events file and schemas, its
//! actors folder, its read-model file and its view file, and one line in
//! [`builtin`].

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use actix_web::web;
use herald_actors::domain::{DomainSpecs, GroupParts};
use herald_actors::edges::reactions::OutageMonitor;
use herald_actors::reactions::{spawn_reaction, Reaction};
use herald_actors::{ActorRuntime, DomainSpec, Domains, EventsDomain};
use herald_brokers::progress::Progress;
use herald_brokers::{Broker, ConsumerGroup};
use herald_events::{EventRegistry, RegistryError};
use herald_projections::embedded::SqliteProjection;
use herald_projections::Projection;
use herald_store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::views;
use crate::config::ActorSettings;

/// Every domain Herald ships, in order: the one list.
pub fn builtin() -> DomainList {
    use herald_projections::read_models::{drafts, edges, statistics, streams, tickets, timers};
    DomainList::new(vec![
        Domain::new(herald_actors::tickets::spec())
            .views(views::tickets::VIEWS)
            .read_model(tickets::TicketsProjection),
        Domain::new(herald_actors::edges::spec())
            .views(views::edges::VIEWS)
            .read_model(edges::EdgesProjection)
            .reaction(|settings| {
                Arc::new(OutageMonitor {
                    recheck: settings.outage_recheck,
                })
            }),
        Domain::new(herald_actors::drafts::spec())
            .views(views::drafts::VIEWS)
            .read_model(drafts::DraftsProjection),
        Domain::new(herald_actors::timers::spec())
            .views(views::timers::VIEWS)
            .read_model(timers::TimersProjection),
        Domain::new(EventsDomain {
            name: herald_events::statistics::DOMAIN,
            events: herald_events::statistics::EVENT_TYPES,
        })
        .views(views::statistics::VIEWS)
        .read_model(statistics::StatisticsProjection)
        // The streams of every domain, built-in or registered at run time:
        // on this line for now, until it gets a domain line of its own.
        .views(views::streams::VIEWS)
        .read_model(streams::StreamsProjection),
        // The schema registry's own events (runtime types register there).
        Domain::new(herald_actors::registry::RegistryDomain),
        // The automations' definitions and marks (their engine runs beside
        // the domains: `crate::automations`).
        Domain::new(EventsDomain {
            name: herald_events::automations::DOMAIN,
            events: herald_events::automations::EVENT_TYPES,
        }),
        // Erasures of personal data (`crate::privacy` appends them).
        Domain::new(EventsDomain {
            name: herald_events::subjects::DOMAIN,
            events: herald_events::subjects::EVENT_TYPES,
        }),
    ])
}

/// The built-in list, made once (the default routes and document use it).
pub fn shared_builtin() -> Arc<DomainList> {
    static BUILTIN: LazyLock<Arc<DomainList>> = LazyLock::new(|| Arc::new(builtin()));
    Arc::clone(&BUILTIN)
}

/// A domain's views: the routes of its `/v1/views/...`, registered inside
/// the `/v1/views` scope (so `/tickets/{id}` serves `/v1/views/tickets/{id}`),
/// and their OpenAPI paths under their full path (which also say which routes
/// there are).
#[derive(Debug, Clone, Copy)]
pub struct Views {
    pub routes: fn(&mut web::ServiceConfig),
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

/// A read model that serves both databases: its projection into Postgres
/// and into SQLite beside the embedded store.
pub trait ReadModel: Projection + SqliteProjection {}

impl<T: Projection + SqliteProjection> ReadModel for T {}

/// One domain's registration.
#[derive(Clone)]
pub struct Domain {
    pub spec: Arc<dyn DomainSpec>,
    /// Its views, in the order their routes are registered.
    pub views: Vec<Views>,
    /// Its read models, for each database.
    pub read_models: herald_projections::ReadModelSet,
    /// The reactions that follow this domain's events, made with the
    /// process's settings.
    pub reactions: Vec<ReactionFactory>,
}

/// Makes a reaction with the process's actor settings.
pub type ReactionFactory = fn(&ActorSettings) -> Arc<dyn Reaction>;

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("name", &self.spec.name())
            .field("views", &self.views.len())
            .field("read_models", &self.read_models)
            .field("reactions", &self.reactions.len())
            .finish()
    }
}

impl Domain {
    /// A domain of this actor-side registration, with no views or read
    /// models yet.
    pub fn new(spec: impl DomainSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            views: Vec::new(),
            read_models: herald_projections::ReadModelSet::default(),
            reactions: Vec::new(),
        }
    }

    /// Adds a reaction to this domain's events.
    pub fn reaction(mut self, reaction: ReactionFactory) -> Self {
        self.reactions.push(reaction);
        self
    }

    /// Adds views (routes and their OpenAPI paths); a domain may have
    /// several.
    pub fn views(mut self, views: Views) -> Self {
        self.views.push(views);
        self
    }

    /// Adds a read model served on both databases.
    pub fn read_model<M: ReadModel>(mut self, model: M) -> Self {
        self.read_models = self.read_models.with(model);
        self
    }

    /// Adds a read model served on the embedded store's SQLite only.
    pub fn embedded_read_model(mut self, model: impl SqliteProjection) -> Self {
        self.read_models.sqlite.push(Arc::new(model));
        self
    }

    pub fn name(&self) -> &'static str {
        self.spec.name()
    }
}

/// The domains a Herald runs, in order, with what each part of the process
/// derives from them.
pub struct DomainList {
    domains: Vec<Domain>,
    specs: DomainSpecs,
    routes: OnceLock<Vec<(&'static str, &'static str)>>,
    document: OnceLock<Result<String, String>>,
}

impl std::fmt::Debug for DomainList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.specs.names()).finish()
    }
}

impl DomainList {
    pub fn new(domains: Vec<Domain>) -> Self {
        let specs = domains.iter().map(|d| Arc::clone(&d.spec)).collect();
        Self {
            domains,
            specs,
            routes: OnceLock::new(),
            document: OnceLock::new(),
        }
    }

    /// Adds one more domain (the built-in list plus one's own).
    pub fn with(self, domain: Domain) -> Self {
        let mut domains = self.domains;
        domains.push(domain);
        Self::new(domains)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.domains.iter()
    }

    /// The actor side of every domain.
    pub fn specs(&self) -> &DomainSpecs {
        &self.specs
    }

    /// The event registry of these domains.
    pub fn registry(&self) -> Result<EventRegistry, RegistryError> {
        self.specs.registry()
    }

    /// `(domain, commands)` of the domains that take commands.
    pub fn commands(&self) -> Vec<(&'static str, &'static [&'static str])> {
        self.specs
            .with_aggregates()
            .map(|s| (s.name(), s.commands()))
            .collect()
    }

    /// The domains with aggregates, for messages.
    pub fn aggregate_names(&self) -> String {
        self.specs
            .with_aggregates()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every Postgres projection of the read models.
    pub fn read_models(&self) -> Vec<Arc<dyn Projection>> {
        self.domains
            .iter()
            .flat_map(|d| d.read_models.postgres.iter().cloned())
            .collect()
    }

    /// Every SQLite projection of the read models.
    pub fn embedded_read_models(&self) -> Vec<Arc<dyn SqliteProjection>> {
        self.domains
            .iter()
            .flat_map(|d| d.read_models.sqlite.iter().cloned())
            .collect()
    }

    /// Every domain's reactions, made with `settings`.
    pub fn reactions(&self, settings: &ActorSettings) -> Vec<Arc<dyn Reaction>> {
        self.domains
            .iter()
            .flat_map(|d| d.reactions.iter().map(|make| make(settings)))
            .collect()
    }

    /// The consumer groups of [`reactions`](Self::reactions)
    /// (`reaction.<name>`).
    pub fn reaction_groups(&self, settings: &ActorSettings) -> Vec<ConsumerGroup> {
        self.reactions(settings)
            .iter()
            .filter_map(|r| herald_actors::reactions::consumer_group(r.name()).ok())
            .collect()
    }

    /// Every read model, for both databases: what a
    /// [`ReadSide`](herald_projections::ReadSide) may run.
    pub fn read_model_set(&self) -> herald_projections::ReadModelSet {
        herald_projections::ReadModelSet {
            postgres: self.read_models(),
            sqlite: self.embedded_read_models(),
        }
    }

    /// The domains whose events the read models read: the broker topics a
    /// live runner follows.
    pub fn read_model_domains(&self) -> Vec<&'static str> {
        self.domains
            .iter()
            .filter(|d| !d.read_models.postgres.is_empty() || !d.read_models.sqlite.is_empty())
            .map(Domain::name)
            .collect()
    }

    /// Every domain's views.
    pub fn views(&self) -> impl Iterator<Item = &Views> {
        self.domains.iter().flat_map(|d| d.views.iter())
    }

    /// Every (method, path template) the HTTP API serves with these
    /// domains, in the order `api::routes_for` registers them.
    pub fn routes(&self) -> &[(&'static str, &'static str)] {
        self.routes.get_or_init(|| crate::api::route_list(self))
    }

    /// The OpenAPI document of the HTTP API with these domains, as JSON.
    pub fn document(&self) -> &Result<String, String> {
        self.document
            .get_or_init(|| crate::api::openapi::document(self))
    }
}

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

/// Starts the built-in domains ([`start_domains`] with [`builtin`]).
pub async fn start(
    settings: &ActorSettings,
    store: &Arc<dyn EventStore>,
    registry: &EventRegistry,
    broker: &Arc<dyn Broker>,
    progress: &Progress,
    stop: watch::Receiver<bool>,
) -> RunningDomains {
    start_domains(
        &shared_builtin(),
        settings,
        store,
        registry,
        broker,
        progress,
        stop,
    )
    .await
}

/// Starts every domain of `list` and waits (bounded) until the reactions
/// listen, so that events of the first commands reach them; background
/// tasks stop when `stop` turns true, and the reactions report their
/// progress to `progress`. Must be called inside the actix system.
pub async fn start_domains(
    list: &DomainList,
    settings: &ActorSettings,
    store: &Arc<dyn EventStore>,
    registry: &EventRegistry,
    broker: &Arc<dyn Broker>,
    progress: &Progress,
    stop: watch::Receiver<bool>,
) -> RunningDomains {
    let runtime = ActorRuntime::start(settings.threads);
    let started = list.specs().start(&GroupParts {
        store,
        registry,
        runtime: &runtime,
        config: &settings.group,
    });
    let domains = started.domains;
    let mut reactions: Vec<_> = list
        .reactions(settings)
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
    // The domains' workers (the timers' scheduler) last, as before: every
    // group they deliver to exists.
    tasks.extend(
        started
            .workers
            .into_iter()
            .map(|worker| worker(domains.clone(), stop.clone())),
    );
    tracing::info!(domains = ?domains, threads = settings.threads, "Actor runtime started.");
    RunningDomains {
        domains,
        runtime,
        tasks,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The crates' own lists (used by their tests and benches) name what
    /// the one domain list registers.
    #[test]
    fn the_crates_lists_agree_with_the_domain_list() {
        let list = builtin();
        let names = |v: Vec<&'static str>| {
            let mut v = v;
            v.sort_unstable();
            v
        };
        assert_eq!(
            names(list.read_models().iter().map(|p| p.name()).collect()),
            names(
                herald_projections::read_models::all()
                    .iter()
                    .map(|p| p.name())
                    .collect()
            )
        );
        assert_eq!(
            names(
                list.embedded_read_models()
                    .iter()
                    .map(|p| p.name())
                    .collect()
            ),
            names(
                herald_projections::read_models::all_embedded()
                    .iter()
                    .map(|p| p.name())
                    .collect()
            )
        );
        let types = |r: EventRegistry| {
            let mut t: Vec<String> = r.types().map(|(t, _)| t.to_string()).collect();
            t.sort_unstable();
            t
        };
        assert_eq!(
            types(list.registry().expect("the list's registry")),
            types(EventRegistry::builtin().expect("the built-in registry"))
        );
    }
}
