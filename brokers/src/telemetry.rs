//! The broker layer's metrics (through the `metrics` facade). Labels are the
//! backend and low-cardinality outcomes, never topics with ids in them.

/// Messages confirmed by the broker.
pub const PUBLISHED_TOTAL: &str = "herald_broker_published_total";
/// Publish calls that failed, by error kind.
pub const PUBLISH_ERRORS_TOTAL: &str = "herald_broker_publish_errors_total";
/// Deliveries settled, by outcome (`ack`, `nack`).
pub const SETTLED_TOTAL: &str = "herald_broker_settled_total";
/// Deliveries flagged as possibly delivered before.
pub const REDELIVERED_TOTAL: &str = "herald_broker_redelivered_total";
/// Reconnections after a lost connection.
pub const RECONNECTS_TOTAL: &str = "herald_broker_reconnects_total";

pub fn published(backend: &'static str, n: usize) {
    metrics::counter!(PUBLISHED_TOTAL, "backend" => backend).increment(n as u64);
}

pub fn publish_failed(backend: &'static str, kind: &'static str) {
    metrics::counter!(PUBLISH_ERRORS_TOTAL, "backend" => backend, "kind" => kind).increment(1);
}

pub fn settled(backend: &'static str, outcome: &'static str) {
    metrics::counter!(SETTLED_TOTAL, "backend" => backend, "outcome" => outcome).increment(1);
}

pub fn redelivered(backend: &'static str) {
    metrics::counter!(REDELIVERED_TOTAL, "backend" => backend).increment(1);
}

pub fn reconnected(backend: &'static str) {
    metrics::counter!(RECONNECTS_TOTAL, "backend" => backend).increment(1);
}
