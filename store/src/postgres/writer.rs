//! The Postgres group-commit writer: one transaction per batch, holding the
//! lock on the log head row from its first statement to its commit, so
//! positions follow commit order across every process sharing the database.
//!
//! Steady state is one statement per batch. The writer remembers the head
//! (position and hash) and the versions of the streams it has written, plans
//! the batch on them, and calls `herald_append_planned`, which locks the
//! head, checks it is exactly where the writer remembers it, inserts the rows,
//! moves the head and notifies, as one autocommit transaction. These calls go
//! out on the writer's own connection one behind the other: the next batch,
//! planned on top of the previous one, is sent while the previous one
//! commits, and Postgres runs them in order.
//!
//! Whatever makes the memory wrong aborts that transaction before it writes
//! anything: another process moved the head, or an earlier batch did not
//! commit (SQLSTATE HR001); a stream has more events than remembered (unique
//! stream version); an event id is already stored (unique event id); or the
//! plan refused an append on a remembered version. The batch is then planned
//! again on facts read under the lock, event ids included, in an explicit
//! transaction on a pooled connection; that is also the path for streams the
//! writer does not remember. A batch whose writer has already heard (through
//! the store's LISTEN) that another process moved the head goes that way at
//! once: with several processes appending, most batches would otherwise pay
//! for a refused attempt first. With test hooks set, batches are not pipelined
//! and each call runs inside BEGIN … COMMIT so the hooks can act before the
//! commit.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::task::Poll;

use deadpool_postgres::Pool;
use herald_events::{EventEnvelope, EventId, Position, StreamVersion};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{pg_error, pool_error, rows, BACKEND};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::group_commit::{BatchWriter, BatchWritten};
use crate::hooks::AppendHooks;
use crate::model::{AppendOutcome, ExpectedVersion, LogHead};
use crate::plan::{plan_batch, BatchFacts, BatchPlan, PendingAppend, StoredId, StreamKey};
use crate::telemetry;

/// Streams whose version the writer remembers; past this it forgets them all
/// (a forgotten stream only costs a lookup).
const REMEMBERED_STREAMS: usize = 100_000;

const LOCK_HEAD: &str =
    "SELECT position, hash, recorded_at FROM herald_log_head WHERE id = 1 FOR UPDATE";
const APPEND_PLANNED: &str = "SELECT herald_append_planned($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";
const STORED_IDS: &str = "SELECT event_id, position, tenant, domain, stream_id, stream_version \
     FROM herald_events WHERE event_id = ANY($1)";
const STREAM_VERSIONS: &str = "SELECT k.tenant, k.domain, k.stream_id, \
       (SELECT e.stream_version FROM herald_events e \
         WHERE e.tenant = k.tenant AND e.domain = k.domain AND e.stream_id = k.stream_id \
         ORDER BY e.stream_version DESC LIMIT 1) \
     FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, domain, stream_id)";
const INSERT_EVENTS: &str = "INSERT INTO herald_events (position, event_id, tenant, domain, \
       stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, \
       correlation_id, causation_id, producer, payload, hash) \
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
       $6::bigint[], $7::text[], $8::int[], $9::timestamptz[], $10::timestamptz[], \
       $11::uuid[], $12::uuid[], $13::text[], $14::jsonb[], $15::bytea[])";
const UPDATE_HEAD: &str = "UPDATE herald_log_head SET position = $1, hash = $2, recorded_at = $3 \
     WHERE id = 1";
const NOTIFY: &str = "SELECT pg_notify('herald_events', $1)";

/// SQLSTATE raised by `herald_lock_head` when the head is not where expected.
const HEAD_MOVED: &str = "HR001";

