//! The projections' conformance suite: every read model must answer on
//! each read-model backend exactly what it answers on Postgres. A test
//! body gets the [`Backend`] under test and a [`Fixture`]: one Postgres
//! store, a reference runner projecting it into Postgres (in the store's
//! database) and a runner of the same read models on the backend under
//! test (Postgres in a database of its own, or SQLite in a fresh file),
//! with other batch sizes. [`conformance!`] runs a body once per backend,
//! as the store's suite does.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use herald_events::{NewEvent, StreamId, TenantId};
use herald_projections::embedded::{EmbeddedReadModels, EmbeddedRunner};
use herald_projections::read_models;
use herald_projections::{
    ParkedEvent, ProjectionError, ProjectionRunner, ProjectionStatus, ReadModels, RunnerConfig,
    Serving,
};
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::{eventually, TestDatabase};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::common::WAIT;

/// The read-model backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Postgres, in a database of its own (not the store's).
    Postgres,
    /// SQLite, in a fresh file (the embedded store's read side).
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "Postgres",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// Runs an async test body against both backends, one `#[tokio::test]` each.
#[macro_export]
macro_rules! conformance {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::conformance::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::conformance::Backend::Sqlite).await;
            }
        }
    };
}

/// A runner on either backend.
#[derive(Debug, Clone)]
pub enum Runner {
    Postgres(ProjectionRunner),
    Sqlite(EmbeddedRunner),
}

macro_rules! either {
    ($runner:expr, |$r:ident| $body:expr) => {
        match $runner {
            Runner::Postgres($r) => $body,
            Runner::Sqlite($r) => $body,
        }
    };
}

impl Runner {
    pub async fn install(&self) -> Result<(), ProjectionError> {
        either!(self, |r| r.install().await)
    }

    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        either!(self, |r| r.run(stop).await)
    }

    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        either!(self, |r| r.status(name).await)
    }

    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        either!(self, |r| r.statuses().await)
    }

    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, ProjectionError> {
        either!(self, |r| r.parked(name).await)
    }

    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        either!(self, |r| r.rebuild(name).await)
    }

    pub fn read_models(&self) -> Models {
        match self {
            Runner::Postgres(r) => Models::Postgres(r.read_models()),
            Runner::Sqlite(r) => Models::Sqlite(r.read_models()),
        }
    }
}

/// The query side of either backend, as the query functions take it
/// (`&models`).
#[derive(Debug, Clone)]
pub enum Models {
    Postgres(ReadModels),
    Sqlite(EmbeddedReadModels),
}

