//! The Postgres writer says how it planned each batch it committed:
//! `herald_store_batches_total{path="remembered"}` for batches planned on
//! its memory of the log's head and the streams' versions,
//! `{path="careful"}` for those planned on facts read under the log's lock,
//! and `herald_store_replanned_total` for batches memory got wrong. With
//! stores on one database (as processes would be), a writer that has heard
//! of another's commit plans on facts at once, without a refused attempt;
//! one that could not have heard of it yet (its batch waited for the lock
//! while the other committed) is refused and plans again.

mod conformance;

use conformance::counted;
use herald_events::{EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::telemetry::{BATCHES_TOTAL, REPLANNED_TOTAL};
use std::sync::Arc;
use std::time::Duration;

use herald_events::{EventEnvelope, Position};
use herald_store::{AppendHooks, EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::eventually;
use herald_testkit::TestDatabase;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use tokio::sync::Notify;

async fn append(store: &PostgresStore, stream: &str) {
    let stream: StreamId = format!("tickets/{stream}").parse().unwrap();
    let event = NewEvent::new(
        "tickets.note_appended".parse::<EventType>().unwrap(),
        SchemaVersion::V1,
        json!({ "note": "n" }),
    );
    store
        .append(
            &TenantId::default_tenant(),
            &stream,
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .expect("append");
}

/// Holds a batch's transaction open before its commit until released.
#[derive(Debug, Default)]
struct HoldBeforeCommit {
    reached: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl AppendHooks for HoldBeforeCommit {
    async fn before_commit(&self, _rows: &[EventEnvelope]) -> Result<(), String> {
        self.reached.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_counted_by_path_and_a_stale_memory_by_replan() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("install the recorder");
    let db = TestDatabase::create().await;
    let open = || async {
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the store")
    };
    let (first, second) = (open().await, open().await);
    let remembered = || counted(&metrics, BATCHES_TOTAL, "path=\"remembered\"");
    let careful = || counted(&metrics, BATCHES_TOTAL, "path=\"careful\"");
    let replanned = || counted(&metrics, REPLANNED_TOTAL, "backend=\"postgres\"");

    // A writer's first batch knows nothing yet; its next one is planned on
    // what the first taught it.
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (0, 1, 0));
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (1, 1, 0));

    // The other store moves the head and announces it; the first one hears
    // of it and plans its next batch on facts, with no refused attempt.
    append(&second, "b").await;
    assert_eq!((remembered(), careful(), replanned()), (1, 2, 0));
    assert!(
        eventually(Duration::from_secs(30), || async {
            first.known_head() >= Some(Position(3))
        })
        .await,
        "the first store hears of the second one's commit"
    );
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (1, 3, 0));
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (2, 3, 0));

    // A commit the first store cannot have heard of: a third store holds its
    // batch open under the log's lock, the first one's batch waits for the
    // lock, then the third commits. The first one's plan is refused and
    // made again on facts.
    let hold = Arc::new(HoldBeforeCommit::default());
    let mut config = PostgresConfig::new(db.url());
    config.hooks = Some(hold.clone());
    let third = PostgresStore::open(config).await.expect("open the store");
    let held = tokio::spawn(async move { append(&third, "c").await });
    hold.reached.notified().await;
    let first = Arc::new(first);
    let waiting = tokio::spawn({
        let first = first.clone();
        async move { append(&first, "a").await }
    });
    let sql = db.connect().await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            let waiting: i64 = sql
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            waiting > 0
        })
        .await,
        "the first store's batch waits for the log's lock"
    );
    hold.release.notify_one();
    held.await.unwrap();
    waiting.await.unwrap();
    assert_eq!((remembered(), careful(), replanned()), (2, 5, 1));

    // Everything was written once, in order.
    let events = first
        .read_all(herald_events::Position::START.next(), 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 7);
    assert!(events
        .windows(2)
        .all(|w| w[1].position.get() == w[0].position.get() + 1));
}
