//! The command path as users run it: `herald serve` started as a separate
//! process with its defaults (relay on, every read model projected), driven
//! over keep-alive HTTP, beside what the same machine's database does raw in
//! the same run.
//!
//! Setups, each a fresh `herald serve` on a fresh store:
//! - `postgres+memory`: the Postgres store (a fresh database made by
//!   `herald_testkit`), the in-process broker;
//! - `postgres+rabbitmq`: the same on RabbitMQ (a fresh vhost, dropped after);
//! - `embedded`: the embedded defaults (SQLite in a temporary data dir).
//!
//! The workload is the one a support desk makes: each client works through
//! tickets of its own, ten commands per ticket — `open`, eight
//! `append_note` with a ~300-byte note, `resolve` — each a
//! `POST /v1/tickets/{id}/{command}` answered 201 after its events committed.
//! For 1, 8 and 64 clients (1 and 8 on the embedded store) the commands
//! completed in a fixed window after a warm-up are counted; p50 and p99 are
//! over those commands. CPU per command is read from `/proc` over the
//! window: the `herald` process, and the Postgres backends connected to the
//! bench's database (not the server's background writers).
//!
//! The raw limits, measured while no `herald` runs (before it starts and
//! after it stops, averaged): on Postgres, single-row `INSERT`s into a copy
//! of the event table (same columns, indexes and constraints), one row per
//! autocommit transaction from 1, 8 and 64 connections at once, and
//! 1000-row `INSERT`s from one connection (`support/raw_postgres.rs`); on
//! SQLite, single-row inserts into a copy of the embedded event table (WAL,
//! `synchronous=FULL`, as the store runs), one per transaction, from 1 and 8
//! connections.
//!
//! Run with `cargo bench --bench serve`. `HERALD_BENCH_SECONDS` sets the
//! window per level (default 5); `HERALD_BENCH_SETUPS` picks setups
//! (comma-separated, default all three) and `HERALD_BENCH_CLIENTS` client
//! counts (e.g. `1,8`); Postgres comes from
//! `HERALD_TEST_DATABASE_URL`, RabbitMQ from `HERALD_TEST_AMQP_URL`;
//! `HERALD_BENCH_BINARY` runs another `herald` build than the bench's own.
//! `cargo test --benches` runs a smoke pass of every setup in seconds;
//! `-- --list` names the levels without starting anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_testkit::{TestDatabase, TestVhost};
use tokio_postgres::Client;

// Shared with the other Postgres benches; this one uses part of it.
#[allow(dead_code)]
#[path = "support/raw_postgres.rs"]
mod raw_postgres;

#[path = "support/serve_process.rs"]
mod serve_process;

#[path = "support/raw_sqlite.rs"]
mod raw_sqlite;
use raw_sqlite::{copy_event_table, raw_sqlite_inserts};

use raw_postgres::{
    checkpoint, measure, mode, note_payload, raw_event_rates, Load, Mode, Timing, BATCH_ROWS,
};
use serve_process::{
    backend_ticks, backend_ticks_between, cpu_ticks, create_key, free_port, percentiles,
    selected_setups, ticket_clients, Herald, Latencies, NOTES_PER_TICKET, TICKS_PER_SECOND,
};

const POSTGRES_LEVELS: [usize; 3] = [1, 8, 64];
const EMBEDDED_LEVELS: [usize; 2] = [1, 8];

/// The targets of issue 15, as fractions of the raw rates.
const TARGET_ONE_CLIENT: f64 = 0.7;
const TARGET_EIGHT_CLIENTS: f64 = 1.0;
const TARGET_64_OF_BATCH: f64 = 0.4;
const TARGET_PG_CPU_MS_AT_8: f64 = 0.3;
const TARGET_HERALD_CPU_MS_AT_8: f64 = 0.15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    PostgresMemory,
    PostgresRabbit,
    Embedded,
}

