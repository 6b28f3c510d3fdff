//! The streams read model lists every stream of every domain — built-in
//! ones and domains no code knows (as runtime event types make them) —
//! with the values a recomputation from the raw log gives: version, event
//! count, latest event type, first and latest recorded times. On each
//! read-model backend (Postgres in a database of its own, and SQLite) every
//! query — each domain filter, prefix and time window, both sorts in both
//! orders, every page through its cursors, per tenant — answers what
//! Postgres answers and what the log says, before and after more events
//! arrive, and after a blue-green rebuild. Nothing is parked, forged
//! cursors are refused alike, and one tenant never sees another's streams.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_events::{EventType, NewEvent, Position, SchemaVersion};
use herald_projections::read_models::streams::{self, StreamQuery, StreamSort, StreamView};
use herald_projections::read_models::{Cursor, Page, SortOrder};
use herald_projections::{ReadModels, RunnerConfig};
use herald_testkit::eventually;
use serde_json::json;

mod common;
mod conformance;

use conformance::{same, Backend, Fixture, Models, WAIT};

const TENANTS: &[&str] = &["acme", "globex", "Initech-2", "nobody"];

fn event(event_type: &str, n: usize) -> NewEvent {
    let event_type: EventType = event_type.parse().expect("an event type");
    NewEvent::new(event_type, SchemaVersion::V1, json!({ "n": n }))
}

/// The log: per tenant, streams of built-in domains and of domains no code
/// knows, some sharing an id across domains and tenants, with names that
/// sort differently by domain than by text length (`a`, `a_b`, `ab`), and
/// ids holding `_` (a wildcard to `LIKE`, here itself). Each entry is (tenant, stream, types).
fn log() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let mut log = Vec::new();
    for (t, tenant) in ["acme", "globex", "Initech-2"].into_iter().enumerate() {
        for i in 0..(4 + t) {
            let opened = vec!["tickets.ticket_opened"];
            let noted = vec!["tickets.ticket_opened", "tickets.note_appended"];
            log.push((
                tenant,
                format!("tickets/T-{i}"),
                if i % 2 == 0 { opened } else { noted },
            ));
        }
        for i in 0..(6 - t) {
            let types = match i % 3 {
                0 => vec!["widgets.widget_made"],
                1 => vec!["widgets.widget_made", "widgets.widget_painted"],
                _ => vec![
                    "widgets.widget_made",
                    "widgets.widget_painted",
                    "widgets.widget_painted",
                    "widgets.widget_shipped",
                ],
            };
            log.push((tenant, format!("widgets/W-{i}"), types));
        }
        for stream in ["a/x", "a_b/x", "ab/x", "a/100_", "a/1000", "a/100.x"] {
            let domain = stream.split('/').next().unwrap();
            let made: &'static str = match domain {
                "a" => "a.thing_done",
                "a_b" => "a_b.thing_done",
                _ => "ab.thing_done",
            };
            log.push((tenant, stream.to_owned(), vec![made]));
        }
    }
    log
}

/// What the log says of every stream: a recomputation from the raw events
/// the store holds, keyed by (tenant, stream).
async fn recomputed(f: &Fixture) -> BTreeMap<(String, String), StreamView> {
    let mut views: BTreeMap<(String, String), StreamView> = BTreeMap::new();
    let mut from = Position::START.next();
    loop {
        let events = f.store.read_all(from, 1_000).await.expect("read the log");
        let Some(last) = events.last() else {
            return views;
        };
        from = last.position.next();
        for e in &events {
            let key = (e.tenant.as_str().to_owned(), e.stream.as_str().to_owned());
            let view = views.entry(key).or_insert_with(|| StreamView {
                stream: e.stream.as_str().to_owned(),
                domain: e.stream.domain().as_str().to_owned(),
                id: e.stream.id().to_owned(),
                version: 0,
                last_event_type: String::new(),
                first_event_at: e.recorded_at,
                last_event_at: e.recorded_at,
                event_count: 0,
            });
            view.version = e.stream_version.get();
            view.last_event_type = e.event_type.as_str().to_owned();
            view.last_event_at = e.recorded_at;
            view.event_count += 1;
        }
    }
}

/// What `query` must list for `tenant`, from the recomputation (the
/// cursor aside: the first page of the whole list).
fn expected(
    log: &BTreeMap<(String, String), StreamView>,
    tenant: &str,
    query: &StreamQuery,
) -> Vec<StreamView> {
    let mut rows: Vec<StreamView> = log
        .iter()
        .filter(|((t, _), _)| t == tenant)
        .map(|(_, v)| v.clone())
        .filter(|v| {
            query.domains.as_ref().is_none_or(|d| d.contains(&v.domain))
                && query.prefix.as_ref().is_none_or(|p| v.id.starts_with(p))
                && query.updated_after.is_none_or(|t| v.last_event_at >= t)
                && query.updated_before.is_none_or(|t| v.last_event_at < t)
        })
        .collect();
    rows.sort_by(|a, b| match query.sort {
        StreamSort::Stream => a.stream.cmp(&b.stream),
        StreamSort::LastEventAt => a
            .last_event_at
            .cmp(&b.last_event_at)
            .then_with(|| a.stream.cmp(&b.stream)),
    });
    if query.order == SortOrder::Desc {
        rows.reverse();
    }
    rows
}

