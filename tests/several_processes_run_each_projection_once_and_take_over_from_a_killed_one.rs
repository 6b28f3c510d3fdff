//! Three `herald serve` on one Postgres store and one RabbitMQ: each
//! projection runs in exactly one of them (`herald_projection_running` adds
//! up to 1 across processes), every process serves the same read models,
//! and when the process running the tickets projection is killed with
//! SIGKILL, the survivors take its projections over and the read models go
//! on with nothing lost or counted twice.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_testkit::{eventually, TestDatabase, TestVhost};
use serde_json::{json, Value};
use support::start_serves;

const PATIENCE: Duration = Duration::from_secs(60);

/// `herald_projection_running` of one process, by projection.
async fn running(http: &reqwest::Client, base: &str) -> BTreeMap<String, bool> {
    let Ok(answer) = http.get(format!("{base}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("herald_projection_running{projection=\""))
        .filter_map(|rest| {
            let (name, value) = rest.split_once("\"} ")?;
            Some((name.to_owned(), value.trim() == "1"))
        })
        .collect()
}

/// Whether every projection runs in exactly one of `bases`; the process
/// running `tickets` when so.
async fn each_runs_once(http: &reqwest::Client, bases: &[String]) -> Option<usize> {
    let mut runs = BTreeMap::<String, usize>::new();
    let mut tickets = None;
    for (i, base) in bases.iter().enumerate() {
        let seen = running(http, base).await;
        if seen.len() != 6 {
            return None;
        }
        for (name, on) in seen {
            *runs.entry(name.clone()).or_default() += usize::from(on);
            if on && name == "tickets" {
                tickets = Some(i);
            }
        }
    }
    runs.values().all(|&n| n == 1).then_some(tickets).flatten()
}

async fn open(http: &reqwest::Client, base: &str, id: &str) {
    let answer = http
        .post(format!("{base}/v1/tickets/{id}/open"))
        .json(&json!({"kind": "other", "customer": "acme", "description": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "open {id} through {base}");
}

/// How many tickets `base`'s tickets view lists for acme.
async fn listed(http: &reqwest::Client, base: &str) -> Option<u64> {
    let answer = http
        .get(format!("{base}/v1/views/tickets?customer=acme&limit=500"))
        .send()
        .await
        .ok()?;
    let page: Value = answer.json().await.ok()?;
    page["items"].as_array().map(|items| items.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_run_each_projection_once_and_take_over_from_a_killed_one() {
    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let env = [("HERALD_STORE", db.url()), ("HERALD_BROKER", vhost.url())];
    let (_dirs, mut processes) = start_serves(3, &env, &[], PATIENCE).await;
    let http = reqwest::Client::new();
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();

    assert!(
        eventually(PATIENCE, || async {
            each_runs_once(&http, &bases).await.is_some()
        })
        .await,
        "every projection runs in exactly one process"
    );

    // Tickets opened round-robin through every process show in every
    // process's view: one set of read models, run once.
    for i in 0..30 {
        open(&http, &bases[i % 3], &format!("T-{i}")).await;
    }
    for base in &bases {
        assert!(
            eventually(PATIENCE, || async { listed(&http, base).await == Some(30) }).await,
            "{base} lists the 30 tickets (it lists {:?})",
            listed(&http, base).await
        );
    }

    // The process running the tickets projection dies; the others take its
    // projections over once its leases expire.
    let runner = each_runs_once(&http, &bases)
        .await
        .expect("each projection still runs once");
    processes[runner].kill9();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != runner)
        .map(|i| bases[i].clone())
        .collect();
    for i in 30..40 {
        open(&http, &survivors[i % 2], &format!("T-{i}")).await;
    }
    assert!(
        eventually(PATIENCE, || async {
            each_runs_once(&http, &survivors).await.is_some()
        })
        .await,
        "the survivors run every projection, each once"
    );
    for base in &survivors {
        assert!(
            eventually(PATIENCE, || async { listed(&http, base).await == Some(40) }).await,
            "{base} lists the 40 tickets after the takeover (it lists {:?})",
            listed(&http, base).await
        );
    }

    // Nothing was applied twice: the view holds one row per ticket.
    let sql = db.connect().await;
    let rows: i64 = sql
        .query_one(
            "SELECT count(*) FROM herald_read_models WHERE name = 'tickets' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one serving generation of the tickets read model");
}
