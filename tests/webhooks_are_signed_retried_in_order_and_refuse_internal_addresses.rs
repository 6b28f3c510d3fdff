//! Webhook actions as a receiver sees them, through `herald serve`: a local
//! receiver that fails (500), then times out, then recovers gets every
//! delivery in the end, each with a signature that verifies and a stable
//! delivery id; deliveries of one stream arrive in order (the next waits
//! for the one before), while another stream's go on meanwhile. A delivery
//! that keeps failing past its retry window is dead-lettered, shown, and
//! delivered once retried. Webhooks to loopback, link-local and private
//! addresses — directly or by a redirect — are refused and dead-lettered
//! without a request leaving; only the allow-listed address is reached.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use herald_testkit::eventually;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{free_port, get_json as get, post_json as post, Herald};

const PATIENCE: Duration = Duration::from_secs(90);
const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    delivery: String,
    timestamp: String,
    signature: Option<String>,
    body: Vec<u8>,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    got: Vec<Received>,
    /// Requests seen per ticket, to fail the first ones of ticket A.
    per_ticket: BTreeMap<String, usize>,
    /// `/always-500` answers 200 once this is set.
    recovered: bool,
}

async fn hook(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<Receiver>>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ticket = value["ticket"].as_str().unwrap_or_default().to_owned();
    let (status, delay) = {
        let mut r = state.lock().unwrap();
        match path.as_str() {
            "/hook" => {
                let n = r.per_ticket.entry(ticket.clone()).or_default();
                *n += 1;
                match (ticket.as_str(), *n) {
                    // Ticket A's first request fails, its second times out.
                    ("A", 1) => (500, None),
                    ("A", 2) => (200, Some(Duration::from_millis(2500))),
                    _ => (200, None),
                }
            }
            "/always-500" if r.recovered => (200, None),
            "/always-500" => (500, None),
            "/redirect" => (307, None),
            _ => (404, None),
        }
    };
    // Recorded as it arrives (in arrival order); one that outlasts the
    // client's timeout is never answered for it (0).
    state.lock().unwrap().got.push(Received {
        path: path.clone(),
        delivery: header("herald-delivery").unwrap_or_default(),
        timestamp: header("herald-timestamp").unwrap_or_default(),
        signature: header("herald-signature"),
        body: body.to_vec(),
        answered: if delay.is_some() { 0 } else { status },
    });
    if let Some(delay) = delay {
        actix_web::rt::time::sleep(delay).await;
    }
    let mut answer = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if status == 307 {
        let port = req.app_config().local_addr().port();
        answer.insert_header(("location", format!("http://127.0.0.2:{port}/ssrf")));
    }
    answer.finish()
}

fn verify(r: &Received) -> bool {
    let Some(sig) = &r.signature else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    // A test may compare plainly; receivers compare in constant time.
    *sig == expected
}

