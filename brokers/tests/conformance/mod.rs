//! The broker conformance suite's backends and helpers: every test in
//! `brokers/tests/` runs the same body against each backend through
//! [`conformance!`]. Each test uses its own domain (so its own topics) and
//! its own group names, so tests run in parallel and leave nothing behind.
#![allow(dead_code)]

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "kafka")]
pub mod kafka;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use herald_brokers::memory::{MemoryBroker, MemoryConfig};
use herald_brokers::{
    Broker, ConsumerGroup, Delivery, EventLoader, Subscription, Topic, WireSettings,
};
use herald_events::{
    ChainHash, Domain, EventEnvelope, EventId, Position, SchemaVersion, StreamVersion, TenantId,
};

/// Where a test's broker lives; `open` gives another client of it.
pub enum Backend {
    Memory(MemoryBroker),
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpBackend),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaBackend),
}

impl Backend {
    pub fn memory() -> Self {
        Backend::Memory(MemoryBroker::new(MemoryConfig {
            wire: wire(),
            ..MemoryConfig::default()
        }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "amqp")]
            Backend::Amqp(_) => "amqp",
            #[cfg(feature = "kafka")]
            Backend::Kafka(_) => "kafka",
        }
    }

    /// A client of the test's broker (another process, for real brokers).
    pub async fn open(&self) -> Arc<dyn Broker> {
        match self {
            Backend::Memory(b) => Arc::new(b.clone()),
            #[cfg(feature = "amqp")]
            Backend::Amqp(b) => b.open().await,
            #[cfg(feature = "kafka")]
            Backend::Kafka(b) => b.open().await,
        }
    }

    /// Creates the topics a test uses, where the backend needs that.
    pub async fn prepare(&self, topics: &[Topic]) {
        match self {
            Backend::Memory(_) => {}
            #[cfg(feature = "amqp")]
            Backend::Amqp(b) => b.prepare(topics).await,
            #[cfg(feature = "kafka")]
            Backend::Kafka(b) => b.prepare(topics).await,
        }
        let _ = topics;
    }

    /// Removes what the test created on a shared server.
    pub async fn teardown(&self, topics: &[Topic], groups: &[ConsumerGroup]) {
        match self {
            Backend::Memory(_) => {}
            #[cfg(feature = "amqp")]
            Backend::Amqp(b) => b.teardown(topics, groups).await,
            #[cfg(feature = "kafka")]
            Backend::Kafka(b) => b.teardown(topics, groups).await,
        }
        let _ = (topics, groups);
    }
}

/// The wire settings every backend runs the suite with: 4 partitions.
pub fn wire() -> WireSettings {
    WireSettings {
        partitions: 4,
        ..WireSettings::default()
    }
}

/// Runs an async test body against every backend, one `#[tokio::test]` each.
#[macro_export]
macro_rules! conformance {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                let backend = $crate::conformance::Backend::memory();
                super::$body(&backend).await;
            }

            #[cfg(feature = "amqp")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn amqp() {
                let backend = $crate::conformance::Backend::Amqp(
                    $crate::conformance::amqp::AmqpBackend::new().await,
                );
                super::$body(&backend).await;
            }

            #[cfg(feature = "kafka")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kafka() {
                let backend = $crate::conformance::Backend::Kafka(
                    $crate::conformance::kafka::KafkaBackend::new().await,
                );
                super::$body(&backend).await;
            }
        }
    };
}

/// A domain no other test uses.
pub fn unique_domain() -> Domain {
    Domain::new(format!(
        "t{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ))
    .unwrap()
}

/// A group name no other test uses.
pub fn unique_group(label: &str) -> ConsumerGroup {
    ConsumerGroup::new(format!(
        "{label}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ))
    .unwrap()
}

/// An event of `domain`, stream `id`, at a stream version and position.
pub fn event(domain: &Domain, id: &str, version: u64, position: u64) -> EventEnvelope {
    let now = herald_events::envelope::to_stored_precision(Utc::now());
    let event_id = EventId::new_v7();
    EventEnvelope {
        id: event_id,
        tenant: TenantId::default_tenant(),
        stream: herald_events::StreamId::new(domain.clone(), id).unwrap(),
        stream_version: StreamVersion(version),
        position: Position(position),
        event_type: herald_events::EventType::new(domain, "thing_happened").unwrap(),
        version: SchemaVersion::V1,
        occurred_at: now,
        recorded_at: now,
        correlation_id: event_id.as_uuid(),
        causation_id: event_id.as_uuid(),
        producer: "conformance".into(),
        payload: serde_json::json!({"stream": id, "version": version}),
        hash: ChainHash::GENESIS,
    }
}

/// `count` events over `streams` streams, in position order, each stream's
/// versions counting up from 1.
pub fn events(domain: &Domain, streams: usize, count: usize) -> Vec<EventEnvelope> {
    let mut versions = vec![0u64; streams];
    (0..count)
        .map(|i| {
            let s = i % streams;
            versions[s] += 1;
            event(domain, &format!("s{s}"), versions[s], i as u64 + 1)
        })
        .collect()
}

/// The next delivery, or `None` when none comes within `wait`.
pub async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
        Ok(None) => None,
        Err(_) => None,
    }
}

/// A delivery's event id (the content must be readable).
pub fn id_of(delivery: &Delivery) -> EventId {
    delivery
        .content
        .as_ref()
        .expect("a readable delivery")
        .event_id()
}

/// Resolves claim checks from the events a test published.
pub struct Published(pub HashMap<Position, EventEnvelope>);

#[async_trait::async_trait]
impl EventLoader for Published {
    async fn load(&self, position: Position) -> Result<Option<EventEnvelope>, String> {
        Ok(self.0.get(&position).cloned())
    }
}

/// Generous: group forming on Kafka takes seconds.
pub const PATIENCE: Duration = Duration::from_secs(30);
