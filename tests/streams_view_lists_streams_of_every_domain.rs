//! `GET /v1/views/streams` through the HTTP app, on Postgres and on the
//! embedded store's SQLite: every stream of the caller's tenant, of
//! built-in domains and of domains no code knows, with the version, event
//! count, latest event type and first and latest recorded times the log
//! holds; both sorts in both orders paged with cursors; the `domain`
//! filter (repeated or comma-separated), `prefix` and the time window; one
//! tenant never sees another's streams; a credential lists only the
//! domains it may read as a whole, and naming another is a 403; bad
//! parameters are 400s; and the list follows new events.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use chrono::{DateTime, SecondsFormat, Utc};
use herald::api::{self, AppState};
use herald_events::{EventType, NewEvent, Position, SchemaVersion, TenantId};
use herald_projections::embedded::EmbeddedRunner;
use herald_projections::read_models::streams::StreamsProjection;
use herald_projections::{ReadSide, RunnerConfig};
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(60);

/// (tenant, stream, event types): built-in domains, and `widgets` and
/// `gadgets`, which no code of Herald knows. globex shares ids with acme.
const LOG: &[(&str, &str, &[&str])] = &[
    (
        "acme",
        "tickets/T-1",
        &["tickets.ticket_opened", "tickets.note_appended"],
    ),
    ("acme", "tickets/T-2", &["tickets.ticket_opened"]),
    ("acme", "edges/E-1", &["edges.edge_registered"]),
    (
        "acme",
        "widgets/W-1",
        &[
            "widgets.widget_made",
            "widgets.widget_painted",
            "widgets.widget_shipped",
        ],
    ),
    ("acme", "widgets/W-10", &["widgets.widget_made"]),
    ("acme", "widgets/X-1", &["widgets.widget_made"]),
    ("acme", "gadgets/G-1", &["gadgets.gadget_made"]),
    ("globex", "tickets/T-1", &["tickets.ticket_opened"]),
    (
        "globex",
        "widgets/W-1",
        &["widgets.widget_made", "widgets.widget_painted"],
    ),
];

async fn append(store: &Arc<dyn EventStore>, tenant: &str, stream: &str, types: &[&str]) {
    let events = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let event_type: EventType = t.parse().unwrap();
            NewEvent::new(event_type, SchemaVersion::V1, json!({ "n": i }))
        })
        .collect();
    store
        .append(
            &TenantId::new(tenant).unwrap(),
            &stream.parse().unwrap(),
            ExpectedVersion::Any,
            events,
        )
        .await
        .expect("append");
}

/// Every stream as the log says it is, recomputed from the raw events:
/// (tenant, stream) → the row the view must show.
async fn from_the_log(store: &Arc<dyn EventStore>) -> BTreeMap<(String, String), Value> {
    let mut rows: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut from = Position::START.next();
    loop {
        let events = store.read_all(from, 1_000).await.unwrap();
        let Some(last) = events.last() else {
            return rows;
        };
        from = last.position.next();
        for e in &events {
            let at = e.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true);
            let row = rows
                .entry((e.tenant.to_string(), e.stream.to_string()))
                .or_insert_with(|| {
                    json!({
                        "stream": e.stream.as_str(),
                        "domain": e.stream.domain().as_str(),
                        "id": e.stream.id(),
                        "first_event_at": at,
                        "event_count": 0,
                    })
                });
            row["version"] = json!(e.stream_version.get());
            row["last_event_type"] = json!(e.event_type.as_str());
            row["last_event_at"] = json!(at);
            row["event_count"] = json!(row["event_count"].as_u64().unwrap() + 1);
        }
    }
}

