//! Both backends refuse the same inputs — text holding U+0000 (which
//! Postgres' `text` and `jsonb` cannot hold) anywhere in an event, times
//! outside the years 1 to 9999 (which the embedded store could not read
//! back), a search for U+0000 — as typed errors, and a refused event fails
//! only its own append, never the others committed in the same batch. What
//! they do store reads back exactly as it was hashed, numbers included.

mod conformance;

use std::sync::Arc;

use conformance::{note, stream, tenant, Backend};
use futures::future::join_all;
use herald_events::{chain_hash, ChainHash, EventType, NewEvent, Position, SchemaVersion};
use herald_store::storable::as_stored;
use herald_store::{EventStore, ExpectedVersion, SearchQuery, StoreError};
use serde_json::{json, Value};

async fn text_no_backend_can_hold_is_refused_alike(backend: &Backend) {
    let store = backend.open().await;
    let mut nul_producer = note("p");
    nul_producer.producer = "p\u{0}".into();
    let nul_value = NewEvent::new(
        "tickets.note_appended".parse::<EventType>().unwrap(),
        SchemaVersion::V1,
        json!({"note": "a", "deep": [{"x": "b\u{0}"}]}),
    );
    let nul_key = NewEvent::new(
        "tickets.note_appended".parse::<EventType>().unwrap(),
        SchemaVersion::V1,
        json!({"note": "a", "deep": {"k\u{0}": 1}}),
    );
    let mut far = note("far");
    far.occurred_at = "+10000-01-01T00:00:00Z".parse().unwrap();
    let mut early = note("early");
    early.occurred_at = "0000-12-31T23:59:59Z".parse().unwrap();
    for (event, words) in [
        (nul_producer, "producer holds the character U+0000"),
        (nul_value, "/payload/deep/0/x holds the character U+0000"),
        (nul_key, "a key of /payload/deep holds the character U+0000"),
        (far, "years 1 to 9999"),
        (early, "years 1 to 9999"),
    ] {
        let err = store
            .append(&tenant(), &stream("N"), ExpectedVersion::Any, vec![event])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidAppend { reason, .. } if reason.contains(words)),
            "{}: {err}",
            backend.name()
        );
    }

    let mut query = SearchQuery::new(tenant());
    query.payload_equals = vec![(vec!["note".into()], json!("a\u{0}"))];
    let err = store.search(&query).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidQuery { .. }),
        "{}: {err}",
        backend.name()
    );
    assert!(store.read_all(Position(0), 10).await.unwrap().is_empty());
    store.close().await;
}
conformance!(text_no_backend_can_hold_is_refused_alike);

async fn a_refused_event_fails_only_its_own_append(backend: &Backend) {
    let store: Arc<dyn EventStore> = backend.open().await;
    // Appended at once, so the group commit batches them together: the
    // poison ones must not take the valid ones down with them.
    let appends = (0..20).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let mut event = note(format!("n{i}"));
            if i % 5 == 0 {
                event.producer = format!("poison\u{0}{i}");
            }
            store
                .append(
                    &tenant(),
                    &stream(&format!("B-{i}")),
                    ExpectedVersion::Any,
                    vec![event],
                )
                .await
        }
    });
    let results = join_all(appends).await;
    for (i, result) in results.iter().enumerate() {
        if i % 5 == 0 {
            assert!(
                matches!(result, Err(StoreError::InvalidAppend { .. })),
                "{i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "{i}: {result:?}");
        }
    }
    assert_eq!(store.read_all(Position(0), 100).await.unwrap().len(), 16);
    store.close().await;
}
conformance!(a_refused_event_fails_only_its_own_append);

async fn what_is_stored_reads_back_as_it_was_hashed(backend: &Backend) {
    let store = backend.open().await;
    let numbers = r#"[1e18, -1e18, 1.5e17, 1e19, -1e19, 1e20, 2e300, 1.5, 100.0, 1e-7,
                      5e-324, 0.1, 18446744073709551615, -9223372036854775808, 0, -0.0]"#;
    let payloads: Vec<Value> = vec![
        json!({"note": "numbers", "n": serde_json::from_str::<Value>(numbers).unwrap()}),
        json!({"note": "text \u{1}\u{7f}\u{feff}\u{fffe}\u{10ffff} é 😀 \"quoted\" \\ / ~",
               "keys": {"a/b": 1, "~": 2, "": 3, "\u{1}": 4}}),
        json!({"note": "nested", "d": (0..60).fold(json!("bottom"), |v, _| json!([v]))}),
    ];
    let mut early = note("earliest");
    early.occurred_at = "0001-01-01T00:00:00Z".parse().unwrap();
    let mut late = note("latest");
    late.occurred_at = "9999-12-31T23:59:59.999999999Z".parse().unwrap();
    let mut events: Vec<NewEvent> = payloads
        .iter()
        .map(|p| {
            NewEvent::new(
                "tickets.note_appended".parse::<EventType>().unwrap(),
                SchemaVersion::V1,
                p.clone(),
            )
        })
        .collect();
    events.extend([early, late]);
    let sent = events.clone();
    store
        .append(&tenant(), &stream("R"), ExpectedVersion::Any, events)
        .await
        .unwrap();
    let back = store.read_all(Position(0), 10).await.unwrap();
    assert_eq!(back.len(), sent.len());
    let mut previous = ChainHash::GENESIS;
    for (stored, sent) in back.iter().zip(&sent) {
        assert_eq!(
            stored.payload,
            as_stored(&sent.payload),
            "{}",
            backend.name()
        );
        // Number for number, of the same kind (integer or double).
        assert_eq!(
            stored.payload.to_string(),
            as_stored(&sent.payload).to_string(),
            "{}",
            backend.name()
        );
        assert_eq!(
            stored.hash,
            chain_hash(&previous, stored),
            "{}",
            backend.name()
        );
        previous = stored.hash;
    }
    assert_eq!(
        back[3].occurred_at.to_rfc3339(),
        "0001-01-01T00:00:00+00:00"
    );
    store.close().await;
}
conformance!(what_is_stored_reads_back_as_it_was_hashed);