/// Both runners have every event, and neither parked any.
async fn caught_up(f: &Fixture) {
    let done = eventually(WAIT, || async {
        let pg = f.reference.status(streams::NAME).await.unwrap();
        let tested = f.tested.status(streams::NAME).await.unwrap();
        pg.lag_events == 0
            && tested.lag_events == 0
            && pg.rebuild.is_none()
            && tested.rebuild.is_none()
    })
    .await;
    assert!(done, "both runners of the streams read model catch up");
    assert_eq!(f.parked_alike(streams::NAME).await, 0, "nothing is parked");
}

struct Both {
    pg: ReadModels,
    sq: Models,
}

impl Both {
    /// Every page of `query` from its first, each the same on both
    /// backends; their items.
    async fn pages(&self, tenant: &str, mut query: StreamQuery) -> (Vec<StreamView>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let what = format!("streams of {tenant} {query:?}");
            let page: Page<StreamView> = same(
                &what,
                streams::list(&self.pg, tenant, &query).await,
                streams::list(&self.sq, tenant, &query).await,
            )
            .unwrap();
            pages += 1;
            assert!(
                page.items.len() <= query.limit,
                "{what}: a page over its limit"
            );
            query.cursor = page.next_cursor.as_deref().map(|text| {
                Cursor::decode(text, query.sort.as_str())
                    .unwrap_or_else(|| panic!("a cursor of {:?}: {text}", query.sort))
            });
            if query.cursor.is_some() {
                assert_eq!(
                    page.items.len(),
                    query.limit,
                    "{what}: a short page mid-list"
                );
            }
            items.extend(page.items);
            if query.cursor.is_none() {
                return (items, pages);
            }
            assert!(pages < 1_000, "{what}: endless pages");
        }
    }

    /// Every query, on both backends, against the recomputation; how many
    /// rows were listed.
    async fn agree(&self, f: &Fixture) -> usize {
        let log = recomputed(f).await;
        let mut times: Vec<DateTime<Utc>> = log.values().map(|v| v.last_event_at).collect();
        times.sort();
        let middle = times[times.len() / 2];
        let windows = [
            (None, None),
            (Some(middle), None),
            (None, Some(middle)),
            (Some(times[1]), Some(middle + TimeDelta::microseconds(1))),
            (Some(middle), Some(middle)),
            (Some(times[times.len() - 1] + TimeDelta::seconds(1)), None),
        ];
        let domain_sets: [Option<Vec<&str>>; 6] = [
            None,
            Some(vec!["tickets"]),
            Some(vec!["widgets", "a"]),
            Some(vec!["a", "a_b", "ab", "tickets", "widgets"]),
            Some(vec!["nothing_here"]),
            Some(vec![]),
        ];
        let mut listed = 0;
        for tenant in TENANTS {
            for domains in &domain_sets {
                for (updated_after, updated_before) in windows {
                    for sort in [StreamSort::Stream, StreamSort::LastEventAt] {
                        for order in [SortOrder::Asc, SortOrder::Desc] {
                            let query = StreamQuery {
                                domains: domains
                                    .as_ref()
                                    .map(|d| d.iter().map(|d| d.to_string()).collect()),
                                prefix: None,
                                updated_after,
                                updated_before,
                                sort,
                                order,
                                limit: 500,
                                cursor: None,
                            };
                            let want = expected(&log, tenant, &query);
                            let (whole, pages) = self.pages(tenant, query.clone()).await;
                            assert_eq!(pages, 1);
                            assert_eq!(whole, want, "{tenant} {query:?}: the log's streams");
                            let (paged, _) =
                                self.pages(tenant, StreamQuery { limit: 3, ..query }).await;
                            assert_eq!(paged, want, "paged = whole: {tenant}");
                            listed += paged.len();
                        }
                    }
                }
            }
            for (domains, prefix) in [
                (None, "W-"),
                (Some(vec!["widgets"]), "W-1"),
                (Some(vec!["a"]), "100"),
                (Some(vec!["a"]), "100%"),
                (Some(vec!["a"]), "100_"),
                (Some(vec!["a"]), "10_"),
                (Some(vec!["a", "a_b"]), "x"),
                (None, ""),
                (None, "w-"),
            ] {
                let query = StreamQuery {
                    domains: domains.map(|d| d.into_iter().map(String::from).collect()),
                    prefix: Some(prefix.to_owned()),
                    limit: 2,
                    ..StreamQuery::default()
                };
                let want = expected(&log, tenant, &query);
                let (got, _) = self.pages(tenant, query.clone()).await;
                assert_eq!(got, want, "{tenant} {query:?}");
                listed += got.len();
            }
        }
        // Cursors of the right sort but a forged value are refused alike.
        for (sort, value) in [
            (StreamSort::LastEventAt, json!("not a time")),
            (StreamSort::LastEventAt, json!(5)),
            (StreamSort::Stream, json!(5)),
        ] {
            let query = StreamQuery {
                sort,
                cursor: Some(Cursor {
                    sort: sort.as_str().into(),
                    value,
                    id: "tickets/T-1".into(),
                }),
                ..StreamQuery::default()
            };
            let answer = same(
                &format!("streams after {:?}", query.cursor),
                streams::list(&self.pg, "acme", &query).await,
                streams::list(&self.sq, "acme", &query).await,
            );
            assert!(answer.is_err(), "{query:?}: {answer:?}");
        }
        listed
    }
}

