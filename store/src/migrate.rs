//! Numbered SQL migrations, one list per backend, applied at start in order
//! inside a lock so several processes starting at once apply each one once.
//! An applied migration whose text changed is an error; one newer than this
//! build is tolerated with a warning, so an old build keeps running during a
//! rollout of a new one (migrations only add, backfill, switch, then drop).

use sha2::{Digest, Sha256};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../migrations/postgres/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "append_planned",
        sql: include_str!("../migrations/postgres/0002_append_planned.sql"),
    },
    Migration {
        version: 3,
        name: "coordination",
        sql: include_str!("../migrations/postgres/0003_coordination.sql"),
    },
    Migration {
        version: 4,
        name: "api_keys_and_epoch",
        sql: include_str!("../migrations/postgres/0004_api_keys_and_epoch.sql"),
    },
    Migration {
        version: 5,
        name: "search",
        sql: include_str!("../migrations/postgres/0005_search.sql"),
    },
    Migration {
        version: 6,
        name: "snapshots",
        sql: include_str!("../migrations/postgres/0006_snapshots.sql"),
    },
    Migration {
        version: 7,
        name: "checkpoint_state",
        sql: include_str!("../migrations/postgres/0007_checkpoint_state.sql"),
    },
    Migration {
        version: 8,
        name: "idempotency_keys",
        sql: include_str!("../migrations/postgres/0008_idempotency_keys.sql"),
    },
    Migration {
        version: 9,
        name: "personal_keys",
        sql: include_str!("../migrations/postgres/0009_personal_keys.sql"),
    },
    Migration {
        version: 10,
        name: "correlation",
        sql: include_str!("../migrations/postgres/0010_correlation.sql"),
    },
];

pub(crate) const EMBEDDED: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../migrations/embedded/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "coordination",
        sql: include_str!("../migrations/embedded/0002_coordination.sql"),
    },
    Migration {
        version: 3,
        name: "api_keys_and_epoch",
        sql: include_str!("../migrations/embedded/0003_api_keys_and_epoch.sql"),
    },
    Migration {
        version: 4,
        name: "search",
        sql: include_str!("../migrations/embedded/0004_search.sql"),
    },
    Migration {
        version: 5,
        name: "snapshots",
        sql: include_str!("../migrations/embedded/0005_snapshots.sql"),
    },
    Migration {
        version: 6,
        name: "checkpoint_state",
        sql: include_str!("../migrations/embedded/0006_checkpoint_state.sql"),
    },
    Migration {
        version: 7,
        name: "idempotency_keys",
        sql: include_str!("../migrations/embedded/0007_idempotency_keys.sql"),
    },
    Migration {
        version: 8,
        name: "personal_keys",
        sql: include_str!("../migrations/embedded/0008_personal_keys.sql"),
    },
    Migration {
        version: 9,
        name: "correlation",
        sql: include_str!("../migrations/embedded/0009_correlation.sql"),
    },
];

/// What to do with each migration given those already applied.
pub(crate) fn pending<'a>(
    migrations: &'a [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'a Migration>, crate::StoreError> {
    let known_max = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, checksum) in applied {
        match migrations.iter().find(|m| m.version == *version) {
            Some(m) if &m.checksum() != checksum => {
                return Err(crate::StoreError::Migration {
                    version: *version,
                    detail: format!(
                        "migration {} ({}) was applied with another text; applied migrations never change",
                        m.version, m.name
                    ),
                })
            }
            Some(_) => {}
            None if *version > known_max => tracing::warn!(
                version,
                "Database has a migration newer than this build; running on the schema it knows."
            ),
            None => {
                return Err(crate::StoreError::Migration {
                    version: *version,
                    detail: "the database has a migration this build does not know".into(),
                })
            }
        }
    }
    Ok(migrations
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}
