//! Commands over HTTP: `POST /v1/{domain}/{id}/{command}` answers with the
//! events it caused (types, positions, stream versions), `GET
//! /v1/{domain}/{id}` with the state and version; every refusal is a typed
//! problem (409 forbidden by the state, 422 invalid, 404 unknown aggregate,
//! command or domain, 400 bad id), a full mailbox answers 503 with
//! `Retry-After`, and credentials bound the domain and the tenant.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api;
use herald_actors::tickets::Ticket;
use herald_actors::{ActorRuntime, AggregateGroup, Domains, GroupConfig};
use herald_events::EventRegistry;
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore};
use serde_json::{json, Value};
use support::create_key;

#[actix_web::test]
async fn commands_answer_with_events_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let runtime = ActorRuntime::start(2);
    let tickets = AggregateGroup::<Ticket>::new(
        Arc::clone(&store),
        EventRegistry::builtin().unwrap(),
        Arc::clone(&runtime),
        GroupConfig {
            mailbox: 1,
            idle_timeout: Duration::from_secs(60),
            ..GroupConfig::default()
        },
    );
    let (_, writer) = create_key(
        &store,
        "acme",
        &["publish:tickets", "read:tickets"],
        Some(100_000),
    )
    .await;
    let (_, reader) = create_key(&store, "acme", &["read:tickets"], Some(100_000)).await;
    let (_, globex) = create_key(
        &store,
        "globex",
        &["publish:tickets", "read:tickets"],
        Some(100_000),
    )
    .await;
    let mut state = support::state(Arc::clone(&store), support::TEST_LIMITS).await;
    state.domains = Domains::default().with(Arc::new(tickets));
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    let post = |key: &str, path: &str, body: Value| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .set_json(body)
            .to_request()
    };
    let get = |key: &str, path: &str| {
        test::TestRequest::get()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request()
    };
    let open = json!({"kind": "other", "customer": "acme", "description": "slow link"});

    // Done: 201 with the events.
    let resp = test::call_service(&app, post(&writer, "/v1/tickets/T-1/open", open.clone())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["stream"], "tickets/T-1");
    assert_eq!(body["stream_version"], 1);
    assert_eq!(body["events"][0]["type"], "tickets.ticket_opened");
    assert_eq!(body["events"][0]["position"], 1);
    assert_eq!(body["events"][0]["stream_version"], 1);

    // The state.
    let resp = test::call_service(&app, get(&reader, "/v1/tickets/T-1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(
        (body["version"].clone(), body["state"]["status"].clone()),
        (json!(1), json!("open"))
    );

    // Typed refusals, each changing nothing.
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/v1/tickets/T-1/open",
            open.clone(),
            StatusCode::CONFLICT,
            "command-refused",
        ),
        (
            "/v1/tickets/T-404/resolve",
            json!({}),
            StatusCode::NOT_FOUND,
            "aggregate-not-found",
        ),
        (
            "/v1/tickets/T-1/explode",
            json!({}),
            StatusCode::NOT_FOUND,
            "unknown-command",
        ),
        (
            "/v1/nodomain/T-1/open",
            json!({}),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "/v1/tickets/T-1/append_note",
            json!({"text": "wrong field"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "/v1/tickets/T-1/append_note",
            json!({"note": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-command",
        ),
        (
            "/v1/tickets/bad%20id/open",
            open.clone(),
            StatusCode::BAD_REQUEST,
            "invalid-stream-id",
        ),
        (
            "/v1/tickets/outage.E-1/open",
            json!({"kind": "outage", "customer": "acme", "description": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-command",
        ),
    ];
    for (path, body, status, slug) in cases {
        let resp = test::call_service(&app, post(&writer, path, body)).await;
        let got = resp.status();
        let problem: Value = test::read_body_json(resp).await;
        if status == StatusCode::BAD_REQUEST && slug.is_empty() {
            // A body of the wrong shape: 422 invalid-request.
            assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {problem}");
            assert_eq!(
                problem["type"], "urn:herald:problem:invalid-request",
                "{path}"
            );
            continue;
        }
        assert_eq!(got, status, "{path}: {problem}");
        assert_eq!(
            problem["type"],
            format!("urn:herald:problem:{slug}"),
            "{path}: {problem}"
        );
    }
    let resp = test::call_service(&app, get(&reader, "/v1/tickets/T-1")).await;
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(
        body["version"], 1,
        "refused commands changed nothing: {body}"
    );

    // Credentials: read-only keys cannot command; another tenant sees none
    // of acme's tickets and its commands act in its own tenant.
    let resp = test::call_service(
        &app,
        post(&reader, "/v1/tickets/T-1/append_note", json!({"note": "x"})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = test::call_service(&app, get(&globex, "/v1/tickets/T-1")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = test::call_service(&app, post(&globex, "/v1/tickets/T-1/open", open.clone())).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "globex's own T-1");
    let resp = test::call_service(&app, get(&reader, "/v1/tickets/T-1")).await;
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["version"], 1, "acme's T-1 untouched by globex: {body}");
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/tickets/T-1/append_note")
            .set_json(json!({"note": "x"}))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A full mailbox: 503 busy with Retry-After; what was accepted took
    // effect once each.
    let app = &app;
    let sends = (0..30).map(|n| {
        let req = post(
            &writer,
            "/v1/tickets/T-1/append_note",
            json!({"note": format!("n{n}")}),
        );
        async move {
            let resp = test::call_service(app, req).await;
            let retry_after = resp.headers().get("retry-after").is_some();
            let status = resp.status();
            let body: Value = test::read_body_json(resp).await;
            (status, retry_after, body)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let done = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .count();
    let busy: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(done + busy.len(), 30, "{answers:?}");
    assert!(
        !busy.is_empty(),
        "30 concurrent commands into a mailbox of 1 were all taken"
    );
    for (_, retry_after, body) in &busy {
        assert!(retry_after);
        assert_eq!(body["type"], "urn:herald:problem:busy");
    }
    let resp = test::call_service(app, get(&reader, "/v1/tickets/T-1")).await;
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["version"], 1 + done as u64);
    assert_eq!(body["state"]["notes"], done as u64);
    runtime.stop();
}
