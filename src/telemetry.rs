//! Process-wide telemetry: structured logs through `tracing` (text or JSON)
//! and the Prometheus recorder behind `/metrics`.
//!
//! Every metric Herald exports is listed once in [`METRICS`] (name, type,
//! labels, meaning; the README's metrics table says the same): the recorder
//! gets each one's HELP text at install, and [`register_series`] creates the
//! counters whose labels are known at start at 0, so that a fresh process
//! exports them before anything happened. Process metrics (memory, CPU,
//! file descriptors, start time) are read from `/proc` at each scrape
//! ([`process_metrics`]).

use std::io::IsTerminal;

use anyhow::Context;
use herald_actors::telemetry as actor_metrics;
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry()
        .with(filter)
        // The console's overview shows the last warnings and errors.
        .with(crate::console::recent_errors::RecentErrors);
    let result = match args.log_format.or(file.log_format).unwrap_or_default() {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Installs the Prometheus recorder with Herald's histogram buckets, and
/// describes every metric of [`METRICS`] to it.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
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
        .context("installing the metrics recorder")?;
    describe_metrics();
    Ok(handle)
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

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: what the README's metrics table lists.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: MetricType,
    /// Its labels, comma-separated (empty for none).
    pub labels: &'static str,
    /// Its HELP text.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricType,
    labels: &'static str,
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        labels,
        help,
    }
}

use MetricType::{Counter, Gauge, Histogram};

/// Connected subscribers (open websockets and SSE streams), by `kind`.
pub const SUBSCRIBERS: &str = "herald_subscribers";
/// Always 1; its labels name the build.
pub const BUILD_INFO: &str = "herald_build_info";

