//! Rebuild speed of the read models, against the raw binary `COPY` rate of
//! the same Postgres in the same run, so the printed ratio means the same
//! thing on any machine.
//!
//! In one fresh database (made by `herald_testkit`, dropped at the end):
//! - the raw baseline: rows of the event table's shape (~300-byte payload)
//!   streamed by one client with binary `COPY` into a copy of the event
//!   table (`support/raw_postgres.rs`), measured before and after the
//!   rebuilds and averaged;
//! - a log of 100,000 events (`support/workload.rs`: tickets, edges, drafts,
//!   timers, countdowns and editor sessions over 3 tenants and a month)
//!   appended through `PostgresStore`;
//! - every read model of `herald serve` (`read_models::all()`) built once
//!   (its first generation), then **rebuilt blue-green all at once**
//!   (`ProjectionRunner::rebuild` for each, timed until every new
//!   generation serves): the figure is log events per second, i.e. how
//!   fast the whole read side is rebuilt from the log; then each read model
//!   alone, for where the time goes.
//!
//! Target: the all-at-once rebuild ≥ 30% of the raw COPY rate.
//!
//! Run with `cargo bench --bench rebuild`. `HERALD_BENCH_EVENTS` sets the
//! log's size (default 100,000). `-- --test` (or `cargo test --benches`)
//! does a smoke run with 3,000 events; `-- --list` names the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_projections::{ProjectionRunner, RunnerConfig};
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use tokio::sync::watch;

#[path = "support/raw_postgres.rs"]
#[allow(dead_code)]
mod raw_postgres;
#[path = "support/workload.rs"]
mod workload;

use raw_postgres::{mode, note_payload, raw_copy_rate, Mode};

const TARGET: f64 = 0.30;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mode = mode();
    if mode == Mode::List {
        println!("rebuild/all_read_models: bench");
        println!("rebuild/each_read_model: bench");
        return;
    }
    let events: usize = match mode {
        Mode::Smoke => 3_000,
        _ => std::env::var("HERALD_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000),
    };
    let db = TestDatabase::create().await;
    let admin = db.connect().await;
    let mut config = PostgresConfig::new(db.url());
    config.pool_size = 16;
    let store = PostgresStore::open(config).await.expect("open the store");
    let pool = store.pool().clone();
    let store: Arc<dyn EventStore> = Arc::new(store);
    let payload = note_payload();
    let copy_rows = (events as u64).min(100_000);
    let copy_before = raw_copy_rate(&db, &admin, &payload, copy_rows).await;
    println!("raw binary COPY: {copy_before:.0} rows/s (before)");

    let started = Instant::now();
    let appended = workload::append_all(
        &store,
        workload::mixed(events, &["acme", "globex", "initech"], 7),
        64,
    )
    .await;
    println!(
        "appended {appended} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    admin.batch_execute("VACUUM ANALYZE").await.expect("vacuum");

    let runner = ProjectionRunner::new(
        pool,
        Arc::clone(&store),
        herald_projections::read_models::all(),
    )
    .with_config(RunnerConfig {
        poll_interval: Duration::from_millis(10),
        retire_grace: Duration::ZERO,
        ..RunnerConfig::default()
    });
    runner.install().await.expect("install the read models");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let first = Instant::now();
    wait_serving(&runner, &runner.names()).await;
    println!(
        "first build (every read model, from empty): {:.1} s",
        first.elapsed().as_secs_f64()
    );

    // Every read model at once: the whole read side rebuilt from the log.
    let names = runner.names();
    let started = Instant::now();
    for name in &names {
        runner.rebuild(name).await.expect("start a rebuild");
    }
    wait_serving(&runner, &names).await;
    let all = started.elapsed().as_secs_f64();
    let all_rate = appended as f64 / all;

    // Each alone.
    let mut each = Vec::new();
    for name in &names {
        let started = Instant::now();
        runner.rebuild(name).await.expect("start a rebuild");
        wait_serving(&runner, &[*name]).await;
        let secs = started.elapsed().as_secs_f64();
        each.push((*name, secs, appended as f64 / secs));
    }

    let copy_after = raw_copy_rate(&db, &admin, &payload, copy_rows).await;
    let copy = (copy_before + copy_after) / 2.0;
    println!();
    println!("raw binary COPY: {copy_before:.0} rows/s before, {copy_after:.0} after, mean {copy:.0} rows/s");
    println!(
        "rebuild/all_read_models ({} read models, {appended} events): {all:.2} s = {all_rate:.0} events/s = {:.2}x raw COPY",
        names.len(),
        all_rate / copy
    );
    for (name, secs, rate) in &each {
        println!(
            "rebuild/each_read_model {name:<10}: {secs:.2} s = {rate:.0} events/s = {:.2}x raw COPY",
            rate / copy
        );
    }
    let ratio = all_rate / copy;
    println!(
        "target: all read models rebuilt at >= {:.0}% of the raw COPY rate: {} ({:.0}%)",
        TARGET * 100.0,
        if ratio >= TARGET { "MET" } else { "NOT MET" },
        ratio * 100.0
    );
}

/// Waits until none of `names` is rebuilding and each has applied the head.
async fn wait_serving(runner: &ProjectionRunner, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let mut done = true;
        for name in names {
            let status = runner.status(name).await.expect("status");
            if status.rebuild.is_some() || status.lag_events > 0 {
                done = false;
                break;
            }
        }
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild ends within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
