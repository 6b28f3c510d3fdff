//! An actor group: the actors of one aggregate type, started on demand on
//! the runtime's arbiters and passivated when idle or when the group passes
//! its cap (least recently used first). The group bounds what waits for
//! each actor, so a flood of commands is refused (`Busy`) instead of
//! growing memory.
//!
//! [`Domains`] names every group by its domain so the HTTP edge and the
//! reactions can send commands as JSON.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix::{Actor, Addr, MailboxError};
use actix_rt::{Arbiter, ArbiterHandle};
use async_trait::async_trait;
use herald_events::{EventRegistry, StreamId, TenantId};
use herald_store::EventStore;
use lru::LruCache;
use serde_json::Value;

use crate::actor::{AggregateActor, CommandMeta, Execute, Executed, GetState, Passivate, Shared};
use crate::aggregate::Aggregate;
use crate::error::CommandError;
use crate::telemetry;

/// How a group runs its actors.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Most live actors; past it the least recently used is passivated.
    pub max_actors: usize,
    /// An actor with nothing to do for this long stops.
    pub idle_timeout: Duration,
    /// Most commands waiting for one actor before more are refused.
    pub mailbox: usize,
    /// A snapshot every this many events (0: never).
    pub snapshot_every: u64,
    /// Most decide → append attempts when other writers keep winning.
    pub conflict_retries: u32,
    /// Read what other processes appended to an aggregate before each
    /// decision, instead of learning of it from a refused append. For
    /// processes that share a store: a decision on a stale state costs a
    /// refused batch under the log's lock, a re-read and a second append;
    /// the read alone is one indexed query that usually finds nothing. A
    /// process alone on its store holds every aggregate's latest state and
    /// skips it.
    pub catch_up_before_deciding: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            max_actors: 10_000,
            idle_timeout: Duration::from_secs(120),
            mailbox: 64,
            snapshot_every: 100,
            conflict_retries: 5,
            catch_up_before_deciding: false,
        }
    }
}

/// The threads actors run on, shared by every group of a process.
pub struct ActorRuntime {
    arbiters: Vec<ArbiterHandle>,
}

impl std::fmt::Debug for ActorRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRuntime")
            .field("threads", &self.arbiters.len())
            .finish()
    }
}

impl ActorRuntime {
    /// Starts `threads` arbiters (at least one). Must be called inside a
    /// running actix system.
    pub fn start(threads: usize) -> Arc<Self> {
        let arbiters = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Arc::new(Self { arbiters })
    }

    fn arbiter_for(&self, key: &(TenantId, StreamId)) -> &ArbiterHandle {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.arbiters[(hasher.finish() % self.arbiters.len() as u64) as usize]
    }

    /// Stops the arbiters (their actors stop with them).
    pub fn stop(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

type Key = (TenantId, StreamId);

struct Entry<A: Aggregate> {
    id: u64,
    addr: Addr<AggregateActor<A>>,
    pending: Arc<AtomicUsize>,
}

struct Inner<A: Aggregate> {
    shared: Arc<Shared>,
    runtime: Arc<ActorRuntime>,
    actors: Mutex<LruCache<Key, Entry<A>>>,
    next_id: AtomicU64,
}

/// The actors of aggregate type `A`. Cheap to clone.
pub struct AggregateGroup<A: Aggregate> {
    inner: Arc<Inner<A>>,
}

impl<A: Aggregate> Clone for AggregateGroup<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for AggregateGroup<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateGroup")
            .field("domain", &A::DOMAIN)
            .field("live", &self.live())
            .finish()
    }
}