/// Every metric family Herald records through the recorder.
pub const METRICS: &[MetricDoc] = &[
    metric(store_metrics::APPENDS_TOTAL, Counter, "backend, outcome", "Appends settled by the event store, by outcome: written, duplicate (an identical earlier append), or the error kind of a refused or failed one."),
    metric(store_metrics::EVENTS_WRITTEN_TOTAL, Counter, "backend", "Events written to the log."),
    metric(store_metrics::APPEND_LATENCY_SECONDS, Histogram, "backend", "Seconds from an append joining the group-commit queue to its answer (after commit)."),
    metric(store_metrics::BATCH_APPENDS, Histogram, "backend", "Appends per group-commit batch."),
    metric(store_metrics::BATCH_EVENTS, Histogram, "backend", "Events per group-commit batch."),
    metric(store_metrics::ERRORS_TOTAL, Counter, "backend, kind", "Failures of the store itself (not refused appends), by kind."),
    metric(store_metrics::BATCHES_TOTAL, Counter, "backend, path", "Batches the Postgres writer committed, by how it planned them: remembered (on its memory of the log's head and the streams' versions, one statement) or careful (on facts read under the log's lock)."),
    metric(store_metrics::REPLANNED_TOTAL, Counter, "backend", "Batches the Postgres writer planned on memory that the database refused because memory was wrong (another process moved the log's head, or a stream held more events than remembered), planned again carefully."),
    metric(store_metrics::LOG_READS_TOTAL, Counter, "backend, source", "Pages of the global log read by this process's followers of the log (subscriptions, projections, relay, timer scheduler), by source: memory (the tail this process committed or already read) or database."),
    metric(crate::api::HTTP_REQUESTS_TOTAL, Counter, "method, route, status", "HTTP requests answered, by method, route pattern and status."),
    metric(HTTP_REQUEST_SECONDS, Histogram, "method, route", "Seconds to answer an HTTP request, by method and route pattern."),
    metric(crate::relay::PUBLISHED_TOTAL, Counter, "", "Events published to the broker by this process's relay while active."),
    metric(crate::relay::REPUBLISHED_TOTAL, Counter, "cause", "Events published again (possible duplicates downstream), by cause: retry or takeover."),
    metric(crate::relay::PUBLISH_FAILURES_TOTAL, Counter, "kind", "Failed publish attempts of the relay, by broker error kind."),
    metric(crate::relay::ACTIVE, Gauge, "", "1 while this process's relay is the active one, else 0."),
    metric(crate::relay::CHECKPOINT_POSITION, Gauge, "", "The last log position this process's relay published and checkpointed."),
    metric(herald_automations::engine::ENGINE_ACTIVE, Gauge, "", "1 while this process's automations engine is the active one (one process at a time), else 0."),
    metric(herald_automations::engine::ENGINE_POSITION, Gauge, "", "The last log position the active automations engine handled."),
    metric(herald_automations::engine::MATCHED_TOTAL, Counter, "automation", "Triggers of an automation that matched (absences: waits that ended without the awaited event), all tenants; published by the active engine as it saves its checkpoint."),
    metric(herald_automations::engine::ACTED_TOTAL, Counter, "automation", "Triggers of an automation whose condition held and whose actions ran."),
    metric(herald_automations::engine::FAILED_TOTAL, Counter, "automation", "Actions of an automation that failed for good (each an automations.action_failed event)."),
    metric(herald_privacy::FIELDS_SEALED_TOTAL, Counter, "", "Personal values sealed (encrypted under their subject's key) on append by this process."),
    metric(herald_privacy::UNATTRIBUTED_TOTAL, Counter, "", "Personal fields stored as they were because their event names no subject (a note without an author)."),
    metric(herald_privacy::SUBJECTS_FORGOTTEN_TOTAL, Counter, "", "Subjects forgotten (their keys destroyed) through this process."),
    metric(herald_automations::webhooks::DELIVERIES_TOTAL, Counter, "automation, outcome", "Webhook attempts by outcome: delivered, retried, dead_lettered."),
    metric(herald_brokers::progress::STALLED, Gauge, "component", "1 while a worker (relay, ingest, reaction) has made no progress for 5 s while work waits, else 0."),
    metric(herald_brokers::progress::LAST_PROGRESS_SECONDS, Gauge, "component", "Unix time in seconds of a worker's last progress (0 before the first); alert on time() minus it."),
    metric(herald_brokers::telemetry::PUBLISHED_TOTAL, Counter, "backend", "Messages the broker confirmed."),
    metric(herald_brokers::telemetry::PUBLISH_ERRORS_TOTAL, Counter, "backend, kind", "Publish calls that failed, by broker error kind."),
    metric(herald_brokers::telemetry::SETTLED_TOTAL, Counter, "backend, outcome", "Deliveries settled by consumers, by outcome: ack or nack."),
    metric(herald_brokers::telemetry::REDELIVERED_TOTAL, Counter, "backend", "Deliveries the broker flagged as possibly delivered before."),
    metric(herald_brokers::telemetry::RECONNECTS_TOTAL, Counter, "backend", "Reconnections to the broker after a lost connection."),
    metric(crate::ingest::APPENDED_TOTAL, Counter, "", "Events appended from the ingest topic (repeats not counted)."),
    metric(crate::ingest::DUPLICATES_TOTAL, Counter, "", "Ingest messages that repeated an event already stored: acknowledged, nothing appended."),
    metric(crate::ingest::DEAD_LETTERED_TOTAL, Counter, "reason", "Ingest messages moved to the dead letters, by reason (a problem type slug)."),
    metric(crate::ingest::RETRIES_TOTAL, Counter, "kind", "Ingest appends retried after the store failed, by store error kind."),
    metric(actor_metrics::COMMANDS_TOTAL, Counter, "domain, outcome", "Commands run, by domain and outcome: done, unchanged, duplicate (a repeat answered without appending), refused or busy."),
    metric(actor_metrics::COMMAND_CONFLICTS_TOTAL, Counter, "domain", "Command attempts decided again because another writer appended to the stream first."),
    metric(crate::placement::ROUTES_TOTAL, Counter, "domain, route", "Commands by where they were decided: owner (here, which owns the aggregate's partition), forwarded (sent to the owning process), for_another (decided here for another process), fallback (could not be sent; decided here)."),
    metric(crate::placement::FORWARD_REQUESTS_TOTAL, Counter, "", "Requests this process sent to aggregates' owners: batches of forwarded commands (commands per request = forwarded routes ÷ this)."),
    metric(actor_metrics::ACTORS_LIVE, Gauge, "domain", "Aggregate actors live in this process."),
    metric(actor_metrics::ACTORS_PASSIVATED_TOTAL, Counter, "domain", "Aggregate actors stopped (idle, or past the group's cap)."),
    metric(actor_metrics::SNAPSHOTS_SAVED_TOTAL, Counter, "domain", "Aggregate snapshots saved."),
    metric(actor_metrics::SNAPSHOTS_ALREADY_SAVED_TOTAL, Counter, "domain", "Snapshot boundaries reached after another process had saved the snapshot there (nothing written)."),
    metric(actor_metrics::REACTIONS_TOTAL, Counter, "reaction, outcome", "Events handled by reactions, by outcome: done, retried or dead_lettered."),
    metric(actor_metrics::TIMERS_FIRED_TOTAL, Counter, "late", "Timer occurrences fired by this process, by whether they fired late."),
    metric(actor_metrics::TIMER_COUNTDOWNS_EXPIRED_TOTAL, Counter, "", "Countdowns expired by this process."),
    metric(actor_metrics::TIMERS_PENDING, Gauge, "", "Active timers and countdowns the scheduler knows of."),
    metric(actor_metrics::TIMER_DELIVERIES_TOTAL, Counter, "kind, outcome", "Timer deliveries that ended, by kind (command or event) and outcome: delivered, duplicate, refused or invalid."),
    metric(actor_metrics::TIMER_DELIVERY_RETRIES_TOTAL, Counter, "", "Timer delivery attempts that failed for the time being and are tried again."),
    metric(crate::api::countdowns::IMAGES_TOTAL, Counter, "answer", "Countdown images answered, by answer: running, expired or not_modified (a 304 revalidation)."),
    metric(crate::api::countdowns::RENDERS_TOTAL, Counter, "", "Countdown GIFs rendered (once per countdown, style and second; the other requests share them)."),
    metric(crate::api::countdowns::VIEWS_UNRECORDED_TOTAL, Counter, "", "Countdown image fetches whose view could not be recorded (the image was served all the same)."),
    metric(herald_projections::telemetry::POSITION, Gauge, "projection", "The last log position the projection's serving generation applied."),
    metric(herald_projections::telemetry::LAG_EVENTS, Gauge, "projection", "Events committed to the log and not yet projected."),
    metric(herald_projections::telemetry::LAST_PROGRESS_SECONDS, Gauge, "projection", "Unix time in seconds of the projection's last applied batch; alert on time() minus it while lag is above 0."),
    metric(herald_projections::telemetry::PARKED_TOTAL, Counter, "projection", "Events the projection could not apply and parked."),
    metric(herald_projections::telemetry::SWITCHES_TOTAL, Counter, "projection", "Rebuilt generations that took over serving."),
    metric(herald_projections::telemetry::RUNNING, Gauge, "projection", "1 in the one process that runs the projection, 0 in the processes standing by for it."),
    metric(SUBSCRIBERS, Gauge, "kind", "Connected subscribers: open websockets (kind websocket) and SSE streams (kind sse)."),
    metric(BUILD_INFO, Gauge, "version, brokers", "Always 1; version is Herald's, brokers the broker backends built in."),
];

