//! `GET /openapi.json` documents exactly the routes Herald serves, and
//! what they answer. `herald::api::ROUTES` is the one list of (method,
//! path): its paths must be the app's resource patterns, and probing every
//! method on each shows that the listed routes are served (routed to their
//! own resource, neither the catch-all 404 nor a 405) and no others, so the
//! list cannot drift from `routes()`; the document's operations must then
//! equal the list. Every
//! operation has a success and problem+json errors, every `$ref` resolves,
//! the command routes' `domain` enum is what `herald serve` runs, and real
//! answers (successes and problems) fit the responses documented for their
//! status.

mod support;

use support::openapi::{fits, resolve};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::{test, web, App};
use herald::api::{self, ROUTES};
use herald::config::ActorSettings;
use herald_actors::GroupConfig;
use herald_brokers::Broker;
use herald_events::EventRegistry;
use herald_events::{EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::ExpectedVersion;
use serde_json::{json, Value};

/// The header the test's middleware sets to the route pattern a request
/// matched (none for the catch-all).
const MATCHED: &str = "x-test-matched-route";
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Operational routes: no credentials, no input, so no 4xx to document.
const OPERATIONAL: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// A request path for a route template.
fn sample(template: &str) -> String {
    template
        .replace("{domain}", "tickets")
        .replace("{id}", "T-1")
        .replace("{command}", "open")
}

/// An answer, read whole unless it is an endless event stream.
struct Answer {
    status: u16,
    matched: Option<String>,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The app's catch-all: no route matched.
    fn is_catch_all(&self) -> bool {
        let body = self.json();
        self.status == 404
            && body["type"] == "urn:herald:problem:not-found"
            && body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no resource at"))
    }

    fn is_method_not_allowed(&self) -> bool {
        self.status == 405 && self.json()["type"] == "urn:herald:problem:method-not-allowed"
    }
}

async fn answer(response: ServiceResponse) -> Answer {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let matched = header(MATCHED);
    let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
    let body = if content_type.starts_with("text/event-stream") || status == 101 {
        Vec::new()
    } else {
        test::read_body(response).await.to_vec()
    };
    Answer {
        status,
        matched,
        content_type,
        body,
    }
}

/// Every `$ref` anywhere in `node`.
fn refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The documented response of an operation for a status (through `$ref`).
fn documented<'a>(doc: &'a Value, method: &str, template: &str, status: u16) -> &'a Value {
    let operation = &doc["paths"][template][method.to_ascii_lowercase()];
    let response = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| {
            panic!("{method} {template} answered {status}, which is not documented")
        });
    resolve(doc, response)
}

/// Checks a real answer against the response documented for its status:
/// the media type is documented, and a JSON body fits its schema.
fn check(doc: &Value, method: &str, template: &str, answer: &Answer) {
    let response = documented(doc, method, template, answer.status);
    let what = format!("{method} {template} {}", answer.status);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            answer.body.is_empty(),
            "{what}: a body where none is documented"
        );
        return;
    };
    let media = answer.content_type.split(';').next().unwrap_or("").trim();
    let (_, documented) = content
        .iter()
        .find(|(k, _)| k.split(';').next().unwrap_or("").trim() == media)
        .unwrap_or_else(|| panic!("{what}: {media:?} is not documented ({content:?})"));
    if media == "application/x-ndjson" {
        // JSON lines: every line a JSON value.
        for line in answer.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<Value>(line)
                .unwrap_or_else(|e| panic!("{what}: a line is not JSON: {e}"));
        }
    } else if media.ends_with("json") {
        let body: Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
        let schema = documented
            .get("schema")
            .unwrap_or_else(|| panic!("{what}: no schema"));
        if let Err(e) = fits(doc, schema, &body, "body") {
            panic!("{what}: the answer does not fit its documented schema: {e}\n{body:#}");
        }
    }
}

