//! A process occupies the store alone (nothing else may use it meanwhile)
//! or shared with others that share it; an incompatible claim is refused
//! and names the holder; dropping the claim (as dying does) frees it.

mod conformance;

use conformance::Backend;
use std::time::Duration;

use herald_store::{Occupancy, StoreError};

/// How soon a dropped claim must be free again.
const RELEASE: Duration = Duration::from_secs(5);

fn holders(result: Result<herald_store::OccupancyGuard, StoreError>) -> Vec<String> {
    match result {
        Err(StoreError::Occupied { by }) => by,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("an incompatible claim was granted"),
    }
}

async fn an_alone_claim_excludes_every_other(backend: &Backend) {
    let (a, b) = (backend.open().await, backend.open().await);
    let alone = a
        .occupy(Occupancy::Alone, "herald serve pid 1 broker memory")
        .await
        .unwrap();
    let by = holders(b.occupy(Occupancy::Shared, "herald serve pid 2").await);
    assert!(
        by.iter()
            .any(|h| h.contains("pid 1") || h.contains("Herald")),
        "{}: {by:?}",
        backend.name()
    );
    holders(b.occupy(Occupancy::Alone, "herald serve pid 2").await);
    drop(alone);
    // Postgres frees the lock when the holder's backend has exited, which
    // follows the closed connection by a moment: a dead process's claim is
    // gone within a bounded time, not at the instant it dies.
    let freed = herald_testkit::eventually(RELEASE, || async {
        match b.occupy(Occupancy::Shared, "herald serve pid 2").await {
            Ok(_shared) => true,
            Err(StoreError::Occupied { .. }) => false,
            Err(e) => panic!("refused for another reason: {e}"),
        }
    })
    .await;
    assert!(
        freed,
        "{}: a dropped claim still holds after {RELEASE:?}",
        backend.name()
    );
    a.close().await;
    b.close().await;
}
conformance!(an_alone_claim_excludes_every_other);

async fn shared_claims_coexist_and_exclude_an_alone_one(backend: &Backend) {
    let (a, b, c) = (
        backend.open().await,
        backend.open().await,
        backend.open().await,
    );
    let _one = a
        .occupy(Occupancy::Shared, "herald serve pid 1")
        .await
        .unwrap();
    let two = b
        .occupy(Occupancy::Shared, "herald serve pid 2")
        .await
        .unwrap();
    let by = holders(c.occupy(Occupancy::Alone, "herald serve pid 3").await);
    assert!(!by.is_empty(), "{}", backend.name());
    drop(two);
    holders(c.occupy(Occupancy::Alone, "herald serve pid 3").await);
    a.close().await;
    b.close().await;
    c.close().await;
}
conformance!(shared_claims_coexist_and_exclude_an_alone_one);