/// Process metrics, read from `/proc` at each scrape (Linux only).
pub const PROCESS_METRICS: &[MetricDoc] = &[
    metric(
        "process_resident_memory_bytes",
        Gauge,
        "",
        "Resident memory size in bytes.",
    ),
    metric(
        "process_virtual_memory_bytes",
        Gauge,
        "",
        "Virtual memory size in bytes.",
    ),
    metric(
        "process_cpu_seconds_total",
        Counter,
        "",
        "User and system CPU time spent, in seconds.",
    ),
    metric("process_open_fds", Gauge, "", "Open file descriptors."),
    metric(
        "process_max_fds",
        Gauge,
        "",
        "The limit on open file descriptors.",
    ),
    metric(
        "process_start_time_seconds",
        Gauge,
        "",
        "Start time of the process, in Unix seconds.",
    ),
];

fn describe_metrics() {
    for m in METRICS {
        match m.kind {
            Counter => metrics::describe_counter!(m.name, m.help),
            Gauge => metrics::describe_gauge!(m.name, m.help),
            Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The broker backends built into this binary.
fn brokers_built_in() -> &'static str {
    match (cfg!(feature = "amqp"), cfg!(feature = "kafka")) {
        (true, true) => "amqp,kafka,memory",
        (true, false) => "amqp,memory",
        (false, true) => "kafka,memory",
        (false, false) => "memory",
    }
}

/// What [`register_series`] needs to know of the running process.
#[derive(Debug, Clone, Default)]
pub struct Running<'a> {
    pub store_backend: &'a str,
    pub broker_backend: &'a str,
    pub domains: Vec<&'static str>,
    pub reactions: Vec<&'static str>,
    pub projections: Vec<&'static str>,
}

/// Creates the build info and every series whose labels are known at
/// start, at 0: a fresh process exports its counters before anything
/// happened, so a rate over its first minutes is right. (Series labelled by
/// what requests carry, such as the HTTP route and status, start with
/// their first request.)
pub fn register_series(running: &Running<'_>) {
    use metrics::{counter, gauge};
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "brokers" => brokers_built_in())
        .set(1.0);
    for kind in ["websocket", "sse"] {
        gauge!(SUBSCRIBERS, "kind" => kind).increment(0.0);
    }
    let store = running.store_backend.to_owned();
    for outcome in ["written", "duplicate"] {
        counter!(store_metrics::APPENDS_TOTAL, "backend" => store.clone(), "outcome" => outcome)
            .increment(0);
    }
    counter!(store_metrics::EVENTS_WRITTEN_TOTAL, "backend" => store.clone()).increment(0);
    for name in [
        herald_privacy::FIELDS_SEALED_TOTAL,
        herald_privacy::UNATTRIBUTED_TOTAL,
        herald_privacy::SUBJECTS_FORGOTTEN_TOTAL,
    ] {
        counter!(name).increment(0);
    }
    for answer in ["running", "expired", "not_modified"] {
        counter!(crate::api::countdowns::IMAGES_TOTAL, "answer" => answer).increment(0);
    }
    counter!(crate::api::countdowns::RENDERS_TOTAL).increment(0);
    counter!(crate::api::countdowns::VIEWS_UNRECORDED_TOTAL).increment(0);
    for kind in ["unavailable", "backend", "closed"] {
        counter!(store_metrics::ERRORS_TOTAL, "backend" => store.clone(), "kind" => kind)
            .increment(0);
    }
    // Only the Postgres writer plans on memory.
    if store == "postgres" {
        for &path in store_metrics::BATCH_PATHS {
            counter!(store_metrics::BATCHES_TOTAL, "backend" => store.clone(), "path" => path)
                .increment(0);
        }
        counter!(store_metrics::REPLANNED_TOTAL, "backend" => store.clone()).increment(0);
        for source in ["memory", "database"] {
            counter!(store_metrics::LOG_READS_TOTAL, "backend" => store.clone(), "source" => source)
                .increment(0);
        }
    }
    let broker = running.broker_backend.to_owned();
    {
        use herald_brokers::telemetry as b;
        counter!(b::PUBLISHED_TOTAL, "backend" => broker.clone()).increment(0);
        for kind in herald_brokers::BrokerError::KINDS {
            counter!(b::PUBLISH_ERRORS_TOTAL, "backend" => broker.clone(), "kind" => *kind)
                .increment(0);
        }
        for outcome in ["ack", "nack"] {
            counter!(b::SETTLED_TOTAL, "backend" => broker.clone(), "outcome" => outcome)
                .increment(0);
        }
        counter!(b::REDELIVERED_TOTAL, "backend" => broker.clone()).increment(0);
        counter!(b::RECONNECTS_TOTAL, "backend" => broker).increment(0);
    }
    counter!(crate::ingest::APPENDED_TOTAL).increment(0);
    gauge!(herald_automations::engine::ENGINE_ACTIVE).set(0.0);
    gauge!(herald_automations::engine::ENGINE_POSITION).set(0.0);
    counter!(crate::placement::FORWARD_REQUESTS_TOTAL).increment(0);
    counter!(crate::ingest::DUPLICATES_TOTAL).increment(0);
    for &domain in &running.domains {
        for &outcome in actor_metrics::COMMAND_OUTCOMES {
            counter!(actor_metrics::COMMANDS_TOTAL, "domain" => domain, "outcome" => outcome)
                .increment(0);
        }
        counter!(actor_metrics::COMMAND_CONFLICTS_TOTAL, "domain" => domain).increment(0);
        for &route in crate::placement::ROUTES {
            counter!(crate::placement::ROUTES_TOTAL, "domain" => domain, "route" => route)
                .increment(0);
        }
        counter!(actor_metrics::ACTORS_PASSIVATED_TOTAL, "domain" => domain).increment(0);
        counter!(actor_metrics::SNAPSHOTS_SAVED_TOTAL, "domain" => domain).increment(0);
        counter!(actor_metrics::SNAPSHOTS_ALREADY_SAVED_TOTAL, "domain" => domain).increment(0);
        gauge!(actor_metrics::ACTORS_LIVE, "domain" => domain).increment(0.0);
    }
    for &reaction in &running.reactions {
        for &outcome in actor_metrics::REACTION_OUTCOMES {
            counter!(actor_metrics::REACTIONS_TOTAL, "reaction" => reaction, "outcome" => outcome)
                .increment(0);
        }
    }
    {
        use actor_metrics as t;
        for late in ["true", "false"] {
            counter!(t::TIMERS_FIRED_TOTAL, "late" => late).increment(0);
        }
        counter!(t::TIMER_COUNTDOWNS_EXPIRED_TOTAL).increment(0);
        counter!(t::TIMER_DELIVERY_RETRIES_TOTAL).increment(0);
        for &kind in t::TIMER_DELIVERY_KINDS {
            for &outcome in t::TIMER_DELIVERY_OUTCOMES {
                counter!(t::TIMER_DELIVERIES_TOTAL, "kind" => kind, "outcome" => outcome)
                    .increment(0);
            }
        }
    }
    for &projection in &running.projections {
        counter!(herald_projections::telemetry::PARKED_TOTAL, "projection" => projection)
            .increment(0);
        counter!(herald_projections::telemetry::SWITCHES_TOTAL, "projection" => projection)
            .increment(0);
        metrics::gauge!(herald_projections::telemetry::RUNNING, "projection" => projection)
            .set(0.0);
    }
}

