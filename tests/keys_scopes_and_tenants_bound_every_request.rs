//! Every request is bound by its credentials: without them it is refused
//! (once any key exists), a key acts only for its tenant and within its
//! scopes, asking for another tenant is refused, a revoked key stops working
//! at once, and a key past its rate gets 429 with Retry-After.

mod support;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api;
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore};
use serde_json::{json, Value};
use support::create_key;

fn opened(description: &str) -> Value {
    json!({"events": [{"type": "tickets.ticket_opened", "version": 1,
        "payload": {"kind": "other", "customer": "c", "description": description}}]})
}

macro_rules! call {
    ($app:expr, $req:expr, $key:expr) => {{
        let mut req = $req;
        if let Some(key) = $key {
            req = req.insert_header(("authorization", format!("Bearer {key}")));
        }
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, headers, body)
    }};
}

#[actix_web::test]
async fn credentials_bound_tenant_scope_revocation_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let (acme_id, acme) =
        create_key(&store, "acme", &["publish:tickets", "read:tickets"], None).await;
    let (_, acme_edges) = create_key(&store, "acme", &["read:edges"], None).await;
    let (_, globex) = create_key(&store, "globex", &["publish:tickets", "read:*"], None).await;
    let (_, slow) = create_key(&store, "acme", &["read:*"], Some(2)).await;
    let state = support::state(store.clone(), support::TEST_LIMITS).await;
    assert!(
        !state.auth.anonymous_allowed(),
        "keys exist: no anonymous access"
    );
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let stream = "/v1/streams/tickets/T-1/events";

    // No credentials, bad credentials.
    let (status, headers, body) = call!(
        app,
        test::TestRequest::get().uri("/v1/events"),
        None::<&str>
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "urn:herald:problem:unauthorized");
    assert!(headers
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    for bad in ["hk_0000000000000000_nope", "hk_short", "not-a-key"] {
        let (status, _, _) = call!(app, test::TestRequest::get().uri("/v1/events"), Some(bad));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // A real key id with a wrong secret.
    let forged = format!("hk_{acme_id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let (status, _, _) = call!(
        app,
        test::TestRequest::get().uri("/v1/events"),
        Some(&forged)
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // acme writes its ticket.
    let (status, _, _) = call!(
        app,
        test::TestRequest::post()
            .uri(stream)
            .set_json(opened("acme's")),
        Some(&acme)
    );
    assert_eq!(status, StatusCode::CREATED);

    // globex sees none of it: not the stream, not the log.
    let (status, _, body) = call!(app, test::TestRequest::get().uri(stream), Some(&globex));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, _, log) = call!(
        app,
        test::TestRequest::get().uri("/v1/events"),
        Some(&globex)
    );
    assert!(log["events"].as_array().unwrap().is_empty(), "{log}");
    // The same stream name in globex's tenant is globex's own stream.
    let (status, _, body) = call!(
        app,
        test::TestRequest::post()
            .uri(stream)
            .set_json(opened("globex's")),
        Some(&globex)
    );
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["stream_version"], 1);

    // Naming another tenant is refused, for every action.
    for req in [
        test::TestRequest::get().uri("/v1/streams/tickets/T-1/events?tenant=acme"),
        test::TestRequest::get().uri("/v1/events?tenant=acme"),
        test::TestRequest::post()
            .uri("/v1/streams/tickets/T-1/events?tenant=acme")
            .set_json(opened("x")),
    ] {
        let (status, _, body) = call!(app, req, Some(&globex));
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["type"], "urn:herald:problem:forbidden");
    }
    let (status, _, _) = call!(
        app,
        test::TestRequest::get().uri("/v1/events?tenant=acme"),
        Some(&acme)
    );
    assert_eq!(status, StatusCode::OK, "naming one's own tenant is fine");

    // Scopes: a read-only key of another domain can neither write nor read tickets.
    let (status, _, body) = call!(
        app,
        test::TestRequest::post().uri(stream).set_json(opened("x")),
        Some(&acme_edges)
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["event_index"], 0);
    let (status, _, _) = call!(app, test::TestRequest::get().uri(stream), Some(&acme_edges));
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, log) = call!(
        app,
        test::TestRequest::get().uri("/v1/events"),
        Some(&acme_edges)
    );
    assert!(
        log["events"].as_array().unwrap().is_empty(),
        "read:edges shows no tickets: {log}"
    );
    let (_, _, log) = call!(app, test::TestRequest::get().uri("/v1/events"), Some(&acme));
    assert_eq!(log["events"].as_array().unwrap().len(), 1);

    // Revocation takes effect on the very next request.
    assert!(store.revoke_api_key(&acme_id).await.unwrap());
    let (status, _, body) = call!(app, test::TestRequest::get().uri(stream), Some(&acme));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // A key at 2 requests/s: a burst gets 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let (status, headers, _) =
            call!(app, test::TestRequest::get().uri("/v1/events"), Some(&slow));
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(headers);
            break;
        }
    }
    let headers = limited.expect("the burst was never limited");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
}
