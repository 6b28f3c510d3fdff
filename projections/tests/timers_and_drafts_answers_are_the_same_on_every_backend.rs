//! The timers and drafts read models answer on every read-model backend
//! what they answer on Postgres (the projections' conformance suite, run on
//! Postgres in a database of its own and on SQLite, the embedded store's
//! backend): the Postgres reference runner and the runner under test
//! follow one log (with other batch boundaries), and every query — each
//! filter, each sort in both orders, every page through its cursors, each
//! timer, countdown and draft by id (a draft at every version and at
//! instants around them), missing ids, forged cursors — answers the same
//! JSON, also after a blue-green rebuild of the read models under test.
//! Events neither can apply are parked by both, with the same errors.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_events::drafts::{
    DraftCreated, DraftDeleted, DraftPatched, DraftPublished, DraftRenamed, DraftRestored,
    PatchOperation,
};
use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownViewed, Delivery, DeliveryKind, TimerCancelled,
    TimerFired, TimerScheduled,
};
use herald_events::{NewEvent, SchemaVersion, TypedEvent};
use herald_projections::read_models::drafts::{self, DraftAt, DraftQuery, DraftSort, VersionQuery};
use herald_projections::read_models::timers::{
    self, CountdownQuery, CountdownSort, TimerQuery, TimerSort, TimerStatus,
};
use herald_projections::read_models::{Cursor, Page, SortOrder};
use herald_projections::{ReadModels, RunnerConfig};
use herald_testkit::eventually;
use serde::Serialize;
use serde_json::{json, Map, Value};

mod common;
mod conformance;

use conformance::{same, Backend, Fixture, Models, WAIT};

const TENANTS: &[&str] = &["acme", "globex", "Initech-2", "nobody"];
const SORT_ORDERS: [SortOrder; 2] = [SortOrder::Asc, SortOrder::Desc];

fn t(offset_secs: i64) -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(offset_secs)
}

/// `t(secs)` plus nanoseconds: finer than either backend keeps.
fn t_nanos(secs: i64, nanos: i64) -> DateTime<Utc> {
    t(secs) + TimeDelta::nanoseconds(nanos)
}

/// The Postgres reference and the runner under test, started, with other
/// batch boundaries, so rows are carried across batches at other events.
async fn start(backend: Backend) -> Fixture {
    let mut f = Fixture::new(
        backend,
        &[timers::NAME, drafts::NAME],
        RunnerConfig {
            batch_size: 3,
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
        RunnerConfig {
            batch_size: 7,
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
    )
    .await;
    f.install().await;
    f.start();
    f
}

/// Both runners have every event of `name`, and parked `parked` of them,
/// the same ones with the same errors.
async fn caught_up(f: &Fixture, name: &str, parked: usize) {
    let done = eventually(WAIT, || async {
        let pg = f.reference.status(name).await.unwrap();
        let tested = f.tested.status(name).await.unwrap();
        pg.lag_events == 0
            && tested.lag_events == 0
            && pg.rebuild.is_none()
            && tested.rebuild.is_none()
            && f.reference.parked(name).await.unwrap().len() == parked
            && f.tested.parked(name).await.unwrap().len() == parked
    })
    .await;
    assert!(done, "both runners of {name} catch up");
    f.parked_alike(name).await;
}

fn both(f: &Fixture) -> Both {
    let (pg, sq) = f.both();
    Both { pg, sq }
}

struct Both {
    pg: ReadModels,
    /// The backend under test.
    sq: Models,
}

/// The next page's cursor, decoded for `sort`.
fn next(page: &Page<impl Sized>, sort: &str) -> Option<Cursor> {
    page.next_cursor.as_deref().map(|text| {
        Cursor::decode(text, sort).unwrap_or_else(|| panic!("a cursor of {sort}: {text}"))
    })
}

/// The items of every page, checked to be the items of one page as big as
/// they all are (every row once, in order).
fn paged_as_one<T: Serialize>(what: &str, pages: Vec<T>, whole: Vec<T>) -> usize {
    let pages = serde_json::to_value(pages).unwrap();
    assert_eq!(
        pages,
        serde_json::to_value(whole).unwrap(),
        "paged = unpaged: {what}"
    );
    pages.as_array().map_or(0, Vec::len)
}

fn timer_sort_name(sort: TimerSort) -> &'static str {
    match sort {
        TimerSort::DueAt => "due_at",
        TimerSort::Id => "id",
    }
}

fn countdown_sort_name(sort: CountdownSort) -> &'static str {
    match sort {
        CountdownSort::Deadline => "deadline",
        CountdownSort::Views => "views",
        CountdownSort::Id => "id",
    }
}

