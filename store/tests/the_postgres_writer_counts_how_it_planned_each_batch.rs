//! The Postgres writer says how it planned each batch it committed:
//! `herald_store_batches_total{path="remembered"}` for batches planned on
//! its memory of the log's head and the streams' versions,
//! `{path="careful"}` for those planned on facts read under the log's lock,
//! and `herald_store_replanned_total` for batches memory got wrong. Two
//! stores on one database (as two processes would be) show a replan when
//! one appends after the other moved the head.

use herald_events::{EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::telemetry::{BATCHES_TOTAL, REPLANNED_TOTAL};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

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

/// The value of the series of `family` whose labels include `label`.
fn counted(metrics: &PrometheusHandle, family: &str, label: &str) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(family) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0)
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

    // The other store moves the head; the first one's memory is now wrong,
    // and the database says so before anything is written.
    append(&second, "b").await;
    assert_eq!((remembered(), careful(), replanned()), (1, 2, 0));
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (1, 3, 1));

    // Replanned on facts, it remembers again.
    append(&first, "a").await;
    assert_eq!((remembered(), careful(), replanned()), (2, 3, 1));

    // Everything was written once, in order.
    let events = first
        .read_all(herald_events::Position::START.next(), 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 5);
    assert!(events
        .windows(2)
        .all(|w| w[1].position.get() == w[0].position.get() + 1));
}