pub(super) struct PgWriter {
    pool: Pool,
    hooks: Option<Arc<dyn AppendHooks>>,
    clock: Arc<dyn Clock>,
    /// The head after this writer's last commit, while nothing says otherwise.
    head: Option<LogHead>,
    versions: HashMap<StreamKey, StreamVersion>,
    /// The connection remembered batches are sent on.
    connection: Option<Arc<deadpool_postgres::Object>>,
    /// The highest position this writer has sent to be committed, so that
    /// the listener can tell its notifications from other processes'.
    sent_through: Arc<AtomicU64>,
    /// The head as the store knows it: past the remembered one only when
    /// another process committed (the listener announces those).
    known: watch::Receiver<Position>,
}

/// Why a remembered-state attempt did not write.
pub(super) enum Stale {
    /// The memory may be wrong; plan again on what the database says.
    Memory,
    /// The database failed.
    Failed(StoreError),
}

impl PgWriter {
    pub fn new(
        pool: Pool,
        hooks: Option<Arc<dyn AppendHooks>>,
        clock: Arc<dyn Clock>,
        sent_through: Arc<AtomicU64>,
        known: watch::Receiver<Position>,
    ) -> Self {
        Self {
            pool,
            hooks,
            clock,
            head: None,
            versions: HashMap::new(),
            connection: None,
            sent_through,
            known,
        }
    }

    /// Forgets the remembered head when another process is known to have
    /// moved it: a batch planned on it would only be refused (and cost
    /// Postgres an aborted transaction) before going the careful way. The
    /// stream versions stay: a stale one is caught as before.
    fn notice_other_writers(&mut self) {
        if let Some(head) = self.head {
            if *self.known.borrow() > head.position {
                self.head = None;
            }
        }
    }

    /// Notes that a batch ending at `head` goes to the database now.
    fn sending(&self, head: &LogHead) {
        self.sent_through
            .fetch_max(head.position.get(), AtomicOrdering::AcqRel);
    }

    fn remember(&mut self, plan: &BatchPlan) {
        self.head = Some(plan.head);
        if self.versions.len() + plan.versions.len() > REMEMBERED_STREAMS {
            self.versions.clear();
        }
        self.versions
            .extend(plan.versions.iter().map(|(k, v)| (k.clone(), *v)));
    }

    fn forget(&mut self) {
        self.head = None;
        self.versions.clear();
    }

    /// Plans on memory alone, when memory covers the whole batch.
    fn plan_from_memory(&self, batch: &[PendingAppend]) -> Option<BatchPlan> {
        let head = self.head?;
        let mut facts = BatchFacts::default();
        for append in batch {
            let key = append.key();
            if facts.versions.contains_key(&key) {
                continue;
            }
            let version = match self.versions.get(&key) {
                Some(version) => *version,
                // An append that creates its stream (an aggregate's first
                // command) is planned on version 0 without a lookup: if the
                // stream exists after all, its version 1 is taken and the
                // unique index aborts the call, which then goes the careful
                // way. Only 0 is safe to assume: a guess above the real
                // version would not collide, and would leave a gap.
                None if append.expected == ExpectedVersion::NO_STREAM => StreamVersion::EMPTY,
                None => return None,
            };
            facts.versions.insert(key, version);
        }
        let plan = plan_batch(head, self.clock.now(), batch, facts);
        // A refusal on a remembered version may be a retry of an append whose
        // ids are stored: only the careful path can tell.
        let refused = plan.outcomes.iter().any(Result::is_err);
        (!refused && !plan.rows.is_empty()).then_some(plan)
    }

    async fn before_commit(&self, plan: &BatchPlan) -> Result<(), StoreError> {
        match &self.hooks {
            Some(hooks) => {
                hooks
                    .before_commit(&plan.rows)
                    .await
                    .map_err(|reason| StoreError::Backend {
                        backend: BACKEND,
                        detail: format!("batch aborted before commit: {reason}"),
                    })
            }
            None => Ok(()),
        }
    }