fn draft_sort_name(sort: DraftSort) -> &'static str {
    match sort {
        DraftSort::UpdatedAt => "updated_at",
        DraftSort::CreatedAt => "created_at",
        DraftSort::Id => "id",
    }
}

impl Both {
    /// Every page of `query` (from its first), compared; their items.
    async fn timer_pages(&self, tenant: &str, mut query: TimerQuery) -> Vec<timers::TimerView> {
        let mut items = Vec::new();
        loop {
            let what = format!("timers of {tenant} {query:?}");
            let page = same(
                &what,
                timers::list_timers(&self.pg, tenant, &query).await,
                timers::list_timers(&self.sq, tenant, &query).await,
            )
            .unwrap();
            query.cursor = next(&page, timer_sort_name(query.sort));
            items.extend(page.items);
            if query.cursor.is_none() {
                return items;
            }
        }
    }

    async fn countdown_pages(
        &self,
        tenant: &str,
        mut query: CountdownQuery,
        now: DateTime<Utc>,
    ) -> Vec<timers::CountdownView> {
        let mut items = Vec::new();
        loop {
            let what = format!("countdowns of {tenant} {query:?} at {now}");
            let page = same(
                &what,
                timers::list_countdowns(&self.pg, tenant, &query, now).await,
                timers::list_countdowns(&self.sq, tenant, &query, now).await,
            )
            .unwrap();
            query.cursor = next(&page, countdown_sort_name(query.sort));
            items.extend(page.items);
            if query.cursor.is_none() {
                return items;
            }
        }
    }

    async fn draft_pages(&self, tenant: &str, mut query: DraftQuery) -> Vec<drafts::DraftSummary> {
        let mut items = Vec::new();
        loop {
            let what = format!("drafts of {tenant} {query:?}");
            let page = same(
                &what,
                drafts::list_drafts(&self.pg, tenant, &query).await,
                drafts::list_drafts(&self.sq, tenant, &query).await,
            )
            .unwrap();
            query.cursor = next(&page, draft_sort_name(query.sort));
            items.extend(page.items);
            if query.cursor.is_none() {
                return items;
            }
        }
    }

    /// Every page of a draft's versions; `None` when there is no draft.
    async fn version_pages(
        &self,
        tenant: &str,
        id: &str,
        mut query: VersionQuery,
    ) -> Option<Vec<drafts::DraftVersion>> {
        let mut items = Vec::new();
        loop {
            let what = format!("versions of {tenant}/{id} {query:?}");
            let page = same(
                &what,
                drafts::draft_versions(&self.pg, tenant, id, &query).await,
                drafts::draft_versions(&self.sq, tenant, id, &query).await,
            )
            .unwrap()?;
            query.cursor = next(&page, "version");
            items.extend(page.items);
            if query.cursor.is_none() {
                return Some(items);
            }
        }
    }