/// A row as answered, its times normalised to microseconds in UTC (the
/// recomputation's spelling).
fn normalised(mut row: Value) -> Value {
    for field in ["first_event_at", "last_event_at"] {
        let at: DateTime<Utc> = row[field].as_str().unwrap().parse().unwrap();
        row[field] = json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
    row
}

fn time_of(row: &Value) -> DateTime<Utc> {
    row["last_event_at"].as_str().unwrap().parse().unwrap()
}

/// `tenant`'s rows of the log that `keep` selects, by stream; reversed
/// when `desc`; by latest event time (then stream) when `by_time`.
fn expected(
    log: &BTreeMap<(String, String), Value>,
    tenant: &str,
    keep: impl Fn(&Value) -> bool,
    by_time: bool,
    desc: bool,
) -> Vec<Value> {
    let mut rows: Vec<Value> = log
        .iter()
        .filter(|((t, _), row)| t == tenant && keep(row))
        .map(|(_, row)| row.clone())
        .collect();
    if by_time {
        rows.sort_by(|a, b| {
            time_of(a)
                .cmp(&time_of(b))
                .then_with(|| a["stream"].as_str().cmp(&b["stream"].as_str()))
        });
    }
    if desc {
        rows.reverse();
    }
    rows
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Follows `next_cursor` from `first` to the last page: every row, in the
/// order shown, and how many pages there were.
async fn page_through<F, Fut>(get: F, first: &str) -> (Vec<Value>, usize)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    let mut rows = Vec::new();
    let mut uri = first.to_owned();
    for pages in 1..=100 {
        let (status, page) = get(uri.clone()).await;
        assert_eq!(status, 200, "{uri}: {page}");
        let items = page["items"].as_array().expect("items");
        rows.extend(items.iter().cloned().map(normalised));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(!items.is_empty(), "{uri}: an empty page with a cursor");
                uri = format!("{first}&cursor={}", encode(cursor));
            }
            None => return (rows, pages),
        }
    }
    panic!("{first}: more than 100 pages");
}

