//! A store answers reads of what its own process has just committed from
//! memory (the recent log), so that the readers a commit wakes do not each
//! query for it. Those answers must be exactly what the database returns to
//! anyone else: every field, the payload byte for byte once serialized, and
//! the hash chain — for payloads of every shape the store accepts, and for
//! reads that start inside, before and past the events kept.

mod conformance;

use conformance::{stream, tenant, Backend};
use herald_events::{EventType, NewEvent, Position, SchemaVersion};
use herald_store::ExpectedVersion;
use serde_json::{json, Value};

fn event(payload: Value) -> NewEvent {
    let event_type: EventType = "tickets.note_appended".parse().unwrap();
    NewEvent::new(event_type, SchemaVersion::V1, payload)
}

fn payloads() -> Vec<Value> {
    vec![
        json!({"note": "plain"}),
        json!({"note": "ünïcödé ✓ 日本語 🚀", "author": null}),
        json!({"z": 1, "a": 2, "m": {"y": [1, 2, 3], "b": {"deep": true}}}),
        json!({"int": 9_007_199_254_740_993_i64, "neg": -42, "float": 1.5, "big": 1e300}),
        json!({"small": 1e-7, "one": 1.0, "zero": 0, "list": [], "map": {}}),
        json!({"escaped": "quote \" backslash \\ newline \n tab \t"}),
        json!({"note": "x".repeat(20_000)}),
    ]
}

async fn reads_of_recent_commits_equal_the_database(backend: &Backend) {
    let writer = backend.open().await;
    let mut accepted = 0;
    for (i, payload) in payloads().into_iter().enumerate() {
        // Whatever the store refuses is not stored at all; what it takes
        // must read back the same from memory and from the database.
        if writer
            .append(
                &tenant(),
                &stream(&format!("R-{}", i % 3)),
                ExpectedVersion::Any,
                vec![event(payload)],
            )
            .await
            .is_ok()
        {
            accepted += 1;
        }
    }
    assert!(
        accepted >= 6,
        "{}: only {accepted} accepted",
        backend.name()
    );
    let reader = backend.open().await;
    for from in [0u64, 1, 3, accepted as u64, accepted as u64 + 1] {
        for max in [1usize, 2, 100] {
            let mine = writer.read_all(Position(from), max).await.unwrap();
            let theirs = reader.read_all(Position(from), max).await.unwrap();
            assert_eq!(
                mine,
                theirs,
                "{}: read_all({from}, {max}) differs between the writing process and another",
                backend.name()
            );
            for (a, b) in mine.iter().zip(&theirs) {
                assert_eq!(
                    serde_json::to_string(&a.payload).unwrap(),
                    serde_json::to_string(&b.payload).unwrap(),
                    "{}: payload at {} serializes differently",
                    backend.name(),
                    a.position
                );
            }
        }
    }
    assert_eq!(
        writer.head().await.unwrap(),
        reader.head().await.unwrap(),
        "{}",
        backend.name()
    );
    writer.close().await;
    reader.close().await;
}
conformance!(reads_of_recent_commits_equal_the_database);
