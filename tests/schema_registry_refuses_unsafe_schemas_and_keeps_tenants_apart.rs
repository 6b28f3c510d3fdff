//! The schema registry refuses what it cannot keep safely, with a typed
//! problem naming where, and changes nothing when it refuses: schemas that
//! are not JSON Schemas, too large or too deep, references leaving the
//! schema, patterns that would need backtracking, types of built-in domains
//! or of the registry itself, versions out of order, more types than a
//! tenant may have. Registering needs `schemas:write`; one tenant's types
//! are invisible to another, which can neither publish nor read them; the
//! registry's own events cannot be published by anyone.

mod support;

use std::sync::Arc;

use actix_web::{test, web, App};
use herald::api;
use herald_events::registry::events::DOMAIN as REGISTRY;
use herald_events::{StreamId, TenantId};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore};
use serde_json::{json, Value};
use support::create_key;

macro_rules! call {
    ($app:expr, $req:expr, $key:expr) => {{
        let req = $req.insert_header(("authorization", format!("Bearer {}", $key)));
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status().as_u16();
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, body)
    }};
}

fn register(schema: Value) -> Value {
    json!({"type": "orders.order_placed", "schema": schema})
}

fn simple() -> Value {
    json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}})
}

fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:herald:problem:"))
        .unwrap_or("")
}

/// How many registry events `tenant` has stored.
async fn registry_version(store: &Arc<dyn EventStore>, tenant: &str) -> u64 {
    store
        .stream_version(
            &TenantId::new(tenant).unwrap(),
            &StreamId::parse_parts(REGISTRY, "schemas").unwrap(),
        )
        .await
        .unwrap()
        .get()
}

