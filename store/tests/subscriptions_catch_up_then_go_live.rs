//! `subscribe_all` delivers the history from the requested position, then
//! live events as they commit, with no gap and no repeat at the seam.

mod conformance;

use std::time::Duration;

use conformance::{notes, stream, tenant, Backend};
use futures::StreamExt;
use herald_events::Position;
use herald_store::ExpectedVersion;

async fn history_then_live_without_gap_or_repeat(backend: &Backend) {
    let store = backend.open().await;
    store
        .append(
            &tenant(),
            &stream("H"),
            ExpectedVersion::Any,
            notes("old", 700),
        )
        .await
        .unwrap();

    let mut from_start = store.subscribe_all(Position(0));
    let mut from_middle = store.subscribe_all(Position(650));

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                store
                    .append(
                        &tenant(),
                        &stream("H"),
                        ExpectedVersion::Any,
                        notes(&format!("new{i}"), 5),
                    )
                    .await
                    .unwrap();
            }
        })
    };

    let mut positions = Vec::new();
    while positions.len() < 800 {
        let event = tokio::time::timeout(Duration::from_secs(20), from_start.next())
            .await
            .expect("the subscription keeps delivering")
            .expect("the stream goes on")
            .expect("reads succeed");
        positions.push(event.position.get());
    }
    assert_eq!(positions, (1..=800).collect::<Vec<_>>());

    let mut middle = Vec::new();
    while middle.len() < 151 {
        let event = tokio::time::timeout(Duration::from_secs(20), from_middle.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        middle.push(event.position.get());
    }
    assert_eq!(middle, (650..=800).collect::<Vec<_>>());
    writer.await.unwrap();

    // Closing the store ends its subscriptions once they are drained.
    drop(from_middle);
    store.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), from_start.next())
        .await
        .expect("the subscription ends");
    assert!(end.is_none());
}
conformance!(history_then_live_without_gap_or_repeat);
