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
//! - checked appends, as every way in makes them: each event validated by
//!   the event registry before it is appended, of one 20-property schema
//!   registered two ways — compiled in (`bench.order_placed`, as a domain
//!   built into the binary registers it) and at run time for the tenant
//!   (`orders.order_placed`, as `POST /v1/schemas` does) — with the same
//!   payload, by 8 and 64 appenders, two windows each in the order
//!   built-in, runtime, runtime, built-in; the runtime type's
//!   rate over the built-in one's is issue 17's target (≥ 0.9);
//! - personal fields (issue 19): `tickets.note_appended` events whose two
//!   fields are both personal (`note` and `author`, 1000 authors), appended
//!   by 8 and 64 appenders through a store without the privacy layer and
//!   through one with it (every event sealed: two values encrypted under
//!   their author's key), two windows each in the order plain, sealed,
//!   sealed, plain; the sealed rate over the plain one is the target
//!   (≥ 0.8). Then the log is filled to 1,000,000 events (the smoke run: to
//!   10,000) and forgetting one author is timed, five times;
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
use herald_events::registry::events::{RegistryChange, SchemaRegistered};
use herald_events::tickets::NoteAppended;
use herald_events::{
    Compatibility, EventRegistry, EventType, NewEvent, SchemaVersion, StreamId, TenantId,
    TypedEvent,
};
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
/// Checked appends: appenders, and the runtime type's target as a fraction
/// of the built-in type's rate.
const CHECKED_LEVELS: [usize; 2] = [8, 64];
const TARGET_RUNTIME_OF_BUILTIN: f64 = 0.9;
/// The checked appends' types: one schema, compiled in and registered at
/// run time.
const BUILTIN_TYPE: &str = "bench.order_placed";
const RUNTIME_TYPE: &str = "orders.order_placed";
/// Personal fields: appenders, the target of the sealed rate as a fraction
/// of the plain one, how many subjects (authors) the events belong to, and
/// how many events the log holds when a subject is forgotten.
const PERSONAL_LEVELS: [usize; 2] = [8, 64];
const TARGET_SEALED_OF_PLAIN: f64 = 0.8;
const PERSONAL_SUBJECTS: usize = 1000;
const FORGET_AMONG: u64 = 1_000_000;

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
    // `HERALD_BENCH_ONLY=personal` runs the personal-fields part alone
    // (its target compares two rates of the same run, not the raw ones).
    if std::env::var("HERALD_BENCH_ONLY").is_ok_and(|v| v == "personal") {
        let personal = runtime.block_on(personal_fields(&db, &store, mode, timing));
        runtime.block_on(store.close());
        personal.print();
        return;
    }
    let mut report = runtime.block_on(throughput(&db, &store, timing));
    report.personal = Some(runtime.block_on(personal_fields(&db, &store, mode, timing)));
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
    checked: Vec<Checked>,
    runtime_payload_bytes: usize,
    personal: Option<PersonalReport>,
}

/// The personal-fields run.
#[derive(Debug)]
struct PersonalReport {
    plain_bytes: usize,
    sealed_bytes: usize,
    levels: Vec<Personal>,
    /// Events in the log when the subjects were forgotten.
    log_events: u64,
    /// Each forget's wall time.
    forgets: Vec<Duration>,
}

/// Plain and sealed appends/s at one level, each the mean of two windows.
#[derive(Debug)]
struct Personal {
    appenders: usize,
    plain: f64,
    sealed: f64,
}

/// Checked appends at one level: built-in and runtime type rates, each
/// the mean of two windows each (in the order A B B A).
#[derive(Debug)]
struct Checked {
    appenders: usize,
    builtin: f64,
    runtime: f64,
}

/// The 20-property schema of the runtime type.
fn runtime_schema() -> Value {
    let mut properties = serde_json::Map::new();
    for i in 1..=20 {
        let schema = match i % 5 {
            0 => serde_json::json!({"type": "string", "minLength": 1, "maxLength": 40}),
            1 => serde_json::json!({"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            2 => serde_json::json!({"type": "number", "minimum": 0}),
            3 => serde_json::json!({"type": "boolean"}),
            _ => serde_json::json!({"type": "string", "enum": ["web", "store", "phone"]}),
        };
        properties.insert(format!("p{i:02}"), schema);
    }
    let required: Vec<String> = (1..=20).map(|i| format!("p{i:02}")).collect();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false
    })
}

