//! Aggregate snapshots: one per stream of a tenant, loaded back as saved; a
//! save of a lower stream version never replaces a higher one (same or
//! higher does), even when saves race; tenants and streams are isolated; a
//! snapshot can be deleted; an invalid one (oversized, version 0) is refused
//! and changes nothing; snapshots survive a restart and stay out of the log;
//! processes that cross the same boundary of every N events write one
//! snapshot between them.

mod conformance;

use std::sync::Arc;

use conformance::{note, stream, tenant, Backend};
use herald_events::{StreamVersion, TenantId};
use herald_store::{EventStore, ExpectedVersion, Snapshot, StoreError, MAX_SNAPSHOT_STATE_BYTES};
use serde_json::{json, Value};

fn snapshot(tenant: &TenantId, stream_name: &str, version: u64, state: Value) -> Snapshot {
    Snapshot::new(
        tenant.clone(),
        stream(stream_name),
        StreamVersion(version),
        1,
        state,
    )
}

async fn load(
    store: &Arc<dyn EventStore>,
    tenant: &TenantId,
    stream_name: &str,
) -> Option<Snapshot> {
    store
        .load_snapshot(tenant, &stream(stream_name))
        .await
        .unwrap()
}

async fn saved_snapshots_load_back_as_saved(backend: &Backend) {
    let store = backend.open().await;
    assert_eq!(load(&store, &tenant(), "T-1").await, None);

    let state = json!({
        "status": "open",
        "notes": ["first", "zweite", "第三"],
        "counts": {"notes": 3, "reopened": 0},
        "score": 1.5,
        "ratio": 0.1,
        "whole": 1.0,
        "delta": -7,
        "big": u64::MAX,
        "closed_at": null,
        "urgent": true,
        "text": "quotes \" and \\ backslashes, \n newlines"
    });
    let mut saved = snapshot(&tenant(), "T-1", 3, state.clone());
    saved.state_version = u32::MAX;
    store.save_snapshot(&saved).await.unwrap();

    let loaded = load(&store, &tenant(), "T-1").await.expect("a snapshot");
    assert_eq!(loaded.state, state, "{}: state changed", backend.name());
    assert_eq!(loaded.stream_version, StreamVersion(3));
    assert_eq!(loaded.state_version, u32::MAX);
    assert_eq!(loaded, saved, "{}: snapshot changed", backend.name());

    // Saving needs no events in the log, and writes none there.
    let head = store.head().await.unwrap();
    assert_eq!(
        head.position.get(),
        0,
        "{}: a snapshot entered the log",
        backend.name()
    );
    store.close().await;
}
conformance!(saved_snapshots_load_back_as_saved);

async fn a_lower_version_never_replaces_a_higher_one(backend: &Backend) {
    let store = backend.open().await;
    let t = tenant();
    store
        .save_snapshot(&snapshot(&t, "T-1", 5, json!({"v": 5})))
        .await
        .unwrap();

    // A slow writer's older state is ignored, without an error.
    store
        .save_snapshot(&snapshot(&t, "T-1", 4, json!({"v": 4})))
        .await
        .unwrap();
    let kept = load(&store, &t, "T-1").await.unwrap();
    assert_eq!(
        (kept.stream_version, &kept.state),
        (StreamVersion(5), &json!({"v": 5})),
        "{}: a lower version replaced a higher one",
        backend.name()
    );

    // The same version replaces (a new state shape, say).
    let mut same = snapshot(&t, "T-1", 5, json!({"v": "5 again"}));
    same.state_version = 2;
    store.save_snapshot(&same).await.unwrap();
    assert_eq!(load(&store, &t, "T-1").await.unwrap(), same);

    // A higher one replaces.
    let higher = snapshot(&t, "T-1", 9, json!({"v": 9}));
    store.save_snapshot(&higher).await.unwrap();
    assert_eq!(load(&store, &t, "T-1").await.unwrap(), higher);

    // Racing saves keep the highest, whatever order they commit in.
    let saves: Vec<_> = (10..=40u64)
        .rev()
        .map(|v| {
            let store = Arc::clone(&store);
            let t = t.clone();
            tokio::spawn(async move {
                store
                    .save_snapshot(&snapshot(&t, "T-1", v, json!({ "v": v })))
                    .await
            })
        })
        .collect();
    for save in saves {
        save.await.unwrap().unwrap();
    }
    let kept = load(&store, &t, "T-1").await.unwrap();
    assert_eq!(
        (kept.stream_version, &kept.state),
        (StreamVersion(40), &json!({"v": 40})),
        "{}: racing saves did not keep the highest",
        backend.name()
    );
    store.close().await;
}
conformance!(a_lower_version_never_replaces_a_higher_one);