impl<'a> From<&'a Models> for Serving<'a> {
    fn from(models: &'a Models) -> Self {
        match models {
            Models::Postgres(m) => Serving::from(m),
            Models::Sqlite(m) => Serving::from(m),
        }
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "herald-projections-conformance-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the runner under test keeps its read models.
enum Place {
    Postgres(TestDatabase),
    Sqlite(TempDir),
}

/// One Postgres store, the Postgres reference runner on it and the runner
/// under test, both projecting the read models named, neither started.
pub struct Fixture {
    pub backend: Backend,
    pub store: Arc<dyn EventStore>,
    /// Postgres, in the store's database: what every backend must answer.
    pub reference: ProjectionRunner,
    pub tested: Runner,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<Result<(), ProjectionError>>>,
    _place: Place,
    _db: TestDatabase,
}

impl Fixture {
    /// A fixture of the read models `names` (of [`read_models::all`]),
    /// the reference runner with `reference` and the one under test with
    /// `tested` (other batch sizes, so that the folds over stored rows must
    /// agree whatever the batches).
    pub async fn new(
        backend: Backend,
        names: &[&str],
        reference: RunnerConfig,
        tested: RunnerConfig,
    ) -> Self {
        let (db, store, pool) = crate::common::store().await;
        let reference = ProjectionRunner::new(
            pool,
            Arc::clone(&store),
            read_models::all()
                .into_iter()
                .filter(|p| names.contains(&p.name()))
                .collect(),
        )
        .with_config(reference);
        let (place, runner) = match backend {
            Backend::Postgres => {
                let own = TestDatabase::create().await;
                let runner = ProjectionRunner::new(
                    crate::common::own_pool(&own),
                    Arc::clone(&store),
                    read_models::all()
                        .into_iter()
                        .filter(|p| names.contains(&p.name()))
                        .collect(),
                )
                .with_config(tested);
                (Place::Postgres(own), Runner::Postgres(runner))
            }
            Backend::Sqlite => {
                let dir = TempDir::new();
                let runner = EmbeddedRunner::new(
                    dir.0.join("read-models.db"),
                    Arc::clone(&store),
                    read_models::all_embedded()
                        .into_iter()
                        .filter(|p| names.contains(&p.name()))
                        .collect(),
                )
                .with_config(tested);
                (Place::Sqlite(dir), Runner::Sqlite(runner))
            }
        };
        let (stop, stopped) = watch::channel(false);
        Self {
            backend,
            store,
            reference,
            tested: runner,
            stop,
            stopped,
            tasks: Vec::new(),
            _place: place,
            _db: db,
        }
    }

    /// Installs both runners' read models.
    pub async fn install(&self) {
        self.reference.install().await.expect("install on Postgres");
        self.tested
            .install()
            .await
            .unwrap_or_else(|e| panic!("install on {}: {e}", self.backend.name()));
    }

    /// Starts both runners.
    pub fn start(&mut self) {
        let reference = self.reference.clone();
        let stopped = self.stopped.clone();
        self.tasks
            .push(tokio::spawn(async move { reference.run(stopped).await }));
        let tested = self.tested.clone();
        let stopped = self.stopped.clone();
        self.tasks
            .push(tokio::spawn(async move { tested.run(stopped).await }));
    }

    /// Starts the runner under test only (the reference stays idle).
    pub fn start_tested(&mut self) {
        let tested = self.tested.clone();
        let stopped = self.stopped.clone();
        self.tasks
            .push(tokio::spawn(async move { tested.run(stopped).await }));
    }

    /// Stops the runners and asserts that they stop cleanly.
    pub async fn stop(&mut self) {
        self.stop.send(true).unwrap();
        for task in self.tasks.drain(..) {
            task.await.unwrap().expect("a runner stops cleanly");
        }
    }

    /// Appends `events` to `stream` of `tenant`.
    pub async fn append(&self, tenant: &str, stream: &str, events: Vec<NewEvent>) {
        let stream: StreamId = stream.parse().expect("a stream id");
        self.store
            .append(
                &TenantId::new(tenant).unwrap(),
                &stream,
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append");
    }

    /// Both query sides: the reference's and the tested one's.
    pub fn both(&self) -> (ReadModels, Models) {
        (self.reference.read_models(), self.tested.read_models())
    }

    /// The events parked by both runners for `name`, which must be the
    /// same events with the same errors; how many.
    pub async fn parked_alike(&self, name: &str) -> usize {
        let of = |list: Vec<ParkedEvent>| {
            list.into_iter()
                .map(|p| (p.position, p.event_id, p.error))
                .collect::<Vec<_>>()
        };
        let reference = of(self.reference.parked(name).await.unwrap());
        assert_eq!(
            of(self.tested.parked(name).await.unwrap()),
            reference,
            "{name}: {} parks the events Postgres parks, with the same errors",
            self.backend.name()
        );
        reference.len()
    }

    /// Rebuilds `name` on the runner under test and waits for the new
    /// generation to serve.
    pub async fn rebuild(&self, name: &str) {
        let serving = self.tested.status(name).await.unwrap().generation;
        assert!(serving.is_some(), "{name} serves before its rebuild");
        let building = self.tested.rebuild(name).await.unwrap();
        assert_ne!(Some(building), serving);
        let switched = eventually(WAIT, || async {
            let status = self.tested.status(name).await.unwrap();
            status.rebuild.is_none() && status.generation == Some(building)
        })
        .await;
        assert!(
            switched,
            "the rebuild of {name} on {} takes over",
            self.backend.name()
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Asserts that the tested backend's answer serializes as the reference's
/// (an error by its message) and gives the reference's answer.
pub fn same<T: Serialize>(
    what: &str,
    reference: Result<T, ProjectionError>,
    tested: Result<T, ProjectionError>,
) -> Result<T, String> {
    let json = |r: &Result<T, ProjectionError>| match r {
        Ok(answer) => Ok(serde_json::to_value(answer).expect("an answer serializes")),
        Err(e) => Err(e.to_string()),
    };
    assert_eq!(
        json(&tested),
        json(&reference),
        "tested (left) = Postgres (right): {what}"
    );
    reference.map_err(|e| e.to_string())
}