impl<A: Aggregate> AggregateGroup<A> {
    pub fn new(
        store: Arc<dyn EventStore>,
        registry: EventRegistry,
        runtime: Arc<ActorRuntime>,
        config: GroupConfig,
    ) -> Self {
        let cap = NonZeroUsize::new(config.max_actors.max(1)).expect("at least one");
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    store,
                    registry,
                    config,
                }),
                runtime,
                actors: Mutex::new(LruCache::new(cap)),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Live actors of the group.
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Key, Entry<A>>> {
        self.inner.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stream(id: &str) -> Result<StreamId, CommandError> {
        StreamId::parse_parts(A::DOMAIN, id).map_err(|source| CommandError::InvalidStream {
            domain: A::DOMAIN,
            source,
        })
    }

    /// The actor of `key`, started if it is not live.
    fn actor(&self, key: &Key) -> (u64, Addr<AggregateActor<A>>, Arc<AtomicUsize>) {
        let mut actors = self.lock();
        if let Some(entry) = actors.get(key) {
            return (entry.id, entry.addr.clone(), Arc::clone(&entry.pending));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(AtomicUsize::new(0));
        let weak: Weak<Inner<A>> = Arc::downgrade(&self.inner);
        let forget_key = key.clone();
        let on_stop = Arc::new(move |stopped: u64| {
            if let Some(inner) = weak.upgrade() {
                let mut actors = inner.actors.lock().unwrap_or_else(|p| p.into_inner());
                if actors.peek(&forget_key).is_some_and(|e| e.id == stopped) {
                    actors.pop(&forget_key);
                }
            }
        });
        let actor = AggregateActor::<A>::new(
            id,
            key.0.clone(),
            key.1.clone(),
            Arc::clone(&self.inner.shared),
            Arc::clone(&pending),
            on_stop,
        );
        let arbiter = self.inner.runtime.arbiter_for(key);
        let addr = AggregateActor::start_in_arbiter(arbiter, move |_ctx| actor);
        let entry = Entry {
            id,
            addr: addr.clone(),
            pending: Arc::clone(&pending),
        };
        // Past the cap the least recently used actor finishes what it was
        // sent, then stops.
        if let Some((_, evicted)) = actors.push(key.clone(), entry) {
            evicted.addr.do_send(Passivate);
        }
        (id, addr, pending)
    }

    fn forget(&self, key: &Key, id: u64) {
        let mut actors = self.lock();
        if actors.peek(key).is_some_and(|e| e.id == id) {
            actors.pop(key);
        }
    }

    /// Runs `command` on the aggregate `id` of `tenant`.
    pub async fn execute(
        &self,
        tenant: &TenantId,
        id: &str,
        command: A::Command,
        meta: CommandMeta,
    ) -> Result<Executed, CommandError> {
        let key = (tenant.clone(), Self::stream(id)?);
        // An actor found stopping is replaced once or twice; more is a bug.
        for _ in 0..3 {
            let (actor_id, addr, pending) = self.actor(&key);
            let waiting = pending.fetch_add(1, Ordering::AcqRel);
            if waiting >= self.inner.shared.config.mailbox {
                pending.fetch_sub(1, Ordering::AcqRel);
                telemetry::command(A::DOMAIN, "busy");
                return Err(CommandError::Busy {
                    domain: A::DOMAIN.to_owned(),
                    stream: key.1.to_string(),
                    pending: waiting,
                });
            }
            let answer = addr
                .send(Execute::<A> {
                    command: command.clone(),
                    meta: meta.clone(),
                })
                .await;
            pending.fetch_sub(1, Ordering::AcqRel);
            match answer {
                Ok(result) => return result,
                Err(MailboxError::Closed) | Err(MailboxError::Timeout) => {
                    self.forget(&key, actor_id)
                }
            }
        }
        Err(CommandError::Unavailable {
            stream: key.1.to_string(),
        })
    }

    /// The aggregate's current state and version; `None` when the stream
    /// has no events.
    pub async fn state(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<(A, u64)>, CommandError> {
        let key = (tenant.clone(), Self::stream(id)?);
        for _ in 0..3 {
            let (actor_id, addr, _) = self.actor(&key);
            match addr.send(GetState::<A>::default()).await {
                Ok(Ok((_, 0))) => return Ok(None),
                Ok(result) => return result.map(Some),
                Err(_) => self.forget(&key, actor_id),
            }
        }
        Err(CommandError::Unavailable {
            stream: key.1.to_string(),
        })
    }
}

/// A group as the HTTP edge and reactions see it: commands by name with
/// JSON bodies, states as JSON.
#[async_trait]
pub trait CommandTarget: Send + Sync {
    fn domain(&self) -> &'static str;

    /// The names of the domain's commands.
    fn commands(&self) -> &'static [&'static str];

    async fn execute_json(
        &self,
        tenant: &TenantId,
        id: &str,
        command: &str,
        body: Value,
        meta: CommandMeta,
    ) -> Result<Executed, CommandError>;

    /// The state and version, `None` for a stream with no events.
    async fn state_json(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<(Value, u64)>, CommandError>;
}

#[async_trait]
impl<A: Aggregate> CommandTarget for AggregateGroup<A> {
    fn domain(&self) -> &'static str {
        A::DOMAIN
    }

    fn commands(&self) -> &'static [&'static str] {
        A::COMMANDS
    }

    async fn execute_json(
        &self,
        tenant: &TenantId,
        id: &str,
        command: &str,
        body: Value,
        meta: CommandMeta,
    ) -> Result<Executed, CommandError> {
        if !A::COMMANDS.contains(&command) {
            return Err(CommandError::UnknownCommand {
                domain: A::DOMAIN.to_owned(),
                command: command.chars().take(64).collect(),
            });
        }
        let mut tagged = serde_json::Map::new();
        tagged.insert(command.to_owned(), body);
        let parsed: A::Command =
            serde_json::from_value(Value::Object(tagged)).map_err(|source| {
                CommandError::InvalidBody {
                    command: command.to_owned(),
                    source,
                }
            })?;
        self.execute(tenant, id, parsed, meta).await
    }

    async fn state_json(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<(Value, u64)>, CommandError> {
        // The JSON edge: the group answers the typed state.
        let Some((state, version)) = self.state(tenant, id).await? else {
            return Ok(None);
        };
        let state = serde_json::to_value(&state).map_err(|source| CommandError::StateEncoding {
            domain: A::DOMAIN,
            source,
        })?;
        Ok(Some((state, version)))
    }
}

/// Every group of the process, by domain.
#[derive(Clone, Default)]
pub struct Domains {
    groups: HashMap<&'static str, Arc<dyn CommandTarget>>,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.groups.keys()).finish()
    }
}

impl Domains {
    pub fn with(mut self, group: Arc<dyn CommandTarget>) -> Self {
        self.groups.insert(group.domain(), group);
        self
    }

    pub fn get(&self, domain: &str) -> Option<&Arc<dyn CommandTarget>> {
        self.groups.get(domain)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.keys().copied()
    }
}
