//! Audit speed on Postgres: how fast `herald audit verify` walks the hash
//! chain, and how fast and in how little memory `herald audit export`
//! writes the log to a file, beside the raw binary `COPY` rate of the same
//! Postgres in the same run (so the ratio means the same on any machine).
//!
//! In one fresh database (made by `herald_testkit`, dropped at the end):
//! - the raw baseline: rows of the event table's shape (~300-byte payload)
//!   streamed by one client with binary `COPY` into a copy of the event
//!   table (`support/raw_postgres.rs`), before and after, averaged;
//! - a log of 1,000,000 events of the mixed workload (`support/workload.rs`:
//!   tickets, edges, drafts, timers, countdowns, sessions over 3 tenants),
//!   chained exactly as the store chains them and written straight into
//!   `herald_events` with one binary `COPY` (the append path has its own
//!   bench; this one needs a large log fast), generated a chunk at a time so
//!   the bench itself stays small;
//! - **export**: `herald audit export --output FILE` (the command itself,
//!   run in this process) of the whole log as JSON lines, in events per
//!   second, with the process's peak resident memory during it (`VmHWM` of
//!   `/proc/self/status`, reset just before through `/proc/self/clear_refs`,
//!   so it covers the export on top of what the bench itself holds).
//!   Target: < 100 MiB;
//! - **verify**: `herald_store::audit::verify` over the whole log (what
//!   `herald audit verify` and `GET /v1/audit/verify` run), in events per
//!   second. Target: ≥ 200,000 events/s.
//!
//! Run with `cargo bench --bench audit`. `HERALD_BENCH_EVENTS` sets the
//! log's size (default 1,000,000). `-- --test` (or `cargo test --benches`)
//! does a smoke run with 10,000 events; `-- --list` names the figures.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use clap::Parser;
use herald_events::{chain_hash, ChainHash, EventEnvelope, Position, StreamVersion};
use herald_store::audit::VerifyOptions;
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

#[path = "support/raw_postgres.rs"]
#[allow(dead_code)]
mod raw_postgres;
#[path = "support/workload.rs"]
mod workload;

use raw_postgres::{mode, note_payload, raw_copy_rate, Mode};

const VERIFY_TARGET: f64 = 200_000.0;
const RSS_TARGET_MIB: f64 = 100.0;
/// Events generated (and held) at a time while filling the log.
const CHUNK: usize = 10_000;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mode = mode();
    if mode == Mode::List {
        println!("audit/verify: bench");
        println!("audit/export: bench");
        return;
    }
    let events: u64 = match mode {
        Mode::Smoke => 10_000,
        _ => std::env::var("HERALD_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000),
    };
    let db = TestDatabase::create().await;
    let admin = db.connect().await;
    // Migrations, then out of the way: the log is written beside the store.
    PostgresStore::open(PostgresConfig::new(db.url()))
        .await
        .expect("open the store")
        .close()
        .await;
    let payload = note_payload();
    let copy_rows = events.min(200_000);
    let copy_before = raw_copy_rate(&db, &admin, &payload, copy_rows).await;
    println!("raw binary COPY: {copy_before:.0} rows/s (before)");

    let started = Instant::now();
    let head = fill(&db, events).await;
    println!(
        "wrote a chained log of {} events in {:.1} s",
        head.0,
        started.elapsed().as_secs_f64()
    );
    admin
        .batch_execute("VACUUM ANALYZE herald_events")
        .await
        .expect("vacuum");

    // Export, through the command itself, with the peak memory it takes
    // (first, while this process holds least).
    let dir = tempfile::tempdir().expect("a scratch directory");
    let file = dir.path().join("log.jsonl");
    let baseline_rss = status_kib("VmRSS");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let args = [
        "herald",
        "audit",
        "export",
        "--store",
        db.url(),
        "--output",
        &file.display().to_string(),
    ]
    .map(str::to_owned);
    std::thread::spawn(move || {
        herald::cli::run(herald::cli::Cli::try_parse_from(args).expect("export arguments"))
    })
    .join()
    .expect("the export thread")
    .expect("export");
    let export_secs = started.elapsed().as_secs_f64();
    let peak_rss = status_kib("VmHWM");
    let export_rate = head.0 as f64 / export_secs;
    let bytes = std::fs::metadata(&file).expect("the export file").len();
    let lines = count_lines(&file);
    assert_eq!(lines, head.0, "the export holds every event");

    // Verify.
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the store"),
    );
    let started = Instant::now();
    let report = herald_store::audit::verify(
        Arc::clone(&store),
        VerifyOptions::default(),
        Box::new(|_| {}),
    )
    .await
    .expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    assert!(report.intact, "the written log verifies: {report:?}");
    assert_eq!(report.checked, head.0, "every event is checked");
    let verify_rate = head.0 as f64 / verify_secs;
    store.close().await;

    let copy_after = raw_copy_rate(&db, &admin, &payload, copy_rows).await;
    let copy = (copy_before + copy_after) / 2.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "raw binary COPY: {copy_before:.0} rows/s before, {copy_after:.0} after, mean {copy:.0} rows/s"
    );
    println!(
        "audit/verify ({} events): {verify_secs:.2} s = {verify_rate:.0} events/s = {:.2}x raw COPY",
        head.0,
        verify_rate / copy
    );
    println!(
        "audit/export ({} events, JSON lines, {:.0} MiB): {export_secs:.2} s = {export_rate:.0} \
         events/s = {:.2}x raw COPY; peak RSS {:.1} MiB{} (resident before: {:.1} MiB)",
        head.0,
        bytes as f64 / (1024.0 * 1024.0),
        export_rate / copy,
        mib(peak_rss),
        if reset {
            ""
        } else {
            " (the peak could not be reset: it covers the whole run)"
        },
        mib(baseline_rss)
    );
    if mode == Mode::Smoke {
        println!("smoke run: the targets are for full runs (`cargo bench --bench audit`)");
        return;
    }
    println!(
        "target: verify >= {VERIFY_TARGET:.0} events/s: {} ({verify_rate:.0})",
        met(verify_rate >= VERIFY_TARGET)
    );
    println!(
        "target: export peak RSS < {RSS_TARGET_MIB:.0} MiB: {} ({:.1} MiB)",
        met(mib(peak_rss) < RSS_TARGET_MIB),
        mib(peak_rss)
    );
}

