//! Earlier versions of Herald accepted `.` and `..` as stream ids, which
//! are refused anew now (no URL-normalising client could reach them). Events
//! a store already holds under such ids stay readable after a restart —
//! through the log, the stream and the audit walk, with their hash chain
//! intact — on both stores, so nothing acknowledged becomes unreadable.

mod conformance;

use std::sync::Arc;

use conformance::{note, stream, tenant, Backend};
use herald_events::{Domain, Position, StreamId, StreamVersion};
use herald_store::audit::{verify, VerifyOptions};
use herald_store::ExpectedVersion;

async fn dot_streams_stored_earlier_read_back(backend: &Backend) {
    let tickets = Domain::new("tickets").unwrap();
    let dots: Vec<StreamId> = [".", ".."]
        .into_iter()
        .map(|id| {
            assert!(
                StreamId::new(tickets.clone(), id).is_err(),
                "{id} is accepted anew"
            );
            StreamId::stored(tickets.clone(), id).unwrap()
        })
        .collect();
    {
        // What an earlier version wrote.
        let store = backend.open().await;
        for dot in &dots {
            store
                .append(&tenant(), dot, ExpectedVersion::Any, vec![note("earlier")])
                .await
                .unwrap();
        }
        store
            .append(
                &tenant(),
                &stream("T-1"),
                ExpectedVersion::Any,
                vec![note("now")],
            )
            .await
            .unwrap();
        store.close().await;
    }

    let store = backend.open().await;
    let all = store.read_all(Position(0), 100).await.unwrap();
    let streams: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["tickets/.", "tickets/..", "tickets/T-1"],
        "{}",
        backend.name()
    );
    for dot in &dots {
        let events = store
            .read_stream(&tenant(), dot, StreamVersion(1), 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{}: {dot}", backend.name());
        assert_eq!(&events[0].stream, dot);
    }
    let report = verify(
        Arc::clone(&store),
        VerifyOptions::default(),
        Box::new(|_| {}),
    )
    .await
    .unwrap();
    assert!(report.intact, "{}: {report:?}", backend.name());
    assert_eq!(report.checked, 3, "{}", backend.name());
    store.close().await;
}
conformance!(dot_streams_stored_earlier_read_back);
