//! JWT bearer tokens (HS256 here) are accepted when signed with the
//! configured key, from the configured issuer for the configured audience and
//! within their validity (`nbf` to `exp`, give or take the configured
//! leeway); they act for the tenant and scopes they name. A token that leaves
//! out a configured `iss` or `aud` is refused like one that names another,
//! with a problem naming the claim, and nothing is appended.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api::{self, AppState};
use herald::auth::jwt::{JwtVerifier, DEFAULT_LEEWAY};
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
            leeway: DEFAULT_LEEWAY,
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

const ISSUER: &str = "https://gateway.example";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// App state over a fresh embedded store, taking tokens from `ISSUER` for
/// audience `herald` with the default leeway.
async fn jwt_state(dir: &std::path::Path) -> (Arc<dyn EventStore>, AppState) {
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir))
            .await
            .unwrap(),
    );
    let settings = AuthSettings {
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(SECRET.to_vec()),
            issuer: Some(ISSUER.into()),
            audience: Some("herald".into()),
            leeway: DEFAULT_LEEWAY,
        }),
        ..AuthSettings::default()
    };
    let auth = Authenticator::start(store.clone(), &settings, "0.0.0.0:8080".parse().unwrap())
        .await
        .unwrap();
    let mut state: AppState = support::state(store.clone(), support::TEST_LIMITS).await;
    state.auth = auth;
    (store, state)
}

#[actix_web::test]
async fn configured_claims_are_required_and_token_times_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = jwt_state(dir.path()).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let append = |t: &str| {
        test::TestRequest::post()
            .uri("/v1/streams/tickets/J-2/events")
            .insert_header(("authorization", format!("Bearer {t}")))
            .set_json(json!({"events": [{"type": "tickets.note_appended", "version": 1, "payload": {"note": "n"}}]}))
            .to_request()
    };
    let full = || {
        json!({"sub": "gateway-user", "iss": ISSUER, "aud": "herald", "exp": now() + 300,
               "tenant": "acme", "scope": "publish:tickets"})
    };
    let without = |claim: &str| {
        let mut c = full();
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let with = |claim: &str, value: Value| {
        let mut c = full();
        c[claim] = value;
        c
    };

    for (why, claims, claim, says) in [
        ("no iss", without("iss"), "iss", "no `iss` claim"),
        ("no aud", without("aud"), "aud", "no `aud` claim"),
        ("no exp", without("exp"), "exp", "no `exp` claim"),
        (
            "not valid for another minute",
            with("nbf", json!(now() + 60)),
            "nbf",
            "not valid yet",
        ),
        (
            "expired 30 s ago",
            with("exp", json!(now() - 30)),
            "exp",
            "expired",
        ),
        (
            "an audience list without ours",
            with("aud", json!(["billing", "crm"])),
            "aud",
            "configured audience",
        ),
    ] {
        let resp = test::call_service(&app, append(&token(SECRET, claims))).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(
            resp.headers().contains_key("www-authenticate"),
            "{why}: a 401 challenges"
        );
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(
            body["type"], "urn:herald:problem:unauthorized",
            "{why}: {body}"
        );
        assert_eq!(
            body["claim"], claim,
            "{why}: the problem names the claim: {body}"
        );
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{why}: {detail}");
    }
    assert!(
        store
            .read_all(herald_events::Position(0), 10)
            .await
            .unwrap()
            .is_empty(),
        "a refused token appends nothing"
    );

    // Valid from a moment ago, for us among others: accepted.
    let fine = with("nbf", json!(now() - 10));
    let fine = {
        let mut c = fine;
        c["aud"] = json!(["crm", "herald"]);
        c
    };
    let resp = test::call_service(&app, append(&token(SECRET, fine))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn claims_are_required_only_when_configured_and_the_leeway_is_the_configured_one() {
    let config = |issuer: Option<&str>, audience: Option<&str>, leeway: u64| JwtConfig {
        key: JwtKey::Hs256(SECRET.to_vec()),
        issuer: issuer.map(str::to_owned),
        audience: audience.map(str::to_owned),
        leeway: Duration::from_secs(leeway),
    };
    let bare = json!({"exp": now() + 300, "tenant": "acme", "scope": "read:*"});
    let open = JwtVerifier::new(&config(None, None, 5)).unwrap();
    let claims = open
        .verify(&token(SECRET, bare.clone()))
        .expect("no iss or aud configured: none needed");
    assert_eq!(claims.tenant, "acme");
    let issuer_only = JwtVerifier::new(&config(Some(ISSUER), None, 5)).unwrap();
    assert_eq!(
        issuer_only
            .verify(&token(SECRET, bare.clone()))
            .unwrap_err()
            .claim,
        Some("iss")
    );
    let mut with_iss = bare;
    with_iss["iss"] = json!(ISSUER);
    issuer_only
        .verify(&token(SECRET, with_iss))
        .expect("the configured issuer, no audience configured");

    // 30 s past `exp`, or 30 s before `nbf`: inside a 60 s leeway, outside 5 s.
    let late = json!({"exp": now() - 30, "tenant": "acme"});
    let early = json!({"nbf": now() + 30, "exp": now() + 300, "tenant": "acme"});
    let lenient = JwtVerifier::new(&config(None, None, 60)).unwrap();
    lenient.verify(&token(SECRET, late.clone())).unwrap();
    lenient.verify(&token(SECRET, early.clone())).unwrap();
    assert_eq!(
        open.verify(&token(SECRET, late)).unwrap_err().claim,
        Some("exp")
    );
    assert_eq!(
        open.verify(&token(SECRET, early)).unwrap_err().claim,
        Some("nbf")
    );

    let err = JwtVerifier::new(&config(None, None, 301)).unwrap_err();
    assert!(err.contains("300"), "{err}");
}