impl Setup {
    const ALL: [Setup; 3] = [
        Setup::PostgresMemory,
        Setup::PostgresRabbit,
        Setup::Embedded,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::PostgresMemory => "postgres+memory",
            Setup::PostgresRabbit => "postgres+rabbitmq",
            Setup::Embedded => "embedded",
        }
    }

    /// The client counts of this setup, or those of `HERALD_BENCH_CLIENTS`
    /// (comma-separated) that it runs.
    fn levels(self) -> Vec<usize> {
        let all: &[usize] = match self {
            Setup::Embedded => &EMBEDDED_LEVELS,
            _ => &POSTGRES_LEVELS,
        };
        let Ok(chosen) = std::env::var("HERALD_BENCH_CLIENTS") else {
            return all.to_vec();
        };
        let chosen: Vec<usize> = chosen
            .split(',')
            .map(|c| c.trim().parse().expect("HERALD_BENCH_CLIENTS: numbers"))
            .collect();
        all.iter().copied().filter(|c| chosen.contains(c)).collect()
    }

    fn selected() -> Vec<Setup> {
        selected_setups(&Self::ALL, Self::name)
    }
}

/// The raw insert beside Herald's: a `note_appended` as the workload's.
const NOTE_APPENDED: raw_sqlite::RawEvent = raw_sqlite::RawEvent {
    domain: "tickets",
    event_type: "tickets.note_appended",
    producer: "herald",
    payload: |_| note_payload().to_string(),
};

fn main() {
    let mode = mode();
    let setups = Setup::selected();
    if mode == Mode::List {
        for setup in &setups {
            for clients in setup.levels() {
                println!("serve/{}/{clients}_clients: benchmark", setup.name());
            }
        }
        return;
    }
    let timing = Timing::for_mode(mode);
    // The clients get one thread: the machine's other cores are herald's
    // and the database's, as on a host that only serves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let mut reports = Vec::new();
    for setup in setups {
        reports.push(runtime.block_on(run_setup(setup, timing)));
    }
    println!();
    println!(
        "serve bench: {} s window after {} ms warm-up per level; cmd = one POST /v1/tickets/{{id}}/{{command}} (open, {NOTES_PER_TICKET} × append_note of {} bytes, resolve)",
        timing.window.as_secs_f64(),
        timing.warmup.as_millis(),
        note_payload().to_string().len()
    );
    for report in &reports {
        report.print();
    }
}

#[derive(Debug)]
struct SetupReport {
    setup: Setup,
    /// Raw single-row commits/s by connections (before, after).
    raw_single: Vec<(usize, f64, f64)>,
    /// Raw 1000-row batch rows/s (before, after); Postgres only.
    raw_batch: Option<(f64, f64)>,
    levels: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    clients: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    herald_cpu_ms: f64,
    /// Postgres backends' CPU per command; none on the embedded store.
    database_cpu_ms: Option<f64>,
}

impl SetupReport {
    fn single(&self, connections: usize) -> f64 {
        let (_, before, after) = self
            .raw_single
            .iter()
            .find(|(c, _, _)| *c == connections)
            .expect("a raw rate for every level");
        (before + after) / 2.0
    }