/// A connected subscriber, counted in `herald_subscribers{kind}` for as
/// long as it lives.
#[derive(Debug)]
pub struct Subscriber {
    kind: &'static str,
}

impl Subscriber {
    /// Counts a websocket (`websocket`) or SSE stream (`sse`) until dropped.
    pub fn connected(kind: &'static str) -> Self {
        metrics::gauge!(SUBSCRIBERS, "kind" => kind).increment(1.0);
        Self { kind }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        metrics::gauge!(SUBSCRIBERS, "kind" => self.kind).decrement(1.0);
    }
}

/// The process metrics of [`PROCESS_METRICS`] in the Prometheus text
/// format, read now; empty where `/proc` is not there to read.
pub fn process_metrics() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for m in PROCESS_METRICS {
        let Some(value) = process::read(m.name) else {
            continue;
        };
        let kind = match m.kind {
            Counter => "counter",
            Gauge => "gauge",
            Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {} {kind}", m.name);
        if value.is_infinite() {
            let _ = writeln!(out, "{} +Inf", m.name);
        } else {
            let _ = writeln!(out, "{} {value}", m.name);
        }
    }
    out
}

/// A small reader of this process's `/proc` files.
mod process {
    /// The value of process metric `name`, if it can be read here.
    pub fn read(name: &str) -> Option<f64> {
        match name {
            "process_resident_memory_bytes" => status_kb("VmRSS:").map(|kb| kb * 1024.0),
            "process_virtual_memory_bytes" => status_kb("VmSize:").map(|kb| kb * 1024.0),
            "process_cpu_seconds_total" => cpu_seconds(),
            "process_open_fds" => std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            "process_max_fds" => max_fds(),
            "process_start_time_seconds" => start_time(),
            _ => None,
        }
    }