    /// Every timer and countdown query; how many items they listed.
    async fn timers_agree(&self) -> usize {
        let mut listed = 0;
        let mut ids = BTreeSet::from(["missing".to_owned(), "offer".to_owned()]);
        let windows = [
            (None, None),
            (Some(t(950)), Some(t(980))),
            (Some(t_nanos(100, 500)), None),
            (None, Some(t_nanos(300, 123_456_000))),
            (None, Some(t_nanos(300, 123_457_000))),
            (Some(t(7250)), Some(t(7250))),
        ];
        for tenant in TENANTS {
            for status in [
                None,
                Some(TimerStatus::Pending),
                Some(TimerStatus::Fired),
                Some(TimerStatus::Cancelled),
            ] {
                for (due_after, due_before) in windows {
                    for sort in [TimerSort::DueAt, TimerSort::Id] {
                        for order in SORT_ORDERS {
                            let query = TimerQuery {
                                status,
                                due_after,
                                due_before,
                                sort,
                                order,
                                limit: 500,
                                cursor: None,
                            };
                            let whole = self.timer_pages(tenant, query.clone()).await;
                            let paged = self
                                .timer_pages(tenant, TimerQuery { limit: 4, ..query })
                                .await;
                            ids.extend(whole.iter().map(|timer| timer.id.clone()));
                            listed += paged_as_one(&format!("timers of {tenant}"), paged, whole);
                        }
                    }
                }
            }
        }
        for tenant in TENANTS {
            for id in &ids {
                same(
                    &format!("timer {tenant}/{id}"),
                    timers::timer(&self.pg, tenant, id).await,
                    timers::timer(&self.sq, tenant, id).await,
                )
                .unwrap();
            }
        }

        let mut ids = BTreeSet::from(["missing".to_owned(), "once".to_owned()]);
        for tenant in TENANTS {
            for expired in [None, Some(true), Some(false)] {
                for sort in [
                    CountdownSort::Deadline,
                    CountdownSort::Views,
                    CountdownSort::Id,
                ] {
                    for order in SORT_ORDERS {
                        let query = CountdownQuery {
                            expired,
                            sort,
                            order,
                            limit: 500,
                            cursor: None,
                        };
                        let now = t(500);
                        let whole = self.countdown_pages(tenant, query.clone(), now).await;
                        let paged = self
                            .countdown_pages(tenant, CountdownQuery { limit: 3, ..query }, now)
                            .await;
                        ids.extend(whole.iter().map(|countdown| countdown.id.clone()));
                        listed += paged_as_one(&format!("countdowns of {tenant}"), paged, whole);
                    }
                }
            }
        }
        for tenant in TENANTS {
            for id in &ids {
                for now in [t(-100), t(500), t_nanos(999, 999_999_999), t(10_000)] {
                    same(
                        &format!("countdown {tenant}/{id} at {now}"),
                        timers::countdown(&self.pg, tenant, id, now).await,
                        timers::countdown(&self.sq, tenant, id, now).await,
                    )
                    .unwrap();
                }
            }
        }

        // Cursors of the right sort but a forged value are refused alike.
        let forged = |sort: &str, value: Value| Cursor {
            sort: sort.into(),
            value,
            id: "x".into(),
        };
        for cursor in [
            forged("due_at", json!(5)),
            forged("due_at", json!("not a time")),
            forged("id", json!(5)),
            forged("due_at", json!("2026-03-01T09:00:00.5+01:00")),
        ] {
            let query = TimerQuery {
                limit: 5,
                sort: TimerSort::DueAt,
                cursor: Some(cursor.clone()),
                ..TimerQuery::default()
            };
            let query = if cursor.sort == "id" {
                TimerQuery {
                    sort: TimerSort::Id,
                    ..query
                }
            } else {
                query
            };
            let _ = same(
                &format!("timers after {cursor:?}"),
                timers::list_timers(&self.pg, "acme", &query).await,
                timers::list_timers(&self.sq, "acme", &query).await,
            );
        }
        for cursor in [forged("views", json!("3")), forged("views", json!(1))] {
            let query = CountdownQuery {
                sort: CountdownSort::Views,
                limit: 2,
                cursor: Some(cursor.clone()),
                ..CountdownQuery::default()
            };
            let _ = same(
                &format!("countdowns after {cursor:?}"),
                timers::list_countdowns(&self.pg, "acme", &query, t(0)).await,
                timers::list_countdowns(&self.sq, "acme", &query, t(0)).await,
            );
        }
        listed
    }

