//! `herald serve`: opens the store and the broker, runs the outbox relay
//! and the broker ingest, serves the HTTP API, and on SIGTERM or Ctrl-C
//! stops taking connections, lets in-flight requests finish (their appends
//! commit), stops the relay (the next one resumes from its checkpoint) and
//! the ingest (after the batch in hand; what it has not acknowledged is
//! delivered again), then drains the store's queue before exiting.

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use herald_brokers::memory::{MemoryBroker, MemoryConfig};
use herald_brokers::Broker;
use herald_events::EventRegistry;
use herald_store::StoreLocation;

use crate::api::{self, AppState, Limits};
use crate::auth::Authenticator;
use crate::config::{
    redact_url, BrokerLocation, BrokerSettings, FileConfig, LogArgs, ServeArgs, ServeConfig,
};
use crate::ingest::{Ingest, IngestConfig};
use crate::relay::{Relay, RelayConfig};
use crate::telemetry;

pub fn run(log: &LogArgs, args: ServeArgs) -> anyhow::Result<()> {
    let file = FileConfig::load_optional(args.store.config.as_deref())?;
    telemetry::init_logging(log, &file)?;
    let config = ServeConfig::resolve(&args, &file)?;
    let metrics = telemetry::install_metrics()?;
    actix_web::rt::System::new().block_on(serve(config, metrics))
}

async fn serve(
    config: ServeConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<()> {
    let registry = EventRegistry::builtin().context("loading the event schemas")?;
    match &config.store.location {
        StoreLocation::Embedded { data_dir } => {
            tracing::info!(data_dir = %data_dir.display(), "Opening the embedded store.")
        }
        StoreLocation::Postgres { url } => {
            tracing::info!(url = %redact_url(url), "Opening the Postgres store.")
        }
    }
    let store = herald_store::open(config.store.clone())
        .await
        .context("opening the event store")?;
    let head = store.head().await.context("reading the log head")?;
    tracing::info!(
        store = store.backend(),
        head = head.position.get(),
        "Event store ready."
    );

    // Before anything else starts: this refuses an unauthenticated
    // non-loopback listener.
    let auth = Authenticator::start(Arc::clone(&store), &config.auth, config.listen).await?;
    let broker = open_broker(&config.broker)
        .await
        .context("connecting to the broker")?;
    tracing::info!(broker = broker.backend(), "Broker ready.");
    let (stop_tasks, tasks_stop) = tokio::sync::watch::channel(false);
    // The domains' reactions join their consumer groups before the relay
    // publishes, so no event is published to nobody.
    let running = crate::domains::start(
        &config.actors,
        &store,
        &registry,
        &broker,
        tasks_stop.clone(),
    )
    .await;
    let relay = config.broker.relay.then(|| {
        Relay::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            RelayConfig::default(),
        )
        .spawn(tasks_stop.clone())
    });
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
        .spawn(tasks_stop.clone())
    });

    let read_side = start_read_models(&config, &store, &broker, tasks_stop.clone())?;

    let hub = crate::ws::Hub::start(Arc::clone(&store), registry.clone())
        .await
        .context("starting the subscription hub")?;
    let state = AppState {
        auth,
        hub,
        domains: running.domains.clone(),
        store: Arc::clone(&store),
        broker: Arc::clone(&broker),
        registry,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_events_per_append: config.max_events_per_append,
        },
        metrics,
        read_models: read_side.read_models,
        projections: read_side.projections,
        embedded_read_models: read_side.embedded_read_models,
        embedded_projections: read_side.embedded_projections,
    };
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(from_fn(api::text::refuse_unstorable_url))
            .wrap(from_fn(api::record_metrics))
            .configure(api::routes)
    })
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
    // actix stops on SIGTERM, SIGINT and SIGQUIT: it stops accepting, then
    // waits up to the shutdown timeout for in-flight requests.
    server.run().await.context("running the HTTP server")?;

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
    running.stop().await;
    broker.close().await;
    store.close().await;
    tracing::info!("Herald stopped.");
    Ok(())
}

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
        BrokerLocation::Kafka { bootstrap_servers } => {
            tracing::info!(bootstrap_servers = %bootstrap_servers, "Connecting to Kafka.");
            let config =
                herald_brokers::kafka::KafkaConfig::new(bootstrap_servers.clone(), settings.wire);
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

/// A pool of its own on the read models' database (the store's), so that
/// queries and projection batches never wait behind the store's writer.
fn read_model_pool(url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let config: tokio_postgres::Config = url.parse().context("parsing the Postgres URL")?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the read-model pool")
}

/// The runners of the read models and their query handles: on Postgres in
/// the store's database, on the embedded store in `read-models.db` beside
/// it.
#[derive(Default)]
struct ReadSide {
    read_models: Option<herald_projections::ReadModels>,
    projections: Option<herald_projections::ProjectionRunner>,
    embedded_read_models: Option<herald_projections::embedded::EmbeddedReadModels>,
    embedded_projections: Option<herald_projections::embedded::EmbeddedRunner>,
}

/// Starts the projections of every read model. Live events arrive through
/// the broker once the relay has published them; the store serves catch-up
/// and rebuilds.
fn start_read_models(
    config: &ServeConfig,
    store: &Arc<dyn herald_store::EventStore>,
    broker: &Arc<dyn Broker>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ReadSide> {
    use herald_projections::read_models;
    let topics: Vec<herald_brokers::Topic> = read_models::DOMAINS
        .iter()
        .map(|d| {
            let domain: herald_events::Domain =
                d.parse().expect("the read models' domains are valid");
            herald_brokers::Topic::for_domain(&domain)
        })
        .collect();
    let live = config.broker.relay.then_some((Arc::clone(broker), topics));
    let mut side = ReadSide::default();
    match &config.store.location {
        StoreLocation::Postgres { url } => {
            let mut runner = herald_projections::ProjectionRunner::new(
                read_model_pool(url)?,
                Arc::clone(store),
                read_models::all(),
            );
            if let Some((broker, topics)) = live {
                runner = runner.with_broker(broker, topics);
            }
            tracing::info!(projections = ?runner.names(), "Starting the projections into Postgres.");
            let running = runner.clone();
            tokio::spawn(async move {
                if let Err(e) = running.run(stop).await {
                    tracing::error!(error = %e, "A projection stopped.");
                }
            });
            side.read_models = Some(runner.read_models());
            side.projections = Some(runner);
        }
        StoreLocation::Embedded { data_dir } => {
            let path = data_dir.join("read-models.db");
            let mut runner = herald_projections::embedded::EmbeddedRunner::new(
                &path,
                Arc::clone(store),
                read_models::embedded::all(),
            );
            if let Some((broker, topics)) = live {
                runner = runner.with_broker(broker, topics);
            }
            tracing::info!(projections = ?runner.names(), path = %path.display(), "Starting the projections into SQLite.");
            let running = runner.clone();
            tokio::spawn(async move {
                if let Err(e) = running.run(stop).await {
                    tracing::error!(error = %e, "A projection stopped.");
                }
            });
            side.embedded_read_models = Some(runner.read_models());
            side.embedded_projections = Some(runner);
        }
    }
    Ok(side)
}
