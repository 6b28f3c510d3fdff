//! The relay rides out a RabbitMQ restart (`rabbitmqctl stop_app` and
//! `start_app`) in the middle of a stream of appends: every committed event
//! reaches the consumer group, each stream in order (a version may come
//! twice, a new version is always the next), and the events published again
//! are counted in `herald_relay_republished_total`.
//!
//! This stops the test server's RabbitMQ, so it lives alone in this file.
#![cfg(feature = "amqp")]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use herald::relay::{Relay, RelayConfig, REPUBLISHED_TOTAL};
use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, Payload, Topic, WireSettings};
use herald_events::{Domain, EventId, EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::{amqp_url, eventually, RabbitOutage, TestDatabase};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

const STREAMS: usize = 8;

async fn amqp() -> AmqpBroker {
    AmqpBroker::connect(AmqpConfig::new(amqp_url(), WireSettings::default()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {} is not reachable ({e}); start it with `rabbitmq-server -detached`",
                amqp_url()
            )
        })
}

fn republished(metrics: &metrics_exporter_prometheus::PrometheusHandle) -> u64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(REPUBLISHED_TOTAL))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_and_streams_stay_in_order() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("a metrics recorder");
    let db = TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    let domain = Domain::new(format!(
        "trelay{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    ))
    .unwrap();
    let topic = Topic::for_domain(&domain);
    let group = ConsumerGroup::new(format!(
        "relay-restart-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    ))
    .unwrap();

    let consumer_broker = amqp().await;
    let mut sub = consumer_broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let relay_broker: Arc<dyn Broker> = Arc::new(amqp().await);
    let (stop_relay, stop_rx) = tokio::sync::watch::channel(false);
    let relay = Relay::new(
        store.clone(),
        relay_broker.clone(),
        RelayConfig {
            max_backoff: Duration::from_millis(500),
            ..RelayConfig::default()
        },
    )
    .spawn(stop_rx);

    // Appends keep coming, before, during and after the outage.
    let appended = Arc::new(Mutex::new(Vec::<EventId>::new()));
    let stop_appending = Arc::new(AtomicBool::new(false));
    let appender = {
        let (store, appended, stop, domain) = (
            store.clone(),
            appended.clone(),
            stop_appending.clone(),
            domain.clone(),
        );
        tokio::spawn(async move {
            let event_type = EventType::new(&domain, "thing_happened").unwrap();
            let mut n = 0usize;
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let event = NewEvent::new(event_type.clone(), SchemaVersion::V1, json!({"n": n}));
                let id = event.id;
                let stream = StreamId::new(domain.clone(), format!("s{}", n % STREAMS)).unwrap();
                store
                    .append(
                        &TenantId::default_tenant(),
                        &stream,
                        ExpectedVersion::Any,
                        vec![event],
                    )
                    .await
                    .unwrap();
                appended.lock().unwrap().push(id);
                n += 1;
            }
        })
    };

    // Consume everything, checking per-stream order as deliveries come.
    let received = Arc::new(Mutex::new(HashSet::<EventId>::new()));
    let deliveries = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let (received, deliveries) = (received.clone(), deliveries.clone());
        tokio::spawn(async move {
            let mut highest: HashMap<String, u64> = HashMap::new();
            while let Some(item) = sub.next().await {
                let Ok(d) = item else { continue };
                let Ok(Payload::Event(e)) = &d.content else {
                    panic!("an inline event")
                };
                let top = highest.entry(e.stream.to_string()).or_insert(0);
                let version = e.stream_version.get();
                if version > *top {
                    assert_eq!(
                        version,
                        *top + 1,
                        "{} jumped from version {top} to {version}",
                        e.stream
                    );
                    *top = version;
                }
                received.lock().unwrap().insert(e.id);
                deliveries.fetch_add(1, Ordering::SeqCst);
                // An ack lost to the outage is fine: the message comes again.
                let _ = d.ack().await;
            }
        })
    };

    assert!(
        eventually(Duration::from_secs(30), || async {
            received.lock().unwrap().len() >= 200
        })
        .await,
        "nothing flows before the outage"
    );
    let outage = RabbitOutage::begin().await;
    let before_outage = appended.lock().unwrap().len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            appended.lock().unwrap().len() >= before_outage + 200
        })
        .await
    );
    outage.end().await;
    let after_restart = appended.lock().unwrap().len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            appended.lock().unwrap().len() >= after_restart + 200
        })
        .await
    );
    stop_appending.store(true, Ordering::SeqCst);
    appender.await.unwrap();

    let all: HashSet<EventId> = appended.lock().unwrap().iter().copied().collect();
    let complete = eventually(Duration::from_secs(90), || async {
        received.lock().unwrap().is_superset(&all)
    })
    .await;
    let missing = all.difference(&received.lock().unwrap()).count();
    assert!(
        complete,
        "{missing} of {} committed events never reached the consumer",
        all.len()
    );
    let republished = republished(&metrics);
    eprintln!(
        "{} events, {} deliveries, {} republished by the relay",
        all.len(),
        deliveries.load(Ordering::SeqCst),
        republished
    );
    assert!(
        republished > 0,
        "the relay retried during the outage but counted nothing republished"
    );

    stop_relay.send(true).unwrap();
    relay.await.unwrap();
    consumer.abort();
    let cleanup = amqp().await;
    let _ = cleanup.delete_topology(&[topic], &[group]).await;
    cleanup.close().await;
    relay_broker.close().await;
    consumer_broker.close().await;
    store.close().await;
}
