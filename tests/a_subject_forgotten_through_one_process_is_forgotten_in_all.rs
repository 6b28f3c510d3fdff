//! Two `herald serve` on one Postgres store and one RabbitMQ, as a scaled-out
//! installation runs: a subject written through one process reads in
//! plaintext through both; forgotten through one, it reads as
//! `[forgotten]` through the other within the 2 s a process trusts a key it
//! read (the README's promise), while another subject is untouched; and new
//! data about the forgotten subject, sealed under a new key, reads again.

mod support;

use std::time::{Duration, Instant};

use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::start_serves;

const PATIENCE: Duration = Duration::from_secs(60);

async fn description(http: &reqwest::Client, base: &str, ticket: &str) -> Value {
    let answer: Value = http
        .get(format!("{base}/v1/streams/tickets/{ticket}/events"))
        .send()
        .await
        .expect("herald answers")
        .json()
        .await
        .expect("JSON");
    answer["events"][0]["payload"]["description"].clone()
}

async fn open(http: &reqwest::Client, base: &str, ticket: &str, customer: &str, text: &str) {
    let resp = http
        .post(format!("{base}/v1/tickets/{ticket}/open"))
        .json(&json!({"kind": "other", "customer": customer, "description": text}))
        .send()
        .await
        .expect("herald answers");
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_reaches_every_process_within_two_seconds() {
    let db = TestDatabase::create().await;
    let vhost = herald_testkit::TestVhost::create().await;
    let master = {
        let out = support::herald_command()
            .args(["personal", "new-master-key"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let env = [
        ("HERALD_STORE", db.url()),
        ("HERALD_BROKER", vhost.url()),
        ("HERALD_MASTER_KEY", master.as_str()),
    ];
    let (_dirs, processes) = start_serves(2, &env, &[], PATIENCE).await;
    let (a, b) = (processes[0].base.clone(), processes[1].base.clone());
    let http = reqwest::Client::new();

    open(&http, &a, "T-1", "cust-x", "Xavier-lives-at-9-Rue-Verte").await;
    open(&http, &a, "T-2", "cust-y", "Yvonne-phone-0612345678").await;
    // Both processes read both, in plaintext (process b read the key, and
    // keeps it for up to 2 s).
    for base in [&a, &b] {
        assert_eq!(
            description(&http, base, "T-1").await,
            "Xavier-lives-at-9-Rue-Verte"
        );
        assert_eq!(
            description(&http, base, "T-2").await,
            "Yvonne-phone-0612345678"
        );
    }

    let resp = http
        .post(format!("{a}/v1/subjects/cust-x/forget"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let forgotten = Instant::now();
    // At once in the process that forgot.
    assert_eq!(description(&http, &a, "T-1").await, "[forgotten]");
    let reached = eventually(Duration::from_secs(5), || async {
        description(&http, &b, "T-1").await == "[forgotten]"
    })
    .await;
    let took = forgotten.elapsed();
    assert!(reached, "the other process still reveals after 5 s");
    assert!(
        took < Duration::from_millis(2500),
        "the other process took {took:?}"
    );
    eprintln!("forgotten in the other process after {took:?}");
    assert_eq!(
        description(&http, &b, "T-2").await,
        "Yvonne-phone-0612345678"
    );

    // The subject comes back: what is written now is sealed anew.
    open(&http, &b, "T-3", "cust-x", "Xavier-new-address").await;
    for base in [&a, &b] {
        assert_eq!(description(&http, base, "T-3").await, "Xavier-new-address");
        assert_eq!(description(&http, base, "T-1").await, "[forgotten]");
    }
}
