//! `GET /v1/events/search` over HTTP: every filter narrows the caller's own
//! tenant's events, pages chain through `next_cursor` until it is null with
//! every match once, another tenant is refused and never seen, scopes bound
//! what is shown (and a key that may read nothing is refused), and malformed
//! parameters get a 400 problem.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use chrono::{DateTime, Utc};
use herald::api;
use herald_events::envelope::to_stored_precision;
use herald_events::{EventType, NewEvent, SchemaVersion, TenantId};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion};
use serde_json::{json, Value};
use support::create_key;

/// An edges event, appended through the store: no edges schema ships yet,
/// and the store keeps what it is given.
async fn link_changed(store: &Arc<dyn EventStore>, tenant: &str, edge: &str, up: bool) {
    let event_type: EventType = "edges.link_changed".parse().unwrap();
    store
        .append(
            &TenantId::new(tenant).unwrap(),
            &format!("edges/{edge}").parse().unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new(
                event_type,
                SchemaVersion::V1,
                json!({"edge": edge, "links": {"wan": {"up": up}}}),
            )],
        )
        .await
        .unwrap();
}

/// Returns once the clock has moved past the store's last record time, so
/// the next append is recorded strictly later.
async fn wait_past_head(store: &Arc<dyn EventStore>) {
    let last = store.head().await.unwrap().recorded_at.unwrap();
    let moved = herald_testkit::eventually(Duration::from_secs(5), || async move {
        to_stored_precision(Utc::now()) > last
    })
    .await;
    assert!(moved, "the clock did not move past {last}");
}

/// A time as a query value: RFC 3339 with its `+` escaped.
fn query_time(t: &str) -> String {
    t.replace('+', "%2B")
}

macro_rules! call {
    ($app:expr, $req:expr, $key:expr) => {{
        let req = $req.insert_header(("authorization", format!("Bearer {}", $key)));
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, content_type, body)
    }};
}

/// `GET` a search; the answer must be 200.
macro_rules! search {
    ($app:expr, $query:expr, $key:expr) => {{
        let uri = format!("/v1/events/search?{}", $query);
        let (status, _, body) = call!($app, test::TestRequest::get().uri(&uri), $key);
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }};
}

/// Every event of a search, following `next_cursor` until it is null;
/// also the number of pages.
macro_rules! search_all {
    ($app:expr, $query:expr, $key:expr) => {{
        let mut events: Vec<Value> = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("{}&cursor={c}", $query),
                None => $query.to_string(),
            };
            let body = search!($app, query, $key);
            pages += 1;
            events.extend(body["events"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => {
                    assert!(body["next_cursor"].is_null(), "{body}");
                    break;
                }
            }
            assert!(pages < 100, "the pages never end");
        }
        (events, pages)
    }};
}

/// The `label` of each event: `<type name>@<stream>`, which is unique here.
fn labels(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let event_type = e["type"].as_str().unwrap();
            format!("{}@{}", event_type, e["stream"].as_str().unwrap())
        })
        .collect()
}

