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
//! counts what completed in between (the baselines, the timing and the
//! counting live in `support/raw_postgres.rs`, shared with the commands
//! bench). The table of rates and ratios, and
//! whether the 64-appender target is met, is printed last.
//!
//! Run with `cargo bench --bench append`. Postgres is taken from
//! `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the user must be allowed to
//! create databases). `HERALD_BENCH_SECONDS` sets the seconds per level
//! (default 5). `cargo bench --bench append -- --test` and
//! `cargo test --benches` do a smoke run that takes seconds; `-- --list` lists
//! the criterion benchmark without touching Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use herald_events::tickets::NoteAppended;
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_postgres::Client;

#[path = "support/raw_postgres.rs"]
mod raw_postgres;

use raw_postgres::{
    appends_per_commit, checkpoint, measure, mode, note_payload, raw_rates, Load, Mode,
    RawBaselines, Timing, BATCH_ROWS,
};

/// The allocator the `herald` binary runs with, so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const APPENDER_LEVELS: [usize; 3] = [1, 8, 64];
const STREAMS_PER_APPENDER: usize = 100;
const CRITERION_CONCURRENCY: usize = 64;
const POOL_SIZE: usize = 16;
/// The target for 64 appenders, as fractions of the raw baselines.
const TARGET_OF_BATCH: f64 = 0.5;
const TARGET_OF_SINGLE: f64 = 10.0;

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

#[derive(Debug)]
struct Report {
    payload_bytes: usize,
    raw: RawBaselines,
    levels: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    appenders: usize,
    per_second: f64,
    appends_per_commit: f64,
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
        raw: RawBaselines {
            runs: [before, after],
        },
        levels,
    }
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
        self.raw.print();
        for level in &self.levels {
            let label = format!(
                "herald append, {} appender{}:",
                level.appenders,
                if level.appenders == 1 { "" } else { "s" }
            );
            println!(
                "{label:<31} {:>9.0} appends/s  ({:.2}x raw single-row, {:.2}x raw {BATCH_ROWS}-row batch; ~{:.1} appends/commit)",
                level.per_second,
                level.per_second / self.raw.single(),
                level.per_second / self.raw.batch(),
                level.appends_per_commit,
            );
        }
        if let Some(top) = self.levels.iter().find(|l| l.appenders == 64) {
            let met = top.per_second >= TARGET_OF_BATCH * self.raw.batch()
                && top.per_second >= TARGET_OF_SINGLE * self.raw.single();
            println!(
                "target: 64 appenders >= {TARGET_OF_BATCH:.2}x raw {BATCH_ROWS}-row batch and >= {TARGET_OF_SINGLE:.0}x raw single-row: {}",
                if met { "MET" } else { "NOT MET" }
            );
        }
    }
}
