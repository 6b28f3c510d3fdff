//! Events through 100 enabled automations, beside the append rate of the
//! same run with no automation — issue 18's target is ≥ 0.5× — and the raw
//! Postgres insert rates of the same server (the machine's limit).
//!
//! In one fresh database (made by `herald_testkit`, dropped at the end):
//! - **appends alone**: 8 appenders each append one ~300-byte
//!   `tickets.note_appended` per call (as producers publish), `N` events in
//!   all; the rate is `N` over the time from the first append to the last
//!   acknowledgement. No engine runs.
//! - **through 100 automations**: the same appends while the automations
//!   engine runs 100 enabled automations, each triggered by every one of
//!   these events and each with a condition that holds for 1 in 10 000
//!   events, so 1 % of events cause one appended event. The rate is `N`
//!   over the time from the first append until the engine has handled the
//!   last event (and appended what it caused). Twice: with equality
//!   conditions (`event.payload.author == 'agent-7'`), which the engine
//!   indexes, then with the same selection written as `event.payload.author
//!   in ['agent-7']`, which it evaluates for every event;
//! - the order is alone, indexed, evaluated, alone: the two "alone" rates
//!   are averaged because the table grows between them;
//! - raw single-row and 1000-row `INSERT`s of rows of the same shape, from
//!   `support/raw_postgres.rs`.
//!
//! Run with `cargo bench --bench automations`; `HERALD_BENCH_EVENTS` sets
//! `N` (default 20 000). `cargo test --benches` does a smoke run of seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_automations::engine::{Engine, EngineConfig};
use herald_events::tickets::NoteAppended;
use herald_events::{Position, StreamId, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::json;

#[path = "support/raw_postgres.rs"]
#[allow(dead_code)]
mod raw_postgres;

use raw_postgres::{mode, note_payload, raw_rates, Mode, Timing};

/// The allocator the `herald` binary runs with, so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const APPENDERS: usize = 8;
const AUTOMATIONS: usize = 100;
/// Distinct authors: each automation's condition names one of the first
/// [`AUTOMATIONS`], so 1 % of events meet one condition.
const AUTHORS: usize = 10_000;
const TARGET: f64 = 0.5;

fn main() {
    let mode = mode();
    if mode == Mode::List {
        return;
    }
    let events: usize = match mode {
        Mode::Full => std::env::var("HERALD_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000),
        _ => 400,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run(mode, events));
}

/// The `k`-th event's payload: the note of the other benches, by one of
/// [`AUTHORS`] authors.
fn payload(k: usize) -> serde_json::Value {
    let mut p = note_payload();
    p["author"] = json!(format!("agent-{}", k % AUTHORS));
    p
}

/// Appends `events` events from [`APPENDERS`] appenders; the last
/// position appended and the time the appends took.
async fn append_all(
    store: &Arc<dyn EventStore>,
    round: &str,
    events: usize,
) -> (Position, Duration) {
    let tenant = TenantId::default_tenant();
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|a| {
            let store = Arc::clone(store);
            let tenant = tenant.clone();
            let round = round.to_owned();
            tokio::spawn(async move {
                let mut last = Position::START;
                for k in (a..events).step_by(APPENDERS) {
                    let stream: StreamId =
                        format!("tickets/{round}-{a}-{}", k % 100).parse().unwrap();
                    let event = NoteAppended::from_payload(payload(k))
                        .unwrap()
                        .to_new_event();
                    let outcome = store
                        .append(&tenant, &stream, ExpectedVersion::Any, vec![event])
                        .await
                        .expect("append");
                    last = last.max(outcome.last_position());
                }
                last
            })
        })
        .collect();
    let mut last = Position::START;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    (last, started.elapsed())
}

async fn run(mode: Mode, events: usize) {
    let db = TestDatabase::create().await;
    let mut config = PostgresConfig::new(db.url());
    config.pool_size = 16;
    let store: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(config).await.expect("open the store"));

    // Alone, first.
    let (_, alone_1) = append_all(&store, "a1", events).await;

    // 100 automations, each with a condition, and the engine: first
    // conditions the engine indexes (an equality on a payload field), then
    // the same selection written so that it cannot (`in` a list), which
    // evaluates every condition for every event.
    let list = herald::domains::shared_builtin();
    let automations = herald::automations::Automations::new(Arc::clone(&store), Arc::clone(&list));
    let tenant = TenantId::default_tenant();
    let save = |prefix: &'static str, when: fn(usize) -> String, enabled: bool| {
        let automations = &automations;
        let tenant = &tenant;
        async move {
            for i in 0..AUTOMATIONS {
                let definition = json!({
                    "name": format!("{prefix}-{i}"),
                    "trigger": {"event": {"types": ["tickets.note_appended"]}},
                    "when": when(i),
                    "actions": [{"event": {"stream": "tickets/seen-{{ event.stream_id }}", "type": "tickets.note_appended",
                                           "payload": {"note": "seen by {{ automation.name }}", "author": "automation"}}}]
                });
                automations
                    .apply(tenant, &definition, enabled, None)
                    .await
                    .expect("the automation is accepted");
            }
        }
    };
    save(
        "indexed",
        |i| format!("event.payload.author == 'agent-{i}'"),
        true,
    )
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let engine = Engine::new(
        Arc::clone(&store),
        herald_actors::Domains::default(),
        automations.states(),
        list.registry().expect("the registry"),
        EngineConfig::default(),
    );
    let position = engine.position();
    let task = engine.spawn(stopped);
    let through = |round: &'static str| {
        let store = Arc::clone(&store);
        let position = Arc::clone(&position);
        async move {
            // The engine is at the head before the measured appends.
            let head = store.head().await.unwrap().position;
            while *position.lock().unwrap() < head {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let started = Instant::now();
            let (last, _) = append_all(&store, round, events).await;
            while *position.lock().unwrap() < last {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            started.elapsed()
        }
    };
    let through_indexed = through("b").await;
    for i in 0..AUTOMATIONS {
        automations
            .switch(&tenant, &format!("indexed-{i}"), false, None)
            .await
            .expect("disabled");
    }
    save(
        "scanned",
        |i| format!("event.payload.author in ['agent-{i}']"),
        true,
    )
    .await;
    let through_scanned = through("c").await;
    let _ = stop.send(true);
    let _ = task.await;
    // What the automations caused: 1 % of the events, twice.
    let mut query = herald_store::SearchQuery::new(tenant.clone());
    query.types = vec!["tickets.note_appended".into()];
    query.payload_equals = vec![(vec!["author".into()], json!("automation"))];
    query.limit = 1000;
    let mut caused = 0;
    loop {
        let page = store.search(&query).await.unwrap();
        caused += page.events.len();
        match page.last_scanned {
            Some(p) => query.after = p,
            None => break,
        }
    }
    let expected_caused = (0..events).filter(|k| k % AUTHORS < AUTOMATIONS).count();
    assert_eq!(
        caused,
        2 * expected_caused,
        "the automations acted on exactly their events"
    );

    // Alone, again.
    let (_, alone_2) = append_all(&store, "a2", events).await;

    let admin = db.connect().await;
    let (single, batch) = raw_rates(&db, &admin, &note_payload(), Timing::for_mode(mode)).await;
    store.close().await;

    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    let alone = (rate(alone_1) + rate(alone_2)) / 2.0;
    let (indexed, scanned) = (rate(through_indexed), rate(through_scanned));
    println!();
    println!("automations: {events} events, {APPENDERS} appenders, {AUTOMATIONS} automations with a condition each ({expected_caused} acted on)");
    println!("| measure | events/s | / appends alone |");
    println!("|---|---:|---:|");
    println!("| appends alone, first run | {:.0} | |", rate(alone_1));
    println!("| appends alone, last run | {:.0} | |", rate(alone_2));
    println!("| through {AUTOMATIONS} automations, equality conditions (indexed) | {indexed:.0} | {:.2} |", indexed / alone);
    println!("| through {AUTOMATIONS} automations, `in` conditions (each evaluated) | {scanned:.0} | {:.2} |", scanned / alone);
    println!("| raw single-row INSERT, one client | {single:.0} | |");
    println!("| raw 1000-row INSERT, one client | {batch:.0} | |");
    for (what, ratio) in [
        ("equality conditions", indexed / alone),
        ("`in` conditions", scanned / alone),
    ] {
        println!(
            "through automations / appends alone, {what} = {ratio:.2} (target ≥ {TARGET}): {}",
            if ratio >= TARGET { "met" } else { "NOT met" }
        );
    }
    if mode != Mode::Full {
        println!("(a smoke run: the figures mean nothing)");
    }
}
