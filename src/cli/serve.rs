//! `herald serve`: opens the store and the broker, runs the outbox relay
//! and the broker ingest, serves the HTTP API, and on SIGTERM or SIGINT
//! (Ctrl-C) closes every subscription at once with its resume cursors
//! (websocket 1001, SSE `closing`), stops taking connections, lets in-flight
//! requests finish (their appends commit), stops the relay (the next one
//! resumes from its checkpoint) and the ingest (after the batch in hand; what
//! it has not acknowledged is delivered again), then drains the store's
//! queue before exiting. SIGQUIT does the same but drops in-flight requests
//! (unanswered, so not acknowledged) instead of waiting for them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use herald_brokers::memory::{MemoryBroker, MemoryConfig};
use herald_brokers::Broker;
use herald_projections::ReadSide;
use herald_store::StoreLocation;
use tokio::sync::Notify;

use crate::api::{self, AppState, Limits};
use crate::auth::Authenticator;
use crate::config::{
    redact_url, BrokerLocation, BrokerSettings, FileConfig, LogArgs, ServeArgs, ServeConfig,
};
use crate::ingest::{Ingest, IngestConfig};
use crate::relay::{Relay, RelayConfig};
use crate::telemetry;

/// How long an orderly stop waits for the projections to finish their batch.
const PROJECTIONS_STOP: std::time::Duration = std::time::Duration::from_secs(5);
/// Most time a connection's first request head may take to arrive (408
/// past it, answered by actix-http with no body, and the connection
/// closed). The body has its own bound (`--body-timeout`).
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an idle keep-alive connection stays open.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
/// Most time a connection may go with no request in flight before it is
/// closed: idle for the keep-alive, then a head within the head timeout.
/// (actix-http closes a silent idle connection after KEEP_ALIVE itself, but
/// waits forever for the rest of a later request's head once it began.)
pub const BETWEEN_REQUESTS: std::time::Duration =
    std::time::Duration::from_secs(KEEP_ALIVE.as_secs() + HEAD_TIMEOUT.as_secs());

pub fn run(log: &LogArgs, args: ServeArgs) -> anyhow::Result<()> {
    let file = FileConfig::load_optional(args.store.config.as_deref())?;
    telemetry::init_logging(log, &file)?;
    let config = ServeConfig::resolve(&args, &file)?;
    let metrics = telemetry::install_metrics()?;
    crate::console::overview::mark_start();
    actix_web::rt::System::new().block_on(serve(
        config,
        metrics,
        Arc::new(crate::domains::builtin()),
        StopWhen::Signalled,
    ))
}

/// What stops a [`serve`].
pub enum StopWhen {
    /// SIGTERM, SIGINT (graceful) or SIGQUIT, as the binary stops.
    Signalled,
    /// This future's answer (a library caller's).
    Told(std::pin::Pin<Box<dyn std::future::Future<Output = Stop>>>),
}

impl std::fmt::Debug for StopWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopWhen::Signalled => "Signalled",
            StopWhen::Told(_) => "Told",
        })
    }
}

/// How a library caller stops a [`serve`]: graceful (in-flight requests
/// finish) or not.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// Named in the stop's log line (`SIGTERM`, …).
    pub signal: &'static str,
    /// Whether in-flight requests are waited for.
    pub graceful: bool,
}

