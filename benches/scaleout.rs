//! Scale-out as users try it: one `herald serve`, then three, on one
//! Postgres store and one RabbitMQ virtual host, driven by the same number
//! of keep-alive HTTP clients, beside the raw rates of the same database in
//! the same run.
//!
//! Every process runs with `--store-pool-size 8 --read-model-pool-size 8`
//! (the README's advice for three processes on a default `max_connections`
//! of 100), relay and read models on. The workload is the serve bench's
//! support desk — each client works through tickets of its own, ten
//! commands per ticket (`open`, eight `append_note`, `resolve`) — and each
//! client sends every command to the next process in turn, as a
//! round-robin load balancer would: with three processes one ticket's
//! commands arrive at all three.
//!
//! Per run: commands/s over a window after a warm-up, p50 and p99, CPU per
//! command of the herald processes (together) and of the Postgres backends
//! of the bench's database, and, from the processes' `/metrics`, version
//! conflicts re-decided and writer batches re-planned per command. The raw
//! limits — single-row `INSERT` per transaction from as many connections as
//! clients, and 1000-row `INSERT`s from one connection, into a copy of the
//! event table — are measured before the first run and after the last and
//! averaged.
//!
//! The targets: three processes ≥ 0.9× one process's commands/s,
//! and Postgres CPU per command with three ≤ 1.3× that with one.
//!
//! Run with `cargo bench --bench scaleout`. `HERALD_BENCH_SECONDS` sets the
//! window (default 5), `HERALD_BENCH_CLIENTS` the clients (default 16),
//! `HERALD_BENCH_BINARY` another `herald` build; Postgres comes from
//! `HERALD_TEST_DATABASE_URL`, RabbitMQ from `HERALD_TEST_AMQP_URL`.
//! `cargo test --benches` runs a smoke pass in seconds; `-- --list` names
//! the runs without starting anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::{TestDatabase, TestVhost};
use tokio_postgres::Client;

// Shared with the other Postgres benches; this one uses part of it.
#[allow(dead_code)]
#[path = "support/raw_postgres.rs"]
mod raw_postgres;
#[path = "support/serve_process.rs"]
mod serve_process;

use raw_postgres::{checkpoint, measure, mode, raw_event_rates, Load, Mode, Timing, BATCH_ROWS};
use serve_process::{cpu_ticks, create_key, free_port, ticket_commands, Herald, TICKS_PER_SECOND};

const PROCESS_COUNTS: [usize; 2] = [1, 3];
const DEFAULT_CLIENTS: usize = 16;
const POOLS: [&str; 4] = ["--store-pool-size", "8", "--read-model-pool-size", "8"];
const TARGET_THROUGHPUT_RATIO: f64 = 0.9;
const TARGET_DATABASE_CPU_RATIO: f64 = 1.3;

fn clients() -> usize {
    std::env::var("HERALD_BENCH_CLIENTS")
        .ok()
        .map(|c| c.trim().parse().expect("HERALD_BENCH_CLIENTS: a number"))
        .unwrap_or(DEFAULT_CLIENTS)
}

fn main() {
    let mode = mode();
    if mode == Mode::List {
        for processes in PROCESS_COUNTS {
            println!("scaleout/postgres+rabbitmq/{processes}_processes: benchmark");
        }
        return;
    }
    let timing = Timing::for_mode(mode);
    // The clients get one thread: the machine's other cores are herald's,
    // the database's and the broker's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let report = runtime.block_on(run(timing, clients()));
    report.print(timing);
}

#[derive(Debug)]
struct Run {
    processes: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    herald_cpu_ms: f64,
    database_cpu_ms: f64,
    conflicts_per_command: f64,
    replans_per_command: f64,
}

#[derive(Debug)]
struct Report {
    clients: usize,
    raw_single: (f64, f64),
    raw_batch: (f64, f64),
    runs: Vec<Run>,
}