#[actix_web::test]
async fn webhooks_are_delivered_signed_in_order_and_never_to_internal_addresses() {
    // The receiver listens on every address, so a request to 127.0.0.2
    // would reach it: that none does shows the refusal.
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    let port = free_port();
    let data = web::Data::new(Arc::clone(&receiver));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(hook))
    })
    .workers(1)
    .bind(("0.0.0.0", port))
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[
            ("HERALD_WEBHOOK_ALLOW", "127.0.0.1"),
            ("HERALD_WEBHOOK_SECRET_TEST", SECRET),
        ],
    );
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();
    let hook_url = format!("http://127.0.0.1:{port}");

    let notify = json!({
        "name": "notify",
        "trigger": {"event": {"types": ["tickets.note_appended"]}},
        "actions": [{"webhook": {
            "url": format!("{hook_url}/hook"),
            "body": {"ticket": "{{ event.stream_id }}", "note": "{{ event.payload.note }}", "seq": "{{ event.version }}"},
            "headers": {"X-Source": "herald-test"},
            "secret_env": "HERALD_WEBHOOK_SECRET_TEST",
            "timeout": "1s",
            "retry_for": "2m"
        }}]
    });
    let deadend = json!({
        "name": "deadend",
        "trigger": {"event": {"types": ["tickets.ticket_resolved"]}},
        "actions": [{"webhook": {"url": format!("{hook_url}/always-500"), "retry_for": "2s"}}]
    });
    let ssrf = json!({
        "name": "ssrf",
        "trigger": {"event": {"types": ["tickets.ticket_assigned"]}},
        "actions": [
            {"webhook": {"url": format!("http://127.0.0.2:{port}/ssrf")}},
            {"webhook": {"url": "http://169.254.169.254/latest/meta-data"}},
            {"webhook": {"url": "http://10.1.2.3/x"}},
            {"webhook": {"url": format!("http://[::1]:{port}/ssrf")}},
            {"webhook": {"url": format!("{hook_url}/redirect")}}
        ]
    });
    for automation in [&notify, &deadend, &ssrf] {
        let (status, body) = post(
            &client,
            format!("{base}/v1/automations"),
            automation.clone(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for t in ["A", "B"] {
        let (status, body) = post(
            &client,
            format!("{base}/v1/tickets/{t}/open"),
            json!({"kind": "other", "customer": "acme", "description": "d", "opened_by": "me"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for n in 1..=3 {
        for t in ["A", "B"] {
            let (status, body) = post(
                &client,
                format!("{base}/v1/tickets/{t}/append_note"),
                json!({"note": format!("{t}{n}"), "author": "me"}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
    }

    // Every note's delivery arrives and is answered 200 in the end.
    let all = eventually(PATIENCE, || {
        let receiver = Arc::clone(&receiver);
        async move {
            let r = receiver.lock().unwrap();
            let ok: std::collections::BTreeSet<_> = r
                .got
                .iter()
                .filter(|g| g.path == "/hook" && g.answered == 200)
                .map(|g| g.delivery.clone())
                .collect();
            ok.len() == 6
        }
    })
    .await;
    assert!(
        all,
        "not every delivery arrived: {:?}",
        receiver.lock().unwrap().got
    );
    let got: Vec<Received> = receiver
        .lock()
        .unwrap()
        .got
        .iter()
        .filter(|g| g.path == "/hook")
        .cloned()
        .collect();
    // Signed, with the stable delivery id on every attempt.
    for g in &got {
        assert!(verify(g), "a signature does not verify: {g:?}");
    }
    let attempts_of_a1: Vec<_> = got
        .iter()
        .filter(|g| serde_json::from_slice::<Value>(&g.body).unwrap()["note"] == "A1")
        .collect();
    assert_eq!(
        attempts_of_a1.len(),
        3,
        "A1: a failure, a timeout, a success: {attempts_of_a1:?}"
    );
    assert!(attempts_of_a1
        .iter()
        .all(|g| g.delivery == attempts_of_a1[0].delivery));
    // In order per stream: A2 only after A1 succeeded, A3 after A2; B did
    // not wait for A.
    let order: Vec<(String, u16)> = got
        .iter()
        .map(|g| {
            (
                serde_json::from_slice::<Value>(&g.body).unwrap()["note"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                g.answered,
            )
        })
        .collect();
    let index = |note: &str, answered: u16| {
        order
            .iter()
            .position(|(n, a)| n == note && *a == answered)
            .unwrap()
    };
    let first = |note: &str| order.iter().position(|(n, _)| n == note).unwrap();
    assert!(index("A1", 200) < first("A2"), "{order:?}");
    assert!(index("A2", 200) < first("A3"), "{order:?}");
    assert!(
        index("B3", 200) < index("A1", 200),
        "B waited for A: {order:?}"
    );
    for g in &got {
        let body: Value = serde_json::from_slice(&g.body).unwrap();
        assert!(body["seq"].is_u64(), "{body}");
    }
    let shown = get(&client, format!("{base}/v1/automations/notify/deliveries")).await;
    let deliveries = shown["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 6, "{shown}");
    assert!(
        deliveries
            .iter()
            .all(|d| d["status"] == "delivered" && d["status_code"] == 200),
        "{shown}"
    );
    let a1 = deliveries
        .iter()
        .find(|d| d["delivery_id"] == attempts_of_a1[0].delivery.as_str())
        .unwrap();
    assert_eq!(a1["attempts"], 3, "{a1}");

    // A dead letter, shown, then retried once the receiver recovers.
    let (status, body) = post(
        &client,
        format!("{base}/v1/tickets/A/resolve"),
        json!({"resolution": "ok"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let dead = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let shown = get(&client, format!("{base}/v1/automations/deadend/deliveries")).await;
            shown["deliveries"][0]["status"] == "dead_lettered"
        }
    })
    .await;
    assert!(dead, "the failing delivery was not dead-lettered");
    let shown = get(&client, format!("{base}/v1/automations/deadend/deliveries")).await;
    let letter = &shown["deliveries"][0];
    assert_eq!(letter["status_code"], 500, "{letter}");
    let id = letter["delivery_id"].as_str().unwrap().to_owned();
    // Only a dead letter is retried.
    let (status, body) = post(
        &client,
        format!(
            "{base}/v1/automations/notify/deliveries/{}/retry",
            attempts_of_a1[0].delivery
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    receiver.lock().unwrap().recovered = true;
    let (status, body) = post(
        &client,
        format!("{base}/v1/automations/deadend/deliveries/{id}/retry"),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let delivered = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let shown = get(&client, format!("{base}/v1/automations/deadend/deliveries")).await;
            shown["deliveries"][0]["status"] == "delivered"
        }
    })
    .await;
    assert!(delivered, "the retried delivery did not arrive");
    assert!(receiver
        .lock()
        .unwrap()
        .got
        .iter()
        .any(|g| g.path == "/always-500" && g.answered == 200 && g.delivery == id));

    // Internal addresses: every one refused and dead-lettered at once.
    let (status, body) = post(
        &client,
        format!("{base}/v1/tickets/B/assign"),
        json!({"assignee": "x"}),
    )
    .await;
    assert!(status == 201 || status == 200, "{body}");
    let refused = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let shown = get(&client, format!("{base}/v1/automations/ssrf/deliveries")).await;
            let d = shown["deliveries"].as_array().cloned().unwrap_or_default();
            d.len() == 5 && d.iter().all(|d| d["status"] == "dead_lettered")
        }
    })
    .await;
    assert!(refused, "the internal webhooks were not all dead-lettered");
    let shown = get(&client, format!("{base}/v1/automations/ssrf/deliveries")).await;
    for d in shown["deliveries"].as_array().unwrap() {
        let error = d["error"].as_str().unwrap();
        assert!(error.contains("internal address"), "{d}");
        assert!(
            d["attempts"].as_u64().unwrap() <= 1,
            "a refusal is not retried: {d}"
        );
    }
    assert!(
        receiver
            .lock()
            .unwrap()
            .got
            .iter()
            .all(|g| g.path != "/ssrf"),
        "a request reached an internal address"
    );
    // The redirect was followed to the receiver only up to the refusal.
    assert!(receiver
        .lock()
        .unwrap()
        .got
        .iter()
        .any(|g| g.path == "/redirect"));
    let status = herald.terminate(PATIENCE);
    assert!(status.success());
}
