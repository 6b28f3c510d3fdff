//! The statistics read model answers on every read-model backend exactly
//! what it answers on Postgres (the projections' conformance suite, run on
//! Postgres in a database of its own and on SQLite, the embedded store's
//! backend). One Postgres store holds a varied log over three tenants —
//! scripted edge cases (zero-length and repeated resolutions, resolutions
//! and reopenings of tickets never opened, outages across several
//! midnights, offline twice in a row, online without an outage, an edge
//! re-registered mid-outage, an outage not ended, sessions without a
//! customer, with a skewed clock, ended without a start, enough
//! resolutions in a day for a p90 that is not the maximum) and a long
//! seeded random mix, some of it backdated — and both the Postgres
//! reference runner and the runner under test project it, in batches of
//! different sizes. Every (tenant, range, grouping, customer) asked must
//! get the same JSON from both; and again after the read model under test
//! is rebuilt (one big batch).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use herald_events::drafts::{DraftPatched, DraftPublished, PatchOperation};
use herald_events::edges::{EdgeCameOnline, EdgeRegistered, EdgeState, EdgeWentOffline};
use herald_events::statistics::{SessionEnded, SessionStarted};
use herald_events::tickets::{
    NoteAppended, TicketKind, TicketOpened, TicketReopened, TicketResolved,
};
use herald_events::timers::CountdownViewed;
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::statistics::{self, GroupBy, StatisticsRow, NAME};
use herald_projections::{ReadModels, RunnerConfig};
use herald_store::ExpectedVersion;
use herald_testkit::eventually;
use serde_json::{json, Value};

mod common;
mod conformance;

use conformance::{Backend, Fixture, Models, WAIT};

const TENANTS: [&str; 3] = ["north", "south", "east"];
const CUSTOMERS: [&str; 4] = ["acme", "globex", "Acme", "ünïcødé"];

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The log being written: events per tenant and stream, at a clock.
struct Log {
    now: DateTime<Utc>,
    events: Vec<(usize, String, NewEvent)>,
}

impl Log {
    fn push(&mut self, tenant: usize, stream: String, event: NewEvent) {
        self.events
            .push((tenant, stream, event.occurred_at(self.now)));
    }

    fn wait(&mut self, delta: TimeDelta) -> &mut Self {
        self.now += delta;
        self
    }

    fn open(&mut self, t: usize, ticket: &str, customer: &str) -> &mut Self {
        let opened = TicketOpened {
            kind: TicketKind::Outage,
            customer: customer.into(),
            edge: None,
            description: "down".into(),
            opened_by: None,
        };
        self.push(t, format!("tickets/{ticket}"), opened.to_new_event());
        self
    }

    fn resolve(&mut self, t: usize, ticket: &str) -> &mut Self {
        let resolved = TicketResolved {
            resolution: None,
            resolved_by: None,
        };
        self.push(t, format!("tickets/{ticket}"), resolved.to_new_event());
        self
    }

    fn reopen(&mut self, t: usize, ticket: &str) -> &mut Self {
        let reopened = TicketReopened {
            reason: Some("again".into()),
            reopened_by: None,
        };
        self.push(t, format!("tickets/{ticket}"), reopened.to_new_event());
        self
    }

    fn note(&mut self, t: usize, ticket: &str) -> &mut Self {
        let note = NoteAppended {
            note: "called".into(),
            author: None,
        };
        self.push(t, format!("tickets/{ticket}"), note.to_new_event());
        self
    }

    fn register(&mut self, t: usize, edge: &str, customer: &str) -> &mut Self {
        let registered = EdgeRegistered {
            customer: customer.into(),
            serial: format!("SN-{edge}"),
            site: "roof".into(),
        };
        self.push(t, format!("edges/{edge}"), registered.to_new_event());
        self
    }

    fn offline(&mut self, t: usize, edge: &str) -> &mut Self {
        let offline = EdgeWentOffline {
            previous_state: EdgeState::Online,
            reason: None,
        };
        self.push(t, format!("edges/{edge}"), offline.to_new_event());
        self
    }

    fn online(&mut self, t: usize, edge: &str) -> &mut Self {
        let online = EdgeCameOnline {
            previous_state: EdgeState::Offline,
            offline_since: None,
        };
        self.push(t, format!("edges/{edge}"), online.to_new_event());
        self
    }

    fn autosave(&mut self, t: usize, draft: &str) -> &mut Self {
        let patched = DraftPatched {
            patch: vec![PatchOperation::Add {
                path: "/body".into(),
                value: json!("text"),
            }],
            base_version: 1,
            version: 2,
            author: None,
        };
        self.push(t, format!("drafts/{draft}"), patched.to_new_event());
        self
    }

