//! Publishing: one idempotent producer per broker (`acks=all`, so a
//! confirmed record is on every in-sync replica, and retries cannot
//! duplicate or reorder a partition's records). A batch is enqueued record
//! by record, each to the partition the wire format chose, and the call
//! returns once librdkafka reported every record confirmed. Dead letters are
//! produced the same way, confirmed before the original is acknowledged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{base_config, broker_error, DropOffRuntime, LogContext};
use super::{KafkaConfig, BACKEND};
use crate::error::BrokerError;
use crate::message::{
    ConsumerGroup, Topic, WireMessage, HEADER_ERROR, HEADER_GROUP, HEADER_ORIGINAL_TOPIC,
};
use crate::telemetry;

/// The headers a dead letter carries on top of the original's.
const DEAD_LETTER_HEADERS: [&str; 3] = [HEADER_ERROR, HEADER_GROUP, HEADER_ORIGINAL_TOPIC];

/// One record to send.
struct Outgoing<'a> {
    topic: &'a str,
    /// `None` lets librdkafka's partitioner place it by key.
    partition: Option<i32>,
    key: &'a str,
    headers: OwnedHeaders,
    body: &'a [u8],
}

/// The broker's producer, shared with its subscriptions (for dead letters).
pub(super) struct Producer {
    producer: DropOffRuntime<FutureProducer<LogContext>>,
    closed: AtomicBool,
    delivery_timeout: Duration,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self, BrokerError> {
        let mut client = base_config(config);
        client
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            )
            // Not overridable: confirmed must mean stored on every in-sync
            // replica, and retries must not duplicate or reorder.
            .set("enable.idempotence", "true")
            .set("acks", "all");
        if config.manage_topics {
            // Topics are created (and checked) before the first record goes
            // to them; a cluster must never make one with its defaults.
            client.set("allow.auto.create.topics", "false");
        }
        let producer: FutureProducer<LogContext> = client
            .create_with_context(LogContext)
            .map_err(|e| broker_error("create a producer", &e))?;
        Ok(Self {
            producer: DropOffRuntime::new(producer),
            closed: AtomicBool::new(false),
            delivery_timeout: config.delivery_timeout,
        })
    }

    pub fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Publishes to the partitions the messages name; returns once every
    /// one is confirmed.
    pub async fn publish(&self, messages: &[WireMessage]) -> Result<(), BrokerError> {
        let mut records = Vec::with_capacity(messages.len());
        for m in messages {
            let partition = i32::try_from(m.partition).map_err(|_| BrokerError::Failed {
                backend: BACKEND,
                operation: "publish",
                detail: format!("partition {} of {} is out of range", m.partition, m.topic),
            })?;
            records.push(Outgoing {
                topic: m.topic.as_str(),
                partition: Some(partition),
                key: &m.key,
                headers: headers(m.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                body: &m.body,
            });
        }
        match self.send_all(records).await {
            Ok(()) => {
                telemetry::published(BACKEND, messages.len());
                Ok(())
            }
            Err(e) => {
                telemetry::publish_failed(BACKEND, e.kind());
                Err(e)
            }
        }
    }

    /// Puts a copy of `message` on `group`'s dead-letter topic with the
    /// reason attached; returns once the copy is confirmed. The copy keeps
    /// the original's key, so one stream's dead letters stay in order.
    pub async fn dead_letter(
        &self,
        group: &ConsumerGroup,
        message: &WireMessage,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let topic = Topic::dead_letters(group);
        let original = message
            .headers
            .iter()
            .filter(|(k, _)| {
                !DEAD_LETTER_HEADERS
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let added = [
            (HEADER_ERROR, reason),
            (HEADER_GROUP, group.as_str()),
            (HEADER_ORIGINAL_TOPIC, message.topic.as_str()),
        ];
        let record = Outgoing {
            topic: topic.as_str(),
            partition: None,
            key: &message.key,
            headers: headers(original.chain(added)),
            body: &message.body,
        };
        self.send_all(vec![record]).await.inspect_err(|e| {
            telemetry::publish_failed(BACKEND, e.kind());
        })
    }

    /// Enqueues every record, then waits for every confirmation.
    async fn send_all(&self, records: Vec<Outgoing<'_>>) -> Result<(), BrokerError> {
        self.check_open()?;
        let deadline = tokio::time::Instant::now() + self.delivery_timeout;
        let mut pending: VecDeque<(&str, DeliveryFuture)> = VecDeque::with_capacity(records.len());
        let mut failure = None;
        for r in records {
            let mut record = FutureRecord::to(r.topic)
                .key(r.key)
                .payload(r.body)
                .headers(r.headers);
            if let Some(partition) = r.partition {
                record = record.partition(partition);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back((r.topic, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's local queue is full: make room by
                        // waiting for the oldest of ours to be confirmed.
                        record = back;
                        if let Some((topic, delivery)) = pending.pop_front() {
                            if let Err(e) = confirmed(topic, delivery.await) {
                                failure.get_or_insert(e);
                            }
                        } else if tokio::time::Instant::now() >= deadline {
                            return Err(BrokerError::NotConfirmed {
                                backend: BACKEND,
                                topic: r.topic.to_owned(),
                                detail: "the producer's queue stayed full".to_owned(),
                            });
                        } else {
                            // Other publishers filled it; theirs drain too.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Err((e, _)) => return Err(broker_error("publish", &e)),
                }
            }
        }
        let results = futures::future::join_all(
            pending
                .into_iter()
                .map(|(topic, delivery)| async move { confirmed(topic, delivery.await) }),
        )
        .await;
        // The earliest record's error is reported.
        let mut errors = failure
            .into_iter()
            .chain(results.into_iter().filter_map(Result::err));
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let failed = 1 + errors.count();
        tracing::warn!(backend = BACKEND, failed, error = %first, "Records were not confirmed.");
        Err(first)
    }

    /// Fetches cluster metadata: succeeds when a broker answers.
    pub async fn check(&self, timeout: Duration) -> Result<(), BrokerError> {
        self.check_open()?;
        let producer = (*self.producer).clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| broker_error("fetch metadata", &e))
        })
        .await
        .map_err(|e| BrokerError::Failed {
            backend: BACKEND,
            operation: "fetch metadata",
            detail: e.to_string(),
        })?
    }

    /// Refuses further sends, then waits (bounded) for what is queued.
    pub async fn close(&self, timeout: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        let producer = (*self.producer).clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(backend = BACKEND, error = %e, "Records still unconfirmed at close.")
            }
            Err(e) => tracing::warn!(backend = BACKEND, error = %e, "Flushing at close failed."),
        }
    }
}

fn headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(pairs.size_hint().0);
    for (key, value) in pairs {
        out = out.insert(Header {
            key,
            value: Some(value),
        });
    }
    out
}

fn confirmed(
    topic: &str,
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), BrokerError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(BrokerError::NotConfirmed {
            backend: BACKEND,
            topic: topic.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(BrokerError::NotConfirmed {
            backend: BACKEND,
            topic: topic.to_owned(),
            detail: "the producer went away before the broker answered".to_owned(),
        }),
    }
}
