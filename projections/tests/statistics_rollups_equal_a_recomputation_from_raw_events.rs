//! The statistics read model answers what a plain recomputation from the
//! raw events answers: random valid histories (tickets opened, resolved and
//! reopened; edges going offline and back, across midnights; draft
//! autosaves and publishes; countdown views; editor sessions; noise the
//! statistics ignore) over two tenants are appended to a Postgres store and
//! projected in small batches, then random ranges and groupings are asked
//! of the read model and of a recomputation that walks the events one by
//! one. Counts and sums must be equal, means and p90s (nearest rank: the
//! value at rank ⌈0.9·n⌉ of the n durations sorted ascending) equal within
//! float rounding. At the end the read model is rebuilt (big batches mixing
//! every case) and must answer every case's queries the same again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use herald_events::drafts::{DraftCreated, DraftPatched, DraftPublished, PatchOperation};
use herald_events::edges::{EdgeCameOnline, EdgeRegistered, EdgeState, EdgeWentOffline};
use herald_events::statistics::{SessionEnded, SessionStarted};
use herald_events::tickets::{
    NoteAppended, TicketKind, TicketOpened, TicketReopened, TicketResolved,
};
use herald_events::timers::CountdownViewed;
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::statistics::{
    self, GroupBy, StatisticsProjection, StatisticsRow, NAME,
};
use herald_projections::{ProjectionRunner, RunnerConfig};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const CUSTOMERS: [&str; 3] = ["acme", "globex", "initech"];

/// What one generated step asks for; turned into a valid event by
/// [`History::step`] according to the state of what it names.
#[derive(Debug, Clone)]
enum Intent {
    /// Opens the ticket, or resolves it if open, or reopens it if resolved.
    Ticket(u8),
    /// Registers the edge, or takes it offline if online, or back online.
    Edge(u8),
    /// Creates the draft, or patches or publishes it.
    Draft {
        draft: u8,
        publish: bool,
    },
    CountdownView(u8),
    /// Starts a session, or ends the one under way. The producer's clock
    /// is off from `occurred_at` by the given seconds.
    Session {
        slot: u8,
        skew_secs: i64,
    },
    /// A note on a ticket: an event the statistics ignore.
    Note(u8),
}

#[derive(Debug, Clone)]
struct Step {
    tenant: usize,
    customer: usize,
    /// Whether a session names its customer.
    named: bool,
    intent: Intent,
    /// Time since the previous event.
    gap: TimeDelta,
}

fn step() -> impl Strategy<Value = Step> {
    let intent = prop_oneof![
        4 => (0u8..6).prop_map(Intent::Ticket),
        3 => (0u8..3).prop_map(Intent::Edge),
        2 => (0u8..3, any::<bool>()).prop_map(|(draft, publish)| Intent::Draft { draft, publish }),
        1 => (0u8..2).prop_map(Intent::CountdownView),
        3 => (0u8..3, -600i64..600).prop_map(|(slot, skew_secs)| Intent::Session { slot, skew_secs }),
        1 => (0u8..6).prop_map(Intent::Note),
    ];
    // Mostly minutes to hours apart, sometimes at the same instant, with
    // microseconds, so that days, midnights and ties all occur.
    let gap = prop_oneof![
        1 => Just(TimeDelta::zero()),
        6 => (0i64..36_000, 0i64..1_000_000)
            .prop_map(|(s, us)| TimeDelta::seconds(s) + TimeDelta::microseconds(us)),
    ];
    (
        0usize..2,
        0usize..CUSTOMERS.len(),
        any::<bool>(),
        intent,
        gap,
    )
        .prop_map(|(tenant, customer, named, intent, gap)| Step {
            tenant,
            customer,
            named,
            intent,
            gap,
        })
}

