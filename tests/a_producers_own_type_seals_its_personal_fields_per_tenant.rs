//! A producer's own event type marks a field personal when it registers
//! it; `herald serve` then seals that field like the built-in ones. A
//! sealed value opens only for its own tenant: the decrypt API of another
//! tenant answers the marker, not the value. A malformed annotation is
//! refused with the registration.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, Herald};

const EMAIL: &str = "zoe.customer@example.test";

fn cli(dir: &Path, args: &[&str]) -> String {
    let out = support::herald_command()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run herald");
    assert!(
        out.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("herald answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The order's stream as `key` reads it.
async fn read(http: &reqwest::Client, base: &str, key: &str) -> Value {
    let url = format!("{base}/v1/streams/orders/O-1/events");
    send(http, reqwest::Method::GET, url, key, None).await.1
}

fn serve(dir: &Path) -> Herald {
    Herald::start(
        dir,
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_type_seals_what_it_marks_and_only_its_tenant_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let create = |tenant: &str, scopes: &str| {
        cli(
            dir.path(),
            &["keys", "create", "--tenant", tenant, "--scopes", scopes],
        )
    };
    let admin = create("acme", "admin");
    let writer = create("acme", "publish:*,read:*,schemas:write");
    let decrypter = create("acme", "personal:decrypt");
    let stranger = create("globex", "personal:decrypt");
    let http = reqwest::Client::new();

    let mut herald = serve(dir.path());
    herald.wait_healthy(Duration::from_secs(30)).await;
    let base = herald.base.clone();
    let schema = |subject: &str| {
        json!({"type": "orders.order_placed", "schema": {
        "type": "object", "required": ["customer_id", "email"],
        "properties": {
            "customer_id": {"type": "string"},
            "email": {"type": "string", "x-personal": {"subject": subject}},
            "total": {"type": "number"}
        }}})
    };
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/schemas"),
        &writer,
        Some(schema("customer_id")),
    )
    .await;
    assert_eq!(status, 422, "a subject that is no JSON pointer: {body}");
    assert!(
        body["detail"].as_str().unwrap().contains("x-personal"),
        "{body}"
    );
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/schemas"),
        &writer,
        Some(schema("/customer_id")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/events"),
        &writer,
        Some(
            json!({"stream": "orders/O-1", "type": "orders.order_placed", "version": 1,
            "payload": {"customer_id": "c-9", "email": EMAIL, "total": 12.5}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let as_writer = read(&http, &base, &writer).await;
    assert_eq!(
        as_writer["events"][0]["payload"]["email"], "[personal]",
        "{as_writer}"
    );
    assert_eq!(as_writer["events"][0]["payload"]["customer_id"], "c-9");
    let as_admin = read(&http, &base, &admin).await;
    assert_eq!(
        as_admin["events"][0]["payload"]["email"], EMAIL,
        "{as_admin}"
    );

    // The sealed value, as a consumer outside Herald gets it: from an export.
    let status = herald.terminate(Duration::from_secs(30));
    assert!(status.success());
    let export = dir.path().join("export.jsonl");
    cli(
        dir.path(),
        &["audit", "export", "--output", export.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(!text.contains(EMAIL), "the export holds the plaintext");
    let line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "orders.order_placed")
        .expect("the order in the export");
    let sealed = line["payload"]["email"].as_str().unwrap().to_owned();
    assert!(sealed.starts_with("hpd1."), "{sealed}");

    let mut herald = serve(dir.path());
    herald.wait_healthy(Duration::from_secs(30)).await;
    let base = herald.base.clone();
    let reveal = |key: String| {
        let http = http.clone();
        let url = format!("{base}/v1/personal/reveal");
        let body = json!({"payload": {"email": sealed}});
        async move { send(&http, reqwest::Method::POST, url, &key, Some(body)).await }
    };
    let (status, body) = reveal(decrypter.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"]["email"], EMAIL);
    let (status, body) = reveal(stranger.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["payload"]["email"], "[personal]",
        "another tenant opened it"
    );
    let (status, _) = reveal(writer.clone()).await;
    assert_eq!(status, 403, "decrypting needs personal:decrypt");

    // Forgotten: the decrypt API answers the marker too.
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/subjects/c-9/forget"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = reveal(decrypter.clone()).await;
    assert_eq!(body["payload"]["email"], "[forgotten]");
    let as_admin = read(&http, &base, &admin).await;
    assert_eq!(as_admin["events"][0]["payload"]["email"], "[forgotten]");
    let status = herald.terminate(Duration::from_secs(30));
    assert!(status.success());
}