impl Report {
    fn print(&self, timing: Timing) {
        let mean = |(b, a): (f64, f64)| (b + a) / 2.0;
        let (single, batch) = (mean(self.raw_single), mean(self.raw_batch));
        println!();
        println!(
            "scaleout bench: {} clients, round-robin over the processes; {} s window after {} ms warm-up; Postgres store + RabbitMQ; pools {}",
            self.clients,
            timing.window.as_secs_f64(),
            timing.warmup.as_millis(),
            POOLS.join(" ")
        );
        println!(
            "raw single-row INSERT/txn, {:>2} conn: {single:>8.0} rows/s  (mean of {:.0} before and {:.0} after)",
            self.clients, self.raw_single.0, self.raw_single.1
        );
        println!(
            "raw {BATCH_ROWS}-row INSERT/txn,  1 conn: {batch:>8.0} rows/s  (mean of {:.0} before and {:.0} after)",
            self.raw_batch.0, self.raw_batch.1
        );
        println!(
            "{:>9} | {:>8} | {:>8} | {:>8} | {:>12} | {:>11} | {:>13} | {:>10} | {:>13} | {:>11}",
            "processes",
            "cmd/s",
            "p50 ms",
            "p99 ms",
            "× raw single",
            "× raw batch",
            "herald ms/cmd",
            "db ms/cmd",
            "conflicts/cmd",
            "replans/cmd"
        );
        for run in &self.runs {
            println!(
                "{:>9} | {:>8.0} | {:>8.2} | {:>8.2} | {:>12.2} | {:>11.3} | {:>13.3} | {:>10.3} | {:>13.3} | {:>11.4}",
                run.processes,
                run.per_second,
                run.p50.as_secs_f64() * 1e3,
                run.p99.as_secs_f64() * 1e3,
                run.per_second / single,
                run.per_second / batch,
                run.herald_cpu_ms,
                run.database_cpu_ms,
                run.conflicts_per_command,
                run.replans_per_command,
            );
        }
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        if let [one, three] = &self.runs[..] {
            let throughput = three.per_second / one.per_second;
            let cpu = three.database_cpu_ms / one.database_cpu_ms;
            println!(
                "target 3 processes ≥ {TARGET_THROUGHPUT_RATIO}× 1 process (cmd/s): {throughput:.2}× {}",
                verdict(throughput >= TARGET_THROUGHPUT_RATIO)
            );
            println!(
                "target Postgres CPU/cmd with 3 ≤ {TARGET_DATABASE_CPU_RATIO}× with 1: {cpu:.2}× {}",
                verdict(cpu <= TARGET_DATABASE_CPU_RATIO)
            );
        }
    }
}

async fn run(timing: Timing, clients: usize) -> Report {
    let vhost = TestVhost::create().await;
    let db = TestDatabase::create().await;
    let admin = db.connect().await;
    let dir = tempfile::tempdir().expect("a working dir");
    let store_args = vec!["--store".to_owned(), db.url().to_owned()];
    let key = create_key(dir.path(), &store_args);
    let (before_single, before_batch) = raw_event_rates(&db, &admin, &[clients], timing).await;
    let mut runs = Vec::new();
    for (round, processes) in PROCESS_COUNTS.into_iter().enumerate() {
        checkpoint(&admin).await;
        runs.push(
            run_processes(
                &db,
                &admin,
                vhost.url(),
                &key,
                round,
                processes,
                clients,
                timing,
            )
            .await,
        );
    }
    let (after_single, after_batch) = raw_event_rates(&db, &admin, &[clients], timing).await;
    drop((admin, db, vhost));
    Report {
        clients,
        raw_single: (before_single[0], after_single[0]),
        raw_batch: (before_batch, after_batch),
        runs,
    }
}

/// Bookkeeping of the clients: when each command finished and how long it took.
type Latencies = Arc<Mutex<Vec<(Instant, Duration)>>>;

