//! A released schema never changes, and every event type declared in code
//! has a schema: the lock file `schemas/schemas.lock` records the SHA-256 of
//! each released schema file, and this test compares them.

use herald_events::schemas::{check_lock, embedded_files, embedded_lock, LockMismatch};
use herald_events::{declared_event_types, EventRegistry};

#[test]
fn every_schema_file_matches_its_lock_line() {
    let problems = check_lock(&embedded_files(), embedded_lock());
    let report: Vec<String> = problems
        .iter()
        .map(|p| match p {
            LockMismatch::Changed { path, locked, actual } => format!(
                "{path} was released with sha256 {locked} and now hashes to {actual}: \
                 released schemas never change; add a new version with an upcaster instead"
            ),
            LockMismatch::Unlocked { path, digest } => format!(
                "{path} is not in schemas/schemas.lock; to release it add the line `{digest}  {path}`"
            ),
            LockMismatch::Removed { path } => format!(
                "{path} is in schemas/schemas.lock but its file is gone; old versions stay readable forever"
            ),
        })
        .collect();
    assert!(
        report.is_empty(),
        "schema lock check failed:\n{}",
        report.join("\n")
    );
}

#[test]
fn every_declared_event_type_has_a_schema() {
    let registry = EventRegistry::builtin().expect("the builtin registry builds");
    let declared = declared_event_types();
    assert!(!declared.is_empty());
    for (event_type, version) in declared {
        assert!(
            registry.contains(&event_type, version),
            "{event_type} v{version} is declared in code but has no schema"
        );
    }
}

#[test]
fn the_tickets_domain_ships_its_six_v1_schemas() {
    let registry = EventRegistry::builtin().unwrap();
    let tickets: Vec<String> = registry
        .types()
        .filter(|(t, _)| t.domain() == "tickets")
        .map(|(t, versions)| {
            format!(
                "{}:{:?}",
                t.name(),
                versions.iter().map(|v| v.get()).collect::<Vec<_>>()
            )
        })
        .collect();
    assert_eq!(
        tickets,
        [
            "note_appended:[1]",
            "ticket_assigned:[1]",
            "ticket_closed:[1]",
            "ticket_opened:[1]",
            "ticket_reopened:[1]",
            "ticket_resolved:[1]",
        ]
    );
}

#[test]
fn a_changed_schema_would_be_caught() {
    // The check above must be able to fail: feed it a changed copy.
    let mut files = embedded_files();
    let (path, _) = files[0];
    files[0] = (path, "{\"type\": \"object\"}");
    let problems = check_lock(&files, embedded_lock());
    assert!(matches!(&problems[..], [LockMismatch::Changed { path: p, .. }] if p == path));
}
