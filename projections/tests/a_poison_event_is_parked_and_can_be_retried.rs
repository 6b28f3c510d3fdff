//! A poison event is parked with its error while the projection goes on;
//! once its cause is fixed, retrying it applies it exactly once.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{append, checkpoint, note, scalar, Counting, NAME, WAIT};
use herald_events::Position;
use herald_projections::{ProjectionError, ProjectionRunner};
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_is_parked_and_can_be_retried() {
    let (db, store, pool) = common::store().await;
    // Position 5 is poison, in the middle of one batch.
    let events = (1..=10)
        .map(|i| note(json!({ "n": i, "poison": i == 5 })))
        .collect();
    append(&store, "p", events).await;
    let sql = common::connect(&db).await;

    let projection = Arc::new(Counting::default());
    let runner = ProjectionRunner::new(pool, store.clone(), vec![projection.clone()]);
    runner.install().await.expect("install the projection");
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    assert!(eventually(WAIT, || async { checkpoint(&sql).await == 10 }).await);
    assert_eq!(
        scalar(&sql, "SELECT count(*) FROM counting_applied").await,
        9,
        "every event but the poison one, each once"
    );
    assert_eq!(
        scalar(
            &sql,
            "SELECT count(*) FROM counting_applied WHERE position = 5"
        )
        .await,
        0
    );
    let parked = runner.parked(NAME).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].position, Position(5));
    assert!(parked[0].error.contains("poison"), "{}", parked[0].error);

    // Later events are still applied.
    append(
        &store,
        "p",
        (11..=15).map(|i| note(json!({ "n": i }))).collect(),
    )
    .await;
    assert!(eventually(WAIT, || async { checkpoint(&sql).await == 15 }).await);
    assert_eq!(scalar(&sql, "SELECT n FROM counting_total").await, 14);

    // A retry before the fix fails and keeps it parked.
    let err = runner.retry_parked(NAME, Position(5)).await.unwrap_err();
    assert!(matches!(err, ProjectionError::Event { .. }), "{err}");
    assert_eq!(runner.parked(NAME).await.unwrap().len(), 1);

    projection.fixed.store(true, Ordering::SeqCst);
    runner
        .retry_parked(NAME, Position(5))
        .await
        .expect("the retry applies it");
    assert!(runner.parked(NAME).await.unwrap().is_empty());
    assert_eq!(
        scalar(
            &sql,
            "SELECT count(*) FROM counting_applied WHERE position = 5"
        )
        .await,
        1
    );
    assert_eq!(scalar(&sql, "SELECT n FROM counting_total").await, 15);
    let again = runner.retry_parked(NAME, Position(5)).await.unwrap_err();
    assert!(
        matches!(again, ProjectionError::NotParked { .. }),
        "{again}"
    );
    assert_eq!(scalar(&sql, "SELECT n FROM counting_total").await, 15);

    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("the runner stops cleanly");
}
