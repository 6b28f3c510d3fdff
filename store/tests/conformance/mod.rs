//! The store conformance suite's backends: every test in `store/tests/` runs
//! the same body against Postgres (a fresh database on the test server) and
//! the embedded store (a fresh SQLite file), through [`conformance!`].
#![allow(dead_code)]

use std::sync::Arc;

use herald_events::{EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::{
    AppendHooks, Clock, EmbeddedConfig, EmbeddedStore, EventStore, GroupCommitConfig,
    PostgresConfig, PostgresStore,
};
use herald_testkit::TestDatabase;
use serde_json::json;

/// A place a store lives; opening it again is a restart.
pub enum Backend {
    Postgres(TestDatabase),
    Embedded(tempfile::TempDir),
}

/// How to open a store on a backend.
#[derive(Default, Clone)]
pub struct Options {
    pub hooks: Option<Arc<dyn AppendHooks>>,
    pub group_commit: Option<GroupCommitConfig>,
    pub pool_size: Option<usize>,
    pub clock: Option<Arc<dyn Clock>>,
    pub idempotency_window: Option<std::time::Duration>,
}

impl Backend {
    pub async fn postgres() -> Self {
        Backend::Postgres(TestDatabase::create().await)
    }

    pub fn embedded() -> Self {
        Backend::Embedded(tempfile::tempdir().expect("a temporary directory"))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Postgres(_) => "postgres",
            Backend::Embedded(_) => "embedded",
        }
    }

    pub async fn open(&self) -> Arc<dyn EventStore> {
        self.open_with(Options::default()).await
    }

    pub async fn open_with(&self, options: Options) -> Arc<dyn EventStore> {
        match self {
            Backend::Postgres(db) => {
                let mut config = PostgresConfig::new(db.url());
                config.hooks = options.hooks;
                config.pool_size = options.pool_size.unwrap_or(8);
                config.clock = options.clock;
                if let Some(g) = options.group_commit {
                    config.group_commit = g;
                }
                if let Some(window) = options.idempotency_window {
                    config.idempotency_window = window;
                }
                Arc::new(
                    PostgresStore::open(config)
                        .await
                        .expect("open the Postgres store"),
                )
            }
            Backend::Embedded(dir) => {
                let mut config = EmbeddedConfig::in_dir(dir.path());
                config.hooks = options.hooks;
                config.clock = options.clock;
                if let Some(g) = options.group_commit {
                    config.group_commit = g;
                }
                if let Some(window) = options.idempotency_window {
                    config.idempotency_window = window;
                }
                Arc::new(
                    EmbeddedStore::open(config)
                        .await
                        .expect("open the embedded store"),
                )
            }
        }
    }

    /// How many sessions wait for a lock right now, where the backend can
    /// tell (Postgres); `None` where it cannot (SQLite waits inside the library).
    pub async fn lock_waiters(&self) -> Option<usize> {
        match self {
            Backend::Postgres(db) => {
                let client = db.connect().await;
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .expect("query pg_stat_activity");
                Some(row.get::<_, i64>(0) as usize)
            }
            Backend::Embedded(_) => None,
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
                let backend = $crate::conformance::Backend::postgres().await;
                super::$body(&backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                let backend = $crate::conformance::Backend::embedded();
                super::$body(&backend).await;
            }
        }
    };
}

pub fn tenant() -> TenantId {
    TenantId::default_tenant()
}

pub fn stream(id: &str) -> StreamId {
    format!("tickets/{id}").parse().expect("a valid stream id")
}

/// A valid `tickets.note_appended` event.
pub fn note(text: impl Into<String>) -> NewEvent {
    let event_type: EventType = "tickets.note_appended".parse().unwrap();
    NewEvent::new(
        event_type,
        SchemaVersion::V1,
        json!({ "note": text.into() }),
    )
}

pub fn notes(prefix: &str, n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| note(format!("{prefix}-{i}"))).collect()
}

/// The value of the first series of the metric `family` whose labels
/// include `label` (0 when there is none yet).
pub fn counted(
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    family: &str,
    label: &str,
) -> u64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(family) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0)
}
