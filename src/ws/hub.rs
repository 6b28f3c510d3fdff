//! The subscription hub of one process: it follows the store's log once
//! and hands every new event to the subscriptions it matches, and it brings
//! new subscriptions from their cursor up to the live edge.
//!
//! No gap and no duplicate at the seam: a subscription is registered, under
//! the hub's lock, together with the last position the hub has handed out
//! (P). From then on the hub holds every later matching event for it (in a
//! bounded buffer) while a catch-up task reads its history, from its cursor
//! to P, from the store; then, again under the lock, the buffer is delivered
//! and the subscription goes live. Positions follow commit order in the
//! store, so everything up to P is committed and final.
//!
//! Dispatch is indexed: a subscription naming streams is only looked at for
//! events of those streams, one naming domains only for events of those
//! domains; the rest are checked against every event. Subscriptions with the
//! same id share one rendered frame per event (its bytes are reference
//! counted), so a popular event is serialized once, not once per subscriber.
//!
//! Frames for one subscription that come out of one read of the log are
//! queued together, so a connection is woken, and its socket written, once
//! per batch rather than once per event.
//!
//! Memory is bounded: every connection's queue counts the event frames in
//! it; a live batch that would take it past its bound, or a full catch-up
//! buffer, marks the connection slow, and the connection closes it with the
//! cursors to resume from.
//!
//! The hub also carries the process's word that it is shutting down: every
//! websocket connection and server-sent-event stream watches it and ends at
//! once, with the cursors to resume from, so that no subscriber holds the
//! server's stop back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use futures::StreamExt;
use herald_events::{EventEnvelope, EventRegistry, Position, StreamId};
use herald_store::EventStore;
use tokio::sync::{mpsc, watch, Notify};

use super::protocol::{json_string, Cursor, Filter};

/// Events a catching-up subscription may have waiting before it is slow.
const CATCH_UP_BUFFER: usize = 10_000;
/// Events read per history page.
const HISTORY_PAGE: usize = 512;

/// What a connection's writer sends, in order.
#[derive(Debug)]
pub enum Outbound {
    /// Event frames of subscription `sub`, in position order, each with
    /// its position.
    Events {
        sub: Arc<str>,
        frames: Vec<(Position, ByteString)>,
    },
    /// A subscription starts at `position` (for its resume cursor).
    Started { sub: Arc<str>, position: Position },
    /// Any other frame.
    Frame(String),
    /// A websocket pong answering the client's ping.
    Pong(Vec<u8>),
}

/// Marks a connection as too slow; its writer closes it.
#[derive(Debug, Default)]
pub struct Slow {
    flagged: AtomicBool,
    notify: Notify,
}

impl Slow {
    pub fn flag(&self) {
        if !self.flagged.swap(true, Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    pub fn is_flagged(&self) -> bool {
        self.flagged.load(Ordering::SeqCst)
    }

    pub async fn wait(&self) {
        if !self.is_flagged() {
            self.notify.notified().await;
        }
    }
}

/// Where a connection's frames go: the sending half of its queue.
#[derive(Debug, Clone)]
pub struct Sink {
    pub tx: mpsc::Sender<Outbound>,
    pub slow: Arc<Slow>,
    /// Event frames queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// Most event frames the queue may hold before the connection is slow.
    bound: usize,
}

/// The receiving half of a connection's queue.
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::Receiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// The next item; `None` once every sender is gone or the queue closed.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let out = self.rx.recv().await?;
        if let Outbound::Events { frames, .. } = &out {
            self.queued.fetch_sub(frames.len(), Ordering::AcqRel);
        }
        Some(out)
    }

    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl Sink {
    /// A connection's queue, holding at most `bound` event frames.
    pub fn queue(bound: usize) -> (Sink, Queue) {
        // Other frames (acknowledgements, errors, pongs) are few; the
        // channel leaves room for them beside a full load of event batches.
        let (tx, rx) = mpsc::channel(bound + 64);
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Sink {
                tx,
                slow: Arc::new(Slow::default()),
                queued: Arc::clone(&queued),
                bound,
            },
            Queue { rx, queued },
        )
    }

    fn offer(&self, out: Outbound) {
        if self.tx.try_send(out).is_err() {
            self.slow.flag();
        }
    }

    /// Queues live event frames, or marks the connection slow when they
    /// would take its queue past the bound.
    fn offer_events(&self, sub: Arc<str>, frames: Vec<(Position, ByteString)>) {
        let n = frames.len();
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > self.bound {
            self.slow.flag();
            return;
        }
        self.offer(Outbound::Events { sub, frames });
    }

