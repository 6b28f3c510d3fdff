//! One AMQP connection, opened on first use and opened again after it was
//! lost. Callers share the attempts: one connects while the others wait for
//! its outcome, and attempts after a failure are spaced by a capped
//! exponential backoff, so a server that is down is not hammered however
//! many channels want it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{backoff, redacted, BACKEND};
use crate::error::BrokerError;
use crate::telemetry;

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A live connection and which one it is (it counts up on every reconnect).
#[derive(Clone)]
pub(super) struct Live {
    pub connection: Arc<Connection>,
    pub generation: u64,
}

#[derive(Default)]
struct State {
    connection: Option<Arc<Connection>>,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
}

pub(super) struct Link {
    url: String,
    /// `publish` or `consume`, for logs and the connection's name.
    role: &'static str,
    state: tokio::sync::Mutex<State>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &redacted(&self.url))
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(url: &str, role: &'static str) -> Self {
        Self {
            url: url.to_owned(),
            role,
            state: tokio::sync::Mutex::new(State::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// The open connection, connecting (after the backoff, when the last
    /// attempt failed) when there is none.
    pub async fn connect(&self) -> Result<Live, BrokerError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            if connection.status().connected() {
                return Ok(Live {
                    connection: Arc::clone(connection),
                    generation: state.generation,
                });
            }
            warn!(
                backend = BACKEND,
                role = self.role,
                "The connection to RabbitMQ was lost; reconnecting."
            );
            state.connection = None;
        }
        if let Some(at) = state.retry_at {
            tokio::time::sleep_until(at).await;
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("herald {}", self.role).into());
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties)).await;
        let error = match attempt {
            Ok(Ok(connection)) => {
                let connection = Arc::new(connection);
                let reconnected = state.generation > 0;
                state.generation += 1;
                state.failures = 0;
                state.retry_at = None;
                state.connection = Some(Arc::clone(&connection));
                if reconnected {
                    telemetry::reconnected(BACKEND);
                    info!(
                        backend = BACKEND,
                        role = self.role,
                        url = %redacted(&self.url),
                        "Reconnected to RabbitMQ."
                    );
                }
                return Ok(Live {
                    connection,
                    generation: state.generation,
                });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        state.failures += 1;
        let delay = backoff(state.failures);
        state.retry_at = Some(Instant::now() + delay);
        warn!(
            backend = BACKEND,
            role = self.role,
            url = %redacted(&self.url),
            attempt = state.failures,
            retry_in_ms = delay.as_millis() as u64,
            error = %error,
            "Cannot connect to RabbitMQ; will try again."
        );
        Err(BrokerError::Unavailable {
            backend: BACKEND,
            detail: format!("cannot connect to {}: {error}", redacted(&self.url)),
        })
    }

    /// Closes the connection; later calls to [`Link::connect`] fail with
    /// [`BrokerError::Closed`].
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let connection = self.state.lock().await.connection.take();
        if let Some(connection) = connection {
            if connection.status().connected() {
                let _ = connection.close(200, "OK".into()).await;
            }
        }
    }
}