#[allow(clippy::too_many_arguments)]
async fn run_processes(
    db: &TestDatabase,
    admin: &Client,
    broker: &str,
    key: &str,
    round: usize,
    processes: usize,
    clients: usize,
    timing: Timing,
) -> Run {
    let dirs: Vec<_> = (0..processes)
        .map(|_| tempfile::tempdir().expect("a working dir"))
        .collect();
    let mut heralds = Vec::new();
    let mut bases = Vec::new();
    for dir in &dirs {
        let port = free_port();
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
            "--store",
            db.url(),
            "--broker",
            broker,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(POOLS.iter().map(|s| (*s).to_owned()));
        heralds.push(Herald::start(dir.path(), &args));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("an HTTP client");
    for (herald, base) in heralds.iter_mut().zip(&bases) {
        herald.wait_ready(&http, base).await;
    }
    let pids: Vec<u32> = heralds.iter().map(|h| h.child.id()).collect();
    let bases = Arc::new(bases);

    let load = Arc::new(Load::default());
    let latencies: Latencies = Arc::default();
    let workers = (0..clients)
        .map(|client| {
            let (http, load, latencies) = (http.clone(), load.clone(), latencies.clone());
            let (bases, key) = (bases.clone(), key.to_owned());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut sent = client;
                let mut ticket = 0usize;
                'tickets: while !load.stopped() {
                    let id = format!("scaleout-{round}-{client}-{ticket}");
                    ticket += 1;
                    for (command, body) in ticket_commands() {
                        let base = &bases[sent % bases.len()];
                        sent += 1;
                        let started = Instant::now();
                        let response = http
                            .post(format!("{base}/v1/tickets/{id}/{command}"))
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await
                            .expect("a command's answer");
                        let status = response.status();
                        if status != reqwest::StatusCode::CREATED {
                            let text = response.text().await.unwrap_or_default();
                            panic!("{command} on {id} through {base} answered {status}: {text}");
                        }
                        response.bytes().await.expect("a command's body");
                        let done = Instant::now();
                        mine.push((done, done - started));
                        load.add(1);
                        if load.stopped() {
                            break 'tickets;
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let measured = measure(&load, workers, timing, || {
        sample(&http, &bases, &pids, db.name(), admin)
    })
    .await;
    for herald in &mut heralds {
        herald.terminate();
    }
    let (start, end) = (measured.start, measured.end);
    let mut window: Vec<Duration> = latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= start.at && *at <= end.at)
        .map(|(_, took)| *took)
        .collect();
    assert!(!window.is_empty(), "no command completed in the window");
    window.sort_unstable();
    let at = |q: f64| window[((window.len() - 1) as f64 * q).round() as usize];
    let commands = measured.per_second * (end.at - start.at).as_secs_f64();
    let per_command_ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e3 / commands;
    let backend_ticks: u64 = end
        .backends
        .iter()
        .map(|(pid, t)| t - start.backends.get(pid).copied().unwrap_or(0).min(*t))
        .sum();
    Run {
        processes,
        per_second: measured.per_second,
        p50: at(0.50),
        p99: at(0.99),
        herald_cpu_ms: per_command_ms(end.herald - start.herald),
        database_cpu_ms: per_command_ms(backend_ticks),
        conflicts_per_command: (end.conflicts - start.conflicts) / commands,
        replans_per_command: (end.replans - start.replans) / commands,
    }
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    /// CPU ticks of every herald process together.
    herald: u64,
    /// CPU ticks of each Postgres backend of the bench's database.
    backends: HashMap<i32, u64>,
    /// `herald_command_conflicts_total` over the processes and domains.
    conflicts: f64,
    /// `herald_store_replanned_total` over the processes.
    replans: f64,
}

async fn sample(
    http: &reqwest::Client,
    bases: &[String],
    pids: &[u32],
    database: &str,
    admin: &Client,
) -> Sample {
    let at = Instant::now();
    let herald = pids
        .iter()
        .map(|&pid| cpu_ticks(pid).expect("herald's /proc entry"))
        .sum();
    let mut backends = HashMap::new();
    let rows = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("list the database's backends");
    for row in rows {
        let pid: i32 = row.get(0);
        // A backend that just exited has no /proc entry: it counts as 0.
        if let Some(ticks) = cpu_ticks(pid as u32) {
            backends.insert(pid, ticks);
        }
    }
    let (mut conflicts, mut replans) = (0.0, 0.0);
    for base in bases {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("the metrics")
            .text()
            .await
            .expect("the metrics' text");
        conflicts += metric_sum(&text, "herald_command_conflicts_total");
        replans += metric_sum(&text, "herald_store_replanned_total");
    }
    Sample {
        at,
        herald,
        backends,
        conflicts,
        replans,
    }
}

/// The sum of a metric's series in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
