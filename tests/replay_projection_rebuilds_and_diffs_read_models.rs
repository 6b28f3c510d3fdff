//! `herald replay projection` on the embedded store (SQLite read models)
//! and on Postgres: a rebuild switches the read model to a new generation
//! whose rows equal the one it replaced; `--diff` finds a fresh build equal
//! to the serving tables, then lists exactly the row altered by hand in
//! them (exit 1), dropping its build each time; `--to-position` builds a
//! generation up to that position only, beside the serving one, which keeps
//! serving.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use herald_events::edges::EdgeRegistered;
use herald_events::tickets::{NoteAppended, TicketKind, TicketOpened, TicketResolved};
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::diff::TableDiff;
use herald_projections::read_models::tickets::TicketsProjection;
use herald_projections::Projection;
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::TestDatabase;
use serde_json::Value;
use support::herald_command;

/// Where the read models are, and how the test reaches them directly.
enum Side {
    Embedded { dir: tempfile::TempDir },
    Postgres { db: TestDatabase },
}

impl Side {
    fn store_args(&self) -> Vec<String> {
        match self {
            Side::Embedded { dir } => {
                vec!["--data-dir".into(), dir.path().to_str().unwrap().to_owned()]
            }
            Side::Postgres { db } => vec!["--store".into(), db.url().to_owned()],
        }
    }

    async fn open_store(&self) -> Arc<dyn EventStore> {
        match self {
            Side::Embedded { dir } => Arc::new(
                herald_store::EmbeddedStore::open(herald_store::EmbeddedConfig::in_dir(dir.path()))
                    .await
                    .unwrap(),
            ),
            Side::Postgres { db } => Arc::new(
                herald_store::PostgresStore::open(herald_store::PostgresConfig::new(db.url()))
                    .await
                    .unwrap(),
            ),
        }
    }

    fn sqlite_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("read-models.db")
    }

    /// A table of a generation, as SQL names it.
    fn table(&self, generation: u32, table: &str) -> String {
        match self {
            Side::Embedded { .. } => format!("\"rm_tickets_g{generation}_{table}\""),
            Side::Postgres { .. } => format!("rm_tickets_g{generation}.{table}"),
        }
    }

    /// Runs a statement; returns the first column of the first row as text.
    async fn query(&self, sql: &str) -> Option<String> {
        match self {
            Side::Embedded { dir } => {
                let conn = rusqlite::Connection::open(Self::sqlite_path(dir)).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                let mut statement = conn.prepare(sql).unwrap();
                let mut rows = statement.query([]).unwrap();
                rows.next()
                    .unwrap()
                    .map(|row| match row.get_ref(0).unwrap() {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        other => format!("{other:?}"),
                    })
            }
            Side::Postgres { db } => {
                let client = db.connect().await;
                let rows = client.simple_query(sql).await.unwrap();
                rows.into_iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                    _ => None,
                })
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await.unwrap().parse().unwrap()
    }

    /// The serving generation of the tickets read model.
    async fn serving(&self) -> u32 {
        self.count(
            "SELECT generation FROM herald_read_models WHERE name = 'tickets' AND state = 'active'",
        )
        .await as u32
    }

    /// Two generations' tables compared row for row.
    async fn compare(&self, a: u32, b: u32) -> Vec<TableDiff> {
        let tables = TicketsProjection.tables();
        match self {
            Side::Embedded { dir } => {
                let conn = rusqlite::Connection::open(Self::sqlite_path(dir)).unwrap();
                herald_projections::diff::sqlite_tables(
                    &conn,
                    &format!("rm_tickets_g{a}_"),
                    &format!("rm_tickets_g{b}_"),
                    tables,
                    10,
                )
                .unwrap()
            }
            Side::Postgres { db } => {
                let client = db.connect().await;
                herald_projections::diff::postgres_tables(
                    &client,
                    &format!("rm_tickets_g{a}"),
                    &format!("rm_tickets_g{b}"),
                    tables,
                    10,
                )
                .await
                .unwrap()
            }
        }
    }

    /// Whether any table of generation `generation` is left.
    async fn generation_tables_exist(&self, generation: u32) -> bool {
        let sql = match self {
            Side::Embedded { .. } => format!(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name LIKE 'rm\\_tickets\\_g{generation}\\_%' ESCAPE '\\'"
            ),
            Side::Postgres { .. } => format!(
                "SELECT count(*) FROM information_schema.schemata \
                 WHERE schema_name = 'rm_tickets_g{generation}'"
            ),
        };
        self.count(&sql).await > 0
    }
}