async fn processes_crossing_one_boundary_write_one_snapshot(backend: &Backend) {
    // Two handles on one store: two processes.
    let (a, b) = (backend.open().await, backend.open().await);
    let t = tenant();
    let at = |v: u64| snapshot(&t, "T-1", v, json!({ "v": v }));

    let first = at(10);
    assert!(a
        .save_snapshot_past(&first, StreamVersion(10))
        .await
        .unwrap());
    assert!(
        !b.save_snapshot_past(&at(11), StreamVersion(10))
            .await
            .unwrap(),
        "{}: a second save at boundary 10 was written",
        backend.name()
    );
    assert_eq!(load(&a, &t, "T-1").await.unwrap(), first);

    // A kept snapshot of another state version is replaced at once.
    let mut reshaped = at(12);
    reshaped.state_version = 2;
    assert!(b
        .save_snapshot_past(&reshaped, StreamVersion(10))
        .await
        .unwrap());
    assert_eq!(load(&a, &t, "T-1").await.unwrap(), reshaped);

    // Racing saves at one boundary, from both processes: one is written.
    let saves: Vec<_> = (30..38u64)
        .map(|v| {
            let store = Arc::clone(if v % 2 == 0 { &a } else { &b });
            let mut s = at(v);
            s.state_version = 2;
            tokio::spawn(async move { store.save_snapshot_past(&s, StreamVersion(30)).await })
        })
        .collect();
    let mut written = 0;
    for save in saves {
        written += usize::from(save.await.unwrap().unwrap());
    }
    assert_eq!(
        written,
        1,
        "{}: racing saves at boundary 30",
        backend.name()
    );
    let kept = load(&b, &t, "T-1").await.unwrap().stream_version.get();
    assert!((30..38).contains(&kept), "kept {kept}");

    // A boundary past the snapshot's own version counts as just past it:
    // a stale save never replaces a newer snapshot.
    let mut stale = at(25);
    stale.state_version = 2;
    assert!(!a
        .save_snapshot_past(&stale, StreamVersion(100))
        .await
        .unwrap());
    assert_eq!(
        load(&a, &t, "T-1").await.unwrap().stream_version.get(),
        kept
    );
    a.close().await;
    b.close().await;
}
conformance!(processes_crossing_one_boundary_write_one_snapshot);

async fn tenants_and_streams_are_isolated(backend: &Backend) {
    let store = backend.open().await;
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();

    let a1 = snapshot(&acme, "T-1", 2, json!({"owner": "acme", "stream": 1}));
    store.save_snapshot(&a1).await.unwrap();
    assert_eq!(
        load(&store, &globex, "T-1").await,
        None,
        "{}: another tenant sees the snapshot",
        backend.name()
    );
    assert_eq!(load(&store, &acme, "T-2").await, None);

    // Another tenant's snapshot of the same stream, at a lower version, is
    // its own: it is kept and does not touch acme's.
    let g1 = snapshot(&globex, "T-1", 1, json!({"owner": "globex"}));
    store.save_snapshot(&g1).await.unwrap();
    let a2 = snapshot(&acme, "T-2", 7, json!({"owner": "acme", "stream": 2}));
    store.save_snapshot(&a2).await.unwrap();
    assert_eq!(load(&store, &acme, "T-1").await, Some(a1.clone()));
    assert_eq!(load(&store, &globex, "T-1").await, Some(g1.clone()));
    assert_eq!(load(&store, &acme, "T-2").await, Some(a2));

    // Deleting is per tenant and stream too, and deleting nothing is fine.
    store.delete_snapshots(&acme, &stream("T-2")).await.unwrap();
    store.delete_snapshots(&acme, &stream("T-2")).await.unwrap();
    assert_eq!(load(&store, &acme, "T-2").await, None);
    assert_eq!(load(&store, &acme, "T-1").await, Some(a1.clone()));
    assert_eq!(load(&store, &globex, "T-1").await, Some(g1));
    store
        .delete_snapshots(&globex, &stream("T-1"))
        .await
        .unwrap();
    assert_eq!(load(&store, &globex, "T-1").await, None);
    assert_eq!(load(&store, &acme, "T-1").await, Some(a1));

    // After a delete, any version may be saved again.
    let again = snapshot(&acme, "T-2", 1, json!({"rebuilt": true}));
    store.save_snapshot(&again).await.unwrap();
    assert_eq!(load(&store, &acme, "T-2").await, Some(again));
    store.close().await;
}
conformance!(tenants_and_streams_are_isolated);

