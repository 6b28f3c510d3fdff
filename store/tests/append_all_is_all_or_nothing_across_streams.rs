//! `append_all` writes to several streams in one transaction: every append
//! or none, with the refusal that stopped it as the answer; appends running
//! beside it are unaffected.

mod conformance;

use conformance::{note, notes, stream, tenant, Backend};
use herald_events::{Position, StreamVersion};
use herald_store::{ExpectedVersion, StoreError};

async fn all_or_nothing(backend: &Backend) {
    let store = backend.open().await;
    store
        .append(
            &tenant(),
            &stream("B"),
            ExpectedVersion::Any,
            vec![note("b1")],
        )
        .await
        .unwrap();

    let outcomes = store
        .append_all(
            &tenant(),
            vec![
                (stream("A"), ExpectedVersion::NO_STREAM, notes("a", 2)),
                (
                    stream("B"),
                    ExpectedVersion::Exact(StreamVersion(1)),
                    vec![note("b2")],
                ),
                (stream("C"), ExpectedVersion::Any, vec![note("c1")]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[1].stream_version, StreamVersion(2));
    let positions: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.events.iter().map(|e| e.position.get()))
        .collect();
    assert_eq!(positions, [2, 3, 4, 5]);

    // One stale expectation among three: nothing is written.
    let head = store.head().await.unwrap();
    let err = store
        .append_all(
            &tenant(),
            vec![
                (stream("D"), ExpectedVersion::Any, vec![note("d1")]),
                (
                    stream("B"),
                    ExpectedVersion::Exact(StreamVersion(1)),
                    vec![note("stale")],
                ),
                (stream("E"), ExpectedVersion::Any, vec![note("e1")]),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedVersion {
                actual: StreamVersion(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "{}: a refused atomic batch wrote something",
        backend.name()
    );
    assert!(store
        .read_stream(&tenant(), &stream("D"), StreamVersion(0), 10)
        .await
        .unwrap()
        .is_empty());

    // Singles and atomic batches interleave safely.
    let singles: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(
                        &tenant(),
                        &stream(&format!("s{i}")),
                        ExpectedVersion::Any,
                        vec![note("s")],
                    )
                    .await
            })
        })
        .collect();
    let batch = store
        .append_all(
            &tenant(),
            vec![
                (stream("F"), ExpectedVersion::NO_STREAM, notes("f", 3)),
                (stream("G"), ExpectedVersion::NO_STREAM, notes("g", 1)),
            ],
        )
        .await
        .unwrap();
    for s in singles {
        s.await.unwrap().unwrap();
    }
    let f = batch[0]
        .events
        .iter()
        .map(|e| e.position.get())
        .collect::<Vec<_>>();
    assert!(
        f.windows(2).all(|w| w[1] == w[0] + 1),
        "{}: an atomic batch is contiguous: {f:?}",
        backend.name()
    );
    let all = store.read_all(Position(0), 1000).await.unwrap();
    assert_eq!(all.len(), 5 + 20 + 4);
    store.close().await;
}
conformance!(all_or_nothing);
