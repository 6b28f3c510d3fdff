//! The relay publishes every committed event to the broker, each stream's
//! events in order, checkpoints its progress, and wakes on a local commit at
//! once rather than at the next poll.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::relay::{Relay, RelayConfig, RELAY_NAME};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::{Broker, ConsumerGroup, Payload, Topic};
use herald_events::{Domain, EventId, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::{
    EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, PostgresConfig, PostgresStore,
};
use herald_testkit::{eventually, TestDatabase};
use serde_json::json;

/// Longer than any test: only a wake-up can deliver promptly.
const SLOW_POLL: Duration = Duration::from_secs(60);

fn note(text: &str) -> NewEvent {
    NewEvent::new(
        "tickets.note_appended".parse().unwrap(),
        SchemaVersion::V1,
        json!({ "note": text }),
    )
}

async fn relays_in_order(store: Arc<dyn EventStore>) {
    let broker = Arc::new(MemoryBroker::default());
    let group = ConsumerGroup::new("relay-test").unwrap();
    let topic = Topic::for_domain(&Domain::new("tickets").unwrap());
    let mut sub = broker.subscribe(&group, &[topic]).await.unwrap();

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay = Relay::new(
        store.clone(),
        broker.clone() as Arc<dyn Broker>,
        RelayConfig::default(),
    )
    .spawn(stop_rx);

    // 4 concurrent appenders over 10 streams.
    let appenders: Vec<_> = (0..4)
        .map(|a| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..75 {
                    let stream: StreamId =
                        format!("tickets/T-{}", (a * 75 + n) % 10).parse().unwrap();
                    let event = note(&format!("{a}-{n}"));
                    ids.push(event.id);
                    store
                        .append(
                            &TenantId::default_tenant(),
                            &stream,
                            ExpectedVersion::Any,
                            vec![event],
                        )
                        .await
                        .unwrap();
                }
                ids
            })
        })
        .collect();
    let mut expected = HashSet::new();
    for a in appenders {
        expected.extend(a.await.unwrap());
    }

    let mut seen: Vec<(String, u64, EventId)> = Vec::new();
    while seen.len() < expected.len() {
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the relay keeps publishing")
            .unwrap()
            .unwrap();
        let Ok(Payload::Event(e)) = &d.content else {
            panic!("an inline event")
        };
        seen.push((e.stream.to_string(), e.stream_version.get(), e.id));
        d.ack().await.unwrap();
    }
    let ids: HashSet<EventId> = seen.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(
        ids,
        expected,
        "{}: the broker got another set",
        store.backend()
    );
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (stream, version, _) in &seen {
        let previous = last.insert(stream, *version).unwrap_or(0);
        assert_eq!(
            *version,
            previous + 1,
            "{}: {stream} out of order",
            store.backend()
        );
    }
    let head = store.head().await.unwrap().position;
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { store.checkpoint(RELAY_NAME).await.unwrap() == Some(head) }
        })
        .await,
        "{}: the checkpoint never reached the head",
        store.backend()
    );

    // A commit wakes the relay at once (the store polls only every minute).
    let started = Instant::now();
    let late = note("late");
    let late_id = late.id;
    store
        .append(
            &TenantId::default_tenant(),
            &"tickets/T-late".parse().unwrap(),
            ExpectedVersion::Any,
            vec![late],
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("woken, not polled")
        .unwrap()
        .unwrap();
    assert_eq!(d.content.as_ref().unwrap().event_id(), late_id);
    eprintln!(
        "{}: commit to delivery {:?}",
        store.backend(),
        started.elapsed()
    );
    d.ack().await.unwrap();

    stop.send(true).unwrap();
    relay.await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::in_dir(dir.path());
    config.poll_interval = SLOW_POLL;
    relays_in_order(Arc::new(EmbeddedStore::open(config).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store() {
    let db = TestDatabase::create().await;
    let mut config = PostgresConfig::new(db.url());
    config.poll_interval = SLOW_POLL;
    relays_in_order(Arc::new(PostgresStore::open(config).await.unwrap())).await;
}
