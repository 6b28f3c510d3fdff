//! Two relays on one store (two processes): one is active, the other stands
//! by; when the active one dies without releasing its lease, the stand-by
//! takes over within 10 s and nothing committed is left unpublished. The
//! stand-by's store is told to poll only every minute, so its prompt
//! publishing of events committed through the other process shows the
//! cross-process wake-up (LISTEN/NOTIFY) at work.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::relay::{Relay, RelayConfig, RELAY_NAME};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::{Broker, ConsumerGroup, Subscription, Topic};
use herald_events::{Domain, EventId, NewEvent, SchemaVersion, TenantId};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::json;

fn config() -> RelayConfig {
    RelayConfig {
        lease_ttl: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        standby_poll: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

async fn store(db: &TestDatabase) -> Arc<dyn EventStore> {
    let mut config = PostgresConfig::new(db.url());
    config.poll_interval = Duration::from_secs(60);
    config.pool_size = 4;
    Arc::new(PostgresStore::open(config).await.unwrap())
}

async fn append(store: &Arc<dyn EventStore>, n: usize, label: &str) -> Vec<EventId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let e = NewEvent::new(
            "tickets.note_appended".parse().unwrap(),
            SchemaVersion::V1,
            json!({"note": format!("{label}-{i}")}),
        );
        ids.push(e.id);
        let stream = format!("tickets/T-{}", i % 7).parse().unwrap();
        store
            .append(
                &TenantId::default_tenant(),
                &stream,
                ExpectedVersion::Any,
                vec![e],
            )
            .await
            .unwrap();
    }
    ids
}

/// Receives until every id in `want` has been seen (duplicates allowed).
async fn receive_all(
    sub: &mut Subscription,
    want: &HashSet<EventId>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut missing = want.clone();
    while !missing.is_empty() {
        let left = within.checked_sub(started.elapsed()).unwrap_or_default();
        let d = tokio::time::timeout(left, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} events still unpublished after {within:?}",
                    missing.len()
                )
            })
            .unwrap()
            .unwrap();
        missing.remove(&d.content.as_ref().unwrap().event_id());
        d.ack().await.unwrap();
    }
    started.elapsed()
}

async fn lease_holder(db: &TestDatabase) -> Option<String> {
    let client = db.connect().await;
    client
        .query_opt(
            "SELECT holder FROM herald_leases WHERE name = $1 AND expires_at > now()",
            &[&RELAY_NAME],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_within_ten_seconds() {
    let db = TestDatabase::create().await;
    let (store_a, store_b) = (store(&db).await, store(&db).await);
    let broker = Arc::new(MemoryBroker::default());
    let topic = Topic::for_domain(&Domain::new("tickets").unwrap());
    let mut sub = broker
        .subscribe(&ConsumerGroup::new("takeover").unwrap(), &[topic])
        .await
        .unwrap();

    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay_a = Relay::new(store_a.clone(), broker.clone() as Arc<dyn Broker>, config());
    let holder_a = relay_a.holder().to_owned();
    let task_a = relay_a.spawn(stop_rx.clone());
    assert!(
        herald_testkit::eventually(Duration::from_secs(10), || async {
            lease_holder(&db).await.as_deref() == Some(holder_a.as_str())
        })
        .await,
        "the first relay never became active"
    );
    let relay_b = Relay::new(store_b.clone(), broker.clone() as Arc<dyn Broker>, config());
    let holder_b = relay_b.holder().to_owned();
    let task_b = relay_b.spawn(stop_rx);

    let first: HashSet<EventId> = append(&store_a, 50, "before").await.into_iter().collect();
    receive_all(&mut sub, &first, Duration::from_secs(10)).await;
    assert_eq!(
        lease_holder(&db).await.as_deref(),
        Some(holder_a.as_str()),
        "the stand-by took over a live relay"
    );

    // The active relay dies: its task is gone and its lease is not released.
    task_a.abort();
    let died = Instant::now();
    // Commits through the dead relay's store (its process lives on), which
    // only the stand-by can publish, woken by NOTIFY.
    let second: HashSet<EventId> = append(&store_a, 50, "after").await.into_iter().collect();
    receive_all(&mut sub, &second, Duration::from_secs(10)).await;
    let took_over = died.elapsed();
    assert_eq!(lease_holder(&db).await.as_deref(), Some(holder_b.as_str()));
    assert!(
        took_over < Duration::from_secs(10),
        "takeover took {took_over:?}"
    );
    eprintln!("stand-by published everything {took_over:?} after the active relay died");

    task_b.abort();
    store_a.close().await;
    store_b.close().await;
}
