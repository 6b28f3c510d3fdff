//! [`ReadSide`]: a process's read models as one value — the runner that
//! projects the log into them and the handle that queries them — on
//! whichever database the store implies: Postgres (the store's own
//! database) or SQLite beside the embedded store. Everything the binary
//! does with read models goes through it, so no caller ever matches on the
//! backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_brokers::{Broker, Topic};
use herald_events::Position;
use herald_store::{EventStore, StoreLocation};
use tokio::sync::watch;

use crate::diff::{DetachedBuild, Progress, ProjectionDiff};
use crate::embedded::{EmbeddedReadModels, SqliteProjection};
use crate::{
    EmbeddedRunner, ParkedEvent, Projection, ProjectionError, ProjectionRunner, ProjectionStatus,
    ReadModels, RunnerConfig, Serving,
};

/// The file of the SQLite read models in the embedded store's data
/// directory.
pub const READ_MODELS_FILE: &str = "read-models.db";

/// How many database connections the read side keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSideSettings {
    /// On Postgres, the most connections of the read side's pool (queries
    /// and the runner together); on SQLite, the idle read connections kept
    /// between queries (the runner writes through one connection of its
    /// own).
    pub pool_size: usize,
}

impl Default for ReadSideSettings {
    fn default() -> Self {
        Self { pool_size: 16 }
    }
}

/// The projections a read side may run, for each database: every read
/// model serves both, but through two traits (SQLite is synchronous).
#[derive(Default, Clone)]
pub struct ReadModelSet {
    pub postgres: Vec<Arc<dyn Projection>>,
    pub sqlite: Vec<Arc<dyn SqliteProjection>>,
}

impl std::fmt::Debug for ReadModelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelSet")
            .field(
                "postgres",
                &self.postgres.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "sqlite",
                &self.sqlite.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ReadModelSet {
    /// Adds a read model that serves both databases.
    pub fn with<M: Projection + SqliteProjection>(mut self, model: M) -> Self {
        let model = Arc::new(model);
        self.postgres
            .push(Arc::clone(&model) as Arc<dyn Projection>);
        self.sqlite.push(model);
        self
    }

    /// Only the read model called `name` (none when there is no such one).
    pub fn only(&self, name: &str) -> Self {
        Self {
            postgres: self
                .postgres
                .iter()
                .filter(|p| p.name() == name)
                .cloned()
                .collect(),
            sqlite: self
                .sqlite
                .iter()
                .filter(|p| p.name() == name)
                .cloned()
                .collect(),
        }
    }
}

/// The read models of a process. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct ReadSide {
    side: Side,
}

#[derive(Debug, Clone)]
enum Side {
    Postgres {
        runner: ProjectionRunner,
        queries: ReadModels,
    },
    Sqlite {
        runner: EmbeddedRunner,
        queries: EmbeddedReadModels,
    },
}

/// Runs the same call on whichever runner this read side has.
macro_rules! on_runner {
    ($self:expr, |$runner:ident| $call:expr) => {
        match &$self.side {
            Side::Postgres {
                runner: $runner, ..
            } => $call,
            Side::Sqlite {
                runner: $runner, ..
            } => $call,
        }
    };
}

/// A pool of `size` connections on the Postgres database at `url`.
pub fn postgres_pool(url: &str, size: usize) -> Result<deadpool_postgres::Pool, ProjectionError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(ProjectionError::InvalidUrl)?;
    // Read models are recomputable from the log and commit their checkpoint
    // in the same transaction as their rows, so a commit lost with the
    // database server (never with a Herald process) only makes them apply
    // those events again. Not waiting for each commit's WAL flush takes the
    // read side out of the append path's fsyncs.
    herald_store::postgres::relax_commits(&mut config);
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

impl ReadSide {
    /// The read side of a store at `location`: in the store's Postgres
    /// database, or in [`READ_MODELS_FILE`] of the embedded store's data
    /// directory. Nothing connects until the read side is used.
    pub fn open(
        location: &StoreLocation,
        store: Arc<dyn EventStore>,
        read_models: ReadModelSet,
        settings: ReadSideSettings,
    ) -> Result<Self, ProjectionError> {
        let side = match location {
            StoreLocation::Postgres { url } => {
                let runner = ProjectionRunner::new(
                    postgres_pool(url, settings.pool_size)?,
                    store,
                    read_models.postgres,
                );
                let queries = runner.read_models();
                Side::Postgres { runner, queries }
            }
            StoreLocation::Embedded { data_dir } => {
                let runner =
                    EmbeddedRunner::new(data_dir.join(READ_MODELS_FILE), store, read_models.sqlite);
                let queries = runner.read_models_with(settings.pool_size);
                Side::Sqlite { runner, queries }
            }
        };
        Ok(Self { side })
    }