/// An event as the recomputation sees it.
#[derive(Debug, Clone)]
enum Raw {
    Opened {
        ticket: String,
        customer: String,
    },
    Resolved {
        ticket: String,
    },
    Reopened {
        ticket: String,
    },
    Registered {
        edge: String,
        customer: String,
    },
    Offline {
        edge: String,
    },
    Online {
        edge: String,
    },
    Autosave,
    Publish,
    View,
    Started {
        session: String,
        customer: Option<String>,
        at: DateTime<Utc>,
    },
    Ended {
        session: String,
        at: DateTime<Utc>,
    },
    Ignored,
}

/// One generated event: for the store and for the recomputation.
#[derive(Debug, Clone)]
struct Generated {
    tenant: usize,
    stream: String,
    at: DateTime<Utc>,
    new: NewEvent,
    raw: Raw,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TicketStage {
    Open,
    Resolved,
}

/// The state of each generated thing, per tenant, so that every event is
/// valid in its history.
#[derive(Debug, Default)]
struct History {
    now: Option<DateTime<Utc>>,
    tickets: HashMap<(usize, u8), TicketStage>,
    edges: HashMap<(usize, u8), bool>,
    drafts: HashMap<(usize, u8), u64>,
    views: HashMap<(usize, u8), u64>,
    /// Per slot: sessions started so far and whether one is under way.
    sessions: HashMap<(usize, u8), (u32, bool)>,
    events: Vec<Generated>,
}

impl History {
    fn build(start: DateTime<Utc>, steps: &[Step]) -> Vec<Generated> {
        let mut history = History {
            now: Some(start),
            ..History::default()
        };
        for s in steps {
            history.step(s);
        }
        history.events
    }

    fn push(&mut self, tenant: usize, stream: String, event: NewEvent, raw: Raw) {
        let at = self.now.expect("a clock");
        self.events.push(Generated {
            tenant,
            stream,
            at,
            new: event.occurred_at(at),
            raw,
        });
    }

