//! How fast each page of the browser console (issue 20,
//! `/work/console-spec.md`) answers with a million events in the store: the
//! API requests a page makes when it opens, sent at once over keep-alive
//! HTTP to `herald serve` started as users start it, timed until the last
//! of them has answered. Target: every page < 300 ms.
//!
//! Setups, each a fresh store and a fresh `herald serve` on it:
//! - `embedded`: the embedded defaults (SQLite in a temporary data dir);
//! - `postgres`: a fresh Postgres database (made by `herald_testkit`,
//!   dropped at the end), the in-process broker.
//!
//! The store is filled through `herald_store` (`append_all`, a few thousand
//! events per transaction, personal fields sealed by `herald_privacy` as
//! `herald serve` seals them, the record clock moved over 30 days) with a
//! support desk's history, interleaved as it happens: ~50,000 tickets per
//! million events (opened by a key, assigned by an automation in the same
//! correlation, 4 to 24 notes, resolved, one in five reopened and resolved
//! again) over 2,000 customers of very different sizes, drafts (created, 8
//! autosaves, published) and editor sessions. Then `herald serve` starts on
//! it; the bench waits for every read model to catch up (lag 0 on
//! `GET /v1/projections`) and for the relay to publish the history, and
//! prints how long that took.
//!
//! The events page is measured as it opens (`search?limit=50`) and with
//! each filter the brief names: a customer with the event type
//! (`payload.customer` + `type=tickets.ticket_opened`), the same customer
//! alone (what a filter form sends when no type is chosen), and the tickets
//! domain over an hour (`domain`, `from`, `to`). Customers are drawn as
//! tickets are, so nearly 6 in 10 have fewer than 50 tickets and their search
//! must read to the end of what it scans. For each search the per-request
//! lines give the events an answer held and how often it came back short
//! with a `next_cursor` (a scan bound), and, for the filtered ones, the time
//! until 50 events or the end when `next_cursor` is followed as "Next page"
//! does.
//!
//! Each page is opened `HERALD_BENCH_ITERATIONS` times (default 30); the
//! ticket, customer, event or time a page needs is drawn at random per
//! opening from near the start, the middle or the end of the log, so no
//! cache serves the same answer twice. The table gives p50 / p99 / max of
//! the page time, and per request. A request the server does not have yet
//! (404 or 405 on the route, 400 "unknown query parameter") is reported as
//! missing, never skipped quietly. The audit page starts a verify run
//! (`POST /v1/audit/verify/runs`): its time is that of the first answer
//! (the page then shows progress); the whole run is timed separately, each
//! run finished before the next page opens.
//!
//! The raw limit, measured in the same run on the same file / database
//! (before and after the pages, averaged): the newest 50 rows of the event
//! table (`ORDER BY position DESC LIMIT 50`), which is what the cheapest
//! page of events costs the database; and a search of a payload field
//! (with the event type) and of a correlation id answered straight by SQL
//! with the plan the database picks (the searches that cannot stop at the
//! first 50 rows of the log).
//!
//! Run with `cargo bench --bench console`. `HERALD_BENCH_EVENTS` sets the
//! log's size (default 1,000,000), `HERALD_BENCH_ITERATIONS` the openings
//! per page (default 30), `HERALD_BENCH_AUDIT_RUNS` the verify runs
//! (default 3), `HERALD_BENCH_ONLY=embedded|postgres` one setup,
//! `HERALD_BENCH_DIR` where the embedded data dir goes (default the system
//! temporary directory; `HERALD_BENCH_KEEP=1` keeps it, to look into);
//! Postgres comes from `HERALD_TEST_DATABASE_URL`;
//! `HERALD_BENCH_BINARY` runs another `herald` build than the bench's own.
//! `cargo test --benches` runs a smoke pass of both setups with 3,000
//! events; `-- --list` names the pages without starting anything.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::{EventEnvelope, EventType, NewEvent, Position, SchemaVersion, StreamId};
use herald_events::{StreamVersion, TenantId};
use herald_store::{
    EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, ManualClock, PostgresConfig,
    PostgresStore,
};
use herald_testkit::TestDatabase;
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "support/raw_postgres.rs"]
#[allow(dead_code)]
mod raw_postgres;
#[path = "support/serve_process.rs"]
#[allow(dead_code)]
mod serve_process;
#[path = "support/workload.rs"]
mod workload;

use raw_postgres::{mode, note_text, Mode};
use serve_process::{cpu_ticks, create_key, free_port, Herald, TICKS_PER_SECOND};
use workload::Dice;

/// Every page answers within this.
const TARGET: Duration = Duration::from_millis(300);
/// Events per `append_all` while filling the store.
const SEED_BATCH: usize = 4_000;
/// Tickets being worked on at once (their events interleave in the log).
const ACTIVE_TICKETS: usize = 2_000;
const ACTIVE_DRAFTS: usize = 100;
const ACTIVE_SESSIONS: usize = 50;
/// Customers; ticket counts per customer fall steeply (a few large ones, a
/// long tail with a handful of tickets each).
const CUSTOMERS: u64 = 2_000;
/// The history spans this much record time.
const HISTORY_DAYS: i64 = 30;
/// Searches each raw scan figure is the median of.
const RAW_SCANS: usize = 7;
/// Events read at each of the start, middle and end of the log to draw
/// what the pages ask for.
const SAMPLE_WINDOW: usize = 600;
/// The producer of what the API's commands appended.
const KEY_PRODUCER: &str = "http:key:hk_console_bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Embedded,
    Postgres,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Embedded => "embedded",
            Setup::Postgres => "postgres",
        }
    }

    fn selected() -> Vec<Setup> {
        let all = [Setup::Embedded, Setup::Postgres];
        match std::env::var("HERALD_BENCH_ONLY") {
            Ok(only) if !only.trim().is_empty() => {
                let chosen: Vec<Setup> = all
                    .into_iter()
                    .filter(|s| only.split(',').any(|o| o.trim() == s.name()))
                    .collect();
                assert!(
                    !chosen.is_empty(),
                    "HERALD_BENCH_ONLY={only:?} names neither embedded nor postgres"
                );
                chosen
            }
            _ => all.to_vec(),
        }
    }
}

/// The console's pages, as the table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Overview,
    Events,
    EventsPayload,
    EventsPayloadOnly,
    EventsTime,
    Event,
    Stream,
    Aggregate,
    Tail,
    Projections,
    Schemas,
    Automations,
    Audit,
    Keys,
}

impl Page {
    /// The raw figure the page is set against, and its name.
    fn raw(self, raw: &RawLimits) -> (Duration, &'static str) {
        match self {
            Page::EventsPayload => (raw.payload, "payload+type"),
            Page::EventsPayloadOnly => (raw.payload_only, "payload"),
            Page::Event => (raw.correlation, "correlation"),
            _ => (raw.newest, "newest 50"),
        }
    }

    const ALL: [Page; 14] = [
        Page::Overview,
        Page::Events,
        Page::EventsPayload,
        Page::EventsPayloadOnly,
        Page::EventsTime,
        Page::Event,
        Page::Stream,
        Page::Aggregate,
        Page::Tail,
        Page::Projections,
        Page::Schemas,
        Page::Automations,
        Page::Keys,
        // Last: its verify runs are the heaviest thing the bench starts.
        Page::Audit,
    ];

