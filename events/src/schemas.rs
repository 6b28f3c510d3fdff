//! The schema files shipped in `schemas/` (embedded at build time), their
//! naming rule `<domain>/<event>.v<N>.json`, and the lock file that records
//! the SHA-256 of every released schema.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::RegistryError;
use crate::ids::{Domain, EventType, SchemaVersion};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// One schema file: which event type and version it describes, and its text.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Path under `schemas/`, e.g. `tickets/ticket_opened.v1.json`.
    pub path: &'static str,
    pub event_type: EventType,
    pub version: SchemaVersion,
    pub text: &'static str,
}

/// Reads `<domain>/<event>.v<N>.json` into the type and version it names.
pub fn parse_schema_path(path: &str) -> Result<(EventType, SchemaVersion), RegistryError> {
    let bad = || RegistryError::BadSchemaPath {
        path: path.to_owned(),
    };
    let (domain, file) = path.split_once('/').ok_or_else(bad)?;
    let stem = file.strip_suffix(".json").ok_or_else(bad)?;
    let (name, version) = stem.rsplit_once(".v").ok_or_else(bad)?;
    let version: u32 = version.parse().map_err(|_| bad())?;
    let domain = Domain::new(domain).map_err(|_| bad())?;
    let event_type = EventType::new(&domain, name).map_err(|_| bad())?;
    let version = SchemaVersion::new(version).map_err(|_| bad())?;
    Ok((event_type, version))
}

/// Every schema file shipped with this build.
pub fn embedded_schema_files() -> Result<Vec<SchemaFile>, RegistryError> {
    embedded::EMBEDDED_SCHEMAS
        .iter()
        .map(|(path, text)| {
            let (event_type, version) = parse_schema_path(path)?;
            Ok(SchemaFile {
                path,
                event_type,
                version,
                text,
            })
        })
        .collect()
}

/// The lock file's text as shipped with this build.
pub fn embedded_lock() -> &'static str {
    embedded::SCHEMAS_LOCK
}

/// SHA-256 of a schema file's bytes, in lowercase hex (as `sha256sum` prints).
pub fn schema_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The lock file's entries: path → digest. Lines are `sha256sum` output;
/// blank lines and lines starting with `#` are ignored.
pub fn parse_lock(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (digest, path) = l.split_once(char::is_whitespace)?;
            Some((path.trim().to_owned(), digest.to_owned()))
        })
        .collect()
}

/// A difference between the schema files and the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockMismatch {
    /// A released schema's file changed.
    Changed {
        path: String,
        locked: String,
        actual: String,
    },
    /// A schema file has no lock line (not released yet: add its line).
    Unlocked { path: String, digest: String },
    /// A released schema's file is gone; old versions must stay readable.
    Removed { path: String },
}

/// Compares schema files with the lock.
pub fn check_lock(files: &[(&str, &str)], lock: &str) -> Vec<LockMismatch> {
    let mut locked = parse_lock(lock);
    let mut problems = Vec::new();
    for (path, text) in files {
        let actual = schema_digest(text);
        match locked.remove(*path) {
            Some(digest) if digest == actual => {}
            Some(digest) => problems.push(LockMismatch::Changed {
                path: (*path).to_owned(),
                locked: digest,
                actual,
            }),
            None => problems.push(LockMismatch::Unlocked {
                path: (*path).to_owned(),
                digest: actual,
            }),
        }
    }
    problems.extend(
        locked
            .into_keys()
            .map(|path| LockMismatch::Removed { path }),
    );
    problems
}

/// The embedded schema files as (path, text) pairs.
pub fn embedded_files() -> Vec<(&'static str, &'static str)> {
    embedded::EMBEDDED_SCHEMAS.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_paths_name_their_type_and_version() {
        let (t, v) = parse_schema_path("tickets/ticket_opened.v12.json").unwrap();
        assert_eq!(t.as_str(), "tickets.ticket_opened");
        assert_eq!(v.get(), 12);
        for bad in [
            "ticket_opened.v1.json",
            "tickets/ticket_opened.json",
            "tickets/ticket_opened.v0.json",
            "tickets/Ticket.v1.json",
        ] {
            assert!(parse_schema_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_check_reports_changed_unlocked_and_removed_files() {
        let lock = format!(
            "# comment\n{}  a/x.v1.json\n{}  a/gone.v1.json\n",
            schema_digest("old"),
            schema_digest("g")
        );
        let problems = check_lock(&[("a/x.v1.json", "new"), ("a/y.v1.json", "y")], &lock);
        assert_eq!(problems.len(), 3);
        assert!(
            matches!(&problems[0], LockMismatch::Changed { path, .. } if path == "a/x.v1.json")
        );
        assert!(
            matches!(&problems[1], LockMismatch::Unlocked { path, .. } if path == "a/y.v1.json")
        );
        assert!(matches!(&problems[2], LockMismatch::Removed { path } if path == "a/gone.v1.json"));
    }
}
