//! Catch-up-then-live reading of the global log. The subscription reads pages
//! from the store until it is caught up, then waits for the head to move and
//! reads again. Reading by position is always safe because positions are
//! assigned in commit order; wake-ups (in-process, or Postgres NOTIFY) only
//! shorten the wait, and a poll interval bounds it when a wake-up is lost.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use herald_events::{Backoff, EventEnvelope, Position};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::EventStore;

/// Events of the global log in position order; an `Err` item reports a failed
/// read, after which the subscription keeps trying.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<EventEnvelope, StoreError>> + Send>>;

/// Events read per page.
pub const PAGE_SIZE: usize = 512;
/// Waits after failed reads: 100 ms doubling, at most 3.2 s.
const READ_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(3200));

struct State {
    store: Arc<dyn EventStore>,
    head: watch::Receiver<Position>,
    next: Position,
    buffer: VecDeque<EventEnvelope>,
    poll: Duration,
    failures: u32,
    /// The last read was short: the log was read to its end, so the next
    /// read waits for the head to move (or the poll interval) first.
    at_end: bool,
}

/// Subscribes to the log from `from` (inclusive; 0 and 1 both mean the start).
pub fn catch_up_then_live(
    store: Arc<dyn EventStore>,
    head: watch::Receiver<Position>,
    from: Position,
    poll: Duration,
) -> EventStream {
    let state = State {
        store,
        head,
        next: from.max(Position(1)),
        buffer: VecDeque::new(),
        poll,
        failures: 0,
        at_end: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.buffer.pop_front() {
                return Some((Ok(event), s));
            }
            if std::mem::take(&mut s.at_end) {
                // The head was marked seen before that read: a commit since
                // ends this wait at once.
                if let Ok(Err(_)) = tokio::time::timeout(s.poll, s.head.changed()).await {
                    return None;
                }
            }
            // Mark the current head as seen before reading, so a commit that
            // lands after the read still wakes the wait below.
            s.head.borrow_and_update();
            match s.store.read_all(s.next, PAGE_SIZE).await {
                Ok(events) if !events.is_empty() => {
                    s.failures = 0;
                    s.next = events[events.len() - 1].position.next();
                    // A short page is the end of the log as it was read;
                    // reading again at once would only find nothing.
                    s.at_end = events.len() < PAGE_SIZE;
                    s.buffer.extend(events);
                }
                Ok(_) => {
                    s.failures = 0;
                    // A closed head channel means the store is closed: end here.
                    if let Ok(Err(_)) = tokio::time::timeout(s.poll, s.head.changed()).await {
                        return None;
                    }
                }
                Err(e) => {
                    s.failures = s.failures.saturating_add(1);
                    // Back off (100 ms doubling, at most 3.2 s) so a store
                    // that is down is not hammered by every subscriber.
                    tokio::time::sleep(READ_BACKOFF.delay(s.failures)).await;
                    return Some((Err(e), s));
                }
            }
        }
    }))
}
