//! `herald audit verify` finds the first position where the hash chain
//! breaks and says how, on both stores: a log of 20 events over three
//! streams and two tenants is changed directly in the database (SQL on
//! `herald_events`, as someone with database access would) — a payload
//! edited, a stored hash edited, a row deleted, a forged row inserted (one
//! that chains and one that does not), two rows swapped, the tail cut off —
//! each on a fresh store, and the built binary reports the position and the
//! kind, with exit code 1; an intact log exits 0. `herald audit anchor`
//! kept outside catches a tail cut off together with the head record, which
//! nothing inside the database can. `GET /v1/audit/verify` answers the same
//! report to admin keys and 403 to others.

mod support;

use std::process::Output;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald_events::{
    chain_hash, ChainHash, EventEnvelope, EventId, EventType, NewEvent, Position, SchemaVersion,
    StreamId, TenantId,
};
use herald_store::audit::{BreakKind, VerifyReport};
use herald_store::{
    EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, PostgresConfig, PostgresStore,
};
use herald_testkit::TestDatabase;
use serde_json::{json, Value};

/// Events in every log.
const EVENTS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Postgres,
}

const BACKENDS: [Backend; 2] = [Backend::Embedded, Backend::Postgres];

/// A fresh store holding the 20-event log.
struct Log {
    backend: Backend,
    dir: tempfile::TempDir,
    db: Option<TestDatabase>,
    embedded: Option<EmbeddedStore>,
    store: Arc<dyn EventStore>,
}

