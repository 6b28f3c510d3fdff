//! An append whose expected stream version does not match fails with a typed
//! error naming the stream and both versions, and writes nothing.

mod conformance;

use conformance::{note, notes, stream, tenant, Backend};
use herald_events::{Position, StreamVersion};
use herald_store::{ExpectedVersion, StoreError};

async fn conflict_is_typed_and_writes_nothing(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("T-1");
    store
        .append(&tenant(), &s, ExpectedVersion::NO_STREAM, notes("a", 2))
        .await
        .unwrap();

    for expected in [
        ExpectedVersion::NO_STREAM,
        ExpectedVersion::Exact(StreamVersion(1)),
        ExpectedVersion::Exact(StreamVersion(3)),
    ] {
        let err = store
            .append(&tenant(), &s, expected, vec![note("late"), note("later")])
            .await
            .unwrap_err();
        match err {
            StoreError::WrongExpectedVersion {
                tenant: t,
                stream: st,
                expected: e,
                actual,
            } => {
                assert_eq!(
                    (t, st, e, actual),
                    (tenant(), s.clone(), expected, StreamVersion(2))
                );
            }
            other => panic!(
                "{}: expected a version conflict, got {other:?}",
                backend.name()
            ),
        }
    }

    let all = store.read_all(Position(0), 100).await.unwrap();
    assert_eq!(
        all.len(),
        2,
        "{}: a refused append wrote something",
        backend.name()
    );
    assert_eq!(store.head().await.unwrap().position, Position(2));
    assert_eq!(
        store.stream_version(&tenant(), &s).await.unwrap(),
        StreamVersion(2)
    );

    // The right expectation goes through and continues the stream.
    let ok = store
        .append(
            &tenant(),
            &s,
            ExpectedVersion::Exact(StreamVersion(2)),
            vec![note("c")],
        )
        .await
        .unwrap();
    assert_eq!(ok.stream_version, StreamVersion(3));
    assert_eq!(ok.first_position(), Position(3));
    store.close().await;
}
conformance!(conflict_is_typed_and_writes_nothing);

async fn streams_are_scoped_by_tenant(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("shared-name");
    let other = herald_events::TenantId::new("other").unwrap();
    store
        .append(&tenant(), &s, ExpectedVersion::NO_STREAM, vec![note("a")])
        .await
        .unwrap();
    // The same stream name in another tenant is another stream.
    let r = store
        .append(&other, &s, ExpectedVersion::NO_STREAM, vec![note("b")])
        .await
        .unwrap();
    assert_eq!(r.stream_version, StreamVersion(1));
    let mine = store
        .read_stream(&tenant(), &s, StreamVersion(0), 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].payload["note"], "a");
    store.close().await;
}
conformance!(streams_are_scoped_by_tenant);