    /// Every draft query; how many items they listed.
    async fn drafts_agree(&self) -> usize {
        let mut listed = 0;
        let mut ids = BTreeSet::from(["missing".to_owned()]);
        for tenant in TENANTS {
            for deleted in [false, true] {
                for published in [None, Some(true), Some(false)] {
                    for sort in [DraftSort::UpdatedAt, DraftSort::CreatedAt, DraftSort::Id] {
                        for order in SORT_ORDERS {
                            let query = DraftQuery {
                                deleted,
                                published,
                                title_prefix: None,
                                sort,
                                order,
                                limit: 500,
                                cursor: None,
                            };
                            let whole = self.draft_pages(tenant, query.clone()).await;
                            let paged = self
                                .draft_pages(tenant, DraftQuery { limit: 4, ..query })
                                .await;
                            ids.extend(whole.iter().map(|draft| draft.id.clone()));
                            listed += paged_as_one(&format!("drafts of {tenant}"), paged, whole);
                        }
                    }
                }
            }
            for prefix in [
                "",
                "Gone",
                "gone",
                "GONE",
                "100%",
                "100",
                "a_",
                "a%",
                "Ä",
                "ä",
                "Release notes",
                "Release notes 2 ",
                "d1",
            ] {
                for deleted in [false, true] {
                    let query = DraftQuery {
                        deleted,
                        title_prefix: Some(prefix.into()),
                        sort: DraftSort::Id,
                        limit: 3,
                        ..DraftQuery::default()
                    };
                    listed += self.draft_pages(tenant, query).await.len();
                }
            }
        }
        for tenant in TENANTS {
            for id in &ids {
                let mut history = None;
                for order in SORT_ORDERS {
                    let query = VersionQuery {
                        order,
                        limit: 500,
                        cursor: None,
                    };
                    let whole = self.version_pages(tenant, id, query.clone()).await;
                    let paged = self
                        .version_pages(tenant, id, VersionQuery { limit: 7, ..query })
                        .await;
                    if let (Some(paged), Some(whole)) = (paged, whole) {
                        history = Some(whole.clone());
                        listed += paged_as_one(&format!("versions of {tenant}/{id}"), paged, whole);
                    }
                }
                let mut ats = vec![
                    DraftAt::Current,
                    DraftAt::Version(0),
                    DraftAt::Version(u64::MAX),
                    DraftAt::Instant(t(-1_000)),
                    DraftAt::Instant(t(100_000)),
                ];
                // Each version, and the instants at, just before and just
                // after it was made.
                for version in history.unwrap_or_default() {
                    ats.push(DraftAt::Version(version.version as u64));
                    ats.push(DraftAt::Version(version.version as u64 + 1));
                    for delta in [
                        TimeDelta::zero(),
                        TimeDelta::microseconds(-1),
                        TimeDelta::nanoseconds(500),
                        TimeDelta::seconds(5),
                    ] {
                        ats.push(DraftAt::Instant(version.at + delta));
                    }
                }
                for at in ats {
                    same(
                        &format!("draft {tenant}/{id} at {at:?}"),
                        drafts::draft(&self.pg, tenant, id, at).await,
                        drafts::draft(&self.sq, tenant, id, at).await,
                    )
                    .unwrap();
                }
            }
        }
        for cursor in [
            Cursor {
                sort: "version".into(),
                value: json!("3"),
                id: "3".into(),
            },
            Cursor {
                sort: "updated_at".into(),
                value: json!(3),
                id: "x".into(),
            },
        ] {
            let versions = VersionQuery {
                limit: 2,
                cursor: Some(cursor.clone()),
                ..VersionQuery::default()
            };
            let _ = same(
                &format!("versions after {cursor:?}"),
                drafts::draft_versions(&self.pg, "acme", "notes", &versions).await,
                drafts::draft_versions(&self.sq, "acme", "notes", &versions).await,
            );
            let list = DraftQuery {
                limit: 2,
                cursor: Some(cursor.clone()),
                ..DraftQuery::default()
            };
            let _ = same(
                &format!("drafts after {cursor:?}"),
                drafts::list_drafts(&self.pg, "acme", &list).await,
                drafts::list_drafts(&self.sq, "acme", &list).await,
            );
        }
        listed
    }
}

fn delivery(target: &str) -> Delivery {
    let mut body = Map::new();
    body.insert("reason".into(), json!("timeout ü"));
    body.insert("n".into(), json!(0.1));
    Delivery {
        kind: DeliveryKind::Command,
        domain: "tickets".into(),
        stream_id: target.into(),
        name: "close".into(),
        body,
    }
}

fn scheduled_at(due_at: DateTime<Utc>, every_secs: Option<u64>, label: Option<&str>) -> NewEvent {
    TimerScheduled {
        due_at,
        every_secs,
        deliver: delivery("T-1"),
        correlation_id: None,
        label: label.map(str::to_owned),
    }
    .to_new_event()
    .occurred_at(t(0))
}

fn scheduled(due: i64, every_secs: Option<u64>, label: &str) -> NewEvent {
    scheduled_at(t(due), every_secs, Some(label))
}

