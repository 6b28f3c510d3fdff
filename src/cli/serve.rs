//! `herald serve`: opens the store, serves the HTTP API, and on SIGTERM or
//! Ctrl-C stops taking connections, lets in-flight requests finish (their
//! appends commit), then drains the store's queue before exiting.

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use herald_events::EventRegistry;
use herald_store::StoreLocation;

use crate::api::{self, AppState, Limits};
use crate::config::{redact_url, FileConfig, LogArgs, ServeArgs, ServeConfig};
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

    let state = AppState {
        store: Arc::clone(&store),
        registry,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_events_per_append: config.max_events_per_append,
        },
        metrics,
    };
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(from_fn(api::record_metrics))
            .configure(api::routes)
    })
    .shutdown_timeout(config.shutdown_timeout.as_secs())
    .bind(config.listen)
    .with_context(|| format!("binding {}", config.listen))?;
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    tracing::info!(listen = %config.listen, "Herald is serving.");
    // actix stops on SIGTERM, SIGINT and SIGQUIT: it stops accepting, then
    // waits up to the shutdown timeout for in-flight requests.
    server.run().await.context("running the HTTP server")?;

    tracing::info!("HTTP server stopped; committing queued appends.");
    store.close().await;
    tracing::info!("Herald stopped.");
    Ok(())
}
