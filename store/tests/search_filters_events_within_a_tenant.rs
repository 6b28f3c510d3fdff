//! Search finds exactly the events of one tenant that match every filter:
//! type patterns (`*` wildcards; `_` matches only itself), domains, streams,
//! a half-open range of recording times, and payload equality on strings,
//! numbers, booleans, null and nested keys. Paging with `after` gives every
//! match once, even while events are appended; malformed queries are refused.

mod conformance;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conformance::Backend;
use herald_events::envelope::to_stored_precision;
use herald_events::{Domain, EventType, NewEvent, Position, SchemaVersion, StreamId, TenantId};
use herald_store::search::{MAX_FILTER_VALUES, MAX_PAYLOAD_FILTERS, MAX_SEARCH_LIMIT};
use herald_store::{EventStore, ExpectedVersion, SearchQuery, StoreError};
use serde_json::{json, Value};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn stream(s: &str) -> StreamId {
    s.parse().unwrap()
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    let event_type: EventType = event_type.parse().unwrap();
    NewEvent::new(event_type, SchemaVersion::V1, payload)
}

async fn append(store: &Arc<dyn EventStore>, tenant_name: &str, to: &str, events: Vec<NewEvent>) {
    store
        .append(
            &tenant(tenant_name),
            &stream(to),
            ExpectedVersion::Any,
            events,
        )
        .await
        .unwrap();
}

/// Returns once the store's clock has moved past `last`, so the next append
/// is recorded strictly later.
async fn wait_past(last: DateTime<Utc>) {
    let moved = herald_testkit::eventually(Duration::from_secs(5), || async move {
        to_stored_precision(Utc::now()) > last
    })
    .await;
    assert!(moved, "the clock did not move past {last}");
}