    fn publish(&mut self, t: usize, draft: &str) -> &mut Self {
        let published = DraftPublished {
            version: 2,
            published_by: None,
        };
        self.push(t, format!("drafts/{draft}"), published.to_new_event());
        self
    }

    fn view(&mut self, t: usize, countdown: &str) -> &mut Self {
        let viewed = CountdownViewed {
            views: 1,
            viewed_at: self.now,
            client: herald_events::timers::ViewerClient::Other,
        };
        self.push(t, format!("timers/{countdown}"), viewed.to_new_event());
        self
    }

    /// A session whose producer's clock is `skew` off.
    fn start(
        &mut self,
        t: usize,
        session: &str,
        customer: Option<&str>,
        skew: TimeDelta,
    ) -> &mut Self {
        let started = SessionStarted {
            editor: "ada".into(),
            draft: None,
            customer: customer.map(str::to_owned),
            started_at: self.now + skew,
        };
        self.push(t, format!("statistics/{session}"), started.to_new_event());
        self
    }

    fn end(&mut self, t: usize, session: &str, skew: TimeDelta) -> &mut Self {
        let ended = SessionEnded {
            ended_at: self.now + skew,
            reason: None,
        };
        self.push(t, format!("statistics/{session}"), ended.to_new_event());
        self
    }
}

/// The edge cases, spelled out.
fn scripted(log: &mut Log) {
    let zero = TimeDelta::zero();
    let minutes = TimeDelta::minutes;
    // Tenant 0: a ticket resolved at the instant it opened; one resolved,
    // reopened and resolved again; a resolution and a reopening of tickets
    // never opened; a ticket opened again (the second opening counts).
    log.open(0, "T-zero", "acme").resolve(0, "T-zero");
    log.wait(minutes(7))
        .open(0, "T-again", "globex")
        .wait(TimeDelta::microseconds(90_000_123))
        .resolve(0, "T-again")
        .wait(minutes(30))
        .reopen(0, "T-again")
        .wait(TimeDelta::hours(26))
        .resolve(0, "T-again");
    log.resolve(0, "T-ghost")
        .reopen(0, "T-phantom")
        .note(0, "T-ghost");
    log.open(0, "T-twice", "acme")
        .wait(minutes(3))
        .open(0, "T-twice", "Acme")
        .wait(minutes(4))
        .resolve(0, "T-twice");
    // Enough resolutions in one day that the p90 is not the maximum.
    log.wait(TimeDelta::hours(1));
    for i in 0..23 {
        log.open(0, &format!("T-p{i}"), CUSTOMERS[i % 2]);
    }
    for i in 0..23 {
        log.wait(TimeDelta::seconds(37 * (i as i64 % 5) + 1))
            .resolve(0, &format!("T-p{i}"));
    }
    // Edges: an outage across three midnights; offline twice in a row;
    // online without an outage; offline without a registration;
    // re-registered for another customer mid-outage; one not ended.
    log.register(0, "E-long", "acme")
        .wait(TimeDelta::hours(2))
        .offline(0, "E-long")
        .wait(TimeDelta::hours(58) + TimeDelta::microseconds(17))
        .online(0, "E-long");
    log.register(0, "E-twice", "globex")
        .offline(0, "E-twice")
        .wait(minutes(20))
        .offline(0, "E-twice")
        .wait(minutes(20))
        .online(0, "E-twice")
        .online(0, "E-twice");
    log.online(0, "E-never-down")
        .offline(0, "E-unregistered")
        .wait(minutes(45))
        .online(0, "E-unregistered");
    log.register(0, "E-moved", "acme")
        .offline(0, "E-moved")
        .wait(minutes(10))
        .register(0, "E-moved", "ünïcødé")
        .wait(minutes(10))
        .online(0, "E-moved");
    log.register(0, "E-open", "acme").offline(0, "E-open");
    // Sessions: without a customer; with a clock skewed so the length is
    // negative (counts 0); ended without a start; ended on the next day.
    log.start(0, "S-anon", None, zero).wait(minutes(12)).end(
        0,
        "S-anon",
        TimeDelta::microseconds(250),
    );
    log.start(0, "S-skew", Some("globex"), minutes(10))
        .wait(minutes(1))
        .end(0, "S-skew", zero);
    log.end(0, "S-orphan", zero);
    log.start(0, "S-late", Some("acme"), zero)
        .wait(TimeDelta::hours(30))
        .end(0, "S-late", -minutes(5));
    log.autosave(0, "D-1")
        .autosave(0, "D-1")
        .publish(0, "D-1")
        .view(0, "C-1")
        .view(0, "C-1");
    // Tenant 1 names the same things with other numbers.
    log.open(1, "T-zero", "acme")
        .wait(minutes(90))
        .resolve(1, "T-zero")
        .register(1, "E-long", "globex")
        .offline(1, "E-long")
        .wait(TimeDelta::hours(5))
        .online(1, "E-long")
        .start(1, "S-anon", Some(""), zero)
        .wait(minutes(2))
        .end(1, "S-anon", zero);
}