fn replay(side: &Side, args: &[&str]) -> Output {
    herald_command()
        .args(["replay", "projection"])
        .args(args)
        .args(side.store_args())
        .output()
        .expect("run herald replay projection")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn succeeded(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_json(output)
}

async fn append(store: &Arc<dyn EventStore>, stream: &str, event: NewEvent) -> u64 {
    let stream: StreamId = stream.parse().unwrap();
    store
        .append(
            &TenantId::default_tenant(),
            &stream,
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap()
        .events[0]
        .position
        .get()
}

fn opened(description: &str) -> NewEvent {
    TicketOpened {
        kind: TicketKind::Other,
        customer: "acme".into(),
        edge: None,
        description: description.into(),
        opened_by: None,
    }
    .to_new_event()
}

fn note(text: &str) -> NewEvent {
    NoteAppended {
        note: text.into(),
        author: Some("ops".into()),
    }
    .to_new_event()
}

async fn scenario(side: Side) {
    let store = side.open_store().await;
    append(&store, "tickets/T-1", opened("slow")).await;
    append(&store, "tickets/T-1", note("looking")).await;
    let t2_opened = append(&store, "tickets/T-2", opened("down")).await;
    append(
        &store,
        "edges/E-1",
        EdgeRegistered {
            customer: "acme".into(),
            serial: "SN-1".into(),
            site: "lab".into(),
        }
        .to_new_event(),
    )
    .await;
    append(
        &store,
        "tickets/T-2",
        TicketResolved {
            resolution: Some("power back".into()),
            resolved_by: None,
        }
        .to_new_event(),
    )
    .await;
    append(&store, "tickets/T-3", opened("flapping")).await;
    let head = append(&store, "tickets/T-1", note("fixed")).await;
    store.close().await;

    // The first build serves at once; a rebuild replaces it.
    let first = succeeded(&replay(&side, &["tickets", "--json"]));
    assert_eq!(first["generation"], 1, "{first}");
    assert_eq!(first["replaced"], Value::Null);
    assert_eq!(first["position"], head);
    assert_eq!(side.serving().await, 1);
    let second = succeeded(&replay(&side, &["tickets", "--json"]));
    assert_eq!(second["generation"], 2, "{second}");
    assert_eq!(second["replaced"], 1);
    assert_eq!(second["position"], head);
    assert_eq!(second["switched"], true);
    assert_eq!(side.serving().await, 2);
    let live = side.table(2, "tickets");
    assert_eq!(side.count(&format!("SELECT count(*) FROM {live}")).await, 3);
    let notes = side.table(2, "notes");
    assert_eq!(
        side.count(&format!("SELECT count(*) FROM {notes}")).await,
        2
    );
    let rebuilt_equals_replaced = side.compare(1, 2).await;
    assert_eq!(rebuilt_equals_replaced.len(), 3);
    assert!(
        rebuilt_equals_replaced.iter().all(TableDiff::is_empty),
        "{rebuilt_equals_replaced:?}"
    );

    // A fresh build equals the serving tables; the build is dropped.
    let same = succeeded(&replay(&side, &["tickets", "--diff", "--json"]));
    assert_eq!(same["live_generation"], 2, "{same}");
    assert_eq!(same["position"], head);
    let tables = same["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3);
    for table in tables {
        assert_eq!(table["only_in_live_count"], 0, "{same}");
        assert_eq!(table["only_in_rebuild_count"], 0, "{same}");
    }
    let built = same["rebuilt_generation"].as_u64().unwrap() as u32;
    assert!(built > 2);
    assert!(!side.generation_tables_exist(built).await);
    assert_eq!(
        side.count(&format!(
            "SELECT count(*) FROM herald_read_models WHERE name = 'tickets' AND generation = {built}"
        ))
        .await,
        0
    );

    // A row altered by hand is listed, both ways, and nothing else.
    side.query(&format!(
        "UPDATE {live} SET status = 'closed' WHERE id = 'T-2'"
    ))
    .await;
    let differs = replay(&side, &["tickets", "--diff", "--json"]);
    assert_eq!(
        differs.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&differs.stderr)
    );
    let differs = stdout_json(&differs);
    let tables = differs["tables"].as_array().unwrap();
    let tickets = tables.iter().find(|t| t["table"] == "tickets").unwrap();
    assert_eq!(tickets["only_in_live_count"], 1, "{differs}");
    assert_eq!(tickets["only_in_rebuild_count"], 1, "{differs}");
    assert_eq!(tickets["only_in_live"][0]["id"], "T-2");
    assert_eq!(tickets["only_in_live"][0]["status"], "closed");
    assert_eq!(tickets["only_in_rebuild"][0]["id"], "T-2");
    assert_eq!(tickets["only_in_rebuild"][0]["status"], "resolved");
    for other in tables.iter().filter(|t| t["table"] != "tickets") {
        assert_eq!(other["only_in_live_count"], 0, "{differs}");
        assert_eq!(other["only_in_rebuild_count"], 0, "{differs}");
    }
    let text = replay(&side, &["tickets", "--diff"]);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout
            .contains("tickets: 1 row(s) only in the serving table (-), 1 only in the rebuild (+)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- {") && stdout.contains("\"closed\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ {") && stdout.contains("\"resolved\""),
        "{stdout}"
    );
    assert!(stdout.contains("notes: same rows"), "{stdout}");
    assert!(String::from_utf8_lossy(&text.stderr).contains("differ"));
    assert_eq!(side.serving().await, 2, "a diff switches nothing");

    // A build up to a position, beside the serving one, not switched to.
    let partial = succeeded(&replay(
        &side,
        &["tickets", "--to-position", &t2_opened.to_string(), "--json"],
    ));
    assert_eq!(partial["position"], t2_opened, "{partial}");
    assert_eq!(partial["serving_generation"], 2, "{partial}");
    let generation = partial["generation"].as_u64().unwrap() as u32;
    assert!(generation > 2);
    let expected_location = match side {
        Side::Embedded { .. } => format!("rm_tickets_g{generation}_"),
        Side::Postgres { .. } => format!("rm_tickets_g{generation}"),
    };
    assert_eq!(partial["tables_in"], expected_location);
    assert_eq!(
        side.serving().await,
        2,
        "the serving generation still serves"
    );
    let inspected = side.table(generation, "tickets");
    assert_eq!(
        side.count(&format!("SELECT count(*) FROM {inspected}"))
            .await,
        2,
        "only T-1 and T-2 were opened by then"
    );
    assert_eq!(
        side.query(&format!("SELECT status FROM {inspected} WHERE id = 'T-2'"))
            .await
            .as_deref(),
        Some("open"),
        "T-2 was resolved after that position"
    );
    assert_eq!(side.count(&format!("SELECT count(*) FROM {live}")).await, 3);
    assert!(side.generation_tables_exist(generation).await);

    // Usage errors.
    let unknown = replay(&side, &["widgets"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no read model named \"widgets\"") && stderr.contains("tickets"),
        "{stderr}"
    );
    let both = replay(&side, &["tickets", "--diff", "--to-position", "3"]);
    assert_eq!(both.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    scenario(Side::Embedded {
        dir: tempfile::tempdir().unwrap(),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    scenario(Side::Postgres {
        db: TestDatabase::create().await,
    })
    .await;
}