#[actix_web::test]
async fn unsafe_schemas_are_refused_and_tenants_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let (_, writer) = create_key(
        &store,
        "acme",
        &["schemas:write", "publish:orders", "read:*"],
        None,
    )
    .await;
    let (_, publisher) = create_key(&store, "acme", &["publish:*", "read:*"], None).await;
    let (_, narrow) = create_key(&store, "acme", &["schemas:write:billing.*"], None).await;
    let (_, other) = create_key(
        &store,
        "globex",
        &["schemas:write", "publish:*", "read:*"],
        None,
    )
    .await;
    let (_, admin) = create_key(&store, "acme", &["admin"], None).await;
    // A body may hold a schema over the registry's own bound.
    let limits = herald::api::Limits {
        max_body_bytes: 1 << 20,
        ..support::TEST_LIMITS
    };
    let state = support::state(store.clone(), limits).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let post = |path: &str| test::TestRequest::post().uri(path);
    let get = |path: &str| test::TestRequest::get().uri(path);

    // Scopes: publishing rights do not register; a pattern bounds the types.
    let (status, body) = call!(
        app,
        post("/v1/schemas").set_json(register(simple())),
        publisher
    );
    assert_eq!((status, problem_type(&body)), (403, "forbidden"), "{body}");
    let (status, body) = call!(
        app,
        post("/v1/schemas").set_json(register(simple())),
        narrow
    );
    assert_eq!((status, problem_type(&body)), (403, "forbidden"), "{body}");

    // Each refusal: its status, kind and where.
    let deep = (0..40).fold(
        json!({"type": "string"}),
        |inner, _| json!({"type": "object", "properties": {"x": inner}}),
    );
    let big = json!({"type": "object", "description": "x".repeat(70 * 1024)});
    let many_versions_type = "orders.order_placed";
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "not a schema",
            register(json!({"type": "no-such-type"})),
            422,
            "invalid-schema",
            Some("/schema"),
        ),
        (
            "not an object",
            register(json!(["type"])),
            422,
            "invalid-schema",
            Some("/schema"),
        ),
        ("too deep", register(deep), 422, "invalid-schema", None),
        (
            "too large",
            register(big),
            422,
            "invalid-schema",
            Some("/schema"),
        ),
        (
            "a remote reference",
            register(
                json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}),
            ),
            422,
            "invalid-schema",
            Some("/schema/properties/a/$ref"),
        ),
        (
            "a pattern needing backtracking",
            register(
                json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^(?=a)a+$"}}}),
            ),
            422,
            "invalid-schema",
            Some("/schema"),
        ),
        (
            "a built-in domain",
            json!({"type": "tickets.ticket_escalated", "schema": simple()}),
            422,
            "reserved-event-type",
            None,
        ),
        (
            "the registry's own domain",
            json!({"type": "registry.anything", "schema": simple()}),
            422,
            "reserved-event-type",
            None,
        ),
        (
            "a version that is not next",
            json!({"type": many_versions_type, "version": 2, "schema": simple()}),
            409,
            "schema-version-conflict",
            None,
        ),
        (
            "an upcaster with nothing to upcast from",
            json!({"type": many_versions_type, "schema": simple(), "upcaster": {"rename": {"a": "b"}}}),
            422,
            "invalid-request",
            Some("/upcaster"),
        ),
        (
            "a malformed type",
            json!({"type": "Orders!", "schema": simple()}),
            422,
            "invalid-request",
            Some("/type"),
        ),
    ];
    for (case, body, status, kind, pointer) in cases {
        let (got, problem) = call!(app, post("/v1/schemas").set_json(body), writer);
        assert_eq!(
            (got, problem_type(&problem)),
            (status, kind),
            "{case}: {problem}"
        );
        if let Some(pointer) = pointer {
            assert_eq!(problem["pointer"], pointer, "{case}: {problem}");
        }
        assert_eq!(
            registry_version(&store, "acme").await,
            0,
            "{case} changed nothing"
        );
    }
    // A pattern the linear-time engine runs is fine, however it looks.
    let (status, body) = call!(
        app,
        post("/v1/schemas").set_json(json!({"type": "orders.order_placed", "schema": {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}
        }})),
        writer
    );
    assert_eq!(status, 201, "{body}");
    // The check registers nothing.
    let (status, body) = call!(
        app,
        post("/v1/schemas/check")
            .set_json(json!({"type": "orders.order_refunded", "schema": simple()})),
        writer
    );
    assert_eq!(
        (status, body["accepted"].as_bool(), body["version"].as_u64()),
        (200, Some(true), Some(1)),
        "{body}"
    );
    assert_eq!(registry_version(&store, "acme").await, 1);
    // A catastrophic-looking input is answered at once.
    let started = std::time::Instant::now();
    let (status, body) = call!(
        app,
        post("/v1/events").set_json(
            json!({"stream": "orders/O-1", "type": "orders.order_placed", "version": 1,
            "payload": {"code": format!("{}!", "a".repeat(5000))}})
        ),
        writer
    );
    assert_eq!(
        (status, problem_type(&body)),
        (422, "schema-violation"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Nobody publishes the registry's own events, an admin included.
    let forged = json!({"stream": "registry/schemas", "type": "registry.schema_registered", "version": 1,
        "payload": {"event_type": "orders.order_placed", "version": 2, "schema": {}, "compatibility": "none"}});
    for key in [&writer, &admin] {
        let (status, body) = call!(app, post("/v1/events").set_json(forged.clone()), key);
        assert_eq!(
            (status, problem_type(&body)),
            (422, "reserved-event-type"),
            "{body}"
        );
    }
    assert_eq!(registry_version(&store, "acme").await, 1);

    // Another tenant sees none of acme's types and may register its own.
    let (status, list) = call!(app, get("/v1/schemas?domain=orders"), other);
    assert_eq!(status, 200);
    assert_eq!(list["types"], json!([]), "{list}");
    let (status, body) = call!(app, get("/v1/schemas/orders.order_placed/1"), other);
    assert_eq!((status, problem_type(&body)), (404, "not-found"), "{body}");
    let (status, body) = call!(
        app,
        post("/v1/events").set_json(json!({"stream": "orders/O-1", "type": "orders.order_placed", "version": 1, "payload": {"code": "a"}})),
        other
    );
    assert_eq!(
        (status, problem_type(&body)),
        (422, "unknown-event-type"),
        "{body}"
    );
    let (status, body) = call!(
        app,
        post("/v1/schemas").set_json(json!({"type": "orders.order_placed", "schema": simple()})),
        other
    );
    assert_eq!((status, body["version"].as_u64()), (201, Some(1)), "{body}");
    let (_, mine) = call!(app, get("/v1/schemas/orders.order_placed/latest"), writer);
    assert_eq!(
        mine["schema"]["properties"]["code"]["pattern"], "^(a+)+$",
        "{mine}"
    );
    let (_, theirs) = call!(app, get("/v1/schemas/orders.order_placed/latest"), other);
    assert_eq!(theirs["schema"], simple(), "{theirs}");

    // A type's rule is a setting of its own, recorded once.
    let put = |path: &str| test::TestRequest::put().uri(path);
    let before = registry_version(&store, "acme").await;
    for changed in [true, false] {
        let (status, body) = call!(
            app,
            put("/v1/schemas/orders.order_placed/compatibility")
                .set_json(json!({"compatibility": "full"})),
            writer
        );
        assert_eq!(
            (status, body["changed"].as_bool()),
            (200, Some(changed)),
            "{body}"
        );
    }
    assert_eq!(registry_version(&store, "acme").await, before + 1);
    let (_, shown) = call!(app, get("/v1/schemas/orders.order_placed/latest"), writer);
    assert_eq!(shown["compatibility"], "full", "{shown}");
    let (status, body) = call!(
        app,
        put("/v1/schemas/orders.unknown/compatibility").set_json(json!({"compatibility": "none"})),
        writer
    );
    assert_eq!((status, problem_type(&body)), (404, "not-found"), "{body}");
    let (status, body) = call!(
        app,
        put("/v1/schemas/orders.order_placed/compatibility")
            .set_json(json!({"compatibility": "none"})),
        publisher
    );
    assert_eq!((status, problem_type(&body)), (403, "forbidden"), "{body}");

    // Built-in types are listed beside the registered ones.
    let (_, list) = call!(app, get("/v1/schemas"), writer);
    let origins: Vec<(String, String)> = list["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["origin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(origins.contains(&("tickets.ticket_opened".into(), "builtin".into())));
    assert!(origins.contains(&("orders.order_placed".into(), "registered".into())));
    assert!(
        !origins.iter().any(|(t, _)| t == "orders.order_refunded"),
        "a check registers nothing"
    );
}

#[actix_web::test]
async fn a_tenant_registers_at_most_its_limit_of_types() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let state = support::state(store.clone(), support::TEST_LIMITS).await;
    let limit = state.schemas.limits().max_types;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let schema = json!({"type": "object"});
    for i in 0..limit {
        let resp = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/v1/schemas")
                .set_json(json!({"type": format!("bulk.type_{i}"), "schema": schema}))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 201, "type {i}");
    }
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/schemas")
            .set_json(json!({"type": "bulk.one_too_many", "schema": schema}))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(
        body["type"], "urn:herald:problem:schema-limit-reached",
        "{body}"
    );
    assert_eq!(
        registry_version(&store, "default").await,
        limit as u64,
        "the refused type was not stored"
    );
}
