//! Scale-out as users try it: one `herald serve`, then three, on one
//! Postgres store and one shared broker — a RabbitMQ virtual host, or
//! librdkafka's mock Kafka cluster in the bench's process (the topics made
//! on it as `herald serve` needs them, 4 partitions, short sessions) —
//! driven by the same number of keep-alive HTTP clients, beside the raw
//! rates of the same database in the same run.
//!
//! Every process runs with `--store-pool-size 8 --read-model-pool-size 8`
//! (the README's advice for three processes on a default `max_connections`
//! of 100), relay and read models on. The workload is the serve bench's
//! support desk — each client works through tickets of its own, ten
//! commands per ticket (`open`, eight `append_note`, `resolve`) — and each
//! client sends every command to the next process in turn, as a
//! round-robin load balancer would: with three processes one ticket's
//! commands arrive at all three, and two of every three are forwarded to
//! the process that owns the ticket's partition of the command group (with
//! the default single command partition, the one process that decides).
//!
//! Per run: commands/s over a window after a warm-up, p50 and p99, CPU per
//! command of the herald processes (together) and of the Postgres backends
//! of the bench's database, and, from the processes' `/metrics`, version
//! conflicts re-decided, writer batches re-planned and commands forwarded
//! to their owner, per command; commands per commit of events (the
//! writers' batches), and pages of the log read from the database per
//! command (other processes' commits, read by each process's followers of
//! the log), and forwarded commands per request to an owner (they travel
//! in batches). The raw
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
//! `HERALD_BENCH_SETUPS` the brokers (`postgres+rabbitmq`, `postgres+kafka`;
//! default both), `HERALD_BENCH_COMMAND_PARTITIONS` the processes'
//! `--command-partitions` (default: Herald's, 1),
//! `HERALD_BENCH_SCALEOUT_ARGS` more `herald serve` arguments for the
//! processes of the multi-process run only (e.g. `--workers 1
//! --actor-threads 1`, for processes sharing the cores), `HERALD_BENCH_BINARY`
//! another `herald` build; Postgres comes from
//! `HERALD_TEST_DATABASE_URL`, RabbitMQ from `HERALD_TEST_AMQP_URL`.
//! `cargo test --benches` runs a smoke pass in seconds; `-- --list` names
//! the runs without starting anything.

use std::collections::HashMap;
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
// The mock cluster and the topics herald needs on it, as the tests make them.
#[allow(dead_code)]
#[path = "../tests/support/kafka.rs"]
mod kafka;

use raw_postgres::{checkpoint, measure, mode, raw_event_rates, Load, Mode, Timing, BATCH_ROWS};
use serve_process::{
    backend_ticks, backend_ticks_between, cpu_ticks, create_key, free_port, herald_command,
    percentiles, selected_setups, ticket_clients, ticket_commands, Herald, Latencies,
    TICKS_PER_SECOND,
};

/// The shared broker of a setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    Rabbit,
    Kafka,
}

impl Broker {
    const ALL: [Broker; 2] = [Broker::Rabbit, Broker::Kafka];

    fn setup(self) -> &'static str {
        match self {
            Broker::Rabbit => "postgres+rabbitmq",
            Broker::Kafka => "postgres+kafka",
        }
    }

    fn selected() -> Vec<Broker> {
        selected_setups(&Self::ALL, Self::setup)
    }
}

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
        for broker in Broker::selected() {
            for processes in PROCESS_COUNTS {
                println!(
                    "scaleout/{}/{processes}_processes: benchmark",
                    broker.setup()
                );
            }
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
    let reports: Vec<Report> = Broker::selected()
        .into_iter()
        .map(|broker| runtime.block_on(run(broker, timing, clients())))
        .collect();
    for report in &reports {
        report.print(timing);
    }
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
    forwarded_per_command: f64,
    commands_per_batch: f64,
    database_reads_per_command: f64,
    forwarded_per_request: f64,
}

