//! Several followers of the log in one process (subscriptions, projection
//! runners, the relay, the timer scheduler) are woken together by another
//! process's commit. One of them reads it from the database; the others
//! find that page in memory. Every follower still sees every event once, in
//! order, with no gap. `herald_store_log_reads_total{source=...}` says
//! which way each page came.

mod conformance;

use std::time::Duration;

use futures::StreamExt;
use herald_events::{EventType, NewEvent, Position, SchemaVersion, StreamId, TenantId};
use herald_store::telemetry::LOG_READS_TOTAL;
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

const FOLLOWERS: usize = 4;
const COMMITS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_one_process_share_one_read_of_a_foreign_commit() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("install the recorder");
    let db = TestDatabase::create().await;
    let open = || async {
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the store")
    };
    // Two processes: one writes, the other only follows.
    let (writer, follower) = (open().await, open().await);
    let start = follower.head().await.expect("head").position;

    let mut followers = (0..FOLLOWERS)
        .map(|_| {
            let mut log = follower.subscribe_all(start.next());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while seen.len() < COMMITS as usize {
                    let event = tokio::time::timeout(Duration::from_secs(20), log.next())
                        .await
                        .expect("every commit reaches every follower within 20 s")
                        .expect("the log does not end")
                        .expect("the read succeeds");
                    seen.push(event.position);
                }
                seen
            })
        })
        .collect::<Vec<_>>();

    let stream: StreamId = "tickets/T-read-once".parse().unwrap();
    for n in 0..COMMITS {
        // One commit at a time, each waited for: every one is a separate
        // wake-up of the followers.
        writer
            .append(
                &TenantId::default_tenant(),
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "tickets.note_appended".parse::<EventType>().unwrap(),
                    SchemaVersion::V1,
                    json!({ "note": format!("n{n}") }),
                )],
            )
            .await
            .expect("append");
    }

    let expected: Vec<Position> = (1..=COMMITS).map(|n| Position(start.get() + n)).collect();
    for handle in followers.drain(..) {
        let seen = handle.await.expect("follower");
        assert_eq!(
            seen, expected,
            "each follower sees every event once, in order"
        );
    }

    let database = conformance::counted(&metrics, LOG_READS_TOTAL, "source=\"database\"");
    let memory = conformance::counted(&metrics, LOG_READS_TOTAL, "source=\"memory\"");
    // Without sharing, each follower reads each commit (or run of commits)
    // itself: FOLLOWERS times the database reads of one follower.
    assert!(
        (1..=COMMITS * 3 / 2).contains(&database),
        "one database read per commit at most, not one per follower: {database} database, {memory} memory"
    );
    assert!(
        memory >= database * (FOLLOWERS as u64 - 1) / 2,
        "the other followers are answered from memory: {database} database, {memory} memory"
    );
}