fn fired(occurrence: u64, due: i64, late_by: i64, next: Option<i64>) -> NewEvent {
    TimerFired {
        occurrence,
        due_at: t(due),
        fired_at: t(due + late_by),
        late: late_by > 2,
        next_due_at: next.map(t),
    }
    .to_new_event()
    .occurred_at(t(due + late_by))
}

fn countdown(deadline: DateTime<Utc>, label: &str) -> NewEvent {
    CountdownCreated {
        deadline,
        label: label.into(),
        style: herald_events::timers::CountdownStyle::v2_default(),
    }
    .to_new_event()
    .occurred_at(t(0))
}

fn viewed(views: u64, at: i64) -> NewEvent {
    CountdownViewed {
        views,
        viewed_at: t(at),
        client: herald_events::timers::ViewerClient::Other,
    }
    .to_new_event()
    .occurred_at(t(at))
}

async fn append_timers(f: &Fixture) {
    // acme: a one-shot timer that fired late, a recurring one that fired
    // twice (cancelled later), a cancelled one, one scheduled again after
    // firing, times finer than microseconds, ids that sort by their bytes.
    f.append(
        "acme",
        "timers/once",
        vec![scheduled(100, None, "once"), fired(1, 100, 30, None)],
    )
    .await;
    f.append(
        "acme",
        "timers/hourly",
        vec![
            scheduled(50, Some(3600), "hourly"),
            fired(1, 50, 0, Some(3650)),
            fired(2, 3650, 1, Some(7250)),
        ],
    )
    .await;
    f.append(
        "acme",
        "timers/dropped",
        vec![
            scheduled(200, None, "dropped"),
            TimerCancelled {
                reason: Some("ticket closed — ✓".into()),
            }
            .to_new_event()
            .occurred_at(t(10)),
        ],
    )
    .await;
    f.append(
        "acme",
        "timers/again",
        vec![
            scheduled(40, None, "again"),
            fired(1, 40, 5, None),
            scheduled(7250, None, "again, later"),
        ],
    )
    .await;
    f.append(
        "acme",
        "timers/fine",
        vec![
            scheduled_at(t_nanos(300, 123_456_789), Some(60), None),
            TimerFired {
                occurrence: 1,
                due_at: t_nanos(300, 123_456_789),
                fired_at: t_nanos(300, 987_654_321),
                late: false,
                next_due_at: Some(t_nanos(360, 123_456_789)),
            }
            .to_new_event()
            .occurred_at(t_nanos(300, 987_654_321)),
        ],
    )
    .await;
    for id in [
        "Alpha", "alpha", "a-b", "a_b", "a.b", "a~b", "A:1", "a@b", "a",
    ] {
        f.append(
            "acme",
            &format!("timers/{id}"),
            vec![scheduled(7250, None, id)],
        )
        .await;
    }
    for i in 0..23 {
        f.append(
            "acme",
            &format!("timers/t{i:02}"),
            vec![scheduled(1000 - (i % 7) * 10, None, "paged")],
        )
        .await;
    }
    // Events neither backend can apply: parked.
    let malformed = NewEvent::new(
        "timers.timer_scheduled".parse().unwrap(),
        SchemaVersion::V1,
        json!({"due_at": "soon"}),
    );
    f.append("acme", "timers/bad", vec![malformed]).await;
    f.append("acme", "timers/ghost", vec![fired(1, 0, 0, None)])
        .await;

    // Countdowns: expired, running, views to sort by (with ties).
    f.append(
        "acme",
        "timers/offer",
        vec![
            countdown(t(1000), "Offer ends"),
            viewed(1, 10),
            viewed(2, 20),
            CountdownExpired {
                deadline: t(1000),
                views: 2,
            }
            .to_new_event()
            .occurred_at(t(1001)),
        ],
    )
    .await;
    f.append(
        "acme",
        "timers/sale",
        vec![countdown("2999-01-01T00:00:00Z".parse().unwrap(), "Sale")],
    )
    .await;
    for i in 0..9u64 {
        let mut events = vec![countdown(t_nanos(900 + i as i64, 250_000_999), "counted")];
        events.extend((1..=i % 4).map(|v| viewed(v, 100 + v as i64)));
        f.append("acme", &format!("timers/c{i}"), events).await;
    }

    // globex: the same ids, other facts.
    f.append(
        "globex",
        "timers/once",
        vec![scheduled(5, None, "globex once")],
    )
    .await;
    f.append(
        "globex",
        "timers/offer",
        vec![countdown(t(50), "Globex offer")],
    )
    .await;
    f.append(
        "Initech-2",
        "timers/only",
        vec![scheduled(5, Some(1), "every second")],
    )
    .await;
}

