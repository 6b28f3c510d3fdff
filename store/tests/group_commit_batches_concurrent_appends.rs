//! Group commit: concurrent appends share transactions, and an append refused
//! inside a batch fails alone while its neighbours commit.

mod conformance;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use conformance::{note, stream, tenant, Backend, Options};
use herald_events::{EventEnvelope, Position};
use herald_store::{AppendHooks, ExpectedVersion, GroupCommitConfig, StoreError};

#[derive(Debug, Default)]
struct CountCommits(AtomicUsize);

#[async_trait]
impl AppendHooks for CountCommits {
    async fn before_commit(&self, _rows: &[EventEnvelope]) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn concurrent_appends_share_transactions_and_conflicts_fail_alone(backend: &Backend) {
    let commits = Arc::new(CountCommits::default());
    let store = backend
        .open_with(Options {
            hooks: Some(commits.clone()),
            group_commit: Some(GroupCommitConfig {
                max_batch_events: 16,
                max_wait: std::time::Duration::from_millis(20),
                queue_capacity: 1024,
            }),
            ..Default::default()
        })
        .await;

    // 64 appends at once: 8 race to create the same stream, 56 go to their own.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = if i % 8 == 0 {
                    stream("contested")
                } else {
                    stream(&format!("own-{i}"))
                };
                (
                    i,
                    store
                        .append(
                            &tenant(),
                            &s,
                            ExpectedVersion::NO_STREAM,
                            vec![note(format!("e{i}"))],
                        )
                        .await,
                )
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match result {
            Ok(_) if i % 8 == 0 => won += 1,
            Ok(_) => {}
            Err(StoreError::WrongExpectedVersion { .. }) if i % 8 == 0 => {}
            Err(e) => panic!("{}: append {i} failed: {e}", backend.name()),
        }
    }
    assert_eq!(
        won,
        1,
        "{}: exactly one creator of the contested stream wins",
        backend.name()
    );
    assert_eq!(store.read_all(Position(0), 1000).await.unwrap().len(), 57);

    let transactions = commits.0.load(Ordering::SeqCst);
    assert!(
        (4..64).contains(&transactions),
        "{}: 64 appends took {transactions} transactions; batches hold at most 16 events",
        backend.name()
    );
    store.close().await;
}
conformance!(concurrent_appends_share_transactions_and_conflicts_fail_alone);

async fn closing_commits_what_is_queued(backend: &Backend) {
    let store = backend.open().await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(
                        &tenant(),
                        &stream(&format!("c{i}")),
                        ExpectedVersion::Any,
                        vec![note("x")],
                    )
                    .await
            })
        })
        .collect();
    // Close while appends are in flight: each either committed or was refused
    // as closed, never lost after being acknowledged.
    store.close().await;
    let mut acknowledged = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(outcome) => acknowledged.push(outcome.first_position()),
            Err(StoreError::Closed) => {}
            Err(e) => panic!("{}: {e}", backend.name()),
        }
    }
    let reopened = backend.open().await;
    let stored: Vec<Position> = reopened
        .read_all(Position(0), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    for p in acknowledged {
        assert!(
            stored.contains(&p),
            "{}: acknowledged position {p} is not stored",
            backend.name()
        );
    }
    assert!(matches!(
        store
            .append(
                &tenant(),
                &stream("late"),
                ExpectedVersion::Any,
                vec![note("x")]
            )
            .await,
        Err(StoreError::Closed)
    ));
    reopened.close().await;
}
conformance!(closing_commits_what_is_queued);