    /// Queues history, waiting for room (history is paced by the client).
    async fn send_events(
        &self,
        sub: Arc<str>,
        frames: Vec<(Position, ByteString)>,
    ) -> Result<(), ()> {
        self.queued.fetch_add(frames.len(), Ordering::AcqRel);
        self.tx
            .send(Outbound::Events { sub, frames })
            .await
            .map_err(|_| ())
    }
}

/// An event as the hub hands it out: serialized once for every subscriber.
#[derive(Debug)]
struct LiveEvent {
    envelope: EventEnvelope,
    json: String,
    cursor: String,
}

enum State {
    CatchingUp(Vec<Arc<LiveEvent>>),
    Live,
}

struct Subscription {
    id: Arc<str>,
    id_json: String,
    filter: Filter,
    sink: Sink,
    /// Only events after this position are delivered.
    after: Position,
    state: State,
    /// Live frames of the current read of the log, not yet queued.
    pending: Vec<(Position, ByteString)>,
}

#[derive(Default)]
struct Registry {
    /// The last position handed to subscriptions.
    handed: Position,
    /// Whether the hub is reading the log. With no subscription it does
    /// not: it only moves `handed` up to the head it knows when asked.
    following: bool,
    subscriptions: HashMap<u64, Subscription>,
    /// Subscriptions that name streams, by stream.
    by_stream: HashMap<StreamId, Vec<u64>>,
    /// Subscriptions that name domains but no stream, by domain.
    by_domain: HashMap<String, Vec<u64>>,
    /// Subscriptions that name neither: checked against every event.
    unindexed: Vec<u64>,
    /// Subscriptions with pending frames.
    touched: Vec<u64>,
    next_key: u64,
}

impl Registry {
    fn insert(&mut self, key: u64, sub: Subscription) {
        let filter = &sub.filter;
        if !filter.streams().is_empty() {
            for stream in filter.streams() {
                self.by_stream.entry(stream.clone()).or_default().push(key);
            }
        } else if !filter.domains().is_empty() {
            for domain in filter.domains() {
                self.by_domain.entry(domain.clone()).or_default().push(key);
            }
        } else {
            self.unindexed.push(key);
        }
        self.subscriptions.insert(key, sub);
    }

    fn remove(&mut self, key: u64) {
        let Some(sub) = self.subscriptions.remove(&key) else {
            return;
        };
        fn drop_key<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Vec<u64>>, at: K, key: u64) {
            if let std::collections::hash_map::Entry::Occupied(mut keys) = index.entry(at) {
                keys.get_mut().retain(|k| *k != key);
                if keys.get().is_empty() {
                    keys.remove();
                }
            }
        }
        let filter = &sub.filter;
        if !filter.streams().is_empty() {
            for stream in filter.streams() {
                drop_key(&mut self.by_stream, stream.clone(), key);
            }
        } else if !filter.domains().is_empty() {
            for domain in filter.domains() {
                drop_key(&mut self.by_domain, domain.clone(), key);
            }
        } else {
            self.unindexed.retain(|k| *k != key);
        }
    }

    /// Hands one event to every subscription it matches.
    fn dispatch(&mut self, event: &Arc<LiveEvent>, frames: &mut HashMap<Arc<str>, ByteString>) {
        frames.clear();
        let envelope = &event.envelope;
        let candidates = self
            .by_stream
            .get(&envelope.stream)
            .into_iter()
            .flatten()
            .chain(
                self.by_domain
                    .get(envelope.stream.domain().as_str())
                    .into_iter()
                    .flatten(),
            )
            .chain(self.unindexed.iter());
        for key in candidates {
            // A subscription listed under two of its streams is still found
            // once per event: an event has one stream.
            let Some(sub) = self.subscriptions.get_mut(key) else {
                continue;
            };
            if envelope.position <= sub.after || !sub.filter.matches(envelope) {
                continue;
            }
            match &mut sub.state {
                State::Live => {
                    let text = frames
                        .entry(Arc::clone(&sub.id))
                        .or_insert_with(|| event_text(&sub.id_json, event))
                        .clone();
                    if sub.pending.is_empty() {
                        self.touched.push(*key);
                    }
                    sub.pending.push((envelope.position, text));
                }
                State::CatchingUp(buffer) => {
                    if buffer.len() < CATCH_UP_BUFFER {
                        buffer.push(Arc::clone(event));
                    } else {
                        sub.sink.slow.flag();
                    }
                }
            }
        }
        self.handed = self.handed.max(envelope.position);
    }

    /// Queues the frames the last dispatches left pending.
    fn flush(&mut self) {
        for key in self.touched.drain(..) {
            if let Some(sub) = self.subscriptions.get_mut(&key) {
                let frames = std::mem::take(&mut sub.pending);
                if !frames.is_empty() {
                    sub.sink.offer_events(Arc::clone(&sub.id), frames);
                }
            }
        }
    }
}