async fn invalid_snapshots_are_refused_and_change_nothing(backend: &Backend) {
    let store = backend.open().await;
    let t = tenant();
    let kept = snapshot(&t, "T-1", 3, json!({"v": 3}));
    store.save_snapshot(&kept).await.unwrap();

    // One byte over the limit: a string's JSON is its characters and two quotes.
    let oversized = json!("x".repeat(MAX_SNAPSHOT_STATE_BYTES - 1));
    for stream_name in ["T-1", "T-2"] {
        let e = store
            .save_snapshot(&snapshot(&t, stream_name, 10, oversized.clone()))
            .await
            .expect_err("an oversized state was accepted");
        assert!(
            matches!(&e, StoreError::InvalidSnapshot { stream: s, .. } if *s == stream(stream_name)),
            "{}: {e:?}",
            backend.name()
        );
        assert!(e.is_caller_error());
        assert_eq!(e.kind(), "invalid_snapshot");
    }
    for (version, state) in [(0, json!({})), (10, json!({"nul": "a\u{0}b"}))] {
        let e = store
            .save_snapshot(&snapshot(&t, "T-1", version, state))
            .await
            .expect_err("an invalid snapshot was accepted");
        assert!(matches!(e, StoreError::InvalidSnapshot { .. }), "{e:?}");
    }
    assert_eq!(load(&store, &t, "T-1").await, Some(kept));
    assert_eq!(load(&store, &t, "T-2").await, None);

    // Exactly at the limit is kept.
    let at_limit = snapshot(
        &t,
        "T-2",
        1,
        json!("y".repeat(MAX_SNAPSHOT_STATE_BYTES - 2)),
    );
    store.save_snapshot(&at_limit).await.unwrap();
    assert_eq!(load(&store, &t, "T-2").await, Some(at_limit));
    store.close().await;
}
conformance!(invalid_snapshots_are_refused_and_change_nothing);

async fn snapshots_survive_a_restart(backend: &Backend) {
    let saved = {
        let store = backend.open().await;
        store
            .append(
                &tenant(),
                &stream("T-1"),
                ExpectedVersion::NO_STREAM,
                vec![note("a"), note("b")],
            )
            .await
            .unwrap();
        let saved = snapshot(&tenant(), "T-1", 2, json!({"notes": ["a", "b"]}));
        store.save_snapshot(&saved).await.unwrap();
        store.close().await;
        saved
    };

    let store = backend.open().await;
    assert_eq!(
        load(&store, &tenant(), "T-1").await,
        Some(saved),
        "{}: the snapshot did not survive the restart",
        backend.name()
    );
    // The guard holds across the restart too.
    store
        .save_snapshot(&snapshot(&tenant(), "T-1", 1, json!({"notes": ["a"]})))
        .await
        .unwrap();
    assert_eq!(
        load(&store, &tenant(), "T-1").await.unwrap().stream_version,
        StreamVersion(2)
    );
    // And the log is as the appends left it.
    assert_eq!(
        store
            .stream_version(&tenant(), &stream("T-1"))
            .await
            .unwrap(),
        StreamVersion(2)
    );
    assert_eq!(store.head().await.unwrap().position.get(), 2);
    store.close().await;
}
conformance!(snapshots_survive_a_restart);