    /// The path on facts read under the lock, event ids included.
    async fn write_careful(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[PendingAppend],
    ) -> Result<BatchPlan, StoreError> {
        let result = self.careful_transaction(client, batch).await;
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn careful_transaction(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[PendingAppend],
    ) -> Result<BatchPlan, StoreError> {
        let lock = client.prepare_cached(LOCK_HEAD).await.map_err(pg_error)?;
        let insert = client
            .prepare_cached(INSERT_EVENTS)
            .await
            .map_err(pg_error)?;
        let update = client.prepare_cached(UPDATE_HEAD).await.map_err(pg_error)?;
        let notify = client.prepare_cached(NOTIFY).await.map_err(pg_error)?;

        let keys: Vec<StreamKey> = batch
            .iter()
            .map(PendingAppend::key)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        let domains: Vec<&str> = keys.iter().map(|k| k.stream.domain().as_str()).collect();
        let stream_ids: Vec<&str> = keys.iter().map(|k| k.stream.id()).collect();
        let versions_params: [&(dyn ToSql + Sync); 3] = [&tenants, &domains, &stream_ids];
        let ids: Vec<Uuid> = batch
            .iter()
            .flat_map(|a| a.events.iter().map(|e| e.id.as_uuid()))
            .collect();
        let ids_params: [&(dyn ToSql + Sync); 1] = [&ids];

        // Statements on one connection run in order, so both lookups run
        // after the lock is granted and see every earlier commit. Neither
        // lookup is a cached prepared statement: each is planned with its
        // actual keys and the table's actual size. A generic plan cached
        // while the table was small (or its statistics stale, as without
        // autovacuum) scanned the whole table per key: about 1 s per batch
        // at 100k events.
        let (_, head_row, version_rows, stored_rows) = futures::try_join!(
            client.batch_execute("BEGIN"),
            client.query_one(&lock, &[]),
            client.query(STREAM_VERSIONS, &versions_params),
            client.query(STORED_IDS, &ids_params),
        )
        .map_err(pg_error)?;

        let mut facts = BatchFacts {
            versions: HashMap::with_capacity(version_rows.len()),
            stored_ids: HashMap::with_capacity(stored_rows.len()),
        };
        for row in &version_rows {
            let version: Option<i64> = row.get(3);
            facts.versions.insert(
                rows::stream_key(row, 0)?,
                StreamVersion(version.unwrap_or(0) as u64),
            );
        }
        for row in &stored_rows {
            facts.stored_ids.insert(
                EventId(row.get(0)),
                StoredId {
                    position: Position(row.get::<_, i64>(1) as u64),
                    key: rows::stream_key(row, 2)?,
                    stream_version: StreamVersion(row.get::<_, i64>(5) as u64),
                },
            );
        }

        let plan = plan_batch(rows::head(&head_row)?, self.clock.now(), batch, facts);
        if !plan.rows.is_empty() {
            self.sending(&plan.head);
            let columns = rows::Columns::of(&plan.rows);
            let insert_params = columns.params();
            let head = HeadParams::of(&plan.head);
            let (update_params, notify_params) = (head.update(), head.notify());
            futures::try_join!(
                client.execute(&insert, &insert_params),
                client.execute(&update, &update_params),
                client.execute(&notify, &notify_params),
            )
            .map_err(pg_error)?;
        }
        self.before_commit(&plan).await?;
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        Ok(plan)
    }
}

/// True for the errors that mean the writer's memory was out of date.
fn memory_was_wrong(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code().code() == HEAD_MOVED
            || (db.code() == &SqlState::UNIQUE_VIOLATION
                && matches!(
                    db.constraint(),
                    Some("herald_events_event_id_key")
                        | Some("herald_events_tenant_domain_stream_id_stream_version_key")
                        | Some("herald_events_pkey")
                ))
    })
}

/// The head update's parameters, owned so they outlive the pipeline.
struct HeadParams {
    position: i64,
    hash: Vec<u8>,
    recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    position_text: String,
}

