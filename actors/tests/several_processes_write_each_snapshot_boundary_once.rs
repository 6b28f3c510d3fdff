//! Several processes serving one aggregate each cross the same snapshot
//! boundaries; the snapshot at each boundary is written once between them,
//! not once per process. A trigger on the snapshot table counts the writes
//! Postgres actually made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{ActorRuntime, AggregateGroup, CommandMeta, GroupConfig};
use herald_events::tickets::TicketKind;
use herald_events::{EventRegistry, TenantId};
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;

const EVERY: u64 = 10;
const PROCESSES: usize = 3;
const NOTES_PER_PROCESS: usize = 60;

#[actix_rt::test]
async fn several_processes_write_each_snapshot_boundary_once() {
    let db = TestDatabase::create().await;
    let runtime = ActorRuntime::start(2);
    let mut groups = Vec::new();
    for _ in 0..PROCESSES {
        let mut config = PostgresConfig::new(db.url());
        config.poll_interval = Duration::from_millis(50);
        let store: Arc<dyn EventStore> = Arc::new(
            PostgresStore::open(config)
                .await
                .expect("open the Postgres store"),
        );
        groups.push(AggregateGroup::<Ticket>::new(
            store,
            EventRegistry::builtin().expect("the built-in schemas"),
            Arc::clone(&runtime),
            GroupConfig {
                snapshot_every: EVERY,
                conflict_retries: 200,
                ..GroupConfig::default()
            },
        ));
    }
    let sql = db.connect().await;
    sql.batch_execute(
        "CREATE TABLE snapshot_writes (stream_version bigint NOT NULL);
         CREATE FUNCTION count_snapshot_write() RETURNS trigger AS $$
         BEGIN INSERT INTO snapshot_writes VALUES (NEW.stream_version); RETURN NEW; END
         $$ LANGUAGE plpgsql;
         CREATE TRIGGER count_snapshot_write AFTER INSERT OR UPDATE ON herald_snapshots
         FOR EACH ROW EXECUTE FUNCTION count_snapshot_write();",
    )
    .await
    .expect("the counting trigger");

    let tenant = TenantId::new("acme").unwrap();
    groups[0]
        .execute(
            &tenant,
            "T-shared",
            TicketCommand::Open {
                kind: TicketKind::Other,
                customer: "acme".into(),
                edge: None,
                description: "shared by every process".into(),
                opened_by: None,
            },
            CommandMeta::default(),
        )
        .await
        .expect("open the ticket");

    // Every process appends concurrently: each one's view is stale most of
    // the time, and each crosses boundaries the others also reach.
    let mut tasks = Vec::new();
    for (p, group) in groups.iter().enumerate() {
        for n in 0..NOTES_PER_PROCESS {
            let (group, tenant) = (group.clone(), tenant.clone());
            tasks.push(actix_rt::spawn(async move {
                group
                    .execute(
                        &tenant,
                        "T-shared",
                        TicketCommand::AppendNote {
                            note: format!("p{p} n{n}"),
                            author: None,
                        },
                        CommandMeta::default(),
                    )
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().expect("every note is appended");
    }
    let last = 1 + (PROCESSES * NOTES_PER_PROCESS) as u64;

    let writes: Vec<i64> = sql
        .query("SELECT stream_version FROM snapshot_writes", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut per_boundary = BTreeMap::<u64, usize>::new();
    for version in &writes {
        *per_boundary.entry(*version as u64 / EVERY).or_default() += 1;
    }
    assert!(
        per_boundary.values().all(|&n| n == 1),
        "a boundary written more than once: {per_boundary:?} (writes {writes:?})"
    );
    assert!(
        !writes.is_empty() && writes.len() as u64 <= last / EVERY,
        "{} writes for {} boundaries",
        writes.len(),
        last / EVERY
    );
    let kept: i64 = sql
        .query_one("SELECT stream_version FROM herald_snapshots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept,
        *writes.iter().max().unwrap(),
        "the latest write is kept"
    );
    runtime.stop();
}
