//! `GET /v1/views/statistics` sums the tenant's rollups over a range of
//! days, grouped by day, customer or edge (or one total row), for one
//! customer if asked; it refuses bad ranges (over 366 days, reversed,
//! malformed) and unknown groupings with 400, keys without `read` on
//! `statistics` with 403, and never shows another tenant's numbers. Editor
//! sessions arrive as an external producer sends them, through
//! `POST /v1/events`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use chrono::{DateTime, Days, Utc};
use herald::api;
use herald_events::drafts::{DraftPatched, PatchOperation};
use herald_events::edges::{EdgeCameOnline, EdgeRegistered, EdgeState, EdgeWentOffline};
use herald_events::tickets::{TicketKind, TicketOpened, TicketResolved};
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::statistics::StatisticsProjection;
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::TestDatabase;
use serde_json::{json, Value};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn append(store: &Arc<dyn EventStore>, tenant: &str, stream: &str, event: NewEvent) {
    let stream: StreamId = stream.parse().unwrap();
    store
        .append(
            &TenantId::new(tenant).unwrap(),
            &stream,
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .expect("append");
}

fn opened(customer: &str) -> NewEvent {
    TicketOpened {
        kind: TicketKind::Outage,
        customer: customer.into(),
        edge: None,
        description: "down".into(),
        opened_by: None,
    }
    .to_new_event()
}

fn resolved() -> NewEvent {
    TicketResolved {
        resolution: None,
        resolved_by: None,
    }
    .to_new_event()
}

fn autosave() -> NewEvent {
    DraftPatched {
        patch: vec![PatchOperation::Remove { path: "/a".into() }],
        base_version: 1,
        version: 2,
        author: None,
    }
    .to_new_event()
}

/// The rows of an answer, with only the members named.
fn rows(body: &Value, members: &[&str]) -> Vec<Value> {
    body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            members
                .iter()
                .map(|m| (m.to_string(), row.get(*m).cloned().unwrap_or(Value::Null)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect()
}

#[actix_web::test]
async fn statistics_view_groups_by_day_customer_and_tenant() {
    let db = TestDatabase::create().await;
    let (state, runner, _stop) =
        support::postgres_state_with_projections(&db, vec![Arc::new(StatisticsProjection)]).await;
    let store = Arc::clone(&state.store);
    let (_, acme) = support::create_key(&store, "acme", &["read:statistics"], Some(100_000)).await;
    let (_, editor) =
        support::create_key(&store, "acme", &["publish:statistics"], Some(100_000)).await;
    let (_, globex) =
        support::create_key(&store, "globex", &["read:statistics"], Some(100_000)).await;
    let (_, tickets_only) =
        support::create_key(&store, "acme", &["read:tickets"], Some(100_000)).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    // acme: T-1 for c1 resolved in 2 hours on March 1st; T-2 for c2 opened
    // on the 2nd and resolved a day later; edge E-1 of c1 offline from
    // 23:00 on the 1st to 01:00 on the 2nd (60 minutes each day); two
    // autosaves on the 2nd; a session of c1, 30 minutes, on the 1st.
    append(
        &store,
        "acme",
        "tickets/T-1",
        opened("c1").occurred_at(at("2026-03-01T10:00:00Z")),
    )
    .await;
    append(
        &store,
        "acme",
        "tickets/T-1",
        resolved().occurred_at(at("2026-03-01T12:00:00Z")),
    )
    .await;
    append(
        &store,
        "acme",
        "tickets/T-2",
        opened("c2").occurred_at(at("2026-03-02T08:00:00Z")),
    )
    .await;
    append(
        &store,
        "acme",
        "tickets/T-2",
        resolved().occurred_at(at("2026-03-03T08:00:00Z")),
    )
    .await;
    let registered = EdgeRegistered {
        customer: "c1".into(),
        serial: "SN-1".into(),
        site: "roof".into(),
    };
    append(
        &store,
        "acme",
        "edges/E-1",
        registered
            .to_new_event()
            .occurred_at(at("2026-02-01T00:00:00Z")),
    )
    .await;
    let offline = EdgeWentOffline {
        previous_state: EdgeState::Online,
        reason: None,
    };
    append(
        &store,
        "acme",
        "edges/E-1",
        offline
            .to_new_event()
            .occurred_at(at("2026-03-01T23:00:00Z")),
    )
    .await;
    let online = EdgeCameOnline {
        previous_state: EdgeState::Offline,
        offline_since: None,
    };
    append(
        &store,
        "acme",
        "edges/E-1",
        online
            .to_new_event()
            .occurred_at(at("2026-03-02T01:00:00Z")),
    )
    .await;
    for _ in 0..2 {
        append(
            &store,
            "acme",
            "drafts/D-1",
            autosave().occurred_at(at("2026-03-02T15:00:00Z")),
        )
        .await;
    }
    // globex: a ticket of a customer also named c1, the same day.
    append(
        &store,
        "globex",
        "tickets/T-1",
        opened("c1").occurred_at(at("2026-03-01T10:00:00Z")),
    )
    .await;
    // Today, to be seen in the default range.
    append(&store, "acme", "tickets/T-3", opened("c3")).await;

    let get = |key: &str, query: &str| {
        test::TestRequest::get()
            .uri(&format!("/v1/views/statistics{query}"))
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request()
    };
    let post = |key: &str, body: Value| {
        test::TestRequest::post()
            .uri("/v1/events")
            .insert_header(("authorization", format!("Bearer {key}")))
            .set_json(body)
            .to_request()
    };

    // The editor publishes its session as any producer would; a session
    // event outside its schema is refused.
    let session = |name: &str, payload: Value, occurred_at: &str| {
        json!({"stream": "statistics/S-1", "type": format!("statistics.{name}"), "version": 1,
               "payload": payload, "occurred_at": occurred_at})
    };
    let answer = test::call_service(
        &app,
        post(
            &editor,
            json!({"events": [
                session("session_started", json!({"editor": "ada", "customer": "c1", "draft": "D-1", "started_at": "2026-03-01T09:00:00Z"}), "2026-03-01T09:00:00Z"),
                session("session_ended", json!({"ended_at": "2026-03-01T09:30:00Z", "reason": "closed"}), "2026-03-01T09:30:00Z"),
            ]}),
        ),
    )
    .await;
    assert_eq!(answer.status(), 201);
    let refused = test::call_service(
        &app,
        post(
            &editor,
            session(
                "session_started",
                json!({"started_at": "2026-03-01T09:00:00Z"}),
                "2026-03-01T09:00:00Z",
            ),
        ),
    )
    .await;
    assert_eq!(refused.status(), 422, "a session without its editor");

    support::caught_up(&runner, Duration::from_secs(30)).await;

    let range = "?from=2026-03-01&to=2026-03-03";
    // By day.
    let by_day: Value =
        test::call_and_read_body_json(&app, get(&acme, &format!("{range}&group_by=day"))).await;
    assert_eq!(by_day["from"], "2026-03-01");
    assert_eq!(by_day["to"], "2026-03-03");
    assert_eq!(by_day["group_by"], json!(["day"]));
    assert_eq!(
        rows(
            &by_day,
            &[
                "day",
                "tickets_opened",
                "tickets_resolved",
                "mean_time_to_resolve_secs",
                "outage_minutes",
                "draft_autosaves",
                "sessions_started",
                "sessions_ended",
                "session_seconds",
                "mean_session_secs"
            ]
        ),
        [
            json!({"day": "2026-03-01", "tickets_opened": 1, "tickets_resolved": 1, "mean_time_to_resolve_secs": 7200.0,
                   "outage_minutes": 60.0, "draft_autosaves": 0, "sessions_started": 1, "sessions_ended": 1,
                   "session_seconds": 1800.0, "mean_session_secs": 1800.0}),
            json!({"day": "2026-03-02", "tickets_opened": 1, "tickets_resolved": 0, "mean_time_to_resolve_secs": null,
                   "outage_minutes": 60.0, "draft_autosaves": 2, "sessions_started": 0, "sessions_ended": 0,
                   "session_seconds": 0.0, "mean_session_secs": null}),
            json!({"day": "2026-03-03", "tickets_opened": 0, "tickets_resolved": 1, "mean_time_to_resolve_secs": 86400.0,
                   "outage_minutes": 0.0, "draft_autosaves": 0, "sessions_started": 0, "sessions_ended": 0,
                   "session_seconds": 0.0, "mean_session_secs": null}),
        ]
    );
    assert!(by_day["rows"][0].get("customer").is_none());

    // By customer: drafts count under "".
    let by_customer: Value =
        test::call_and_read_body_json(&app, get(&acme, &format!("{range}&group_by=customer")))
            .await;
    assert_eq!(
        rows(
            &by_customer,
            &[
                "customer",
                "tickets_opened",
                "outage_minutes",
                "draft_autosaves",
                "sessions_started"
            ]
        ),
        [
            json!({"customer": "", "tickets_opened": 0, "outage_minutes": 0.0, "draft_autosaves": 2, "sessions_started": 0}),
            json!({"customer": "c1", "tickets_opened": 1, "outage_minutes": 120.0, "draft_autosaves": 0, "sessions_started": 1}),
            json!({"customer": "c2", "tickets_opened": 1, "outage_minutes": 0.0, "draft_autosaves": 0, "sessions_started": 0}),
        ]
    );

    // By day and customer, one customer.
    let one: Value = test::call_and_read_body_json(
        &app,
        get(&acme, &format!("{range}&group_by=day,customer&customer=c2")),
    )
    .await;
    assert_eq!(one["customer"], "c2");
    assert_eq!(
        rows(
            &one,
            &["day", "customer", "tickets_opened", "tickets_resolved"]
        ),
        [
            json!({"day": "2026-03-02", "customer": "c2", "tickets_opened": 1, "tickets_resolved": 0}),
            json!({"day": "2026-03-03", "customer": "c2", "tickets_opened": 0, "tickets_resolved": 1}),
        ]
    );

    // By edge: the edge's minutes apart, the rest in the row without one.
    let by_edge: Value =
        test::call_and_read_body_json(&app, get(&acme, &format!("{range}&group_by=edge"))).await;
    assert_eq!(
        rows(&by_edge, &["edge", "tickets_opened", "outage_minutes"]),
        [
            json!({"edge": null, "tickets_opened": 2, "outage_minutes": 0.0}),
            json!({"edge": "E-1", "tickets_opened": 0, "outage_minutes": 120.0}),
        ]
    );

    // Totals: one row; the p90 of two durations (2 h, 24 h) is the second.
    let total: Value = test::call_and_read_body_json(&app, get(&acme, range)).await;
    assert_eq!(total["group_by"], json!([]));
    assert_eq!(
        rows(
            &total,
            &[
                "tickets_opened",
                "tickets_resolved",
                "resolutions_timed",
                "mean_time_to_resolve_secs",
                "p90_time_to_resolve_secs",
                "outage_minutes"
            ]
        ),
        [
            json!({"tickets_opened": 2, "tickets_resolved": 2, "resolutions_timed": 2, "mean_time_to_resolve_secs": 46800.0,
                "p90_time_to_resolve_secs": 86400.0, "outage_minutes": 120.0})
        ]
    );
    // A range with nothing still has its total row, of zeros.
    let empty: Value =
        test::call_and_read_body_json(&app, get(&acme, "?from=2025-01-01&to=2025-01-31")).await;
    assert_eq!(
        rows(&empty, &["tickets_opened", "p90_time_to_resolve_secs"]),
        [json!({"tickets_opened": 0, "p90_time_to_resolve_secs": null})]
    );

    // Tenants: globex sees its one ticket, not acme's.
    let theirs: Value =
        test::call_and_read_body_json(&app, get(&globex, &format!("{range}&group_by=customer")))
            .await;
    assert_eq!(
        rows(
            &theirs,
            &[
                "customer",
                "tickets_opened",
                "tickets_resolved",
                "sessions_started"
            ]
        ),
        [
            json!({"customer": "c1", "tickets_opened": 1, "tickets_resolved": 0, "sessions_started": 0})
        ]
    );

    // The default range: the last 30 days, today's ticket in it.
    let today = Utc::now().date_naive();
    let default: Value = test::call_and_read_body_json(&app, get(&acme, "")).await;
    let to: chrono::NaiveDate = default["to"].as_str().unwrap().parse().unwrap();
    assert!(to == today || to == today + Days::new(1), "{default}");
    assert_eq!(default["from"], (to - Days::new(29)).to_string());
    assert!(
        default["rows"][0]["tickets_opened"].as_i64().unwrap() >= 1,
        "{default}"
    );

    // Refusals.
    for (query, why) in [
        ("?from=2025-01-01&to=2026-01-02", "367 days"),
        ("?from=2026-03-02&to=2026-03-01", "from after to"),
        ("?from=2026-3-1", "not YYYY-MM-DD"),
        ("?to=yesterday", "not a day"),
        ("?group_by=week", "an unknown dimension"),
        ("?group_by=day,day", "a dimension twice"),
        ("?tenant=globex", "an unknown parameter"),
    ] {
        let answer = test::call_service(&app, get(&acme, query)).await;
        assert_eq!(answer.status(), 400, "{why}");
        let problem: Value = test::read_body_json(answer).await;
        assert_eq!(problem["type"], "urn:herald:problem:invalid-query", "{why}");
    }
    let longest = test::call_service(&app, get(&acme, "?from=2025-01-01&to=2026-01-01")).await;
    assert_eq!(longest.status(), 200, "366 days are allowed");
    let forbidden = test::call_service(&app, get(&tickets_only, range)).await;
    assert_eq!(forbidden.status(), 403);
    // Keys exist, so anonymous access ends (within the authenticator's
    // recheck).
    let app = &app;
    let refused = herald_testkit::eventually(Duration::from_secs(10), || async move {
        let request = test::TestRequest::get()
            .uri("/v1/views/statistics")
            .to_request();
        test::call_service(app, request).await.status() == 401
    })
    .await;
    assert!(refused, "no credentials: 401");
}
