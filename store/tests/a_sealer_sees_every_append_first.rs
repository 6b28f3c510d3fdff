//! An installed payload sealer rewrites every append's events before they
//! are stored, through `append` and `append_all` alike; a repeated append
//! stays idempotent (the sealer is deterministic), events sealed beforehand
//! are stored as they are, and a sealer's error fails the append with
//! nothing written.

mod conformance;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use conformance::{note, stream, tenant, Backend};
use herald_events::{NewEvent, Position, StreamVersion, TenantId};
use herald_store::{EventStore, ExpectedVersion, PayloadSealer, StoreError};
use serde_json::Value;

/// Rewrites each note `x` to `sealed:x` (sealed notes stay as they are) and
/// refuses the note `refuse`.
#[derive(Debug, Default)]
struct Sealer {
    calls: AtomicUsize,
}

#[async_trait]
impl PayloadSealer for Sealer {
    async fn seal(&self, _tenant: &TenantId, events: &mut [NewEvent]) -> herald_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if events.iter().any(|e| e.payload["note"] == "refuse") {
            return Err(StoreError::Sealing("no key to seal the note with".into()));
        }
        for event in events {
            let Some(Value::String(text)) = event.payload.get_mut("note") else {
                continue;
            };
            if !text.starts_with("sealed:") {
                *text = format!("sealed:{text}");
            }
        }
        Ok(())
    }
}

async fn notes_of(store: &Arc<dyn EventStore>, id: &str) -> Vec<String> {
    store
        .read_stream(&tenant(), &stream(id), StreamVersion(1), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn every_append_is_sealed_before_it_is_stored(backend: &Backend) {
    let name = backend.name();
    let store = backend.open().await;
    let sealer = Arc::new(Sealer::default());
    assert!(store.install_sealer(sealer.clone()));
    assert!(
        !store.install_sealer(Arc::new(Sealer::default())),
        "{name}: a second sealer was installed"
    );

    let events = vec![note("a"), note("b")];
    let first = store
        .append(
            &tenant(),
            &stream("S-1"),
            ExpectedVersion::Any,
            events.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        notes_of(&store, "S-1").await,
        ["sealed:a", "sealed:b"],
        "{name}"
    );
    // The same events again: sealed the same, so a repeat, not a conflict.
    let again = store
        .append(&tenant(), &stream("S-1"), ExpectedVersion::Any, events)
        .await
        .unwrap();
    assert!(
        again.duplicate,
        "{name}: a repeated append was not a repeat"
    );
    assert_eq!(again.events, first.events);

    let outcomes = store
        .append_all(
            &tenant(),
            vec![
                (
                    stream("S-2"),
                    ExpectedVersion::Exact(StreamVersion(0)),
                    vec![note("c")],
                ),
                (
                    stream("S-3"),
                    ExpectedVersion::Any,
                    vec![note("d"), note("e")],
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(notes_of(&store, "S-2").await, ["sealed:c"], "{name}");
    assert_eq!(
        notes_of(&store, "S-3").await,
        ["sealed:d", "sealed:e"],
        "{name}"
    );

    // Events sealed beforehand (as an actor applying its own does) are
    // stored as they are.
    let mut own = vec![note("f")];
    store.seal(&tenant(), &mut own).await.unwrap();
    assert_eq!(own[0].payload["note"], "sealed:f");
    store
        .append(&tenant(), &stream("S-4"), ExpectedVersion::Any, own)
        .await
        .unwrap();
    assert_eq!(notes_of(&store, "S-4").await, ["sealed:f"], "{name}");
    let calls = sealer.calls.load(Ordering::SeqCst);
    assert_eq!(
        calls, 6,
        "{name}: the sealer was not called once per append"
    );

    // A sealer's error fails the append, and nothing is written.
    let head = store.head().await.unwrap();
    let refused = store
        .append(
            &tenant(),
            &stream("S-5"),
            ExpectedVersion::Any,
            vec![note("g"), note("refuse")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Sealing(_)),
        "{name}: {refused:?}"
    );
    assert_eq!(refused.kind(), "sealing");
    assert!(!refused.is_transient() && !refused.is_caller_error());
    let refused = store
        .append_all(
            &tenant(),
            vec![
                (stream("S-6"), ExpectedVersion::Any, vec![note("h")]),
                (stream("S-7"), ExpectedVersion::Any, vec![note("refuse")]),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Sealing(_)),
        "{name}: {refused:?}"
    );
    for id in ["S-5", "S-6", "S-7"] {
        assert_eq!(
            store.stream_version(&tenant(), &stream(id)).await.unwrap(),
            StreamVersion(0),
            "{name}: {id} was written"
        );
    }
    assert_eq!(store.head().await.unwrap(), head, "{name}: the log moved");
    assert_eq!(
        store.read_all(Position(0), 100).await.unwrap().len() as u64,
        head.position.get()
    );
    store.close().await;

    // A store without a sealer stores events as given.
    let plain = backend.open().await;
    let mut given = vec![note("i")];
    plain.seal(&tenant(), &mut given).await.unwrap();
    assert_eq!(given[0].payload["note"], "i");
    plain
        .append(&tenant(), &stream("S-8"), ExpectedVersion::Any, given)
        .await
        .unwrap();
    assert_eq!(notes_of(&plain, "S-8").await, ["i"], "{name}");
    plain.close().await;
}
conformance!(every_append_is_sealed_before_it_is_stored);
