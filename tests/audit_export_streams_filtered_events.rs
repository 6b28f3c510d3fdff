//! `herald audit export` writes exactly the events its filters select —
//! by tenant, domain, stream, type pattern, position range and recording
//! time, alone and together — as stored (with their hashes, so an export of
//! the whole log verifies offline), as JSON lines or as CSV with fixed
//! columns, to stdout or to a file, on both stores. Bad filters exit 2
//! before anything is written; a row that no longer reads as an event stops
//! the export with exit code 1 and leaves no file behind.

mod support;

use std::process::Output;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_events::{chain_hash, ChainHash, EventEnvelope, EventType, NewEvent, SchemaVersion};
use herald_events::{StreamId, TenantId};
use herald_store::{
    EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, ManualClock, PostgresConfig,
    PostgresStore,
};
use herald_testkit::TestDatabase;
use serde_json::{json, Value};

/// Events in every log: ten a day over three days.
const EVENTS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Postgres,
}

const BACKENDS: [Backend; 2] = [Backend::Embedded, Backend::Postgres];

/// What event `position` is: its tenant, stream and type.
fn shape(position: u64) -> (&'static str, &'static str, &'static str) {
    match position % 3 {
        1 => ("acme", "tickets/T-1", "tickets.note_appended"),
        2 => ("globex", "tickets/T-2", "tickets.ticket_opened"),
        _ => ("acme", "edges/E-1", "edges.report_received"),
    }
}

/// When event `position` is recorded: 10:00 UTC on day 1, 2 or 3 of
/// November, ten events a day, a second apart.
fn recorded(position: u64) -> DateTime<Utc> {
    let day = (position - 1) / 10;
    Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()
        + Duration::days(day as i64)
        + Duration::seconds(position as i64)
}

/// A fresh store holding the 30-event log.
struct Log {
    backend: Backend,
    dir: tempfile::TempDir,
    db: Option<TestDatabase>,
    store: Arc<dyn EventStore>,
}

