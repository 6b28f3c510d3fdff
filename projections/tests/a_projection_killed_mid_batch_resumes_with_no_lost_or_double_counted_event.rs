//! A runner killed while a batch's transaction is open loses nothing and
//! counts nothing twice: the next runner redoes exactly that batch.

mod common;

use std::sync::Arc;

use common::{append, checkpoint, note, scalar, Counting, Hang, WAIT};
use herald_events::Position;
use herald_projections::{ProjectionRunner, RunnerConfig};
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::{watch, Notify};

const STREAMS: usize = 50;
const PER_STREAM: usize = 100;
const TOTAL: i64 = (STREAMS * PER_STREAM) as i64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projection_killed_mid_batch_resumes_with_no_lost_or_double_counted_event() {
    let (db, store, pool) = common::store().await;
    for s in 0..STREAMS {
        let events = (0..PER_STREAM).map(|i| note(json!({ "n": i }))).collect();
        append(&store, &format!("s{s}"), events).await;
    }
    let sql = common::connect(&db).await;
    let config = RunnerConfig {
        batch_size: 500,
        ..RunnerConfig::default()
    };

    // The first runner hangs in the batch 2001..=2500, after writing half of
    // it inside its open transaction, and is killed there.
    let hanging = Arc::new(Counting {
        hang: Some(Hang {
            at: Position(2250),
            reached: Notify::new(),
        }),
        ..Counting::default()
    });
    let first = ProjectionRunner::new(common::own_pool(&db), store.clone(), vec![hanging.clone()])
        .with_config(config.clone());
    first.install().await.expect("install the projection");
    let (_stop_first, stop) = watch::channel(false);
    let task = tokio::spawn(async move { first.run(stop).await });
    tokio::time::timeout(WAIT, hanging.hang.as_ref().unwrap().reached.notified())
        .await
        .expect("the first runner reaches the hanging batch");
    assert_eq!(checkpoint(&sql).await, 2000, "four batches committed");
    assert_eq!(
        scalar(&sql, "SELECT count(*) FROM counting_applied").await,
        2000,
        "the open batch's rows are not visible"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    // A new runner redoes the killed batch and goes on to the end.
    let runner = ProjectionRunner::new(pool, store.clone(), vec![Arc::new(Counting::default())])
        .with_config(config);
    runner.install().await.expect("install the projection");
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    assert!(
        eventually(WAIT, || async { checkpoint(&sql).await == TOTAL }).await,
        "the second runner reaches the head (at {})",
        checkpoint(&sql).await
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("the runner stops cleanly");

    assert_eq!(scalar(&sql, "SELECT n FROM counting_total").await, TOTAL);
    assert_eq!(
        scalar(&sql, "SELECT sum(n)::bigint FROM counting_streams").await,
        TOTAL
    );
    assert_eq!(
        scalar(&sql, "SELECT count(*) FROM counting_streams WHERE n <> 100").await,
        0,
        "every stream counted exactly its events"
    );
    assert_eq!(
        scalar(&sql, "SELECT count(*) FROM counting_applied").await,
        TOTAL
    );
    assert_eq!(
        scalar(&sql, "SELECT count(DISTINCT position) FROM counting_applied WHERE position BETWEEN 1 AND 5000").await,
        TOTAL,
        "every position applied once"
    );
    assert!(runner.parked(common::NAME).await.unwrap().is_empty());
    let status = runner.status(common::NAME).await.unwrap();
    assert_eq!(status.lag_events, 0);
}