/// A seeded xorshift: the same "random" log every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A long mix over every tenant, ids and customers from small sets so that
/// things meet again; not always a valid history, sometimes backdated.
fn random(log: &mut Log, rng: &mut Rng, steps: usize) {
    for _ in 0..steps {
        let gap = match rng.below(8) {
            0 => TimeDelta::zero(),
            1 => TimeDelta::hours(rng.below(20) as i64),
            _ => TimeDelta::microseconds(rng.below(3_600_000_000) as i64),
        };
        log.wait(gap);
        let t = rng.below(TENANTS.len() as u64) as usize;
        let customer = CUSTOMERS[rng.below(CUSTOMERS.len() as u64) as usize];
        let id = rng.below(5);
        let skew = TimeDelta::seconds(rng.below(600) as i64 - 300);
        // Now and then an event dated before the one before it.
        let backdated = rng.below(20) == 0;
        if backdated {
            log.wait(-TimeDelta::hours(3));
        }
        match rng.below(14) {
            0 | 1 => log.open(t, &format!("T-{id}"), customer),
            2 | 3 => log.resolve(t, &format!("T-{id}")),
            4 => log.reopen(t, &format!("T-{id}")),
            5 => log.register(t, &format!("E-{id}"), customer),
            6 => log.offline(t, &format!("E-{id}")),
            7 => log.online(t, &format!("E-{id}")),
            8 => log.autosave(t, &format!("D-{id}")),
            9 => log.publish(t, &format!("D-{id}")),
            10 => log.view(t, &format!("C-{id}")),
            11 => {
                let named = (rng.below(3) > 0).then_some(customer);
                log.start(t, &format!("S-{id}"), named, skew)
            }
            12 => log.end(t, &format!("S-{id}"), skew),
            _ => log.note(t, &format!("T-{id}")),
        };
        if backdated {
            log.wait(TimeDelta::hours(3));
        }
    }
}

/// Both runners have projected the whole log, parking nothing.
async fn caught_up(f: &Fixture) {
    let statuses = || async { [f.reference.status(NAME).await, f.tested.status(NAME).await] };
    let done = eventually(WAIT, || async {
        statuses().await.iter().all(|s| {
            s.as_ref()
                .is_ok_and(|s| s.lag_events == 0 && s.rebuild.is_none())
        })
    })
    .await;
    assert!(done, "both projections catch up: {:?}", statuses().await);
    for status in statuses().await {
        assert_eq!(status.unwrap().parked, 0);
    }
}

/// One question, asked of both.
#[derive(Debug, Clone)]
struct Question {
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    group: GroupBy,
    customer: Option<String>,
}

fn questions(first: NaiveDate, last: NaiveDate) -> Vec<Question> {
    let day = |d: NaiveDate, n: i64| {
        if n >= 0 {
            d + Days::new(n as u64)
        } else {
            d - Days::new(n.unsigned_abs())
        }
    };
    let ranges = [
        (first, last),
        (first, first),
        (last, last),
        (day(first, 1), day(first, 3)),
        (day(first, 2), day(first, 2)),
        (day(first, 5), day(last, -4)),
        (day(first, -10), day(first, -1)),
        (day(last, 1), day(last, 30)),
        (day(first, -1), day(first, 364)),
    ];
    let customers = [
        None,
        Some("acme"),
        Some("Acme"),
        Some("globex"),
        Some(""),
        Some("ünïcødé"),
        Some("nobody"),
    ];
    let mut all = Vec::new();
    for tenant in TENANTS.iter().chain(&["nobody"]) {
        for (from, to) in ranges {
            for bits in 0..8u8 {
                for customer in customers {
                    all.push(Question {
                        tenant: TenantId::new(*tenant).unwrap(),
                        from,
                        to,
                        group: GroupBy {
                            day: bits & 1 != 0,
                            customer: bits & 2 != 0,
                            edge: bits & 4 != 0,
                        },
                        customer: customer.map(str::to_owned),
                    });
                }
            }
        }
    }
    all
}

/// What the answers held, to show the comparisons were not of empty rows.
#[derive(Debug, Default)]
struct Seen {
    with_data: usize,
    p90s: usize,
    outages: usize,
    edge_rows: usize,
    mean_sessions: usize,
    day_rows: usize,
}

