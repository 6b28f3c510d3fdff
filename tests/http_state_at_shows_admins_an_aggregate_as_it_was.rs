//! `GET /v1/streams/{domain}/{id}?at=` answers an admin with the
//! aggregate's state at a position or an instant and the events that made
//! it, as `herald replay state` does; any other key gets 403, another
//! tenant 403, a missing or malformed `at` 400, a moment before the first
//! event or an unknown id 404 `aggregate-not-found`, an unknown domain 404.

mod support;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api;
use herald_events::tickets::{NoteAppended, TicketKind, TicketOpened};
use herald_events::{StreamVersion, TenantId, TypedEvent};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion};
use serde_json::Value;
use support::create_key;

macro_rules! get {
    ($app:expr, $uri:expr, $key:expr) => {{
        let req = test::TestRequest::get()
            .uri($uri)
            .insert_header(("authorization", format!("Bearer {}", $key)));
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status();
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, body)
    }};
}

#[actix_web::test]
async fn admins_see_past_states_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let (_, admin) = create_key(&store, "acme", &["admin:*"], None).await;
    let (_, reader) = create_key(&store, "acme", &["read:*", "publish:tickets"], None).await;
    let (_, other_admin) = create_key(&store, "globex", &["admin:*"], None).await;
    let tenant = TenantId::new("acme").unwrap();
    let stream = "tickets/T-7".parse().unwrap();
    let opened = store
        .append(
            &tenant,
            &stream,
            ExpectedVersion::Exact(StreamVersion(0)),
            vec![TicketOpened {
                kind: TicketKind::Other,
                customer: "acme".into(),
                edge: None,
                description: "slow".into(),
                opened_by: None,
            }
            .to_new_event()],
        )
        .await
        .unwrap()
        .events[0]
        .position
        .get();
    let noted = store
        .append(
            &tenant,
            &stream,
            ExpectedVersion::Exact(StreamVersion(1)),
            vec![NoteAppended {
                note: "rebooted".into(),
                author: None,
            }
            .to_new_event()],
        )
        .await
        .unwrap()
        .events[0]
        .position
        .get();
    let first = store
        .read_stream(&tenant, &stream, StreamVersion(1), 1)
        .await
        .unwrap()
        .remove(0);
    let state = support::state(store.clone(), support::TEST_LIMITS).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    // An admin: at each position, at an instant, with a limit on the list.
    let (status, body) = get!(app, &format!("/v1/streams/tickets/T-7?at={opened}"), admin);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["state"]["status"], "open");
    assert_eq!(body["state"]["notes"], 0);
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["events"][0]["type"], "tickets.ticket_opened");
    assert_eq!(body["events"][0]["position"], opened);
    let (status, body) = get!(app, &format!("/v1/streams/tickets/T-7?at={noted}"), admin);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["version"].clone(), body["state"]["notes"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(body["position"], noted);
    let at = herald_events::chain::canonical_time(&first.recorded_at);
    let (status, body) = get!(
        app,
        &format!(
            "/v1/streams/tickets/T-7?at={}&tenant=acme",
            at.replace('+', "%2B")
        ),
        admin
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["version"].as_u64().unwrap() >= 1, "{body}");
    let echoed: chrono::DateTime<chrono::Utc> =
        body["at"]["instant"].as_str().unwrap().parse().unwrap();
    assert_eq!(echoed, first.recorded_at);
    let (status, body) = get!(
        app,
        &format!("/v1/streams/tickets/T-7?at={noted}&limit=1"),
        admin
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(body["events"][0]["type"], "tickets.note_appended");

    // Not an admin, or an admin of another tenant naming this one.
    let (status, body) = get!(app, &format!("/v1/streams/tickets/T-7?at={noted}"), reader);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:forbidden");
    assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");
    let (status, body) = get!(
        app,
        &format!("/v1/streams/tickets/T-7?at={noted}&tenant=acme"),
        other_admin
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // An admin of another tenant sees its own tenant only: nothing there.
    let (status, body) = get!(
        app,
        &format!("/v1/streams/tickets/T-7?at={noted}"),
        other_admin
    );
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:aggregate-not-found");

    // Bad or unanswerable questions.
    for (uri, expected, kind) in [
        ("/v1/streams/tickets/T-7", 400, "invalid-query"),
        ("/v1/streams/tickets/T-7?at=soon", 400, "invalid-query"),
        (
            "/v1/streams/tickets/T-7?at=1&limit=5000",
            400,
            "invalid-query",
        ),
        ("/v1/streams/tickets/T-7?at=1&since=2", 400, "invalid-query"),
        (
            "/v1/streams/tickets/T-404?at=100",
            404,
            "aggregate-not-found",
        ),
        ("/v1/streams/widgets/W-1?at=100", 404, "not-found"),
        (
            "/v1/streams/tickets/T-7?at=2000-01-01T00:00:00Z",
            404,
            "aggregate-not-found",
        ),
    ] {
        let (status, body) = get!(app, uri, admin);
        assert_eq!(status.as_u16(), expected, "{uri}: {body}");
        assert_eq!(
            body["type"],
            format!("urn:herald:problem:{kind}"),
            "{uri}: {body}"
        );
    }
    let (_, body) = get!(app, "/v1/streams/tickets/T-7?at=0", admin);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("its first is at position {opened}")),
        "{body}"
    );
}