fn path(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// The labels of a search's events, checking that they are the tenant's, in
/// position order, and that a page short of the limit ends the search.
async fn labels(store: &Arc<dyn EventStore>, query: SearchQuery) -> Vec<String> {
    let page = store
        .search(&query)
        .await
        .unwrap_or_else(|e| panic!("{query:?} failed: {e}"));
    let positions: Vec<u64> = page.events.iter().map(|e| e.position.get()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not in position order: {positions:?}"
    );
    assert!(page
        .events
        .iter()
        .all(|e| e.tenant == query.tenant && e.position > query.after));
    assert!(page.events.len() <= query.limit);
    if page.events.len() < query.limit {
        assert_eq!(page.last_scanned, None);
    }
    page.events
        .iter()
        .map(|e| e.payload["label"].as_str().unwrap().to_owned())
        .collect()
}

async fn each_filter_selects_exactly_its_events(backend: &Backend) {
    let store = backend.open().await;
    let acme = tenant("acme");

    // Three phases, each recorded strictly after the one before; another
    // tenant's look-alikes in between. `tickets.ticketxopened` is what
    // `tickets.ticket_opened` would match if `_` were LIKE's wildcard; a7's
    // path through an array matches nothing, as indices are not supported.
    let phases = [
        vec![
            (
                "acme",
                "tickets/T-1",
                "tickets.ticket_opened",
                json!({"label": "a1", "kind": "outage", "customer": "acme", "edge": "E-17",
                    "priority": 1, "urgent": true}),
            ),
            (
                "acme",
                "tickets/T-1",
                "tickets.note_appended",
                json!({"label": "a2", "note": "n", "author": "noc"}),
            ),
            (
                "globex",
                "tickets/T-1",
                "tickets.ticket_opened",
                json!({"label": "g1", "customer": "acme", "priority": 1, "urgent": true}),
            ),
            (
                "acme",
                "tickets/T-2",
                "tickets.ticketxopened",
                json!({"label": "a3", "customer": "acme"}),
            ),
            (
                "globex",
                "edges/E-17",
                "edges.link_changed",
                json!({"label": "g2", "links": {"wan": {"up": true, "speed": 100}}}),
            ),
            (
                "acme",
                "edges/E-17",
                "edges.link_changed",
                json!({"label": "a4", "links": {"wan": {"up": true, "speed": 100}}}),
            ),
        ],
        vec![
            (
                "acme",
                "tickets/T-2",
                "tickets.ticket_opened",
                json!({"label": "a5", "kind": "other", "customer": "initech", "priority": 2,
                    "urgent": false, "nested": {"customer": "acme"}}),
            ),
            (
                "acme",
                "edges/E-18",
                "edges.link_changed",
                json!({"label": "a6", "links": {"wan": {"up": false, "speed": 100.0}}}),
            ),
            (
                "acme",
                "edges/E-17",
                "edges.link_changed",
                json!({"label": "a7", "links": [{"wan": {"up": true}}]}),
            ),
        ],
        vec![
            (
                "acme",
                "tickets/T-3",
                "tickets.ticket_closed",
                json!({"label": "a8", "customer": null, "code": "42",
                    "a.b": {"say \"hi\"": "x"}}),
            ),
            (
                "acme",
                "tickets/T-4",
                "tickets.ticket_opened",
                json!({"label": "a9", "customer": "acme", "urgent": 1, "priority": 1.0}),
            ),
            (
                "acme",
                "tickets/T-1",
                "tickets.ticket_assigned",
                json!({"label": "a10", "assignee": "noc"}),
            ),
        ],
    ];
    for phase in phases {
        for (tenant_name, to, event_type, payload) in phase {
            append(&store, tenant_name, to, vec![event(event_type, payload)]).await;
        }
        wait_past(store.head().await.unwrap().recorded_at.unwrap()).await;
    }

    let all = store
        .search(&SearchQuery::new(acme.clone()))
        .await
        .unwrap()
        .events;
    let at = |label: &str| {
        all.iter()
            .find(|e| e.payload["label"] == label)
            .unwrap_or_else(|| panic!("{label} is stored"))
            .recorded_at
    };
    let q = || SearchQuery::new(acme.clone());
    let with_types = |types: &[&str]| SearchQuery {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        ..q()
    };
    let with_payload = |filters: Vec<(Vec<String>, Value)>| SearchQuery {
        payload_equals: filters,
        ..q()
    };
    let name = backend.name();
    macro_rules! expect {
        ($query:expr, [$($label:literal),*]) => {{
            let query = $query;
            let found = labels(&store, query.clone()).await;
            let want: Vec<&str> = vec![$($label),*];
            assert_eq!(found, want, "{name}: {query:?}");
        }};
    }

    // No filter: the tenant's events only, all of them.
    expect!(
        q(),
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10"]
    );

    // Type patterns.
    expect!(with_types(&["tickets.ticket_opened"]), ["a1", "a5", "a9"]);
    expect!(
        with_types(&["tickets.ticket_*"]),
        ["a1", "a5", "a8", "a9", "a10"]
    );
    expect!(with_types(&["*opened"]), ["a1", "a3", "a5", "a9"]);
    expect!(with_types(&["*.link_changed"]), ["a4", "a6", "a7"]);
    expect!(
        with_types(&["tickets.note_appended", "edges.*"]),
        ["a2", "a4", "a6", "a7"]
    );
    expect!(
        with_types(&["tickets.*"]),
        ["a1", "a2", "a3", "a5", "a8", "a9", "a10"]
    );
    expect!(
        with_types(&["*"]),
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10"]
    );
    expect!(with_types(&["tickets.ticket"]), []);
    expect!(
        with_types(&["tickets.ticket_**_opened", "*.*link**"]),
        ["a4", "a6", "a7"]
    );

    // Domains and streams.
    expect!(
        SearchQuery {
            domains: vec![Domain::new("edges").unwrap()],
            ..q()
        },
        ["a4", "a6", "a7"]
    );
    expect!(
        SearchQuery {
            domains: vec![
                Domain::new("edges").unwrap(),
                Domain::new("tickets").unwrap()
            ],
            ..q()
        },
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10"]
    );
    expect!(
        SearchQuery {
            domains: vec![Domain::new("drafts").unwrap()],
            ..q()
        },
        []
    );
    expect!(
        SearchQuery {
            streams: vec![stream("tickets/T-1"), stream("edges/E-18")],
            ..q()
        },
        ["a1", "a2", "a6", "a10"]
    );
    // Same id, other domain: another stream.
    expect!(
        SearchQuery {
            streams: vec![stream("edges/T-1")],
            ..q()
        },
        []
    );

    // Recording time: from inclusive, to exclusive, to the microsecond.
    let (t5, t8) = (at("a5"), at("a8"));
    assert!(
        at("a4") < t5 && at("a7") < t8,
        "{name}: phases were recorded apart"
    );
    expect!(
        SearchQuery {
            recorded_from: Some(t5),
            recorded_to: Some(t8),
            ..q()
        },
        ["a5", "a6", "a7"]
    );
    expect!(
        SearchQuery {
            recorded_from: Some(t8),
            ..q()
        },
        ["a8", "a9", "a10"]
    );
    expect!(
        SearchQuery {
            recorded_to: Some(t5),
            ..q()
        },
        ["a1", "a2", "a3", "a4"]
    );
    let nano = chrono::Duration::nanoseconds(1);
    let after_a5: Vec<String> = all
        .iter()
        .filter(|e| e.recorded_at > t5)
        .map(|e| e.payload["label"].as_str().unwrap().to_owned())
        .collect();
    assert!(!after_a5.contains(&"a5".to_owned()) && after_a5.contains(&"a10".to_owned()));
    assert_eq!(
        labels(
            &store,
            SearchQuery {
                recorded_from: Some(t5 + nano),
                ..q()
            }
        )
        .await,
        after_a5,
        "{name}: a bound a nanosecond after an event excludes it"
    );
    expect!(
        SearchQuery {
            recorded_to: Some(at("a4") + nano),
            ..q()
        },
        ["a1", "a2", "a3", "a4"]
    );

    // Payload equality.
    let eq = |keys: &[&str], value: Value| (path(keys), value);
    expect!(
        with_payload(vec![eq(&["customer"], json!("acme"))]),
        ["a1", "a3", "a9"]
    );
    expect!(
        with_payload(vec![eq(&["customer"], json!("initech"))]),
        ["a5"]
    );
    expect!(
        with_payload(vec![eq(&["nested", "customer"], json!("acme"))]),
        ["a5"]
    );
    expect!(
        with_payload(vec![eq(&["priority"], json!(1))]),
        ["a1", "a9"]
    );
    expect!(with_payload(vec![eq(&["priority"], json!(2.0))]), ["a5"]);
    expect!(
        with_payload(vec![eq(&["links", "wan", "speed"], json!(100))]),
        ["a4", "a6"]
    );
    expect!(with_payload(vec![eq(&["urgent"], json!(true))]), ["a1"]);
    expect!(with_payload(vec![eq(&["urgent"], json!(false))]), ["a5"]);
    expect!(with_payload(vec![eq(&["urgent"], json!(1))]), ["a9"]);
    expect!(
        with_payload(vec![eq(&["links", "wan", "up"], json!(true))]),
        ["a4"]
    );
    expect!(
        with_payload(vec![eq(&["links", "wan", "up"], json!(false))]),
        ["a6"]
    );
    expect!(with_payload(vec![eq(&["customer"], Value::Null)]), ["a8"]);
    expect!(with_payload(vec![eq(&["code"], json!("42"))]), ["a8"]);
    expect!(with_payload(vec![eq(&["code"], json!(42))]), []);
    expect!(with_payload(vec![eq(&["label"], json!("a1"))]), ["a1"]);
    expect!(
        with_payload(vec![eq(&["a.b", "say \"hi\""], json!("x"))]),
        ["a8"]
    );
    expect!(
        with_payload(vec![eq(&["a", "b", "say \"hi\""], json!("x"))]),
        []
    );
    // An object reads as its text in SQLite; it still does not equal a string.
    expect!(
        with_payload(vec![eq(&["nested"], json!(r#"{"customer":"acme"}"#))]),
        []
    );
    expect!(
        with_payload(vec![
            eq(&["customer"], json!("acme")),
            eq(&["priority"], json!(1))
        ]),
        ["a1", "a9"]
    );
    expect!(
        with_payload(vec![
            eq(&["customer"], json!("acme")),
            eq(&["customer"], json!("initech"))
        ]),
        []
    );

    // Combinations.
    expect!(
        SearchQuery {
            payload_equals: vec![eq(&["customer"], json!("acme"))],
            ..with_types(&["tickets.ticket_*"])
        },
        ["a1", "a9"]
    );
    expect!(
        SearchQuery {
            domains: vec![Domain::new("edges").unwrap()],
            recorded_from: Some(t5),
            ..q()
        },
        ["a6", "a7"]
    );
    expect!(
        SearchQuery {
            streams: vec![stream("tickets/T-2")],
            payload_equals: vec![eq(&["priority"], json!(2))],
            ..q()
        },
        ["a5"]
    );
    expect!(
        SearchQuery {
            domains: vec![Domain::new("tickets").unwrap()],
            streams: vec![stream("tickets/T-4"), stream("tickets/T-1")],
            recorded_from: Some(t8),
            payload_equals: vec![eq(&["urgent"], json!(1))],
            ..with_types(&["*opened"])
        },
        ["a9"]
    );
    expect!(
        SearchQuery {
            after: all[3].position,
            ..with_types(&["tickets.*"])
        },
        ["a5", "a8", "a9", "a10"]
    );

    // Tenants: the other tenant finds only its own look-alikes, and a tenant
    // without events finds nothing.
    let globex = SearchQuery::new(tenant("globex"));
    expect!(globex.clone(), ["g1", "g2"]);
    expect!(
        SearchQuery {
            payload_equals: vec![eq(&["customer"], json!("acme"))],
            ..globex
        },
        ["g1"]
    );
    expect!(SearchQuery::new(tenant("initech")), []);
}
conformance!(each_filter_selects_exactly_its_events);

async fn pages_give_every_match_once(backend: &Backend) {
    let store = backend.open().await;
    let acme = tenant("acme");
    let name = backend.name();
    let matching = |label: String| {
        event(
            "tickets.note_appended",
            json!({"label": label, "match": true}),
        )
    };
    let other = |label: String| {
        event(
            "tickets.note_appended",
            json!({"label": label, "match": false}),
        )
    };
    for i in 0..57 {
        let mut events = vec![matching(format!("m{i}"))];
        if i % 2 == 0 {
            events.push(other(format!("x{i}")));
        }
        append(&store, "acme", &format!("tickets/P-{}", i % 3), events).await;
        if i % 3 == 0 {
            append(
                &store,
                "globex",
                "tickets/P-0",
                vec![matching(format!("g{i}"))],
            )
            .await;
        }
    }
    let query = SearchQuery {
        types: vec!["tickets.note_*".into()],
        payload_equals: vec![(path(&["match"]), json!(true))],
        limit: 7,
        ..SearchQuery::new(acme.clone())
    };

    // Pages of 7 while 3 more matches arrive after the first page.
    let mut seen = Vec::new();
    let mut after = Position::START;
    let mut pages = 0;
    loop {
        let page = store
            .search(&SearchQuery {
                after,
                ..query.clone()
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.events.len() <= 7);
        assert!(page
            .events
            .iter()
            .all(|e| e.tenant == acme && e.position > after));
        seen.extend(
            page.events
                .iter()
                .map(|e| (e.position, e.payload["label"].clone())),
        );
        if pages == 1 {
            for i in 57..60 {
                append(
                    &store,
                    "acme",
                    "tickets/P-9",
                    vec![matching(format!("m{i}"))],
                )
                .await;
            }
        }
        match page.last_scanned {
            Some(last) => {
                assert_eq!(Some(last), page.events.last().map(|e| e.position));
                after = last;
            }
            None => break,
        }
        assert!(pages < 100, "{name}: the pages never end");
    }
    assert_eq!(
        pages, 9,
        "{name}: 60 matches in pages of 7, the last one short"
    );
    let labels: Vec<Value> = seen.iter().map(|(_, l)| l.clone()).collect();
    let want: Vec<Value> = (0..60).map(|i| json!(format!("m{i}"))).collect();
    assert_eq!(labels, want, "{name}: every match once, in order");
    let distinct: HashSet<Position> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(distinct.len(), 60);

    // One page holding them all agrees.
    let whole = store
        .search(&SearchQuery {
            limit: MAX_SEARCH_LIMIT,
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        whole.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        seen.iter().map(|(p, _)| *p).collect::<Vec<_>>()
    );
    assert_eq!(whole.last_scanned, None);

    // 60 in pages of 20: three full pages, then an empty one ends it.
    let mut sizes = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store
            .search(&SearchQuery {
                after,
                limit: 20,
                ..query.clone()
            })
            .await
            .unwrap();
        sizes.push(page.events.len());
        match page.last_scanned {
            Some(last) => after = last,
            None => break,
        }
        assert!(sizes.len() < 10, "{name}: the pages never end");
    }
    assert_eq!(sizes, vec![20, 20, 20, 0], "{name}");
}
conformance!(pages_give_every_match_once);

async fn malformed_queries_are_refused(backend: &Backend) {
    let store = backend.open().await;
    append(
        &store,
        "acme",
        "tickets/T-1",
        vec![event("tickets.note_appended", json!({"label": "a1"}))],
    )
    .await;
    let q = || SearchQuery::new(tenant("acme"));
    let now = Utc::now();
    let many = |n: usize| -> Vec<String> { (0..n).map(|i| format!("tickets.t{i}")).collect() };
    let cases: Vec<(&str, SearchQuery)> = vec![
        ("limit 0", SearchQuery { limit: 0, ..q() }),
        (
            "limit over the maximum",
            SearchQuery {
                limit: MAX_SEARCH_LIMIT + 1,
                ..q()
            },
        ),
        (
            "after beyond i64",
            SearchQuery {
                after: Position(u64::MAX),
                ..q()
            },
        ),
        (
            "too many types",
            SearchQuery {
                types: many(MAX_FILTER_VALUES + 1),
                ..q()
            },
        ),
        (
            "too many domains",
            SearchQuery {
                domains: (0..=MAX_FILTER_VALUES)
                    .map(|i| Domain::new(format!("d{i}")).unwrap())
                    .collect(),
                ..q()
            },
        ),
        (
            "too many streams",
            SearchQuery {
                streams: (0..=MAX_FILTER_VALUES)
                    .map(|i| stream(&format!("tickets/T-{i}")))
                    .collect(),
                ..q()
            },
        ),
        (
            "an empty pattern",
            SearchQuery {
                types: vec![String::new()],
                ..q()
            },
        ),
        (
            "an uppercase pattern",
            SearchQuery {
                types: vec!["Tickets.*".into()],
                ..q()
            },
        ),
        (
            "a LIKE wildcard",
            SearchQuery {
                types: vec!["tickets.%".into()],
                ..q()
            },
        ),
        (
            "an over-long pattern",
            SearchQuery {
                types: vec!["a".repeat(200)],
                ..q()
            },
        ),
        (
            "an empty time range",
            SearchQuery {
                recorded_from: Some(now),
                recorded_to: Some(now),
                ..q()
            },
        ),
        (
            "a reversed time range",
            SearchQuery {
                recorded_from: Some(now),
                recorded_to: Some(now - chrono::Duration::seconds(1)),
                ..q()
            },
        ),
        (
            "too many payload filters",
            SearchQuery {
                payload_equals: (0..=MAX_PAYLOAD_FILTERS)
                    .map(|i| (path(&["k"]), json!(i)))
                    .collect(),
                ..q()
            },
        ),
        (
            "an empty path",
            SearchQuery {
                payload_equals: vec![(vec![], json!(1))],
                ..q()
            },
        ),
        (
            "an empty key",
            SearchQuery {
                payload_equals: vec![(path(&["a", ""]), json!(1))],
                ..q()
            },
        ),
        (
            "an array value",
            SearchQuery {
                payload_equals: vec![(path(&["a"]), json!([1]))],
                ..q()
            },
        ),
        (
            "an object value",
            SearchQuery {
                payload_equals: vec![(path(&["a"]), json!({"b": 1}))],
                ..q()
            },
        ),
    ];
    for (what, query) in cases {
        match store.search(&query).await {
            Err(e @ StoreError::InvalidQuery { .. }) => {
                assert_eq!(e.kind(), "invalid_query");
                assert!(e.is_caller_error(), "{what}");
            }
            other => panic!("{}: {what} was not refused: {other:?}", backend.name()),
        }
    }
    // The bounds themselves are fine.
    let edge = SearchQuery {
        limit: MAX_SEARCH_LIMIT,
        types: many(MAX_FILTER_VALUES),
        payload_equals: (0..MAX_PAYLOAD_FILTERS)
            .map(|_| (path(&["label"]), json!("a1")))
            .collect(),
        ..q()
    };
    assert!(store.search(&edge).await.unwrap().events.is_empty());
    let edge = SearchQuery {
        types: vec!["tickets.*".into()],
        ..edge
    };
    assert_eq!(store.search(&edge).await.unwrap().events.len(), 1);
}
conformance!(malformed_queries_are_refused);

/// A correlation selects what one command caused, within the tenant only;
/// an event id selects that one event, and nothing in another tenant.
async fn a_correlation_or_an_event_id_selects_its_events(backend: &Backend) {
    let store = backend.open().await;
    let acme = tenant("acme");
    let chain = uuid::Uuid::now_v7();
    let caused = |event_type: &str, label: &str, cause: Option<uuid::Uuid>| {
        let e = event(event_type, json!({"label": label}));
        let cause = cause.unwrap_or(e.id.as_uuid());
        e.correlation(chain, cause)
    };
    let first = caused("tickets.note_appended", "c1", None);
    let first_id = first.id.as_uuid();
    append(&store, "acme", "tickets/T-1", vec![first]).await;
    append(
        &store,
        "acme",
        "tickets/T-9",
        vec![event("tickets.note_appended", json!({"label": "x1"}))],
    )
    .await;
    append(
        &store,
        "globex",
        "tickets/T-1",
        vec![caused("tickets.note_appended", "g1", Some(first_id))],
    )
    .await;
    append(
        &store,
        "acme",
        "edges/E-1",
        vec![caused("edges.link_changed", "c2", Some(first_id))],
    )
    .await;

    let by_correlation = SearchQuery {
        correlation: Some(chain),
        ..SearchQuery::new(acme.clone())
    };
    assert_eq!(
        labels(&store, by_correlation.clone()).await,
        ["c1", "c2"],
        "{}",
        backend.name()
    );
    let narrowed = SearchQuery {
        domains: vec![Domain::new("edges").unwrap()],
        ..by_correlation
    };
    assert_eq!(labels(&store, narrowed).await, ["c2"]);
    let by_id = SearchQuery {
        event_id: Some(first_id),
        ..SearchQuery::new(acme.clone())
    };
    assert_eq!(labels(&store, by_id.clone()).await, ["c1"]);
    let elsewhere = SearchQuery {
        tenant: tenant("globex"),
        ..by_id
    };
    assert!(labels(&store, elsewhere).await.is_empty());
    let unknown = SearchQuery {
        correlation: Some(uuid::Uuid::now_v7()),
        ..SearchQuery::new(acme)
    };
    assert!(labels(&store, unknown).await.is_empty());
}
conformance!(a_correlation_or_an_event_id_selects_its_events);

/// The embedded store reads at most its search window of log positions a
/// page: a page past it ends early (even empty) with a cursor to go on
/// from, and paging still finds every match once.
#[tokio::test]
async fn an_embedded_search_page_reads_at_most_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        herald_store::embedded::EmbeddedStore::open(herald_store::embedded::EmbeddedConfig {
            search_window: 5,
            ..herald_store::embedded::EmbeddedConfig::in_dir(dir.path())
        })
        .await
        .unwrap(),
    );
    for i in 1..=20 {
        let customer = if i == 3 || i == 17 { "rare" } else { "common" };
        append(
            &store,
            "acme",
            &format!("tickets/T-{i}"),
            vec![event(
                "tickets.ticket_opened",
                json!({"label": format!("e{i}"), "customer": customer}),
            )],
        )
        .await;
    }
    let mut query = SearchQuery {
        payload_equals: vec![(path(&["customer"]), json!("rare"))],
        limit: 10,
        ..SearchQuery::new(tenant("acme"))
    };
    let mut pages = Vec::new();
    loop {
        let page = store.search(&query).await.unwrap();
        let labels: Vec<String> = page
            .events
            .iter()
            .map(|e| e.payload["label"].as_str().unwrap().to_owned())
            .collect();
        pages.push((labels, page.last_scanned.map(|p| p.get())));
        match page.last_scanned {
            Some(after) => query.after = after,
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![
            (vec!["e3".to_owned()], Some(5)),
            (vec![], Some(10)),
            (vec![], Some(15)),
            (vec!["e17".to_owned()], None),
        ]
    );
    // A time range's window starts where the range does, not at the start
    // of the log.
    let all = store
        .search(&SearchQuery::new(tenant("acme")))
        .await
        .unwrap();
    let twelfth = all.events.iter().find(|e| e.position.get() == 12);
    let from = match twelfth {
        Some(e) => e.recorded_at,
        None => {
            let page = store
                .search(&SearchQuery {
                    after: Position(11),
                    limit: 1,
                    ..SearchQuery::new(tenant("acme"))
                })
                .await
                .unwrap();
            page.events[0].recorded_at
        }
    };
    let in_range = SearchQuery {
        payload_equals: vec![(path(&["customer"]), json!("rare"))],
        recorded_from: Some(from),
        limit: 10,
        ..SearchQuery::new(tenant("acme"))
    };
    let first = store.search(&in_range).await.unwrap();
    assert!(first.events.is_empty(), "{:?}", first.events);
    let window_end = first.last_scanned.expect("the window ended").get();
    assert!((15..=16).contains(&window_end), "{window_end}");
    let second = store
        .search(&SearchQuery {
            after: Position(window_end),
            ..in_range
        })
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].payload["label"], "e17");
    assert_eq!(second.last_scanned, None);

    // One exact type counts its own entries, not the log's positions: ten
    // notes after the twenty openings, the eighth of them a match.
    for i in 1..=10 {
        let author = if i == 8 { "rare" } else { "common" };
        append(
            &store,
            "acme",
            &format!("tickets/T-{i}"),
            vec![event(
                "tickets.note_appended",
                json!({"label": format!("n{i}"), "author": author}),
            )],
        )
        .await;
    }
    let notes = SearchQuery {
        types: vec!["tickets.note_appended".into()],
        payload_equals: vec![(path(&["author"]), json!("rare"))],
        limit: 10,
        ..SearchQuery::new(tenant("acme"))
    };
    let first = store.search(&notes).await.unwrap();
    assert!(first.events.is_empty());
    assert_eq!(
        first.last_scanned,
        Some(Position(25)),
        "five notes: 21 to 25"
    );
    let second = store
        .search(&SearchQuery {
            after: Position(25),
            ..notes
        })
        .await
        .unwrap();
    assert_eq!(second.events[0].payload["label"], "n8");

    // Looked up by index, a correlation is not windowed.
    let all = store
        .search(&SearchQuery::new(tenant("acme")))
        .await
        .unwrap();
    assert_eq!(all.events.len(), 5);
    let chain = all.events[0].correlation_id;
    let by_correlation = SearchQuery {
        correlation: Some(chain),
        after: Position(0),
        ..SearchQuery::new(tenant("acme"))
    };
    assert_eq!(
        store.search(&by_correlation).await.unwrap().last_scanned,
        None
    );
}