async fn append_log(f: &Fixture, entries: &[(&str, String, Vec<&str>)], round: usize) {
    for (tenant, stream, types) in entries {
        let events = types
            .iter()
            .enumerate()
            .map(|(i, t)| event(t, round * 100 + i))
            .collect();
        f.append(tenant, stream, events).await;
    }
}

async fn the_streams_read_model_lists_every_domain(backend: Backend) {
    // Batches of other sizes on each side: rows are carried across batch
    // boundaries at other events.
    let mut f = Fixture::new(
        backend,
        &[streams::NAME],
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
    let log = log();
    append_log(&f, &log, 0).await;
    caught_up(&f).await;
    let (pg, sq) = f.both();
    let both = Both { pg, sq };
    let listed = both.agree(&f).await;
    assert!(listed > 1_000, "the queries listed {listed} rows");

    // Exact values of one stream, stated by hand as well.
    let widgets = StreamQuery {
        domains: Some(vec!["widgets".into()]),
        prefix: Some("W-2".into()),
        ..StreamQuery::default()
    };
    let page = streams::list(&both.pg, "acme", &widgets).await.unwrap();
    let w2 = &page.items[0];
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (w2.stream.as_str(), w2.domain.as_str(), w2.id.as_str()),
        ("widgets/W-2", "widgets", "W-2")
    );
    assert_eq!((w2.version, w2.event_count), (4, 4));
    assert_eq!(w2.last_event_type, "widgets.widget_shipped");
    assert!(w2.first_event_at <= w2.last_event_at);
    // Tenants apart: globex has one tickets stream more and one widget less.
    let count = |tenant: &'static str, domain: &'static str| {
        let query = StreamQuery {
            domains: Some(vec![domain.into()]),
            limit: 500,
            ..StreamQuery::default()
        };
        let pg = both.pg.clone();
        async move {
            streams::list(&pg, tenant, &query)
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(
        [
            count("acme", "tickets").await,
            count("globex", "tickets").await,
            count("nobody", "tickets").await
        ],
        [4, 5, 0]
    );
    assert_eq!(
        [
            count("acme", "widgets").await,
            count("globex", "widgets").await
        ],
        [6, 5]
    );

    // More events on streams already listed and on new ones: the rows
    // move on, in later batches, and the lists follow.
    let more: Vec<(&str, String, Vec<&str>)> = vec![
        ("acme", "widgets/W-0".into(), vec!["widgets.widget_painted"]),
        (
            "acme",
            "tickets/T-0".into(),
            vec!["tickets.ticket_assigned"],
        ),
        (
            "globex",
            "a/x".into(),
            vec!["a.thing_undone", "a.thing_done"],
        ),
        ("acme", "gadgets/G-1".into(), vec!["gadgets.gadget_made"]),
    ];
    append_log(&f, &more, 1).await;
    caught_up(&f).await;
    both.agree(&f).await;
    let page = streams::list(&both.pg, "acme", &widgets).await.unwrap();
    assert_eq!(
        page.items[0], *w2,
        "a stream no event touched stays as it was"
    );
    let w0 = StreamQuery {
        prefix: Some("W-0".into()),
        ..widgets.clone()
    };
    let w0 = &streams::list(&both.sq, "acme", &w0).await.unwrap().items[0];
    assert_eq!((w0.version, w0.event_count), (2, 2));
    assert_eq!(w0.last_event_type, "widgets.widget_painted");
    assert!(w0.last_event_at > w0.first_event_at);

    // Rebuilt blue-green from the log, the read model answers the same.
    f.rebuild(streams::NAME).await;
    caught_up(&f).await;
    let (pg, sq) = f.both();
    let both = Both { pg, sq };
    both.agree(&f).await;
    f.stop().await;
}

conformance!(the_streams_read_model_lists_every_domain);