/// A payload of the runtime type, about the size of the note.
fn runtime_payload() -> Value {
    let mut payload = serde_json::Map::new();
    for i in 1..=20 {
        let value = match i % 5 {
            0 => Value::from(format!("value number {i} of the order")),
            1 => Value::from(1000 + i),
            2 => Value::from(12.5 * f64::from(i)),
            3 => Value::from(i % 2 == 0),
            _ => Value::from("web"),
        };
        payload.insert(format!("p{i:02}"), value);
    }
    Value::Object(payload)
}

/// The built-in registry plus the 20-property schema compiled in as
/// [`BUILTIN_TYPE`], with the same schema installed for `tenant` as the
/// runtime type [`RUNTIME_TYPE`], as `herald serve` has it once the
/// registration is applied.
fn registry_with_runtime_type(tenant: &TenantId) -> EventRegistry {
    let registry = EventRegistry::builder()
        .embedded_schemas()
        .and_then(|b| {
            b.schema(
                BUILTIN_TYPE.parse().expect("a valid type"),
                SchemaVersion::V1,
                runtime_schema(),
            )
        })
        .expect("the built-in registry and the bench type")
        .build();
    registry.runtime().install(
        tenant,
        1,
        &RegistryChange::Registered(SchemaRegistered {
            event_type: RUNTIME_TYPE.to_owned(),
            version: 1,
            schema: runtime_schema(),
            compatibility: Compatibility::Backward,
            upcaster: None,
            reads_previous: false,
        }),
    );
    registry
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

    let tenant = TenantId::default_tenant();
    let registry = registry_with_runtime_type(&tenant);
    let builtin: (EventType, Value) = (
        BUILTIN_TYPE.parse().expect("a valid type"),
        runtime_payload(),
    );
    let runtime: (EventType, Value) = (
        RUNTIME_TYPE.parse().expect("a valid type"),
        runtime_payload(),
    );
    let mut checked = Vec::new();
    for appenders in CHECKED_LEVELS {
        let mut rates = [0.0f64; 2];
        // In the order A B B A: the tables grow and the machine drifts
        // through the four windows, and this order puts both types at the
        // same mean place in it (A B A B would always run the runtime type
        // later, on bigger tables).
        for i in [0, 1, 1, 0] {
            let (event_type, payload) = [&builtin, &runtime][i];
            checkpoint(&admin).await;
            rates[i] += checked_appends(store, &registry, appenders, event_type, payload, timing)
                .await
                / 2.0;
        }
        checked.push(Checked {
            appenders,
            builtin: rates[0],
            runtime: rates[1],
        });
    }

    checkpoint(&admin).await;
    let after = raw_rates(db, &admin, &payload, timing).await;
    Report {
        payload_bytes: payload.to_string().len(),
        raw: RawBaselines {
            runs: [before, after],
        },
        levels,
        checked,
        runtime_payload_bytes: runtime.1.to_string().len(),
        personal: None,
    }
}

/// A note of `author`, both of its fields personal.
fn personal_note(author: usize) -> NewEvent {
    note_event(
        &NoteAppended {
            note: raw_postgres::note_text(),
            author: Some(format!("author-{author:04}@support.example")),
        }
        .to_payload(),
    )
}

