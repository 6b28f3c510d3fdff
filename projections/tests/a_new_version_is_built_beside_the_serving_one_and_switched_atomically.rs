//! Blue-green rebuilds: bumping a projection's version builds the new
//! version's tables beside the serving ones, which keep answering (with
//! complete, never half-built, contents) until the new ones have caught up;
//! then one switch makes the new generation serve, the old one is dropped,
//! and nothing is lost or counted twice across the switch. A rebuild asked
//! for by name does the same with the same version.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{append, note, Counting, NAME, WAIT};
use herald_projections::{ProjectionError, ProjectionRunner, ReadModels, RunnerConfig};
use herald_testkit::eventually;
use serde_json::json;
use tokio::sync::watch;

const STREAMS: usize = 20;
const PER_STREAM: usize = 100;

fn config() -> RunnerConfig {
    RunnerConfig {
        batch_size: 200,
        rebuild_batch_size: 200,
        poll_interval: Duration::from_millis(20),
        retire_grace: Duration::ZERO,
        ..RunnerConfig::default()
    }
}

/// The serving generation's total, read the way a query does.
async fn serving_total(read_models: &ReadModels) -> Result<(String, i64), ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let row = client
        .query_one(&format!("SELECT n FROM {schema}.counting_total"), &[])
        .await?;
    Ok((schema, row.get(0)))
}

async fn schema_exists(sql: &tokio_postgres::Client, schema: &str) -> bool {
    common::scalar_with(
        sql,
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
        schema,
    )
    .await
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_is_built_beside_the_serving_one_and_switched_atomically() {
    let (db, store, pool) = common::store().await;
    for s in 0..STREAMS {
        let events = (0..PER_STREAM).map(|i| note(json!({ "n": i }))).collect();
        append(&store, &format!("s{s}"), events).await;
    }
    let first_total = (STREAMS * PER_STREAM) as i64;
    let sql = db.connect().await;

    // Version 1 serves everything.
    let v1 = ProjectionRunner::new(
        pool.clone(),
        store.clone(),
        vec![Arc::new(Counting::default())],
    )
    .with_config(config());
    let read_models = v1.read_models();
    let (stop_v1, stop) = watch::channel(false);
    let task = tokio::spawn({
        let v1 = v1.clone();
        async move { v1.run(stop).await }
    });
    assert!(
        eventually(WAIT, || async {
            matches!(serving_total(&read_models).await, Ok((_, n)) if n == first_total)
        })
        .await
    );
    stop_v1.send(true).unwrap();
    task.await.unwrap().unwrap();

    // Version 2, slowed down so the build is watched while it happens, and
    // more events arriving during the build.
    let v2 = ProjectionRunner::new(
        pool.clone(),
        store.clone(),
        vec![Arc::new(Counting {
            version: Some(2),
            batch_delay: Some(Duration::from_millis(30)),
            ..Counting::default()
        })],
    )
    .with_config(config());
    let (_stop_v2, stop) = watch::channel(false);
    tokio::spawn({
        let v2 = v2.clone();
        async move { v2.run(stop).await }
    });

    // Queries keep answering throughout, always from a complete generation:
    // the old one (exactly its total) until the switch, then the new one.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn({
        let done = done.clone();
        let answered = answered.clone();
        let read_models = read_models.clone();
        async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let (schema, total) = serving_total(&read_models)
                    .await
                    .expect("a query answers during the rebuild");
                answered.fetch_add(1, Ordering::SeqCst);
                if schema == "rm_counting_g1" {
                    assert_eq!(total, first_total, "the old generation serves unchanged");
                } else {
                    assert_eq!(schema, "rm_counting_g2");
                    assert!(
                        total >= first_total,
                        "the new generation serves only once built"
                    );
                }
                if seen.last() != Some(&schema) {
                    seen.push(schema);
                }
                tokio::task::yield_now().await;
            }
            seen
        }
    });
    assert!(
        eventually(WAIT, || async {
            v2.status(NAME)
                .await
                .is_ok_and(|s| s.rebuild.is_some_and(|r| r.position.get() > 0))
        })
        .await,
        "the build makes progress beside the serving generation"
    );
    let during = v2.status(NAME).await.unwrap();
    assert_eq!(during.serving_version, Some(1));
    assert_eq!(during.generation, Some(1));
    assert_eq!(during.rebuild.as_ref().unwrap().version, 2);
    for s in 0..STREAMS {
        append(
            &store,
            &format!("s{s}"),
            vec![note(json!({ "late": true }))],
        )
        .await;
    }
    let total = first_total + STREAMS as i64;

    assert!(
        eventually(WAIT, || async {
            matches!(serving_total(&read_models).await, Ok((schema, n)) if schema == "rm_counting_g2" && n == total)
        })
        .await,
        "the new version serves every event once"
    );
    done.store(true, Ordering::SeqCst);
    let seen = watcher.await.expect("every answer was complete");
    assert_eq!(seen, ["rm_counting_g1", "rm_counting_g2"], "one switch");
    assert!(answered.load(Ordering::SeqCst) > 10);
    let after = v2.status(NAME).await.unwrap();
    assert_eq!(
        (after.serving_version, after.generation, after.rebuild),
        (Some(2), Some(2), None)
    );
    assert_eq!(
        common::scalar(
            &sql,
            "SELECT count(DISTINCT position) FROM rm_counting_g2.counting_applied"
        )
        .await,
        total,
        "each event applied once across the switch"
    );
    assert!(
        eventually(WAIT, || async {
            !schema_exists(&sql, "rm_counting_g1").await
        })
        .await,
        "the retired generation is dropped after its grace period"
    );

    // The older code refuses to touch a read model a newer version serves.
    let stale = ProjectionRunner::new(
        pool.clone(),
        store.clone(),
        vec![Arc::new(Counting::default())],
    );
    assert!(matches!(
        stale.install().await,
        Err(ProjectionError::VersionMismatch {
            stored: 2,
            code: 1,
            ..
        })
    ));

    // A rebuild on request, same version: a third generation replaces the
    // second with equal contents (kept aside here, as the second is dropped).
    for table in ["counting_streams", "counting_applied"] {
        sql.batch_execute(&format!(
            "CREATE TABLE public.before_{table} AS SELECT * FROM rm_counting_g2.{table}"
        ))
        .await
        .unwrap();
    }
    let generation = v2.rebuild(NAME).await.unwrap();
    assert_eq!(generation, 3);
    assert_eq!(v2.rebuild(NAME).await.unwrap(), 3, "one rebuild at a time");
    assert!(
        eventually(WAIT, || async {
            matches!(serving_total(&read_models).await, Ok((schema, n)) if schema == "rm_counting_g3" && n == total)
        })
        .await
    );
    for table in ["counting_streams", "counting_applied"] {
        let differing = common::scalar(
            &sql,
            &format!(
                "SELECT count(*) FROM ((SELECT * FROM rm_counting_g3.{table} EXCEPT ALL \
                 SELECT * FROM public.before_{table}) UNION ALL (SELECT * FROM \
                 public.before_{table} EXCEPT ALL SELECT * FROM rm_counting_g3.{table})) d"
            ),
        )
        .await;
        assert_eq!(differing, 0, "{table}: the rebuild equals what it replaced");
    }
}