/// `herald serve` with the domains of `domains`, until `stop` says so
/// (the binary's: a signal); then the orderly stop of the module's doc.
/// Must run inside an actix system (`actix_web::rt::System`).
pub async fn serve(
    config: ServeConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    domains: Arc<crate::domains::DomainList>,
    stop: StopWhen,
) -> anyhow::Result<()> {
    let registry = domains.registry().context("loading the event schemas")?;
    match &config.store.location {
        StoreLocation::Embedded { data_dir } => {
            tracing::info!(data_dir = %data_dir.display(), "Opening the embedded store.");
            // SQLite opens a file it may not write read-only, without a
            // word; every append would then be a 503.
            herald_store::embedded::check_writable(
                data_dir,
                &[
                    herald_store::embedded::FILE_NAME,
                    herald_projections::READ_MODELS_FILE,
                ],
            )?;
        }
        StoreLocation::Postgres { url } => {
            tracing::info!(url = %redact_url(url), "Opening the Postgres store.")
        }
    }
    let store = herald_store::open(config.store.clone())
        .await
        .context("opening the event store")?;
    // Before anything else starts: one process alone on the store with the
    // in-process broker, any number with a shared one.
    let _occupied = occupy(&store, &config).await?;
    // Before anything appends: personal fields are sealed from the first
    // event on.
    let privacy =
        herald_privacy::Privacy::open(Arc::clone(&store), registry.clone(), config.master.clone())
            .await
            .context("opening the personal data keys")?;
    if matches!(config.master, herald_privacy::MasterSource::Stored) {
        tracing::warn!("No HERALD_MASTER_KEY: personal data keys are wrapped by a master key kept in the store itself. Erasure works; but a copy of the database alone can then be read. Set HERALD_MASTER_KEY in production.");
    }
    let rewrap = Arc::clone(&privacy);
    tokio::spawn(async move {
        match rewrap.rewrap_all().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                keys = n,
                master = rewrap.master_id(),
                "Personal data keys re-wrapped under the current master key."
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Re-wrapping personal data keys failed; they still read with the previous master keys.")
            }
        }
    });
    let head = store.head().await.context("reading the log head")?;
    tracing::info!(
        store = store.backend(),
        head = head.position.get(),
        "Event store ready."
    );

    if let Some(key) = &config.bootstrap_admin_key {
        super::keys::bootstrap_admin_key(&*store, key).await?;
    }
    // Before anything else starts: this refuses an unauthenticated
    // non-loopback listener.
    let auth = Authenticator::start(Arc::clone(&store), &config.auth, config.listen).await?;
    let broker = open_broker(&config.broker)
        .await
        .context("connecting to the broker")?;
    crate::topics::prepare(
        &broker,
        &crate::topics::needed(&config.broker, &config.actors, &domains, &registry),
        config.broker.wire.partitions,
    )
    .await?;
    tracing::info!(broker = broker.backend(), "Broker ready.");
    let (stop_tasks, tasks_stop) = tokio::sync::watch::channel(false);
    // Every worker reports here; readiness and the stall gauges read it.
    let progress = herald_brokers::progress::Progress::default();
    progress.watch(tasks_stop.clone());
    crate::relay::init_metrics();
    // The domains' reactions join their consumer groups before the relay
    // publishes, so no event is published to nobody.
    // On a shared broker other processes append to the same aggregates:
    // actors read what they missed before deciding.
    let mut actors = config.actors.clone();
    actors.group.catch_up_before_deciding =
        !matches!(config.broker.location, BrokerLocation::Memory);
    let running = crate::domains::start_domains(
        &domains,
        &actors,
        &store,
        &registry,
        &broker,
        &progress,
        tasks_stop.clone(),
    )
    .await;
    // On a shared broker each aggregate is decided by the process that owns
    // its partition of the command group; alone, by this one.
    let (placement, placement_task) = if matches!(config.broker.location, BrokerLocation::Memory) {
        (crate::placement::Placement::alone(), None)
    } else {
        let (placement, task) = crate::placement::Placement::join(
            Arc::clone(&broker),
            config.broker.command_partitions,
            running.domains.clone(),
            api::commands::describe,
            tasks_stop.clone(),
        )
        .await
        .context("joining the command group")?;
        (placement, Some(task))
    };
    let relay = config.broker.relay.then(|| {
        Relay::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            RelayConfig::default(),
        )
        .with_progress(&progress)
        .spawn(tasks_stop.clone())
    });
    // Runtime event types: this process applies every registration made
    // through any process sharing the store.
    let schemas = Arc::new(
        crate::runtime_schemas::RuntimeSchemas::new(Arc::clone(&store), registry.clone())
            .with_broker(Arc::clone(&broker)),
    );
    let schemas_task = Arc::clone(&schemas)
        .start(tasks_stop.clone())
        .await
        .context("loading the tenants' schema registries")?;
    // Automations: one engine across the processes sharing the store (a
    // lease); the others stand by.
    let automations = Arc::new(
        crate::automations::Automations::new(Arc::clone(&store), Arc::clone(&domains))
            .with_privacy(Arc::clone(&privacy)),
    );
    let automations_task = herald_automations::engine::Engine::new(
        Arc::clone(&store),
        running.domains.clone(),
        automations.states(),
        registry.clone(),
        herald_automations::engine::EngineConfig::default(),
    )
    .with_privacy(Arc::clone(&privacy))
    .spawn(tasks_stop.clone());
    let mut dispatcher = herald_automations::webhooks::Dispatcher::new(
        Arc::clone(&store),
        config.webhook_allow.clone(),
        herald_automations::webhooks::DispatcherConfig::default(),
    );
    if let Some((url, from)) = &config.smtp {
        let mailer = herald_automations::webhooks::Mailer::new(url, from)
            .map_err(|e| anyhow::anyhow!("HERALD_SMTP_URL: {e}"))?;
        dispatcher = dispatcher.with_mailer(mailer);
    }
    let webhooks_task = dispatcher.spawn(tasks_stop.clone());
    let ingest = config.broker.ingest.enabled.then(|| {
        tracing::info!(topic = %config.broker.ingest.topic, "Starting the broker ingest.");
        Ingest::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            registry.clone(),
            IngestConfig {
                topic: config.broker.ingest.topic.clone(),
                max_body_bytes: config.max_body_bytes,
                ..IngestConfig::default()
            },
        )
        .with_progress(&progress)
        .with_runtime_schemas(Arc::clone(&schemas))
        .spawn(tasks_stop.clone())
    });

    let (read_side, projections_task) =
        start_read_models(&config, &domains, &store, &broker, tasks_stop.clone())?;
    telemetry::register_series(&telemetry::Running {
        store_backend: store.backend(),
        broker_backend: broker.backend(),
        domains: running.domains.names().collect(),
        reactions: domains
            .reactions(&config.actors)
            .iter()
            .map(|r| r.name())
            .collect(),
        projections: read_side.names(),
    });

    let hub = crate::ws::Hub::start(Arc::clone(&store), registry.clone())
        .await
        .context("starting the subscription hub")?;
    let subscriptions = hub.clone();
    let state = AppState {
        auth,
        hub,
        domains: running.domains.clone(),
        placement,
        store: Arc::clone(&store),
        broker: Arc::clone(&broker),
        registry,
        schemas,
        automations,
        privacy,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_events_per_append: config.max_events_per_append,
            body_timeout: config.body_timeout,
        },
        metrics,
        read_side: Some(read_side),
        countdown_images: api::countdowns::image_cache(config.countdown_frames),
        progress,
    };
    let connections = Arc::new(OpenConnections::default());
    let counted = Arc::clone(&connections);
    let per_client = api::connections::ClientConnections::new(config.max_connections_per_client);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            // Innermost: every JSON answer of a route, problems included,
            // has its personal fields revealed for its caller.
            .wrap(from_fn(api::personal::reveal_personal))
            .wrap(from_fn(api::text::refuse_unstorable_url))
            // Outside the URL check, inside the metrics (which count its 429s).
            .wrap(from_fn(api::connections::refuse_over_cap))
            .wrap(from_fn(api::record_metrics))
            .wrap(from_fn(api::connections::track_activity))
            // A body is held before anything can answer early (nothing
            // outside this answers: the request log only observes).
            .wrap(from_fn(api::body::hold_request_body))
            .wrap(from_fn(api::request_log::trace_requests))
            // The browser console's pages (its API is among the routes).
            .configure(crate::console::page_routes)
            .configure(api::routes_for(Arc::clone(&domains)))
    })
    .on_connect(move |io, extensions| {
        extensions.insert(counted.open());
        extensions.insert(api::body::UnreadBody::default());
        if let Some(activity) = api::connections::Activity::watch(io, BETWEEN_REQUESTS) {
            extensions.insert(activity);
        }
        let peer = io
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.peer_addr().ok())
            .map(|addr| addr.ip().to_canonical());
        if let Some(admission) = per_client.admit(peer) {
            extensions.insert(admission);
        }
    })
    // Slow clients: the first request's head within HEAD_TIMEOUT, a later
    // one within BETWEEN_REQUESTS (`api::connections`), a body within the
    // body timeout (`api::body`); silent idle connections closed after
    // KEEP_ALIVE.
    .client_request_timeout(HEAD_TIMEOUT)
    .keep_alive(KEEP_ALIVE)
    // A client that closes its side has gone: without this, actix-http
    // keeps writing an event stream to it (and counting its connection)
    // until a write fails, a heartbeat or two later.
    .h1_allow_half_closed(false)
    // The signals are ours (below): actix would wait the whole shutdown
    // timeout for subscriptions, which never end by themselves.
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout.as_secs())
    // Subscribers get many small frames: without this, Nagle's algorithm
    // holds a frame back until the previous one is acknowledged, which a
    // client's delayed ACK can stretch to 40 ms.
    .tcp_nodelay(true)
    .bind(config.listen)
    .with_context(|| format!("binding {}", config.listen))?;
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    tracing::info!(listen = %config.listen, "Herald is serving.");
    // Listening before the server starts: a signal that comes early still
    // stops Herald in order.
    let stop = match stop {
        StopWhen::Signalled => {
            let signals = StopSignals::listen().context("listening for stop signals")?;
            Box::pin(signals.into_stop())
        }
        StopWhen::Told(stop) => stop,
    };
    let mut server = server.run();
    let handle = server.handle();
    let stop = tokio::select! {
        ended = &mut server => {
            ended.context("running the HTTP server")?;
            None
        }
        stop = stop => Some(stop),
    };
    if let Some(stop) = stop {
        tracing::info!(
            signal = stop.signal,
            "Stopping: closing every subscription with its resume cursors."
        );
        let stopping = std::time::Instant::now();
        // First the subscriptions, so that the server's stop finds only
        // requests that end by themselves. Then actix stops accepting (new
        // connections are refused), closes idle keep-alive connections and
        // lets requests in flight finish, up to the shutdown timeout.
        subscriptions.shut_down();
        let _completion = handle.stop(stop.graceful);
        // actix looks for finished connections once a second; the last
        // connection closing is the same news without that wait. A
        // connection accepted in the instant before the listener closed is
        // refused, or answered 503 by the closed store: never acknowledged
        // and lost.
        tokio::select! {
            biased;
            ended = &mut server => ended.context("running the HTTP server")?,
            () = connections.all_closed() => {}
        }
        tracing::info!(
            elapsed_ms = stopping.elapsed().as_millis() as u64,
            "Every connection closed."
        );
    }

    tracing::info!(
        "HTTP server stopped; stopping the relay and the ingest and committing queued appends."
    );
    let _ = stop_tasks.send(true);
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    if let Some(ingest) = ingest {
        ingest.join().await;
    }
    let _ = schemas_task.await;
    let _ = automations_task.await;
    let _ = webhooks_task.await;
    // A batch in flight commits or rolls back; either way the runner stops
    // at its next check of the signal.
    if tokio::time::timeout(PROJECTIONS_STOP, projections_task)
        .await
        .is_err()
    {
        tracing::warn!(
            waited_ms = PROJECTIONS_STOP.as_millis() as u64,
            "The projections did not stop in time; their last batch is redone at the next start."
        );
    }
    // Commands decided for other processes are answered before the actors stop.
    if let Some(task) = placement_task {
        let _ = task.await;
    }
    running.stop().await;
    broker.close().await;
    store.close().await;
    tracing::info!("Herald stopped.");
    Ok(())
}

