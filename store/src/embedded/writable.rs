//! Whether this process may write the data directory, asked before a
//! server opens it. SQLite opens a file it may not write read-only without a
//! word, and every append then fails; so a process that is to append checks
//! first — each database file it will write, the `-wal` and `-shm` files
//! beside them, and that it may create files in the directory (where SQLite
//! makes those) — and refuses to start with the path and the reason. Only
//! what writes calls this: auditing a read-only copy stays possible.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// The suffixes of the files SQLite keeps beside a database in WAL mode.
const WAL_SUFFIXES: [&str; 3] = ["", "-wal", "-shm"];

/// A data directory, or a file in it, this process cannot write.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what}: {reason}; run Herald as a user that may write there (the directory's owner) \
     or choose another --data-dir",
    what = refused.describe(path),
)]
pub struct NotWritable {
    /// The directory or the file.
    pub path: PathBuf,
    pub refused: Refused,
    pub reason: String,
}

/// What could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The directory is missing and cannot be made.
    CreateDirectory,
    /// No file can be created in the directory.
    CreateFiles,
    /// An existing file cannot be opened for writing.
    WriteFile,
}

impl Refused {
    fn describe(self, path: &Path) -> String {
        let path = path.display();
        match self {
            Refused::CreateDirectory => format!("cannot create {path}"),
            Refused::CreateFiles => format!(
                "cannot create files in {path} (SQLite keeps its -wal and -shm files there)"
            ),
            Refused::WriteFile => format!("cannot write to {path}"),
        }
    }
}

/// Checks that `dir` exists or can be made, that every existing file among
/// `databases` and their `-wal` and `-shm` companions opens for writing, and
/// that a file can be created (and removed) in `dir`. Nothing is changed
/// but the directory's creation.
pub fn check_writable(dir: &Path, databases: &[&str]) -> Result<(), NotWritable> {
    let refused = |path: &Path, refused: Refused, e: io::Error| NotWritable {
        path: path.to_path_buf(),
        refused,
        reason: reason(&e),
    };
    std::fs::create_dir_all(dir).map_err(|e| refused(dir, Refused::CreateDirectory, e))?;
    for database in databases {
        for suffix in WAL_SUFFIXES {
            let path = dir.join(format!("{database}{suffix}"));
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(refused(&path, Refused::WriteFile, e)),
            }
        }
    }
    // The probe's name is this process's own, so processes starting side
    // by side do not remove each other's.
    let probe = dir.join(format!(".herald-write-check.{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| refused(dir, Refused::CreateFiles, e))?;
    std::fs::remove_file(&probe).map_err(|e| refused(dir, Refused::CreateFiles, e))
}

/// The cause in lower case, without the OS error number an operator does
/// not need ("permission denied", "read-only file system").
fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("herald.db"), b"").unwrap();
        check_writable(&data, &["herald.db", "read-models.db"]).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["herald.db"]);
    }

    #[test]
    fn a_missing_directory_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        check_writable(&data, &["herald.db"]).unwrap();
        assert!(data.is_dir());
    }

    #[test]
    fn the_reason_reads_as_a_phrase() {
        let e = io::Error::from_raw_os_error(13);
        assert_eq!(reason(&e), "permission denied");
        let e = io::Error::other("Disk on fire");
        assert_eq!(reason(&e), "disk on fire");
    }
}