/// The personal-fields run: the same notes through a store without the
/// privacy layer and through one with it, then forgetting in a big log.
async fn personal_fields(
    db: &TestDatabase,
    plain: &PostgresStore,
    mode: Mode,
    timing: Timing,
) -> PersonalReport {
    let admin = db.connect().await;
    let plain: Arc<dyn EventStore> = Arc::new(plain.clone());
    let mut config = PostgresConfig::new(db.url());
    config.pool_size = POOL_SIZE;
    let sealed: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(config)
            .await
            .expect("open a second store on the database"),
    );
    let privacy = herald_privacy::Privacy::open(
        Arc::clone(&sealed),
        EventRegistry::builtin().expect("the built-in registry"),
        herald_privacy::MasterSource::Configured(herald_privacy::MasterKeys::new(
            herald_privacy::MasterKey::generate(),
            Vec::new(),
        )),
    )
    .await
    .expect("open the privacy layer");
    let tenant = TenantId::default_tenant();
    // Every author's key exists before the windows, as in a running system.
    let warm: Vec<NewEvent> = (0..PERSONAL_SUBJECTS).map(personal_note).collect();
    let stream: StreamId = "tickets/personal-warmup".parse().expect("a stream id");
    sealed
        .append(&tenant, &stream, ExpectedVersion::Any, warm)
        .await
        .expect("the warm-up append");
    let mut sample = vec![personal_note(0)];
    let plain_bytes = sample[0].payload.to_string().len();
    privacy
        .seal_events(&tenant, &mut sample)
        .await
        .expect("seal a sample");
    let sealed_bytes = sample[0].payload.to_string().len();

    let mut levels = Vec::new();
    for appenders in PERSONAL_LEVELS {
        let mut rates = [0.0f64; 2];
        for i in [0, 1, 1, 0] {
            checkpoint(&admin).await;
            let store = [&plain, &sealed][i];
            rates[i] += personal_appends(store, appenders, i, timing).await / 2.0;
        }
        levels.push(Personal {
            appenders,
            plain: rates[0],
            sealed: rates[1],
        });
    }

    // Forgetting does not depend on the log's size; it is timed in a log
    // of a million events all the same.
    let among = if mode == Mode::Full {
        FORGET_AMONG
    } else {
        10_000
    };
    fill(&sealed, among).await;
    let log_events = sealed.head().await.expect("the head").position.get();
    let mut forgets = Vec::new();
    for k in 0..5 {
        let author = format!("author-{:04}@support.example", k * 7);
        let started = Instant::now();
        let done = privacy
            .forget(&tenant, &author, "bench", None)
            .await
            .expect("forget");
        forgets.push(started.elapsed());
        assert_eq!(done.keys_destroyed.len(), 1, "the author had one key");
    }
    sealed.close().await;
    PersonalReport {
        plain_bytes,
        sealed_bytes,
        levels,
        log_events,
        forgets,
    }
}

/// Appends/s of personal notes through `store` by `appenders` appenders.
async fn personal_appends(
    store: &Arc<dyn EventStore>,
    appenders: usize,
    run: usize,
    timing: Timing,
) -> f64 {
    let load = Arc::new(Load::default());
    let workers = (0..appenders)
        .map(|a| {
            let store = Arc::clone(store);
            let load = load.clone();
            tokio::spawn(async move {
                let tenant = TenantId::default_tenant();
                let streams = appender_streams(&format!("personal-{run}-{a}"));
                let mut n = 0usize;
                while !load.stopped() {
                    store
                        .append(
                            &tenant,
                            &streams[n % STREAMS_PER_APPENDER],
                            ExpectedVersion::Any,
                            vec![personal_note((a * 131 + n) % PERSONAL_SUBJECTS)],
                        )
                        .await
                        .expect("herald append");
                    load.add(1);
                    n += 1;
                }
            })
        })
        .collect();
    let store = Arc::clone(store);
    measure(&load, workers, timing, move || {
        let store = Arc::clone(&store);
        async move { store.head().await.expect("read the log head").position }
    })
    .await
    .per_second
}