    fn name(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Events => "events",
            Page::EventsPayload => "events ?payload.customer",
            Page::EventsPayloadOnly => "events ?payload.cust (no type)",
            Page::EventsTime => "events ?domain&from&to",
            Page::Event => "event",
            Page::Stream => "stream",
            Page::Aggregate => "aggregate time travel",
            Page::Tail => "tail",
            Page::Projections => "projections",
            Page::Schemas => "schemas",
            Page::Automations => "automations",
            Page::Audit => "audit",
            Page::Keys => "keys",
        }
    }
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().replace('_', ""))
        .and_then(|v| v.parse().ok())
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    events: usize,
    iterations: usize,
    audit_runs: usize,
}

fn main() {
    let mode = mode();
    let setups = Setup::selected();
    if mode == Mode::List {
        for setup in &setups {
            for page in Page::ALL {
                println!("console/{}/{}: bench", setup.name(), page.name());
            }
        }
        return;
    }
    let settings = match mode {
        Mode::Full => Settings {
            events: env_number("HERALD_BENCH_EVENTS").unwrap_or(1_000_000),
            iterations: env_number("HERALD_BENCH_ITERATIONS").unwrap_or(30).max(1),
            audit_runs: env_number("HERALD_BENCH_AUDIT_RUNS").unwrap_or(3).max(1),
        },
        _ => Settings {
            events: 3_000,
            iterations: 3,
            audit_runs: 1,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut reports = Vec::new();
    for setup in setups {
        reports.push(runtime.block_on(run_setup(setup, settings)));
    }
    println!();
    println!(
        "console bench: {} events in the store, {} openings per page (audit: {} verify runs), \
         target every page < {} ms",
        settings.events,
        settings.iterations,
        settings.audit_runs,
        TARGET.as_millis()
    );
    for report in &reports {
        report.print();
    }
    if mode != Mode::Full {
        println!("smoke run: the target is for full runs (`cargo bench --bench console`)");
    }
}

// ---------------------------------------------------------------------------
// Filling the store.

/// One command's worth of events on one stream.
struct Command {
    stream: StreamId,
    events: Vec<NewEvent>,
}

#[derive(Debug, Clone, Copy)]
enum TicketStep {
    Open,
    Note,
    Resolve,
    Reopen,
}

struct OpenTicket {
    n: u64,
    customer: String,
    steps: VecDeque<TicketStep>,
}

struct OpenDraft {
    n: u64,
    /// The draft's version after its last event.
    version: u64,
    patches_left: u64,
}

struct OpenSession {
    n: u64,
}

/// A support desk's history, one command at a time, interleaved as many
/// people working at once interleave it.
struct History {
    dice: Dice,
    tickets: Vec<OpenTicket>,
    drafts: Vec<OpenDraft>,
    sessions: Vec<OpenSession>,
    next_ticket: u64,
    next_draft: u64,
    next_session: u64,
}

fn event(event_type: &str, at: DateTime<Utc>, payload: Value) -> NewEvent {
    let event_type: EventType = event_type.parse().expect("a valid event type");
    NewEvent::new(event_type, SchemaVersion::V1, payload)
        .occurred_at(at)
        .producer(KEY_PRODUCER)
}

fn stream(domain: &str, id: String) -> StreamId {
    format!("{domain}/{id}").parse().expect("a valid stream id")
}

fn ticket_id(n: u64) -> String {
    format!("tk-{n:07}")
}

impl History {
    fn new(seed: u64) -> Self {
        Self {
            dice: Dice::new(seed),
            tickets: Vec::new(),
            drafts: Vec::new(),
            sessions: Vec::new(),
            next_ticket: 0,
            next_draft: 0,
            next_session: 0,
        }
    }

    /// A customer: index ⌊2000·u³⌋ for a uniform u, so the first few have
    /// thousands of tickets each and most have a handful.
    fn customer(&mut self) -> String {
        let u = (self.dice.below(1_000_000) as f64 + 0.5) / 1_000_000.0;
        format!("customer-{:04}", (CUSTOMERS as f64 * u * u * u) as u64)
    }

    fn next(&mut self, at: DateTime<Utc>) -> Command {
        match self.dice.below(100) {
            0..=87 => self.ticket(at),
            88..=95 => self.draft(at),
            _ => self.session(at),
        }
    }

    fn ticket(&mut self, at: DateTime<Utc>) -> Command {
        if self.tickets.len() < ACTIVE_TICKETS {
            let n = self.next_ticket;
            self.next_ticket += 1;
            let mut steps = VecDeque::from([TicketStep::Open]);
            let notes = 4 + self.dice.below(21);
            steps.extend((0..notes).map(|_| TicketStep::Note));
            steps.push_back(TicketStep::Resolve);
            if self.dice.below(5) == 0 {
                steps.extend([
                    TicketStep::Reopen,
                    TicketStep::Note,
                    TicketStep::Note,
                    TicketStep::Resolve,
                ]);
            }
            let customer = self.customer();
            self.tickets.push(OpenTicket { n, customer, steps });
        }
        let i = self.dice.below(self.tickets.len() as u64) as usize;
        let agent = format!("agent-{:02}@support.example", self.dice.below(40));
        let ticket = &mut self.tickets[i];
        let step = ticket
            .steps
            .pop_front()
            .expect("an open ticket has steps left");
        let (n, customer) = (ticket.n, ticket.customer.clone());
        if ticket.steps.is_empty() {
            self.tickets.swap_remove(i);
        }
        let events = match step {
            TicketStep::Open => {
                let kind = ["affecting", "other"][self.dice.below(2) as usize];
                let opened = event(
                    "tickets.ticket_opened",
                    at,
                    json!({
                        "kind": kind,
                        "customer": customer,
                        "description": "Exports time out after the latest upgrade; the \
                            customer's nightly report has failed twice.",
                        "opened_by": agent,
                    }),
                );
                // An automation assigns it, in the same correlation.
                let assigned = event(
                    "tickets.ticket_assigned",
                    at,
                    json!({"assignee": format!("agent-{:02}@support.example", self.dice.below(40)),
                           "assigned_by": "auto-assign"}),
                )
                .correlation(opened.correlation_id, opened.id.as_uuid())
                .producer("automation:auto-assign");
                vec![opened, assigned]
            }
            TicketStep::Note => vec![event(
                "tickets.note_appended",
                at,
                json!({"note": note_text(), "author": agent}),
            )],
            TicketStep::Resolve => vec![event(
                "tickets.ticket_resolved",
                at,
                json!({"resolution": "fixed in 4.2.1", "resolved_by": agent}),
            )],
            TicketStep::Reopen => vec![event(
                "tickets.ticket_reopened",
                at,
                json!({"reason": "it happened again", "reopened_by": agent}),
            )],
        };
        Command {
            stream: stream("tickets", ticket_id(n)),
            events,
        }
    }

    fn draft(&mut self, at: DateTime<Utc>) -> Command {
        if self.drafts.len() < ACTIVE_DRAFTS {
            let n = self.next_draft;
            self.next_draft += 1;
            self.drafts.push(OpenDraft {
                n,
                version: 0,
                patches_left: 8,
            });
        }
        let i = self.dice.below(self.drafts.len() as u64) as usize;
        let draft = &mut self.drafts[i];
        let n = draft.n;
        let events = if draft.version == 0 {
            draft.version = 1;
            vec![event(
                "drafts.draft_created",
                at,
                json!({"title": format!("Release notes {n}"),
                       "document": {"title": "Release notes", "items": []},
                       "created_by": "editor-1"}),
            )]
        } else if draft.patches_left > 0 {
            draft.patches_left -= 1;
            let base = draft.version;
            draft.version += 1;
            vec![event(
                "drafts.draft_patched",
                at,
                json!({"patch": [{"op": "add", "path": "/items/-",
                                  "value": {"n": base, "text": "autosaved paragraph"}}],
                       "base_version": base, "version": base + 1, "author": "editor-1"}),
            )]
        } else {
            let version = draft.version;
            self.drafts.swap_remove(i);
            vec![event(
                "drafts.draft_published",
                at,
                json!({"version": version}),
            )]
        };
        Command {
            stream: stream("drafts", format!("dr-{n:06}")),
            events,
        }
    }

    fn session(&mut self, at: DateTime<Utc>) -> Command {
        let started = self.sessions.len() < ACTIVE_SESSIONS;
        let n = if started {
            let n = self.next_session;
            self.next_session += 1;
            self.sessions.push(OpenSession { n });
            n
        } else {
            let i = self.dice.below(self.sessions.len() as u64) as usize;
            self.sessions.swap_remove(i).n
        };
        let time = at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let events = if started {
            let customer = self.customer();
            vec![event(
                "statistics.session_started",
                at,
                json!({"editor": format!("editor-{}", n % 12), "customer": customer,
                       "started_at": time}),
            )]
        } else {
            vec![event(
                "statistics.session_ended",
                at,
                json!({"ended_at": time}),
            )]
        };
        Command {
            stream: stream("statistics", format!("se-{n:06}")),
            events,
        }
    }
}

/// Appends about `total` events of [`History`] (never fewer), a few
/// thousand per transaction, the record clock moving evenly over
/// [`HISTORY_DAYS`] up to a minute ago; the head position.
async fn fill(store: &Arc<dyn EventStore>, clock: &ManualClock, total: usize) -> u64 {
    let tenant = TenantId::default_tenant();
    let mut history = History::new(20);
    let batches = total.div_ceil(SEED_BATCH).max(1);
    let end = Utc::now() - chrono::Duration::minutes(1);
    let start = end - chrono::Duration::days(HISTORY_DAYS);
    let step = (end - start) / batches as i32;
    let mut appended = 0usize;
    let mut batch = 0usize;
    let started = Instant::now();
    let mut reported = Instant::now();
    while appended < total {
        let at = start + step * batch as i32;
        // Recorded once the batch's commands have occurred.
        clock.set(at + chrono::Duration::milliseconds(SEED_BATCH as i64 * 2));
        // One append per stream, its commands' events in order.
        let mut appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)> = Vec::new();
        let mut index: HashMap<StreamId, usize> = HashMap::new();
        let mut events = 0;
        while events < SEED_BATCH && appended + events < total {
            // Spread over the batch's stretch of time, a millisecond apart.
            let command = history.next(at + chrono::Duration::milliseconds(events as i64));
            events += command.events.len();
            match index.get(&command.stream) {
                Some(&i) => appends[i].2.extend(command.events),
                None => {
                    index.insert(command.stream.clone(), appends.len());
                    appends.push((command.stream, ExpectedVersion::Any, command.events));
                }
            }
        }
        store
            .append_all(&tenant, appends)
            .await
            .expect("append a batch of the history");
        appended += events;
        batch += 1;
        if reported.elapsed() > Duration::from_secs(10) {
            reported = Instant::now();
            println!(
                "  … {appended} events ({:.0} events/s)",
                appended as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    store.head().await.expect("the head").position.get()
}

/// What the pages ask for, drawn from one stretch of the log.
#[derive(Debug, Default)]
struct Region {
    /// Tickets with events there, each with a position in the middle of
    /// its life.
    tickets: Vec<(String, u64)>,
    /// Customers of tickets opened there.
    customers: Vec<String>,
    /// Event ids with their correlation ids.
    events: Vec<(Uuid, Uuid)>,
    /// Record times there.
    times: Vec<DateTime<Utc>>,
}

/// Draws what the pages ask for from the start, the middle and the end of
/// the log.
async fn sample(store: &Arc<dyn EventStore>, head: u64) -> Vec<Region> {
    let tenant = TenantId::default_tenant();
    let window = SAMPLE_WINDOW as u64;
    let starts = [
        ("start", 1),
        ("middle", (head / 2).max(1)),
        ("end", head.saturating_sub(window).max(1)),
    ];
    // The name is for the messages.
    let mut regions = Vec::new();
    for (name, from) in starts {
        let events: Vec<EventEnvelope> = store
            .read_all(Position(from), SAMPLE_WINDOW)
            .await
            .expect("read the log");
        let mut region = Region::default();
        let mut seen = std::collections::HashSet::new();
        for e in &events {
            region.events.push((e.id.as_uuid(), e.correlation_id));
            region.times.push(e.recorded_at);
            if e.event_type.as_str() == "tickets.ticket_opened" {
                if let Some(c) = e.payload.get("customer").and_then(Value::as_str) {
                    region.customers.push(c.to_owned());
                }
            }
            if e.stream.domain().as_str() == "tickets"
                && seen.insert(e.stream.id().to_owned())
                && seen.len() <= 40
            {
                let life = store
                    .read_stream(&tenant, &e.stream, StreamVersion(1), 1000)
                    .await
                    .expect("read a ticket");
                let middle = life[life.len() / 2].position.get();
                region.tickets.push((e.stream.id().to_owned(), middle));
            }
        }
        assert!(
            !region.tickets.is_empty() && !region.customers.is_empty(),
            "the {name} of the log holds tickets"
        );
        regions.push(region);
    }
    regions
}

// ---------------------------------------------------------------------------
// The pages.

/// One request of a page.
#[derive(Debug, Clone)]
struct Request {
    /// For the per-request lines: the route, without drawn values.
    label: &'static str,
    post: Option<Value>,
    path: String,
}

fn get(label: &'static str, path: String) -> Request {
    Request {
        label,
        post: None,
        path,
    }
}

fn pick<'a, T>(dice: &mut Dice, items: &'a [T]) -> &'a T {
    &items[dice.below(items.len() as u64) as usize]
}

fn time_param(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What the console asks for when `page` opens, with values drawn from a
/// random region of the log.
fn page_requests(
    page: Page,
    dice: &mut Dice,
    regions: &[Region],
    tail: &TailParam,
) -> Vec<Request> {
    let region = pick(dice, regions);
    match page {
        Page::Overview => vec![
            get("GET /v1/console/overview", "/v1/console/overview".into()),
            get("GET /readyz", "/readyz".into()),
        ],
        Page::Events => vec![get(
            "GET /v1/events/search?limit=50",
            "/v1/events/search?limit=50".into(),
        )],
        Page::EventsPayload => {
            let customer = pick(dice, &region.customers);
            vec![get(
                "GET /v1/events/search?payload.customer&type",
                format!(
                    "/v1/events/search?payload.customer={customer}\
                     &type=tickets.ticket_opened&limit=50"
                ),
            )]
        }
        Page::EventsPayloadOnly => {
            let customer = pick(dice, &region.customers);
            vec![get(
                "GET /v1/events/search?payload.customer",
                format!("/v1/events/search?payload.customer={customer}&limit=50"),
            )]
        }
        Page::EventsTime => {
            let from = *pick(dice, &region.times);
            let to = from + chrono::Duration::hours(1);
            vec![get(
                "GET /v1/events/search?domain&from&to",
                format!(
                    "/v1/events/search?domain=tickets&from={}&to={}&limit=50",
                    time_param(from),
                    time_param(to)
                ),
            )]
        }
        Page::Event => {
            let (id, correlation) = *pick(dice, &region.events);
            vec![
                get("GET /v1/events/{id}", format!("/v1/events/{id}")),
                get(
                    "GET /v1/events/search?correlation",
                    format!("/v1/events/search?correlation={correlation}&limit=50"),
                ),
            ]
        }
        Page::Stream => {
            let (ticket, _) = pick(dice, &region.tickets);
            vec![get(
                "GET /v1/streams/tickets/{id}/events",
                format!("/v1/streams/tickets/{ticket}/events"),
            )]
        }
        Page::Aggregate => {
            let (ticket, middle) = pick(dice, &region.tickets);
            vec![
                get("GET /v1/tickets/{id}", format!("/v1/tickets/{ticket}")),
                get(
                    "GET /v1/streams/tickets/{id}?at",
                    format!("/v1/streams/tickets/{ticket}?at={middle}"),
                ),
            ]
        }
        Page::Tail => vec![get(tail.label, tail.path())],
        Page::Projections => vec![
            get("GET /v1/projections", "/v1/projections".into()),
            get(
                "GET /v1/projections/tickets",
                "/v1/projections/tickets".into(),
            ),
        ],
        Page::Schemas => vec![get("GET /v1/schemas", "/v1/schemas".into())],
        Page::Automations => vec![get("GET /v1/automations", "/v1/automations".into())],
        Page::Keys => vec![get("GET /v1/keys", "/v1/keys".into())],
        Page::Audit => vec![
            Request {
                label: "POST /v1/audit/verify/runs",
                post: Some(json!({})),
                path: "/v1/audit/verify/runs".into(),
            },
            get("GET /v1/audit/anchor", "/v1/audit/anchor".into()),
        ],
    }
}

/// How the tail asks for the last 100 events: `after` (the console's
/// contract) when the server takes it, else `from`.
#[derive(Debug, Clone)]
struct TailParam {
    head: u64,
    after: bool,
    label: &'static str,
}

impl TailParam {
    fn path(&self) -> String {
        let after = self.head.saturating_sub(100);
        if self.after {
            format!("/v1/events?after={after}&limit=100")
        } else {
            format!("/v1/events?from={}&limit=100", after + 1)
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Answered,
    /// The route or parameter is not there yet.
    Missing(String),
    Failed(String),
}

#[derive(Debug)]
struct Answer {
    label: &'static str,
    took: Duration,
    outcome: Outcome,
    body: Option<Value>,
}

/// A 404/405 on a route, or a 400 naming an unknown parameter, is a route
/// or parameter the server does not have (yet).
fn classify(status: reqwest::StatusCode, text: &str) -> Outcome {
    let unknown_parameter = status == reqwest::StatusCode::BAD_REQUEST
        && (text.contains("unknown query parameter") || text.contains("unknown field"));
    if status.is_success() {
        Outcome::Answered
    } else if status == reqwest::StatusCode::NOT_FOUND
        || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        || unknown_parameter
    {
        Outcome::Missing(format!("{status}: {}", excerpt(text)))
    } else {
        Outcome::Failed(format!("{status}: {}", excerpt(text)))
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(240).collect()
}

/// The running server, reached as the console reaches it: keep-alive
/// HTTP, the bench's admin key.
#[derive(Debug)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(&self, request: &Request) -> Answer {
        send(&self.http, &self.base, &self.key, request).await
    }

    /// Sends a page's requests at once, as a browser does; the page's time
    /// is until the last has answered.
    async fn open_page(&self, requests: &[Request]) -> (Duration, Vec<Answer>) {
        let started = Instant::now();
        let answers = futures::future::join_all(requests.iter().map(|r| self.send(r))).await;
        (started.elapsed(), answers)
    }
}

async fn send(http: &reqwest::Client, base: &str, key: &str, request: &Request) -> Answer {
    let url = format!("{base}{}", request.path);
    let started = Instant::now();
    let builder = match &request.post {
        Some(body) => http.post(&url).json(body),
        None => http.get(&url),
    };
    let result = builder.bearer_auth(key).send().await;
    let (outcome, body) = match result {
        Err(e) => (Outcome::Failed(format!("no answer: {e}")), None),
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Err(e) => (Outcome::Failed(format!("{status}, body cut: {e}")), None),
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    (classify(status, &text), serde_json::from_slice(&bytes).ok())
                }
            }
        }
    };
    Answer {
        label: request.label,
        took: started.elapsed(),
        outcome,
        body,
    }
}

#[derive(Debug, Clone, Copy)]
struct Quantiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn quantiles(samples: &[Duration]) -> Option<Quantiles> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Some(Quantiles {
        p50: at(0.5),
        p99: at(0.99),
        max: *sorted.last().expect("not empty"),
    })
}

