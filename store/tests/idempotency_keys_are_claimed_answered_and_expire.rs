//! Idempotency records on both backends: a free key is claimed once (of
//! many racing claims exactly one is new), a claim of the same request
//! finds it unsettled until its answer is recorded and then the answer,
//! another request's claim is a conflict; a released claim frees the key
//! but an answered one stays; keys are per tenant and stream; a record is
//! kept across a restart and for the window only (a test clock moves time);
//! and the events a claim's ids name are found by id within their tenant.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conformance::{note, stream, tenant, Backend, Options};
use herald_events::TenantId;
use herald_store::{Claimed, Clock, EventStore, ExpectedVersion, IdempotencyClaim, ManualClock};
use serde_json::json;

fn claim(tenant: &TenantId, stream_id: &str, key: &str, fingerprint: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        tenant: tenant.clone(),
        stream: stream(stream_id),
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

const WINDOW: Duration = Duration::from_secs(3600);

async fn open(backend: &Backend, clock: &Arc<ManualClock>) -> Arc<dyn EventStore> {
    backend
        .open_with(Options {
            clock: Some(clock.clone()),
            idempotency_window: Some(WINDOW),
            ..Default::default()
        })
        .await
}

async fn a_key_is_claimed_answered_and_kept_for_its_window(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = open(backend, &clock).await;
    let t = tenant();
    let first = claim(&t, "T-1", "k", "f1");

    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::New
    );
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::Unsettled,
        "{}: claimed but not answered",
        backend.name()
    );
    let other = claim(&t, "T-1", "k", "f2");
    let Claimed::Conflict { first_used_at } = store.claim_idempotency_key(&other).await.unwrap()
    else {
        panic!("{}: another request's claim is a conflict", backend.name());
    };
    assert!((first_used_at - clock.now()).num_seconds().abs() <= 1);

    let answer = json!({"stream": "tickets/T-1", "events": [{"id": "x", "position": 7}]});
    store
        .complete_idempotency_key(&first, &answer)
        .await
        .unwrap();
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::Answered(answer.clone())
    );
    // An answered record is not released, nor completed by another request.
    store.release_idempotency_key(&first).await.unwrap();
    store
        .complete_idempotency_key(&other, &json!({"other": true}))
        .await
        .unwrap();
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::Answered(answer.clone())
    );

    // Keys are per tenant and per stream.
    let elsewhere = TenantId::new("globex").unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&claim(&elsewhere, "T-1", "k", "f2"))
            .await
            .unwrap(),
        Claimed::New
    );
    assert_eq!(
        store
            .claim_idempotency_key(&claim(&t, "T-2", "k", "f2"))
            .await
            .unwrap(),
        Claimed::New
    );

    // A released (unanswered) claim frees the key for another request.
    let refused = claim(&t, "T-3", "k", "f1");
    assert_eq!(
        store.claim_idempotency_key(&refused).await.unwrap(),
        Claimed::New
    );
    store.release_idempotency_key(&refused).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&claim(&t, "T-3", "k", "f2"))
            .await
            .unwrap(),
        Claimed::New
    );

    // Kept across a restart...
    store.close().await;
    let store = open(backend, &clock).await;
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::Answered(answer.clone()),
        "{}: a restart forgot the record",
        backend.name()
    );
    // ...for the window, from the first use.
    clock.advance(WINDOW - Duration::from_secs(1));
    assert_eq!(
        store.claim_idempotency_key(&first).await.unwrap(),
        Claimed::Answered(answer)
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        store.claim_idempotency_key(&other).await.unwrap(),
        Claimed::New,
        "{}: past the window the key is free again",
        backend.name()
    );
    store.close().await;
}
conformance!(a_key_is_claimed_answered_and_kept_for_its_window);

async fn of_racing_claims_exactly_one_is_new(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = open(backend, &clock).await;
    let t = tenant();
    let claims: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let c = claim(&t, "T-race", "k", if i % 2 == 0 { "even" } else { "odd" });
            tokio::spawn(async move { store.claim_idempotency_key(&c).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in claims {
        outcomes.push(c.await.unwrap());
    }
    let new = outcomes.iter().filter(|c| **c == Claimed::New).count();
    assert_eq!(new, 1, "{}: {outcomes:?}", backend.name());
    let unsettled = outcomes
        .iter()
        .filter(|c| **c == Claimed::Unsettled)
        .count();
    let conflicts = outcomes
        .iter()
        .filter(|c| matches!(c, Claimed::Conflict { .. }))
        .count();
    assert_eq!((unsettled, conflicts), (7, 8), "{outcomes:?}");
    store.close().await;
}
conformance!(of_racing_claims_exactly_one_is_new);

async fn a_claims_events_are_found_by_id_within_the_tenant(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = open(backend, &clock).await;
    let t = tenant();
    let c = claim(&t, "T-1", "k", "f");
    let events = vec![
        note("a").with_id(c.event_id(0)),
        note("b").with_id(c.event_id(1)),
    ];
    store
        .append(&t, &c.stream, ExpectedVersion::NO_STREAM, events)
        .await
        .unwrap();
    store
        .append(&t, &c.stream, ExpectedVersion::Any, vec![note("later")])
        .await
        .unwrap();
    let ids: Vec<_> = (0..4).map(|i| c.event_id(i)).collect();
    let found = store.events_by_id(&t, &ids).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![c.event_id(0), c.event_id(1)],
        "{}",
        backend.name()
    );
    assert_eq!(found[1].payload["note"], "b");
    let elsewhere = TenantId::new("globex").unwrap();
    assert!(store
        .events_by_id(&elsewhere, &ids)
        .await
        .unwrap()
        .is_empty());
    assert!(store.events_by_id(&t, &[]).await.unwrap().is_empty());
    store.close().await;
}
conformance!(a_claims_events_are_found_by_id_within_the_tenant);