impl Seen {
    fn add(&mut self, rows: &[StatisticsRow]) {
        let data = rows.iter().any(|r| {
            r.tickets_opened + r.tickets_resolved + r.draft_autosaves + r.sessions_ended > 0
                || r.outage_minutes > 0.0
        });
        self.with_data += usize::from(data);
        self.p90s += rows
            .iter()
            .filter(|r| r.p90_time_to_resolve_secs.is_some())
            .count();
        self.outages += rows.iter().filter(|r| r.outage_minutes > 0.0).count();
        self.edge_rows += rows.iter().filter(|r| r.edge.is_some()).count();
        self.mean_sessions += rows
            .iter()
            .filter(|r| r.mean_session_secs.is_some())
            .count();
        self.day_rows += rows.iter().filter(|r| r.day.is_some()).count();
    }
}

async fn ask_both(postgres: &ReadModels, tested: &Models, questions: &[Question]) -> Seen {
    let mut seen = Seen::default();
    for q in questions {
        let customer = q.customer.as_deref();
        let expected = statistics::query(postgres, &q.tenant, q.from, q.to, q.group, customer)
            .await
            .expect("Postgres answers");
        let actual = statistics::query(tested, &q.tenant, q.from, q.to, q.group, customer)
            .await
            .expect("the backend under test answers");
        let expected_json: Value = serde_json::to_value(&expected).unwrap();
        let actual_json: Value = serde_json::to_value(&actual).unwrap();
        assert_eq!(
            actual_json, expected_json,
            "{q:?}\ntested: {actual:#?}\nPostgres: {expected:#?}"
        );
        seen.add(&expected);
    }
    seen
}

fn assert_varied(seen: &Seen, asked: usize) {
    assert!(
        seen.with_data > asked / 5,
        "{} of {asked} answers hold data: {seen:?}",
        seen.with_data
    );
    assert!(seen.p90s > 100, "{seen:?}");
    assert!(seen.outages > 100, "{seen:?}");
    assert!(seen.edge_rows > 100, "{seen:?}");
    assert!(seen.mean_sessions > 100, "{seen:?}");
    assert!(seen.day_rows > 1000, "{seen:?}");
}

async fn statistics_answer_the_same_on_every_backend(backend: Backend) {
    let mut f = Fixture::new(
        backend,
        &[NAME],
        RunnerConfig {
            batch_size: 7,
            poll_interval: Duration::from_millis(10),
            ..RunnerConfig::default()
        },
        RunnerConfig {
            batch_size: 5,
            poll_interval: Duration::from_millis(10),
            ..RunnerConfig::default()
        },
    )
    .await;
    let store = Arc::clone(&f.store);

    let mut log = Log {
        now: at("2026-03-01T21:40:00.000001Z"),
        events: Vec::new(),
    };
    scripted(&mut log);
    random(&mut log, &mut Rng(0x5eed_cafe_f00d_d00d), 900);
    let days: Vec<NaiveDate> = log
        .events
        .iter()
        .map(|(_, _, e)| e.occurred_at.date_naive())
        .collect();
    let (first, last) = (*days.iter().min().unwrap(), *days.iter().max().unwrap());
    assert!((last - first).num_days() > 10, "{first} to {last}");

    // The first half before the runners start, the rest while they run, in
    // appends of one to four events.
    let tenants: Vec<TenantId> = TENANTS.iter().map(|t| TenantId::new(*t).unwrap()).collect();
    let append = |events: Vec<(usize, String, NewEvent)>| {
        let store = Arc::clone(&store);
        let tenants = tenants.clone();
        async move {
            let mut i = 0;
            while i < events.len() {
                let (t, stream, _) = &events[i];
                let mut group = Vec::new();
                while i < events.len()
                    && &events[i].0 == t
                    && &events[i].1 == stream
                    && group.len() < 1 + i % 4
                {
                    group.push(events[i].2.clone());
                    i += 1;
                }
                let stream: StreamId = stream.parse().unwrap();
                store
                    .append(&tenants[*t], &stream, ExpectedVersion::Any, group)
                    .await
                    .expect("append");
            }
        }
    };
    let mut events = log.events;
    let later = events.split_off(events.len() / 2);
    append(events).await;

    f.install().await;
    f.start();
    append(later).await;

    caught_up(&f).await;
    let (postgres_models, tested_models) = f.both();
    let asked = questions(first, last);
    let seen = ask_both(&postgres_models, &tested_models, &asked).await;
    assert_varied(&seen, asked.len());

    // A rebuild of the read model under test (one big batch) answers the
    // same.
    f.rebuild(NAME).await;
    caught_up(&f).await;
    let seen_again = ask_both(&postgres_models, &tested_models, &asked).await;
    assert_varied(&seen_again, asked.len());

    f.stop().await;
}
conformance!(statistics_answer_the_same_on_every_backend);
