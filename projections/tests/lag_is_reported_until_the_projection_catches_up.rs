//! A projection's lag is reported in events and seconds while it is behind,
//! and is zero once it has caught up.

mod common;

use std::sync::Arc;

use common::{append, note, Counting, NAME, WAIT};
use herald_events::Position;
use herald_projections::ProjectionRunner;
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_is_reported_until_the_projection_catches_up() {
    let (_db, store, pool) = common::store().await;
    append(
        &store,
        "a",
        (0..10).map(|i| note(json!({ "n": i }))).collect(),
    )
    .await;
    // The second batch must be recorded at least 100 ms after the first, so
    // the lag in seconds is measurable: wait for the clock to get there.
    let first = store.read_all(Position(1), 1).await.unwrap()[0].recorded_at;
    let later = eventually(WAIT, || async {
        chrono::Utc::now() - first >= chrono::Duration::milliseconds(100)
    })
    .await;
    assert!(later, "the clock did not move");
    append(
        &store,
        "b",
        (0..10).map(|i| note(json!({ "n": i }))).collect(),
    )
    .await;

    let runner = ProjectionRunner::new(pool, store.clone(), vec![Arc::new(Counting::default())]);
    let behind = runner.status(NAME).await.unwrap();
    assert_eq!(behind.position, Position(0));
    assert_eq!(behind.head, Position(20));
    assert_eq!(behind.lag_events, 20);
    assert!(behind.lag_seconds >= 0.09, "{behind:?}");
    assert_eq!(behind.last_progress_at, None);

    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    assert!(
        eventually(WAIT, || async {
            runner.status(NAME).await.unwrap().lag_events == 0
        })
        .await
    );
    let caught_up = runner.status(NAME).await.unwrap();
    assert_eq!(caught_up.position, Position(20));
    assert_eq!(caught_up.head, Position(20));
    assert_eq!(caught_up.lag_seconds, 0.0);
    assert!(caught_up.last_progress_at.is_some());

    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("the runner stops cleanly");
}
