//! What the projection tests share: a Postgres store on a fresh test
//! database (the read models live in the same database), appending helpers,
//! and a counting projection that can be made to hang mid-batch (to kill it
//! with a transaction open) or to refuse poison events.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use herald_events::{
    EventEnvelope, EventType, NewEvent, Position, SchemaVersion, StreamId, TenantId,
};
use herald_projections::{EventFault, Projection, ProjectionError};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::json;
use tokio::sync::Notify;

pub const NAME: &str = "counting";

/// A fresh database with a Postgres store on it, and that store's pool.
pub async fn store() -> (TestDatabase, Arc<dyn EventStore>, Pool) {
    let db = TestDatabase::create().await;
    let mut config = PostgresConfig::new(db.url());
    config.pool_size = 8;
    let store = PostgresStore::open(config)
        .await
        .expect("open the Postgres store");
    let pool = store.pool().clone();
    (db, Arc::new(store), pool)
}

/// A pool of its own on the database, so a runner can be killed with its
/// connections without touching the store's.
pub fn own_pool(db: &TestDatabase) -> Pool {
    herald_projections::postgres_pool(db.url(), 4).expect("a pool")
}

pub fn stream(id: &str) -> StreamId {
    format!("tickets/{id}").parse().expect("a valid stream id")
}

pub fn note(payload: serde_json::Value) -> NewEvent {
    let event_type: EventType = "tickets.note_appended".parse().unwrap();
    NewEvent::new(event_type, SchemaVersion::V1, payload)
}

pub async fn append(store: &Arc<dyn EventStore>, stream_id: &str, events: Vec<NewEvent>) {
    store
        .append(
            &TenantId::default_tenant(),
            &stream(stream_id),
            ExpectedVersion::Any,
            events,
        )
        .await
        .expect("append");
}

/// Makes `apply` hang, after writing half its rows, on the batch holding
/// position `at`: the transaction stays open until the task is killed.
#[derive(Debug)]
pub struct Hang {
    pub at: Position,
    pub reached: Notify,
}

/// Keeps the log from ever standing still: while `on` holds, every batch
/// `apply` takes (of any generation) appends one more event, committed
/// before `apply` returns, and hands it to the broker as the relay would.
/// So every read a runner makes after a batch finds something new, without
/// a writer racing the runner on the clock.
pub struct KeepBusy {
    pub store: Arc<dyn EventStore>,
    pub broker: Arc<dyn herald_brokers::Broker>,
    pub on: AtomicBool,
    /// Events appended so far.
    pub appended: AtomicU64,
    published: tokio::sync::Mutex<Position>,
}

impl std::fmt::Debug for KeepBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepBusy")
            .field("on", &self.on)
            .field("appended", &self.appended)
            .finish()
    }
}

impl KeepBusy {
    pub fn new(store: Arc<dyn EventStore>, broker: Arc<dyn herald_brokers::Broker>) -> Arc<Self> {
        Arc::new(Self {
            store,
            broker,
            on: AtomicBool::new(true),
            appended: AtomicU64::new(0),
            published: tokio::sync::Mutex::new(Position::START),
        })
    }

    /// Stops appending; returns once no append is under way.
    pub async fn stop(&self) {
        self.on.store(false, Ordering::SeqCst);
        drop(self.published.lock().await);
    }

    /// Appends one event and publishes everything not yet published.
    pub async fn one_more(&self) {
        let mut published = self.published.lock().await;
        if !self.on.load(Ordering::SeqCst) {
            return;
        }
        let n = self.appended.fetch_add(1, Ordering::SeqCst);
        append(
            &self.store,
            &format!("s{}", n % 7),
            vec![note(json!({ "n": n }))],
        )
        .await;
        loop {
            let events = self
                .store
                .read_all(published.next(), 100)
                .await
                .expect("read the log");
            let Some(last) = events.last() else { break };
            *published = last.position;
            self.broker
                .publish_batch(&events)
                .await
                .expect("publish to the broker");
        }
    }
}

