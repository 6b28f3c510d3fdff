//! [`EmbeddedReadModels`]: the query side of the SQLite read models — a
//! small pool of read connections, and the prefix of each read model's
//! serving generation, resolved per query like on Postgres.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{schema, table_prefix};
use crate::ProjectionError;

/// Idle read connections kept for the next query, unless configured.
const DEFAULT_READERS: usize = 8;

/// Read access to the SQLite read models. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedReadModels {
    inner: Arc<Readers>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl std::fmt::Debug for EmbeddedReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedReadModels")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn open(path: &Path, read_only: bool) -> Result<Connection, ProjectionError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A read model is rebuilt from the log after a crash that loses its
        // last commits only if its checkpoint was lost with them, which
        // NORMAL (with WAL) guarantees: the two commit together.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

impl EmbeddedReadModels {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_readers(path, DEFAULT_READERS)
    }

    /// Keeps up to `readers` idle read connections open between queries
    /// (more queries at once open more, closed when done).
    pub fn with_readers(path: impl Into<PathBuf>, readers: usize) -> Self {
        Self {
            inner: Arc::new(Readers {
                path: path.into(),
                idle: Mutex::new(Vec::new()),
                max_idle: readers,
            }),
        }
    }

    /// Runs `query` on a read connection with the table prefix of `name`'s
    /// serving generation (tables are `{prefix}<table>`).
    pub async fn serving<T, F>(&self, name: &str, query: F) -> Result<T, ProjectionError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<T, ProjectionError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.idle.lock().expect("the pool lock").pop() {
                Some(conn) => conn,
                None => open(&inner.path, true)
                    .map_err(|_| ProjectionError::NotServing(name.clone()))?,
            };
            let generation = match schema::active_generation(&conn, &name) {
                Ok(Some(generation)) => generation,
                Ok(None) => return Err(ProjectionError::NotServing(name)),
                // The runner's tables are not there yet.
                Err(ProjectionError::Sqlite(_)) => return Err(ProjectionError::NotServing(name)),
                Err(e) => return Err(e),
            };
            let answer = query(&conn, &table_prefix(&name, generation));
            let mut idle = inner.idle.lock().expect("the pool lock");
            if idle.len() < inner.max_idle {
                idle.push(conn);
            }
            answer
        })
        .await
        .map_err(ProjectionError::Task)?
    }
}
