//! The timers and drafts read models follow the log: their rows are what
//! the events of each tenant say (tenants apart), a blue-green rebuild
//! (other batch boundaries) yields exactly the same rows, and a draft
//! patched many times holds, at every version and instant, the document
//! that applying its patches directly gives.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Pool;
use herald_events::drafts::{
    DraftCreated, DraftDeleted, DraftPatched, DraftPublished, DraftRenamed, DraftRestored,
    PatchOperation,
};
use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownViewed, Delivery, DeliveryKind, TimerCancelled,
    TimerFired, TimerScheduled,
};
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::drafts::{
    self, DraftAt, DraftQuery, DraftSort, DraftsProjection, VersionKind, VersionQuery,
};
use herald_projections::read_models::timers::{
    self, CountdownQuery, CountdownSort, TimerQuery, TimerSort, TimerStatus, TimersProjection,
};
use herald_projections::read_models::{Page, SortOrder};
use herald_projections::{Projection, ProjectionRunner, ReadModels, RunnerConfig};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

fn t(offset_secs: i64) -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(offset_secs)
}

/// A store on a fresh database, and a runner of `projection` over it that
/// applies small live batches (so rows are carried across batches) while a
/// rebuild takes everything in one.
struct Fixture {
    _db: TestDatabase,
    store: Arc<dyn EventStore>,
    pool: Pool,
    runner: ProjectionRunner,
    stop: watch::Sender<bool>,
    name: &'static str,
}

impl Fixture {
    async fn start(projection: Arc<dyn Projection>) -> Self {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the Postgres store");
        let pool = store.pool().clone();
        let store: Arc<dyn EventStore> = Arc::new(store);
        let name = projection.name();
        let runner = ProjectionRunner::new(pool.clone(), Arc::clone(&store), vec![projection])
            .with_config(RunnerConfig {
                batch_size: 3,
                poll_interval: Duration::from_millis(20),
                ..RunnerConfig::default()
            });
        runner.install().await.expect("install the projection");
        let (stop, stopped) = watch::channel(false);
        tokio::spawn({
            let runner = runner.clone();
            async move { runner.run(stopped).await }
        });
        Self {
            _db: db,
            store,
            pool,
            runner,
            stop,
            name,
        }
    }

    fn read_models(&self) -> ReadModels {
        self.runner.read_models()
    }