struct Inner {
    store: Arc<dyn EventStore>,
    events: EventRegistry,
    epoch: String,
    registry: Mutex<Registry>,
    /// Woken when a subscription arrives at an idle hub.
    subscribed: Arc<Notify>,
    /// `true` once the process is shutting down. A watch, because the
    /// connections that wait on it run on every HTTP worker's thread.
    shutting_down: watch::Sender<bool>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle hub has handed out everything up to the head: no
    /// subscription was there to take it. (Only when idle: a hub reading
    /// the log hands events out as it reads them, and a subscription's
    /// history must end where the hub's reading begins.)
    fn catch_up_idle(&self, registry: &mut Registry) {
        if !registry.following {
            if let Some(head) = self.store.known_head() {
                registry.handed = registry.handed.max(head);
            }
        }
    }

    fn cursor(&self, position: Position) -> String {
        Cursor {
            epoch: self.epoch.clone(),
            position,
        }
        .encode()
    }

    fn live_event(&self, envelope: EventEnvelope) -> Arc<LiveEvent> {
        // Subscribers see events at the latest version of their type, like
        // every other read.
        let envelope = match self.events.upcast(envelope.clone()) {
            Ok(upcast) => upcast,
            Err(e) => {
                tracing::error!(position = envelope.position.get(), error = %e, "Event cannot be upcast; sent as stored.");
                envelope
            }
        };
        let json = serde_json::to_string(&envelope).unwrap_or_else(|_| "null".to_owned());
        let cursor = self.cursor(envelope.position);
        Arc::new(LiveEvent {
            envelope,
            json,
            cursor,
        })
    }
}

fn event_text(id_json: &str, event: &LiveEvent) -> ByteString {
    ByteString::from(format!(
        r#"{{"type":"event","subscription":{},"cursor":"{}","event":{}}}"#,
        id_json, event.cursor, event.json
    ))
}

/// Identifies a registered subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionKey(u64);

/// The process's hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.inner.epoch)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts following the log from its current head.
    pub async fn start(
        store: Arc<dyn EventStore>,
        events: EventRegistry,
    ) -> Result<Self, herald_store::StoreError> {
        let epoch = store.epoch().await?;
        let head = store.head().await?.position;
        let inner = Arc::new(Inner {
            store: Arc::clone(&store),
            events,
            epoch,
            registry: Mutex::new(Registry {
                handed: head,
                ..Registry::default()
            }),
            subscribed: Arc::new(Notify::new()),
            shutting_down: watch::Sender::new(false),
        });
        let hub = Self {
            inner: Arc::clone(&inner),
        };
        tokio::spawn(follow_log(store, Arc::downgrade(&inner)));
        Ok(hub)
    }

    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The cursor of the last event the hub handed out.
    pub fn head_cursor(&self) -> String {
        let handed = {
            let mut registry = self.inner.lock();
            self.inner.catch_up_idle(&mut registry);
            registry.handed
        };
        self.inner.cursor(handed)
    }

    /// Registers a subscription delivering events after `after` (None: from
    /// now on). History up to the live edge is sent first; a `live` frame
    /// marks the edge.
    pub fn subscribe(
        &self,
        id: &str,
        filter: Filter,
        after: Option<Position>,
        sink: Sink,
    ) -> SubscriptionKey {
        let id: Arc<str> = Arc::from(id);
        let id_json = json_string(&id);
        let mut registry = self.inner.lock();
        self.inner.catch_up_idle(&mut registry);
        let handed = registry.handed;
        let after = after.unwrap_or(handed);
        let key = registry.next_key;
        registry.next_key += 1;
        let catching_up = after < handed;
        sink.offer(Outbound::Started {
            sub: Arc::clone(&id),
            position: after,
        });
        sink.offer(Outbound::Frame(format!(
            r#"{{"type":"subscribed","subscription":{id_json},"cursor":"{}"}}"#,
            self.inner.cursor(after)
        )));
        if !catching_up {
            sink.offer(Outbound::Frame(format!(
                r#"{{"type":"live","subscription":{id_json},"cursor":"{}"}}"#,
                self.inner.cursor(after.max(handed))
            )));
        }
        registry.insert(
            key,
            Subscription {
                id: Arc::clone(&id),
                id_json,
                filter: filter.clone(),
                sink: sink.clone(),
                after,
                state: if catching_up {
                    State::CatchingUp(Vec::new())
                } else {
                    State::Live
                },
                pending: Vec::new(),
            },
        );
        let idle = !registry.following;
        drop(registry);
        if idle {
            self.inner.subscribed.notify_one();
        }
        if catching_up {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(catch_up(
                inner,
                SubscriptionKey(key),
                id,
                filter,
                after,
                handed,
                sink,
            ));
        }
        SubscriptionKey(key)
    }

    pub fn unsubscribe(&self, key: SubscriptionKey) {
        self.inner.lock().remove(key.0);
    }

    /// Tells every connection and stream of this hub that the process is
    /// shutting down: each closes at once, with its resume cursors. For
    /// good: later subscribers are turned away.
    pub fn shut_down(&self) {
        self.inner.shutting_down.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutting_down.borrow()
    }

    /// What a connection waits on to learn that the process is shutting
    /// down.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.inner.shutting_down.subscribe())
    }
}

