//! What the Postgres benches share: how a run is told apart (list, smoke,
//! full) and timed, how concurrent workers are counted over a window, and
//! the raw Postgres baselines every herald rate is divided by.
//!
//! The baselines insert rows of the shape herald writes into `raw_events`, a
//! copy of `herald_events` with the same columns, indexes and constraints:
//! one client inserting one row per autocommit transaction, and one client
//! inserting [`BATCH_ROWS`] rows per transaction with a single multi-row
//! `INSERT … VALUES`. A bench measures them before and after its own levels
//! and averages, because they drift.
//!
//! Included by each bench with
//! `#[path = "support/raw_postgres.rs"] mod raw_postgres;`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use herald_events::tickets::NoteAppended;
use herald_events::{NewEvent, Position, TenantId, TypedEvent};
use herald_testkit::TestDatabase;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use uuid::Uuid;

/// Seconds per level when `HERALD_BENCH_SECONDS` is not set.
pub const DEFAULT_SECONDS: f64 = 5.0;
/// Rows per transaction of the batched baseline.
pub const BATCH_ROWS: usize = 1000;
/// Streams the raw rows are spread over, round robin.
const RAW_STREAMS: u64 = 100;

const COLUMNS: &str = "position, event_id, tenant, domain, stream_id, stream_version, \
    event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id, \
    producer, payload, hash";
const COLUMN_COUNT: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only name the benchmarks.
    List,
    /// Prove every path works, in seconds.
    Smoke,
    Full,
}

/// Reads the arguments the way criterion does, so that both agree on whether
/// this is a real run: `cargo bench` passes `--bench`, `cargo test --benches`
/// passes nothing, and `--test` always means a test run.
pub fn mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        Mode::List
    } else if has("--test") || !has("--bench") {
        Mode::Smoke
    } else {
        Mode::Full
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub window: Duration,
}

impl Timing {
    pub fn for_mode(mode: Mode) -> Self {
        if mode != Mode::Full {
            return Self {
                warmup: Duration::from_millis(20),
                window: Duration::from_millis(150),
            };
        }
        let seconds = std::env::var("HERALD_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(DEFAULT_SECONDS);
        let window = Duration::from_secs_f64(seconds);
        Self {
            // Long enough for the pool to fill and plans to be cached, short
            // enough not to dominate short runs.
            warmup: (window / 5).min(Duration::from_secs(1)),
            window,
        }
    }
}

/// A note of a realistic size: about 300 bytes of JSON.
pub fn note_payload() -> Value {
    NoteAppended {
        note: note_text(),
        author: Some(NOTE_AUTHOR.to_owned()),
    }
    .to_payload()
}

/// The author of [`note_payload`].
pub const NOTE_AUTHOR: &str = "agent-4711@support.example";

/// The text of [`note_payload`].
pub fn note_text() -> String {
    "Customer reports that exports time out after the latest upgrade; \
        reproduced on staging with a 40k-row ticket list. Workaround: export by \
        month. Escalated to the platform team with logs attached, waiting for a \
        fix estimate before replying to the customer."
        .to_owned()
}

/// Counts completed operations of concurrent workers and tells them when to stop.
#[derive(Debug, Default)]
pub struct Load {
    done: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Measured<T> {
    pub per_second: f64,
    pub start: T,
    pub end: T,
}

/// Lets the workers warm up, counts what they complete during the window, then
/// stops them. Operations in flight at either edge are counted on the side
/// they finish on, which is noise well below a percent at these durations.
/// `probe` runs at both edges, for the caller's own bookkeeping.
pub async fn measure<P, F, T>(
    load: &Load,
    workers: Vec<JoinHandle<()>>,
    timing: Timing,
    mut probe: P,
) -> Measured<T>
where
    P: FnMut() -> F,
    F: Future<Output = T>,
{
    tokio::time::sleep(timing.warmup).await;
    let (t0, n0) = (Instant::now(), load.done.load(Ordering::Relaxed));
    let start = probe().await;
    tokio::time::sleep(timing.window).await;
    let (t1, n1) = (Instant::now(), load.done.load(Ordering::Relaxed));
    let end = probe().await;
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        // A worker's panic is the bench's failure.
        worker.await.expect("a bench worker");
    }
    Measured {
        per_second: (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
        start,
        end,
    }
}

/// Flushes what earlier levels dirtied, so that no level pays for another's
/// checkpoint. Needs superuser or `pg_checkpoint`; without them the bench
/// still runs, just noisier.
pub async fn checkpoint(client: &Client) {
    let _ = client.batch_execute("CHECKPOINT").await;
}

/// The mean group-commit batch over a stretch of the log. Every event of one
/// batch carries the batch's record time and batches are milliseconds apart,
/// so distinct record times count commits without instrumenting the store.
pub async fn appends_per_commit(admin: &Client, after: Position, upto: Position) -> f64 {
    let (after, upto) = (after.get() as i64, upto.get() as i64);
    let commits: i64 = admin
        .query_one(
            "SELECT count(DISTINCT recorded_at) FROM herald_events \
             WHERE position > $1 AND position <= $2",
            &[&after, &upto],
        )
        .await
        .expect("count commits")
        .get(0);
    if commits == 0 {
        return 0.0;
    }
    (upto - after) as f64 / commits as f64
}

/// The raw baselines of one run: measured before and after the bench's own
/// levels.
#[derive(Debug, Clone, Copy)]
pub struct RawBaselines {
    /// (single-row, batch) rows/s, before and after.
    pub runs: [(f64, f64); 2],
}

impl RawBaselines {
    /// Mean rows/s of one client inserting one row per transaction.
    pub fn single(&self) -> f64 {
        (self.runs[0].0 + self.runs[1].0) / 2.0
    }