#[derive(Debug, Default)]
struct RequestStats {
    took: Vec<Duration>,
    missing: Option<String>,
    failures: Vec<String>,
    /// Searches: the events each answer held, and how many answers said
    /// there is more (`next_cursor`) while holding fewer than asked for —
    /// a page cut short by a scan bound, which the console must go on from.
    returned: Vec<usize>,
    short_with_cursor: usize,
}

impl RequestStats {
    fn count_events(&mut self, answer: &Answer) {
        if !answer.label.starts_with("GET /v1/events/search") {
            return;
        }
        let Some(body) = &answer.body else { return };
        let held = body
            .get("events")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.returned.push(held);
        let more = body.get("next_cursor").is_some_and(|c| !c.is_null());
        if more && held < 50 {
            self.short_with_cursor += 1;
        }
    }
}

#[derive(Debug)]
struct PageReport {
    page: Page,
    /// Page times of the openings where every request answered.
    times: Vec<Duration>,
    requests: Vec<(&'static str, RequestStats)>,
    /// Searches: from the opening until 50 events or the end, following
    /// `next_cursor` as "Next page" does, with the requests it took.
    filled: Vec<(Duration, usize)>,
    /// Audit only: the verify runs' whole durations, and their reports.
    verify: Vec<Duration>,
    verify_note: Option<String>,
}

impl PageReport {
    fn new(page: Page) -> Self {
        Self {
            page,
            times: Vec::new(),
            requests: Vec::new(),
            filled: Vec::new(),
            verify: Vec::new(),
            verify_note: None,
        }
    }