    fn step(&mut self, s: &Step) {
        self.now = self.now.map(|t| t + s.gap);
        let now = self.now.expect("a clock");
        let t = s.tenant;
        let customer = CUSTOMERS[s.customer].to_owned();
        match s.intent {
            Intent::Ticket(n) => {
                let ticket = format!("T-{n}");
                let stream = format!("tickets/{ticket}");
                match self.tickets.get(&(t, n)).copied() {
                    None => {
                        self.tickets.insert((t, n), TicketStage::Open);
                        let opened = TicketOpened {
                            kind: TicketKind::Other,
                            customer: customer.clone(),
                            edge: None,
                            description: "slow".into(),
                            opened_by: None,
                        };
                        self.push(
                            t,
                            stream,
                            opened.to_new_event(),
                            Raw::Opened { ticket, customer },
                        );
                    }
                    Some(TicketStage::Open) => {
                        self.tickets.insert((t, n), TicketStage::Resolved);
                        let resolved = TicketResolved {
                            resolution: Some("fixed".into()),
                            resolved_by: None,
                        };
                        self.push(t, stream, resolved.to_new_event(), Raw::Resolved { ticket });
                    }
                    Some(TicketStage::Resolved) => {
                        self.tickets.insert((t, n), TicketStage::Open);
                        let reopened = TicketReopened {
                            reason: None,
                            reopened_by: None,
                        };
                        self.push(t, stream, reopened.to_new_event(), Raw::Reopened { ticket });
                    }
                }
            }
            Intent::Edge(n) => {
                let edge = format!("E-{n}");
                let stream = format!("edges/{edge}");
                match self.edges.get(&(t, n)).copied() {
                    None => {
                        self.edges.insert((t, n), true);
                        let registered = EdgeRegistered {
                            customer: customer.clone(),
                            serial: format!("SN-{n}"),
                            site: "roof".into(),
                        };
                        self.push(
                            t,
                            stream,
                            registered.to_new_event(),
                            Raw::Registered { edge, customer },
                        );
                    }
                    Some(true) => {
                        self.edges.insert((t, n), false);
                        let offline = EdgeWentOffline {
                            previous_state: EdgeState::Online,
                            reason: None,
                        };
                        self.push(t, stream, offline.to_new_event(), Raw::Offline { edge });
                    }
                    Some(false) => {
                        self.edges.insert((t, n), true);
                        let online = EdgeCameOnline {
                            previous_state: EdgeState::Offline,
                            offline_since: None,
                        };
                        self.push(t, stream, online.to_new_event(), Raw::Online { edge });
                    }
                }
            }
            Intent::Draft { draft, publish } => {
                let stream = format!("drafts/D-{draft}");
                match self.drafts.get(&(t, draft)).copied() {
                    None => {
                        self.drafts.insert((t, draft), 1);
                        let created = DraftCreated {
                            title: "notes".into(),
                            document: serde_json::Map::new(),
                            created_by: None,
                        };
                        self.push(t, stream, created.to_new_event(), Raw::Ignored);
                    }
                    Some(version) if publish => {
                        let published = DraftPublished {
                            version,
                            published_by: None,
                        };
                        self.push(t, stream, published.to_new_event(), Raw::Publish);
                    }
                    Some(version) => {
                        self.drafts.insert((t, draft), version + 1);
                        let patched = DraftPatched {
                            patch: vec![PatchOperation::Add {
                                path: "/body".into(),
                                value: json!(version),
                            }],
                            base_version: version,
                            version: version + 1,
                            author: None,
                        };
                        self.push(t, stream, patched.to_new_event(), Raw::Autosave);
                    }
                }
            }
            Intent::CountdownView(n) => {
                let views = self.views.entry((t, n)).or_default();
                *views += 1;
                let viewed = CountdownViewed {
                    views: *views,
                    viewed_at: now,
                    client: herald_events::timers::ViewerClient::Other,
                };
                self.push(t, format!("timers/C-{n}"), viewed.to_new_event(), Raw::View);
            }
            Intent::Session { slot, skew_secs } => {
                let (count, running) = self.sessions.get(&(t, slot)).copied().unwrap_or_default();
                let producer_clock = now + TimeDelta::seconds(skew_secs);
                if running {
                    self.sessions.insert((t, slot), (count, false));
                    let session = format!("S-{slot}-{count}");
                    let ended = SessionEnded {
                        ended_at: producer_clock,
                        reason: None,
                    };
                    self.push(
                        t,
                        format!("statistics/{session}"),
                        ended.to_new_event(),
                        Raw::Ended {
                            session,
                            at: producer_clock,
                        },
                    );
                } else {
                    let count = count + 1;
                    self.sessions.insert((t, slot), (count, true));
                    let session = format!("S-{slot}-{count}");
                    let customer = s.named.then_some(customer);
                    let started = SessionStarted {
                        editor: "ada".into(),
                        draft: None,
                        customer: customer.clone(),
                        started_at: producer_clock,
                    };
                    self.push(
                        t,
                        format!("statistics/{session}"),
                        started.to_new_event(),
                        Raw::Started {
                            session,
                            customer,
                            at: producer_clock,
                        },
                    );
                }
            }
            Intent::Note(n) => {
                let note = NoteAppended {
                    note: "called".into(),
                    author: None,
                };
                self.push(
                    t,
                    format!("tickets/T-{n}"),
                    note.to_new_event(),
                    Raw::Ignored,
                );
            }
        }
    }
}

/// One question asked of both sides.
#[derive(Debug, Clone)]
struct Question {
    from: NaiveDate,
    to: NaiveDate,
    group: GroupBy,
    customer: Option<String>,
}

fn questions(first_day: NaiveDate) -> impl Strategy<Value = Vec<Question>> {
    let customer = prop_oneof![
        3 => Just(None),
        2 => (0..CUSTOMERS.len()).prop_map(|c| Some(CUSTOMERS[c].to_owned())),
        1 => Just(Some(String::new())),
    ];
    let question = (0u64..14, 0u64..10, any::<(bool, bool, bool)>(), customer).prop_map(
        move |(offset, length, (day, by_customer, edge), customer)| {
            // From the day before the first event on.
            let from = first_day.checked_sub_days(Days::new(1)).unwrap() + Days::new(offset);
            Question {
                from,
                to: from + Days::new(length),
                group: GroupBy {
                    day,
                    customer: by_customer,
                    edge,
                },
                customer,
            }
        },
    );
    prop::collection::vec(question, 5)
}

/// One case: the steps, where its clock starts, and what to ask.
fn case() -> impl Strategy<Value = (DateTime<Utc>, Vec<Step>, Vec<Question>)> {
    let first_day: NaiveDate = "2026-03-01".parse().unwrap();
    let midnight = first_day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    (
        (0i64..72_000).prop_map(move |s| midnight + TimeDelta::seconds(s)),
        prop::collection::vec(step(), 1..=60),
        questions(first_day),
    )
}

/// What each (day, customer, edge) group adds up to in the recomputation.
#[derive(Debug, Default, Clone)]
struct Expected {
    opened: i64,
    resolved: i64,
    reopened: i64,
    resolutions: Vec<i64>,
    outage_micros: i64,
    autosaves: i64,
    published: i64,
    views: i64,
    started: i64,
    ended: i64,
    session_micros: Vec<i64>,
}

type Key = (Option<NaiveDate>, Option<String>, Option<String>);

fn micros_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_microseconds().unwrap()
}