/// How long a start waits for a conflicting claim on the store to go.
const OCCUPY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Claims the store: alone with the in-process broker, whose consumers see
/// only what this process's relay publishes (a second process's reactions
/// and read models would miss events), shared with a broker every process
/// reaches.
async fn occupy(
    store: &Arc<dyn herald_store::EventStore>,
    config: &ServeConfig,
) -> anyhow::Result<herald_store::OccupancyGuard> {
    use herald_store::{Occupancy, StoreError};
    let (occupancy, broker) = match &config.broker.location {
        BrokerLocation::Memory => (Occupancy::Alone, "memory"),
        BrokerLocation::Amqp { .. } => (Occupancy::Shared, "amqp"),
        BrokerLocation::Kafka { .. } => (Occupancy::Shared, "kafka"),
    };
    let label = format!(
        "herald serve pid {} on {} broker {broker}",
        std::process::id(),
        config.listen
    );
    // A predecessor killed a moment ago may still hold its claim until the
    // database notices its connection is gone: a few seconds' patience.
    let deadline = std::time::Instant::now() + OCCUPY_PATIENCE;
    let claimed = loop {
        match store.occupy(occupancy, &label).await {
            Err(StoreError::Occupied { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            claimed => break claimed,
        }
    };
    match claimed {
        Ok(guard) => Ok(guard),
        Err(StoreError::Occupied { by }) if occupancy == Occupancy::Alone => anyhow::bail!(
            "another Herald process uses this store ({}). The in-process broker \
             (HERALD_BROKER=memory, the default) delivers events only inside its own \
             process, so a second process's reactions and read models would miss events. \
             To run several processes on one store, give every one the same shared broker: \
             HERALD_BROKER=amqp://… or HERALD_BROKER=kafka://… (README, \"Several processes\").",
            by.join("; ")
        ),
        Err(StoreError::Occupied { by }) => anyhow::bail!(
            "this store is in use by a Herald process on the in-process broker ({}), which \
             must be alone on its store. Stop it, or start it again with the shared broker \
             this process uses (HERALD_BROKER=amqp://… or kafka://…).",
            by.join("; ")
        ),
        Err(e) => Err(e).context("claiming the store"),
    }
}

/// Counts the HTTP connections open, so the stop knows at once when the
/// last one closed.
#[derive(Debug, Default)]
struct OpenConnections {
    open: AtomicUsize,
    closed: Notify,
}

impl OpenConnections {
    /// Counts a new connection until the returned guard drops with it.
    fn open(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(Arc::clone(self))
    }

    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the count is read, so a close in between
            // is not missed.
            closed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// Lives in a connection's data: dropped when actix drops the connection.
struct OpenConnection(Arc<OpenConnections>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// The signals that stop `herald serve`.
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening: from here on these signals no longer kill the
    /// process but wait for [`StopSignals::next`].
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
                quit: signal(SignalKind::quit())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The first of these signals, as a stop.
    async fn into_stop(mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => Stop { signal: "SIGTERM", graceful: true },
                _ = self.interrupt.recv() => Stop { signal: "SIGINT", graceful: true },
                _ = self.quit.recv() => Stop { signal: "SIGQUIT", graceful: false },
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop {
                signal: "Ctrl-C",
                graceful: true,
            }
        }
    }
}

/// librdkafka properties that only consumers take (a producer given one
/// warns at every start), from the `kafka://` URL's query.
const CONSUMER_PROPERTIES: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol",
    "group.instance.id",
    "group.remote.assignor",
    "partition.assignment.strategy",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "isolation.level",
    "max.partition.fetch.bytes",
    "enable.partition.eof",
    "check.crcs",
    "queued.min.messages",
    "queued.max.messages.kbytes",
];

/// Connects to the configured broker.
pub(crate) async fn open_broker(settings: &BrokerSettings) -> anyhow::Result<Arc<dyn Broker>> {
    match &settings.location {
        BrokerLocation::Memory => Ok(Arc::new(MemoryBroker::new(MemoryConfig {
            wire: settings.wire,
            ..MemoryConfig::default()
        }))),
        #[cfg(feature = "amqp")]
        BrokerLocation::Amqp { url } => {
            tracing::info!(url = %redact_url(url), "Connecting to RabbitMQ.");
            let config = herald_brokers::amqp::AmqpConfig::new(url.clone(), settings.wire);
            Ok(Arc::new(
                herald_brokers::amqp::AmqpBroker::connect(config).await?,
            ))
        }
        #[cfg(not(feature = "amqp"))]
        BrokerLocation::Amqp { .. } => {
            anyhow::bail!("this herald was built without RabbitMQ support (cargo feature `amqp`)")
        }
        #[cfg(feature = "kafka")]
        BrokerLocation::Kafka {
            bootstrap_servers,
            properties,
        } => {
            tracing::info!(bootstrap_servers = %bootstrap_servers, "Connecting to Kafka.");
            let mut config =
                herald_brokers::kafka::KafkaConfig::new(bootstrap_servers.clone(), settings.wire);
            for (key, value) in properties {
                let only_consumers =
                    CONSUMER_PROPERTIES.contains(&key.as_str()) || key.starts_with("fetch.");
                let target = if only_consumers {
                    &mut config.consumer_properties
                } else {
                    &mut config.properties
                };
                target.insert(key.clone(), value.clone());
            }
            // Missing topics are created with the configured partitions, and
            // too small ones refused (`crate::topics`).
            config.manage_topics = true;
            Ok(Arc::new(
                herald_brokers::kafka::KafkaBroker::connect(config).await?,
            ))
        }
        #[cfg(not(feature = "kafka"))]
        BrokerLocation::Kafka { .. } => {
            anyhow::bail!("this herald was built without Kafka support (cargo feature `kafka`)")
        }
    }
}

/// Starts the projections of every read model. Live events arrive through
/// the broker once the relay has published them; the store serves catch-up
/// and rebuilds. Answers the read side and the task running it (joined at
/// the orderly stop before the store closes, so a runner mid-batch never
/// outlives the runtime).
fn start_read_models(
    config: &ServeConfig,
    domains: &crate::domains::DomainList,
    store: &Arc<dyn herald_store::EventStore>,
    broker: &Arc<dyn Broker>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(ReadSide, tokio::task::JoinHandle<()>)> {
    let mut side = ReadSide::open(
        &config.store.location,
        Arc::clone(store),
        domains.read_model_set(),
        config.read_side,
    )
    .context("opening the read models")?;
    if config.broker.relay {
        let topics: Vec<herald_brokers::Topic> = domains
            .read_model_domains()
            .iter()
            .map(|d| {
                let domain: herald_events::Domain =
                    d.parse().expect("the read models' domains are valid");
                herald_brokers::Topic::for_domain(&domain)
            })
            .collect();
        side = side.with_broker(Arc::clone(broker), topics);
    }
    if matches!(config.broker.location, BrokerLocation::Memory) {
        // The in-process broker claims the store alone (see `occupy`): no
        // other process runs projections, so none needs a lease.
        side = side.with_config(herald_projections::RunnerConfig {
            alone: true,
            ..herald_projections::RunnerConfig::default()
        });
    }
    tracing::info!(
        projections = ?side.names(),
        database = side.database(),
        path = ?side.path(),
        "Starting the projections."
    );
    let running = side.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = running.run(stop).await {
            tracing::error!(error = %e, "A projection stopped.");
        }
    });
    Ok((side, task))
}
