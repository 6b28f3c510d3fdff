//! LISTEN on the log's notification channel over a dedicated connection, to
//! wake subscribers when another process commits. Notifications are only a
//! hint: after a reconnect, subscribers are woken anyway because any sent
//! while the connection was down are lost, and polling stays the authority.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use herald_events::Position;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{CHANNEL, KEYS_CHANNEL};

pub(super) fn spawn(
    config: tokio_postgres::Config,
    head: watch::Sender<Position>,
    own: Arc<AtomicU64>,
    key_changes: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            match listen_once(&config, &head, &own, &key_changes).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "Postgres LISTEN connection lost; reconnecting.");
                }
            }
            // Wake every subscriber: they re-read from their position. And
            // forget keys looked up: a revocation may have gone unheard.
            head.send_modify(|_| {});
            key_changes.fetch_add(1, Ordering::AcqRel);
            tokio::time::sleep(super::RECONNECT_BACKOFF.delay(failures.saturating_add(1))).await;
        }
    })
}

async fn listen_once(
    config: &tokio_postgres::Config,
    head: &watch::Sender<Position>,
    own: &AtomicU64,
    key_changes: &AtomicU64,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be polled for notifications to arrive; it ends
    // when the server goes away, which closes the channel below.
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if tx.send(message).is_err() {
                break;
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {KEYS_CHANNEL}"))
        .await?;
    key_changes.fetch_add(1, Ordering::AcqRel);
    // Anything committed between connecting and LISTEN is picked up by the
    // subscribers' next read, which this wake-up triggers.
    head.send_modify(|_| {});
    let result = loop {
        match rx.recv().await {
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == KEYS_CHANNEL => {
                key_changes.fetch_add(1, Ordering::AcqRel);
            }
            Some(Ok(AsyncMessage::Notification(n))) => {
                // This process's own commits are announced by its writer,
                // after their events are kept for readers (`RecentLog`):
                // woken by this notification instead, readers would find
                // them not yet kept and query for them. A position at or
                // below what the writer has sent is its own, or another
                // process's that makes the writer's batch fail and go the
                // careful way, which then announces a head past it.
                let position = n.payload().parse::<u64>().ok();
                if let Some(position) = position.filter(|p| *p > own.load(Ordering::Acquire)) {
                    head.send_if_modified(|h| {
                        if Position(position) > *h {
                            *h = Position(position);
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    driver.abort();
    drop(client);
    result
}
