//! The console as HTTP sees it, against `herald serve`: `/` redirects to the
//! console, whose files are served from the binary with a strict CSP and
//! ETags; signing in answers an HttpOnly, SameSite=Strict session cookie and
//! a CSRF token; a change without the token is refused and changes nothing;
//! the session carries its key's tenant and scopes; revoking the key ends
//! the session at its next request; signing out ends it too.

mod support;

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};
use support::{free_port, Herald};

const ADMIN_KEY: &str = "hk_0123456789abcdef_console-test-secret-0123456789abcdef";

/// The `herald_session=…` pair of a sign-in's `Set-Cookie`, and its
/// attributes.
fn session_cookie(headers: &HeaderMap) -> (String, String) {
    let set = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("herald_session="))
        .expect("a session cookie")
        .to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    (pair, set)
}

struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(client: &Client, base: &str, credential: &str) -> Session {
    let answer = client
        .post(format!("{base}/v1/console/session"))
        .json(&json!({"credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let (cookie, attributes) = session_cookie(answer.headers());
    let lower = attributes.to_ascii_lowercase();
    assert!(lower.contains("httponly"), "{attributes}");
    assert!(lower.contains("samesite=strict"), "{attributes}");
    assert!(lower.contains("path=/"), "{attributes}");
    let body: Value = answer.json().await.unwrap();
    Session {
        cookie,
        csrf: body["csrf"].as_str().expect("a CSRF token").to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_are_httponly_csrf_bound_and_end_when_their_key_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[("HERALD_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)],
    );
    herald.wait_healthy(Duration::from_secs(30)).await;
    let base = herald.base.clone();
    let client = Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The pages.
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::FOUND);
    assert_eq!(root.headers()[LOCATION], "/console");
    let page = client.get(format!("{base}/console")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let etag = page.headers()[ETAG].clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/assets/"), "{html}");
    let again = client
        .get(format!("{base}/console/"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let files = herald::console::embedded_files();
    assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
    for file in &files {
        let answer = client
            .get(format!("{base}/console/assets/{file}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{file}");
        let kind = answer.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        let expected = match file.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("html") => "text/html",
            Some("svg") => "image/svg+xml",
            _ => "",
        };
        assert!(kind.starts_with(expected), "{file}: {kind}");
    }
    for missing in [
        "nope.js",
        "..%2F..%2FCargo.toml",
        "x%2F..%2F..%2F..%2FCargo.toml",
    ] {
        let answer = client
            .get(format!("{base}/console/assets/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{missing}");
    }

    // A refused credential starts no session.
    let refused = client
        .post(format!("{base}/v1/console/session"))
        .json(&json!({"credential": "hk_0123456789abcdef_not-the-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(SET_COOKIE).is_none());

    let admin = sign_in(&client, &base, ADMIN_KEY).await;
    let keys = |session: &Session| {
        client
            .get(format!("{base}/v1/keys"))
            .header(COOKIE, &session.cookie)
            .send()
    };
    let listed: Value = keys(&admin).await.unwrap().json().await.unwrap();
    let before = listed["keys"].as_array().unwrap().len();
    assert_eq!(before, 1, "the bootstrap key: {listed}");

    // A change without the session's CSRF token is refused and changes nothing.
    let create = json!({"scopes": ["read:tickets.*"], "label": "viewer"});
    for token in [None, Some("not-the-token")] {
        let mut request = client
            .post(format!("{base}/v1/keys"))
            .header(COOKIE, &admin.cookie)
            .json(&create);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["type"], "urn:herald:problem:csrf-token-invalid");
    }
    let listed: Value = keys(&admin).await.unwrap().json().await.unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), before);

    // With it, a viewer key is made; its session has its tenant and scopes.
    let created: Value = client
        .post(format!("{base}/v1/keys"))
        .header(COOKIE, &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .json(&create)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer_key = created["key"].as_str().unwrap().to_owned();
    let viewer_id = created["record"]["key_id"].as_str().unwrap().to_owned();
    let viewer = sign_in(&client, &base, &viewer_key).await;
    let who: Value = client
        .get(format!("{base}/v1/console/session"))
        .header(COOKIE, &viewer.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["tenant"], "default");
    assert_eq!(who["scopes"], json!(["read:tickets.*"]));
    assert_eq!(who["admin"], false);
    assert_eq!(who["csrf"], viewer.csrf.as_str());
    assert_eq!(keys(&viewer).await.unwrap().status(), StatusCode::FORBIDDEN);
    let search = |session: &Session| {
        client
            .get(format!("{base}/v1/events/search?limit=1"))
            .header(COOKIE, &session.cookie)
            .send()
    };
    assert_eq!(search(&viewer).await.unwrap().status(), StatusCode::OK);

    // Revoking the key ends its session at the next request.
    let revoked = client
        .post(format!("{base}/v1/keys/{viewer_id}/revoke"))
        .header(COOKIE, &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let refused = search(&viewer).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    let ended = search(&viewer).await.unwrap();
    assert_eq!(ended.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(search(&admin).await.unwrap().status(), StatusCode::OK);

    // Signing out needs the token too, then ends the session.
    let refused = client
        .delete(format!("{base}/v1/console/session"))
        .header(COOKIE, &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let out = client
        .delete(format!("{base}/v1/console/session"))
        .header(COOKIE, &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let (cleared, _) = session_cookie(out.headers());
    assert_eq!(cleared, "herald_session=");
    assert_eq!(
        search(&admin).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let status = herald.terminate(Duration::from_secs(30));
    assert!(status.success(), "herald exited with {status}");
}
