//! The store's metrics, recorded through the `metrics` facade (the binary
//! installs the Prometheus exporter). Names follow
//! `herald_store_<name>_<unit>`; labels are low-cardinality (backend, outcome).

use std::time::Duration;

/// Appends settled, by outcome (`written`, `duplicate`, or an error kind).
pub const APPENDS_TOTAL: &str = "herald_store_appends_total";
/// Events written to the log.
pub const EVENTS_WRITTEN_TOTAL: &str = "herald_store_events_written_total";
/// From an append joining the queue to its answer.
pub const APPEND_LATENCY_SECONDS: &str = "herald_store_append_latency_seconds";
/// Appends per group-commit batch.
pub const BATCH_APPENDS: &str = "herald_store_batch_appends";
/// Events per group-commit batch.
pub const BATCH_EVENTS: &str = "herald_store_batch_events";
/// Failures of the store itself (not refused appends), by kind.
pub const ERRORS_TOTAL: &str = "herald_store_errors_total";
/// Batches the Postgres writer committed, by how it planned them:
/// `remembered` (on its memory of the head and the streams' versions, one
/// statement) or `careful` (on facts read under the log's lock: the first
/// batch, streams it did not know, or memory that proved wrong).
pub const BATCHES_TOTAL: &str = "herald_store_batches_total";
/// The paths of [`BATCHES_TOTAL`].
pub const BATCH_PATHS: &[&str] = &["remembered", "careful"];
/// Batches the Postgres writer planned on memory that the database refused
/// because memory was wrong — another process moved the log's head, or a
/// stream held more events than remembered — and planned again carefully.
/// Several processes appending to one store show here.
pub const REPLANNED_TOTAL: &str = "herald_store_replanned_total";
/// Pages of the global log read, by where they came from: `memory` (the
/// tail this process committed or already read) or `database`. With
/// several processes on one store, every other process's commit costs
/// each process one `database` read, however many readers follow the log.
pub const LOG_READS_TOTAL: &str = "herald_store_log_reads_total";

/// Bucket bounds for [`APPEND_LATENCY_SECONDS`].
pub const APPEND_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Bucket bounds for the batch size histograms.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

pub(crate) fn append_settled(backend: &'static str, outcome: &'static str, latency: Duration) {
    metrics::counter!(APPENDS_TOTAL, "backend" => backend, "outcome" => outcome).increment(1);
    metrics::histogram!(APPEND_LATENCY_SECONDS, "backend" => backend).record(latency.as_secs_f64());
}

pub(crate) fn batch_committed(backend: &'static str, appends: usize, events: usize) {
    metrics::histogram!(BATCH_APPENDS, "backend" => backend).record(appends as f64);
    metrics::histogram!(BATCH_EVENTS, "backend" => backend).record(events as f64);
    metrics::counter!(EVENTS_WRITTEN_TOTAL, "backend" => backend).increment(events as u64);
}

pub(crate) fn store_error(backend: &'static str, kind: &'static str) {
    metrics::counter!(ERRORS_TOTAL, "backend" => backend, "kind" => kind).increment(1);
}

pub(crate) fn batch_planned(backend: &'static str, path: &'static str) {
    metrics::counter!(BATCHES_TOTAL, "backend" => backend, "path" => path).increment(1);
}

pub(crate) fn batch_replanned(backend: &'static str) {
    metrics::counter!(REPLANNED_TOTAL, "backend" => backend).increment(1);
}

pub(crate) fn log_read(backend: &'static str, source: &'static str) {
    metrics::counter!(LOG_READS_TOTAL, "backend" => backend, "source" => source).increment(1);
}