    /// Wakes the projections on the broker's deliveries of `topics`
    /// (see [`ProjectionRunner::with_broker`]).
    pub fn with_broker(self, broker: Arc<dyn Broker>, topics: Vec<Topic>) -> Self {
        let side = match self.side {
            Side::Postgres { runner, queries } => Side::Postgres {
                runner: runner.with_broker(broker, topics),
                queries,
            },
            Side::Sqlite { runner, queries } => Side::Sqlite {
                runner: runner.with_broker(broker, topics),
                queries,
            },
        };
        Self { side }
    }

    pub fn with_config(self, config: RunnerConfig) -> Self {
        let side = match self.side {
            Side::Postgres { runner, queries } => Side::Postgres {
                runner: runner.with_config(config),
                queries,
            },
            Side::Sqlite { runner, queries } => Side::Sqlite {
                runner: runner.with_config(config),
                queries,
            },
        };
        Self { side }
    }

    /// `postgres` or `sqlite`, for logs.
    pub fn database(&self) -> &'static str {
        match self.side {
            Side::Postgres { .. } => "postgres",
            Side::Sqlite { .. } => "sqlite",
        }
    }

    /// The SQLite file, on the embedded store.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.side {
            Side::Postgres { .. } => None,
            Side::Sqlite { runner, .. } => Some(runner.path().to_owned()),
        }
    }

    /// The handle the read models' queries take.
    pub fn serving(&self) -> Serving<'_> {
        match &self.side {
            Side::Postgres { queries, .. } => Serving::from(queries),
            Side::Sqlite { queries, .. } => Serving::from(queries),
        }
    }

    /// The names of the read models, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        on_runner!(self, |r| r.names())
    }

    /// Runs every projection until `stop` turns true.
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        on_runner!(self, |r| r.run(stop).await)
    }

    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        on_runner!(self, |r| r.statuses().await)
    }

    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        on_runner!(self, |r| r.status(name).await)
    }

    pub async fn parked(&self, name: &str) -> Result<Vec<ParkedEvent>, ProjectionError> {
        on_runner!(self, |r| r.parked(name).await)
    }

    /// Starts a blue-green rebuild of `name`; answers the new generation.
    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        on_runner!(self, |r| r.rebuild(name).await)
    }

    pub async fn retry_parked(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), ProjectionError> {
        on_runner!(self, |r| r.retry_parked(name, position).await)
    }

    /// See [`ProjectionRunner::build_detached`].
    pub async fn build_detached(
        &self,
        name: &str,
        to: Option<Position>,
        keep: Duration,
        progress: Progress,
    ) -> Result<DetachedBuild, ProjectionError> {
        on_runner!(self, |r| r.build_detached(name, to, keep, progress).await)
    }

    /// See [`ProjectionRunner::diff`].
    pub async fn diff(
        &self,
        name: &str,
        max_rows: usize,
        progress: Progress,
    ) -> Result<ProjectionDiff, ProjectionError> {
        on_runner!(self, |r| r.diff(name, max_rows, progress).await)
    }
}

impl<'a> From<&'a ReadSide> for Serving<'a> {
    fn from(side: &'a ReadSide) -> Self {
        side.serving()
    }
}

/// A read side around a runner made by hand (tests and tools that share a
/// pool with something else).
impl From<ProjectionRunner> for ReadSide {
    fn from(runner: ProjectionRunner) -> Self {
        let queries = runner.read_models();
        Self {
            side: Side::Postgres { runner, queries },
        }
    }
}

impl From<EmbeddedRunner> for ReadSide {
    fn from(runner: EmbeddedRunner) -> Self {
        let queries = runner.read_models();
        Self {
            side: Side::Sqlite { runner, queries },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_pool_has_the_configured_size_and_a_bad_url_is_refused() {
        let pool = postgres_pool("postgres://herald@127.0.0.1:5432/herald", 3).unwrap();
        assert_eq!(pool.status().max_size, 3);
        assert_eq!(
            postgres_pool("postgres://h@127.0.0.1/h", 0)
                .unwrap()
                .status()
                .max_size,
            1
        );
        assert!(matches!(
            postgres_pool("postgres://h@127.0.0.1:notaport/h", 3),
            Err(ProjectionError::InvalidUrl(_))
        ));
    }
}
