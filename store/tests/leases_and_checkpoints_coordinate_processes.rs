//! Leases let one process do a job while others stand by, and take over
//! when its lease expires; checkpoints remember how far a job got, and a
//! checkpoint fenced by a lease is refused once the lease is lost.

mod conformance;

use std::time::Duration;

use conformance::Backend;
use herald_events::Position;
use herald_testkit::eventually;

async fn one_holder_at_a_time_and_takeover_on_expiry(backend: &Backend) {
    let a = backend.open().await;
    let b = backend.open().await;
    let long = Duration::from_secs(30);

    assert!(a.acquire_lease("relay", "a", long).await.unwrap());
    assert!(
        !b.acquire_lease("relay", "b", long).await.unwrap(),
        "{}: two holders",
        backend.name()
    );
    assert!(
        a.acquire_lease("relay", "a", long).await.unwrap(),
        "{}: renewal failed",
        backend.name()
    );
    a.release_lease("relay", "a").await.unwrap();
    assert!(
        b.acquire_lease("relay", "b", long).await.unwrap(),
        "{}: a released lease stays taken",
        backend.name()
    );
    // A lease other than b's own is unaffected by releasing someone else's.
    a.release_lease("relay", "a").await.unwrap();
    assert!(!a.acquire_lease("relay", "a", long).await.unwrap());

    // A short lease expires on its own: the stand-by takes over.
    assert!(a
        .acquire_lease("short", "a", Duration::from_millis(200))
        .await
        .unwrap());
    assert!(!b.acquire_lease("short", "b", long).await.unwrap());
    let took_over = eventually(Duration::from_secs(5), || {
        let b = b.clone();
        async move {
            b.acquire_lease("short", "b", Duration::from_secs(30))
                .await
                .unwrap()
        }
    })
    .await;
    assert!(
        took_over,
        "{}: an expired lease was never taken over",
        backend.name()
    );
    a.close().await;
    b.close().await;
}
conformance!(one_holder_at_a_time_and_takeover_on_expiry);

async fn checkpoints_persist_and_are_fenced_by_leases(backend: &Backend) {
    let a = backend.open().await;
    assert_eq!(a.checkpoint("relay").await.unwrap(), None);
    assert!(a
        .save_checkpoint("relay", Position(10), None)
        .await
        .unwrap());
    assert!(a
        .save_checkpoint("relay", Position(12), None)
        .await
        .unwrap());
    assert_eq!(a.checkpoint("relay").await.unwrap(), Some(Position(12)));

    assert!(a
        .acquire_lease("relay-lease", "a", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(a
        .save_checkpoint("relay", Position(20), Some(("relay-lease", "a")))
        .await
        .unwrap());
    assert!(
        !a.save_checkpoint("relay", Position(30), Some(("relay-lease", "zombie")))
            .await
            .unwrap(),
        "{}: a holder without the lease saved a checkpoint",
        backend.name()
    );
    a.close().await;

    let reopened = backend.open().await;
    assert_eq!(
        reopened.checkpoint("relay").await.unwrap(),
        Some(Position(20))
    );
    reopened.close().await;
}
conformance!(checkpoints_persist_and_are_fenced_by_leases);

async fn a_checkpoint_keeps_the_state_saved_with_it(backend: &Backend) {
    let a = backend.open().await;
    assert_eq!(a.checkpoint_state("timers").await.unwrap(), None);
    let state = r#"{"entries":[{"id":"t-1","due":"2026-01-01T00:00:00Z"}],"note":"é ✓"}"#;
    a.save_checkpoint_state("timers", Position(7), state)
        .await
        .unwrap();
    a.save_checkpoint_state("timers", Position(9), state)
        .await
        .unwrap();
    a.close().await;

    let reopened = backend.open().await;
    assert_eq!(
        reopened.checkpoint_state("timers").await.unwrap(),
        Some((Position(9), Some(state.to_owned()))),
        "{}: the state or its position was not kept",
        backend.name()
    );
    assert_eq!(
        reopened.checkpoint("timers").await.unwrap(),
        Some(Position(9))
    );
    // A plain checkpoint has no state.
    reopened
        .save_checkpoint("relay", Position(3), None)
        .await
        .unwrap();
    assert_eq!(
        reopened.checkpoint_state("relay").await.unwrap(),
        Some((Position(3), None))
    );
    reopened.close().await;
}
conformance!(a_checkpoint_keeps_the_state_saved_with_it);