    /// Mean rows/s of one client inserting [`BATCH_ROWS`] rows per transaction.
    pub fn batch(&self) -> f64 {
        (self.runs[0].1 + self.runs[1].1) / 2.0
    }

    /// The two baseline lines of a bench's table.
    pub fn print(&self) {
        let [(single_before, batch_before), (single_after, batch_after)] = self.runs;
        println!(
            "raw single-row INSERT per txn:  {:>9.0} rows/s  (mean of {single_before:.0} before and {single_after:.0} after)",
            self.single()
        );
        println!(
            "raw {BATCH_ROWS}-row INSERT per txn:   {:>9.0} rows/s  (mean of {batch_before:.0} before and {batch_after:.0} after)",
            self.batch()
        );
    }
}

/// The raw Postgres rates (single-row and batched), in one fresh scratch table.
pub async fn raw_rates(
    db: &TestDatabase,
    admin: &Client,
    payload: &Value,
    timing: Timing,
) -> (f64, f64) {
    admin
        .batch_execute("CREATE TABLE raw_events (LIKE herald_events INCLUDING ALL)")
        .await
        .expect("create raw_events");
    let shared = Arc::new(SharedColumns::new(payload.clone()));
    let single = raw_inserts(db, admin, &shared, 1, timing).await;
    let batch = raw_inserts(db, admin, &shared, BATCH_ROWS, timing).await;
    admin
        .batch_execute("DROP TABLE raw_events")
        .await
        .expect("drop raw_events");
    (single, batch)
}

/// The columns every row shares, with the values herald writes for them.
#[derive(Debug)]
pub struct SharedColumns {
    tenant: String,
    domain: String,
    event_type: String,
    schema_version: i32,
    producer: String,
    payload: Value,
}

impl SharedColumns {
    pub fn new(payload: Value) -> Self {
        let event_type = NoteAppended::event_type();
        Self {
            tenant: TenantId::default_tenant().as_str().to_owned(),
            domain: event_type.domain().to_owned(),
            event_type: event_type.as_str().to_owned(),
            schema_version: NoteAppended::schema_version().get() as i32,
            producer: NewEvent::DEFAULT_PRODUCER.to_owned(),
            payload,
        }
    }
}

/// The columns that differ per row, filled like herald fills them.
#[derive(Debug)]
pub struct RawRow {
    position: i64,
    id: Uuid,
    stream_id: String,
    stream_version: i64,
    at: DateTime<Utc>,
    hash: Vec<u8>,
}

impl RawRow {
    /// Row `n` (from 0) of a run: positions from 1, 100 streams filled round robin.
    pub fn new(n: u64) -> Self {
        let id = Uuid::now_v7();
        Self {
            position: n as i64 + 1,
            id,
            stream_id: format!("bench-raw-{}", n % RAW_STREAMS),
            stream_version: (n / RAW_STREAMS) as i64 + 1,
            at: Utc::now().trunc_subsecs(6),
            // Postgres only sees 32 bytes; what they hash does not matter here.
            hash: [id.as_bytes().as_slice(), id.as_bytes().as_slice()].concat(),
        }
    }