fn created(title: &str, document: Value, at: i64) -> NewEvent {
    DraftCreated {
        title: title.into(),
        document: document.as_object().unwrap().clone(),
        created_by: Some("ada".into()),
    }
    .to_new_event()
    .occurred_at(t(at))
}

fn patched(ops: Value, version: u64, at: i64) -> NewEvent {
    DraftPatched {
        patch: serde_json::from_value::<Vec<PatchOperation>>(ops).unwrap(),
        base_version: version - 1,
        version,
        author: Some(format!("author-{version}")),
    }
    .to_new_event()
    .occurred_at(t(at))
}

fn published(version: u64, by: Option<&str>, at: i64) -> NewEvent {
    DraftPublished {
        version,
        published_by: by.map(str::to_owned),
    }
    .to_new_event()
    .occurred_at(t(at))
}

/// A tiny deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

/// A patch that applies to `document` (an object of numbered keys and a
/// list): adds, replaces, removes, moves, copies and tests.
fn some_patch(rng: &mut Lcg, document: &Value, version: usize) -> Value {
    let keys: Vec<&String> = document
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "list")
        .collect();
    let fresh = format!("/k{version}");
    match (rng.next(6), keys.is_empty()) {
        (0, false) => json!([{"op": "remove", "path": format!("/{}", keys[rng.next(keys.len())])}]),
        (1, false) => {
            let key = keys[rng.next(keys.len())];
            json!([
                {"op": "test", "path": format!("/{key}"), "value": document[key.as_str()]},
                {"op": "replace", "path": format!("/{key}"), "value": {"v": version, "f": 1.5e-7}},
            ])
        }
        (2, false) => {
            json!([{"op": "move", "from": format!("/{}", keys[rng.next(keys.len())]), "path": fresh}])
        }
        (3, false) => {
            json!([{"op": "copy", "from": format!("/{}", keys[rng.next(keys.len())]), "path": fresh}])
        }
        (4, _) => json!([{"op": "add", "path": "/list/0", "value": version}]),
        _ => json!([{"op": "add", "path": fresh, "value": [version, "x~/y ü", null, u64::MAX]}]),
    }
}

async fn append_drafts(f: &Fixture) {
    f.append(
        "acme",
        "drafts/notes",
        vec![
            created("Release notes", json!({"body": "Hello", "tags": []}), 0),
            patched(
                json!([{"op": "replace", "path": "/body", "value": "Hello, world"}]),
                2,
                10,
            ),
            published(2, Some("grace"), 15),
            // Published again, and an older version: only the current one
            // is recorded, the last publication of it kept.
            published(2, Some("hopper"), 16),
            published(1, Some("nobody"), 17),
            patched(
                json!([{"op": "add", "path": "/tags/-", "value": "v2"}]),
                3,
                20,
            ),
            // Does not apply (no /missing): no version is made.
            patched(json!([{"op": "remove", "path": "/missing"}]), 4, 25),
            DraftRenamed {
                title: "Release notes 2".into(),
            }
            .to_new_event()
            .occurred_at(t(30)),
        ],
    )
    .await;
    f.append(
        "acme",
        "drafts/old",
        vec![
            created("Old plan", json!({"x": 1}), 5),
            DraftDeleted { reason: None }
                .to_new_event()
                .occurred_at(t(40)),
        ],
    )
    .await;
    f.append(
        "acme",
        "drafts/gone",
        vec![
            created("Gone then back", json!({}), 6),
            DraftDeleted {
                reason: Some("oops".into()),
            }
            .to_new_event()
            .occurred_at(t(41)),
            DraftRestored {}.to_new_event().occurred_at(t(42)),
        ],
    )
    .await;
    for (id, title) in [
        ("lower", "gone lowercase"),
        ("pct", "100% sure"),
        ("num", "1000 ways"),
        ("under", "a_b title"),
        ("axb", "axb title"),
        ("umlaut", "Äpfel"),
        ("Upper", "äpfel"),
    ] {
        f.append(
            "acme",
            &format!("drafts/{id}"),
            vec![
                created(title, json!({"title": title, "n": 1e300, "e": {}}), 7),
                published(1, None, 8),
            ],
        )
        .await;
    }
    for i in 0..15 {
        f.append(
            "acme",
            &format!("drafts/d{i:02}"),
            vec![created(&format!("d{}", i % 4), json!({"i": i}), 50 + i % 3)],
        )
        .await;
    }
    // Created twice, and patched though never created: parked.
    f.append("acme", "drafts/old", vec![created("Again", json!({}), 60)])
        .await;
    f.append(
        "acme",
        "drafts/ghost",
        vec![patched(
            json!([{"op": "add", "path": "/a", "value": 1}]),
            2,
            61,
        )],
    )
    .await;

    // Many versions: documents rebuilt from snapshots and patches.
    let mut rng = Lcg(7);
    let mut document = json!({"list": [], "k0": "start"});
    let mut events = vec![created("Long", document.clone(), 0)];
    for version in 2..=120usize {
        let ops = some_patch(&mut rng, &document, version);
        let patch: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
        json_patch::patch(&mut document, &patch).expect("the generated patch applies");
        events.push(patched(ops, version as u64, version as i64 * 10));
        if version == 33 || version == 70 {
            events.push(published(
                version as u64,
                Some("ada"),
                version as i64 * 10 + 1,
            ));
        }
    }
    for chunk in events.chunks(25) {
        f.append("acme", "drafts/long", chunk.to_vec()).await;
    }

    f.append(
        "globex",
        "drafts/notes",
        vec![created("Globex notes", json!({"body": "Other"}), 1)],
    )
    .await;
}