#[derive(Debug)]
struct Report {
    broker: Broker,
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
            "== {} == scaleout bench: {} clients, round-robin over the processes; {} s window after {} ms warm-up; pools {}",
            self.broker.setup(),
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
            "{:>9} | {:>8} | {:>8} | {:>8} | {:>12} | {:>11} | {:>13} | {:>10} | {:>13} | {:>11} | {:>9} | {:>9} | {:>12} | {:>11}",
            "processes",
            "cmd/s",
            "p50 ms",
            "p99 ms",
            "× raw single",
            "× raw batch",
            "herald ms/cmd",
            "db ms/cmd",
            "conflicts/cmd",
            "replans/cmd",
            "forwarded",
            "cmd/batch",
            "log reads/cmd",
            "fwd/request"
        );
        for run in &self.runs {
            println!(
                "{:>9} | {:>8.0} | {:>8.2} | {:>8.2} | {:>12.2} | {:>11.3} | {:>13.3} | {:>10.3} | {:>13.3} | {:>11.4} | {:>9.2} | {:>9.2} | {:>12.3} | {:>11.2}",
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
                run.forwarded_per_command,
                run.commands_per_batch,
                run.database_reads_per_command,
                run.forwarded_per_request,
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

/// `--command-partitions` for every process: `HERALD_BENCH_COMMAND_PARTITIONS`,
/// else Herald's default (one process decides everything). On RabbitMQ the
/// topics then get that many partitions, or Herald's default 4 if more.
fn command_partitions() -> Option<u32> {
    std::env::var("HERALD_BENCH_COMMAND_PARTITIONS")
        .ok()
        .map(|p| {
            p.trim()
                .parse()
                .expect("HERALD_BENCH_COMMAND_PARTITIONS: a number")
        })
}

async fn run(broker: Broker, timing: Timing, clients: usize) -> Report {
    // Kept until the runs are over: dropping one takes its broker away.
    let (vhost, cluster, broker_args) = match broker {
        Broker::Rabbit => {
            let vhost = TestVhost::create().await;
            let mut args = vec!["--broker".to_owned(), vhost.url().to_owned()];
            if let Some(n) = command_partitions() {
                args.extend([
                    "--broker-partitions".to_owned(),
                    n.max(4).to_string(),
                    "--command-partitions".to_owned(),
                    n.to_string(),
                ]);
            }
            (Some(vhost), None, args)
        }
        Broker::Kafka => {
            let cluster = kafka::cluster();
            let servers = cluster.bootstrap_servers();
            kafka::create_topics(&cluster, &kafka::needed(&servers), |_| {
                kafka::PARTITIONS as i32
            });
            let mut args = vec![
                "--broker".to_owned(),
                // The mock answers an empty fetch only after the whole
                // `fetch.wait.max.ms` (500 ms by default), even when a
                // record arrives meanwhile; a real broker answers at once.
                // Without this every forwarded command would wait for it.
                format!(
                    "kafka://{servers}?session.timeout.ms=2000&heartbeat.interval.ms=500&fetch.wait.max.ms=10"
                ),
                "--broker-partitions".to_owned(),
                kafka::PARTITIONS.to_string(),
            ];
            if let Some(n) = command_partitions() {
                args.extend(["--command-partitions".to_owned(), n.to_string()]);
            }
            (None, Some(cluster), args)
        }
    };
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
                &broker_args,
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
    drop((admin, db, vhost, cluster));
    Report {
        broker,
        clients,
        raw_single: (before_single[0], after_single[0]),
        raw_batch: (before_batch, after_batch),
        runs,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_processes(
    db: &TestDatabase,
    admin: &Client,
    broker_args: &[String],
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
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(broker_args.iter().cloned());
        args.extend(POOLS.iter().map(|s| (*s).to_owned()));
        if processes > 1 {
            // E.g. threads sized for processes that share the machine's cores.
            if let Ok(extra) = std::env::var("HERALD_BENCH_SCALEOUT_ARGS") {
                args.extend(extra.split_whitespace().map(str::to_owned));
            }
        }
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
    // Ready is not yet deciding: on a shared broker the command group must
    // have given its partitions out (a Kafka group forms in a second or
    // more), or a short window would measure the wait.
    for (i, base) in bases.iter().enumerate() {
        let (command, body) = &ticket_commands()[0];
        let url = format!("{base}/v1/tickets/ready-{round}-{i}/{command}");
        let answered = herald_testkit::eventually(Duration::from_secs(60), || {
            let request = http.post(&url).bearer_auth(key).json(body).send();
            // Any answer but 503 (busy: not placed yet) is a decision; a
            // repeat of an open that went through late is refused, 409.
            async move {
                request
                    .await
                    .is_ok_and(|r| r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE)
            }
        })
        .await;
        assert!(answered, "{base} answers no command");
    }
    let pids: Vec<u32> = heralds.iter().map(|h| h.child.id()).collect();
    let bases = Arc::new(bases);

    let load = Arc::new(Load::default());
    let latencies: Latencies = Arc::default();
    let workers = ticket_clients(
        &http,
        &bases,
        key,
        &format!("scaleout-{round}"),
        clients,
        &load,
        &latencies,
    );
    let measured = measure(&load, workers, timing, || {
        sample(&http, &bases, &pids, db.name(), admin)
    })
    .await;
    for herald in &mut heralds {
        herald.terminate();
    }
    let (start, end) = (measured.start, measured.end);
    let (p50, p99) = percentiles(&latencies, start.at, end.at);
    let commands = measured.per_second * (end.at - start.at).as_secs_f64();
    let per_command_ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e3 / commands;
    Run {
        processes,
        per_second: measured.per_second,
        p50,
        p99,
        herald_cpu_ms: per_command_ms(end.herald - start.herald),
        database_cpu_ms: per_command_ms(backend_ticks_between(&start.backends, &end.backends)),
        conflicts_per_command: (end.conflicts - start.conflicts) / commands,
        replans_per_command: (end.replans - start.replans) / commands,
        forwarded_per_command: (end.forwarded - start.forwarded) / commands,
        commands_per_batch: commands / (end.batches - start.batches).max(1.0),
        database_reads_per_command: (end.database_reads - start.database_reads) / commands,
        forwarded_per_request: (end.forwarded - start.forwarded)
            / (end.forward_requests - start.forward_requests).max(1.0),
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
    /// Commands sent to their aggregate's owner, over the processes.
    forwarded: f64,
    /// `herald_store_batches_total` over the processes: commits of events.
    batches: f64,
    /// Pages of the log the processes read from the database.
    database_reads: f64,
    /// Requests (batches of forwarded commands) sent to owners.
    forward_requests: f64,
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
    let backends = backend_ticks(admin, database).await;
    let (mut conflicts, mut replans, mut forwarded) = (0.0, 0.0, 0.0);
    let (mut batches, mut database_reads, mut forward_requests) = (0.0, 0.0, 0.0);
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
        batches += metric_sum(&text, "herald_store_batches_total");
        forward_requests += metric_sum(&text, "herald_command_forward_requests_total");
        database_reads +=
            labelled_sum(&text, "herald_store_log_reads_total", "source=\"database\"");
        forwarded += labelled_sum(&text, "herald_command_routes_total", "route=\"forwarded\"");
    }
    Sample {
        at,
        herald,
        backends,
        conflicts,
        replans,
        forwarded,
        batches,
        database_reads,
        forward_requests,
    }
}

/// The sum of the series of a metric whose labels include `label`.
fn labelled_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
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
