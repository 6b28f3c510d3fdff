//! Three `herald serve` on one Postgres store and one RabbitMQ, sixteen
//! clients sending commands round-robin over the processes to eight shared
//! tickets: each command is decided by the process that owns its ticket's
//! partition of the command group (the others forward it), so once placement
//! has settled no decision is refused by the store and decided again; every
//! command is answered once and every answered command is stored once. Then
//! a process that decides is killed with SIGKILL while the clients keep
//! going: its partitions move to the survivors at once (RabbitMQ gives a dead
//! connection's queues to the next consumer), commands keep being answered,
//! and nothing is lost or applied twice. Once with the default single
//! command partition (one process decides everything), once with the
//! aggregates spread over twelve.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::{eventually, TestDatabase, TestVhost};
use serde_json::json;
use support::start_serves;

const PATIENCE: Duration = Duration::from_secs(60);
const TICKETS: usize = 8;
const CLIENTS: usize = 16;
/// How long a command may go unanswered while a dead process's partitions
/// move (README, "Several processes": at once on RabbitMQ, plus the
/// survivors' hand-over check).
const MOVE_WITHIN: Duration = Duration::from_secs(15);

/// The sum of a metric's samples whose labels contain `labels`.
async fn metric(http: &reqwest::Client, base: &str, name: &str, labels: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

async fn total(http: &reqwest::Client, bases: &[String], name: &str, labels: &str) -> f64 {
    let mut sum = 0.0;
    for base in bases {
        sum += metric(http, base, name, labels)
            .await
            .unwrap_or_else(|| panic!("{base} exports {name}"));
    }
    sum
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Idempotency key → statuses of the answers it got.
    answers: BTreeMap<String, Vec<u16>>,
    /// Longest a command went without an answer, from its first attempt.
    longest_wait: Duration,
}

/// A client: sends `append_note` to the tickets in turn, each command through
/// the next process, with its own Idempotency-Key; a process that does not
/// answer (it was killed) gets the same command again through the next one.
async fn client(
    n: usize,
    bases: Arc<Vec<String>>,
    dead: Arc<Mutex<BTreeSet<usize>>>,
    go: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let mut turn = n;
    let mut i = 0;
    while go.load(Ordering::SeqCst) {
        let ticket = format!("T-{}", (n + i) % TICKETS);
        let key = format!("c{n}-{i}");
        let started = Instant::now();
        loop {
            turn += 1;
            let p = turn % bases.len();
            if dead.lock().unwrap().contains(&p) {
                continue;
            }
            let answer = http
                .post(format!("{}/v1/tickets/{ticket}/append_note", bases[p]))
                .header("Idempotency-Key", &key)
                // No author: the note names no subject, so it is stored as
                // sent (not sealed) and the check at the end reads it by SQL.
                .json(&json!({"note": format!("note {key}")}))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().as_u16() == 503 => {
                    // Busy or a hand-over in progress: the same key again,
                    // through the next process.
                    assert!(
                        started.elapsed() < PATIENCE,
                        "{key} kept getting 503 for {PATIENCE:?}"
                    );
                }
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let mut seen = seen.lock().unwrap();
                    seen.answers.entry(key.clone()).or_default().push(status);
                    seen.longest_wait = seen.longest_wait.max(started.elapsed());
                    break;
                }
                // The process was killed mid-request: the same key elsewhere.
                Err(_) => {
                    assert!(
                        started.elapsed() < PATIENCE,
                        "{key} found no process to answer within {PATIENCE:?}"
                    );
                }
            }
        }
        sent.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_decides_every_command_and_a_survivor_takes_over() {
    scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_spread_over_the_processes_move_when_one_dies() {
    scenario(&["--broker-partitions", "12", "--command-partitions", "12"]).await;
}

/// The commands a process decided (as owner, or for another process).
async fn decided_by(http: &reqwest::Client, base: &str) -> f64 {
    metric(http, base, "herald_command_routes_total", "route=\"owner\"")
        .await
        .unwrap_or(0.0)
        + metric(
            http,
            base,
            "herald_command_routes_total",
            "route=\"for_another\"",
        )
        .await
        .unwrap_or(0.0)
}

async fn scenario(extra: &[&str]) {
    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let env = [("HERALD_STORE", db.url()), ("HERALD_BROKER", vhost.url())];
    let (_dirs, processes) = start_serves(3, &env, extra, PATIENCE).await;
    let http = reqwest::Client::new();
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    for t in 0..TICKETS {
        let answer = http
            .post(format!("{}/v1/tickets/T-{t}/open", bases[t % 3]))
            .json(&json!({"kind": "other", "customer": "acme", "description": "shared"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "open T-{t}");
    }

    let bases = Arc::new(bases);
    let dead = Arc::new(Mutex::new(BTreeSet::new()));
    let go = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                Arc::clone(&bases),
                Arc::clone(&dead),
                Arc::clone(&go),
                Arc::clone(&sent),
                Arc::clone(&seen),
            ))
        })
        .collect();
    let done_at_least = |n: usize| {
        let sent = Arc::clone(&sent);
        async move {
            let until = sent.load(Ordering::SeqCst) + n;
            eventually(PATIENCE * 2, || async {
                sent.load(Ordering::SeqCst) >= until
            })
            .await
        }
    };

    // Placement settles: the members joined and the shards were handed over
    // (the RabbitMQ backend compares each member's share every second);
    // from then on the owners decide every command.
    assert!(
        done_at_least(300).await,
        "the clients' first commands are answered"
    );
    let decided = |bases: Arc<Vec<String>>| {
        let http = http.clone();
        async move {
            total(
                &http,
                &bases,
                "herald_command_routes_total",
                "route=\"owner\"",
            )
            .await
                + total(
                    &http,
                    &bases,
                    "herald_command_routes_total",
                    "route=\"for_another\"",
                )
                .await
        }
    };
    let before = decided(Arc::clone(&bases)).await;
    assert!(done_at_least(300).await, "commands go on being answered");
    assert!(
        decided(Arc::clone(&bases)).await - before >= 300.0,
        "the owners of the tickets' partitions decide the commands"
    );

    // Settled: from here on no decision is refused and decided again.
    let conflicts_before = total(&http, &bases, "herald_command_conflicts_total", "").await;
    let forwarded_before = total(&http, &bases, "herald_command_routes_total", "forwarded").await;
    assert!(
        done_at_least(1000).await,
        "1,000 more commands are answered"
    );
    let conflicts_after = total(&http, &bases, "herald_command_conflicts_total", "").await;
    let forwarded_after = total(&http, &bases, "herald_command_routes_total", "forwarded").await;
    assert_eq!(
        conflicts_after, conflicts_before,
        "no command was decided again once placement settled"
    );
    assert!(
        forwarded_after - forwarded_before >= 300.0,
        "commands arriving at a process that does not own their ticket went to the owner \
         ({} of 1,000)",
        forwarded_after - forwarded_before
    );
    let fallbacks = total(&http, &bases, "herald_command_routes_total", "fallback").await;
    assert_eq!(fallbacks, 0.0, "every forward reached the broker");

    // A process that decides dies mid-load; the clients go on through the
    // others.
    let mut deciding = Vec::new();
    for base in bases.iter() {
        deciding.push(decided_by(&http, base).await);
    }
    let victim = (0..3)
        .max_by(|&a, &b| deciding[a].total_cmp(&deciding[b]))
        .unwrap();
    assert!(deciding[victim] > 0.0, "some process decides");
    seen.lock().unwrap().longest_wait = Duration::ZERO;
    dead.lock().unwrap().insert(victim);
    let mut processes = processes;
    processes[victim].kill9();
    assert!(
        done_at_least(600).await,
        "the survivors answer commands for every ticket after the kill"
    );
    go.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client ran to the end");
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert!(
        seen.longest_wait < MOVE_WITHIN,
        "a command waited {:?} for an answer after the kill",
        seen.longest_wait
    );

    // Every command answered once; every acknowledged one stored once.
    let answered: BTreeSet<&String> = seen.answers.keys().collect();
    for (key, statuses) in &seen.answers {
        assert_eq!(statuses.len(), 1, "{key} was answered {statuses:?}");
        assert!(
            statuses[0] == 201 || statuses[0] == 200,
            "{key} was answered {statuses:?}"
        );
    }
    let sql = db.connect().await;
    let rows = sql
        .query(
            "SELECT payload->>'note' FROM herald_events WHERE event_type LIKE '%note_appended'",
            &[],
        )
        .await
        .unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        let note: String = row.get(0);
        *stored
            .entry(note.trim_start_matches("note ").to_owned())
            .or_default() += 1;
    }
    let doubled: Vec<_> = stored.iter().filter(|(_, &n)| n > 1).collect();
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    let lost: Vec<_> = answered
        .iter()
        .filter(|key| !stored.contains_key(key.as_str()))
        .collect();
    assert!(lost.is_empty(), "answered but not stored: {lost:?}");
    assert!(
        answered.len() >= 2000,
        "{} commands answered",
        answered.len()
    );
}