/// Resolves once the process is shutting down (at once if it already is).
#[derive(Debug)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    pub async fn wait(&mut self) {
        // The sender lives in the hub, which outlives every connection; if
        // it is gone all the same, nothing is left to wait for.
        let _ = self.0.wait_for(|down| *down).await;
    }
}

/// How long an idle hub waits before looking whether it is still wanted.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The hub's reading of the log: from the first subscription on, every
/// event after `handed` is read once and dispatched; once no subscription
/// is left the reading stops until the next one, so a process nobody
/// subscribes to reads nothing and renders nothing. Ends when the hub is
/// dropped or the store closes.
async fn follow_log(store: Arc<dyn EventStore>, weak: std::sync::Weak<Inner>) {
    let mut frames = HashMap::new();
    loop {
        // Idle until a subscription arrives.
        let from = loop {
            let Some(inner) = weak.upgrade() else { return };
            let subscribed = Arc::clone(&inner.subscribed);
            {
                let mut registry = inner.lock();
                if !registry.subscriptions.is_empty() || store.known_head().is_none() {
                    registry.following = true;
                    break registry.handed.next();
                }
            }
            drop(inner);
            let _ = tokio::time::timeout(IDLE_CHECK, subscribed.notified()).await;
        };
        let mut log = store.subscribe_all(from).ready_chunks(256);
        loop {
            let Some(chunk) = log.next().await else {
                return;
            };
            let Some(inner) = weak.upgrade() else { return };
            let events: Vec<Arc<LiveEvent>> = chunk
                .into_iter()
                .filter_map(|item| match item {
                    Ok(e) => Some(inner.live_event(e)),
                    Err(e) => {
                        tracing::warn!(error = %e, "Subscription hub could not read the log; retrying.");
                        None
                    }
                })
                .collect();
            let mut registry = inner.lock();
            for event in &events {
                registry.dispatch(event, &mut frames);
            }
            registry.flush();
            if registry.subscriptions.is_empty() && store.known_head().is_some() {
                registry.following = false;
                break;
            }
        }
    }
}

/// Sends a subscription's history in (after, handed], then its buffer, then
/// makes it live.
async fn catch_up(
    inner: Arc<Inner>,
    key: SubscriptionKey,
    id: Arc<str>,
    filter: Filter,
    after: Position,
    handed: Position,
    sink: Sink,
) {
    let id_json = json_string(&id);
    let mut next = after.next();
    while next <= handed {
        if sink.slow.is_flagged() || sink.tx.is_closed() {
            return;
        }
        let page = match inner.store.read_all(next, HISTORY_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "Subscription catch-up could not read the log; retrying.");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(last) = page.last() else { break };
        next = last.position.next();
        for envelope in page {
            if envelope.position > handed {
                break;
            }
            if !filter.matches(&envelope) {
                continue;
            }
            let event = inner.live_event(envelope);
            let frame = (event.envelope.position, event_text(&id_json, &event));
            // History waits for the client (backpressure); the live edge
            // meanwhile collects in the bounded buffer.
            if sink
                .send_events(Arc::clone(&id), vec![frame])
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let mut registry = inner.lock();
    let Some(sub) = registry.subscriptions.get_mut(&key.0) else {
        return;
    };
    if let State::CatchingUp(buffer) = std::mem::replace(&mut sub.state, State::Live) {
        if !buffer.is_empty() {
            let frames = buffer
                .iter()
                .map(|event| (event.envelope.position, event_text(&sub.id_json, event)))
                .collect();
            sub.sink.offer_events(Arc::clone(&sub.id), frames);
        }
    }
    let edge = registry.handed;
    let sub = &registry.subscriptions[&key.0];
    sub.sink.offer(Outbound::Frame(format!(
        r#"{{"type":"live","subscription":{},"cursor":"{}"}}"#,
        sub.id_json,
        inner.cursor(edge)
    )));
}