/// The nearest-rank 90th percentile: sorted ascending, the value at rank
/// ⌈0.9·n⌉ counted from 1.
fn nearest_rank_p90(values: &[i64]) -> Option<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 9).div_ceil(10);
    (rank > 0).then(|| sorted[rank - 1])
}

/// Walks the tenant's events one by one and adds each one's contribution
/// to its group, if it falls in the question's days and customer.
fn recompute(events: &[&Generated], q: &Question) -> Vec<StatisticsRow> {
    let mut groups: BTreeMap<Key, Expected> = BTreeMap::new();
    let mut add =
        |day: NaiveDate, customer: &str, edge: Option<&str>, f: &dyn Fn(&mut Expected)| {
            let wanted = q.customer.as_deref().is_none_or(|c| c == customer);
            if day < q.from || day > q.to || !wanted {
                return;
            }
            let key = (
                q.group.day.then_some(day),
                q.group.customer.then(|| customer.to_owned()),
                edge.filter(|_| q.group.edge).map(str::to_owned),
            );
            f(groups.entry(key).or_default());
        };
    let mut ticket_openings: HashMap<String, (String, DateTime<Utc>)> = HashMap::new();
    let mut edge_customers: HashMap<String, String> = HashMap::new();
    let mut offline_since: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut session_starts: HashMap<String, (String, DateTime<Utc>)> = HashMap::new();
    for e in events {
        let day = e.at.date_naive();
        match &e.raw {
            Raw::Opened { ticket, customer } => {
                ticket_openings.insert(ticket.clone(), (customer.clone(), e.at));
                add(day, customer, None, &|x| x.opened += 1);
            }
            Raw::Resolved { ticket } => {
                let (customer, opened_at) = ticket_openings[ticket].clone();
                let took = micros_between(opened_at, e.at);
                add(day, &customer, None, &|x| {
                    x.resolved += 1;
                    x.resolutions.push(took);
                });
            }
            Raw::Reopened { ticket } => {
                let customer = ticket_openings[ticket].0.clone();
                add(day, &customer, None, &|x| x.reopened += 1);
            }
            Raw::Registered { edge, customer } => {
                edge_customers.insert(edge.clone(), customer.clone());
            }
            Raw::Offline { edge } => {
                offline_since.insert(edge.clone(), e.at);
            }
            Raw::Online { edge } => {
                let since = offline_since.remove(edge).unwrap();
                let customer = edge_customers[edge].clone();
                // Each day of the question gets the overlap of the outage
                // with that day.
                let mut d = q.from;
                while d <= q.to {
                    let day_start = d.and_hms_opt(0, 0, 0).unwrap().and_utc();
                    let day_end = day_start + TimeDelta::days(1);
                    let overlap = micros_between(since.max(day_start), e.at.min(day_end));
                    if overlap > 0 {
                        add(d, &customer, Some(edge), &|x| x.outage_micros += overlap);
                    }
                    d = d.succ_opt().unwrap();
                }
            }
            Raw::Autosave => add(day, "", None, &|x| x.autosaves += 1),
            Raw::Publish => add(day, "", None, &|x| x.published += 1),
            Raw::View => add(day, "", None, &|x| x.views += 1),
            Raw::Started {
                session,
                customer,
                at,
            } => {
                let customer = customer.clone().unwrap_or_default();
                session_starts.insert(session.clone(), (customer.clone(), *at));
                add(day, &customer, None, &|x| x.started += 1);
            }
            Raw::Ended { session, at } => {
                let (customer, started_at) = session_starts[session].clone();
                let length = micros_between(started_at, *at).max(0);
                add(day, &customer, None, &|x| {
                    x.ended += 1;
                    x.session_micros.push(length);
                });
            }
            Raw::Ignored => {}
        }
    }
    if q.group == GroupBy::default() {
        groups.entry((None, None, None)).or_default();
    }
    groups
        .into_iter()
        .map(|((day, customer, edge), x)| {
            let mean = |values: &[i64]| {
                (!values.is_empty())
                    .then(|| values.iter().sum::<i64>() as f64 / values.len() as f64 / 1e6)
            };
            StatisticsRow {
                day,
                customer,
                edge,
                tickets_opened: x.opened,
                tickets_resolved: x.resolved,
                tickets_reopened: x.reopened,
                resolutions_timed: x.resolutions.len() as i64,
                mean_time_to_resolve_secs: mean(&x.resolutions),
                p90_time_to_resolve_secs: nearest_rank_p90(&x.resolutions).map(|m| m as f64 / 1e6),
                outage_minutes: x.outage_micros as f64 / 60e6,
                draft_autosaves: x.autosaves,
                drafts_published: x.published,
                countdown_views: x.views,
                sessions_started: x.started,
                sessions_ended: x.ended,
                session_seconds: x.session_micros.iter().sum::<i64>() as f64 / 1e6,
                mean_session_secs: mean(&x.session_micros),
            }
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a == b,
    }
}

/// Exact on keys and counts, within float rounding on the rest.
fn same_rows(actual: &[StatisticsRow], expected: &[StatisticsRow]) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| {
            let exact = |r: &StatisticsRow| {
                (
                    (r.day, r.customer.clone(), r.edge.clone()),
                    [
                        r.tickets_opened,
                        r.tickets_resolved,
                        r.tickets_reopened,
                        r.resolutions_timed,
                        r.draft_autosaves,
                        r.drafts_published,
                        r.countdown_views,
                        r.sessions_started,
                        r.sessions_ended,
                    ],
                )
            };
            exact(a) == exact(e)
                && close(a.outage_minutes, e.outage_minutes)
                && close(a.session_seconds, e.session_seconds)
                && close_opt(a.mean_time_to_resolve_secs, e.mean_time_to_resolve_secs)
                && close_opt(a.p90_time_to_resolve_secs, e.p90_time_to_resolve_secs)
                && close_opt(a.mean_session_secs, e.mean_session_secs)
        })
}