/// Counts events per stream and in total, and logs every applied position
/// under a primary key, so applying an event twice fails (and would show).
#[derive(Debug, Default)]
pub struct Counting {
    /// Appends an event per applied batch while on.
    pub keep_busy: Option<Arc<KeepBusy>>,
    /// The projection's version; 1 when `None`.
    pub version: Option<u32>,
    /// A pause per batch, to make a rebuild last long enough to watch.
    pub batch_delay: Option<Duration>,
    pub hang: Option<Hang>,
    /// Events whose payload has `"poison": true` are refused until this is set.
    pub fixed: AtomicBool,
    /// Events this instance applied in batches that committed or not: which
    /// runner did the work.
    pub applied: AtomicU64,
}

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        self.version.unwrap_or(1)
    }

    fn tables(&self) -> &'static [&'static str] {
        &["counting_streams", "counting_total", "counting_applied"]
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.stream.domain().as_str() == "tickets"
    }

    async fn setup(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.counting_streams (stream text PRIMARY KEY, n bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {schema}.counting_total (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO {schema}.counting_total VALUES (1, 0) ON CONFLICT DO NOTHING;
             CREATE TABLE IF NOT EXISTS {schema}.counting_applied (position bigint PRIMARY KEY, stream text NOT NULL);",
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        if let Some(delay) = self.batch_delay {
            tokio::time::sleep(delay).await;
        }
        let hang_here = self
            .hang
            .as_ref()
            .filter(|h| events.iter().any(|e| e.position == h.at));
        for (i, event) in events.iter().enumerate() {
            if let Some(hang) = hang_here {
                if i == events.len() / 2 {
                    hang.reached.notify_one();
                    std::future::pending::<()>().await;
                }
            }
            if event.payload["poison"] == json!(true) && !self.fixed.load(Ordering::SeqCst) {
                return Err(ProjectionError::event(
                    event,
                    EventFault::Other("a poison event".into()),
                ));
            }
            let stream = event.stream.as_str();
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.counting_applied (position, stream) VALUES ($1, $2)"
                ),
                &[&(event.position.get() as i64), &stream],
            )
            .await?;
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.counting_streams (stream, n) VALUES ($1, 1) \
                     ON CONFLICT (stream) DO UPDATE SET n = counting_streams.n + 1"
                ),
                &[&stream],
            )
            .await?;
            tx.execute(
                &format!("UPDATE {schema}.counting_total SET n = n + 1 WHERE id = 1"),
                &[],
            )
            .await?;
        }
        self.applied
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        if let Some(busy) = &self.keep_busy {
            busy.one_more().await;
        }
        Ok(())
    }
}

/// A connection whose unqualified table names are those of the counting
/// projection's first generation (the one these tests read).
pub async fn connect(db: &TestDatabase) -> tokio_postgres::Client {
    let client = db.connect().await;
    client
        .batch_execute("SET search_path TO rm_counting_g1, public")
        .await
        .expect("set the search path");
    client
}

/// The serving generation's checkpoint.
pub async fn checkpoint(client: &tokio_postgres::Client) -> i64 {
    client
        .query_opt(
            "SELECT position FROM herald_read_models WHERE name = $1 AND state = 'active'",
            &[&NAME],
        )
        .await
        .expect("read the checkpoint")
        .map_or(0, |r| r.get(0))
}

pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// How long a runner may take to catch up or switch.
pub const WAIT: Duration = Duration::from_secs(90);

/// A count with one text parameter.
pub async fn scalar_with(client: &tokio_postgres::Client, sql: &str, param: &str) -> i64 {
    client
        .query_one(sql, &[&param])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A runner of [`Counting`] that follows `broker` (the tickets topic) and
/// polls only once a minute, so that progress within seconds can only come
/// from deliveries; installed, not started.
pub async fn live_runner(
    store: Arc<dyn EventStore>,
    pool: Pool,
    broker: Arc<dyn herald_brokers::Broker>,
) -> herald_projections::ProjectionRunner {
    live_runner_of(Counting::default(), store, pool, broker).await
}

/// [`live_runner`] of a given counting projection.
pub async fn live_runner_of(
    counting: Counting,
    store: Arc<dyn EventStore>,
    pool: Pool,
    broker: Arc<dyn herald_brokers::Broker>,
) -> herald_projections::ProjectionRunner {
    let domain: herald_events::Domain = "tickets".parse().unwrap();
    let runner = herald_projections::ProjectionRunner::new(pool, store, vec![Arc::new(counting)])
        .with_config(herald_projections::RunnerConfig {
            poll_interval: std::time::Duration::from_secs(60),
            ..herald_projections::RunnerConfig::default()
        })
        .with_broker(broker, vec![herald_brokers::Topic::for_domain(&domain)]);
    runner.install().await.unwrap();
    runner
}
