//! Append throughput of the Postgres event store, measured against what raw
//! Postgres does with rows of the same shape on the same server in the same
//! run, so the printed ratios mean the same thing on any machine.
//!
//! In one fresh database (made by `herald_testkit`, dropped at the end):
//! - raw baselines in `raw_events`, a copy of `herald_events` with the same
//!   columns, indexes and constraints: one client inserting one row per
//!   autocommit transaction, then one client inserting 1000 rows per
//!   transaction with a single multi-row `INSERT … VALUES`; measured before
//!   and after herald's levels, and averaged, because they drift;
//! - `PostgresStore::append` of one ~300-byte `tickets.note_appended` event
//!   per call, by 1, 8 and 64 concurrent appenders, each cycling over its own
//!   100 streams;
//! - a criterion benchmark, `postgres/append_1_event_64_concurrent`: the time
//!   for 64 concurrent one-event appends.
//!
//! Every throughput level runs for a fixed wall time after a warm-up and
//! counts what completed in between. The table of rates and ratios, and
//! whether the 64-appender target is met, is printed last.
//!
//! Run with `cargo bench --bench append`. Postgres is taken from
//! `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the user must be allowed to
//! create databases). `HERALD_BENCH_SECONDS` sets the seconds per level
//! (default 5). `cargo bench --bench append -- --test` and
//! `cargo test --benches` do a smoke run that takes seconds; `-- --list` lists
//! the criterion benchmark without touching Postgres.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use criterion::{Criterion, Throughput};
use herald_events::tickets::NoteAppended;
use herald_events::{NewEvent, Position, StreamId, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use uuid::Uuid;

/// The allocator the `herald` binary runs with, so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_SECONDS: f64 = 5.0;
const APPENDER_LEVELS: [usize; 3] = [1, 8, 64];
const STREAMS_PER_APPENDER: usize = 100;
const BATCH_ROWS: usize = 1000;
const CRITERION_CONCURRENCY: usize = 64;
const POOL_SIZE: usize = 16;
/// The target for 64 appenders, as fractions of the raw baselines.
const TARGET_OF_BATCH: f64 = 0.5;
const TARGET_OF_SINGLE: f64 = 10.0;

const COLUMNS: &str = "position, event_id, tenant, domain, stream_id, stream_version, \
    event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id, \
    producer, payload, hash";
const COLUMN_COUNT: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only name the benchmarks.
    List,
    /// Prove every path works, in seconds.
    Smoke,
    Full,
}

/// Reads the arguments the way criterion does, so that both agree on whether
/// this is a real run: `cargo bench` passes `--bench`, `cargo test --benches`
/// passes nothing, and `--test` always means a test run.
fn mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        Mode::List
    } else if has("--test") || !has("--bench") {
        Mode::Smoke
    } else {
        Mode::Full
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    warmup: Duration,
    window: Duration,
}

