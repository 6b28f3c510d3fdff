//! Reading a group's dead letters without disturbing anything: a throwaway
//! consumer that joins no group assigns itself the dead-letter topic's
//! partitions, reads each from its start up to the high watermark taken
//! when the call began (at most `max` records per partition, which holds
//! the oldest `max` overall), and commits nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{base_config, broker_error, LogContext};
use super::{KafkaConfig, BACKEND};
use crate::error::BrokerError;
use crate::message::{
    decode, header, partition_for, ConsumerGroup, Topic, WireMessage, HEADER_ERROR, HEADER_GROUP,
    HEADER_ORIGINAL_TOPIC,
};
use crate::DeadLetter;

/// Up to `max` of `group`'s dead letters, oldest first.
pub(super) async fn read(
    config: &KafkaConfig,
    group: &ConsumerGroup,
    max: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let config = config.clone();
    let topic = Topic::dead_letters(group);
    // librdkafka's calls here block; so does dropping the consumer.
    tokio::task::spawn_blocking(move || read_blocking(&config, &topic, max))
        .await
        .map_err(|e| BrokerError::Failed {
            backend: BACKEND,
            operation: "read dead letters",
            detail: e.to_string(),
        })?
}

fn read_blocking(
    config: &KafkaConfig,
    topic: &Topic,
    max: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    let timeout = config.request_timeout;
    let deadline = Instant::now() + timeout;
    let mut client = base_config(config);
    // librdkafka wants a group id even to assign partitions by hand; an
    // assigning consumer never joins it, and nothing is committed to it.
    client
        .set("group.id", "herald.dead-letter-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer<LogContext> = client
        .create_with_context(LogContext)
        .map_err(|e| broker_error("create a consumer", &e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic.as_str()), timeout)
        .map_err(|e| broker_error("read dead letters", &e))?;
    let Some(meta) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic.as_str())
    else {
        return Ok(Vec::new());
    };
    match meta.error().map(RDKafkaErrorCode::from) {
        None => {}
        // No message was ever dead-lettered by this group.
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(Vec::new()),
        Some(code) => {
            return Err(broker_error(
                "read dead letters",
                &KafkaError::MetadataFetch(code),
            ))
        }
    }

    // Per partition, the offset to stop before.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in meta.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic.as_str(), partition.id(), left(deadline)?)
            .map_err(|e| broker_error("read dead letters", &e))?;
        if high > low {
            let end = high.min(low.saturating_add(i64::try_from(max).unwrap_or(i64::MAX)));
            ends.insert(partition.id(), end);
            assignment
                .add_partition_offset(topic.as_str(), partition.id(), Offset::Offset(low))
                .map_err(|e| broker_error("read dead letters", &e))?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| broker_error("read dead letters", &e))?;

    // (timestamp, partition, offset) orders them oldest first.
    let mut letters: Vec<((i64, i32, i64), DeadLetter)> = Vec::new();
    while !ends.is_empty() {
        let wait = left(deadline)?.min(Duration::from_millis(100));
        match consumer.poll(wait) {
            None => {}
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                let Some(&end) = ends.get(&partition) else {
                    continue;
                };
                if offset < end {
                    let at = m.timestamp().to_millis().unwrap_or(i64::MAX);
                    letters.push(((at, partition, offset), dead_letter(topic, &m, config)));
                }
                if offset + 1 >= end {
                    ends.remove(&partition);
                }
            }
            // The rest of the partition is not messages (transaction markers).
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(e)) => return Err(broker_error("read dead letters", &e)),
        }
    }
    letters.sort_by_key(|(at, _)| *at);
    Ok(letters
        .into_iter()
        .take(max)
        .map(|(_, letter)| letter)
        .collect())
}

/// Time left before `deadline`, or the error of having run out of it.
fn left(deadline: Instant) -> Result<Duration, BrokerError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(BrokerError::Unavailable {
            backend: BACKEND,
            detail: "timed out reading dead letters".to_owned(),
        })
    } else {
        Ok(left)
    }
}

/// A dead letter as the consumer saw the message: the original's topic,
/// partition, key, headers and body, with the reason it was rejected.
fn dead_letter(dlq: &Topic, m: &BorrowedMessage<'_>, config: &KafkaConfig) -> DeadLetter {
    let all = super::client::string_headers(m);
    let error = header(&all, HEADER_ERROR).unwrap_or_default().to_owned();
    // Anything else on the topic names no original: it stands for itself.
    let topic = header(&all, HEADER_ORIGINAL_TOPIC)
        .and_then(|t| Topic::named(t).ok())
        .unwrap_or_else(|| dlq.clone());
    let headers: Vec<(String, String)> = all
        .into_iter()
        .filter(|(k, _)| {
            ![HEADER_ERROR, HEADER_GROUP, HEADER_ORIGINAL_TOPIC]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
        })
        .collect();
    let key = m
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let body = m.payload().unwrap_or_default().to_vec();
    let content = decode(&headers, &body);
    DeadLetter {
        topic: topic.clone(),
        error,
        content,
        message: WireMessage {
            topic,
            // The wire format put it there; the copy itself went by key.
            partition: partition_for(&key, config.wire.partitions),
            key,
            headers,
            body,
        },
    }
}