impl HeadParams {
    fn of(head: &LogHead) -> Self {
        Self {
            position: head.position.get() as i64,
            hash: head.hash.0.to_vec(),
            recorded_at: head.recorded_at,
            position_text: head.position.to_string(),
        }
    }

    fn update(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.position, &self.hash, &self.recorded_at]
    }

    fn notify(&self) -> [&(dyn ToSql + Sync); 1] {
        [&self.position_text]
    }
}

impl PgWriter {
    /// `herald_append_planned` as a transaction of its own (with hooks,
    /// inside BEGIN … COMMIT so the hooks run before the commit).
    async fn write_remembered(
        &self,
        client: &deadpool_postgres::Client,
        plan: &BatchPlan,
        expected: LogHead,
    ) -> Result<(), Stale> {
        let append = client
            .prepare_cached(APPEND_PLANNED)
            .await
            .map_err(|e| Stale::Failed(pg_error(e)))?;
        let columns = rows::Columns::of(&plan.rows);
        let expected_position = expected.position.get() as i64;
        let expected_hash = expected.hash.0.to_vec();
        let head = HeadParams::of(&plan.head);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &expected_position,
            &expected_hash,
            &head.position,
            &head.hash,
            &head.recorded_at,
        ];
        params.extend_from_slice(&columns.params());
        self.sending(&plan.head);
        let written = match &self.hooks {
            None => client.execute(&append, &params).await.map(|_| ()),
            Some(_) => futures::try_join!(
                client.batch_execute("BEGIN"),
                client.execute(&append, &params),
            )
            .map(|_| ()),
        };
        if let Err(e) = written {
            if self.hooks.is_some() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(if memory_was_wrong(&e) {
                Stale::Memory
            } else {
                Stale::Failed(pg_error(e))
            });
        }
        if self.hooks.is_some() {
            if let Err(e) = self.before_commit(plan).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(Stale::Failed(e));
            }
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| Stale::Failed(pg_error(e)))?;
        }
        Ok(())
    }
}

/// The answer to a batch sent on the writer's own connection: its rows,
/// once committed.
type Reply = Pin<Box<dyn Future<Output = Result<Vec<EventEnvelope>, Stale>> + Send>>;

/// A batch sent on remembered state and not yet answered, or one settled.
pub(super) enum PgInFlight {
    Sent {
        outcomes: Vec<Result<AppendOutcome, StoreError>>,
        head: Position,
        reply: Reply,
    },
    Done(Result<BatchWritten, StoreError>),
}

