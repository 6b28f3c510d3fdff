//! The embedded store's raw limit, for the benches that run `herald serve`
//! on its defaults: a copy of Herald's event table (columns, constraints
//! and indexes, from the store's own schema) filled by single-row inserts,
//! each its own transaction, on connections set up as the store's writer
//! (WAL, `synchronous=FULL`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The event a raw insert writes: its domain, type and producer; the
/// payload is made per row from the row's number.
#[derive(Clone, Copy)]
pub struct RawEvent {
    pub domain: &'static str,
    pub event_type: &'static str,
    pub producer: &'static str,
    pub payload: fn(u64) -> String,
}

/// Creates `raw` with a copy of the embedded store's event table as
/// `raw_events`.
pub fn copy_event_table(store: &Path, raw: &Path) {
    let source = rusqlite::Connection::open(store).expect("open the embedded store");
    let mut statement = source
        .prepare(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'herald_events' AND sql IS NOT NULL",
        )
        .expect("read the event table's schema");
    let ddl: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("the event table's schema")
        .collect::<Result<_, _>>()
        .expect("the event table's schema");
    assert!(!ddl.is_empty(), "the store has an event table");
    let target = open_raw_sqlite(raw);
    for sql in ddl {
        target
            .execute_batch(&sql.replace("herald_events", "raw_events"))
            .expect("copy the event table's schema");
    }
}

/// A connection set up as the embedded store sets up its writer.
pub fn open_raw_sqlite(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("open the raw SQLite file");
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .expect("WAL and synchronous=FULL");
    connection
        .busy_timeout(Duration::from_secs(30))
        .expect("a busy timeout");
    connection
}

/// Single-row inserts of `event`, one per transaction, from `connections`
/// threads each with its own connection, into an emptied `raw_events`:
/// rows/s of all over `window`, after `warmup`.
pub fn raw_sqlite_inserts(
    path: &Path,
    connections: usize,
    event: RawEvent,
    warmup: Duration,
    window: Duration,
) -> f64 {
    open_raw_sqlite(path)
        .execute_batch("DELETE FROM raw_events; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("empty raw_events");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sql = format!(
        "INSERT INTO raw_events (position, event_id, tenant, domain, stream_id, \
         stream_version, event_type, schema_version, occurred_at, recorded_at, \
         correlation_id, causation_id, producer, payload, hash) \
         VALUES (?1, ?2, 'default', '{}', ?3, ?4, '{}', 1, ?5, ?5, ?2, ?2, '{}', ?6, ?7)",
        event.domain, event.event_type, event.producer
    );
    let workers: Vec<_> = (0..connections as u64)
        .map(|worker| {
            let (done, stop, path, sql) =
                (done.clone(), stop.clone(), path.to_path_buf(), sql.clone());
            std::thread::spawn(move || {
                let connection = open_raw_sqlite(&path);
                let mut insert = connection.prepare(&sql).expect("prepare the raw insert");
                let mut n = worker;
                while !stop.load(Ordering::Relaxed) {
                    let id = uuid::Uuid::now_v7();
                    let at = chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                        .to_string();
                    let hash = [id.as_bytes().as_slice(), id.as_bytes().as_slice()].concat();
                    insert
                        .execute(rusqlite::params![
                            n as i64 + 1,
                            id.to_string(),
                            format!("bench-raw-{}", n % 100),
                            (n / 100) as i64 + 1,
                            at,
                            (event.payload)(n),
                            hash,
                        ])
                        .expect("raw SQLite insert");
                    n += connections as u64;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(warmup);
    let (t0, n0) = (Instant::now(), done.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (t1, n1) = (Instant::now(), done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a raw SQLite worker");
    }
    (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
}
