//! Two processes appending to the same streams of one store keep every
//! guarantee: each writer's remembered head and stream versions go stale at
//! every turn, yet positions stay gapless, stream versions stay gapless,
//! expected versions are checked against the truth, retries are recognised,
//! and the hash chain is unbroken.

mod conformance;

use conformance::{note, notes, stream, tenant, Backend};
use herald_events::{chain_hash, ChainHash, Position, StreamVersion};
use herald_store::{ExpectedVersion, StoreError};

async fn alternating_writers_keep_the_log_consistent(backend: &Backend) {
    let a = backend.open().await;
    let b = backend.open().await;
    let s = stream("shared");

    let mut version = 0u64;
    for round in 0..20 {
        let (writer, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // The writer expects the true version, which the other process set.
        let events = notes(&format!("r{round}"), 1 + round % 3);
        let n = events.len() as u64;
        let outcome = writer
            .append(
                &tenant(),
                &s,
                ExpectedVersion::Exact(StreamVersion(version)),
                events.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{} round {round}: {e}", backend.name()));
        assert_eq!(outcome.events[0].stream_version, StreamVersion(version + 1));
        version += n;
        // The other process retries the same append: recognised as a repeat.
        let repeat = other
            .append(
                &tenant(),
                &s,
                ExpectedVersion::Exact(StreamVersion(version - n)),
                events,
            )
            .await
            .unwrap();
        assert!(repeat.duplicate);
        assert_eq!(repeat.events, outcome.events);
        // A stale expectation is refused by either.
        let err = other
            .append(
                &tenant(),
                &s,
                ExpectedVersion::Exact(StreamVersion(version - n)),
                vec![note("stale")],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::WrongExpectedVersion { actual, .. } if actual == StreamVersion(version))
        );
        // Appends without a check land at the true end.
        let any = other
            .append(
                &tenant(),
                &stream("other"),
                ExpectedVersion::Any,
                vec![note("x")],
            )
            .await
            .unwrap();
        assert!(!any.duplicate);
    }

    let all = a.read_all(Position(0), 10_000).await.unwrap();
    let positions: Vec<u64> = all.iter().map(|e| e.position.get()).collect();
    assert_eq!(
        positions,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "{}: positions have gaps",
        backend.name()
    );
    let shared: Vec<u64> = all
        .iter()
        .filter(|e| e.stream == s)
        .map(|e| e.stream_version.get())
        .collect();
    assert_eq!(shared, (1..=version).collect::<Vec<_>>());
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
    a.close().await;
    b.close().await;
}
conformance!(alternating_writers_keep_the_log_consistent);