    fn stats(&mut self, label: &'static str) -> &mut RequestStats {
        let i = match self.requests.iter().position(|(l, _)| *l == label) {
            Some(i) => i,
            None => {
                self.requests.push((label, RequestStats::default()));
                self.requests.len() - 1
            }
        };
        &mut self.requests[i].1
    }

    fn record(&mut self, took: Duration, answers: &[Answer]) {
        let mut complete = true;
        for answer in answers {
            let stats = self.stats(answer.label);
            match &answer.outcome {
                Outcome::Answered => {
                    stats.took.push(answer.took);
                    stats.count_events(answer);
                }
                Outcome::Missing(why) => {
                    complete = false;
                    stats.missing.get_or_insert_with(|| why.clone());
                }
                Outcome::Failed(why) => {
                    complete = false;
                    if stats.failures.len() < 3 {
                        stats.failures.push(why.clone());
                    } else {
                        stats.failures.push(String::new());
                    }
                }
            }
        }
        if complete {
            self.times.push(took);
        }
    }

    /// A request outside a page's opening (the audit page's polls).
    fn record_alone(&mut self, answer: &Answer) {
        let stats = self.stats(answer.label);
        match &answer.outcome {
            Outcome::Answered => stats.took.push(answer.took),
            Outcome::Missing(why) => {
                stats.missing.get_or_insert_with(|| why.clone());
            }
            Outcome::Failed(why) => stats.failures.push(why.clone()),
        }
    }

