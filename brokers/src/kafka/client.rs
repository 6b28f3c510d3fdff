//! What every librdkafka client of the backend shares: the base
//! configuration, librdkafka's logs routed into `tracing`, the mapping of
//! rdkafka errors onto [`BrokerError`], and dropping clients away from the
//! async runtime (a client's drop flushes, leaves its group and joins its
//! threads, which blocks).

use std::ops::Deref;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use super::{KafkaConfig, BACKEND};
use crate::error::BrokerError;

/// Room for headers and record framing on top of the largest inline body.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest record the backend sends or expects: the largest inline body
/// (larger events travel as claim checks) plus headers and framing.
pub(super) fn max_record_bytes(config: &KafkaConfig) -> usize {
    config
        .wire
        .max_message_bytes
        .saturating_add(RECORD_OVERHEAD_BYTES)
}

/// Settings every client starts from; the caller's extra properties come
/// last so they override the defaults (but not what a client sets after).
pub(super) fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "herald")
        .set("message.max.bytes", max_record_bytes(config).to_string())
        // librdkafka hands every log line to the context, which filters by
        // tracing's own levels; asking for debug here would only cost work.
        .set_log_level(RDKafkaLogLevel::Info);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// Routes librdkafka's logs and client errors into `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

/// A record's headers as strings (a value that is not UTF-8 is read lossily,
/// a missing one as empty).
pub(super) fn string_headers(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, String)> {
    use rdkafka::message::{Headers, Message};
    m.headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For consumers outside any group, which have no rebalances to handle.
impl ConsumerContext for LogContext {}

/// librdkafka's log levels mapped so that ERROR stays for what an operator
/// must act on: librdkafka's own "error" level reports transient trouble
/// (a refused connection, a timed-out request) it recovers from by itself.
pub(super) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(
                backend = BACKEND,
                facility,
                detail = message,
                "librdkafka failed."
            )
        }
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
            tracing::warn!(
                backend = BACKEND,
                facility,
                detail = message,
                "librdkafka warned."
            )
        }
        RDKafkaLogLevel::Notice => {
            tracing::info!(
                backend = BACKEND,
                facility,
                detail = message,
                "librdkafka noted."
            )
        }
        RDKafkaLogLevel::Info => {
            tracing::debug!(
                backend = BACKEND,
                facility,
                detail = message,
                "librdkafka said."
            )
        }
        RDKafkaLogLevel::Debug => {
            tracing::trace!(
                backend = BACKEND,
                facility,
                detail = message,
                "librdkafka said."
            )
        }
    }
}

pub(super) fn client_error(error: &KafkaError, reason: &str) {
    if is_unavailable(error) {
        tracing::warn!(backend = BACKEND, error = %error, reason, "Kafka is unreachable; librdkafka keeps retrying.");
    } else {
        tracing::warn!(backend = BACKEND, error = %error, reason, "Kafka client error.");
    }
}

/// True for errors that mean the cluster cannot be reached right now
/// (transport, timeouts, no leader or coordinator), as opposed to a refusal.
pub(super) fn is_unavailable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::MessageTimedOut
                | C::OperationTimedOut
                | C::TimedOutQueue
                | C::RequestTimedOut
                | C::NetworkException
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::WaitingForCoordinator
        )
    )
}

/// Maps an rdkafka error onto the broker layer's error.
pub(super) fn broker_error(operation: &'static str, error: &KafkaError) -> BrokerError {
    if is_unavailable(error) {
        BrokerError::Unavailable {
            backend: BACKEND,
            detail: format!("cannot {operation}: {error}"),
        }
    } else {
        BrokerError::Failed {
            backend: BACKEND,
            operation,
            detail: error.to_string(),
        }
    }
}

/// Owns a librdkafka client and drops it on a thread of its own: the drop
/// of a consumer leaves its group (committing on the way out), a producer's
/// purges and flushes, and both join librdkafka's threads, all of which
/// blocks and must not stall a worker of the async runtime. A plain thread,
/// not `spawn_blocking`, so a runtime shutting down does not wait for it.
pub(super) struct DropOffRuntime<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DropOffRuntime<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> Deref for DropOffRuntime<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` takes the client out.
        self.0
            .as_ref()
            .expect("the client is present until dropped")
    }
}

impl<T: Send + 'static> Drop for DropOffRuntime<T> {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // Not on a runtime: blocking here stalls nobody else.
            drop(client);
            return;
        }
        // Should the thread not start, the closure (and so the client) is
        // dropped right here: late, but still dropped.
        let _ = std::thread::Builder::new()
            .name("herald-kafka-drop".to_owned())
            .spawn(move || drop(client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_trouble_is_unavailability_and_refusals_are_failures() {
        assert!(is_unavailable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(is_unavailable(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_unavailable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(matches!(
            broker_error(
                "publish",
                &KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut)
            ),
            BrokerError::Unavailable { .. }
        ));
        assert!(matches!(
            broker_error(
                "publish",
                &KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
            ),
            BrokerError::Failed {
                operation: "publish",
                ..
            }
        ));
    }
}