impl Log {
    async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, embedded, store): (_, _, Arc<dyn EventStore>) = match backend {
            Backend::Embedded => {
                let store = EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
                    .await
                    .unwrap();
                (None, Some(store.clone()), Arc::new(store))
            }
            Backend::Postgres => {
                let db = TestDatabase::create().await;
                let store = PostgresStore::open(PostgresConfig::new(db.url()))
                    .await
                    .unwrap();
                (Some(db), None, Arc::new(store))
            }
        };
        // Three streams of two tenants, appended one or two events at a time.
        let mut position = 0;
        while position < EVENTS {
            let (tenant, stream, event_type) = match position % 3 {
                0 => ("acme", "tickets/T-1", "tickets.note_appended"),
                1 => ("acme", "tickets/T-2", "tickets.note_appended"),
                _ => ("globex", "edges/E-1", "edges.report_received"),
            };
            let n = if position % 2 == 0 { 2 } else { 1 }.min(EVENTS - position);
            let events = (0..n)
                .map(|i| {
                    NewEvent::new(
                        event_type.parse::<EventType>().unwrap(),
                        SchemaVersion::V1,
                        json!({"note": format!("event {}", position + i + 1), "n": position + i + 1,
                               "nested": {"b": [1, 2.5, "x"], "a": null}}),
                    )
                })
                .collect();
            store
                .append(
                    &TenantId::new(tenant).unwrap(),
                    &stream.parse::<StreamId>().unwrap(),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .unwrap();
            position += n;
        }
        assert_eq!(store.head().await.unwrap().position, Position(EVENTS));
        Self {
            backend,
            dir,
            db,
            embedded,
            store,
        }
    }

    /// The flags that point `herald` at this store.
    fn store_args(&self) -> Vec<String> {
        match self.backend {
            Backend::Embedded => vec!["--data-dir".into(), self.dir.path().display().to_string()],
            Backend::Postgres => vec!["--store".into(), self.db.as_ref().unwrap().url().to_owned()],
        }
    }

    /// Runs SQL on the store's database, as it is.
    async fn sql(&self, sql: &str) {
        match self.backend {
            Backend::Embedded => self
                .embedded
                .as_ref()
                .unwrap()
                .execute_unchecked(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Backend::Postgres => self
                .db
                .as_ref()
                .unwrap()
                .connect()
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// A byte string as an SQL literal of this database.
    fn blob(&self, bytes: &[u8]) -> String {
        match self.backend {
            Backend::Embedded => format!("X'{}'", hex::encode(bytes)),
            Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
        }
    }

    /// The event stored at `position` (before any change).
    async fn event(&self, position: u64) -> EventEnvelope {
        let events = self.store.read_all(Position(position), 1).await.unwrap();
        assert_eq!(events[0].position, Position(position));
        events.into_iter().next().unwrap()
    }

    /// Runs `herald audit <args> <store flags>`.
    fn herald(&self, args: &[&str]) -> Output {
        let output = support::herald_command()
            .args(["audit"])
            .args(args)
            .args(self.store_args())
            .output()
            .expect("run herald");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{:?} {args:?}: {stderr}",
            self.backend
        );
        output
    }

    /// `herald audit verify --json <extra>`: the exit code and the report.
    fn verify(&self, extra: &[&str]) -> (i32, VerifyReport) {
        let mut args = vec!["verify", "--json"];
        args.extend_from_slice(extra);
        let output = self.herald(&args);
        let code = output.status.code().expect("an exit code");
        let report: VerifyReport = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{:?}: not a report ({e}): {} / {}",
                self.backend,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (code, report)
    }

    /// Verifies and expects the chain broken at `position` with `kind`.
    fn expect_break(&self, extra: &[&str], kind: BreakKind, position: u64) -> VerifyReport {
        let (code, report) = self.verify(extra);
        let found = report
            .first_break
            .clone()
            .unwrap_or_else(|| panic!("{:?}: no break found: {report:?}", self.backend));
        assert_eq!(
            (code, report.intact, found.kind, found.position),
            (1, false, kind, position),
            "{:?}: {report:#?}",
            self.backend
        );
        report
    }

    async fn close(&self) {
        self.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_log_verifies_and_exits_0() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.close().await;
        let (code, report) = log.verify(&[]);
        assert_eq!(code, 0, "{backend:?}: {report:?}");
        assert!(report.intact && report.first_break.is_none());
        assert_eq!(
            (report.from, report.to, report.checked),
            (1, EVENTS, EVENTS)
        );
        // From a later position: only the events from there on are checked.
        let (code, report) = log.verify(&["--from", "15"]);
        assert_eq!((code, report.checked, report.from), (0, 6, 15));
        // The text report says the same.
        let output = log.herald(&["verify"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}");
        assert!(
            text.starts_with(&format!(
                "intact: positions 1 to {EVENTS} chain ({EVENTS} events"
            )),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_payload_is_edited_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.sql(r#"UPDATE herald_events SET payload = '{"note": "changed"}' WHERE position = 5"#)
            .await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Edited, 5);
        assert_eq!(report.checked, 4);
        let detail = &report.first_break.unwrap().detail;
        assert!(detail.contains("content was changed"), "{detail}");
        // Checked from after it, the rest still chains: the edit left every
        // stored hash as it was.
        assert_eq!(log.verify(&["--from", "6"]).0, 0);
        // The text report names the position and the kind, with exit code 1.
        let output = log.herald(&["verify"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(text.starts_with("broken at position 5: edited\n"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_hash_is_edited_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        let sql = format!(
            "UPDATE herald_events SET hash = {} WHERE position = 11",
            log.blob(&[0xee; 32])
        );
        log.sql(&sql).await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Edited, 11);
        let detail = &report.first_break.unwrap().detail;
        assert!(detail.contains("stored hash was changed"), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_row_is_deleted_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.sql("DELETE FROM herald_events WHERE position = 7")
            .await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Deleted, 7);
        assert_eq!(report.first_break.unwrap().count, Some(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_hidden_by_renumbering_is_deleted_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        // Rows 9 and 10 go, and the rows after move down to close the gap
        // (through negative positions: the key is checked row by row).
        log.sql(
            "DELETE FROM herald_events WHERE position IN (9, 10);
             UPDATE herald_events SET position = -position WHERE position > 10;
             UPDATE herald_events SET position = -position - 2 WHERE position < 0;",
        )
        .await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Deleted, 9);
        assert_eq!(report.first_break.unwrap().count, Some(2));
    }
}

/// Moves rows from `at` on up by one and inserts a forged copy of the event
/// at `from` (with id `forged_id`, in a stream of its own) at `at`, with
/// `hash`.
async fn insert_forged(log: &Log, at: u64, from: u64, forged_id: EventId, hash: &[u8]) {
    let forged_id = forged_id.as_uuid();
    let sql = format!(
        "UPDATE herald_events SET position = -position WHERE position >= {at};
         UPDATE herald_events SET position = -position + 1 WHERE position < 0;
         INSERT INTO herald_events (position, event_id, tenant, domain, stream_id, stream_version,
             event_type, schema_version, occurred_at, recorded_at, correlation_id, causation_id,
             producer, payload, hash)
         SELECT {at}, '{forged_id}', tenant, domain, 'FORGED-1', 1, event_type, schema_version,
             occurred_at, recorded_at, correlation_id, causation_id, producer, payload, {}
         FROM herald_events WHERE position = {from};",
        log.blob(hash)
    );
    log.sql(&sql).await;
}

/// The forged copy [`insert_forged`] writes, as an envelope.
fn forged(mut original: EventEnvelope, at: u64) -> EventEnvelope {
    original.position = Position(at);
    original.stream = StreamId::parse_parts(original.stream.domain().as_str(), "FORGED-1").unwrap();
    original.stream_version = herald_events::StreamVersion(1);
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_row_that_chains_is_inserted_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        // A forger who can compute hashes: the row chains from the one before it.
        let before = log.event(5).await;
        let mut copy = forged(log.event(2).await, 6);
        copy.id = EventId::new_v7();
        let hash = chain_hash(&before.hash, &copy);
        insert_forged(&log, 6, 2, copy.id, hash.as_bytes()).await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Inserted, 6);
        let found = report.first_break.unwrap();
        assert_eq!(found.count, Some(1), "{found:?}");
        // The forged row itself chained: the walk passed it.
        assert_eq!(report.checked, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_row_that_does_not_chain_is_inserted_at_its_position() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        let stored = log.event(2).await.hash;
        insert_forged(&log, 6, 2, EventId::new_v7(), stored.as_bytes()).await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Inserted, 6);
        assert_eq!(report.first_break.unwrap().count, Some(1));
        assert_eq!(report.checked, 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_rows_are_reordered_at_the_first() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.sql(
            "UPDATE herald_events SET position = -1 WHERE position = 4;
             UPDATE herald_events SET position = 4 WHERE position = 9;
             UPDATE herald_events SET position = 9 WHERE position = -1;",
        )
        .await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Reordered, 4);
        assert_eq!(report.first_break.unwrap().related_position, Some(9));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_is_truncated_against_the_head_record() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.sql("DELETE FROM herald_events WHERE position > 15")
            .await;
        log.close().await;
        let report = log.expect_break(&[], BreakKind::Truncated, 16);
        let found = report.first_break.unwrap();
        assert_eq!(
            (found.count, found.related_position),
            (Some(5), Some(EVENTS))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_catches_a_tail_cut_with_the_head_record() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        log.close().await;
        // The anchor, kept outside: as text, and as JSON in a file.
        let output = log.herald(&["anchor"]);
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let head = log.store.head().await.unwrap();
        assert_eq!(text, format!("{EVENTS}:{}", head.hash));
        let output = log.herald(&["anchor", "--json"]);
        let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (&doc["position"], &doc["hash"]),
            (&json!(EVENTS), &json!(head.hash.to_hex()))
        );
        let file = log.dir.path().join("anchor.json");
        std::fs::write(&file, &output.stdout).unwrap();
        let file = file.display().to_string();
        assert_eq!(log.verify(&["--anchor", &text]).0, 0);
        assert_eq!(log.verify(&["--anchor", &file]).0, 0);

        // The tail goes, and the head record is moved back to match.
        log.sql(
            "DELETE FROM herald_events WHERE position > 15;
             UPDATE herald_log_head SET position = 15,
                 hash = (SELECT hash FROM herald_events WHERE position = 15),
                 recorded_at = (SELECT recorded_at FROM herald_events WHERE position = 15)
             WHERE id = 1;",
        )
        .await;
        // Inside the database nothing tells...
        let (code, report) = log.verify(&[]);
        assert_eq!((code, report.intact, report.to), (0, true, 15));
        // ...the anchor does, in either form.
        for anchor in [&text, &file] {
            let report = log.expect_break(&["--anchor", anchor], BreakKind::Truncated, 16);
            assert_eq!(
                report.first_break.unwrap().related_position,
                Some(EVENTS),
                "{anchor}"
            );
        }
        // Also when the anchored position is before the one checked from.
        let early = format!("10:{}", ChainHash([1; 32]));
        log.expect_break(
            &["--anchor", &early, "--from", "12"],
            BreakKind::Truncated,
            10,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_missing_stores_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here").display().to_string();
    let run = |args: &[&str]| {
        let output = support::herald_command()
            .args(args)
            .output()
            .expect("run herald");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["audit", "verify", "--data-dir", &missing]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no embedded store"), "{stderr}");
    let (code, stderr) = run(&[
        "audit",
        "verify",
        "--anchor",
        "12:zz",
        "--data-dir",
        &missing,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--anchor"), "{stderr}");
    let (code, _) = run(&["audit", "verify", "--from", "x"]);
    assert_eq!(code, Some(2));
    let (code, stderr) = run(&[
        "audit",
        "verify",
        "--store",
        "postgres://nobody@127.0.0.1:1/nothing",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[actix_web::test]
async fn http_verify_answers_admins_the_same_report_and_others_403() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        let (_, admin) = support::create_key(&log.store, "acme", &["admin"], Some(100_000)).await;
        let (_, reader) = support::create_key(&log.store, "acme", &["read:*"], Some(100_000)).await;
        let state = support::state(Arc::clone(&log.store), support::TEST_LIMITS).await;
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(state))
                .configure(herald::api::routes),
        )
        .await;
        let get = |key: &str, path: &str| {
            test::TestRequest::get()
                .uri(path)
                .insert_header(("authorization", format!("Bearer {key}")))
                .to_request()
        };

        let response = test::call_service(&app, get(&admin, "/v1/audit/verify")).await;
        assert_eq!(response.status(), StatusCode::OK, "{backend:?}");
        let report: VerifyReport = test::read_body_json(response).await;
        assert!(report.intact, "{report:?}");
        assert_eq!((report.checked, report.to), (EVENTS, EVENTS));

        for path in [
            "/v1/audit/verify",
            "/v1/audit/verify?from=3",
            "/v1/audit/verify?from=nonsense",
        ] {
            let response = test::call_service(&app, get(&reader, path)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let response = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/v1/audit/verify")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        for path in [
            "/v1/audit/verify?from=nonsense",
            "/v1/audit/verify?anchor_position=3",
            "/v1/audit/verify?anchor_position=3&anchor_hash=abc",
            "/v1/audit/verify?limit=3",
            "/v1/audit/verify?from=2&anchor_hash=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let response = test::call_service(&app, get(&admin, path)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        }

        // An anchor at the head holds; after an edit, the report says where.
        let head = log.store.head().await.unwrap();
        let anchored = format!(
            "/v1/audit/verify?anchor_position={}&anchor_hash={}",
            head.position, head.hash
        );
        let response = test::call_service(&app, get(&admin, &anchored)).await;
        let report: VerifyReport = test::read_body_json(response).await;
        assert!(report.intact, "{report:?}");
        log.sql(r#"UPDATE herald_events SET payload = '{"note": "changed"}' WHERE position = 13"#)
            .await;
        let response = test::call_service(&app, get(&admin, &anchored)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let report: VerifyReport = test::read_body_json(response).await;
        let found = report.first_break.expect("a break");
        assert_eq!((found.kind, found.position), (BreakKind::Edited, 13));
        // From after the edit the rest chains.
        let response = test::call_service(&app, get(&admin, "/v1/audit/verify?from=14")).await;
        let report: VerifyReport = test::read_body_json(response).await;
        assert!(report.intact, "{report:?}");
        log.close().await;
    }
}

/// Payloads whose `jsonb` text differs most from their canonical form:
/// escapes, non-ASCII, control characters, every kind of number, keys
/// Postgres orders by length and canonical form by bytes.
fn awkward_payloads() -> Vec<Value> {
    vec![
        json!({"é": "日本 🎉", "a\"b": "quote\"back\\slash/", "ctl": "\u{1}\u{1f}\n\t\u{7f}"}),
        json!({"n": [0, -1, 1.0, 0.1, 2.5e-3, 1e300, -0.0, 12.5, 9007199254740993_u64]}),
        json!({"big": [18446744073709551615_u64, -9223372036854775808_i64, 123456789012345678_i64]}),
        json!({"zz": {"b": {}, "a": [], "ccc": [{"y": null, "x": true}]}, "z": false, "": 1}),
        json!({"nested": {"bb": 1, "a": 2, "ab": 3, "b": [{"k": "v"}, []]}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_payloads_verify_and_postgres_text_canonicalises_as_the_chain_does() {
    for backend in BACKENDS {
        let log = Log::create(backend).await;
        for payload in awkward_payloads() {
            log.store
                .append(
                    &TenantId::default_tenant(),
                    &"tickets/T-9".parse::<StreamId>().unwrap(),
                    ExpectedVersion::Any,
                    vec![NewEvent::new(
                        "tickets.note_appended".parse::<EventType>().unwrap(),
                        SchemaVersion::V1,
                        payload,
                    )],
                )
                .await
                .unwrap();
        }
        if backend == Backend::Postgres {
            // The fast path of verify makes canonical bytes from the text
            // Postgres sends for `jsonb`: exactly what the chain hashes.
            let client = log.db.as_ref().unwrap().connect().await;
            let rows = client
                .query(
                    "SELECT payload::text, payload FROM herald_events WHERE position > $1 \
                     ORDER BY position",
                    &[&(EVENTS as i64)],
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), awkward_payloads().len());
            for row in rows {
                let text: String = row.get(0);
                let value: Value = row.get(1);
                assert_eq!(
                    herald_store::audit::canonical::canonical_json_text(&text),
                    Some(herald_events::chain::canonical_json(&value)),
                    "{text}"
                );
            }
        }
        log.close().await;
        let (code, report) = log.verify(&[]);
        assert_eq!(
            (code, report.checked),
            (0, EVENTS + awkward_payloads().len() as u64),
            "{backend:?}: {report:?}"
        );
        // And an edit among them is still found where it is.
        log.sql(r#"UPDATE herald_events SET payload = '{"n": [0]}' WHERE position = 22"#)
            .await;
        log.expect_break(&[], BreakKind::Edited, 22);
    }
}
