//! With several runners on one store (one per process), one at a time runs
//! each projection and the others stand by: a stand-by applies nothing
//! while the running one lives, takes over once a killed one's lease has
//! expired, and at once when the running one stops cleanly. Across the
//! hand-overs every event is applied exactly once.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{append, checkpoint, note, scalar, Counting, WAIT};
use herald_projections::{ProjectionRunner, RunnerConfig};
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::watch;

const PER_ROUND: usize = 600;

async fn append_round(store: &Arc<dyn herald_store::EventStore>, round: usize) {
    for s in 0..6 {
        let events = (0..PER_ROUND / 6)
            .map(|i| note(json!({ "round": round, "i": i })))
            .collect();
        append(store, &format!("r{round}s{s}"), events).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_runs_each_projection_and_another_takes_over() {
    let (db, store, _pool) = common::store().await;
    let sql = common::connect(&db).await;
    let quick = RunnerConfig {
        lease_ttl: Duration::from_secs(2),
        renew_every: Duration::from_millis(400),
        standby_poll: Duration::from_millis(100),
        ..RunnerConfig::default()
    };
    let runner = |counting: &Arc<Counting>, config: &RunnerConfig| {
        ProjectionRunner::new(common::own_pool(&db), store.clone(), vec![counting.clone()])
            .with_config(config.clone())
    };

    // `first` runs the projection; `second` stands by from before the next
    // events exist, and applies none of them.
    let first_counting = Arc::new(Counting::default());
    let first = runner(&first_counting, &quick);
    first.install().await.expect("install the projection");
    let (_keep_first, stop) = watch::channel(false);
    let first_task = tokio::spawn({
        let first = first.clone();
        async move { first.run(stop).await }
    });
    append_round(&store, 1).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == PER_ROUND as i64
        })
        .await,
        "the first runner projects the first round"
    );
    // The second one's lease, once taken, would outlive this test's waits:
    // it hands over within them only by releasing it on a clean stop.
    let second_counting = Arc::new(Counting::default());
    let second = runner(
        &second_counting,
        &RunnerConfig {
            lease_ttl: Duration::from_secs(300),
            ..quick.clone()
        },
    );
    let (stop_second, stop) = watch::channel(false);
    let second_task = tokio::spawn({
        let second = second.clone();
        async move { second.run(stop).await }
    });
    append_round(&store, 2).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == 2 * PER_ROUND as i64
        })
        .await,
        "the second round is projected"
    );
    assert_eq!(
        second_counting.applied.load(Ordering::SeqCst),
        0,
        "the stand-by applied nothing while the first runner lived"
    );
    assert_eq!(
        first_counting.applied.load(Ordering::SeqCst),
        2 * PER_ROUND as u64
    );

    // Killed, the first runner keeps its lease until it expires; then the
    // stand-by goes on from the checkpoint.
    first_task.abort();
    assert!(first_task.await.unwrap_err().is_cancelled());
    append_round(&store, 3).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == 3 * PER_ROUND as i64
        })
        .await,
        "the stand-by takes over from the killed runner (at {})",
        checkpoint(&sql).await
    );
    assert_eq!(
        second_counting.applied.load(Ordering::SeqCst),
        PER_ROUND as u64,
        "the stand-by applied the third round and nothing before it"
    );

    // A third runner stands by; the second stops cleanly and hands over
    // without its long lease running out.
    let third_counting = Arc::new(Counting::default());
    let third = runner(&third_counting, &quick);
    let (stop_third, stop) = watch::channel(false);
    let third_task = tokio::spawn({
        let third = third.clone();
        async move { third.run(stop).await }
    });
    stop_second.send(true).unwrap();
    second_task
        .await
        .unwrap()
        .expect("the second runner stops cleanly");
    append_round(&store, 4).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == 4 * PER_ROUND as i64
        })
        .await,
        "the third runner takes over from the stopped one (at {})",
        checkpoint(&sql).await
    );
    assert_eq!(
        third_counting.applied.load(Ordering::SeqCst),
        PER_ROUND as u64
    );
    stop_third.send(true).unwrap();
    third_task.await.unwrap().expect("the third runner stops");

    let total = 4 * PER_ROUND as i64;
    assert_eq!(scalar(&sql, "SELECT n FROM counting_total").await, total);
    assert_eq!(
        scalar(
            &sql,
            "SELECT count(DISTINCT position) FROM counting_applied"
        )
        .await,
        total,
        "every event applied exactly once across the hand-overs"
    );
    assert_eq!(
        scalar(
            &sql,
            "SELECT count(*) FROM herald_projection_leases WHERE name = 'counting'"
        )
        .await,
        0,
        "a clean stop leaves no lease behind"
    );
}

/// A process alone on its store (`alone`, as `herald serve` on the
/// in-process broker is) takes no lease: restarted after a crash, it goes
/// on at once, even while the dead runner's lease would hold for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_alone_on_its_store_goes_on_without_waiting_for_a_lease() {
    let (db, store, _pool) = common::store().await;
    let sql = common::connect(&db).await;
    let crashed_counting = Arc::new(Counting::default());
    let crashed = ProjectionRunner::new(
        common::own_pool(&db),
        store.clone(),
        vec![crashed_counting.clone()],
    )
    .with_config(RunnerConfig {
        lease_ttl: Duration::from_secs(300),
        ..RunnerConfig::default()
    });
    crashed.install().await.expect("install the projection");
    let (_keep, stop) = watch::channel(false);
    let task = tokio::spawn(async move { crashed.run(stop).await });
    append_round(&store, 1).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == PER_ROUND as i64
        })
        .await,
        "the first runner projects the first round"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let restarted_counting = Arc::new(Counting::default());
    let restarted = ProjectionRunner::new(
        common::own_pool(&db),
        store.clone(),
        vec![restarted_counting.clone()],
    )
    .with_config(RunnerConfig {
        alone: true,
        ..RunnerConfig::default()
    });
    let (stop_restarted, stop) = watch::channel(false);
    let task = tokio::spawn({
        let restarted = restarted.clone();
        async move { restarted.run(stop).await }
    });
    append_round(&store, 2).await;
    assert!(
        eventually(WAIT, || async {
            checkpoint(&sql).await == 2 * PER_ROUND as i64
        })
        .await,
        "the restarted runner goes on without the dead one's lease (at {})",
        checkpoint(&sql).await
    );
    assert_eq!(
        restarted_counting.applied.load(Ordering::SeqCst),
        PER_ROUND as u64
    );
    stop_restarted.send(true).unwrap();
    task.await.unwrap().expect("the runner stops");
}
