//! `POST /v1/events`: one event or a batch of events naming their streams,
//! each checked against its schema and the caller's scopes and tenant; the
//! answer lists each event's position (after commit) or its problem. A
//! repeated idempotency key returns the original answer and appends nothing;
//! `"atomic": true` appends all or nothing.

mod support;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use chrono::Utc;
use herald::api;
use herald::auth::ApiKey;
use herald_events::{Position, TenantId};
use herald_store::{ApiKeyRecord, EmbeddedConfig, EmbeddedStore, EventStore};
use serde_json::{json, Value};

fn note(stream: &str, text: &str) -> Value {
    json!({"stream": stream, "type": "tickets.note_appended", "version": 1, "payload": {"note": text}})
}

#[actix_web::test]
async fn single_batch_atomic_and_idempotent_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let key = ApiKey::generate();
    store
        .insert_api_key(&ApiKeyRecord {
            key_id: key.id.clone(),
            tenant: TenantId::new("acme").unwrap(),
            scopes: vec!["publish:tickets".into(), "read:*".into()],
            secret_sha256: key.secret_sha256(),
            label: None,
            rate_per_sec: None,
            created_at: Utc::now(),
            revoked_at: None,
        })
        .await
        .unwrap();
    let token = format!("Bearer {}", key.reveal());
    let state = support::state(store.clone(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let post = |body: Value| {
        test::TestRequest::post()
            .uri("/v1/events")
            .insert_header(("authorization", token.clone()))
            .set_json(body)
            .to_request()
    };

    // One event.
    let resp = test::call_service(&app, post(note("tickets/P-1", "one"))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["position"], 1);
    assert_eq!(body["stream"], "tickets/P-1");

    // A batch, not atomic: the bad ones are refused one by one.
    let batch = json!({"events": [
        note("tickets/P-1", "two"),
        {"stream": "tickets/P-2", "type": "tickets.note_appended", "version": 1, "payload": {}},
        {"stream": "edges/E-1", "type": "edges.edge_registered", "version": 1, "payload": {}},
        note("tickets/P-3", "three"),
        {"stream": "tickets/P-4", "type": "tickets.note_appended", "version": 1, "payload": {"note": "x"}, "tenant": "globex"},
    ]});
    let resp = test::call_service(&app, post(batch)).await;
    assert_eq!(resp.status(), StatusCode::MULTI_STATUS);
    let body: Value = test::read_body_json(resp).await;
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 403, 201, 403], "{body}");
    assert_eq!(
        results[1]["problem"]["type"],
        "urn:herald:problem:schema-violation"
    );
    assert!(results[1]["problem"]["detail"]
        .as_str()
        .unwrap()
        .contains("note"));
    assert_eq!(
        results[2]["problem"]["type"],
        "urn:herald:problem:forbidden"
    );
    assert_eq!(
        results[4]["problem"]["type"],
        "urn:herald:problem:forbidden"
    );
    assert_eq!(store.read_all(Position(0), 100).await.unwrap().len(), 3);

    // Atomic with one bad event: nothing is appended.
    let atomic = json!({"atomic": true, "events": [note("tickets/A-1", "a"), {"stream": "tickets/A-2", "type": "tickets.nope", "version": 1, "payload": {}}]});
    let resp = test::call_service(&app, post(atomic)).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    // Atomic with a stale expectation: 409, nothing appended.
    let mut stale = note("tickets/P-1", "late");
    stale["expected_version"] = json!(0);
    let resp = test::call_service(
        &app,
        post(json!({"atomic": true, "events": [note("tickets/A-1", "a"), stale]})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(
        store.read_all(Position(0), 100).await.unwrap().len(),
        3,
        "a refused atomic batch appended"
    );
    // Atomic and fine: every event, in one transaction.
    let resp = test::call_service(
        &app,
        post(
            json!({"atomic": true, "events": [note("tickets/A-1", "a"), note("tickets/A-2", "b")]}),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["results"][1]["position"], 5);

    // Idempotency keys: the repeat answers the original and appends nothing.
    let mut keyed = note("tickets/K-1", "once");
    keyed["idempotency_key"] = json!("order-7781");
    let first: Value =
        test::read_body_json(test::call_service(&app, post(keyed.clone())).await).await;
    let resp = test::call_service(&app, post(keyed)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let again: Value = test::read_body_json(resp).await;
    assert_eq!(again["position"], first["position"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(store.read_all(Position(0), 100).await.unwrap().len(), 6);

    // Bad shapes.
    for bad in [
        json!([1, 2]),
        json!({"events": [], "atomic": false}),
        json!({"events": [note("tickets/x", "x")], "extra": 1}),
    ] {
        let resp = test::call_service(&app, post(bad.clone())).await;
        assert!(resp.status().is_client_error(), "{bad}");
    }
}
