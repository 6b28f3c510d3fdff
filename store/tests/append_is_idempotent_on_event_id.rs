//! Appends are idempotent on event ids: repeating a whole earlier append
//! returns its original positions and writes nothing, whatever expected
//! version the repeat carries; reusing ids any other way is refused.

mod conformance;

use conformance::{note, notes, stream, tenant, Backend};
use herald_events::{Position, StreamVersion};
use herald_store::{ExpectedVersion, StoreError};

async fn a_retried_append_returns_the_original_positions(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("I");
    store
        .append(&tenant(), &s, ExpectedVersion::Any, vec![note("before")])
        .await
        .unwrap();
    let events = notes("retry", 3);
    let first = store
        .append(
            &tenant(),
            &s,
            ExpectedVersion::Exact(StreamVersion(1)),
            events.clone(),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    store
        .append(&tenant(), &s, ExpectedVersion::Any, vec![note("after")])
        .await
        .unwrap();

    // The producer never saw the answer and retries, still expecting version 1.
    let again = store
        .append(
            &tenant(),
            &s,
            ExpectedVersion::Exact(StreamVersion(1)),
            events,
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(again.stream_version, StreamVersion(4));

    let all = store.read_all(Position(0), 100).await.unwrap();
    assert_eq!(
        all.len(),
        5,
        "{}: the retry wrote something",
        backend.name()
    );
    assert_eq!(store.head().await.unwrap().position, Position(5));
    store.close().await;
}
conformance!(a_retried_append_returns_the_original_positions);

async fn reusing_ids_otherwise_is_refused(backend: &Backend) {
    let store = backend.open().await;
    let events = notes("orig", 2);
    store
        .append(
            &tenant(),
            &stream("J"),
            ExpectedVersion::Any,
            events.clone(),
        )
        .await
        .unwrap();

    // The same events to another stream.
    let err = store
        .append(
            &tenant(),
            &stream("K"),
            ExpectedVersion::Any,
            events.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateEventId { stream: s, .. } if *s == stream("J")),
        "{err:?}"
    );
    // Part of the earlier append plus a new event.
    let err = store
        .append(
            &tenant(),
            &stream("J"),
            ExpectedVersion::Any,
            vec![events[1].clone(), note("new")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::DuplicateEventId {
                position: Position(2),
                ..
            }
        ),
        "{err:?}"
    );
    // The earlier events in another order.
    let err = store
        .append(
            &tenant(),
            &stream("J"),
            ExpectedVersion::Any,
            vec![events[1].clone(), events[0].clone()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert_eq!(store.read_all(Position(0), 100).await.unwrap().len(), 2);
    store.close().await;
}
conformance!(reusing_ids_otherwise_is_refused);

async fn concurrent_retries_write_once(backend: &Backend) {
    let store = backend.open().await;
    let events = notes("race", 2);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, events) = (store.clone(), events.clone());
            tokio::spawn(async move {
                store
                    .append(&tenant(), &stream("R"), ExpectedVersion::NO_STREAM, events)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().expect("every retry succeeds"));
    }
    assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1);
    assert!(outcomes.iter().all(|o| o.events == outcomes[0].events));
    assert_eq!(store.read_all(Position(0), 100).await.unwrap().len(), 2);
    store.close().await;
}
conformance!(concurrent_retries_write_once);
