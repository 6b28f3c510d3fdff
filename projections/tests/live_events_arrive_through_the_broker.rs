//! Live projection: with a broker, the runner follows deliveries instead of
//! waiting out its poll interval, and the store still gives every event
//! once, in order (here the poll interval is a minute, so only deliveries
//! can explain progress within seconds).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{append, note, NAME};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::Broker;
use herald_events::Position;
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_arrive_through_the_broker() {
    let (db, store, pool) = common::store().await;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    // Only deliveries move it; an idle poll would hide the point.
    let runner = common::live_runner(store.clone(), pool, Arc::clone(&broker)).await;
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let sql = common::connect(&db).await;
    // The runner is idle (nothing to read) before anything is appended.
    assert!(
        eventually(Duration::from_secs(10), || async {
            runner.status(NAME).await.is_ok()
        })
        .await
    );

    let mut published = 0;
    for round in 0..5 {
        let events = (0..3)
            .map(|i| note(json!({ "round": round, "i": i })))
            .collect();
        append(&store, &format!("s{round}"), events).await;
        // What the relay does after commit.
        let events = store.read_all(Position(published + 1), 100).await.unwrap();
        published += events.len() as u64;
        broker.publish_batch(&events).await.unwrap();
        let expected = published as i64;
        assert!(
            eventually(Duration::from_secs(5), || async {
                common::scalar(&sql, "SELECT n FROM counting_total").await == expected
            })
            .await,
            "round {round}: the delivery woke the projection"
        );
    }
    assert_eq!(
        common::scalar(
            &sql,
            "SELECT count(DISTINCT position) FROM counting_applied"
        )
        .await,
        15
    );
}
