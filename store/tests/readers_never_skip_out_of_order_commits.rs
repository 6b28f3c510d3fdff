//! No skip: a reader tailing the global log never misses an event because a
//! transaction with a lower position committed after one with a higher
//! position (the classic failure of sequences drawn at insert and made
//! visible at commit).
//!
//! Eight appenders, each with its own store handle (as eight processes would
//! have), append concurrently. The first one's transaction is held open after
//! its rows are written, before commit, while the seven others try to
//! commit behind it; then it is released. Two readers tail the log from 0
//! throughout, one with `subscribe_all` and one polling `read_all`, and must
//! see every committed event exactly once, in strictly increasing position.

mod conformance;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conformance::{notes, stream, tenant, Backend, Options};
use futures::StreamExt;
use herald_events::{EventEnvelope, EventId, Position};
use herald_store::{AppendHooks, ExpectedVersion};
use herald_testkit::eventually;
use tokio::sync::oneshot;

const APPENDERS: usize = 8;
const APPENDS_EACH: usize = 25;

/// Holds the first batch open before commit until the test releases it.
#[derive(Debug)]
struct HoldFirstCommit {
    held: Mutex<Option<oneshot::Sender<Vec<Position>>>>,
    release: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl AppendHooks for HoldFirstCommit {
    async fn before_commit(&self, rows: &[EventEnvelope]) -> Result<(), String> {
        let held = self.held.lock().unwrap().take();
        if let Some(held) = held {
            let _ = held.send(rows.iter().map(|r| r.position).collect());
            if let Some(release) = self.release.lock().await.take() {
                let _ = release.await;
            }
        }
        Ok(())
    }
}

/// Counts transactions about to ask for the log lock.
#[derive(Debug, Default)]
struct CountLockRequests(Arc<AtomicUsize>);

#[async_trait]
impl AppendHooks for CountLockRequests {
    async fn before_lock(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn check_exactly_once_in_order(who: &str, seen: &[EventEnvelope], committed: &HashSet<EventId>) {
    let positions: Vec<u64> = seen.iter().map(|e| e.position.get()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{who}: positions not strictly increasing: {positions:?}"
    );
    let expected: Vec<u64> = (1..=committed.len() as u64).collect();
    assert_eq!(positions, expected, "{who}: skipped or repeated positions");
    let ids: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), seen.len(), "{who}: an event was delivered twice");
    assert_eq!(
        &ids, committed,
        "{who}: saw a different set of events than was committed"
    );
}

async fn readers_see_every_event_once_in_order(backend: &Backend) {
    let (held_tx, held_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    let hold = Arc::new(HoldFirstCommit {
        held: Mutex::new(Some(held_tx)),
        release: tokio::sync::Mutex::new(Some(release_rx)),
    });
    let lock_requests = Arc::new(AtomicUsize::new(0));

    let reader = backend.open().await;
    let mut stores = vec![
        backend
            .open_with(Options {
                hooks: Some(hold),
                pool_size: Some(2),
                ..Default::default()
            })
            .await,
    ];
    for _ in 1..APPENDERS {
        let hooks = Arc::new(CountLockRequests(lock_requests.clone()));
        stores.push(
            backend
                .open_with(Options {
                    hooks: Some(hooks),
                    pool_size: Some(2),
                    ..Default::default()
                })
                .await,
        );
    }

    // Reader 1: a subscription from the start.
    let subscribed = Arc::new(Mutex::new(Vec::<EventEnvelope>::new()));
    let subscriber = {
        let (reader, subscribed) = (reader.clone(), subscribed.clone());
        tokio::spawn(async move {
            let mut events = reader.subscribe_all(Position(0));
            while let Some(event) = events.next().await {
                subscribed
                    .lock()
                    .unwrap()
                    .push(event.expect("the subscription reads"));
            }
        })
    };
    // Reader 2: polling read_all from the last position seen.
    let polled = Arc::new(Mutex::new(Vec::<EventEnvelope>::new()));
    let poller = {
        let (reader, polled) = (reader.clone(), polled.clone());
        tokio::spawn(async move {
            let mut next = Position(0);
            loop {
                let page = reader.read_all(next, 7).await.expect("read_all reads");
                if let Some(last) = page.last() {
                    next = last.position.next();
                    polled.lock().unwrap().extend(page);
                } else {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    let append_many = |i: usize, store: Arc<dyn herald_store::EventStore>| async move {
        let mut ids = Vec::new();
        for n in 0..APPENDS_EACH {
            let events = notes(&format!("a{i}-{n}"), 1 + (i + n) % 3);
            ids.extend(events.iter().map(|e| e.id));
            store
                .append(
                    &tenant(),
                    &stream(&format!("s{i}")),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .expect("append");
        }
        ids
    };

    // The first appender's first batch is held open before commit.
    let first = tokio::spawn(append_many(0, stores[0].clone()));
    let held_positions = held_rx.await.expect("the first batch reaches its commit");
    assert_eq!(
        held_positions[0],
        Position(1),
        "the held batch has the lowest position"
    );

    // The others try to append behind it.
    let others: Vec<_> = (1..APPENDERS)
        .map(|i| tokio::spawn(append_many(i, stores[i].clone())))
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || async {
            lock_requests.load(Ordering::SeqCst) >= APPENDERS - 1
        })
        .await,
        "{}: the other appenders never reached the log lock",
        backend.name()
    );
    if backend.lock_waiters().await.is_some() {
        assert!(
            eventually(Duration::from_secs(20), || async {
                backend.lock_waiters().await.unwrap_or(0) >= APPENDERS - 1
            })
            .await,
            "{}: the other appenders are not waiting behind the held transaction",
            backend.name()
        );
    }
    // Nothing past the uncommitted lowest position is visible to anyone.
    assert!(
        subscribed.lock().unwrap().is_empty(),
        "{}: a reader saw past an uncommitted position",
        backend.name()
    );
    assert!(
        polled.lock().unwrap().is_empty(),
        "{}: a reader saw past an uncommitted position",
        backend.name()
    );

    release_tx.send(()).expect("release the held batch");
    let mut committed = HashSet::new();
    committed.extend(first.await.unwrap());
    for task in others {
        committed.extend(task.await.unwrap());
    }

    let total = committed.len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            subscribed.lock().unwrap().len() >= total && polled.lock().unwrap().len() >= total
        })
        .await,
        "{}: readers did not catch up: subscribed {} polled {} of {total}",
        backend.name(),
        subscribed.lock().unwrap().len(),
        polled.lock().unwrap().len()
    );
    poller.abort();
    subscriber.abort();
    check_exactly_once_in_order("subscribe_all", &subscribed.lock().unwrap(), &committed);
    check_exactly_once_in_order("read_all", &polled.lock().unwrap(), &committed);

    for store in stores {
        store.close().await;
    }
    reader.close().await;
}
conformance!(readers_see_every_event_once_in_order);
