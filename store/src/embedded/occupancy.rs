//! Occupancy of the embedded store: a lock on `herald.lock` beside the
//! SQLite file (exclusive to occupy it alone, shared otherwise), which the
//! kernel releases when the process exits or dies. The holder of an
//! exclusive lock writes its label into the file, so a refused process can
//! say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};

use super::{EmbeddedStore, BACKEND};
use crate::error::StoreError;
use crate::occupancy::{Occupancy, OccupancyGuard};

/// The lock file's name, beside `herald.db`.
pub const LOCK_FILE: &str = "herald.lock";

impl EmbeddedStore {
    pub(crate) async fn occupy_file(
        &self,
        occupancy: Occupancy,
        label: &str,
    ) -> Result<OccupancyGuard, StoreError> {
        let path = self.path().with_file_name(LOCK_FILE);
        let label = label.to_owned();
        tokio::task::spawn_blocking(move || {
            let unavailable = |e: std::io::Error| StoreError::Unavailable {
                backend: BACKEND,
                detail: format!("cannot lock {}: {e}", path.display()),
            };
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(unavailable)?;
            let locked = match occupancy {
                Occupancy::Alone => file.try_lock(),
                Occupancy::Shared => file.try_lock_shared(),
            };
            match locked {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Occupied {
                        by: vec![holder(&path)],
                    })
                }
                Err(TryLockError::Error(e)) => return Err(unavailable(e)),
            }
            if occupancy == Occupancy::Alone {
                // Only the exclusive holder writes: shared holders would
                // overwrite each other.
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)))
                    .and_then(|_| file.write_all(label.as_bytes()))
                    .map_err(unavailable)?;
            }
            Ok(OccupancyGuard::new(file))
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            detail: format!("the lock task failed: {e}"),
        })?
    }
}

/// Who holds the lock: the label an exclusive holder wrote, or, when the
/// holders share it (the file may still hold a dead exclusive holder's
/// label), none in particular.
fn holder(path: &std::path::Path) -> String {
    let shared = File::open(path).map(|f| f.try_lock_shared().is_ok());
    if let Ok(false) = shared {
        let mut label = String::new();
        if File::open(path)
            .and_then(|mut f| f.read_to_string(&mut label))
            .is_ok()
            && !label.trim().is_empty()
        {
            return label.trim().to_owned();
        }
    }
    "other Herald processes".to_owned()
}