impl PgWriter {
    /// Start to finish, waiting for each step: the path with hooks.
    async fn write_now(&mut self, batch: &[PendingAppend]) -> Result<BatchWritten, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        self.notice_other_writers();
        if let (Some(expected), Some(plan)) = (self.head, self.plan_from_memory(batch)) {
            match self.write_remembered(&client, &plan, expected).await {
                Ok(()) => {
                    self.remember(&plan);
                    telemetry::batch_planned(BACKEND, "remembered");
                    return Ok(BatchWritten {
                        outcomes: plan.outcomes,
                        rows: plan.rows,
                        head: plan.head.position,
                    });
                }
                Err(Stale::Memory) => {
                    telemetry::batch_replanned(BACKEND);
                    self.forget();
                }
                Err(Stale::Failed(e)) => {
                    self.forget();
                    return Err(e);
                }
            }
        }
        self.careful(batch).await
    }

    async fn careful(&mut self, batch: &[PendingAppend]) -> Result<BatchWritten, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        match self.write_careful(&client, batch).await {
            Ok(plan) => {
                self.remember(&plan);
                telemetry::batch_planned(BACKEND, "careful");
                Ok(BatchWritten {
                    outcomes: plan.outcomes,
                    rows: plan.rows,
                    head: plan.head.position,
                })
            }
            Err(e) => {
                self.forget();
                Err(e)
            }
        }
    }

    /// The writer's own connection, on which remembered batches are sent one
    /// behind the other: Postgres runs them in that order, so a batch sent
    /// while the previous one commits needs no lock race to come second.
    async fn own_connection(&mut self) -> Result<Arc<deadpool_postgres::Object>, StoreError> {
        match &self.connection {
            Some(c) if !c.is_closed() => Ok(Arc::clone(c)),
            _ => {
                let c = Arc::new(self.pool.get().await.map_err(pool_error)?);
                self.connection = Some(Arc::clone(&c));
                Ok(c)
            }
        }
    }

    /// Sends `herald_append_planned` for a batch planned on memory and
    /// returns without waiting for the answer.
    async fn send_remembered(
        &mut self,
        mut plan: BatchPlan,
        expected: LogHead,
    ) -> Result<PgInFlight, StoreError> {
        let connection = self.own_connection().await?;
        let append = connection
            .prepare_cached(APPEND_PLANNED)
            .await
            .map_err(pg_error)?;
        // The next batch is planned on top of this one.
        self.remember(&plan);
        self.sending(&plan.head);
        let rows = std::mem::take(&mut plan.rows);
        let head = HeadParams::of(&plan.head);
        let mut reply: Reply = Box::pin(async move {
            let columns = rows::Columns::of(&rows);
            let expected_position = expected.position.get() as i64;
            let expected_hash = expected.hash.0.to_vec();
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
                &expected_position,
                &expected_hash,
                &head.position,
                &head.hash,
                &head.recorded_at,
            ];
            params.extend_from_slice(&columns.params());
            let written = connection.execute(&append, &params).await;
            drop(params);
            drop(columns);
            match written {
                Ok(_) => Ok(rows),
                Err(e) if memory_was_wrong(&e) => Err(Stale::Memory),
                Err(e) => Err(Stale::Failed(pg_error(e))),
            }
        });
        // The first poll puts the statement on the connection, so batches
        // reach Postgres in the order they were started.
        if let Poll::Ready(result) = futures::poll!(reply.as_mut()) {
            reply = Box::pin(std::future::ready(result));
        }
        Ok(PgInFlight::Sent {
            outcomes: plan.outcomes,
            head: plan.head.position,
            reply,
        })
    }
}

#[async_trait::async_trait]
impl BatchWriter for PgWriter {
    const BACKEND: &'static str = BACKEND;
    type InFlight = PgInFlight;

    async fn start(&mut self, batch: Arc<[PendingAppend]>) -> PgInFlight {
        if let Some(hooks) = &self.hooks {
            hooks.before_lock().await;
            return PgInFlight::Done(self.write_now(&batch).await);
        }
        self.notice_other_writers();
        if let (Some(expected), Some(plan)) = (self.head, self.plan_from_memory(&batch)) {
            return match self.send_remembered(plan, expected).await {
                Ok(in_flight) => in_flight,
                Err(e) => {
                    self.forget();
                    PgInFlight::Done(Err(e))
                }
            };
        }
        PgInFlight::Done(self.careful(&batch).await)
    }

    async fn finish(
        &mut self,
        batch: Arc<[PendingAppend]>,
        in_flight: PgInFlight,
    ) -> Result<BatchWritten, StoreError> {
        match in_flight {
            PgInFlight::Done(result) => result,
            PgInFlight::Sent {
                outcomes,
                head,
                reply,
            } => match reply.await {
                Ok(rows) => {
                    telemetry::batch_planned(BACKEND, "remembered");
                    Ok(BatchWritten {
                        outcomes,
                        rows,
                        head,
                    })
                }
                Err(Stale::Memory) => {
                    telemetry::batch_replanned(BACKEND);
                    self.forget();
                    self.careful(&batch).await
                }
                Err(Stale::Failed(e)) => {
                    self.forget();
                    Err(e)
                }
            },
        }
    }
}
