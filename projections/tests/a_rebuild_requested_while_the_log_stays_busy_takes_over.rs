//! A projection that is never idle — a delivery wakes it again before it
//! runs out of work — still looks for rebuilds (requested by this process or
//! another) and carries them through: the new generation is built beside the
//! serving one and takes over while events keep arriving, and then holds
//! every event once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
async fn a_rebuild_takes_over_while_events_keep_arriving() {
    let (db, store, pool) = common::store().await;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    // Only deliveries move it; an idle poll would hide the point.
    let runner = common::live_runner(store.clone(), pool, Arc::clone(&broker)).await;
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let serving = runner.status(NAME).await.unwrap().generation;

    // A steady trickle, each commit published as the relay would: the
    // projection is woken every few milliseconds, never idle for long.
    let busy = Arc::new(AtomicBool::new(true));
    let appended = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (store, broker, busy, appended) = (
            store.clone(),
            Arc::clone(&broker),
            Arc::clone(&busy),
            Arc::clone(&appended),
        );
        async move {
            let mut published = 0u64;
            let mut n = 0u64;
            while busy.load(Ordering::Relaxed) {
                append(
                    &store,
                    &format!("s{}", n % 7),
                    vec![note(json!({ "n": n }))],
                )
                .await;
                n += 1;
                appended.store(n, Ordering::Relaxed);
                let events = store.read_all(Position(published + 1), 100).await.unwrap();
                published += events.len() as u64;
                // No pause: each append waits for its commit, and the log
                // never stands still.
                broker.publish_batch(&events).await.unwrap();
            }
            n
        }
    });
    assert!(
        eventually(Duration::from_secs(10), || async {
            appended.load(Ordering::Relaxed) >= 50
        })
        .await
    );

    let rebuilt = runner.rebuild(NAME).await.unwrap();
    assert_ne!(Some(rebuilt), serving);
    let took_over = eventually(Duration::from_secs(20), || async {
        runner.status(NAME).await.unwrap().generation == Some(rebuilt)
    })
    .await;
    let during = appended.load(Ordering::Relaxed);
    busy.store(false, Ordering::Relaxed);
    let total = writer.await.unwrap();
    assert!(
        took_over,
        "the rebuilt generation {rebuilt} did not take over while {during} events had been appended"
    );

    // Every event once, in the generation that serves now.
    let sql = common::connect(&db).await;
    let expected = total as i64;
    let count = format!("SELECT n FROM rm_{NAME}_g{rebuilt}.counting_total");
    assert!(
        eventually(Duration::from_secs(10), || async {
            common::scalar(&sql, &count).await == expected
        })
        .await,
        "the serving generation holds {} of {expected} events",
        common::scalar(&sql, &count).await
    );
}
