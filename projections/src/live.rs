//! [`LiveFeed`]: the broker as the projections' wake-up. Deliveries on the
//! domains' topics (consumer group [`LIVE_GROUP`]) raise the highest
//! delivered position; runners waiting for work wake on every rise and read
//! on from their checkpoints in the store, which stays the authority.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_brokers::{Broker, ConsumerGroup, Topic};
use tokio::sync::watch;

/// The consumer group live projections join on the broker.
pub const LIVE_GROUP: &str = "herald-projections";

/// A broker subscription that wakes runners. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LiveFeed {
    broker: Arc<dyn Broker>,
    topics: Vec<Topic>,
    delivered: Arc<watch::Sender<u64>>,
}

impl LiveFeed {
    pub fn new(broker: Arc<dyn Broker>, topics: Vec<Topic>) -> Self {
        Self {
            broker,
            topics,
            delivered: Arc::new(watch::channel(0).0),
        }
    }

    /// A receiver that changes on every newer delivery.
    pub fn wake_ups(&self) -> watch::Receiver<u64> {
        self.delivered.subscribe()
    }

    /// Takes deliveries until `stop`, joining again after failures.
    /// Acknowledging at once is safe: a delivery carries no effect here,
    /// the store read that follows does.
    pub async fn listen(&self, mut stop: watch::Receiver<bool>) {
        let group = ConsumerGroup::new(LIVE_GROUP).expect("a valid group name");
        let mut failures = 0u32;
        while !*stop.borrow() {
            let mut subscription = match self.broker.subscribe(&group, &self.topics).await {
                Ok(subscription) => subscription,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "Cannot follow the broker; the projections poll the store meanwhile.");
                    let wait =
                        (Duration::from_millis(100) * failures.min(50)).min(Duration::from_secs(5));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            failures = 0;
            loop {
                let delivery = tokio::select! {
                    delivery = subscription.next() => delivery,
                    _ = stop.changed() => return,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        if let Ok(payload) = &delivery.content {
                            let position = payload.position().get();
                            self.delivered.send_if_modified(|seen| {
                                let newer = position > *seen;
                                *seen = (*seen).max(position);
                                newer
                            });
                        }
                        if let Err(e) = delivery.ack().await {
                            tracing::debug!(error = %e, "Cannot acknowledge a wake-up.");
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "The broker subscription failed; joining again.");
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

/// Waits `wait`, or less when asked to stop or woken by `wake_ups` (a
/// [`LiveFeed::wake_ups`] receiver kept across waits, so a delivery that
/// came while the caller worked wakes it at once); true when asked to stop.
pub(crate) async fn pause(
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
    wake_ups: Option<&mut watch::Receiver<u64>>,
) -> bool {
    let woken = async {
        match wake_ups {
            Some(wake_ups) => {
                let _ = wake_ups.changed().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        () = woken => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}
