//! A projection that is never idle — every read it makes finds new events —
//! still looks for rebuilds (requested by this process or another) and
//! carries them through: the new generation is built beside the serving one
//! and takes over while events keep arriving, and then holds every event
//! once.
//!
//! The log is kept busy by the projection itself ([`common::KeepBusy`]):
//! each batch it applies appends and publishes one more event before it
//! returns, so no read of either generation ever comes back empty, on any
//! machine and under any load. A build that waited for an empty read before
//! taking over would wait forever here.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{append, note, Counting, KeepBusy, NAME, WAIT};
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
    let busy = KeepBusy::new(store.clone(), Arc::clone(&broker));
    // Only deliveries move it; an idle poll would hide the point.
    let runner = common::live_runner_of(
        Counting {
            keep_busy: Some(Arc::clone(&busy)),
            ..Counting::default()
        },
        store.clone(),
        pool,
        Arc::clone(&broker),
    )
    .await;
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let serving = runner.status(NAME).await.unwrap().generation;

    // The first events, published as the relay would; from then on every
    // applied batch brings the next one.
    for n in 0..50 {
        append(
            &store,
            &format!("first{}", n % 7),
            vec![note(json!({ "first": n }))],
        )
        .await;
    }
    let first = store.read_all(Position::START.next(), 100).await.unwrap();
    broker.publish_batch(&first).await.unwrap();
    assert!(
        eventually(WAIT, || async {
            busy.appended.load(Ordering::SeqCst) >= 20
        })
        .await,
        "the serving generation did not keep the log busy: {} appended",
        busy.appended.load(Ordering::SeqCst)
    );

    let rebuilt = runner.rebuild(NAME).await.unwrap();
    assert_ne!(Some(rebuilt), serving);
    let took_over = eventually(WAIT, || async {
        runner.status(NAME).await.unwrap().generation == Some(rebuilt)
    })
    .await;
    let during = busy.appended.load(Ordering::SeqCst);
    busy.stop().await;
    assert!(
        took_over,
        "the rebuilt generation {rebuilt} did not take over while {during} events had been appended"
    );

    // Every event once, in the generation that serves now.
    let sql = common::connect(&db).await;
    let count = format!("SELECT n FROM rm_{NAME}_g{rebuilt}.counting_total");
    let appended = busy.appended.load(Ordering::SeqCst) as i64;
    assert_eq!(
        store.head().await.unwrap().position.get() as i64,
        50 + appended,
        "the log holds the first events and those appended while busy"
    );
    assert!(
        eventually(WAIT, || async {
            common::scalar(&sql, &count).await == 50 + appended
        })
        .await,
        "the serving generation holds {} of {} events",
        common::scalar(&sql, &count).await,
        50 + appended
    );
}