    /// A `kB` line of `/proc/self/status`.
    fn status_kb(field: &str) -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
    }

    /// The fields of `/proc/self/stat` after the command name (which may
    /// hold spaces and parentheses itself, so the last `)` ends it); the
    /// first of them is field 3, the state.
    fn stat_fields(text: &str) -> Option<Vec<&str>> {
        let after = &text[text.rfind(')')? + 1..];
        Some(after.split_whitespace().collect())
    }

    /// Clock ticks per second of `/proc` times: USER_HZ, which Linux fixes
    /// at 100 for user space on every architecture it runs on.
    const TICKS_PER_SECOND: f64 = 100.0;

    fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields = stat_fields(&stat)?;
        // utime and stime are fields 14 and 15.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / TICKS_PER_SECOND)
    }

    fn start_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // starttime, field 22: ticks after boot.
        let ticks: f64 = stat_fields(&stat)?.get(19)?.parse().ok()?;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(boot + ticks / TICKS_PER_SECOND)
    }

    fn max_fds() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?;
        let soft = line
            .trim_start_matches("Max open files")
            .split_whitespace()
            .next()?;
        match soft {
            "unlimited" => Some(f64::INFINITY),
            n => n.parse().ok(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_start_after_the_command_name() {
            let line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 1000 200";
            let fields = stat_fields(line).unwrap();
            assert_eq!(fields[0], "S");
            assert_eq!(fields[11], "250");
            assert_eq!(fields[12], "50");
            assert_eq!(fields[19], "12345");
        }

        #[cfg(target_os = "linux")]
        #[test]
        fn this_process_reads_its_own_figures() {
            for name in [
                "process_resident_memory_bytes",
                "process_cpu_seconds_total",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                let value = read(name).unwrap_or_else(|| panic!("{name} unreadable"));
                assert!(value > 0.0, "{name} = {value}");
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let started = read("process_start_time_seconds").unwrap();
            assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_in_the_readme_table() {
        let readme = include_str!("../README.md");
        for m in METRICS.iter().chain(PROCESS_METRICS) {
            assert!(
                readme.contains(&format!("| `{}` |", m.name)),
                "README's metrics table has no row for {}",
                m.name
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = METRICS
            .iter()
            .chain(PROCESS_METRICS)
            .map(|m| m.name)
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