    fn print(&self) {
        println!();
        println!("== {} ==", self.setup.name());
        let raw_kind = if self.setup == Setup::Embedded {
            "raw SQLite single-row insert/txn"
        } else {
            "raw single-row INSERT/txn"
        };
        for (connections, before, after) in &self.raw_single {
            println!(
                "{raw_kind}, {connections:>2} conn: {:>8.0} rows/s  (mean of {before:.0} before and {after:.0} after)",
                (before + after) / 2.0
            );
        }
        if let Some((before, after)) = self.raw_batch {
            println!(
                "raw {BATCH_ROWS}-row INSERT/txn,  1 conn: {:>8.0} rows/s  (mean of {before:.0} before and {after:.0} after)",
                (before + after) / 2.0
            );
        }
        println!(
            "{:>7} | {:>8} | {:>8} | {:>8} | {:>14} | {:>10} | {:>14} | {:>14}",
            "clients",
            "cmd/s",
            "p50 ms",
            "p99 ms",
            "× raw single",
            "× raw batch",
            "herald ms/cmd",
            "db ms/cmd"
        );
        for level in &self.levels {
            let batch = self
                .raw_batch
                .map(|(b, a)| format!("{:.2}", level.per_second / ((b + a) / 2.0)))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:>7} | {:>8.0} | {:>8.2} | {:>8.2} | {:>14.2} | {:>10} | {:>14.3} | {:>14}",
                level.clients,
                level.per_second,
                level.p50.as_secs_f64() * 1e3,
                level.p99.as_secs_f64() * 1e3,
                level.per_second / self.single(level.clients),
                batch,
                level.herald_cpu_ms,
                level
                    .database_cpu_ms
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.3}")),
            );
        }
        self.print_targets();
    }

    fn print_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        for level in &self.levels {
            let ratio = level.per_second / self.single(level.clients);
            match level.clients {
                1 => println!(
                    "target 1 client ≥ {TARGET_ONE_CLIENT}× raw single-row (1 conn): {ratio:.2}× {}",
                    verdict(ratio >= TARGET_ONE_CLIENT)
                ),
                8 => println!(
                    "target 8 clients ≥ {TARGET_EIGHT_CLIENTS}× raw single-row (8 conns): {ratio:.2}× {}",
                    verdict(ratio >= TARGET_EIGHT_CLIENTS)
                ),
                64 => {
                    if let Some((b, a)) = self.raw_batch {
                        let of_batch = level.per_second / ((b + a) / 2.0);
                        println!(
                            "target 64 clients ≥ {TARGET_64_OF_BATCH}× raw {BATCH_ROWS}-row batch: {of_batch:.2}× {}",
                            verdict(of_batch >= TARGET_64_OF_BATCH)
                        );
                    }
                }
                _ => {}
            }
            if level.clients == 8 {
                println!(
                    "target herald CPU at 8 clients ≤ {TARGET_HERALD_CPU_MS_AT_8} ms/cmd: {:.3} {}",
                    level.herald_cpu_ms,
                    verdict(level.herald_cpu_ms <= TARGET_HERALD_CPU_MS_AT_8)
                );
                if let Some(ms) = level.database_cpu_ms {
                    println!(
                        "target Postgres CPU at 8 clients ≤ {TARGET_PG_CPU_MS_AT_8} ms/cmd: {ms:.3} {}",
                        verdict(ms <= TARGET_PG_CPU_MS_AT_8)
                    );
                }
            }
        }
    }
}

async fn run_setup(setup: Setup, timing: Timing) -> SetupReport {
    let levels = &setup.levels()[..];
    match setup {
        Setup::Embedded => {
            let dir = tempfile::tempdir().expect("a data dir");
            let data_dir = dir.path().join("data");
            let store_args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
            // The raw table copies the embedded event table, so the store is
            // made (by creating the bench's key) before the raw rates.
            let key = create_key(dir.path(), &store_args);
            let raw_file = dir.path().join("raw.db");
            copy_event_table(&data_dir.join("herald.db"), &raw_file);
            let before: Vec<f64> = levels
                .iter()
                .map(|&c| {
                    raw_sqlite_inserts(&raw_file, c, NOTE_APPENDED, timing.warmup, timing.window)
                })
                .collect();
            let measured = herald_levels(setup, dir.path(), &store_args, &key, None, timing).await;
            let after: Vec<f64> = levels
                .iter()
                .map(|&c| {
                    raw_sqlite_inserts(&raw_file, c, NOTE_APPENDED, timing.warmup, timing.window)
                })
                .collect();
            SetupReport {
                setup,
                raw_single: zip_rates(levels, &before, &after),
                raw_batch: None,
                levels: measured,
            }
        }
        Setup::PostgresMemory | Setup::PostgresRabbit => {
            let vhost = if setup == Setup::PostgresRabbit {
                Some(TestVhost::create().await)
            } else {
                None
            };
            let db = TestDatabase::create().await;
            let admin = db.connect().await;
            let dir = tempfile::tempdir().expect("a working dir");
            let mut store_args = vec!["--store".to_owned(), db.url().to_owned()];
            let key = create_key(dir.path(), &store_args);
            let (before_single, before_batch) = raw_event_rates(&db, &admin, levels, timing).await;
            if let Some(vhost) = &vhost {
                store_args.extend(["--broker".to_owned(), vhost.url().to_owned()]);
            }
            let measured = herald_levels(
                setup,
                dir.path(),
                &store_args,
                &key,
                Some((&db, &admin)),
                timing,
            )
            .await;
            let (after_single, after_batch) = raw_event_rates(&db, &admin, levels, timing).await;
            // The database and the vhost are dropped with their guards.
            drop((admin, db, vhost));
            SetupReport {
                setup,
                raw_single: zip_rates(levels, &before_single, &after_single),
                raw_batch: Some((before_batch, after_batch)),
                levels: measured,
            }
        }
    }
}