/// Appends sealed notes, 1000 per append by 8 appenders, until the log
/// holds `events`.
async fn fill(store: &Arc<dyn EventStore>, events: u64) {
    let tenant = TenantId::default_tenant();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(store);
            let tenant = tenant.clone();
            tokio::spawn(async move {
                let stream: StreamId = format!("tickets/fill-{w}").parse().expect("a stream id");
                let mut n = 0usize;
                while store.head().await.expect("the head").position.get() < events {
                    let batch = (0..1000)
                        .map(|i| personal_note((n + i) % PERSONAL_SUBJECTS))
                        .collect();
                    store
                        .append(&tenant, &stream, ExpectedVersion::Any, batch)
                        .await
                        .expect("a fill append");
                    n += 1000;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a fill worker");
    }
}

/// Appends/s of events of `event_type`, each validated by the registry
/// first, by `appenders` concurrent appenders.
async fn checked_appends(
    store: &PostgresStore,
    registry: &EventRegistry,
    appenders: usize,
    event_type: &EventType,
    payload: &Value,
    timing: Timing,
) -> f64 {
    let load = Arc::new(Load::default());
    let workers = (0..appenders)
        .map(|a| {
            let store = store.clone();
            let load = load.clone();
            let payload = payload.clone();
            let registry = registry.clone();
            let event_type = event_type.clone();
            tokio::spawn(async move {
                let tenant = TenantId::default_tenant();
                let domain = event_type.domain().to_owned();
                let streams: Vec<StreamId> = (0..STREAMS_PER_APPENDER)
                    .map(|n| {
                        format!("{domain}/checked-{a}-{n}")
                            .parse()
                            .expect("a valid stream id")
                    })
                    .collect();
                let mut n = 0usize;
                while !load.stopped() {
                    registry
                        .validate_in(&tenant, &event_type, SchemaVersion::V1, &payload)
                        .expect("a valid payload");
                    store
                        .append(
                            &tenant,
                            &streams[n % STREAMS_PER_APPENDER],
                            ExpectedVersion::Any,
                            vec![NewEvent::new(
                                event_type.clone(),
                                SchemaVersion::V1,
                                payload.clone(),
                            )],
                        )
                        .await
                        .expect("herald append");
                    load.add(1);
                    n += 1;
                }
            })
        })
        .collect();
    measure(&load, workers, timing, || async move {
        store.head().await.expect("read the log head").position
    })
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
        println!(
            "checked appends (validated by the registry, then appended), one 20-property schema: compiled in as {BUILTIN_TYPE} vs registered at run time as {RUNTIME_TYPE}, the same {}-byte payload, mean of 2 windows each, in the order A B B A",
            self.runtime_payload_bytes
        );
        for level in &self.checked {
            println!(
                "  {:>2} appenders: built-in {:>8.0}/s  runtime {:>8.0}/s  ratio {:.2} (target >= {TARGET_RUNTIME_OF_BUILTIN:.2}: {})",
                level.appenders,
                level.builtin,
                level.runtime,
                level.runtime / level.builtin,
                if level.runtime >= TARGET_RUNTIME_OF_BUILTIN * level.builtin { "MET" } else { "NOT MET" }
            );
        }
        if let Some(personal) = &self.personal {
            personal.print();
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

impl PersonalReport {
    fn print(&self) {
        println!(
            "personal fields: tickets.note_appended with both fields personal ({} authors), {} bytes plain, {} bytes sealed; a store without the privacy layer vs one with it, mean of 2 windows each, in the order A B B A",
            PERSONAL_SUBJECTS, self.plain_bytes, self.sealed_bytes
        );
        for level in &self.levels {
            println!(
                "  {:>2} appenders: plain {:>8.0}/s  sealed {:>8.0}/s  ratio {:.2} (target >= {TARGET_SEALED_OF_PLAIN:.2}: {})",
                level.appenders,
                level.plain,
                level.sealed,
                level.sealed / level.plain,
                if level.sealed >= TARGET_SEALED_OF_PLAIN * level.plain { "MET" } else { "NOT MET" }
            );
        }
        let mut ms: Vec<f64> = self
            .forgets
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "forget one subject among {} events: {} ms (max {:.1} ms; target < 1000 ms: {})",
            self.log_events,
            ms.iter()
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>()
                .join(" / "),
            ms.last().copied().unwrap_or(0.0),
            if ms.last().copied().unwrap_or(f64::MAX) < 1000.0 {
                "MET"
            } else {
                "NOT MET"
            }
        );
    }
}