/// The store, the running projection, and every case checked so far (to
/// ask again after the rebuild).
struct World {
    _db: TestDatabase,
    store: Arc<dyn EventStore>,
    runner: ProjectionRunner,
    _stop: tokio::sync::watch::Sender<bool>,
    cases: AtomicUsize,
    asked: Mutex<Vec<(TenantId, Question, Vec<StatisticsRow>)>>,
}

impl World {
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the Postgres store");
        let pool = store.pool().clone();
        let store: Arc<dyn EventStore> = Arc::new(store);
        let runner = ProjectionRunner::new(
            pool,
            Arc::clone(&store),
            vec![Arc::new(StatisticsProjection)],
        )
        .with_config(RunnerConfig {
            // Small live batches, so that a ticket's opening and its
            // resolution often land in different batches.
            batch_size: 7,
            poll_interval: Duration::from_millis(10),
            ..RunnerConfig::default()
        });
        runner.install().await.expect("install the projection");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = runner.clone();
        tokio::spawn(async move { running.run(stopped).await });
        World {
            _db: db,
            store,
            runner,
            _stop: stop,
            cases: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
        }
    }

    async fn caught_up(&self) {
        let done = eventually(WAIT, || async {
            self.runner
                .status(NAME)
                .await
                .is_ok_and(|s| s.lag_events == 0 && s.rebuild.is_none())
        })
        .await;
        assert!(done, "the statistics projection catches up");
        let status = self.runner.status(NAME).await.unwrap();
        assert_eq!(status.parked, 0, "no event was parked: {status:?}");
    }

    async fn ask(&self, tenant: &TenantId, q: &Question) -> Vec<StatisticsRow> {
        statistics::query(
            &self.runner.read_models(),
            tenant,
            q.from,
            q.to,
            q.group,
            q.customer.as_deref(),
        )
        .await
        .expect("the query answers")
    }

    async fn check(
        &self,
        (start, steps, questions): (DateTime<Utc>, Vec<Step>, Vec<Question>),
    ) -> Result<(), TestCaseError> {
        let case = self.cases.fetch_add(1, Ordering::SeqCst);
        let tenants: Vec<TenantId> = (0..2)
            .map(|t| TenantId::new(format!("case{case}-t{t}")).unwrap())
            .collect();
        let events = History::build(start, &steps);
        for e in &events {
            let stream: StreamId = e.stream.parse().unwrap();
            self.store
                .append(
                    &tenants[e.tenant],
                    &stream,
                    ExpectedVersion::Any,
                    vec![e.new.clone()],
                )
                .await
                .expect("append");
        }
        self.caught_up().await;
        for (t, tenant) in tenants.iter().enumerate() {
            let own: Vec<&Generated> = events.iter().filter(|e| e.tenant == t).collect();
            for q in &questions {
                let expected = recompute(&own, q);
                let actual = self.ask(tenant, q).await;
                prop_assert!(
                    same_rows(&actual, &expected),
                    "tenant {tenant}, {q:?}\nread model: {actual:#?}\nrecomputed: {expected:#?}"
                );
                self.asked
                    .lock()
                    .unwrap()
                    .push((tenant.clone(), q.clone(), expected));
            }
        }
        Ok(())
    }
}

