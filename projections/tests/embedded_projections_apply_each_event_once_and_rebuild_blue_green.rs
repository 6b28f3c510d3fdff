//! The SQLite runner of the embedded store keeps the Postgres runner's
//! promises: a runner that dies in the middle of a batch loses nothing and
//! counts nothing twice; a poison event is parked, listed and retried; a new
//! version is built beside the serving tables, which answer until one
//! switch; a rebuild on request equals what it replaced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_events::{
    EventEnvelope, EventType, NewEvent, Position, SchemaVersion, StreamId, TenantId,
};
use herald_projections::embedded::{EmbeddedReadModels, EmbeddedRunner, SqliteProjection};
use herald_projections::{EventFault, ProjectionError, RunnerConfig};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion};
use herald_testkit::eventually;
use rusqlite::params;
use serde_json::json;
use tokio::sync::watch;

const NAME: &str = "counting";
const WAIT: Duration = Duration::from_secs(60);

/// Counts events per stream and logs each applied position under a primary
/// key (applying one twice fails, and would show).
#[derive(Debug, Default)]
struct Counting {
    version: u32,
    /// Panics (the runner's thread dies with the transaction open) on the
    /// batch holding this position, once.
    die_at: Option<(Position, AtomicBool)>,
    /// Slows each batch, to watch a build happen.
    batch_delay: Option<Duration>,
    /// Refuses `"poison": true` payloads until set.
    fixed: AtomicBool,
}

impl SqliteProjection for Counting {
    fn name(&self) -> &'static str {
        NAME
    }
    fn version(&self) -> u32 {
        self.version.max(1)
    }
    fn tables(&self) -> &'static [&'static str] {
        &["streams", "applied"]
    }
    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.stream.domain().as_str() == "tickets"
    }
    fn setup(&self, tx: &rusqlite::Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}streams (stream TEXT PRIMARY KEY, n INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS {prefix}applied (position INTEGER PRIMARY KEY, stream TEXT NOT NULL);"
        ))?;
        Ok(())
    }
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        if let Some(delay) = self.batch_delay {
            std::thread::sleep(delay);
        }
        for (i, event) in events.iter().enumerate() {
            if let Some((at, died)) = &self.die_at {
                if i == events.len() / 2
                    && events.iter().any(|e| e.position == *at)
                    && !died.swap(true, Ordering::SeqCst)
                {
                    panic!("the runner dies in the middle of a batch");
                }
            }
            if event.payload["poison"] == json!(true) && !self.fixed.load(Ordering::SeqCst) {
                return Err(ProjectionError::event(
                    event,
                    EventFault::Other(format!("poison at {}", event.position).into()),
                ));
            }
            tx.execute(
                &format!("INSERT INTO {prefix}applied (position, stream) VALUES (?1, ?2)"),
                params![event.position.get() as i64, event.stream.as_str()],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO {prefix}streams (stream, n) VALUES (?1, 1) \
                     ON CONFLICT (stream) DO UPDATE SET n = n + 1"
                ),
                params![event.stream.as_str()],
            )?;
        }
        Ok(())
    }
}

async fn store(dir: &std::path::Path) -> Arc<dyn EventStore> {
    Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.join("store")))
            .await
            .expect("open the embedded store"),
    )
}

async fn append(store: &Arc<dyn EventStore>, stream: &str, payloads: Vec<serde_json::Value>) {
    let stream: StreamId = format!("tickets/{stream}").parse().unwrap();
    let event_type: EventType = "tickets.note_appended".parse().unwrap();
    let events = payloads
        .into_iter()
        .map(|p| NewEvent::new(event_type.clone(), SchemaVersion::V1, p))
        .collect();
    store
        .append(
            &TenantId::default_tenant(),
            &stream,
            ExpectedVersion::Any,
            events,
        )
        .await
        .expect("append");
}

/// (events applied, distinct positions, sum of the per-stream counts) in
/// the serving generation, and its table prefix.
async fn totals(read_models: &EmbeddedReadModels) -> Result<(String, [i64; 3]), ProjectionError> {
    read_models
        .serving(NAME, |conn, prefix| {
            let one = |sql: String| conn.query_row(&sql, [], |r| r.get::<_, i64>(0));
            Ok((
                prefix.to_owned(),
                [
                    one(format!("SELECT count(*) FROM {prefix}applied"))?,
                    one(format!(
                        "SELECT count(DISTINCT position) FROM {prefix}applied"
                    ))?,
                    one(format!("SELECT coalesce(sum(n), 0) FROM {prefix}streams"))?,
                ],
            ))
        })
        .await
}

