//! What the README's "Connections" section promises: a `herald serve` on
//! Postgres opens at most its store pool, its background pool and its
//! read-model pool, plus one listener and one claim on the store, however
//! hard it is driven. Here with pools of 3, 2 and 2 (at most 9) under 48
//! concurrent clients sending commands and reading views and events.

mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{free_port, Herald};

const CLIENTS: usize = 48;
const COMMANDS_PER_CLIENT: usize = 12;
const STORE_POOL: i64 = 3;
const BACKGROUND_POOL: i64 = 2;
const READ_MODEL_POOL: i64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_opens_no_more_postgres_connections_than_its_pools_allow() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (store, background, read_models) = (
        STORE_POOL.to_string(),
        BACKGROUND_POOL.to_string(),
        READ_MODEL_POOL.to_string(),
    );
    let mut serve = Herald::start(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--store",
            db.url(),
            "--store-pool-size",
            &store,
            "--store-background-pool-size",
            &background,
            "--read-model-pool-size",
            &read_models,
        ],
        &[],
    );
    serve.wait_healthy(Duration::from_secs(60)).await;

    // Samples the database's sessions (all Herald's but the sampler's own)
    // until the load is over.
    let most = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (sql, most, done) = (db.connect().await, most.clone(), done.clone());
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            while !done.load(Ordering::SeqCst) {
                every.tick().await;
                let open: i64 = sql
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                most.fetch_max(open, Ordering::SeqCst);
            }
        }
    });

    let http = reqwest::Client::new();
    let base = serve.base.clone();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let ticket = format!("{base}/v1/tickets/T-{c}");
                let opened = http
                    .post(format!("{ticket}/open"))
                    .json(&json!({"kind": "other", "customer": "acme", "description": "load"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(opened.status(), 201);
                for n in 0..COMMANDS_PER_CLIENT {
                    let noted = http
                        .post(format!("{ticket}/append_note"))
                        .json(&json!({"note": format!("note {n}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(noted.status(), 201);
                    let read = if n % 2 == 0 {
                        format!("{base}/v1/views/tickets?customer=acme&limit=5")
                    } else {
                        format!("{base}/v1/events?limit=20")
                    };
                    assert_eq!(http.get(read).send().await.unwrap().status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("every request answered as expected");
    }
    let caught_up = eventually(Duration::from_secs(60), || {
        let (http, base) = (&http, &base);
        async move {
            let status: Value = http
                .get(format!("{base}/v1/projections"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status["projections"]
                .as_array()
                .is_some_and(|all| !all.is_empty() && all.iter().all(|p| p["lag_events"] == 0))
        }
    })
    .await;
    assert!(caught_up, "the read models caught up with the load");
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();

    let budget = STORE_POOL + BACKGROUND_POOL + READ_MODEL_POOL + 2;
    let most = most.load(Ordering::SeqCst);
    eprintln!("at most {most} sessions open at once (budget {budget})");
    assert!(
        most <= budget,
        "{most} sessions open at once; the pools allow {budget}"
    );
    assert!(
        most >= STORE_POOL + 2,
        "the load opened only {most} sessions: it did not reach the store's pool"
    );
}
