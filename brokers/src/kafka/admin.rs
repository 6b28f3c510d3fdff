//! The topics Herald needs, set right or refused (when the broker manages
//! topics, as `herald serve` has it): a missing topic is created with
//! `wire.partitions` partitions, the groups' dead-letter topics too, each
//! with a `max.message.bytes` that lets the largest inline body through.
//! A topic that exists is never changed; one Herald places events in itself
//! (the domain topics: a stream's partition is its key's hash modulo
//! `wire.partitions`) must have at least that many partitions, or the
//! broker refuses it with a [`TopicProblem`] naming the topic and both
//! counts. Topics other producers fill (the ingest topic, dead letters) are
//! partitioned by the producer's key, and any count serves them.
//!
//! Partitions are never added to an existing topic: a stream whose key maps
//! to another partition after the change would have its newer events
//! consumed beside (and possibly before) its older ones still waiting in
//! the old partition, breaking per-stream order. Adding them is safe only
//! once every consumer group has read the topic to its end, which Herald
//! cannot know of groups that are not its own; the operator does it, or
//! lowers the configured count to the topic's.
//!
//! Metadata is read with automatic topic creation off, so looking never
//! makes the cluster create a topic with its default partition count (1 on
//! Kafka). librdkafka's mock cluster answers metadata but has no
//! CreateTopics: there a missing topic is refused with the mock's answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{base_config, broker_error, max_record_bytes, DropOffRuntime, LogContext};
use super::{KafkaConfig, BACKEND};
use crate::error::{BrokerError, TopicProblem};

/// What a topic must offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Need {
    /// Herald chooses the partition of each record: at least the
    /// configured count.
    Placed,
    /// The producer's partitioner places records: any count.
    Keyed,
}

pub(super) struct Topics {
    admin: DropOffRuntime<Arc<AdminClient<LogContext>>>,
    partitions: u32,
    /// -1: the broker's default.
    replication_factor: i32,
    max_message_bytes: String,
    timeout: Duration,
    /// Partition counts of the topics known to exist, so each is looked up
    /// (and created) at most once per broker.
    known: Mutex<HashMap<String, u32>>,
}

impl Topics {
    pub fn new(config: &KafkaConfig) -> Result<Self, BrokerError> {
        let admin: AdminClient<LogContext> = base_config(config)
            .set("allow.auto.create.topics", "false")
            .create_with_context(LogContext)
            .map_err(|e| broker_error("create an admin client", &e))?;
        Ok(Self {
            admin: DropOffRuntime::new(Arc::new(admin)),
            partitions: config.wire.partitions.max(1),
            replication_factor: config.replication_factor.unwrap_or(-1),
            max_message_bytes: max_record_bytes(config).to_string(),
            timeout: config.request_timeout,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// Makes sure every topic exists with what it needs: creates the
    /// missing ones, then checks them all. Every problem found is in the
    /// error, not only the first.
    pub async fn ensure(&self, topics: &[(&str, Need)]) -> Result<(), BrokerError> {
        let mut needed: Vec<(&str, Need)> = topics.to_vec();
        needed.sort_unstable();
        needed.dedup();
        let unknown: Vec<&str> = {
            let known = self.known();
            let mut unknown: Vec<&str> = needed
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| !known.contains_key(*t))
                .collect();
            unknown.dedup();
            unknown
        };
        let mut problems = Vec::new();
        if !unknown.is_empty() {
            let existing = self.partition_counts().await?;
            let missing: Vec<&str> = unknown
                .iter()
                .copied()
                .filter(|t| !existing.contains_key(*t))
                .collect();
            let mut found: HashMap<String, u32> = unknown
                .iter()
                .filter_map(|t| existing.get(*t).map(|n| ((*t).to_owned(), *n)))
                .collect();
            if !missing.is_empty() {
                let (created, refused) = self.create(&missing).await?;
                problems.extend(refused);
                found.extend(created.into_iter().map(|t| (t, self.partitions)));
            }
            if !found.is_empty() {
                // A count above the configured one is fine: Herald leaves
                // the extra partitions empty.
                tracing::info!(backend = BACKEND, topics = ?found, partitions = self.partitions, "Topics exist.");
                self.known().extend(found);
            }
        }
        let known = self.known();
        for (topic, need) in needed {
            match (known.get(topic), need) {
                (Some(&partitions), Need::Placed) if partitions < self.partitions => {
                    problems.push(TopicProblem::TooFewPartitions {
                        topic: topic.to_owned(),
                        partitions,
                        wanted: self.partitions,
                    });
                }
                _ => {}
            }
        }
        drop(known);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BrokerError::Topics {
                backend: BACKEND,
                problems,
            })
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every topic of the cluster and its partition count. Asking for all
    /// topics never creates one.
    async fn partition_counts(&self) -> Result<HashMap<String, u32>, BrokerError> {
        let admin = Arc::clone(&self.admin);
        let timeout = self.timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, timeout)
                .map_err(|e| broker_error("fetch topic metadata", &e))
        })
        .await
        .map_err(|e| BrokerError::Failed {
            backend: BACKEND,
            operation: "fetch topic metadata",
            detail: e.to_string(),
        })??;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| {
                (
                    t.name().to_owned(),
                    u32::try_from(t.partitions().len()).unwrap_or(u32::MAX),
                )
            })
            .collect())
    }

    /// Creates `topics`; answers those that exist now and a problem for
    /// each the cluster refused. Fails only when the cluster cannot be asked.
    async fn create(
        &self,
        topics: &[&str],
    ) -> Result<(Vec<String>, Vec<TopicProblem>), BrokerError> {
        let partitions = i32::try_from(self.partitions).unwrap_or(i32::MAX);
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
                .set("max.message.bytes", &self.max_message_bytes)
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let results = match self.admin.create_topics(&new_topics, &options).await {
            Ok(results) => results,
            Err(e) => {
                let error = broker_error("create topics", &e);
                if matches!(error, BrokerError::Unavailable { .. }) {
                    return Err(error);
                }
                // A refusal of the whole request (no CreateTopics on this
                // cluster, not authorized): every topic is refused with it.
                let reason = format!("CreateTopics failed: {e}");
                let refused = topics
                    .iter()
                    .map(|t| TopicProblem::Missing {
                        topic: (*t).to_owned(),
                        reason: reason.clone(),
                    })
                    .collect();
                return Ok((Vec::new(), refused));
            }
        };
        let mut created = Vec::new();
        let mut refused = Vec::new();
        let mut raced = Vec::new();
        for result in results {
            match result {
                Ok(name) => {
                    tracing::info!(backend = BACKEND, topic = %name, partitions = self.partitions, "Topic created.");
                    created.push(name);
                }
                // Created meanwhile by someone else: its count is read below.
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => raced.push(name),
                Err((name, code)) => refused.push(TopicProblem::Missing {
                    topic: name,
                    reason: code.to_string(),
                }),
            }
        }
        if !raced.is_empty() {
            let existing = self.partition_counts().await?;
            for name in raced {
                match existing.get(&name) {
                    Some(&n) => {
                        self.known().insert(name, n);
                    }
                    None => refused.push(TopicProblem::Missing {
                        topic: name,
                        reason: "it exists, but its metadata is not available yet".to_owned(),
                    }),
                }
            }
        }
        Ok((created, refused))
    }
}
