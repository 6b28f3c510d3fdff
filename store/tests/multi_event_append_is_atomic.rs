//! A multi-event append is written whole or not at all: a refused append and
//! a transaction that dies before commit both leave no trace, and a written
//! one occupies consecutive positions and stream versions.

mod conformance;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use conformance::{note, notes, stream, tenant, Backend, Options};
use herald_events::{EventEnvelope, Position, StreamVersion};
use herald_store::{AppendHooks, ExpectedVersion, StoreError};

async fn written_appends_are_contiguous(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("A");
    let r = store
        .append(&tenant(), &s, ExpectedVersion::Any, notes("x", 5))
        .await
        .unwrap();
    let positions: Vec<u64> = r.events.iter().map(|e| e.position.get()).collect();
    let versions: Vec<u64> = r.events.iter().map(|e| e.stream_version.get()).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    let back = store
        .read_stream(&tenant(), &s, StreamVersion(1), 10)
        .await
        .unwrap();
    let texts: Vec<&str> = back
        .iter()
        .map(|e| e.payload["note"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["x-0", "x-1", "x-2", "x-3", "x-4"]);
    store.close().await;
}
conformance!(written_appends_are_contiguous);

async fn a_refused_append_writes_none_of_its_events(backend: &Backend) {
    let store = backend.open().await;
    let taken = note("already stored elsewhere");
    store
        .append(
            &tenant(),
            &stream("B"),
            ExpectedVersion::Any,
            vec![taken.clone()],
        )
        .await
        .unwrap();

    // The third of four events reuses an id stored in another stream.
    let mut events = notes("y", 4);
    events[2] = taken;
    let err = store
        .append(&tenant(), &stream("C"), ExpectedVersion::Any, events)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert!(store
        .read_stream(&tenant(), &stream("C"), StreamVersion(0), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.head().await.unwrap().position, Position(1));
    store.close().await;
}
conformance!(a_refused_append_writes_none_of_its_events);

/// Aborts the first transaction after its rows are written, before commit.
#[derive(Debug, Default)]
struct DieBeforeFirstCommit {
    died: AtomicBool,
}

#[async_trait]
impl AppendHooks for DieBeforeFirstCommit {
    async fn before_commit(&self, _rows: &[EventEnvelope]) -> Result<(), String> {
        if self.died.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err("simulated crash".into())
        }
    }
}

async fn a_transaction_that_dies_before_commit_leaves_nothing(backend: &Backend) {
    let hooks = Arc::new(DieBeforeFirstCommit::default());
    let store = backend
        .open_with(Options {
            hooks: Some(hooks.clone()),
            ..Default::default()
        })
        .await;
    let s = stream("D");
    let err = store
        .append(&tenant(), &s, ExpectedVersion::Any, notes("z", 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(store.read_all(Position(0), 10).await.unwrap().is_empty());
    assert_eq!(store.head().await.unwrap().position, Position(0));

    // The next append starts at position 1: the dead one left no hole.
    let r = store
        .append(&tenant(), &s, ExpectedVersion::NO_STREAM, notes("z", 3))
        .await
        .unwrap();
    assert_eq!(r.first_position(), Position(1));
    assert_eq!(r.stream_version, StreamVersion(3));
    store.close().await;
}
conformance!(a_transaction_that_dies_before_commit_leaves_nothing);