impl Log {
    async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(recorded(1)));
        let (db, store): (_, Arc<dyn EventStore>) = match backend {
            Backend::Embedded => {
                let mut config = EmbeddedConfig::in_dir(dir.path());
                config.clock = Some(clock.clone());
                (None, Arc::new(EmbeddedStore::open(config).await.unwrap()))
            }
            Backend::Postgres => {
                let db = TestDatabase::create().await;
                let mut config = PostgresConfig::new(db.url());
                config.clock = Some(clock.clone());
                let store = PostgresStore::open(config).await.unwrap();
                (Some(db), Arc::new(store))
            }
        };
        for position in 1..=EVENTS {
            let (tenant, stream, event_type) = shape(position);
            clock.set(recorded(position));
            let event = NewEvent::new(
                event_type.parse::<EventType>().unwrap(),
                SchemaVersion::V1,
                json!({"n": position, "note": format!("event \"{position}\", with, commas\nand a line"),
                       "nested": {"z": [1, 2.5, true], "a": null}}),
            );
            let outcome = store
                .append(
                    &TenantId::new(tenant).unwrap(),
                    &stream.parse::<StreamId>().unwrap(),
                    ExpectedVersion::Any,
                    vec![event],
                )
                .await
                .unwrap();
            assert_eq!(outcome.first_position().get(), position);
        }
        Self {
            backend,
            dir,
            db,
            store,
        }
    }

    fn store_args(&self) -> Vec<String> {
        match self.backend {
            Backend::Embedded => vec!["--data-dir".into(), self.dir.path().display().to_string()],
            Backend::Postgres => vec!["--store".into(), self.db.as_ref().unwrap().url().to_owned()],
        }
    }

    /// Runs `herald audit export <args> <store flags>`.
    fn export(&self, args: &[&str]) -> Output {
        let output = support::herald_command()
            .args(["audit", "export"])
            .args(args)
            .args(self.store_args())
            .output()
            .expect("run herald");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        output
    }

    /// The events a JSON-lines export to stdout writes.
    fn jsonl(&self, args: &[&str]) -> Vec<EventEnvelope> {
        let output = self.export(args);
        assert!(
            output.status.success(),
            "{:?} {args:?}: {}",
            self.backend,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// Every stored event, as the store reads them.
    async fn all(&self) -> Vec<EventEnvelope> {
        self.store
            .read_all(herald_events::Position(1), 1000)
            .await
            .unwrap()
    }
}

fn positions(events: &[EventEnvelope]) -> Vec<u64> {
    events.iter().map(|e| e.position.get()).collect()
}

/// The positions for which `keep` holds.
fn expected(keep: impl Fn(u64) -> bool) -> Vec<u64> {
    (1..=EVENTS).filter(|p| keep(*p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_exactly_the_filtered_events_as_json_lines() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.store.close().await;
        let stored = log.all().await;

        // Everything, as stored: equal to what the store reads, and a chain
        // an auditor can check from the file alone.
        let all = log.jsonl(&[]);
        assert_eq!(all, stored, "{backend:?}");
        let mut previous = ChainHash::GENESIS;
        for event in &all {
            assert_eq!(chain_hash(&previous, event), event.hash, "{backend:?}");
            previous = event.hash;
        }
        assert_eq!(log.jsonl(&["--format", "jsonl", "--output", "-"]), stored);

        let day2 = "2026-11-02";
        let cases: Vec<(Vec<&str>, Vec<u64>)> = vec![
            (
                vec!["--tenant", "globex"],
                expected(|p| shape(p).0 == "globex"),
            ),
            (
                vec!["--tenant", "globex", "--tenant", "acme"],
                expected(|_| true),
            ),
            (
                vec!["--domain", "edges"],
                expected(|p| shape(p).1.starts_with("edges/")),
            ),
            (
                vec!["--stream", "tickets/T-1"],
                expected(|p| shape(p).1 == "tickets/T-1"),
            ),
            (
                vec!["--stream", "tickets/T-1", "--stream", "edges/E-1"],
                expected(|p| shape(p).1 != "tickets/T-2"),
            ),
            (
                vec!["--type", "tickets.note_*"],
                expected(|p| shape(p).2 == "tickets.note_appended"),
            ),
            (
                vec![
                    "--type",
                    "*.report_received",
                    "--type",
                    "tickets.ticket_opened",
                ],
                expected(|p| shape(p).2 != "tickets.note_appended"),
            ),
            (
                vec!["--from-position", "5", "--to-position", "17"],
                expected(|p| (5..=17).contains(&p)),
            ),
            (vec!["--from-position", "28"], expected(|p| p >= 28)),
            (vec!["--to-position", "4"], expected(|p| p <= 4)),
            (
                vec!["--since", day2, "--until", "2026-11-03T00:00:00Z"],
                expected(|p| (11..=20).contains(&p)),
            ),
            (
                // Just after event 12's record time, to just at event 25's
                // (exclusive).
                vec![
                    "--since",
                    "2026-11-02T10:00:12.000001Z",
                    "--until",
                    "2026-11-03T11:00:25+01:00",
                ],
                expected(|p| (13..=24).contains(&p)),
            ),
            (
                vec![
                    "--tenant",
                    "acme",
                    "--type",
                    "tickets.*",
                    "--from-position",
                    "3",
                    "--since",
                    day2,
                ],
                expected(|p| shape(p).0 == "acme" && shape(p).2.starts_with("tickets.") && p >= 11),
            ),
            (vec!["--tenant", "initech"], vec![]),
            (vec!["--from-position", "31"], vec![]),
        ];
        for (args, want) in cases {
            let got = log.jsonl(&args);
            assert_eq!(positions(&got), want, "{backend:?} {args:?}");
            for event in &got {
                let original = &stored[event.position.get() as usize - 1];
                assert_eq!(event, original, "{backend:?} {args:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_csv_with_fixed_columns_to_a_file() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.store.close().await;
        let stored = log.all().await;
        let file = log.dir.path().join("trail.csv");
        let path = file.display().to_string();
        let output = log.export(&["--format", "csv", "--output", &path, "--domain", "tickets"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "the file gets the events");
        let names: Vec<String> = std::fs::read_dir(log.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("trail"))
            .collect();
        assert_eq!(names, ["trail.csv"], "no partial file is left");

        let mut reader = csv::Reader::from_path(&file).unwrap();
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "position",
                "id",
                "tenant",
                "stream",
                "stream_version",
                "type",
                "version",
                "occurred_at",
                "recorded_at",
                "correlation_id",
                "causation_id",
                "producer",
                "payload",
                "hash",
            ]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let want = expected(|p| shape(p).1.starts_with("tickets/"));
        assert_eq!(
            rows.iter()
                .map(|r| r[0].parse::<u64>().unwrap())
                .collect::<Vec<_>>(),
            want,
            "{backend:?}"
        );
        for row in &rows {
            let event = &stored[row[0].parse::<usize>().unwrap() - 1];
            let as_json = serde_json::to_value(event).unwrap();
            assert_eq!(&row[1], event.id.to_string());
            assert_eq!(&row[2], event.tenant.as_str());
            assert_eq!(&row[3], event.stream.as_str());
            assert_eq!(&row[4], event.stream_version.get().to_string());
            assert_eq!(&row[5], event.event_type.as_str());
            assert_eq!(&row[6], event.version.get().to_string());
            assert_eq!(&row[7], as_json["occurred_at"].as_str().unwrap());
            assert_eq!(&row[8], as_json["recorded_at"].as_str().unwrap());
            assert_eq!(&row[9], event.correlation_id.to_string());
            assert_eq!(&row[10], event.causation_id.to_string());
            assert_eq!(&row[11], event.producer);
            // The payload is its canonical JSON text, quotes, commas,
            // newlines and all.
            let payload: Value = serde_json::from_str(&row[12]).unwrap();
            assert_eq!(payload, event.payload);
            assert_eq!(
                &row[12],
                herald_events::chain::canonical_json(&event.payload)
            );
            assert_eq!(&row[13], event.hash.to_hex());
        }

        // The same to stdout.
        let output = log.export(&["--format", "csv", "--domain", "tickets"]);
        assert_eq!(output.stdout, std::fs::read(&file).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_exit_2_and_unreadable_rows_exit_1_leaving_no_file() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        let file = log.dir.path().join("out.jsonl");
        let path = file.display().to_string();
        for args in [
            vec!["--type", "Tickets.*"],
            vec!["--tenant", "not a tenant"],
            vec!["--stream", "no-slash"],
            vec!["--since", "yesterday"],
            vec!["--since", "2026-11-02", "--until", "2026-11-01"],
            vec!["--from-position", "9", "--to-position", "3"],
            vec!["--format", "xml"],
        ] {
            let mut args = args.clone();
            args.extend(["--output", &path]);
            let output = log.export(&args);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{backend:?} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!file.exists(), "{args:?}");
        }

        // A row changed to something Herald never writes.
        match backend {
            Backend::Embedded => {
                let embedded = EmbeddedStore::open(EmbeddedConfig::in_dir(log.dir.path()))
                    .await
                    .unwrap();
                embedded
                    .execute_unchecked(
                        "UPDATE herald_events SET tenant = 'not a tenant' WHERE position = 7",
                    )
                    .await
                    .unwrap();
                embedded.close().await;
            }
            Backend::Postgres => {
                log.db
                    .as_ref()
                    .unwrap()
                    .connect()
                    .await
                    .batch_execute(
                        "UPDATE herald_events SET tenant = 'not a tenant' WHERE position = 7",
                    )
                    .await
                    .unwrap();
            }
        }
        log.store.close().await;
        let output = log.export(&["--output", &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{backend:?}: {stderr}");
        assert!(stderr.contains("position 7"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(log.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("out."))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Filtered past it, the rest exports.
        let output = log.export(&["--from-position", "8"]);
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8(output.stdout).unwrap().lines().count(),
            EVENTS as usize - 7
        );
    }
}
