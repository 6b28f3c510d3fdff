//! JWT bearer tokens (HS256 here) are accepted when signed with the
//! configured key, from the configured issuer for the configured audience and
//! unexpired; they act for the tenant and scopes they name.

mod support;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api::{self, AppState};
use herald::auth::{AuthSettings, Authenticator, JwtConfig, JwtKey};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

fn token(secret: &[u8], claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(iss: &str, aud: &str, exp_offset: i64, tenant: &str, scope: &str) -> Value {
    json!({"sub": "gateway-user", "iss": iss, "aud": aud,
           "exp": chrono::Utc::now().timestamp() + exp_offset, "tenant": tenant, "scope": scope})
}

#[actix_web::test]
async fn tokens_are_checked_and_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let settings = AuthSettings {
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(SECRET.to_vec()),
            issuer: Some("https://gateway.example".into()),
            audience: Some("herald".into()),
        }),
        ..AuthSettings::default()
    };
    // A public address is fine once JWT is configured.
    let auth = Authenticator::start(store.clone(), &settings, "0.0.0.0:8080".parse().unwrap())
        .await
        .unwrap();
    assert!(!auth.anonymous_allowed());
    let mut state: AppState = support::state(store.clone(), support::TEST_LIMITS).await;
    state.auth = auth;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let body = json!({"events": [{"type": "tickets.note_appended", "version": 1, "payload": {"note": "from a token"}}]});

    let call = |t: String| {
        test::TestRequest::post()
            .uri("/v1/streams/tickets/J-1/events")
            .insert_header(("authorization", format!("Bearer {t}")))
            .set_json(body.clone())
            .to_request()
    };
    let good = token(
        SECRET,
        claims(
            "https://gateway.example",
            "herald",
            300,
            "acme",
            "publish:tickets read:tickets",
        ),
    );
    let resp = test::call_service(&app, call(good)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let events = store
        .read_all(herald_events::Position(0), 10)
        .await
        .unwrap();
    assert_eq!(
        events[0].tenant.as_str(),
        "acme",
        "the token's tenant owns the event"
    );

    for (why, t) in [
        (
            "wrong key",
            token(
                b"another-secret-of-at-least-32-bytes!!",
                claims(
                    "https://gateway.example",
                    "herald",
                    300,
                    "acme",
                    "publish:*",
                ),
            ),
        ),
        (
            "wrong issuer",
            token(
                SECRET,
                claims("https://evil.example", "herald", 300, "acme", "publish:*"),
            ),
        ),
        (
            "wrong audience",
            token(
                SECRET,
                claims("https://gateway.example", "other", 300, "acme", "publish:*"),
            ),
        ),
        (
            "expired",
            token(
                SECRET,
                claims(
                    "https://gateway.example",
                    "herald",
                    -600,
                    "acme",
                    "publish:*",
                ),
            ),
        ),
        ("garbage", "eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned()),
    ] {
        let resp = test::call_service(&app, call(t)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
    let read_only = token(
        SECRET,
        claims(
            "https://gateway.example",
            "herald",
            300,
            "acme",
            "read:tickets",
        ),
    );
    let resp = test::call_service(&app, call(read_only)).await;
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "scopes come from the token"
    );
}