    fn summary(&self) -> String {
        let missing = self.missing();
        match quantiles(&self.times) {
            _ if !missing.is_empty() => format!("MISSING: {}", missing.join(", ")),
            Some(q) => format!(
                "p50 {} ms, max {} ms{}",
                ms(q.p50),
                ms(q.max),
                if self.failed() > 0 {
                    format!(", {} requests FAILED", self.failed())
                } else {
                    String::new()
                }
            ),
            None => format!("no answer ({} requests FAILED)", self.failed()),
        }
    }

    fn missing(&self) -> Vec<&'static str> {
        self.requests
            .iter()
            .filter(|(_, s)| s.missing.is_some())
            .map(|(l, _)| *l)
            .collect()
    }

    fn failed(&self) -> usize {
        self.requests.iter().map(|(_, s)| s.failures.len()).sum()
    }
}

/// Opens the pages.
struct PageBench<'a> {
    api: &'a Api,
    regions: &'a [Region],
    tail: &'a TailParam,
    dice: Dice,
    settings: Settings,
}

impl PageBench<'_> {
    async fn measure(&mut self, page: Page) -> PageReport {
        let mut report = PageReport::new(page);
        let openings = if page == Page::Audit {
            self.settings.audit_runs
        } else {
            self.settings.iterations
        };
        for _ in 0..openings {
            let requests = page_requests(page, &mut self.dice, self.regions, self.tail);
            let started = Instant::now();
            let (took, answers) = self.api.open_page(&requests).await;
            report.record(took, &answers);
            if matches!(
                page,
                Page::EventsPayload | Page::EventsPayloadOnly | Page::EventsTime
            ) {
                if let Some(filled) = self.fill_page(&requests[0], &answers[0]).await {
                    report.filled.push((started.elapsed(), filled));
                }
            }
            if page == Page::Audit {
                self.follow_verify_run(&answers, &mut report).await;
            }
        }
        report
    }

    /// Follows a search's `next_cursor` until it holds 50 events or
    /// reaches the end; the requests that took, None when the first answer
    /// was not a page.
    async fn fill_page(&self, request: &Request, first: &Answer) -> Option<usize> {
        let (Outcome::Answered, Some(body)) = (&first.outcome, &first.body) else {
            return None;
        };
        let mut body = body.clone();
        let mut held = 0;
        let mut requests = 1;
        loop {
            held += body
                .get("events")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let cursor = match body.get("next_cursor") {
                Some(Value::String(cursor)) if held < 50 => cursor.clone(),
                _ => return Some(requests),
            };
            // As "Next page" asks: the same search, 50 more from the cursor.
            let search = request.path.replace("&limit=50", "");
            let next = get(request.label, format!("{search}&cursor={cursor}&limit=50"));
            let answer = self.api.send(&next).await;
            requests += 1;
            body = answer
                .body
                .filter(|_| matches!(answer.outcome, Outcome::Answered))?;
        }
    }

    /// Polls the verify run the audit page started until it ends, as the
    /// page does to show progress; records its whole duration.
    async fn follow_verify_run(&self, answers: &[Answer], report: &mut PageReport) {
        let Some(started) = answers
            .iter()
            .find(|a| a.label == "POST /v1/audit/verify/runs")
        else {
            return;
        };
        let id = match (&started.outcome, &started.body) {
            (Outcome::Answered, Some(body)) => match body.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(other) => other.to_string(),
                None => {
                    report.verify_note = Some(format!("the run's answer has no id: {body}"));
                    return;
                }
            },
            _ => return,
        };
        let t0 = Instant::now() - started.took;
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let poll = get(
                "GET /v1/audit/verify/runs/{id}",
                format!("/v1/audit/verify/runs/{id}"),
            );
            let answer = self.api.send(&poll).await;
            let (Outcome::Answered, Some(body)) = (&answer.outcome, &answer.body) else {
                // Counted as the request's failure or absence.
                report.record_alone(&answer);
                return;
            };
            report.stats(poll.label).took.push(answer.took);
            match body.get("state").and_then(Value::as_str) {
                Some("running") => {}
                Some("done") => {
                    report.verify.push(t0.elapsed());
                    let intact = body.pointer("/report/intact").and_then(Value::as_bool);
                    let checked = body.pointer("/report/checked").and_then(Value::as_u64);
                    report.verify_note = Some(if intact == Some(true) {
                        format!(
                            "intact, {} events checked",
                            checked.map_or("?".into(), |c| c.to_string())
                        )
                    } else {
                        format!(
                            "verify did not report intact: {}",
                            excerpt(&body.to_string())
                        )
                    });
                    return;
                }
                _ => {
                    report.verify_note =
                        Some(format!("the run ended as {}", excerpt(&body.to_string())));
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "a verify run ends within 30 minutes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The raw limits.

#[derive(Debug, Clone, Copy, Default)]
struct RawLimits {
    /// The newest 50 rows, p50.
    newest: Duration,
    /// A search on a payload field and the event type answered by SQL, p50.
    payload: Duration,
    /// A search on a payload field alone answered by SQL, p50.
    payload_only: Duration,
    /// A search on a correlation id answered by SQL, p50.
    correlation: Duration,
}

impl RawLimits {
    fn mean(a: RawLimits, b: RawLimits) -> RawLimits {
        RawLimits {
            newest: (a.newest + b.newest) / 2,
            payload: (a.payload + b.payload) / 2,
            payload_only: (a.payload_only + b.payload_only) / 2,
            correlation: (a.correlation + b.correlation) / 2,
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// On the embedded store's file, read-only beside the running server.
fn raw_sqlite(file: &Path, regions: &[Region], dice: &mut Dice, iterations: usize) -> RawLimits {
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the store's file read-only");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    let columns = "position, event_id, tenant, domain, stream_id, stream_version, event_type, \
        schema_version, occurred_at, recorded_at, correlation_id, causation_id, producer, \
        payload, hash";
    let run = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Duration {
        let started = Instant::now();
        let mut statement = conn.prepare_cached(sql).expect("prepare a raw query");
        let mut rows = statement.query(params).expect("run a raw query");
        let mut n = 0usize;
        while let Some(row) = rows.next().expect("a row") {
            let payload: String = row.get(13).expect("the payload");
            n += payload.len();
        }
        std::hint::black_box(n);
        started.elapsed()
    };
    let newest_sql = format!("SELECT {columns} FROM herald_events ORDER BY position DESC LIMIT 50");
    let newest = median(
        (0..iterations.max(5))
            .map(|_| run(&newest_sql, &[]))
            .collect(),
    );
    let payload_sql = format!(
        "SELECT {columns} FROM herald_events WHERE tenant = 'default' \
         AND event_type = 'tickets.ticket_opened' \
         AND json_extract(payload, '$.customer') = ?1 ORDER BY position LIMIT 50"
    );
    let correlation_sql = format!(
        "SELECT {columns} FROM herald_events WHERE tenant = 'default' \
         AND correlation_id = ?1 ORDER BY position LIMIT 50"
    );
    let payload_only_sql = format!(
        "SELECT {columns} FROM herald_events WHERE tenant = 'default' \
         AND json_extract(payload, '$.customer') = ?1 ORDER BY position LIMIT 50"
    );
    let scans = RAW_SCANS;
    let payload_only = median(
        (0..scans)
            .map(|_| {
                let region = pick(dice, regions);
                let customer = pick(dice, &region.customers).clone();
                run(&payload_only_sql, &[&customer])
            })
            .collect(),
    );
    let payload = median(
        (0..scans)
            .map(|_| {
                let region = pick(dice, regions);
                let customer = pick(dice, &region.customers).clone();
                run(&payload_sql, &[&customer])
            })
            .collect(),
    );
    let correlation = median(
        (0..scans)
            .map(|_| {
                let region = pick(dice, regions);
                let (_, correlation) = *pick(dice, &region.events);
                run(&correlation_sql, &[&correlation.to_string()])
            })
            .collect(),
    );
    RawLimits {
        newest,
        payload,
        payload_only,
        correlation,
    }
}

/// On the Postgres database, one connection of the bench's own.
async fn raw_postgres_limits(
    db: &TestDatabase,
    regions: &[Region],
    dice: &mut Dice,
    iterations: usize,
) -> RawLimits {
    let client = db.connect().await;
    let newest_sql = "SELECT * FROM herald_events ORDER BY position DESC LIMIT 50";
    let payload_sql = "SELECT * FROM herald_events WHERE tenant = 'default' \
        AND event_type = 'tickets.ticket_opened' AND payload @> $1 ORDER BY position LIMIT 50";
    let payload_only_sql = "SELECT * FROM herald_events WHERE tenant = 'default' \
        AND payload @> $1 ORDER BY position LIMIT 50";
    let correlation_sql = "SELECT * FROM herald_events WHERE tenant = 'default' \
        AND correlation_id = $1 ORDER BY position LIMIT 50";
    let newest_statement = client.prepare(newest_sql).await.expect("prepare");
    let mut newest = Vec::new();
    for _ in 0..iterations.max(5) {
        let started = Instant::now();
        let rows = client.query(&newest_statement, &[]).await.expect("newest");
        std::hint::black_box(rows.len());
        newest.push(started.elapsed());
    }
    let mut payload = Vec::new();
    let mut payload_only = Vec::new();
    let mut correlation = Vec::new();
    for _ in 0..RAW_SCANS {
        for (sql, times) in [
            (payload_sql, &mut payload),
            (payload_only_sql, &mut payload_only),
        ] {
            let region = pick(dice, regions);
            let customer = pick(dice, &region.customers).clone();
            let started = Instant::now();
            let rows = client
                .query(sql, &[&json!({ "customer": customer })])
                .await
                .expect("payload search");
            std::hint::black_box(rows.len());
            times.push(started.elapsed());
        }
        let region = pick(dice, regions);
        let (_, id) = *pick(dice, &region.events);
        let started = Instant::now();
        let rows = client
            .query(correlation_sql, &[&id])
            .await
            .expect("correlation search");
        std::hint::black_box(rows.len());
        correlation.push(started.elapsed());
    }
    RawLimits {
        newest: median(newest),
        payload: median(payload),
        payload_only: median(payload_only),
        correlation: median(correlation),
    }
}

// ---------------------------------------------------------------------------
// A setup.

#[derive(Debug)]
struct SetupReport {
    setup: Setup,
    head: u64,
    seed_secs: f64,
    catch_up: Duration,
    relay: Option<Duration>,
    raw: (RawLimits, RawLimits),
    tail_note: Option<String>,
    pages: Vec<PageReport>,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Milliseconds to the microsecond, for the raw figures.
fn fine_ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

impl SetupReport {
    fn print(&self) {
        let raw = RawLimits::mean(self.raw.0, self.raw.1);
        println!();
        println!(
            "== {} ({} events; filled at {:.0} events/s; read models caught up in {:.1} s{}) ==",
            self.setup.name(),
            self.head,
            self.head as f64 / self.seed_secs,
            self.catch_up.as_secs_f64(),
            self.relay.map_or_else(String::new, |r| format!(
                ", relay published it in {:.1} s",
                r.as_secs_f64()
            ))
        );
        let what = if self.setup == Setup::Embedded {
            "SQLite"
        } else {
            "Postgres"
        };
        println!(
            "raw {what} newest 50 rows (ORDER BY position DESC LIMIT 50): {} ms \
             (p50; {} before, {} after)",
            fine_ms(raw.newest),
            fine_ms(self.raw.0.newest),
            fine_ms(self.raw.1.newest)
        );
        println!(
            "raw {what} searches, best plan, LIMIT 50 (p50 of {RAW_SCANS}, mean of before and \
             after): payload.customer + event type {} ms; payload.customer alone {} ms; \
             correlation_id {} ms",
            fine_ms(raw.payload),
            fine_ms(raw.payload_only),
            fine_ms(raw.correlation)
        );
        if let Some(note) = &self.tail_note {
            println!("note: {note}");
        }
        println!(
            "{:<30} | {:>5} | {:>9} | {:>9} | {:>9} | {:>22} | {:>7} | result",
            "page", "n", "p50 ms", "p99 ms", "max ms", "p50 × raw", "target"
        );
        for page in &self.pages {
            let missing = page.missing();
            let failed = page.failed();
            let caveat = if page.page == Page::Tail && self.tail_note.is_some() {
                " (measured with ?from: ?after MISSING)"
            } else {
                ""
            };
            let verdict = match quantiles(&page.times) {
                _ if !missing.is_empty() => format!("MISSING: {}", missing.join(", ")),
                _ if failed > 0 => format!("FAILED ({failed} requests)"),
                Some(q) if q.max < TARGET => "met".to_owned(),
                Some(q) if q.p99 < TARGET => "NOT met (max)".to_owned(),
                Some(_) => "NOT met".to_owned(),
                None => "no answer".to_owned(),
            } + caveat;
            match quantiles(&page.times) {
                Some(q) => println!(
                    "{:<30} | {:>5} | {:>9} | {:>9} | {:>9} | {:>22} | {:>7} | {verdict}",
                    page.page.name(),
                    page.times.len(),
                    ms(q.p50),
                    ms(q.p99),
                    ms(q.max),
                    {
                        let (limit, name) = page.page.raw(&raw);
                        format!("{:.1} × {name}", q.p50.as_secs_f64() / limit.as_secs_f64())
                    },
                    format!("{} ms", TARGET.as_millis()),
                ),
                None => println!(
                    "{:<30} | {:>5} | {:>9} | {:>9} | {:>9} | {:>22} | {:>7} | {verdict}",
                    page.page.name(),
                    0,
                    "-",
                    "-",
                    "-",
                    "-",
                    format!("{} ms", TARGET.as_millis()),
                ),
            }
        }
        println!(
            "(p50 × raw: the page's p50 over the raw figure above that bounds it; a page is met \
             when its max is under the target)"
        );
        println!();
        println!("per request:");
        for page in &self.pages {
            for (label, stats) in &page.requests {
                let line = match (&stats.missing, quantiles(&stats.took)) {
                    (Some(why), _) => format!("MISSING ({why})"),
                    (None, Some(q)) => format!(
                        "p50 {} ms, p99 {} ms, max {} ms (n {}){}",
                        ms(q.p50),
                        ms(q.p99),
                        ms(q.max),
                        stats.took.len(),
                        if stats.returned.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; events per answer: mean {:.1}, min {}; {} of {} cut short \
                                 with a next_cursor",
                                stats.returned.iter().sum::<usize>() as f64
                                    / stats.returned.len() as f64,
                                stats.returned.iter().min().copied().unwrap_or(0),
                                stats.short_with_cursor,
                                stats.returned.len()
                            )
                        }
                    ),
                    (None, None) => "no answer".to_owned(),
                };
                println!("  {:<30} {label:<44} {line}", page.page.name());
                for failure in stats.failures.iter().filter(|f| !f.is_empty()) {
                    println!("  {:<30} {label:<44} FAILED {failure}", "");
                }
            }
            if let Some(q) = quantiles(&page.filled.iter().map(|(t, _)| *t).collect::<Vec<_>>()) {
                let requests: usize = page.filled.iter().map(|(_, n)| n).sum();
                println!(
                    "  {:<30} {:<44} until 50 events or the end (following next_cursor): \
                     p50 {} ms, p99 {} ms, max {} ms; {:.1} requests on average, at most {}",
                    page.page.name(),
                    "",
                    ms(q.p50),
                    ms(q.p99),
                    ms(q.max),
                    requests as f64 / page.filled.len() as f64,
                    page.filled.iter().map(|(_, n)| *n).max().unwrap_or(0)
                );
            }
            if page.page == Page::Audit {
                match quantiles(&page.verify) {
                    Some(q) => println!(
                        "  {:<30} {:<44} whole verify run of {} events: p50 {:.2} s, max {:.2} s \
                         (n {}) = {:.0} events/s{}",
                        "audit",
                        "POST runs → state done",
                        self.head,
                        q.p50.as_secs_f64(),
                        q.max.as_secs_f64(),
                        page.verify.len(),
                        self.head as f64 / q.p50.as_secs_f64(),
                        page.verify_note
                            .as_ref()
                            .map_or_else(String::new, |n| format!("; {n}"))
                    ),
                    None => {
                        if let Some(note) = &page.verify_note {
                            println!("  {:<30} {:<44} {note}", "audit", "verify run");
                        }
                    }
                }
            }
        }
    }
}

/// The store `herald serve` will run on, opened in this process to fill.
enum Target {
    Embedded {
        dir: tempfile::TempDir,
    },
    Postgres {
        db: TestDatabase,
        dir: tempfile::TempDir,
    },
}

impl Target {
    async fn create(setup: Setup) -> Self {
        match setup {
            Setup::Embedded => {
                let dir = match std::env::var_os("HERALD_BENCH_DIR") {
                    Some(parent) => tempfile::tempdir_in(parent),
                    None => tempfile::tempdir(),
                }
                .expect("a data dir");
                Target::Embedded { dir }
            }
            Setup::Postgres => Target::Postgres {
                db: TestDatabase::create().await,
                dir: tempfile::tempdir().expect("a working dir"),
            },
        }
    }

    fn cwd(&self) -> &Path {
        match self {
            Target::Embedded { dir } | Target::Postgres { dir, .. } => dir.path(),
        }
    }

    fn data_dir(&self) -> Option<std::path::PathBuf> {
        match self {
            Target::Embedded { dir } => Some(dir.path().join("data")),
            Target::Postgres { .. } => None,
        }
    }

    fn store_args(&self) -> Vec<String> {
        match self {
            Target::Embedded { .. } => vec![
                "--data-dir".to_owned(),
                self.data_dir().expect("a data dir").display().to_string(),
            ],
            Target::Postgres { db, .. } => vec!["--store".to_owned(), db.url().to_owned()],
        }
    }

    async fn open(&self, clock: &ManualClock) -> Arc<dyn EventStore> {
        let group_commit = herald_store::GroupCommitConfig {
            max_batch_events: SEED_BATCH * 2,
            ..Default::default()
        };
        match self {
            Target::Embedded { .. } => {
                let mut config = EmbeddedConfig::in_dir(self.data_dir().expect("a data dir"));
                config.clock = Some(Arc::new(clock.clone()));
                config.group_commit = group_commit;
                Arc::new(EmbeddedStore::open(config).await.expect("open the store"))
            }
            Target::Postgres { db, .. } => {
                let mut config = PostgresConfig::new(db.url());
                config.clock = Some(Arc::new(clock.clone()));
                config.group_commit = group_commit;
                Arc::new(PostgresStore::open(config).await.expect("open the store"))
            }
        }
    }

    async fn raw(&self, regions: &[Region], dice: &mut Dice, iterations: usize) -> RawLimits {
        match self {
            Target::Embedded { .. } => {
                let file = self
                    .data_dir()
                    .expect("a data dir")
                    .join(herald_store::embedded::FILE_NAME);
                raw_sqlite(&file, regions, dice, iterations)
            }
            Target::Postgres { db, .. } => raw_postgres_limits(db, regions, dice, iterations).await,
        }
    }
}

async fn run_setup(setup: Setup, settings: Settings) -> SetupReport {
    println!(
        "== {}: filling the store with {} events",
        setup.name(),
        settings.events
    );
    let target = Target::create(setup).await;
    let clock = ManualClock::new(Utc::now());
    let store = target.open(&clock).await;
    // Seal personal fields as `herald serve` does (its master key kept in
    // the store, as with no HERALD_MASTER_KEY).
    let registry = herald::domains::builtin()
        .registry()
        .expect("the built-in schemas");
    let privacy = herald_privacy::Privacy::open(
        Arc::clone(&store),
        registry,
        herald_privacy::MasterSource::Stored,
    )
    .await
    .expect("open the personal data keys");
    let started = Instant::now();
    let head = fill(&store, &clock, settings.events).await;
    let seed_secs = started.elapsed().as_secs_f64();
    println!(
        "filled {head} events in {seed_secs:.1} s = {:.0} events/s",
        head as f64 / seed_secs
    );
    let regions = sample(&store, head).await;
    drop(privacy);
    store.close().await;
    drop(store);
    if let Target::Postgres { db, .. } = &target {
        db.connect()
            .await
            .batch_execute("VACUUM ANALYZE")
            .await
            .expect("vacuum");
    }

    let key = create_key(target.cwd(), &target.store_args());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--log".to_owned(),
        "warn".to_owned(),
    ];
    args.extend(target.store_args());
    let started = Instant::now();
    let mut herald = Herald::start(target.cwd(), &args);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .expect("an HTTP client");
    let api = Api { http, base, key };
    wait_ready(&mut herald, &api).await;
    let (catch_up, relay) = wait_caught_up(&api, head, started).await;
    println!(
        "read models caught up {:.1} s after start{}",
        catch_up.as_secs_f64(),
        relay.map_or_else(String::new, |r| format!(
            "; the relay had published the history {:.1} s after start",
            r.as_secs_f64()
        ))
    );
    wait_quiet(herald.child.id()).await;

    let (tail, tail_note) = tail_param(&api, head).await;
    let mut bench = PageBench {
        api: &api,
        regions: &regions,
        tail: &tail,
        dice: Dice::new(7),
        settings,
    };
    let before = target
        .raw(&regions, &mut bench.dice, settings.iterations)
        .await;
    let mut pages = Vec::new();
    for page in Page::ALL.into_iter().filter(|&p| p != Page::Audit) {
        let report = bench.measure(page).await;
        println!("  {:<30} {}", page.name(), report.summary());
        pages.push(report);
    }
    // Before the audit page's verify runs, the heaviest thing started here.
    let after = target
        .raw(&regions, &mut bench.dice, settings.iterations)
        .await;
    let audit = bench.measure(Page::Audit).await;
    println!("  {:<30} {}", Page::Audit.name(), audit.summary());
    if audit.missing().contains(&"POST /v1/audit/verify/runs") {
        // Not there yet: time the synchronous verify the runs replace.
        let answer = api
            .send(&get("GET /v1/audit/verify", "/v1/audit/verify".into()))
            .await;
        println!(
            "  (verify runs missing; synchronous GET /v1/audit/verify took {:.2} s: {:?})",
            answer.took.as_secs_f64(),
            answer.outcome
        );
    }
    pages.push(audit);
    herald.terminate();
    if let (Target::Embedded { dir }, Ok(_)) = (&target, std::env::var("HERALD_BENCH_KEEP")) {
        println!(
            "  (HERALD_BENCH_KEEP: the data dir stays at {})",
            dir.path().display()
        );
        std::mem::forget(target);
    } else {
        drop(target);
    }
    SetupReport {
        setup,
        head,
        seed_secs,
        catch_up,
        relay,
        raw: (before, after),
        tail_note,
        pages,
    }
}

/// `/readyz` answers 200, within two minutes of start.
async fn wait_ready(herald: &mut Herald, api: &Api) {
    let (http, base) = (&api.http, &api.base);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = herald.child.try_wait() {
            panic!("herald serve exited early with {status}");
        }
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "herald serve was not ready within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every projection serves and has applied the head, and the
/// relay (from `/metrics`) has published up to the head; how long after
/// `started` each was (the relay's None when `/metrics` does not tell).
async fn wait_caught_up(api: &Api, head: u64, started: Instant) -> (Duration, Option<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let (mut projections, mut relay) = (None, None);
    let mut relay_told = true;
    let mut last = String::new();
    let mut reported = Instant::now();
    loop {
        if projections.is_none() {
            match projections_behind(api, head).await {
                Ok(behind) if behind.is_empty() => projections = Some(started.elapsed()),
                Ok(behind) => last = behind.join(", "),
                Err(why) => last = why,
            }
        }
        if relay.is_none() && relay_told {
            match relay_checkpoint(api).await {
                Some(at) if at >= head => relay = Some(started.elapsed()),
                Some(at) => last = format!("{last}; relay at {at}"),
                None => relay_told = false,
            }
        }
        if let Some(projections) = projections {
            if relay.is_some() || !relay_told {
                return (projections, relay);
            }
        }
        if reported.elapsed() > Duration::from_secs(15) {
            reported = Instant::now();
            println!(
                "  … catching up ({:.0} s): {last}",
                started.elapsed().as_secs_f64()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the read models and the relay catch up within an hour; still behind: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The projections that have not applied the head yet (or are rebuilding),
/// with their positions.
async fn projections_behind(api: &Api, head: u64) -> Result<Vec<String>, String> {
    let answer = api
        .send(&get("GET /v1/projections", "/v1/projections".into()))
        .await;
    let (Outcome::Answered, Some(body)) = (&answer.outcome, &answer.body) else {
        return Err(format!("{:?}", answer.outcome));
    };
    let list = body
        .get("projections")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return Err("no projections listed yet".into());
    }
    Ok(list
        .iter()
        .filter(|p| {
            p.get("lag_events").and_then(Value::as_u64) != Some(0)
                || !p.get("rebuild").is_none_or(Value::is_null)
                || p.get("position").and_then(Value::as_u64).unwrap_or(0) < head
        })
        .map(|p| {
            format!(
                "{} at {}",
                p.get("name").and_then(Value::as_str).unwrap_or("?"),
                p.get("position").and_then(Value::as_u64).unwrap_or(0)
            )
        })
        .collect())
}

/// The relay's checkpoint, from `/metrics`; None when it does not tell.
async fn relay_checkpoint(api: &Api) -> Option<u64> {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with("herald_relay_checkpoint_position"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .max()
}

/// Waits (up to 5 minutes) until `herald` uses under 5% of a core over a
/// second: whatever it does after a start on a full store is done.
async fn wait_quiet(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let before = cpu_ticks(pid).unwrap_or(0);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = cpu_ticks(pid).unwrap_or(0).saturating_sub(before) as f64 / TICKS_PER_SECOND;
        let share = used / t0.elapsed().as_secs_f64();
        if share < 0.05 {
            return;
        }
        if Instant::now() > deadline {
            println!(
                "  note: herald still uses {:.0}% of a core after 5 minutes; measuring anyway",
                share * 100.0
            );
            return;
        }
    }
}

/// Whether the log takes `after` (the console's contract) or only `from`.
async fn tail_param(api: &Api, head: u64) -> (TailParam, Option<String>) {
    let with_after = TailParam {
        head,
        after: true,
        label: "GET /v1/events?after&limit=100",
    };
    let answer = api.send(&get(with_after.label, with_after.path())).await;
    let first = answer
        .body
        .as_ref()
        .and_then(|b| b.pointer("/events/0/position"))
        .and_then(Value::as_u64);
    match answer.outcome {
        Outcome::Answered if first == Some(head.saturating_sub(100) + 1) => (with_after, None),
        Outcome::Missing(why) | Outcome::Failed(why) => (
            TailParam {
                head,
                after: false,
                label: "GET /v1/events?from&limit=100",
            },
            Some(format!(
                "GET /v1/events?after= is MISSING ({}); the tail is measured with \
                 ?from=<head-99>",
                why.chars().take(160).collect::<String>()
            )),
        ),
        outcome => (
            TailParam {
                head,
                after: false,
                label: "GET /v1/events?from&limit=100",
            },
            Some(format!(
                "GET /v1/events?after= is MISSING ({outcome:?}, first position {first:?}); \
                 the tail is measured with ?from=<head-99>"
            )),
        ),
    }
}
