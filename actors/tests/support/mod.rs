//! Shared by the actor runtime's tests: the stores a test runs on (a fresh
//! Postgres database and a fresh embedded store; opening one again is a
//! restart or a second process) and `on_both_stores!`, which runs a test
//! body on each in an actix system.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;

pub enum Backend {
    Postgres(TestDatabase),
    Embedded(tempfile::TempDir),
}

impl Backend {
    /// A handle on the store; a second one is a second process.
    pub async fn open(&self) -> Arc<dyn EventStore> {
        // Short polls: subscriptions of a second handle (another process)
        // see commits promptly, so tests finish quickly.
        let poll = Duration::from_millis(50);
        match self {
            Backend::Postgres(db) => {
                let mut config = PostgresConfig::new(db.url());
                config.poll_interval = poll;
                Arc::new(
                    PostgresStore::open(config)
                        .await
                        .expect("open the Postgres store"),
                )
            }
            Backend::Embedded(dir) => {
                let mut config = EmbeddedConfig::in_dir(dir.path());
                config.poll_interval = poll;
                Arc::new(
                    EmbeddedStore::open(config)
                        .await
                        .expect("open the embedded store"),
                )
            }
        }
    }
}

/// Runs `async fn $body(&Backend)` on Postgres and on the embedded store,
/// one `#[actix_rt::test]` each.
#[macro_export]
macro_rules! on_both_stores {
    ($body:ident) => {
        mod $body {
            #[actix_rt::test]
            async fn postgres() {
                let backend = $crate::support::Backend::Postgres(
                    herald_testkit::TestDatabase::create().await,
                );
                super::$body(&backend).await;
            }

            #[actix_rt::test]
            async fn embedded() {
                let backend = $crate::support::Backend::Embedded(
                    tempfile::tempdir().expect("a temporary directory"),
                );
                super::$body(&backend).await;
            }
        }
    };
}
