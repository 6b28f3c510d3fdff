//! Command throughput of the actor runtime on the Postgres store, measured
//! against what raw Postgres does with rows of the same shape on the same
//! server in the same run, so the printed ratios mean the same thing on any
//! machine.
//!
//! In one fresh database (made by `herald_testkit`, dropped at the end),
//! inside an actix system like `herald serve`'s:
//! - the raw baselines of `support/raw_postgres.rs` (one row per autocommit
//!   transaction, and 1000 rows per transaction in one multi-row `INSERT`),
//!   measured before and after the command levels, and averaged;
//! - an [`ActorRuntime`] with one thread per core and an
//!   `AggregateGroup<Ticket>` with the default [`GroupConfig`] on a
//!   `PostgresStore` (pool 16, group commit defaults);
//! - for 1 and 64 concurrent clients, each with its own 100 tickets: first
//!   one `open` per ticket (a new aggregate: actor start, rehydration reads,
//!   append), timed as a phase of its own; then `append_note` commands, the
//!   client cycling over its tickets, each appending one ~300-byte event
//!   through decide → append → apply. The notes run for a fixed wall time
//!   after a warm-up, and what completed in between is counted; p50 and p99
//!   are over the commands that completed in the window;
//! - a reference: `PostgresStore::append` of the same event by 64 concurrent
//!   callers on the same system, without actors, timed the same way, so
//!   what the actor runtime costs on top of the store shows.
//!
//! The table of rates, ratios and latencies, and whether the 64-client
//! target is met, is printed last.
//!
//! Run with `cargo bench --bench commands`. Postgres is taken from
//! `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the user must be allowed to
//! create databases). `HERALD_BENCH_SECONDS` sets the seconds per level
//! (default 5). `cargo bench --bench commands -- --test` and
//! `cargo test --benches` do a smoke run that takes seconds; `-- --list`
//! names the levels without touching Postgres.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::rt::System;
use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{ActorRuntime, AggregateGroup, CommandMeta, GroupConfig};
use herald_events::tickets::NoteAppended;
use herald_events::tickets::TicketKind;
use herald_events::{EventRegistry, NewEvent, StreamId, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use tokio_postgres::Client;

#[path = "support/raw_postgres.rs"]
mod raw_postgres;

use raw_postgres::{
    appends_per_commit, checkpoint, measure, mode, note_payload, note_text, raw_rates, Load, Mode,
    RawBaselines, Timing, BATCH_ROWS, NOTE_AUTHOR,
};

/// The allocator the `herald` binary runs with, so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENT_LEVELS: [usize; 2] = [1, 64];
const TICKETS_PER_CLIENT: usize = 100;
/// Fewer in a smoke run, so 64 clients open theirs in a blink.
const SMOKE_TICKETS_PER_CLIENT: usize = 10;
const POOL_SIZE: usize = 16;
/// Concurrent callers of the `store.append` reference line.
const REFERENCE_CLIENTS: usize = 64;
/// The target for 64 clients, as a fraction of the raw batched baseline.
const TARGET_OF_BATCH: f64 = 0.40;

fn main() {
    let mode = mode();
    if mode == Mode::List {
        // Listing only names the levels, so it must work without Postgres.
        for clients in CLIENT_LEVELS {
            println!("commands/append_note_{clients}_clients: benchmark");
        }
        return;
    }
    let timing = Timing::for_mode(mode);
    let tickets = if mode == Mode::Full {
        TICKETS_PER_CLIENT
    } else {
        SMOKE_TICKETS_PER_CLIENT
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = System::new().block_on(run(timing, threads, tickets));
    // Last, so that it is what a `tail` of the output shows.
    report.print(mode, timing);
}

#[derive(Debug)]
struct Report {
    payload_bytes: usize,
    threads: usize,
    tickets_per_client: usize,
    raw: RawBaselines,
    levels: Vec<Level>,
    /// `store.append` alone at [`REFERENCE_CLIENTS`], and its appends/commit.
    reference: (Phase, f64),
}

#[derive(Debug)]
struct Level {
    clients: usize,
    /// The open phase: one command per new ticket.
    opens: Phase,
    /// The measured window of notes.
    notes: Phase,
    appends_per_commit: f64,
}

#[derive(Debug)]
struct Phase {
    per_second: f64,
    latency: Percentiles,
}

#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

impl Percentiles {
    fn of(mut latencies: Vec<Duration>) -> Self {
        assert!(!latencies.is_empty(), "no command completed");
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

async fn run(timing: Timing, threads: usize, tickets_per_client: usize) -> Report {
    let db = TestDatabase::create().await;
    let store = {
        let mut config = PostgresConfig::new(db.url());
        config.pool_size = POOL_SIZE;
        PostgresStore::open(config)
            .await
            .expect("open the Postgres store")
    };
    let payload = note_payload();
    let admin = db.connect().await;
    // The raw rates drift by tens of percent on a busy two-core machine, so
    // they are measured before and after herald's levels and averaged.
    let before = raw_rates(&db, &admin, &payload, timing).await;

    let runtime = ActorRuntime::start(threads);
    let group = AggregateGroup::<Ticket>::new(
        Arc::new(store.clone()) as Arc<dyn EventStore>,
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(&runtime),
        GroupConfig::default(),
    );
    let mut levels = Vec::new();
    for clients in CLIENT_LEVELS {
        checkpoint(&admin).await;
        levels.push(
            herald_commands(&group, &store, &admin, clients, tickets_per_client, timing).await,
        );
    }
    runtime.stop();
    checkpoint(&admin).await;
    let reference = store_appends(
        &store,
        &admin,
        REFERENCE_CLIENTS,
        tickets_per_client,
        timing,
    )
    .await;

    checkpoint(&admin).await;
    let after = raw_rates(&db, &admin, &payload, timing).await;
    store.close().await;
    Report {
        payload_bytes: payload.to_string().len(),
        threads,
        tickets_per_client,
        raw: RawBaselines {
            runs: [before, after],
        },
        levels,
        reference,
    }
}

fn open() -> TicketCommand {
    TicketCommand::Open {
        kind: TicketKind::Other,
        customer: "acme-networks".into(),
        edge: None,
        description: "Exports time out after the latest upgrade.".into(),
        opened_by: Some(NOTE_AUTHOR.to_owned()),
    }
}

fn note() -> TicketCommand {
    TicketCommand::AppendNote {
        note: note_text(),
        author: Some(NOTE_AUTHOR.to_owned()),
    }
}

/// The tickets of one client of one level.
fn client_tickets(clients: usize, client: usize, tickets: usize) -> Vec<String> {
    (0..tickets)
        .map(|n| format!("bench-{clients}c-{client}-{n}"))
        .collect()
}

/// Completion times and latencies of the commands of every client.
type Latencies = Arc<Mutex<Vec<(Instant, Duration)>>>;

async fn herald_commands(
    group: &AggregateGroup<Ticket>,
    store: &PostgresStore,
    admin: &Client,
    clients: usize,
    tickets_per_client: usize,
    timing: Timing,
) -> Level {
    let tenant = TenantId::default_tenant();

    // Every client opens its tickets: each is the first command of a new
    // aggregate.
    let started = Instant::now();
    let openers: Vec<_> = (0..clients)
        .map(|client| {
            let (group, tenant) = (group.clone(), tenant.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(tickets_per_client);
                for id in client_tickets(clients, client, tickets_per_client) {
                    let sent = Instant::now();
                    group
                        .execute(&tenant, &id, open(), CommandMeta::default())
                        .await
                        .expect("open a ticket");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut open_latencies = Vec::with_capacity(clients * tickets_per_client);
    for opener in openers {
        open_latencies.extend(opener.await.expect("a bench opener"));
    }
    let opens = Phase {
        per_second: open_latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latency: Percentiles::of(open_latencies),
    };

    let tickets: Arc<Vec<Vec<String>>> = Arc::new(
        (0..clients)
            .map(|client| client_tickets(clients, client, tickets_per_client))
            .collect(),
    );
    let (notes, appends_per_commit) = windowed(store, admin, clients, timing, {
        let group = group.clone();
        move |client, n| {
            let (group, tenant, tickets) = (group.clone(), tenant.clone(), tickets.clone());
            async move {
                let own = &tickets[client];
                group
                    .execute(&tenant, &own[n % own.len()], note(), CommandMeta::default())
                    .await
                    .expect("append a note");
            }
        }
    })
    .await;
    Level {
        clients,
        opens,
        notes,
        appends_per_commit,
    }
}

/// The reference: the same events appended by `clients` concurrent callers
/// of `PostgresStore::append` on the same actix system, without actors.
async fn store_appends(
    store: &PostgresStore,
    admin: &Client,
    clients: usize,
    tickets_per_client: usize,
    timing: Timing,
) -> (Phase, f64) {
    let streams: Arc<Vec<Vec<StreamId>>> = Arc::new(
        (0..clients)
            .map(|client| {
                (0..tickets_per_client)
                    .map(|n| {
                        format!("tickets/bench-store-{client}-{n}")
                            .parse()
                            .expect("a valid stream id")
                    })
                    .collect()
            })
            .collect(),
    );
    let payload = Arc::new(note_payload());
    windowed(store, admin, clients, timing, {
        let store = store.clone();
        move |client, n| {
            let (store, streams, payload) = (store.clone(), streams.clone(), payload.clone());
            async move {
                let own = &streams[client];
                let event = NewEvent::new(
                    NoteAppended::event_type(),
                    NoteAppended::schema_version(),
                    (*payload).clone(),
                );
                store
                    .append(
                        &TenantId::default_tenant(),
                        &own[n % own.len()],
                        ExpectedVersion::Any,
                        vec![event],
                    )
                    .await
                    .expect("append an event");
            }
        }
    })
    .await
}

/// Runs `clients` concurrent loops of `op(client, n)` for a measured window;
/// returns the rate, the latencies of what completed in the window and the
/// mean appends per commit over it.
async fn windowed<Op, Fut>(
    store: &PostgresStore,
    admin: &Client,
    clients: usize,
    timing: Timing,
    op: Op,
) -> (Phase, f64)
where
    Op: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let load = Arc::new(Load::default());
    let latencies: Latencies = Arc::default();
    let workers = (0..clients)
        .map(|client| {
            let (op, load, latencies) = (op.clone(), load.clone(), latencies.clone());
            tokio::spawn(async move {
                let mut own = Vec::new();
                let mut n = 0usize;
                while !load.stopped() {
                    let sent = Instant::now();
                    op(client, n).await;
                    let done = Instant::now();
                    own.push((done, done - sent));
                    load.add(1);
                    n += 1;
                }
                latencies.lock().expect("latencies").extend(own);
            })
        })
        .collect();
    let measured = measure(&load, workers, timing, || async move {
        let head = store.head().await.expect("read the log head").position;
        (Instant::now(), head)
    })
    .await;
    let ((from, start), (to, end)) = (measured.start, measured.end);
    let in_window: Vec<Duration> = latencies
        .lock()
        .expect("latencies")
        .iter()
        .filter(|(done, _)| (from..=to).contains(done))
        .map(|(_, latency)| *latency)
        .collect();
    let phase = Phase {
        per_second: measured.per_second,
        latency: Percentiles::of(in_window),
    };
    (phase, appends_per_commit(admin, start, end).await)
}

/// Milliseconds, for the table.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    fn print(&self, mode: Mode, timing: Timing) {
        let seconds = timing.window.as_secs_f64();
        if mode == Mode::Smoke {
            println!("commands bench SMOKE RUN ({seconds} s per level; the numbers mean nothing)");
        } else {
            println!("commands bench (Postgres, actix, same run, {seconds} s per level)");
        }
        println!(
            "tickets.append_note: 1 event of {} bytes of JSON per command (decide → append → apply); \
             GroupConfig defaults, {} actor thread{}, pool {POOL_SIZE}, {} tickets per client",
            self.payload_bytes,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.tickets_per_client,
        );
        self.raw.print();
        for level in &self.levels {
            let clients = format!(
                "{} client{}",
                level.clients,
                if level.clients == 1 { "" } else { "s" }
            );
            let label = format!("herald open (new), {clients}:");
            println!(
                "{label:<35} {:>9.0} cmds/s  (whole phase, {} opens; p50 {:.2} ms, p99 {:.2} ms)",
                level.opens.per_second,
                level.clients * self.tickets_per_client,
                ms(level.opens.latency.p50),
                ms(level.opens.latency.p99),
            );
            let label = format!("herald append_note, {clients}:");
            println!(
                "{label:<35} {:>9.0} cmds/s  ({:.2}x raw single-row, {:.2}x raw {BATCH_ROWS}-row batch; \
                 ~{:.1} appends/commit; p50 {:.2} ms, p99 {:.2} ms)",
                level.notes.per_second,
                level.notes.per_second / self.raw.single(),
                level.notes.per_second / self.raw.batch(),
                level.appends_per_commit,
                ms(level.notes.latency.p50),
                ms(level.notes.latency.p99),
            );
        }
        let (reference, reference_per_commit) = &self.reference;
        let label = format!("reference: store.append, {REFERENCE_CLIENTS} clients:");
        println!(
            "{label:<35} {:>9.0} appends/s  ({:.2}x raw single-row, {:.2}x raw {BATCH_ROWS}-row batch; \
             ~{:.1} appends/commit; p50 {:.2} ms, p99 {:.2} ms; same event, no actors)",
            reference.per_second,
            reference.per_second / self.raw.single(),
            reference.per_second / self.raw.batch(),
            reference_per_commit,
            ms(reference.latency.p50),
            ms(reference.latency.p99),
        );
        if let Some(top) = self.levels.iter().find(|l| l.clients == 64) {
            let met = top.notes.per_second >= TARGET_OF_BATCH * self.raw.batch();
            println!(
                "target: 64 clients >= {TARGET_OF_BATCH:.2}x raw {BATCH_ROWS}-row batch: {}",
                if met { "MET" } else { "NOT MET" }
            );
        }
    }
}