fn time_of(event: &Value) -> DateTime<Utc> {
    event["recorded_at"].as_str().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn search_filters_and_pages_within_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let acme = create_key(&store, "acme", &["publish:tickets", "read:*"], Some(10_000))
        .await
        .1;
    let acme_edges = create_key(&store, "acme", &["read:edges"], Some(10_000))
        .await
        .1;
    let acme_writer = create_key(
        &store,
        "acme",
        &["publish:tickets", "subscribe:*"],
        Some(10_000),
    )
    .await
    .1;
    let globex = create_key(
        &store,
        "globex",
        &["publish:tickets", "read:*"],
        Some(10_000),
    )
    .await
    .1;
    let state = support::state(store.clone(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let publish = |id: &str, events: Value| {
        test::TestRequest::post()
            .uri(&format!("/v1/streams/tickets/{id}/events"))
            .set_json(json!({ "events": events }))
    };

    // acme's events in three phases recorded apart, globex's look-alikes between.
    let (status, _, body) = call!(
        app,
        publish(
            "T-1",
            json!([
                {"type": "tickets.ticket_opened", "version": 1, "payload":
                    {"kind": "outage", "customer": "acme", "edge": "E-17", "description": "edge down"}},
                {"type": "tickets.note_appended", "version": 1, "payload": {"note": "power cut", "author": "noc"}}
            ])
        ),
        acme
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, _) = call!(
        app,
        publish(
            "T-1",
            json!([{"type": "tickets.ticket_opened", "version": 1, "payload":
                {"kind": "outage", "customer": "acme", "edge": "E-17", "description": "globex's"}}])
        ),
        globex
    );
    assert_eq!(status, StatusCode::CREATED);
    link_changed(&store, "globex", "E-17", true).await;
    link_changed(&store, "acme", "E-17", true).await;
    wait_past_head(&store).await;

    let (status, _, _) = call!(
        app,
        publish(
            "T-2",
            json!([
                {"type": "tickets.ticket_opened", "version": 1, "payload":
                    {"kind": "other", "customer": "initech", "description": "slow"}},
                {"type": "tickets.ticket_assigned", "version": 1, "payload": {"assignee": "noc"}}
            ])
        ),
        acme
    );
    assert_eq!(status, StatusCode::CREATED);
    link_changed(&store, "acme", "E-18", false).await;
    wait_past_head(&store).await;

    let (status, _, _) = call!(
        app,
        publish(
            "T-3",
            json!([{"type": "tickets.ticket_opened", "version": 1, "payload":
                {"kind": "affecting", "customer": "acme", "edge": null, "description": "flapping"}}])
        ),
        acme
    );
    assert_eq!(status, StatusCode::CREATED);

    // Everything of acme's, and nothing of globex's.
    let all = search!(app, "", acme);
    assert!(all["next_cursor"].is_null(), "{all}");
    let all = all["events"].as_array().unwrap().clone();
    assert_eq!(
        labels(&all),
        [
            "tickets.ticket_opened@tickets/T-1",
            "tickets.note_appended@tickets/T-1",
            "edges.link_changed@edges/E-17",
            "tickets.ticket_opened@tickets/T-2",
            "tickets.ticket_assigned@tickets/T-2",
            "edges.link_changed@edges/E-18",
            "tickets.ticket_opened@tickets/T-3",
        ]
    );
    assert!(all.iter().all(|e| e["tenant"] == "acme"));
    assert!(all
        .iter()
        .all(|e| e["payload"]["description"] != "globex's"));

    // Each filter, and combinations.
    let cases: &[(&str, &[&str])] = &[
        (
            "type=tickets.ticket_*",
            &[
                "tickets.ticket_opened@tickets/T-1",
                "tickets.ticket_opened@tickets/T-2",
                "tickets.ticket_assigned@tickets/T-2",
                "tickets.ticket_opened@tickets/T-3",
            ],
        ),
        (
            "type=tickets.note_appended&type=edges.*",
            &[
                "tickets.note_appended@tickets/T-1",
                "edges.link_changed@edges/E-17",
                "edges.link_changed@edges/E-18",
            ],
        ),
        ("type=tickets.ticket", &[]),
        (
            "domain=edges",
            &[
                "edges.link_changed@edges/E-17",
                "edges.link_changed@edges/E-18",
            ],
        ),
        (
            "stream=tickets/T-1&stream=edges%2FE-18",
            &[
                "tickets.ticket_opened@tickets/T-1",
                "tickets.note_appended@tickets/T-1",
                "edges.link_changed@edges/E-18",
            ],
        ),
        (
            "payload.customer=acme",
            &[
                "tickets.ticket_opened@tickets/T-1",
                "tickets.ticket_opened@tickets/T-3",
            ],
        ),
        (
            "payload.customer=%22initech%22",
            &["tickets.ticket_opened@tickets/T-2"],
        ),
        (
            "payload.links.wan.up=true",
            &["edges.link_changed@edges/E-17"],
        ),
        (
            "payload.links.wan.up=false",
            &["edges.link_changed@edges/E-18"],
        ),
        ("payload.links.wan=true", &[]),
        ("payload.edge=null", &["tickets.ticket_opened@tickets/T-3"]),
        (
            "payload.edge=E-17",
            &[
                "tickets.ticket_opened@tickets/T-1",
                "edges.link_changed@edges/E-17",
            ],
        ),
        (
            "payload.customer=acme&payload.edge=E-17",
            &["tickets.ticket_opened@tickets/T-1"],
        ),
        (
            "type=tickets.ticket_opened&payload.customer=acme&stream=tickets/T-3&domain=tickets",
            &["tickets.ticket_opened@tickets/T-3"],
        ),
        ("domain=edges&payload.customer=acme", &[]),
    ];
    for (query, want) in cases {
        let body = search!(app, query, acme);
        assert_eq!(labels(body["events"].as_array().unwrap()), *want, "{query}");
    }

    // Time: from inclusive, to exclusive; `+` offsets escaped or not.
    let (from, to) = (&all[3]["recorded_at"], &all[6]["recorded_at"]);
    let (from_t, to_t) = (time_of(&all[3]), time_of(&all[6]));
    assert!(time_of(&all[2]) < from_t && time_of(&all[5]) < to_t);
    let body = search!(
        app,
        format!(
            "from={}&to={}",
            query_time(from.as_str().unwrap()),
            query_time(to.as_str().unwrap())
        ),
        acme
    );
    assert_eq!(
        labels(body["events"].as_array().unwrap()),
        [
            "tickets.ticket_opened@tickets/T-2",
            "tickets.ticket_assigned@tickets/T-2",
            "edges.link_changed@edges/E-18",
        ]
    );
    let from_offset = from_t
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    assert!(from_offset.contains('+'));
    for value in [query_time(&from_offset), from_offset.clone()] {
        let body = search!(app, format!("from={value}&domain=edges"), acme);
        assert_eq!(
            labels(body["events"].as_array().unwrap()),
            ["edges.link_changed@edges/E-18"],
            "from={value}"
        );
    }
    let body = search!(
        app,
        format!("to={}", query_time(from.as_str().unwrap())),
        acme
    );
    assert_eq!(body["events"].as_array().unwrap().len(), 3);

    // Pages chain through next_cursor until null, each match once, in order.
    for (query, size) in [
        ("limit=2", 2),
        ("limit=1", 1),
        ("limit=7", 7),
        ("limit=1000", 1000),
    ] {
        let (events, pages) = search_all!(app, query, acme);
        assert_eq!(labels(&events), labels(&all), "{query}");
        assert!(events.iter().all(|e| e["tenant"] == "acme"));
        // A full last page cannot know it is the last: one empty page follows.
        let want_pages = all.len() / size + 1;
        assert_eq!(pages, want_pages, "{query}");
    }
    let (events, pages) = search_all!(app, "domain=tickets&limit=2", acme);
    assert_eq!(events.len(), 5);
    assert_eq!(pages, 3);
    assert!(events
        .iter()
        .all(|e| e["type"].as_str().unwrap().starts_with("tickets.")));

    // Tenants: naming another is refused; one's own is fine; each sees its own.
    for query in ["tenant=globex", "tenant=globex&type=tickets.*"] {
        let uri = format!("/v1/events/search?{query}");
        let (status, content_type, body) = call!(app, test::TestRequest::get().uri(&uri), acme);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["type"], "urn:herald:problem:forbidden");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    }
    let body = search!(app, "tenant=acme", acme);
    assert_eq!(body["events"].as_array().unwrap().len(), all.len());
    let (theirs, _) = search_all!(app, "limit=1", globex);
    assert_eq!(
        labels(&theirs),
        [
            "tickets.ticket_opened@tickets/T-1",
            "edges.link_changed@edges/E-17"
        ]
    );
    assert!(theirs.iter().all(|e| e["tenant"] == "globex"));
    let body = search!(app, "payload.customer=acme", globex);
    assert_eq!(body["events"][0]["payload"]["description"], "globex's");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);

    // Scopes: a key that may read nothing is refused; read:edges sees edges
    // only, and the cursor moves on past the tickets it may not see.
    let (status, _, body) = call!(
        app,
        test::TestRequest::get().uri("/v1/events/search"),
        acme_writer
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:forbidden");
    let (edges, _) = search_all!(app, "limit=1", acme_edges);
    assert_eq!(
        labels(&edges),
        [
            "edges.link_changed@edges/E-17",
            "edges.link_changed@edges/E-18"
        ]
    );
    let (none, pages) = search_all!(app, "type=tickets.*&limit=2", acme_edges);
    assert!(none.is_empty(), "read:edges saw tickets: {none:?}");
    assert_eq!(pages, 3, "five tickets scanned two at a time");
    let (mixed, _) = search_all!(app, "type=*&limit=3", acme_edges);
    assert_eq!(labels(&mixed), labels(&edges));
    let body = search!(app, "payload.customer=acme", acme_edges);
    assert!(body["events"].as_array().unwrap().is_empty(), "{body}");

    // Malformed parameters: 400 invalid-query problems naming the problem.
    let bad: &[(&str, &str)] = &[
        ("foo=1&limit=2&bar=x", "foo, bar"),
        ("payload=1", "payload"),
        ("from=yesterday", "from"),
        ("to=2025-13-01T00:00:00Z", "to"),
        ("cursor=not-a-cursor!", "cursor"),
        ("cursor=czE6eA", "cursor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("type=Tickets.*", "pattern"),
        ("type=", "empty"),
        ("domain=Tickets", "domain"),
        ("stream=T-1", "stream"),
        ("payload.links..up=true", "payload"),
        ("payload.tags=[1]", "string, number, boolean or null"),
        (
            "from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            "time range",
        ),
        ("as_stored=maybe", "as_stored"),
    ];
    for (query, names) in bad {
        let uri = format!("/v1/events/search?{query}");
        let (status, content_type, body) = call!(app, test::TestRequest::get().uri(&uri), acme);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["type"], "urn:herald:problem:invalid-query", "{query}");
        assert_eq!(body["status"], 400);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert!(
            body["detail"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
    }
    let (_, _, body) = call!(
        app,
        test::TestRequest::get().uri("/v1/events/search?foo=1&bar=2"),
        acme
    );
    assert_eq!(body["unknown_parameters"], json!(["foo", "bar"]));

    // Only GET, and only with credentials.
    let (status, _, body) = call!(
        app,
        test::TestRequest::post().uri("/v1/events/search"),
        acme
    );
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/events/search")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