fn config() -> RunnerConfig {
    RunnerConfig {
        batch_size: 100,
        rebuild_batch_size: 100,
        poll_interval: Duration::from_millis(20),
        retire_grace: Duration::ZERO,
        ..RunnerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_dying_mid_batch_resumes_with_every_event_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    for s in 0..10 {
        append(
            &store,
            &format!("s{s}"),
            (0..100).map(|i| json!({"note": "n", "i": i})).collect(),
        )
        .await;
    }
    let path = dir.path().join("read-models.db");
    let dying = Arc::new(Counting {
        die_at: Some((Position(450), AtomicBool::new(false))),
        ..Counting::default()
    });
    let first = EmbeddedRunner::new(&path, Arc::clone(&store), vec![dying]).with_config(config());
    let (_stop, stop) = watch::channel(false);
    let died = first.run(stop.clone()).await;
    assert!(matches!(died, Err(ProjectionError::Task(_))), "{died:?}");
    let read_models = first.read_models();
    let (_, [applied, _, _]) = totals(&read_models).await.unwrap();
    assert_eq!(
        applied, 400,
        "the four batches before it committed, nothing of the open one"
    );

    let second = EmbeddedRunner::new(
        &path,
        Arc::clone(&store),
        vec![Arc::new(Counting::default())],
    )
    .with_config(config());
    tokio::spawn({
        let second = second.clone();
        async move { second.run(stop).await }
    });
    assert!(
        eventually(WAIT, || async {
            matches!(totals(&read_models).await, Ok((_, [1000, 1000, 1000])))
        })
        .await,
        "every event once: {:?}",
        totals(&read_models).await
    );
    assert_eq!(second.status(NAME).await.unwrap().lag_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_listed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    append(
        &store,
        "a",
        vec![
            json!({"note": "1"}),
            json!({"note": "2", "poison": true}),
            json!({"note": "3"}),
        ],
    )
    .await;
    let projection = Arc::new(Counting::default());
    let runner = EmbeddedRunner::new(
        dir.path().join("rm.db"),
        Arc::clone(&store),
        vec![projection.clone()],
    )
    .with_config(config());
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let read_models = runner.read_models();
    assert!(
        eventually(WAIT, || async {
            matches!(totals(&read_models).await, Ok((_, [2, 2, 2])))
        })
        .await
    );
    let parked = runner.parked(NAME).await.unwrap();
    assert_eq!(
        parked.iter().map(|p| p.position).collect::<Vec<_>>(),
        [Position(2)]
    );
    assert!(parked[0].error.contains("poison at 2"));
    assert_eq!(runner.status(NAME).await.unwrap().parked, 1);
    assert!(matches!(
        runner.retry_parked(NAME, Position(2)).await,
        Err(ProjectionError::Event { .. })
    ));
    projection.fixed.store(true, Ordering::SeqCst);
    runner.retry_parked(NAME, Position(2)).await.unwrap();
    assert!(runner.parked(NAME).await.unwrap().is_empty());
    assert_eq!(totals(&read_models).await.unwrap().1, [3, 3, 3]);
    assert!(matches!(
        runner.retry_parked(NAME, Position(2)).await,
        Err(ProjectionError::NotParked { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_built_beside_the_serving_tables_and_switched_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    for s in 0..10 {
        append(
            &store,
            &format!("s{s}"),
            (0..100).map(|i| json!({"note": "n", "i": i})).collect(),
        )
        .await;
    }
    let path = dir.path().join("read-models.db");
    let v1 = EmbeddedRunner::new(
        &path,
        Arc::clone(&store),
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
            matches!(totals(&read_models).await, Ok((_, [1000, 1000, 1000])))
        })
        .await
    );
    stop_v1.send(true).unwrap();
    task.await.unwrap().unwrap();

    let v2 = EmbeddedRunner::new(
        &path,
        Arc::clone(&store),
        vec![Arc::new(Counting {
            version: 2,
            batch_delay: Some(Duration::from_millis(20)),
            ..Counting::default()
        })],
    )
    .with_config(config());
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let v2 = v2.clone();
        async move { v2.run(stop).await }
    });
    let seen: std::sync::Mutex<Vec<String>> = std::sync::Mutex::default();
    let switched = eventually(WAIT, || {
        let seen = &seen;
        let read_models = &read_models;
        async move {
            let (prefix, counts) = totals(read_models)
                .await
                .expect("queries answer during the build");
            if prefix == "rm_counting_g1_" {
                assert_eq!(counts, [1000, 1000, 1000], "the old tables serve unchanged");
            } else {
                assert_eq!(
                    counts,
                    [1000, 1000, 1000],
                    "the new tables serve only once built"
                );
            }
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&prefix) {
                seen.push(prefix.clone());
            }
            prefix == "rm_counting_g2_"
        }
    })
    .await;
    assert!(switched);
    assert_eq!(
        *seen.lock().unwrap(),
        ["rm_counting_g1_", "rm_counting_g2_"],
        "served by the old, then the new"
    );
    let status = v2.status(NAME).await.unwrap();
    assert_eq!(
        (status.serving_version, status.generation, status.rebuild),
        (Some(2), Some(2), None)
    );
    let dropped = eventually(WAIT, || {
        let path = path.clone();
        async move {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'rm_counting_g1_%'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 0
        }
    })
    .await;
    assert!(dropped, "the retired tables are dropped");

    // A rebuild on request: a third generation with equal contents.
    assert_eq!(v2.rebuild(NAME).await.unwrap(), 3);
    assert!(
        eventually(WAIT, || async {
            matches!(totals(&read_models).await, Ok((prefix, [1000, 1000, 1000])) if prefix == "rm_counting_g3_")
        })
        .await
    );
    // Older code refuses a read model a newer version serves.
    let stale = EmbeddedRunner::new(
        &path,
        Arc::clone(&store),
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
}
