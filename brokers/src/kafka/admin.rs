//! Creating missing topics on a real cluster (when configured): every topic
//! gets `wire.partitions` partitions, the dead-letter topics too, and a
//! `max.message.bytes` that lets the largest inline body through. A topic
//! that already exists is left as it is. librdkafka's mock cluster has no
//! admin API; its tests create topics through the mock itself.

use std::collections::HashSet;
use std::sync::Mutex;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{base_config, broker_error, max_record_bytes, DropOffRuntime, LogContext};
use super::{KafkaConfig, BACKEND};
use crate::error::BrokerError;

pub(super) struct TopicCreator {
    admin: DropOffRuntime<AdminClient<LogContext>>,
    partitions: i32,
    /// -1: the broker's default.
    replication_factor: i32,
    max_message_bytes: String,
    timeout: std::time::Duration,
    /// Topics known to exist, so each is created at most once per broker.
    known: Mutex<HashSet<String>>,
}

impl TopicCreator {
    pub fn new(config: &KafkaConfig) -> Result<Self, BrokerError> {
        let admin: AdminClient<LogContext> = base_config(config)
            .create_with_context(LogContext)
            .map_err(|e| broker_error("create an admin client", &e))?;
        Ok(Self {
            admin: DropOffRuntime::new(admin),
            partitions: i32::try_from(config.wire.partitions.max(1)).unwrap_or(i32::MAX),
            replication_factor: config.replication_factor.unwrap_or(-1),
            max_message_bytes: max_record_bytes(config).to_string(),
            timeout: config.request_timeout,
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Creates those of `topics` not known to exist.
    pub async fn ensure(&self, topics: &[&str]) -> Result<(), BrokerError> {
        let missing: Vec<&str> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let mut missing: Vec<&str> = topics
                .iter()
                .copied()
                .filter(|t| !known.contains(*t))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
                .set("max.message.bytes", &self.max_message_bytes)
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| broker_error("create topics", &e))?;
        let mut created = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(name) => created.push(name),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => created.push(name),
                Err((name, code)) => {
                    first_error.get_or_insert(BrokerError::Failed {
                        backend: BACKEND,
                        operation: "create topics",
                        detail: format!("{name}: {code}"),
                    });
                }
            }
        }
        if !created.is_empty() {
            tracing::info!(backend = BACKEND, topics = ?created, partitions = self.partitions, "Topics exist.");
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(created);
        }
        first_error.map_or(Ok(()), Err)
    }
}
