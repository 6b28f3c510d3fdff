//! Committed events survive a restart (embedded: the file is reopened;
//! Postgres: a new pool), and after it positions, stream versions and the
//! hash chain continue where they stopped.

mod conformance;

use conformance::{note, notes, stream, tenant, Backend};
use herald_events::{chain_hash, ChainHash, Position, StreamVersion};
use herald_store::ExpectedVersion;

async fn events_and_chain_survive_a_restart(backend: &Backend) {
    let before = {
        let store = backend.open().await;
        store
            .append(
                &tenant(),
                &stream("S"),
                ExpectedVersion::NO_STREAM,
                notes("first", 3),
            )
            .await
            .unwrap();
        store
            .append(
                &tenant(),
                &stream("T"),
                ExpectedVersion::Any,
                vec![note("other")],
            )
            .await
            .unwrap();
        let all = store.read_all(Position(0), 100).await.unwrap();
        store.close().await;
        all
    };

    let store = backend.open().await;
    let after = store.read_all(Position(0), 100).await.unwrap();
    assert_eq!(
        after,
        before,
        "{}: events changed across the restart",
        backend.name()
    );
    assert_eq!(
        store.head().await.unwrap().hash,
        before.last().unwrap().hash
    );

    let r = store
        .append(
            &tenant(),
            &stream("S"),
            ExpectedVersion::Exact(StreamVersion(3)),
            vec![note("after restart")],
        )
        .await
        .unwrap();
    assert_eq!(r.first_position(), Position(5));
    assert_eq!(r.stream_version, StreamVersion(4));

    let all = store.read_all(Position(0), 100).await.unwrap();
    let mut previous = ChainHash::GENESIS;
    for event in &all {
        assert_eq!(
            event.hash,
            chain_hash(&previous, event),
            "{}: chain broken at {}",
            backend.name(),
            event.position
        );
        previous = event.hash;
    }
    store.close().await;
}
conformance!(events_and_chain_survive_a_restart);

async fn an_acknowledged_append_is_readable_by_a_fresh_handle(backend: &Backend) {
    let writer = backend.open().await;
    let r = writer
        .append(&tenant(), &stream("U"), ExpectedVersion::Any, notes("x", 2))
        .await
        .unwrap();
    // Another handle (another process) sees it at once: the answer came after commit.
    let reader = backend.open().await;
    let events = reader.read_all(r.first_position(), 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        r.events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    writer.close().await;
    reader.close().await;
}
conformance!(an_acknowledged_append_is_readable_by_a_fresh_handle);