    async fn append(&self, tenant: &str, stream: &str, events: Vec<NewEvent>) {
        let stream: StreamId = stream.parse().expect("a stream id");
        self.store
            .append(
                &TenantId::new(tenant).unwrap(),
                &stream,
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append");
    }

    async fn caught_up(&self) {
        let done = eventually(WAIT, || async {
            let status = self.runner.status(self.name).await.unwrap();
            status.lag_events == 0 && status.rebuild.is_none()
        })
        .await;
        assert!(done, "{} catches up", self.name);
        assert!(self.runner.parked(self.name).await.unwrap().is_empty());
    }

    /// Every row of every table of the serving generation, as JSON, sorted.
    async fn rows(&self) -> Vec<(String, Vec<String>)> {
        let client = self.pool.get().await.unwrap();
        let (_, schema) = self.read_models().serving(self.name).await.unwrap();
        let projection_tables = match self.name {
            "timers" => TimersProjection.tables(),
            _ => DraftsProjection.tables(),
        };
        let mut all = Vec::new();
        for table in projection_tables {
            let mut rows: Vec<String> = client
                .query(
                    &format!("SELECT to_jsonb(r)::text FROM {schema}.{table} r"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            rows.sort();
            all.push((table.to_string(), rows));
        }
        all
    }

    /// Rebuilds the read model and checks the new generation holds the
    /// same rows as the one it replaced.
    async fn rebuild_yields_the_same_rows(&self) {
        let before = self.rows().await;
        assert!(
            before.iter().all(|(_, rows)| !rows.is_empty()),
            "{before:?}"
        );
        let serving = self.runner.status(self.name).await.unwrap().generation;
        let building = self.runner.rebuild(self.name).await.unwrap();
        assert_ne!(Some(building), serving);
        let switched = eventually(WAIT, || async {
            let status = self.runner.status(self.name).await.unwrap();
            status.rebuild.is_none() && status.generation == Some(building)
        })
        .await;
        assert!(switched, "the rebuild of {} takes over", self.name);
        assert_eq!(self.rows().await, before, "rebuilt = live");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn ids<T>(page: &Page<T>, id: impl Fn(&T) -> &str) -> Vec<String> {
    page.items.iter().map(|i| id(i).to_owned()).collect()
}

fn delivery(target: &str) -> Delivery {
    Delivery {
        kind: DeliveryKind::Command,
        domain: "tickets".into(),
        stream_id: target.into(),
        name: "close".into(),
        body: Map::new(),
    }
}

fn scheduled(due: i64, every_secs: Option<u64>, label: &str) -> NewEvent {
    TimerScheduled {
        due_at: t(due),
        every_secs,
        deliver: delivery("T-1"),
        correlation_id: None,
        label: Some(label.into()),
    }
    .to_new_event()
    .occurred_at(t(0))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timers_and_countdowns_follow_the_events_of_each_tenant() {
    let f = Fixture::start(Arc::new(TimersProjection)).await;
    // acme: a one-shot timer that fired late, a recurring one that fired
    // twice, a cancelled one, a countdown that expired and one running.
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
                reason: Some("ticket closed".into()),
            }
            .to_new_event()
            .occurred_at(t(10)),
        ],
    )
    .await;
    f.append(
        "acme",
        "timers/offer",
        vec![
            CountdownCreated {
                deadline: t(1000),
                label: "Offer ends".into(),
                style: herald_events::timers::CountdownStyle::v2_default(),
            }
            .to_new_event()
            .occurred_at(t(0)),
            CountdownViewed {
                views: 1,
                viewed_at: t(10),
                client: herald_events::timers::ViewerClient::Other,
            }
            .to_new_event(),
            CountdownViewed {
                views: 2,
                viewed_at: t(20),
                client: herald_events::timers::ViewerClient::Other,
            }
            .to_new_event(),
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
        vec![
            CountdownCreated {
                deadline: "2999-01-01T00:00:00Z".parse().unwrap(),
                label: "Sale".into(),
                style: herald_events::timers::CountdownStyle::v2_default(),
            }
            .to_new_event(),
            // The image's style and URL change nothing the view shows, and
            // park nothing.
            herald_events::timers::CountdownRestyled {
                style: herald_events::timers::CountdownStyle {
                    width: 600,
                    ..herald_events::timers::CountdownStyle::v2_default()
                },
            }
            .to_new_event(),
            herald_events::timers::CountdownImageUrlIssued {
                key_sha256: "a".repeat(64),
            }
            .to_new_event(),
            herald_events::timers::CountdownImageUrlRevoked {
                key_sha256: "a".repeat(64),
            }
            .to_new_event(),
        ],
    )
    .await;
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
        vec![CountdownCreated {
            deadline: t(50),
            label: "Globex offer".into(),
            style: herald_events::timers::CountdownStyle::v2_default(),
        }
        .to_new_event()],
    )
    .await;
    f.caught_up().await;
    let rm = f.read_models();

    let all = |status| TimerQuery {
        status,
        limit: 50,
        ..TimerQuery::default()
    };
    let acme = timers::list_timers(&rm, "acme", &all(None)).await.unwrap();
    // By due time: the one-shot fired at its due time 100, the cancelled
    // one stays at 200, the recurring one is next due at 7250.
    assert_eq!(
        ids(&acme, |t| &t.id),
        ["once", "dropped", "hourly"],
        "{acme:#?}"
    );
    let pending = timers::list_timers(&rm, "acme", &all(Some(TimerStatus::Pending)))
        .await
        .unwrap();
    assert_eq!(ids(&pending, |t| &t.id), ["hourly"]);
    let hourly = &pending.items[0];
    assert_eq!(
        (
            hourly.fired_count,
            hourly.next_due_at,
            hourly.due_at,
            hourly.every_secs
        ),
        (2, Some(t(7250)), t(7250), Some(3600))
    );
    assert_eq!(hourly.version, 3);
    let fired_list = timers::list_timers(&rm, "acme", &all(Some(TimerStatus::Fired)))
        .await
        .unwrap();
    assert_eq!(ids(&fired_list, |t| &t.id), ["once"]);
    let cancelled = timers::list_timers(&rm, "acme", &all(Some(TimerStatus::Cancelled)))
        .await
        .unwrap();
    assert_eq!(
        cancelled.items[0].cancel_reason.as_deref(),
        Some("ticket closed")
    );
    assert_eq!(cancelled.items[0].next_due_at, None);

    let once = timers::timer(&rm, "acme", "once").await.unwrap().unwrap();
    assert_eq!(once.timer.status, TimerStatus::Fired);
    assert_eq!((once.timer.late_count, once.timer.fired_count), (1, 1));
    assert_eq!(once.timer.last_fired_at, Some(t(130)));
    assert_eq!(once.timer.deliver["stream_id"], "T-1");
    assert_eq!(once.firings.len(), 1);
    assert!(once.firings[0].late);
    let hourly = timers::timer(&rm, "acme", "hourly").await.unwrap().unwrap();
    let occurrences: Vec<i64> = hourly.firings.iter().map(|f| f.occurrence).collect();
    assert_eq!(occurrences, [2, 1], "most recent first");
    assert_eq!(hourly.firings[0].fired_at, t(3651));

    // Tenants apart: globex's "once" is its own, acme's countdowns are not
    // timers.
    let globex = timers::list_timers(&rm, "globex", &all(None))
        .await
        .unwrap();
    assert_eq!(ids(&globex, |t| &t.id), ["once"]);
    assert_eq!(globex.items[0].label.as_deref(), Some("globex once"));
    assert_eq!(globex.items[0].status, TimerStatus::Pending);
    assert!(timers::timer(&rm, "acme", "offer").await.unwrap().is_none());
    assert!(timers::timer(&rm, "nobody", "once")
        .await
        .unwrap()
        .is_none());

    let now = t(500);
    let countdowns = |expired| CountdownQuery {
        expired,
        limit: 50,
        ..CountdownQuery::default()
    };
    let acme = timers::list_countdowns(&rm, "acme", &countdowns(None), now)
        .await
        .unwrap();
    assert_eq!(ids(&acme, |c| &c.id), ["offer", "sale"]);
    let offer = &acme.items[0];
    assert_eq!(
        (
            offer.views,
            offer.expired,
            offer.expired_at,
            offer.last_viewed_at
        ),
        (2, true, Some(t(1001)), Some(t(20)))
    );
    assert_eq!(offer.remaining_secs, 500, "computed at the given instant");
    let running = timers::list_countdowns(&rm, "acme", &countdowns(Some(false)), now)
        .await
        .unwrap();
    assert_eq!(ids(&running, |c| &c.id), ["sale"]);
    let globex = timers::countdown(&rm, "globex", "offer", t(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((globex.label.as_str(), globex.views), ("Globex offer", 0));
    assert_eq!(globex.remaining_secs, 0, "past the deadline");
    assert!(timers::countdown(&rm, "globex", "sale", now)
        .await
        .unwrap()
        .is_none());

    // Later events land on the rows the earlier batches wrote.
    f.append(
        "acme",
        "timers/hourly",
        vec![TimerCancelled { reason: None }.to_new_event()],
    )
    .await;
    f.caught_up().await;
    let hourly = timers::timer(&rm, "acme", "hourly").await.unwrap().unwrap();
    assert_eq!(hourly.timer.status, TimerStatus::Cancelled);
    assert_eq!(
        (hourly.timer.fired_count, hourly.timer.due_at),
        (2, t(7250))
    );
    assert_eq!(hourly.firings.len(), 2);

    f.rebuild_yields_the_same_rows().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timer_lists_filter_sort_and_page_every_row_once() {
    let f = Fixture::start(Arc::new(TimersProjection)).await;
    for i in 0..23 {
        f.append(
            "acme",
            &format!("timers/t{i:02}"),
            vec![scheduled(1000 - (i % 7) * 10, None, "paged")],
        )
        .await;
    }
    f.caught_up().await;
    let rm = f.read_models();
    for (sort, order) in [
        (TimerSort::DueAt, SortOrder::Asc),
        (TimerSort::DueAt, SortOrder::Desc),
        (TimerSort::Id, SortOrder::Desc),
    ] {
        let mut seen = Vec::new();
        let mut query = TimerQuery {
            sort,
            order,
            limit: 5,
            ..TimerQuery::default()
        };
        loop {
            let page = timers::list_timers(&rm, "acme", &query).await.unwrap();
            seen.extend(page.items.iter().map(|t| (t.due_at, t.id.clone())));
            let Some(next) = page.next_cursor else { break };
            let name = if sort == TimerSort::Id {
                "id"
            } else {
                "due_at"
            };
            query.cursor =
                Some(herald_projections::read_models::Cursor::decode(&next, name).unwrap());
        }
        let mut expected = seen.clone();
        match (sort, order) {
            (TimerSort::DueAt, SortOrder::Asc) => expected.sort(),
            (TimerSort::DueAt, SortOrder::Desc) => expected.sort_by(|a, b| b.cmp(a)),
            _ => expected.sort_by(|a, b| b.1.cmp(&a.1)),
        }
        assert_eq!(seen.len(), 23, "{sort:?} {order:?}: every row once");
        assert_eq!(seen, expected, "{sort:?} {order:?}: in order");
        let distinct: std::collections::BTreeSet<_> = seen.iter().map(|s| &s.1).collect();
        assert_eq!(distinct.len(), 23);
    }
    let window = timers::list_timers(
        &rm,
        "acme",
        &TimerQuery {
            due_after: Some(t(950)),
            due_before: Some(t(980)),
            limit: 50,
            ..TimerQuery::default()
        },
    )
    .await
    .unwrap();
    assert!(window
        .items
        .iter()
        .all(|timer| (t(950)..t(980)).contains(&timer.due_at)));
    // Due 950, 960, 970: i % 7 in {5, 4, 3}, three ids each.
    assert_eq!(window.items.len(), 9);
    let by_views = timers::list_countdowns(
        &rm,
        "acme",
        &CountdownQuery {
            sort: CountdownSort::Views,
            limit: 5,
            ..CountdownQuery::default()
        },
        t(0),
    )
    .await
    .unwrap();
    assert!(by_views.items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_the_read_model_cannot_apply_are_parked_and_the_rest_goes_on() {
    let f = Fixture::start(Arc::new(TimersProjection)).await;
    let malformed = NewEvent::new(
        "timers.timer_scheduled".parse().unwrap(),
        herald_events::SchemaVersion::V1,
        json!({"due_at": "soon"}),
    );
    f.append("acme", "timers/bad", vec![malformed]).await;
    // A firing of a timer never scheduled: nothing to fold it into.
    f.append("acme", "timers/ghost", vec![fired(1, 0, 0, None)])
        .await;
    f.append("acme", "timers/good", vec![scheduled(10, None, "good")])
        .await;
    let parked = eventually(WAIT, || async {
        f.runner.parked(f.name).await.unwrap().len() == 2
            && f.runner.status(f.name).await.unwrap().lag_events == 0
    })
    .await;
    assert!(parked, "both events are parked");
    let errors: Vec<String> = f
        .runner
        .parked(f.name)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.error)
        .collect();
    assert!(errors[0].contains("timers.timer_scheduled"), "{errors:?}");
    assert!(
        errors[1].contains("timers/ghost") && errors[1].contains("not a timer"),
        "{errors:?}"
    );
    let rm = f.read_models();
    let listed = timers::list_timers(
        &rm,
        "acme",
        &TimerQuery {
            limit: 10,
            ..TimerQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&listed, |t| &t.id), ["good"]);
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

fn patched(ops: Value, base_version: u64, version: u64, at: i64) -> NewEvent {
    DraftPatched {
        patch: serde_json::from_value::<Vec<PatchOperation>>(ops).unwrap(),
        base_version,
        version,
        author: Some(format!("author-{version}")),
    }
    .to_new_event()
    .occurred_at(t(at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drafts_follow_the_events_of_each_tenant() {
    let f = Fixture::start(Arc::new(DraftsProjection)).await;
    f.append(
        "acme",
        "drafts/notes",
        vec![
            created("Release notes", json!({"body": "Hello", "tags": []}), 0),
            patched(
                json!([{"op": "replace", "path": "/body", "value": "Hello, world"}]),
                1,
                2,
                10,
            ),
            DraftPublished {
                version: 2,
                published_by: Some("grace".into()),
            }
            .to_new_event()
            .occurred_at(t(15)),
            patched(
                json!([{"op": "add", "path": "/tags/-", "value": "v2"}]),
                2,
                3,
                20,
            ),
            // Does not apply (no /missing): the aggregate would have refused
            // it; replayed, it changes nothing and makes no version.
            patched(json!([{"op": "remove", "path": "/missing"}]), 3, 4, 25),
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
            DraftDeleted { reason: None }
                .to_new_event()
                .occurred_at(t(41)),
            DraftRestored {}.to_new_event().occurred_at(t(42)),
        ],
    )
    .await;
    f.append(
        "globex",
        "drafts/notes",
        vec![created("Globex notes", json!({"body": "Other"}), 1)],
    )
    .await;
    f.caught_up().await;
    let rm = f.read_models();

    let list = |query: DraftQuery| {
        let rm = rm.clone();
        async move { drafts::list_drafts(&rm, "acme", &query).await.unwrap() }
    };
    let live = list(DraftQuery {
        limit: 50,
        ..DraftQuery::default()
    })
    .await;
    // By updated_at: notes (30), gone (42).
    assert_eq!(ids(&live, |d| &d.id), ["notes", "gone"]);
    let notes = &live.items[0];
    assert_eq!(notes.title, "Release notes 2");
    assert_eq!((notes.version, notes.stream_version), (3, 6));
    assert_eq!(notes.published_version, Some(2));
    let document = json!({"body": "Hello, world", "tags": ["v2"]});
    assert_eq!(
        notes.size_bytes,
        serde_json::to_vec(&document).unwrap().len() as i64
    );
    let deleted = list(DraftQuery {
        deleted: true,
        limit: 50,
        ..DraftQuery::default()
    })
    .await;
    assert_eq!(ids(&deleted, |d| &d.id), ["old"]);
    let published = list(DraftQuery {
        published: Some(true),
        limit: 50,
        ..DraftQuery::default()
    })
    .await;
    assert_eq!(ids(&published, |d| &d.id), ["notes"]);
    let prefixed = list(DraftQuery {
        title_prefix: Some("Gone".into()),
        sort: DraftSort::CreatedAt,
        order: SortOrder::Desc,
        limit: 50,
        ..DraftQuery::default()
    })
    .await;
    assert_eq!(ids(&prefixed, |d| &d.id), ["gone"]);

    let now = drafts::draft(&rm, "acme", "notes", DraftAt::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.document, document);
    assert_eq!(
        (now.version.version, now.version.kind),
        (3, VersionKind::Patched)
    );
    assert_eq!(now.version.author.as_deref(), Some("author-3"));
    let v2 = drafts::draft(&rm, "acme", "notes", DraftAt::Version(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.document, json!({"body": "Hello, world", "tags": []}));
    assert!(v2.version.published);
    let v1 = drafts::draft(&rm, "acme", "notes", DraftAt::Instant(t(9)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v1.version.version, v1.version.kind),
        (1, VersionKind::Created)
    );
    assert_eq!(v1.document, json!({"body": "Hello", "tags": []}));
    assert!(drafts::draft(&rm, "acme", "notes", DraftAt::Instant(t(-1)))
        .await
        .unwrap()
        .is_none());
    assert!(drafts::draft(&rm, "acme", "notes", DraftAt::Version(4))
        .await
        .unwrap()
        .is_none());
    let history = drafts::draft_versions(
        &rm,
        "acme",
        "notes",
        &VersionQuery {
            limit: 50,
            ..VersionQuery::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    let summary: Vec<(i64, bool, i64)> = history
        .items
        .iter()
        .map(|v| (v.version, v.published, v.operations))
        .collect();
    assert_eq!(summary, [(1, false, 0), (2, true, 1), (3, false, 1)]);
    assert_eq!(history.items[1].published_by.as_deref(), Some("grace"));
    assert_eq!(history.items[1].published_at, Some(t(15)));

    // Tenants apart.
    let globex = drafts::draft(&rm, "globex", "notes", DraftAt::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(globex.document, json!({"body": "Other"}));
    assert!(drafts::draft(&rm, "globex", "old", DraftAt::Current)
        .await
        .unwrap()
        .is_none());
    assert!(
        drafts::draft_versions(&rm, "globex", "gone", &VersionQuery::default())
            .await
            .unwrap()
            .is_none()
    );

    f.rebuild_yields_the_same_rows().await;
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
                {"op": "replace", "path": format!("/{key}"), "value": {"v": version}},
            ])
        }
        (2, false) => {
            json!([{"op": "move", "from": format!("/{}", keys[rng.next(keys.len())]), "path": fresh}])
        }
        (3, false) => {
            json!([{"op": "copy", "from": format!("/{}", keys[rng.next(keys.len())]), "path": fresh}])
        }
        (4, _) => json!([{"op": "add", "path": "/list/0", "value": version}]),
        _ => json!([{"op": "add", "path": fresh, "value": [version, "x~/y", null]}]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_patched_many_times_equals_its_patches_applied_directly() {
    let f = Fixture::start(Arc::new(DraftsProjection)).await;
    let mut rng = Lcg(7);
    let mut document = json!({"list": [], "k0": "start"});
    let mut expected = vec![document.clone()];
    let mut events = vec![created("Long", document.clone(), 0)];
    for version in 2..=120usize {
        let ops = some_patch(&mut rng, &document, version);
        let patch: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
        json_patch::patch(&mut document, &patch).expect("the generated patch applies");
        expected.push(document.clone());
        events.push(patched(
            ops,
            version as u64 - 1,
            version as u64,
            version as i64 * 10,
        ));
    }
    for chunk in events.chunks(25) {
        f.append("acme", "drafts/long", chunk.to_vec()).await;
    }
    f.caught_up().await;
    let rm = f.read_models();

    for (i, want) in expected.iter().enumerate() {
        let version = i as u64 + 1;
        let got = drafts::draft(&rm, "acme", "long", DraftAt::Version(version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got.document, want, "version {version}");
        // Half-way to the next version's instant still answers this one.
        let at = drafts::draft(
            &rm,
            "acme",
            "long",
            DraftAt::Instant(t(version as i64 * 10 + 5)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(at.version.version, version as i64);
        assert_eq!(&at.document, want);
    }
    let now = drafts::draft(&rm, "acme", "long", DraftAt::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.document, document);
    assert_eq!(now.draft.version, 120);

    // The history pages through every version once, newest first.
    let mut seen = Vec::new();
    let mut query = VersionQuery {
        order: SortOrder::Desc,
        limit: 50,
        cursor: None,
    };
    loop {
        let page = drafts::draft_versions(&rm, "acme", "long", &query)
            .await
            .unwrap()
            .unwrap();
        seen.extend(page.items.iter().map(|v| v.version));
        let Some(next) = page.next_cursor else { break };
        query.cursor =
            Some(herald_projections::read_models::Cursor::decode(&next, "version").unwrap());
    }
    assert_eq!(seen, (1..=120).rev().collect::<Vec<i64>>());

    f.rebuild_yields_the_same_rows().await;
}