fn met(yes: bool) -> &'static str {
    if yes {
        "MET"
    } else {
        "NOT MET"
    }
}

/// A `kB` line of `/proc/self/status`, in KiB (0 where there is none).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

fn count_lines(path: &std::path::Path) -> u64 {
    use std::io::BufRead;
    let file = std::fs::File::open(path).expect("open the export");
    std::io::BufReader::new(file).lines().count() as u64
}

/// Writes a chained log of at least `events` events (the mixed workload, a
/// chunk at a time) with one binary `COPY`, and moves the head record to
/// its end; the head's position and hash.
async fn fill(db: &TestDatabase, events: u64) -> (u64, ChainHash) {
    const COLUMNS: &str = "position, event_id, tenant, domain, stream_id, stream_version, \
        event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id, \
        producer, payload, hash";
    let client = db.connect().await;
    let types = [
        Type::INT8,
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::INT4,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::UUID,
        Type::TEXT,
        Type::JSONB,
        Type::BYTEA,
    ];
    let sink = client
        .copy_in(&format!(
            "COPY herald_events ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .expect("start COPY");
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    // Record times a microsecond apart from a fixed start, as batches of
    // one event each would get them.
    let epoch = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let (mut position, mut previous) = (0u64, ChainHash::GENESIS);
    let mut chunk = 0u64;
    while position < events {
        let want = CHUNK.min((events - position) as usize);
        for batch in workload::mixed(want, &["acme", "globex", "initech"], 1000 + chunk) {
            for (i, new) in batch.events.into_iter().enumerate() {
                position += 1;
                let mut event = EventEnvelope {
                    id: new.id,
                    tenant: batch.tenant.clone(),
                    stream: batch.stream.clone(),
                    stream_version: StreamVersion(i as u64 + 1),
                    position: Position(position),
                    event_type: new.event_type,
                    version: new.version,
                    occurred_at: new.occurred_at,
                    recorded_at: epoch + Duration::microseconds(position as i64),
                    correlation_id: new.correlation_id,
                    causation_id: new.causation_id,
                    producer: new.producer,
                    payload: new.payload,
                    hash: ChainHash::GENESIS,
                };
                event.hash = chain_hash(&previous, &event);
                previous = event.hash;
                let row: [&(dyn ToSql + Sync); 15] = [
                    &(position as i64),
                    &event.id.as_uuid(),
                    &event.tenant.as_str(),
                    &event.stream.domain().as_str(),
                    &event.stream.id(),
                    &(event.stream_version.get() as i64),
                    &event.event_type.as_str(),
                    &(event.version.get() as i32),
                    &event.occurred_at,
                    &event.recorded_at,
                    &event.correlation_id,
                    &event.causation_id,
                    &event.producer,
                    &event.payload,
                    &event.hash.as_bytes().as_slice(),
                ];
                writer.as_mut().write(&row).await.expect("write a row");
            }
        }
        chunk += 1;
    }
    writer.finish().await.expect("finish COPY");
    let recorded = epoch + Duration::microseconds(position as i64);
    client
        .execute(
            "UPDATE herald_log_head SET position = $1, hash = $2, recorded_at = $3 WHERE id = 1",
            &[
                &(position as i64),
                &previous.as_bytes().as_slice(),
                &recorded,
            ],
        )
        .await
        .expect("move the head record");
    (position, previous)
}
