//! The actor runtime's metrics, recorded through the `metrics` facade (the
//! binary installs the Prometheus exporter and describes each name). Labels
//! are low-cardinality: the domain, the reaction's name, an outcome — never
//! a stream, tenant or timer id.
//!
//! Each recording has one function here, so a name and its labels are
//! written once; the label values a series may take are listed
//! ([`COMMAND_OUTCOMES`], …) so the binary can create every series at 0.

/// Commands run, by `domain` and `outcome` (one of [`COMMAND_OUTCOMES`]).
pub const COMMANDS_TOTAL: &str = "herald_commands_total";
/// Command attempts decided again after another writer appended first, by
/// `domain`.
pub const COMMAND_CONFLICTS_TOTAL: &str = "herald_command_conflicts_total";
/// Aggregate actors live in this process, by `domain`.
pub const ACTORS_LIVE: &str = "herald_actors_live";
/// Aggregate actors stopped (idle, or past the group's cap), by `domain`.
pub const ACTORS_PASSIVATED_TOTAL: &str = "herald_actors_passivated_total";
/// Aggregate snapshots saved, by `domain`.
pub const SNAPSHOTS_SAVED_TOTAL: &str = "herald_snapshots_saved_total";
/// Snapshot boundaries this process reached after another process had
/// saved the snapshot there, by `domain`: no second write.
pub const SNAPSHOTS_ALREADY_SAVED_TOTAL: &str = "herald_snapshots_already_saved_total";
/// Events handled by reactions, by `reaction` and `outcome` (one of
/// [`REACTION_OUTCOMES`]).
pub const REACTIONS_TOTAL: &str = "herald_reactions_total";
/// Timer occurrences fired by this process, by `late`.
pub const TIMERS_FIRED_TOTAL: &str = "herald_timers_fired_total";
/// Countdowns expired by this process.
pub const TIMER_COUNTDOWNS_EXPIRED_TOTAL: &str = "herald_timers_countdowns_expired_total";
/// Active timers and countdowns the scheduler knows of.
pub const TIMERS_PENDING: &str = "herald_timers_pending";
/// Timer deliveries that ended, by `kind` ([`TIMER_DELIVERY_KINDS`]) and
/// `outcome` ([`TIMER_DELIVERY_OUTCOMES`]).
pub const TIMER_DELIVERIES_TOTAL: &str = "herald_timers_deliveries_total";
/// Timer delivery attempts that failed for the time being and are tried
/// again.
pub const TIMER_DELIVERY_RETRIES_TOTAL: &str = "herald_timers_delivery_retries_total";

/// The outcomes of [`COMMANDS_TOTAL`].
pub const COMMAND_OUTCOMES: &[&str] = &["done", "unchanged", "duplicate", "refused", "busy"];
/// The outcomes of [`REACTIONS_TOTAL`].
pub const REACTION_OUTCOMES: &[&str] = &["done", "retried", "dead_lettered"];
/// The kinds of [`TIMER_DELIVERIES_TOTAL`].
pub const TIMER_DELIVERY_KINDS: &[&str] = &["command", "event"];
/// The outcomes of [`TIMER_DELIVERIES_TOTAL`].
pub const TIMER_DELIVERY_OUTCOMES: &[&str] = &["delivered", "duplicate", "refused", "invalid"];

pub(crate) fn command(domain: &'static str, outcome: &'static str) {
    metrics::counter!(COMMANDS_TOTAL, "domain" => domain, "outcome" => outcome).increment(1);
}

pub(crate) fn command_conflict(domain: &'static str) {
    metrics::counter!(COMMAND_CONFLICTS_TOTAL, "domain" => domain).increment(1);
}

pub(crate) fn actor_started(domain: &'static str) {
    metrics::gauge!(ACTORS_LIVE, "domain" => domain).increment(1.0);
}

pub(crate) fn actor_stopped(domain: &'static str) {
    metrics::gauge!(ACTORS_LIVE, "domain" => domain).decrement(1.0);
    metrics::counter!(ACTORS_PASSIVATED_TOTAL, "domain" => domain).increment(1);
}

pub(crate) fn snapshot_saved(domain: &'static str) {
    metrics::counter!(SNAPSHOTS_SAVED_TOTAL, "domain" => domain).increment(1);
}

pub(crate) fn snapshot_already_saved(domain: &'static str) {
    metrics::counter!(SNAPSHOTS_ALREADY_SAVED_TOTAL, "domain" => domain).increment(1);
}

pub(crate) fn reaction(name: &'static str, outcome: &'static str) {
    metrics::counter!(REACTIONS_TOTAL, "reaction" => name, "outcome" => outcome).increment(1);
}

pub(crate) fn timer_fired(late: bool) {
    let late = if late { "true" } else { "false" };
    metrics::counter!(TIMERS_FIRED_TOTAL, "late" => late).increment(1);
}

pub(crate) fn countdown_expired() {
    metrics::counter!(TIMER_COUNTDOWNS_EXPIRED_TOTAL).increment(1);
}

pub(crate) fn timers_pending(n: usize) {
    metrics::gauge!(TIMERS_PENDING).set(n as f64);
}

pub(crate) fn timer_delivered(kind: &'static str, outcome: &'static str) {
    metrics::counter!(TIMER_DELIVERIES_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
}

pub(crate) fn timer_delivery_retried() {
    metrics::counter!(TIMER_DELIVERY_RETRIES_TOTAL).increment(1);
}