async fn timers_and_drafts_answer_the_same_on_every_backend(backend: Backend) {
    let f = start(backend).await;
    append_timers(&f).await;
    append_drafts(&f).await;
    caught_up(&f, timers::NAME, 2).await;
    caught_up(&f, drafts::NAME, 2).await;
    // Later events land on rows earlier batches wrote.
    f.append(
        "acme",
        "timers/hourly",
        vec![TimerCancelled { reason: None }.to_new_event()],
    )
    .await;
    f.append(
        "acme",
        "drafts/gone",
        vec![
            patched(
                json!([{"op": "add", "path": "/back", "value": true}]),
                2,
                43,
            ),
            published(2, None, 44),
        ],
    )
    .await;
    caught_up(&f, timers::NAME, 2).await;
    caught_up(&f, drafts::NAME, 2).await;

    let both = both(&f);
    // The comparisons cover the rows: as many listed as the lists hold.
    let timers_listed = both.timers_agree().await;
    let drafts_listed = both.drafts_agree().await;
    // The rows this event set lists across all those queries: a query
    // that lost rows alike on both backends would show here.
    assert_eq!((timers_listed, drafts_listed), (888, 662));
    // A few facts, so "the same" is not "the same nothing".
    let hourly = timers::timer(&both.sq, "acme", "hourly")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hourly.timer.status, hourly.firings.len()),
        (TimerStatus::Cancelled, 2)
    );
    let again = timers::timer(&both.sq, "acme", "again")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            again.timer.status,
            again.timer.fired_count,
            again.timer.due_at
        ),
        (TimerStatus::Pending, 1, t(7250))
    );
    let fine = timers::timer(&both.sq, "acme", "fine")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fine.timer.due_at, t_nanos(360, 123_456_000), "microseconds");
    let long = drafts::draft(&both.sq, "acme", "long", DraftAt::Version(65))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(long.version.version, 65);
    let notes = drafts::draft_versions(
        &both.sq,
        "acme",
        "notes",
        &VersionQuery {
            limit: 10,
            ..VersionQuery::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(notes.items[1].published_by.as_deref(), Some("hopper"));

    // A blue-green rebuild on the backend under test (all events in other
    // batches) answers the same again.
    f.rebuild(timers::NAME).await;
    f.rebuild(drafts::NAME).await;
    caught_up(&f, timers::NAME, 2).await;
    caught_up(&f, drafts::NAME, 2).await;
    assert_eq!(both.timers_agree().await, timers_listed);
    assert_eq!(both.drafts_agree().await, drafts_listed);
}
conformance!(timers_and_drafts_answer_the_same_on_every_backend);