fn zip_rates(levels: &[usize], before: &[f64], after: &[f64]) -> Vec<(usize, f64, f64)> {
    levels
        .iter()
        .zip(before.iter().zip(after))
        .map(|(&c, (&b, &a))| (c, b, a))
        .collect()
}

/// Starts `herald serve`, runs every level of `setup` against it, stops it
/// with SIGTERM.
async fn herald_levels(
    setup: Setup,
    cwd: &Path,
    store_args: &[String],
    key: &str,
    postgres: Option<(&TestDatabase, &Client)>,
    timing: Timing,
) -> Vec<Level> {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--log".to_owned(),
        "warn".to_owned(),
    ];
    args.extend(store_args.iter().cloned());
    let mut herald = Herald::start(cwd, &args);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("an HTTP client");
    herald.wait_ready(&http, &base).await;

    let mut levels = Vec::new();
    for (round, clients) in setup.levels().into_iter().enumerate() {
        if let Some((_, admin)) = postgres {
            checkpoint(admin).await;
        }
        levels.push(
            herald_level(
                &http,
                &base,
                key,
                round,
                clients,
                herald.child.id(),
                postgres,
                timing,
            )
            .await,
        );
    }
    herald.terminate();
    levels
}

#[allow(clippy::too_many_arguments)]
async fn herald_level(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    round: usize,
    clients: usize,
    herald_pid: u32,
    postgres: Option<(&TestDatabase, &Client)>,
    timing: Timing,
) -> Level {
    let load = Arc::new(Load::default());
    let latencies: Latencies = Arc::default();
    let bases = Arc::new(vec![base.to_owned()]);
    let workers = ticket_clients(
        http,
        &bases,
        key,
        &format!("bench-{round}"),
        clients,
        &load,
        &latencies,
    );
    let measured = measure(&load, workers, timing, || {
        cpu_sample(herald_pid, postgres.map(|(db, admin)| (db.name(), admin)))
    })
    .await;
    let (start, end) = (measured.start, measured.end);
    let (p50, p99) = percentiles(&latencies, start.at, end.at);
    let commands = measured.per_second * (end.at - start.at).as_secs_f64();
    let per_command_ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e3 / commands;
    Level {
        clients,
        per_second: measured.per_second,
        p50,
        p99,
        herald_cpu_ms: per_command_ms(end.herald - start.herald),
        database_cpu_ms: postgres
            .map(|_| per_command_ms(backend_ticks_between(&start.backends, &end.backends))),
    }
}

#[derive(Debug)]
struct CpuSample {
    at: Instant,
    herald: u64,
    backends: HashMap<i32, u64>,
}

async fn cpu_sample(herald_pid: u32, postgres: Option<(&str, &Client)>) -> CpuSample {
    let backends = match postgres {
        Some((database, admin)) => backend_ticks(admin, database).await,
        None => HashMap::new(),
    };
    CpuSample {
        at: Instant::now(),
        herald: cpu_ticks(herald_pid).expect("herald's /proc entry"),
        backends,
    }
}
