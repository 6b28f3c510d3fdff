//! Bad input to the append endpoint gets a 4xx `application/problem+json`
//! that names the problem, and changes nothing in the store.

mod support;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api::{self, Limits};
use herald_events::{Position, StreamId, StreamVersion, TenantId};
use herald_store::ExpectedVersion;
use serde_json::{json, Value};

const LIMITS: Limits = Limits {
    max_body_bytes: 4096,
    max_events_per_append: 3,
    body_timeout: herald::config::DEFAULT_BODY_TIMEOUT,
};

fn opened() -> Value {
    json!({"type": "tickets.ticket_opened", "version": 1,
           "payload": {"kind": "outage", "customer": "acme", "edge": "E-1", "description": "down"}})
}

struct Case {
    name: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    problem: &'static str,
    /// Words the detail must contain, to show it names the problem.
    mentions: &'static [&'static str],
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    problem: &'static str,
    mentions: &'static [&'static str],
) -> Case {
    Case {
        name,
        path: "/v1/streams/tickets/T-1/events".into(),
        content_type: Some("application/json"),
        body: body.into(),
        status,
        problem,
        mentions,
    }
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn cases() -> Vec<Case> {
    let with_payload = |payload: Value| {
        let mut e = opened();
        e["payload"] = payload;
        body(json!({"events": [e]}))
    };
    let not_object = with_payload(json!(["outage"]));
    let violation = with_payload(json!({"kind": "outage", "description": "x"}));
    let wrong_field_type =
        with_payload(json!({"kind": "outage", "customer": 42, "description": "x"}));
    let nul = with_payload(json!({"kind": "outage", "customer": "a\u{0}b", "description": "x"}));
    let mut unknown_type = opened();
    unknown_type["type"] = json!("tickets.ticket_exploded");
    let mut bad_type_name = opened();
    bad_type_name["type"] = json!("Tickets");
    let mut unknown_version = opened();
    unknown_version["version"] = json!(7);
    let mut zero_version = opened();
    zero_version["version"] = json!(0);
    let mut other_domain = opened();
    other_domain["type"] = json!("edges.edge_registered");

    let mut invalid_utf8 = br#"{"events": [{"type": "tickets.ticket_opened", "version": 1, "payload": {"kind": "outage", "customer": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#"", "description": "x"}}]}"#);

    let mut over_long = case(
        "over-long stream id",
        body(json!({"events": [opened()]})),
        400,
        "invalid-stream-id",
        &["stream id", "128"],
    );
    over_long.path = format!("/v1/streams/tickets/{}/events", "x".repeat(129));
    let mut bad_stream_chars = case(
        "stream id with a space",
        body(json!({"events": [opened()]})),
        400,
        "invalid-stream-id",
        &["stream id"],
    );
    bad_stream_chars.path = "/v1/streams/tickets/a%20b/events".into();
    let mut bad_domain = case(
        "malformed domain",
        body(json!({"events": [opened()]})),
        400,
        "invalid-stream-id",
        &["domain"],
    );
    bad_domain.path = "/v1/streams/Tickets/T-1/events".into();
    let mut text_plain = case(
        "not JSON by media type",
        body(json!({"events": [opened()]})),
        415,
        "unsupported-media-type",
        &["text/plain"],
    );
    text_plain.content_type = Some("text/plain");

    vec![
        case(
            "invalid JSON",
            &b"{\"events\": [ {"[..],
            400,
            "invalid-json",
            &["line 1"],
        ),
        case(
            "trailing garbage",
            &b"{\"events\": []} x"[..],
            400,
            "invalid-json",
            &["trailing"],
        ),
        case(
            "invalid UTF-8",
            invalid_utf8,
            400,
            "invalid-utf8",
            &["UTF-8"],
        ),
        case(
            "not an object",
            &b"[1, 2]"[..],
            422,
            "invalid-request",
            &["expected"],
        ),
        case(
            "missing events",
            body(json!({"expected_version": 0})),
            422,
            "invalid-request",
            &["events"],
        ),
        case(
            "unknown field",
            body(json!({"events": [opened()], "expect": 1})),
            422,
            "invalid-request",
            &["expect"],
        ),
        case(
            "negative expected version",
            body(json!({"expected_version": -1, "events": [opened()]})),
            422,
            "invalid-request",
            &["-1"],
        ),
        case(
            "no events",
            body(json!({"events": []})),
            422,
            "invalid-append",
            &["at least one"],
        ),
        case(
            "too many events",
            body(json!({"events": [opened(), opened(), opened(), opened()]})),
            422,
            "too-many-events",
            &["limit is 3"],
        ),
        case(
            "non-object payload",
            not_object,
            422,
            "payload-not-object",
            &["JSON object"],
        ),
        case(
            "schema violation",
            violation,
            422,
            "schema-violation",
            &["customer"],
        ),
        case(
            "wrongly typed field",
            wrong_field_type,
            422,
            "schema-violation",
            &["/customer"],
        ),
        case(
            "NUL in payload",
            nul,
            422,
            "invalid-append",
            &["U+0000", "/customer"],
        ),
        case(
            "unknown event type",
            body(json!({"events": [unknown_type]})),
            422,
            "unknown-event-type",
            &["tickets.ticket_exploded"],
        ),
        case(
            "malformed event type",
            body(json!({"events": [bad_type_name]})),
            422,
            "unknown-event-type",
            &["Tickets"],
        ),
        case(
            "unknown version",
            body(json!({"events": [unknown_version]})),
            422,
            "unknown-schema-version",
            &["version 7"],
        ),
        case(
            "version zero",
            body(json!({"events": [zero_version]})),
            422,
            "unknown-schema-version",
            &["start at 1"],
        ),
        case(
            "event of another domain",
            body(json!({"events": [other_domain]})),
            422,
            "invalid-append",
            &["edges.edge_registered", "tickets"],
        ),
        case(
            "body over the limit",
            body(
                json!({"events": [{"type": "tickets.ticket_opened", "version": 1,
            "payload": {"kind": "outage", "customer": "x".repeat(5000), "description": "x"}}]}),
            ),
            413,
            "body-too-large",
            &["4096"],
        ),
        case(
            "wrong expected version",
            body(json!({"expected_version": 5, "events": [opened()]})),
            409,
            "wrong-expected-version",
            &["version 1", "version 5"],
        ),
        over_long,
        bad_stream_chars,
        bad_domain,
        text_plain,
    ]
}

#[actix_web::test]
async fn every_bad_input_gets_a_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = support::embedded_state(dir.path(), LIMITS).await;
    let store = state.store.clone();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    // One event already there, so "wrong expected version" has something to conflict with.
    let stream: StreamId = "tickets/T-1".parse().unwrap();
    let tenant = TenantId::default_tenant();
    store
        .append(
            &tenant,
            &stream,
            ExpectedVersion::Any,
            vec![herald_events::NewEvent::new(
                "tickets.ticket_opened".parse().unwrap(),
                herald_events::SchemaVersion::V1,
                json!({"kind": "other", "customer": "c", "description": "seed"}),
            )],
        )
        .await
        .unwrap();
    let before = store.read_all(Position(0), 100).await.unwrap();

    for c in cases() {
        let mut req = test::TestRequest::post()
            .uri(&c.path)
            .set_payload(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.insert_header(("content-type", ct));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let problem: Value = serde_json::from_slice(&test::read_body(resp).await)
            .unwrap_or_else(|e| panic!("{}: the answer is not JSON: {e}", c.name));
        assert_eq!(
            status,
            StatusCode::from_u16(c.status).unwrap(),
            "{}: {problem}",
            c.name
        );
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{}",
            c.name
        );
        assert_eq!(
            problem["type"],
            format!("urn:herald:problem:{}", c.problem),
            "{}: {problem}",
            c.name
        );
        assert_eq!(problem["status"], c.status, "{}", c.name);
        let detail = problem["detail"].as_str().unwrap_or_default();
        for word in c.mentions {
            assert!(
                detail.contains(word),
                "{}: detail {detail:?} does not mention {word:?}",
                c.name
            );
        }
    }

    let after = store.read_all(Position(0), 100).await.unwrap();
    assert_eq!(after, before, "a refused request changed the store");
    assert_eq!(
        store.stream_version(&tenant, &stream).await.unwrap(),
        StreamVersion(1)
    );
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    let state = support::embedded_state(dir.path(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/v2/nothing").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let problem: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:not-found");
    let resp = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/v1/streams/tickets/T-1/events")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/events?limit=abc")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let problem: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:invalid-query");
}