impl Timing {
    fn for_mode(mode: Mode) -> Self {
        if mode != Mode::Full {
            return Self {
                warmup: Duration::from_millis(20),
                window: Duration::from_millis(150),
            };
        }
        let seconds = std::env::var("HERALD_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(DEFAULT_SECONDS);
        let window = Duration::from_secs_f64(seconds);
        Self {
            // Long enough for the pool to fill and plans to be cached, short
            // enough not to dominate short runs.
            warmup: (window / 5).min(Duration::from_secs(1)),
            window,
        }
    }
}

fn main() {
    let mode = mode();
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    if mode == Mode::List {
        // Listing only names benchmarks, so it must work without Postgres.
        register(&mut criterion, None);
        return;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let timing = Timing::for_mode(mode);
    let db = runtime.block_on(TestDatabase::create());
    let store = runtime.block_on(async {
        let mut config = PostgresConfig::new(db.url());
        config.pool_size = POOL_SIZE;
        PostgresStore::open(config)
            .await
            .expect("open the Postgres store")
    });
    let report = runtime.block_on(throughput(&db, &store, timing));
    register(&mut criterion, Some((&runtime, &store)));
    criterion.final_summary();
    runtime.block_on(store.close());
    // Last, so that it is what a `tail` of the output shows.
    report.print(mode, timing);
}

fn register(c: &mut Criterion, target: Option<(&Runtime, &PostgresStore)>) {
    let mut group = c.benchmark_group("postgres");
    group.throughput(Throughput::Elements(CRITERION_CONCURRENCY as u64));
    group.bench_function("append_1_event_64_concurrent", |b| {
        let (runtime, store) = target.expect("criterion runs benchmarks only when not listing");
        let tenant = TenantId::default_tenant();
        let payload = note_payload();
        let streams: Vec<Vec<StreamId>> = (0..CRITERION_CONCURRENCY)
            .map(|k| appender_streams(&format!("crit-{k}")))
            .collect();
        let (tenant, payload, streams) = (&tenant, &payload, &streams);
        let mut round = 0usize;
        b.to_async(runtime).iter_custom(|iters| {
            let first = round;
            round += iters as usize;
            async move {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let stream_index = (first + i) % STREAMS_PER_APPENDER;
                    let appends = streams.iter().map(|own| {
                        store.append(
                            tenant,
                            &own[stream_index],
                            ExpectedVersion::Any,
                            vec![note_event(payload)],
                        )
                    });
                    futures::future::try_join_all(appends)
                        .await
                        .expect("64 concurrent appends");
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

/// A note of a realistic size: about 300 bytes of JSON.
fn note_payload() -> Value {
    let note = "Customer reports that exports time out after the latest upgrade; \
        reproduced on staging with a 40k-row ticket list. Workaround: export by \
        month. Escalated to the platform team with logs attached, waiting for a \
        fix estimate before replying to the customer."
        .to_owned();
    NoteAppended {
        note,
        author: Some("agent-4711@support.example".to_owned()),
    }
    .to_payload()
}

fn note_event(payload: &Value) -> NewEvent {
    NewEvent::new(
        NoteAppended::event_type(),
        NoteAppended::schema_version(),
        payload.clone(),
    )
}

fn appender_streams(appender: &str) -> Vec<StreamId> {
    (0..STREAMS_PER_APPENDER)
        .map(|n| {
            format!("tickets/bench-{appender}-{n}")
                .parse()
                .expect("a valid stream id")
        })
        .collect()
}

/// Counts completed operations of concurrent workers and tells them when to stop.
#[derive(Debug, Default)]
struct Load {
    done: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Measured<T> {
    per_second: f64,
    start: T,
    end: T,
}

/// Lets the workers warm up, counts what they complete during the window, then
/// stops them. Operations in flight at either edge are counted on the side
/// they finish on, which is noise well below a percent at these durations.
/// `probe` runs at both edges, for the caller's own bookkeeping.
async fn measure<P, F, T>(
    load: &Load,
    workers: Vec<JoinHandle<()>>,
    timing: Timing,
    mut probe: P,
) -> Measured<T>
where
    P: FnMut() -> F,
    F: Future<Output = T>,
{
    tokio::time::sleep(timing.warmup).await;
    let (t0, n0) = (Instant::now(), load.done.load(Ordering::Relaxed));
    let start = probe().await;
    tokio::time::sleep(timing.window).await;
    let (t1, n1) = (Instant::now(), load.done.load(Ordering::Relaxed));
    let end = probe().await;
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        // A worker's panic is the bench's failure.
        worker.await.expect("a bench worker");
    }
    Measured {
        per_second: (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
        start,
        end,
    }
}

/// Flushes what earlier levels dirtied, so that no level pays for another's
/// checkpoint. Needs superuser or `pg_checkpoint`; without them the bench
/// still runs, just noisier.
async fn checkpoint(client: &Client) {
    let _ = client.batch_execute("CHECKPOINT").await;
}

#[derive(Debug)]
struct Report {
    payload_bytes: usize,
    raw_single: f64,
    raw_batch: f64,
    /// (single-row, batch) before and after herald's levels.
    raw_runs: [(f64, f64); 2],
    levels: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    appenders: usize,
    per_second: f64,
    appends_per_commit: f64,
}

/// The raw Postgres rates (single-row and batched), in one fresh scratch table.
async fn raw_rates(
    db: &TestDatabase,
    admin: &Client,
    payload: &Value,
    timing: Timing,
) -> (f64, f64) {
    admin
        .batch_execute("CREATE TABLE raw_events (LIKE herald_events INCLUDING ALL)")
        .await
        .expect("create raw_events");
    let shared = Arc::new(SharedColumns::new(payload.clone()));
    let single = raw_inserts(db, admin, &shared, 1, timing).await;
    let batch = raw_inserts(db, admin, &shared, BATCH_ROWS, timing).await;
    admin
        .batch_execute("DROP TABLE raw_events")
        .await
        .expect("drop raw_events");
    (single, batch)
}

async fn throughput(db: &TestDatabase, store: &PostgresStore, timing: Timing) -> Report {
    let payload = note_payload();
    let admin = db.connect().await;
    // The raw rates drift by tens of percent on a busy two-core machine, so
    // they are measured before and after herald's levels and averaged.
    let before = raw_rates(db, &admin, &payload, timing).await;

    let mut levels = Vec::new();
    for appenders in APPENDER_LEVELS {
        checkpoint(&admin).await;
        levels.push(herald_appends(store, &admin, appenders, &payload, timing).await);
    }

    checkpoint(&admin).await;
    let after = raw_rates(db, &admin, &payload, timing).await;
    Report {
        payload_bytes: payload.to_string().len(),
        raw_single: (before.0 + after.0) / 2.0,
        raw_batch: (before.1 + after.1) / 2.0,
        raw_runs: [before, after],
        levels,
    }
}

/// The columns every row shares, with the values herald writes for them.
#[derive(Debug)]
struct SharedColumns {
    tenant: String,
    domain: String,
    event_type: String,
    schema_version: i32,
    producer: String,
    payload: Value,
}

impl SharedColumns {
    fn new(payload: Value) -> Self {
        let event_type = NoteAppended::event_type();
        Self {
            tenant: TenantId::default_tenant().as_str().to_owned(),
            domain: event_type.domain().to_owned(),
            event_type: event_type.as_str().to_owned(),
            schema_version: NoteAppended::schema_version().get() as i32,
            producer: NewEvent::DEFAULT_PRODUCER.to_owned(),
            payload,
        }
    }
}

/// The columns that differ per row, filled like herald fills them.
#[derive(Debug)]
struct RawRow {
    position: i64,
    id: Uuid,
    stream_id: String,
    stream_version: i64,
    at: DateTime<Utc>,
    hash: Vec<u8>,
}

impl RawRow {
    /// Row `n` (from 0) of a run: positions from 1, 100 streams filled round robin.
    fn new(n: u64) -> Self {
        let id = Uuid::now_v7();
        let streams = STREAMS_PER_APPENDER as u64;
        Self {
            position: n as i64 + 1,
            id,
            stream_id: format!("bench-raw-{}", n % streams),
            stream_version: (n / streams) as i64 + 1,
            at: Utc::now().trunc_subsecs(6),
            // Postgres only sees 32 bytes; what they hash does not matter here.
            hash: [id.as_bytes().as_slice(), id.as_bytes().as_slice()].concat(),
        }
    }

    fn params<'a>(&'a self, shared: &'a SharedColumns) -> [&'a (dyn ToSql + Sync); COLUMN_COUNT] {
        [
            &self.position,
            &self.id,
            &shared.tenant,
            &shared.domain,
            &self.stream_id,
            &self.stream_version,
            &shared.event_type,
            &shared.schema_version,
            &self.at,
            &self.at,
            &self.id,
            &self.id,
            &shared.producer,
            &shared.payload,
            &self.hash,
        ]
    }
}

/// `rows` rows per `INSERT` statement from one client, each statement its own
/// (autocommit) transaction, into an emptied `raw_events`; returns rows/s.
async fn raw_inserts(
    db: &TestDatabase,
    admin: &Client,
    shared: &Arc<SharedColumns>,
    rows: usize,
    timing: Timing,
) -> f64 {
    admin
        .batch_execute("TRUNCATE raw_events")
        .await
        .expect("truncate raw_events");
    checkpoint(admin).await;
    let client = db.connect().await;
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let placeholders: Vec<String> = (1..=COLUMN_COUNT)
                .map(|c| format!("${}", r * COLUMN_COUNT + c))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let insert = client
        .prepare(&format!(
            "INSERT INTO raw_events ({COLUMNS}) VALUES {}",
            tuples.join(", ")
        ))
        .await
        .expect("prepare the raw INSERT");

    let load = Arc::new(Load::default());
    let worker = {
        let load = load.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            while !load.stopped() {
                let batch: Vec<RawRow> = (next..next + rows as u64).map(RawRow::new).collect();
                next += rows as u64;
                let params: Vec<&(dyn ToSql + Sync)> =
                    batch.iter().flat_map(|row| row.params(&shared)).collect();
                client.execute(&insert, &params).await.expect("raw INSERT");
                load.add(rows as u64);
            }
        })
    };
    measure(&load, vec![worker], timing, || async {})
        .await
        .per_second
}

async fn herald_appends(
    store: &PostgresStore,
    admin: &Client,
    appenders: usize,
    payload: &Value,
    timing: Timing,
) -> Level {
    let load = Arc::new(Load::default());
    let workers = (0..appenders)
        .map(|a| {
            let store = store.clone();
            let load = load.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let tenant = TenantId::default_tenant();
                let streams = appender_streams(&a.to_string());
                let mut n = 0usize;
                while !load.stopped() {
                    store
                        .append(
                            &tenant,
                            &streams[n % STREAMS_PER_APPENDER],
                            ExpectedVersion::Any,
                            vec![note_event(&payload)],
                        )
                        .await
                        .expect("herald append");
                    load.add(1);
                    n += 1;
                }
            })
        })
        .collect();
    let measured = measure(&load, workers, timing, || async move {
        store.head().await.expect("read the log head").position
    })
    .await;
    Level {
        appenders,
        per_second: measured.per_second,
        appends_per_commit: appends_per_commit(admin, measured.start, measured.end).await,
    }
}

/// The mean group-commit batch over a stretch of the log. Every event of one
/// batch carries the batch's record time and batches are milliseconds apart,
/// so distinct record times count commits without instrumenting the store.
async fn appends_per_commit(admin: &Client, after: Position, upto: Position) -> f64 {
    let (after, upto) = (after.get() as i64, upto.get() as i64);
    let commits: i64 = admin
        .query_one(
            "SELECT count(DISTINCT recorded_at) FROM herald_events \
             WHERE position > $1 AND position <= $2",
            &[&after, &upto],
        )
        .await
        .expect("count commits")
        .get(0);
    if commits == 0 {
        return 0.0;
    }
    (upto - after) as f64 / commits as f64
}

impl Report {
    fn print(&self, mode: Mode, timing: Timing) {
        let seconds = timing.window.as_secs_f64();
        if mode == Mode::Smoke {
            println!("append bench SMOKE RUN ({seconds} s per level; the numbers mean nothing)");
        } else {
            println!("append bench (Postgres, same run, {seconds} s per level)");
        }
        println!(
            "payload {} bytes of JSON, 1 event per append, group commit defaults, pool {POOL_SIZE}",
            self.payload_bytes
        );
        let [(single_before, batch_before), (single_after, batch_after)] = self.raw_runs;
        println!(
            "raw single-row INSERT per txn:  {:>9.0} rows/s  (mean of {single_before:.0} before and {single_after:.0} after)",
            self.raw_single
        );
        println!(
            "raw {BATCH_ROWS}-row INSERT per txn:   {:>9.0} rows/s  (mean of {batch_before:.0} before and {batch_after:.0} after)",
            self.raw_batch
        );
        for level in &self.levels {
            let label = format!(
                "herald append, {} appender{}:",
                level.appenders,
                if level.appenders == 1 { "" } else { "s" }
            );
            println!(
                "{label:<31} {:>9.0} appends/s  ({:.2}x raw single-row, {:.2}x raw {BATCH_ROWS}-row batch; ~{:.1} appends/commit)",
                level.per_second,
                level.per_second / self.raw_single,
                level.per_second / self.raw_batch,
                level.appends_per_commit,
            );
        }
        if let Some(top) = self.levels.iter().find(|l| l.appenders == 64) {
            let met = top.per_second >= TARGET_OF_BATCH * self.raw_batch
                && top.per_second >= TARGET_OF_SINGLE * self.raw_single;
            println!(
                "target: 64 appenders >= {TARGET_OF_BATCH:.2}x raw {BATCH_ROWS}-row batch and >= {TARGET_OF_SINGLE:.0}x raw single-row: {}",
                if met { "MET" } else { "NOT MET" }
            );
        }
    }
}