/// The whole scenario against an app whose read side is `side` over
/// `store`, the streams projection already running.
async fn scenario(state: AppState, side: ReadSide, what: &str) {
    let store = Arc::clone(&state.store);
    let rate = Some(100_000);
    let (_, acme) = support::create_key(&store, "acme", &["read:*"], rate).await;
    let (_, globex) = support::create_key(&store, "globex", &["read:*"], rate).await;
    let (_, some) =
        support::create_key(&store, "acme", &["read:tickets", "read:widgets.*"], rate).await;
    let (_, one_type) =
        support::create_key(&store, "acme", &["read:tickets.ticket_opened"], rate).await;
    let (_, publisher) = support::create_key(&store, "acme", &["publish:*"], rate).await;
    for (tenant, stream, types) in LOG {
        append(&store, tenant, stream, types).await;
    }
    let caught_up = |side: ReadSide| async move {
        eventually(PATIENCE, || async {
            side.statuses()
                .await
                .is_ok_and(|all| all.iter().all(|s| s.lag_events == 0 && s.rebuild.is_none()))
        })
        .await
    };
    assert!(
        caught_up(side.clone()).await,
        "{what}: the projection catches up"
    );
    let log = from_the_log(&store).await;

    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let get = |key: &str, uri: &str| {
        let request = test::TestRequest::get()
            .uri(uri)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request();
        let app = &app;
        async move {
            let response = test::call_service(app, request).await;
            let status = response.status().as_u16();
            let body = test::read_body(response).await;
            (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
    };
    let as_acme = |uri: String| get(&acme, &uri);

    // Every stream of acme, each with the log's values, by stream; seven
    // rows over pages of two, and over one page.
    let all = expected(&log, "acme", |_| true, false, false);
    assert_eq!(all.len(), 7);
    let (got, pages) = page_through(as_acme, "/v1/views/streams?limit=2").await;
    assert_eq!(got, all, "{what}: acme's streams by stream");
    assert_eq!(pages, 4, "{what}: seven rows in pages of two");
    let (got, pages) = page_through(as_acme, "/v1/views/streams?limit=500").await;
    assert_eq!((got, pages), (all.clone(), 1), "{what}");
    let names: Vec<&str> = all.iter().map(|r| r["stream"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "edges/E-1",
            "gadgets/G-1",
            "tickets/T-1",
            "tickets/T-2",
            "widgets/W-1",
            "widgets/W-10",
            "widgets/X-1"
        ]
    );
    let w1 = &all[4];
    assert_eq!(
        (&w1["domain"], &w1["id"], &w1["version"], &w1["event_count"]),
        (&json!("widgets"), &json!("W-1"), &json!(3), &json!(3)),
        "{what}"
    );
    assert_eq!(w1["last_event_type"], "widgets.widget_shipped", "{what}");

    // Both sorts, both orders, pages of three.
    for (query, by_time, desc) in [
        ("sort=stream&order=desc", false, true),
        ("sort=last_event_at", true, false),
        ("sort=last_event_at&order=desc", true, true),
    ] {
        let want = expected(&log, "acme", |_| true, by_time, desc);
        let (got, _) = page_through(as_acme, &format!("/v1/views/streams?{query}&limit=3")).await;
        assert_eq!(got, want, "{what}: {query}");
    }

    // Filters: domains (comma-separated or repeated), prefix, time window.
    let of = |domains: &'static [&'static str]| {
        move |row: &Value| domains.contains(&row["domain"].as_str().unwrap())
    };
    let runtime = expected(&log, "acme", of(&["widgets", "gadgets"]), false, false);
    assert_eq!(runtime.len(), 4);
    for query in [
        "domain=widgets,gadgets",
        "domain=widgets&domain=gadgets",
        "domain=gadgets&domain=widgets,gadgets&domain=widgets",
    ] {
        let (got, _) = page_through(as_acme, &format!("/v1/views/streams?{query}&limit=3")).await;
        assert_eq!(got, runtime, "{what}: {query}");
    }
    let (got, _) = page_through(as_acme, "/v1/views/streams?domain=widgets&prefix=W-1").await;
    let ids: Vec<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["W-1", "W-10"], "{what}");
    let (got, _) = page_through(as_acme, "/v1/views/streams?prefix=T-").await;
    assert_eq!(got, expected(&log, "acme", of(&["tickets"]), false, false));
    let (got, _) = page_through(as_acme, "/v1/views/streams?domain=nothing_here").await;
    assert!(got.is_empty(), "{what}");
    let middle = time_of(&log[&("acme".to_owned(), "widgets/W-10".to_owned())]);
    let at = encode(&middle.to_rfc3339_opts(SecondsFormat::Micros, true));
    let (after, _) = page_through(as_acme, &format!("/v1/views/streams?updated_after={at}")).await;
    let (before, _) =
        page_through(as_acme, &format!("/v1/views/streams?updated_before={at}")).await;
    assert_eq!(
        after,
        expected(&log, "acme", |r| time_of(r) >= middle, false, false),
        "{what}: updated_after is inclusive"
    );
    assert_eq!(
        before,
        expected(&log, "acme", |r| time_of(r) < middle, false, false),
        "{what}: updated_before is exclusive"
    );
    assert!(!after.is_empty() && !before.is_empty(), "{what}");
    assert_eq!(after.len() + before.len(), all.len(), "{what}");
    let (window, _) = page_through(
        as_acme,
        &format!(
            "/v1/views/streams?domain=widgets&updated_after={at}&updated_before={}",
            encode("2100-01-01T00:00:00Z")
        ),
    )
    .await;
    assert_eq!(
        window,
        expected(
            &log,
            "acme",
            |r| r["domain"] == "widgets" && time_of(r) >= middle,
            false,
            false
        ),
        "{what}"
    );

    // Tenants apart: globex sees its own two streams, with its own values.
    let (got, _) = page_through(|uri| get(&globex, &uri), "/v1/views/streams?limit=1").await;
    assert_eq!(got, expected(&log, "globex", |_| true, false, false));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["stream"], "tickets/T-1");
    assert_eq!(
        (&got[0]["version"], &got[0]["event_count"]),
        (&json!(1), &json!(1)),
        "{what}: globex's tickets/T-1, not acme's"
    );

    // Scopes: only domains read as a whole are listed; naming another is
    // a 403, as is a credential that may read no whole domain.
    let (got, _) = page_through(|uri| get(&some, &uri), "/v1/views/streams?limit=2").await;
    assert_eq!(
        got,
        expected(&log, "acme", of(&["tickets", "widgets"]), false, false),
        "{what}: a key of tickets and widgets"
    );
    let (got, _) = page_through(|uri| get(&some, &uri), "/v1/views/streams?domain=widgets").await;
    assert_eq!(got.len(), 3, "{what}");
    for (key, uri) in [
        (&some, "/v1/views/streams?domain=edges"),
        (&some, "/v1/views/streams?domain=tickets,gadgets"),
        (&some, "/v1/views/streams?domain=tickets&domain=edges"),
        (&one_type, "/v1/views/streams"),
        (&one_type, "/v1/views/streams?domain=tickets"),
        (&publisher, "/v1/views/streams"),
    ] {
        let (status, body) = get(key, uri).await;
        assert_eq!(status, 403, "{what}: {uri}: {body}");
        assert_eq!(body["type"], "urn:herald:problem:forbidden", "{uri}");
    }

    // Bad parameters are 400s naming what is wrong.
    let twenty_one: Vec<String> = (0..21).map(|i| format!("d{i}")).collect();
    let twenty_one = format!("/v1/views/streams?domain={}", twenty_one.join(","));
    let (_, page) = get(&acme, "/v1/views/streams?limit=1").await;
    let stream_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let foreign = format!(
        "/v1/views/streams?sort=last_event_at&cursor={}",
        encode(&stream_cursor)
    );
    for uri in [
        "/v1/views/streams?domain=Tickets",
        "/v1/views/streams?domain=tickets,,edges",
        "/v1/views/streams?domain=",
        twenty_one.as_str(),
        "/v1/views/streams?bogus=1",
        "/v1/views/streams?sort=id",
        "/v1/views/streams?order=up",
        "/v1/views/streams?limit=0",
        "/v1/views/streams?limit=501",
        "/v1/views/streams?updated_after=yesterday",
        "/v1/views/streams?prefix=a&prefix=b",
        "/v1/views/streams?cursor=garbage",
        foreign.as_str(),
    ] {
        let (status, body) = get(&acme, uri).await;
        assert_eq!(status, 400, "{what}: {uri}: {body}");
        assert_eq!(body["type"], "urn:herald:problem:invalid-query", "{uri}");
    }
    let (status, body) = get(&acme, &twenty_one.replace(",d20", "")).await;
    assert_eq!(status, 200, "{what}: twenty domains may be named: {body}");

    // The list follows the log: a new event moves a stream on, and a new
    // domain's first stream appears.
    append(&store, "acme", "widgets/W-10", &["widgets.widget_painted"]).await;
    append(&store, "acme", "sprockets/S-1", &["sprockets.sprocket_cut"]).await;
    let followed = eventually(PATIENCE, || async {
        let (_, page) = get(&acme, "/v1/views/streams?sort=last_event_at&order=desc").await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let w10 = items.iter().find(|r| r["stream"] == "widgets/W-10");
        items.len() == 8
            && w10.is_some_and(|r| r["version"] == 2 && r["event_count"] == 2)
            && items[0]["stream"] == "sprockets/S-1"
            && items[1]["stream"] == "widgets/W-10"
    })
    .await;
    assert!(followed, "{what}: the view follows new events");
    assert!(caught_up(side).await, "{what}");
    let log = from_the_log(&store).await;
    let (got, _) = page_through(as_acme, "/v1/views/streams?limit=3").await;
    assert_eq!(
        got,
        expected(&log, "acme", |_| true, false, false),
        "{what}"
    );
    let w10 = got.iter().find(|r| r["stream"] == "widgets/W-10").unwrap();
    assert_eq!(w10["last_event_type"], "widgets.widget_painted", "{what}");
    assert!(w10["last_event_at"].as_str() > w10["first_event_at"].as_str());
}

fn fast() -> RunnerConfig {
    RunnerConfig {
        poll_interval: Duration::from_millis(20),
        ..RunnerConfig::default()
    }
}

#[actix_web::test]
async fn on_postgres() {
    let db = TestDatabase::create().await;
    let (state, runner, _stop) =
        support::postgres_state_with_projections(&db, vec![Arc::new(StreamsProjection)]).await;
    scenario(state, runner.into(), "Postgres").await;
}

#[actix_web::test]
async fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = support::embedded_state(dir.path(), support::TEST_LIMITS).await;
    let runner = EmbeddedRunner::new(
        dir.path().join("read-models.db"),
        Arc::clone(&state.store),
        vec![Arc::new(StreamsProjection)],
    )
    .with_config(fast());
    runner.install().await.expect("install the projection");
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let running = runner.clone();
    tokio::spawn(async move { running.run(stop).await });
    let side: ReadSide = runner.into();
    state.read_side = Some(side.clone());
    scenario(state, side, "SQLite").await;
}
