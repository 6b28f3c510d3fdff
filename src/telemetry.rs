//! Process-wide telemetry: structured logs through `tracing` (text or JSON)
//! and the Prometheus recorder behind `/metrics`.

use std::io::IsTerminal;

use anyhow::Context;
use herald_store::telemetry as store_metrics;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::api::HTTP_REQUEST_SECONDS;
use crate::config::{FileConfig, LogArgs, LogFormat};

/// Sets up logging from flags, then the file, then `info`.
pub fn init_logging(args: &LogArgs, file: &FileConfig) -> anyhow::Result<()> {
    let filter = args
        .log
        .clone()
        .or_else(|| file.log.clone())
        .unwrap_or_else(|| "info".to_owned());
    let filter =
        EnvFilter::try_new(&filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match args.log_format.or(file.log_format).unwrap_or_default() {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // `try_init` also forwards the `log` crate (which actix logs through).
    result.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Installs the Prometheus recorder with Herald's histogram buckets.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(store_metrics::APPEND_LATENCY_SECONDS.to_owned()),
            store_metrics::APPEND_LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_SECONDS.to_owned()),
            store_metrics::APPEND_LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Prefix("herald_store_batch_".to_owned()),
            store_metrics::BATCH_SIZE_BUCKETS,
        )?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Turns transparent huge pages off for this process (Linux only; elsewhere
/// nothing to do). mimalloc asks for huge pages for its arenas, and the
/// kernel then zeroes 2 MiB on the first touch of each: a thread taking
/// that fault stalls for it, and under load those stalls were the tail of
/// append and delivery latency (the fanout bench's p99 fell from about
/// 100 ms to 40 ms without them). A failure only costs that latency, so it
/// is ignored.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