#[test]
fn statistics_rollups_equal_a_recomputation_from_raw_events() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(World::start());
    let mut cases = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = cases.run(&case(), |case| runtime.block_on(world.check(case)));
    if let Err(e) = outcome {
        panic!("{e}");
    }

    // A rebuild (big batches mixing every case) answers the same.
    runtime.block_on(async {
        let before = world.runner.status(NAME).await.unwrap().generation;
        world.runner.rebuild(NAME).await.expect("start a rebuild");
        let switched = eventually(WAIT, || async {
            world
                .runner
                .status(NAME)
                .await
                .is_ok_and(|s| s.generation != before && s.rebuild.is_none())
        })
        .await;
        assert!(switched, "the rebuilt generation serves");
        world.caught_up().await;
        let asked = std::mem::take(&mut *world.asked.lock().unwrap());
        assert!(asked.len() >= 24 * 2 * 5);
        let mut non_empty = 0;
        for (tenant, q, expected) in &asked {
            let actual = world.ask(tenant, q).await;
            assert!(
                same_rows(&actual, expected),
                "after the rebuild, tenant {tenant}, {q:?}\nread model: {actual:#?}\nrecomputed: {expected:#?}"
            );
            non_empty += usize::from(actual.iter().any(|r| r.tickets_opened + r.draft_autosaves + r.sessions_started > 0));
        }
        // The questions were not all about empty ranges (random ranges over
        // random days: about a quarter to a third hold data, so the bound
        // leaves room for an unlucky draw).
        assert!(non_empty > asked.len() / 10, "{non_empty} of {} answers hold data", asked.len());
    });
}
