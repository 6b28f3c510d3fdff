//! The append and read endpoints: an append answers 201 with positions and
//! stream versions once committed, a retried append (same event ids) answers
//! 200 with the original positions, a stale expected version answers 409,
//! and stream and global reads page through what was written.

mod support;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api;
use serde_json::{json, Value};

fn note(text: &str) -> Value {
    json!({"type": "tickets.note_appended", "version": 1, "payload": {"note": text}})
}

#[actix_web::test]
async fn append_retry_conflict_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let state = support::embedded_state(dir.path(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let post = |path: &str, body: Value| {
        test::TestRequest::post()
            .uri(path)
            .set_json(body)
            .to_request()
    };

    // Create the stream with two events, one with a producer-chosen id.
    let id = "0190b0a6-5c1e-7c3a-9f10-2b3c4d5e6f70";
    let mut first = note("one");
    first["id"] = json!(id);
    first["producer"] = json!("curl");
    let body = json!({"expected_version": 0, "events": [first, note("two")]});
    let resp = test::call_service(&app, post("/v1/streams/tickets/T-9/events", body.clone())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/v1/streams/tickets/T-9/events?from_version=1"
    );
    let created: Value = test::read_body_json(resp).await;
    assert_eq!(created["stream"], "tickets/T-9");
    assert_eq!(created["stream_version"], 2);
    assert_eq!(created["duplicate"], false);
    assert_eq!(created["events"][0]["id"], id);
    assert_eq!(created["events"][0]["position"], 1);
    assert_eq!(created["events"][1]["position"], 2);

    // The same request again: the first event's id repeats but the second
    // event got a fresh id, so this is a partial repeat and is refused.
    let resp = test::call_service(&app, post("/v1/streams/tickets/T-9/events", body)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let problem: Value = test::read_body_json(resp).await;
    assert_eq!(problem["type"], "urn:herald:problem:duplicate-event-id");

    // A retry that carries every id gets the original answer.
    let mut only = note("three");
    only["id"] = json!("0190b0a6-5c1e-7c3a-9f10-2b3c4d5e6f71");
    let retry = json!({"expected_version": 2, "events": [only]});
    let resp =
        test::call_service(&app, post("/v1/streams/tickets/T-9/events", retry.clone())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let original: Value = test::read_body_json(resp).await;
    let resp = test::call_service(&app, post("/v1/streams/tickets/T-9/events", retry)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let repeated: Value = test::read_body_json(resp).await;
    assert_eq!(repeated["duplicate"], true);
    assert_eq!(repeated["events"], original["events"]);

    // A stale expected version.
    let resp = test::call_service(
        &app,
        post(
            "/v1/streams/tickets/T-9/events",
            json!({"expected_version": 1, "events": [note("x")]}),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let problem: Value = test::read_body_json(resp).await;
    assert_eq!(problem["type"], "urn:herald:problem:wrong-expected-version");
    assert_eq!(problem["expected_version"], 1);
    assert_eq!(problem["actual_version"], 3);

    // Another stream, no version check.
    let resp = test::call_service(
        &app,
        post(
            "/v1/streams/tickets/T-10/events",
            json!({"events": [note("elsewhere")]}),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Read the stream in pages of two.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/streams/tickets/T-9/events?limit=2")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page: Value = test::read_body_json(resp).await;
    assert_eq!(page["stream_version"], 3);
    assert_eq!(page["next_version"], 3);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["id"], id);
    assert_eq!(events[0]["producer"], "curl");
    assert_eq!(events[0]["type"], "tickets.note_appended");
    assert_eq!(events[0]["payload"]["note"], "one");
    assert_eq!(events[0]["hash"].as_str().unwrap().len(), 64);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/streams/tickets/T-9/events?from_version=3")
            .to_request(),
    )
    .await;
    let page: Value = test::read_body_json(resp).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["payload"]["note"], "three");

    // An unknown stream.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/streams/tickets/nope/events")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let problem: Value = test::read_body_json(resp).await;
    assert_eq!(problem["type"], "urn:herald:problem:stream-not-found");

    // The global log, paged.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/events?from=0&limit=3")
            .to_request(),
    )
    .await;
    let log: Value = test::read_body_json(resp).await;
    let positions: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3]);
    assert_eq!(log["next"], 4);
    assert_eq!(log["head"], 4);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/events?from=4")
            .to_request(),
    )
    .await;
    let log: Value = test::read_body_json(resp).await;
    assert_eq!(log["events"][0]["stream"], "tickets/T-10");
    assert_eq!(log["next"], 5);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/events?from=5")
            .to_request(),
    )
    .await;
    let log: Value = test::read_body_json(resp).await;
    assert!(log["events"].as_array().unwrap().is_empty());
    assert_eq!(log["next"], 5);
}

#[actix_web::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let state = support::embedded_state(dir.path(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ready: Value = test::read_body_json(resp).await;
    assert_eq!(ready["store"], "embedded");
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
}