    pub fn params<'a>(
        &'a self,
        shared: &'a SharedColumns,
    ) -> [&'a (dyn ToSql + Sync); COLUMN_COUNT] {
        [
            &self.position,
            &self.id,
            &shared.tenant,
            &shared.domain,
            &self.stream_id,
            &self.stream_version,
            &shared.event_type,
            &shared.schema_version,
            &self.at,
            &self.at,
            &self.id,
            &self.id,
            &shared.producer,
            &shared.payload,
            &self.hash,
        ]
    }
}

/// `rows` rows per `INSERT` statement from one client, each statement its own
/// (autocommit) transaction, into an emptied `raw_events`; returns rows/s.
pub async fn raw_inserts(
    db: &TestDatabase,
    admin: &Client,
    shared: &Arc<SharedColumns>,
    rows: usize,
    timing: Timing,
) -> f64 {
    raw_inserts_on(db, admin, shared, rows, 1, timing).await
}

/// [`raw_inserts`] from `connections` clients at once, each on its own
/// connection and each waiting for its own commit; returns rows/s of all.
pub async fn raw_inserts_on(
    db: &TestDatabase,
    admin: &Client,
    shared: &Arc<SharedColumns>,
    rows: usize,
    connections: usize,
    timing: Timing,
) -> f64 {
    admin
        .batch_execute("TRUNCATE raw_events")
        .await
        .expect("truncate raw_events");
    checkpoint(admin).await;
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let placeholders: Vec<String> = (1..=COLUMN_COUNT)
                .map(|c| format!("${}", r * COLUMN_COUNT + c))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO raw_events ({COLUMNS}) VALUES {}",
        tuples.join(", ")
    );

    let load = Arc::new(Load::default());
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections as u64 {
        let client = db.connect().await;
        let insert = client.prepare(&sql).await.expect("prepare the raw INSERT");
        let load = load.clone();
        let shared = shared.clone();
        // Worker w writes batches w, w + connections, …: rows never collide.
        let stride = connections as u64 * rows as u64;
        workers.push(tokio::spawn(async move {
            let mut next = worker * rows as u64;
            while !load.stopped() {
                let batch: Vec<RawRow> = (next..next + rows as u64).map(RawRow::new).collect();
                next += stride;
                let params: Vec<&(dyn ToSql + Sync)> =
                    batch.iter().flat_map(|row| row.params(&shared)).collect();
                client.execute(&insert, &params).await.expect("raw INSERT");
                load.add(rows as u64);
            }
        }));
    }
    measure(&load, workers, timing, || async {})
        .await
        .per_second
}

/// The raw binary `COPY` rate: `rows` rows of herald's shape (with
/// `payload`) streamed by one client in one `COPY ... FROM STDIN (FORMAT
/// binary)` into a fresh copy of `herald_events` (same indexes and
/// constraints); rows/s. The fastest way Postgres takes rows in, so the
/// ceiling for anything that writes a read model.
#[allow(dead_code)] // only the rebuild bench needs it
pub async fn raw_copy_rate(db: &TestDatabase, admin: &Client, payload: &Value, rows: u64) -> f64 {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS raw_copy; CREATE TABLE raw_copy (LIKE herald_events INCLUDING ALL)",
        )
        .await
        .expect("create raw_copy");
    checkpoint(admin).await;
    let shared = SharedColumns::new(payload.clone());
    let prepared: Vec<RawRow> = (0..rows).map(RawRow::new).collect();
    let client = db.connect().await;
    let types: Vec<_> = client
        .prepare(&format!("SELECT {COLUMNS} FROM raw_copy"))
        .await
        .expect("describe raw_copy")
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let started = Instant::now();
    let sink = client
        .copy_in(&format!(
            "COPY raw_copy ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .expect("start COPY");
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for row in &prepared {
        writer
            .as_mut()
            .write(&row.params(&shared))
            .await
            .expect("write a row");
    }
    let copied = writer.finish().await.expect("finish COPY");
    let rate = copied as f64 / started.elapsed().as_secs_f64();
    admin
        .batch_execute("DROP TABLE raw_copy")
        .await
        .expect("drop raw_copy");
    rate
}

/// Into a fresh copy of `herald_events`: the raw single-row rate from each
/// of `levels` connections, and the [`BATCH_ROWS`]-row batch rate from one.
#[allow(dead_code)] // only the benches that run `herald serve` need it
pub async fn raw_event_rates(
    db: &TestDatabase,
    admin: &Client,
    levels: &[usize],
    timing: Timing,
) -> (Vec<f64>, f64) {
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS raw_events; CREATE TABLE raw_events (LIKE herald_events INCLUDING ALL)",
        )
        .await
        .expect("create raw_events");
    let shared = Arc::new(SharedColumns::new(note_payload()));
    let mut single = Vec::new();
    for &connections in levels {
        single.push(raw_inserts_on(db, admin, &shared, 1, connections, timing).await);
    }
    let batch = raw_inserts_on(db, admin, &shared, BATCH_ROWS, 1, timing).await;
    admin
        .batch_execute("DROP TABLE raw_events")
        .await
        .expect("drop raw_events");
    (single, batch)
}