#[actix_web::test]
async fn openapi_covers_every_endpoint() {
    // On Postgres, with every read model projected, as `herald serve` runs
    // there: the read-model routes answer for real.
    let db = herald_testkit::TestDatabase::create().await;
    let (mut state, runner, _stop_projections) =
        support::postgres_state_with_projections(&db, herald_projections::read_models::all()).await;
    let store = Arc::clone(&state.store);
    let registry = EventRegistry::builtin().unwrap();
    let broker: Arc<dyn Broker> = Arc::new(herald_brokers::memory::MemoryBroker::default());
    // The domains exactly as `herald serve` starts them.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let settings = ActorSettings {
        group: GroupConfig::default(),
        threads: 2,
        outage_recheck: Duration::from_secs(60),
    };
    let running = herald::domains::start(
        &settings,
        &store,
        &registry,
        &broker,
        &Default::default(),
        stopped,
    )
    .await;
    state.domains = running.domains.clone();
    state.broker = Arc::clone(&broker);
    // The app as the in-process tests build it, plus a middleware that names the
    // route each request matched and keeps the app's resource map.
    let resource_map: Arc<Mutex<String>> = Arc::default();
    let seen = Arc::clone(&resource_map);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .wrap_fn(move |req, srv| {
                seen.lock()
                    .unwrap()
                    .replace_range(.., &format!("{:?}", req.request().resource_map()));
                let matched = req.match_pattern();
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    if let Some(pattern) = matched {
                        response.headers_mut().insert(
                            HeaderName::from_static(MATCHED),
                            HeaderValue::from_str(&pattern).unwrap(),
                        );
                    }
                    Ok(response)
                }
            })
            .configure(api::routes),
    )
    .await;
    let call = |method: &str, path: &str, body: Option<Value>| {
        let mut request = test::TestRequest::default()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(body) = body {
            request = request.set_json(body);
        }
        let request = request.to_request();
        let app = &app;
        async move { answer(test::call_service(app, request).await).await }
    };

    // The document.
    let served = call("GET", "/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.content_type, "application/json");
    let doc: Value = serde_json::from_slice(&served.body).expect("the document is JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert_eq!(doc["info"]["title"], "Herald");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The list has no repeats, and is what the app serves. Its paths are
    // the app's resource patterns; each method on each of them is served
    // (routed to that very resource, answered neither by the catch-all nor
    // with a 405) exactly when the list names it.
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(listed.len(), ROUTES.len(), "ROUTES repeats a route");
    let templates: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    let registered = patterns(&resource_map.lock().unwrap());
    assert_eq!(
        registered
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        templates,
        "the app's resource patterns are the paths of ROUTES"
    );
    let mut served = BTreeSet::new();
    for template in &templates {
        for method in METHODS {
            let body = matches!(*method, "POST" | "PUT" | "PATCH").then(|| json!({}));
            let got = call(method, &sample(template), body).await;
            if got.is_catch_all() || got.is_method_not_allowed() {
                continue;
            }
            assert_eq!(
                got.matched.as_deref(),
                Some(*template),
                "{method} {template} is routed elsewhere"
            );
            assert!(
                listed.contains(&(method.to_string(), template.to_string())),
                "{method} {template} is served ({}) but not listed in ROUTES",
                got.status
            );
            check(&doc, method, template, &got);
            served.insert((method.to_string(), template.to_string()));
        }
    }
    assert_eq!(served, listed, "every route in ROUTES is served");
    // Paths beside them get the catch-all.
    for path in [
        "/",
        "/nope",
        "/v1",
        "/v1/",
        "/v1/tickets",
        "/v2/events",
        "/healthz/x",
        "/openapi.yaml",
        "/v1/openapi.json",
        "/v1/streams/tickets/T-1/events/x",
        "/v1/tickets/T-1/open/x",
    ] {
        for method in ["GET", "POST"] {
            let got = call(method, path, None).await;
            assert!(
                got.is_catch_all() && got.matched.is_none(),
                "{method} {path} is served ({})",
                got.status
            );
            check_problem(&doc, &got);
        }
    }

    // The document's operations are exactly the list.
    let mut operations: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.to_ascii_uppercase().as_str()) || method == "trace" {
                operations.insert((method.to_ascii_uppercase(), path.clone()), operation);
            }
        }
    }
    let documented_routes: BTreeSet<(String, String)> = operations.keys().cloned().collect();
    assert_eq!(
        documented_routes,
        listed,
        "documented but not served: {:?}; served but not documented: {:?}",
        documented_routes.difference(&listed).collect::<Vec<_>>(),
        listed.difference(&documented_routes).collect::<Vec<_>>()
    );

    // Every operation: a unique id, a known tag, its path's parameters, a
    // success, problem+json errors (4xx ones unless operational), and
    // bearer security exactly when it can answer 401.
    let tags = [
        "streams",
        "events",
        "commands",
        "search",
        "schemas",
        "automations",
        "personal data",
        "subscriptions",
        "views",
        "projections",
        "audit",
        "admin",
        "keys",
        "console",
        "countdowns",
    ];
    let mut ids = BTreeSet::new();
    for ((method, path), operation) in &operations {
        let what = format!("{method} {path}");
        let id = operation["operationId"].as_str().expect("an operationId");
        assert!(
            ids.insert(id.to_owned()),
            "{what}: operationId {id} repeats"
        );
        let op_tags = operation["tags"].as_array().expect("tags");
        assert!(
            !op_tags.is_empty() && op_tags.iter().all(|t| tags.contains(&t.as_str().unwrap())),
            "{what}: tags {op_tags:?}"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: no summary"
        );
        let in_path: BTreeSet<&str> = path
            .split('/')
            // A parameter may be followed by a suffix (`{image}.gif`).
            .filter_map(|s| Some(s.strip_prefix('{')?.split_once('}')?.0))
            .collect();
        let params: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{what}: path parameter {p}");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(params, in_path, "{what}: path parameters");

        let responses = operation["responses"].as_object().expect("responses");
        let statuses: Vec<u16> = responses.keys().map(|s| s.parse().unwrap()).collect();
        let success = |s: &u16| (200..300).contains(s) || (*s == 101 && path == "/v1/subscribe");
        assert!(statuses.iter().any(success), "{what}: no success response");
        for (status, response) in responses {
            let status: u16 = status.parse().unwrap();
            let response = resolve(&doc, response);
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status}: no description"
            );
            if status >= 400 {
                let content = response["content"].as_object().expect("error content");
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{what} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{what} {status}"
                );
            }
        }
        if !OPERATIONAL.contains(&path.as_str()) {
            assert!(
                statuses.iter().any(|s| (400..500).contains(s)),
                "{what}: no 4xx problem response"
            );
        }
        let bearer = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        // The console's sign-in takes its credential in the body, and
        // answers 401 when it is refused.
        let credential_in_body = what == "POST /v1/console/session";
        assert_eq!(
            bearer,
            statuses.contains(&401) && !credential_in_body,
            "{what}: bearer security exactly when it answers 401"
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );

    // Every $ref resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in &all {
        resolve(&doc, &json!({ "$ref": reference }));
    }

    // The command routes' domains are the ones `herald serve` runs.
    let domains: BTreeSet<&str> = doc["components"]["schemas"]["CommandDomain"]["enum"]
        .as_array()
        .expect("the domain enum")
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let running_domains: BTreeSet<&str> = running.domains.names().collect();
    assert_eq!(domains, running_domains, "update api::openapi::DOMAINS");
    for (method, path) in [
        ("POST", "/v1/{domain}/{id}/{command}"),
        ("GET", "/v1/{domain}/{id}"),
    ] {
        let operation = operations[&(method.to_owned(), path.to_owned())];
        let domain = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "domain")
            .unwrap();
        assert_eq!(
            domain["schema"]["$ref"],
            "#/components/schemas/CommandDomain"
        );
        let described = format!("{} {}", operation["description"], domain["description"]);
        assert!(
            described.contains("Domains and commands"),
            "{method} {path} says where command bodies are documented"
        );
    }
    for path in ["/v1/subscribe", "/v1/events/stream"] {
        let described = operations[&("GET".to_owned(), path.to_owned())]["description"]
            .as_str()
            .unwrap();
        assert!(described.contains("docs/websocket.md"), "{path}");
    }

    // Real answers fit what is documented for their status, and every
    // route answers a success.
    let opened = json!({"type": "tickets.ticket_opened", "version": 1,
        "payload": {"kind": "outage", "customer": "acme", "edge": "E-1", "description": "down"}});
    let published = |stream: &str, key: &str| {
        json!({"stream": stream, "type": "tickets.ticket_opened", "version": 1, "idempotency_key": key,
               "payload": {"kind": "other", "customer": "acme", "description": "slow"}})
    };
    let upgrade = test::TestRequest::get()
        .uri("/v1/subscribe")
        .insert_header(("upgrade", "websocket"))
        .insert_header(("connection", "Upgrade"))
        .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .insert_header(("sec-websocket-version", "13"))
        .insert_header(("sec-websocket-protocol", "herald.v1"))
        .to_request();
    let upgraded = answer(test::call_service(&app, upgrade).await).await;
    let mut successes: Vec<(&str, &str, Answer)> = vec![("GET", "/v1/subscribe", upgraded)];
    let first = call("GET", "/v1/events/search?limit=1", None).await;
    let first_id = first.json()["events"][0]["id"]
        .as_str()
        .expect("an event to show")
        .to_owned();
    for (method, template, path, body) in [
        ("GET", "/healthz", "/healthz".to_owned(), None),
        ("GET", "/readyz", "/readyz".to_owned(), None),
        ("GET", "/metrics", "/metrics".to_owned(), None),
        ("GET", "/openapi.json", "/openapi.json".to_owned(), None),
        (
            "POST",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-9/events".to_owned(),
            Some(json!({"expected_version": 0, "events": [opened.clone()]})),
        ),
        (
            "GET",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-9/events".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/events/stream",
            "/v1/events/stream?from=start&type=tickets.*".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/events/search",
            "/v1/events/search?type=tickets.*&payload.edge=E-1".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/events",
            "/v1/events?from=0&limit=10".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/events",
            "/v1/events".to_owned(),
            Some(published("tickets/T-10", "k-1")),
        ),
        (
            "POST",
            "/v1/events",
            "/v1/events".to_owned(),
            Some(json!({"events": [published("tickets/T-11", "k-2"), {"stream": "tickets/T-12"}]})),
        ),
        (
            "POST",
            "/v1/{domain}/{id}/{command}",
            "/v1/tickets/T-20/open".to_owned(),
            Some(json!({"kind": "other", "customer": "acme", "description": "slow link"})),
        ),
        (
            "GET",
            "/v1/{domain}/{id}",
            "/v1/tickets/T-20".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/streams/{domain}/{id}",
            "/v1/streams/tickets/T-20?at=2100-01-01T00:00:00Z".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/schemas/check",
            "/v1/schemas/check".to_owned(),
            Some(json!({"type": "orders.order_placed", "schema": {"type": "object"}})),
        ),
        (
            "POST",
            "/v1/schemas",
            "/v1/schemas".to_owned(),
            Some(json!({"type": "orders.order_placed", "schema": {"type": "object"}})),
        ),
        ("GET", "/v1/schemas", "/v1/schemas".to_owned(), None),
        (
            "GET",
            "/v1/schemas/{type}/{version}",
            "/v1/schemas/orders.order_placed/1".to_owned(),
            None,
        ),
        (
            "PUT",
            "/v1/schemas/{type}/compatibility",
            "/v1/schemas/orders.order_placed/compatibility".to_owned(),
            Some(json!({"compatibility": "full"})),
        ),
        (
            "POST",
            "/v1/schemas/{type}/{version}/deprecate",
            "/v1/schemas/orders.order_placed/1/deprecate".to_owned(),
            Some(json!({"reason": "a test"})),
        ),
    ] {
        let got = call(method, &path, body).await;
        successes.push((method, template, got));
    }

    // One of each read model's rows, and an event the tickets projection
    // cannot apply (appended past the schema check, as only a bug could).
    let append = |stream: &str, event_type: &str, payload: Value| {
        let store = Arc::clone(&store);
        let stream: StreamId = stream.parse().unwrap();
        let event_type: EventType = event_type.parse().unwrap();
        async move {
            store
                .append(
                    &TenantId::default_tenant(),
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(event_type, SchemaVersion::V1, payload)],
                )
                .await
                .unwrap()
        }
    };
    append(
        "edges/E-1",
        "edges.edge_registered",
        json!({"customer": "acme", "serial": "SN1", "site": "lab"}),
    )
    .await;
    append("timers/TM-1", "timers.timer_scheduled", json!({"due_at": "2030-01-01T00:00:00Z",
        "deliver": {"kind": "event", "domain": "tickets", "stream_id": "T-9", "name": "note_appended", "body": {"note": "x"}}})).await;
    append(
        "timers/CD-1",
        "timers.countdown_created",
        json!({"deadline": "2030-01-01T00:00:00Z", "label": "launch"}),
    )
    .await;
    append(
        "drafts/D-1",
        "drafts.draft_created",
        json!({"title": "Doc", "document": {"a": 1}}),
    )
    .await;
    append(
        "statistics/S-1",
        "statistics.session_started",
        json!({"editor": "ed", "started_at": "2026-11-30T06:00:00Z"}),
    )
    .await;
    // A dead-lettered webhook delivery of the automation `probe`, to retry.
    let delivery = "0194f1d2-0000-7000-8000-000000000001";
    append(
        "automations/probe",
        "automations.webhook_requested",
        json!({"automation": "probe", "version": 1, "trigger_event": delivery, "action": "actions[0]",
               "delivery_id": delivery, "url": "http://example.com/hook", "body": {}, "timeout_ms": 1000,
               "retry_for_secs": 60, "order_key": "tickets/T-9"}),
    )
    .await;
    append(
        "automations/probe",
        "automations.delivery_dead_lettered",
        json!({"automation": "probe", "delivery_id": delivery, "attempts": 3, "last_status": 500, "error": "answered 500"}),
    )
    .await;
    let poison = append("tickets/T-9", "tickets.note_appended", json!({"note": 5})).await;
    let poison_position = poison.events[0].position.get();
    support::caught_up(&runner, Duration::from_secs(60)).await;
    for (method, template, path, body) in [
        ("GET", "/v1/projections", "/v1/projections".to_owned(), None),
        (
            "GET",
            "/v1/projections/{name}",
            "/v1/projections/tickets".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/tickets",
            "/v1/views/tickets?status=open&sort=updated_at&order=desc".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/tickets/{id}",
            "/v1/views/tickets/T-9".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/edges",
            "/v1/views/edges?customer=acme".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/edges/{id}",
            "/v1/views/edges/E-1".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/timers",
            "/v1/views/timers?status=pending".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/timers/{id}",
            "/v1/views/timers/TM-1".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/countdowns",
            "/v1/views/countdowns".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/countdowns/{id}",
            "/v1/views/countdowns/CD-1".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/drafts",
            "/v1/views/drafts".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/drafts/{id}",
            "/v1/views/drafts/D-1?version=1".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/drafts/{id}/versions",
            "/v1/views/drafts/D-1/versions".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/statistics",
            "/v1/views/statistics?from=2026-11-01&to=2026-11-30&group_by=day,customer".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/views/streams",
            "/v1/views/streams?domain=tickets,timers&sort=last_event_at&order=desc".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/audit/verify",
            "/v1/audit/verify?from=1".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/projections/{name}/rebuild",
            "/v1/projections/drafts/rebuild".to_owned(),
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/automations",
            "/v1/automations".to_owned(),
            Some(
                json!({"name": "probe", "trigger": {"event": {"types": ["tickets.*"]}},
                        "when": "event.payload.kind == 'other'",
                        "actions": [{"webhook": {"url": "http://example.com/hook"}}]}),
            ),
        ),
        ("GET", "/v1/automations", "/v1/automations".to_owned(), None),
        (
            "GET",
            "/v1/automations/schema",
            "/v1/automations/schema".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/automations/dry-run",
            "/v1/automations/dry-run".to_owned(),
            Some(json!({"name": "probe", "limit": 10})),
        ),
        (
            "GET",
            "/v1/automations/{name}",
            "/v1/automations/probe".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/automations/{name}/disable",
            "/v1/automations/probe/disable".to_owned(),
            Some(json!({"reason": "a probe"})),
        ),
        (
            "POST",
            "/v1/automations/{name}/enable",
            "/v1/automations/probe/enable".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/automations/{name}/deliveries",
            "/v1/automations/probe/deliveries".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/automations/{name}/deliveries/{delivery}/retry",
            format!("/v1/automations/probe/deliveries/{delivery}/retry"),
            None,
        ),
        (
            "DELETE",
            "/v1/automations/{name}",
            "/v1/automations/probe".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/subjects/{subject}/events",
            "/v1/subjects/cust-probe/events".to_owned(),
            None,
        ),
        (
            "POST",
            "/v1/personal/reveal",
            "/v1/personal/reveal".to_owned(),
            Some(json!({"note": "plain"})),
        ),
        (
            "POST",
            "/v1/subjects/{subject}/forget",
            "/v1/subjects/cust-probe/forget".to_owned(),
            Some(json!({"reason": "a probe"})),
        ),
        (
            "GET",
            "/v1/events/{event_id}",
            format!("/v1/events/{first_id}"),
            None,
        ),
        (
            "GET",
            "/v1/events/export",
            "/v1/events/export?format=csv&domain=tickets".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/console/overview",
            "/v1/console/overview".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/console/session",
            "/v1/console/session".to_owned(),
            None,
        ),
        (
            "DELETE",
            "/v1/console/session",
            "/v1/console/session".to_owned(),
            None,
        ),
        ("GET", "/v1/keys", "/v1/keys".to_owned(), None),
        (
            "GET",
            "/v1/audit/anchor",
            "/v1/audit/anchor".to_owned(),
            None,
        ),
    ] {
        let got = call(method, &path, body).await;
        successes.push((method, template, got));
    }
    // A countdown's image URL (created at version 1: read upcast), its
    // image, and its revocation.
    let issued = call("POST", "/v1/countdowns/CD-1/image_url", Some(json!({}))).await;
    let image_path = issued.json()["image_path"]
        .as_str()
        .expect("an image path")
        .to_owned();
    successes.push(("POST", "/v1/countdowns/{id}/image_url", issued));
    let image = call("GET", &image_path, None).await;
    assert!(image.body.starts_with(b"GIF89a"), "{}", image.status);
    successes.push(("GET", "/v1/countdowns/{image}.gif", image));
    let revoked = call("DELETE", "/v1/countdowns/CD-1/image_url", None).await;
    successes.push(("DELETE", "/v1/countdowns/{id}/image_url", revoked));
    // A verification run, then its progress.
    let run = call("POST", "/v1/audit/verify/runs", Some(json!({"from": 1}))).await;
    let run_id = run.json()["id"].as_str().expect("a run id").to_owned();
    successes.push(("POST", "/v1/audit/verify/runs", run));
    let shown = call("GET", &format!("/v1/audit/verify/runs/{run_id}"), None).await;
    successes.push(("GET", "/v1/audit/verify/runs/{run}", shown));
    // The parked event is listed, and a retry that fails again (the payload
    // stays wrong) answers its documented 422: the one route with no success
    // to show here.
    let parked = call("GET", "/v1/projections/tickets", None).await;
    let parked: Value = serde_json::from_slice(&parked.body).unwrap();
    assert_eq!(
        parked["parked_events"][0]["position"], poison_position,
        "{parked}"
    );
    let retry_template = "/v1/projections/{name}/parked/{position}/retry";
    let retried = call(
        "POST",
        &format!("/v1/projections/tickets/parked/{poison_position}/retry"),
        Some(json!({})),
    )
    .await;
    assert_eq!(retried.status, 422);
    check(&doc, "POST", retry_template, &retried);
    let mut listed = listed.clone();
    listed.remove(&("POST".to_owned(), retry_template.to_owned()));
    // Creating a key ends anonymous access: those routes are shown last.
    const WITH_A_KEY: [(&str, &str); 3] = [
        ("POST", "/v1/keys"),
        ("POST", "/v1/console/session"),
        ("POST", "/v1/keys/{key_id}/revoke"),
    ];
    for (method, template) in WITH_A_KEY {
        listed.remove(&(method.to_owned(), template.to_owned()));
    }
    let mut succeeded = BTreeSet::new();
    for (method, template, got) in &successes {
        check(&doc, method, template, got);
        if (200..300).contains(&got.status) || got.status == 101 {
            succeeded.insert((method.to_string(), template.to_string()));
        }
    }
    assert_eq!(
        succeeded,
        listed,
        "every route answers a success: {:?}",
        successes
            .iter()
            .map(|(m, t, a)| (
                m,
                t,
                a.status,
                String::from_utf8_lossy(&a.body).into_owned()
            ))
            .collect::<Vec<_>>()
    );
    let statuses: Vec<u16> = successes.iter().map(|(_, _, a)| a.status).collect();
    assert!(
        statuses.contains(&207),
        "a batch with a failing event: {statuses:?}"
    );
    // The hand-written envelope schema is checked on a real event.
    let page = successes
        .iter()
        .find(|(m, t, _)| *m == "GET" && *t == "/v1/streams/{domain}/{id}/events")
        .unwrap();
    assert_eq!(page.2.json()["events"].as_array().map(Vec::len), Some(1));

    // Errors fit the Problem schema and their documented statuses.
    for (method, template, path, body) in [
        (
            "GET",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-404/events",
            None,
        ),
        (
            "GET",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-9/events?limit=0",
            None,
        ),
        (
            "POST",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-9/events",
            Some(json!({"expected_version": 0, "events": [opened.clone()]})),
        ),
        (
            "POST",
            "/v1/streams/{domain}/{id}/events",
            "/v1/streams/tickets/T-9/events",
            Some(
                json!({"events": [{"type": "tickets.ticket_opened", "version": 1, "payload": {}}]}),
            ),
        ),
        (
            "GET",
            "/v1/events/search",
            "/v1/events/search?bogus=1",
            None,
        ),
        (
            "GET",
            "/v1/events/stream",
            "/v1/events/stream?from=nonsense",
            None,
        ),
        ("GET", "/v1/events", "/v1/events?limit=5000", None),
        (
            "POST",
            "/v1/events",
            "/v1/events",
            Some(
                json!({"events": [published("tickets/T-13", "k-3"), {"stream": "tickets/T-14"}], "atomic": true}),
            ),
        ),
        (
            "POST",
            "/v1/{domain}/{id}/{command}",
            "/v1/tickets/T-20/open",
            Some(json!({"kind": "other", "customer": "acme", "description": "again"})),
        ),
        (
            "POST",
            "/v1/{domain}/{id}/{command}",
            "/v1/tickets/T-20/explode",
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/{domain}/{id}/{command}",
            "/v1/nodomain/T-20/open",
            Some(json!({})),
        ),
        ("GET", "/v1/{domain}/{id}", "/v1/tickets/T-404", None),
    ] {
        let got = call(method, path, body).await;
        assert!(got.status >= 400, "{method} {path}: {}", got.status);
        assert_eq!(got.content_type, "application/problem+json");
        check(&doc, method, template, &got);
        check_problem(&doc, &got);
    }

    // Keys and the console's sign-in, last: a key ends anonymous access.
    let created = call(
        "POST",
        "/v1/keys",
        Some(json!({"scopes": ["admin"], "label": "probe"})),
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    check(&doc, "POST", "/v1/keys", &created);
    let key = created.json()["key"].as_str().unwrap().to_owned();
    let key_id = created.json()["record"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let anonymous = call("GET", "/v1/keys", None).await;
    assert_eq!(anonymous.status, 401, "a key ends anonymous access at once");
    let signed_in = call(
        "POST",
        "/v1/console/session",
        Some(json!({"credential": key})),
    )
    .await;
    assert_eq!(signed_in.status, 200);
    check(&doc, "POST", "/v1/console/session", &signed_in);
    let revoke = test::TestRequest::post()
        .uri(&format!("/v1/keys/{key_id}/revoke"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .to_request();
    let revoked = answer(test::call_service(&app, revoke).await).await;
    assert_eq!(revoked.status, 200);
    check(&doc, "POST", "/v1/keys/{key_id}/revoke", &revoked);
    assert!(revoked.json()["revoked_at"].is_string());

    let _ = stop.send(true);
    running.stop().await;
}

/// The full path patterns of the app's resources (a scope's prefix joined
/// to its resources'), from the `Debug` form of its resource map (actix-web
/// has no other way to list them); the test fails loudly if that form
/// changes.
fn patterns(resource_map: &str) -> BTreeSet<String> {
    const NODE: &str = "ResourceMap {";
    const MARK: &str = "patterns: Single(\"";
    assert!(
        resource_map.contains(MARK) && !resource_map.contains("patterns: List("),
        "cannot read the resource map: {resource_map}"
    );
    // The map is a tree (a scope's resources are its children); its Debug
    // text nests them. Walk it with a stack of (brace depth, pattern, has
    // children) and join each leaf's pattern to its ancestors'.
    let mut found = BTreeSet::new();
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut rest = resource_map;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with(NODE) {
            if let Some(parent) = stack.last_mut() {
                parent.2 = true;
            }
            depth += 1;
            stack.push((depth, String::new(), false));
            rest = &rest[NODE.len()..];
        } else if rest.starts_with(MARK) {
            let tail = &rest[MARK.len()..];
            let close = tail.find("\")").expect("a closing quote");
            let node = stack.last_mut().expect("a pattern inside a node");
            if node.1.is_empty() {
                node.1 = tail[..close].to_owned();
            }
            rest = &tail[close + 1..];
        } else if c == '"' {
            // Skip a quoted string: braces inside it are not structure.
            let mut escaped = false;
            let mut end = 1;
            for (i, ch) in rest[1..].char_indices() {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    end = i + 2;
                    break;
                }
            }
            rest = &rest[end..];
        } else {
            if c == '{' {
                depth += 1;
            } else if c == '}' {
                if stack.last().is_some_and(|(d, _, _)| *d == depth) {
                    let (_, own, has_children) = stack.pop().expect("a node");
                    if !has_children {
                        let mut full: String = stack.iter().map(|(_, p, _)| p.as_str()).collect();
                        full.push_str(&own);
                        found.insert(full);
                    }
                }
                depth -= 1;
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    found.retain(|pattern: &String| !pattern.is_empty());
    found
}

/// A problem answer fits the `Problem` schema.
fn check_problem(doc: &Value, got: &Answer) {
    let schema = json!({"$ref": "#/components/schemas/Problem"});
    if let Err(e) = fits(doc, &schema, &got.json(), "problem") {
        panic!("{e}");
    }
}
