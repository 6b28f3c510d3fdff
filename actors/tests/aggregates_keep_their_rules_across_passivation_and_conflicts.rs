//! The actor runtime on a real store (Postgres and embedded): commands run
//! through decide → append → apply; passivated actors (idle, or past the
//! group's cap) come back with their state; two groups on one store (two
//! processes) writing the same stream both succeed by re-deciding after a
//! conflict, and nothing is lost; snapshots are taken every N events and a
//! snapshot of another state version is ignored; a full mailbox refuses
//! instead of queueing; a repeated reaction command (same dedupe key)
//! appends nothing twice.

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald_actors::tickets::{Ticket, TicketCommand, TicketStatus};
use herald_actors::{
    ActorRuntime, AggregateGroup, CommandError, CommandMeta, CommandTarget, GroupConfig,
    RefusalKind,
};
use herald_events::tickets::TicketKind;
use herald_events::{Domain, EventRegistry, StreamId, StreamVersion, TenantId};
use herald_store::{EventStore, Snapshot};
use herald_testkit::eventually;
use serde_json::json;
use support::Backend;

fn group(
    store: &Arc<dyn EventStore>,
    runtime: &Arc<ActorRuntime>,
    config: GroupConfig,
) -> AggregateGroup<Ticket> {
    AggregateGroup::new(
        Arc::clone(store),
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(runtime),
        config,
    )
}

fn open() -> TicketCommand {
    TicketCommand::Open {
        kind: TicketKind::Other,
        customer: "acme".into(),
        edge: None,
        description: "link flapping".into(),
        opened_by: None,
    }
}

fn note(text: &str) -> TicketCommand {
    TicketCommand::AppendNote {
        note: text.into(),
        author: None,
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

async fn commands_change_state_and_survive_passivation(backend: &Backend) {
    let store = backend.open().await;
    let runtime = ActorRuntime::start(2);
    let config = GroupConfig {
        max_actors: 3,
        idle_timeout: Duration::from_millis(200),
        ..GroupConfig::default()
    };
    let tickets = group(&store, &runtime, config);
    let tenant = acme();

    for i in 0..10 {
        let id = format!("T-{i}");
        let done = tickets
            .execute(&tenant, &id, open(), CommandMeta::default())
            .await
            .unwrap();
        assert_eq!(done.stream_version, 1);
        assert_eq!(done.events.len(), 1);
        assert_eq!(done.events[0].event_type, "tickets.ticket_opened");
        assert!(
            tickets.live() <= 3,
            "{} live actors past the cap of 3",
            tickets.live()
        );
    }
    // T-0 was passivated long ago (cap); it comes back with its state.
    let done = tickets
        .execute(&tenant, "T-0", note("still down"), CommandMeta::default())
        .await
        .unwrap();
    assert_eq!(done.stream_version, 2);
    let (state, version) = tickets.state(&tenant, "T-0").await.unwrap().unwrap();
    assert_eq!(version, 2);
    assert_eq!(state.status, Some(TicketStatus::Open));
    assert_eq!(state.notes, 1);

    // Idle actors stop on their own.
    let idle = eventually(Duration::from_secs(5), || async { tickets.live() == 0 }).await;
    assert!(
        idle,
        "{} actors still live after the idle timeout",
        tickets.live()
    );
    let (state, version) = tickets.state(&tenant, "T-9").await.unwrap().unwrap();
    assert_eq!((state.status, version), (Some(TicketStatus::Open), 1));

    // The rules hold through the runtime: resolve twice → 409-kind refusal.
    let resolve = TicketCommand::Resolve {
        resolution: None,
        resolved_by: None,
    };
    tickets
        .execute(&tenant, "T-1", resolve.clone(), CommandMeta::default())
        .await
        .unwrap();
    match tickets
        .execute(&tenant, "T-1", resolve, CommandMeta::default())
        .await
    {
        Err(CommandError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Forbidden),
        other => panic!("resolving a resolved ticket: {other:?}"),
    }
    // An unknown ticket is not found, and has no state.
    match tickets
        .execute(&tenant, "T-404", note("x"), CommandMeta::default())
        .await
    {
        Err(CommandError::Refused(r)) => assert_eq!(r.kind, RefusalKind::NotFound),
        other => panic!("a note on a ticket never opened: {other:?}"),
    }
    assert!(tickets.state(&tenant, "T-404").await.unwrap().is_none());
    // Tenants do not see each other's tickets.
    assert!(tickets
        .state(&TenantId::new("globex").unwrap(), "T-0")
        .await
        .unwrap()
        .is_none());
    runtime.stop();
}
on_both_stores!(commands_change_state_and_survive_passivation);

async fn two_processes_writing_one_stream_lose_nothing(backend: &Backend) {
    // Two groups on two store handles: two Herald processes.
    let (store_a, store_b) = (backend.open().await, backend.open().await);
    let runtime = ActorRuntime::start(2);
    let a = group(
        &store_a,
        &runtime,
        GroupConfig {
            conflict_retries: 50,
            ..GroupConfig::default()
        },
    );
    let b = group(
        &store_b,
        &runtime,
        GroupConfig {
            conflict_retries: 50,
            ..GroupConfig::default()
        },
    );
    let tenant = acme();
    a.execute(&tenant, "T-shared", open(), CommandMeta::default())
        .await
        .unwrap();
    b.state(&tenant, "T-shared").await.unwrap().unwrap();

    let per_side = 25;
    let mut tasks = Vec::new();
    for (side, g) in [("a", a.clone()), ("b", b.clone())] {
        for n in 0..per_side {
            let g = g.clone();
            let tenant = tenant.clone();
            tasks.push(actix_rt::spawn(async move {
                g.execute(
                    &tenant,
                    "T-shared",
                    note(&format!("{side}{n}")),
                    CommandMeta::default(),
                )
                .await
            }));
        }
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("every note is appended, after re-deciding on conflict");
    }
    let events = store_a
        .read_stream(&tenant, &stream("T-shared"), StreamVersion(1), 1000)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        1 + 2 * per_side,
        "one opened and every note, once"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream_version.get(), i as u64 + 1);
    }
    let (state_a, version_a) = a.state(&tenant, "T-shared").await.unwrap().unwrap();
    let (state_b, version_b) = b.state(&tenant, "T-shared").await.unwrap().unwrap();
    assert_eq!(
        (state_a.notes, version_a),
        (2 * per_side as u64, 1 + 2 * per_side as u64)
    );
    assert_eq!((state_b.notes, version_b), (state_a.notes, version_a));
    runtime.stop();
}
on_both_stores!(two_processes_writing_one_stream_lose_nothing);

fn stream(id: &str) -> StreamId {
    StreamId::new(Domain::new("tickets").unwrap(), id).unwrap()
}

async fn snapshots_are_taken_and_foreign_versions_ignored(backend: &Backend) {
    let store = backend.open().await;
    let runtime = ActorRuntime::start(1);
    let config = GroupConfig {
        snapshot_every: 5,
        ..GroupConfig::default()
    };
    let tickets = group(&store, &runtime, config.clone());
    let tenant = acme();
    tickets
        .execute(&tenant, "T-snap", open(), CommandMeta::default())
        .await
        .unwrap();
    for n in 0..11 {
        tickets
            .execute(
                &tenant,
                "T-snap",
                note(&format!("n{n}")),
                CommandMeta::default(),
            )
            .await
            .unwrap();
    }
    let snapshot = store
        .load_snapshot(&tenant, &stream("T-snap"))
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(
        snapshot.stream_version,
        StreamVersion(10),
        "every 5 events: at 5 and 10"
    );
    assert_eq!(snapshot.state["notes"], 9);

    // A snapshot of another state version (a state whose shape changed) is
    // ignored: the state is rebuilt from the events.
    store
        .save_snapshot(&Snapshot::new(
            tenant.clone(),
            stream("T-snap"),
            StreamVersion(12),
            999,
            json!({"garbage": true}),
        ))
        .await
        .unwrap();
    let fresh = group(&store, &runtime, config);
    let (state, version) = fresh.state(&tenant, "T-snap").await.unwrap().unwrap();
    assert_eq!((state.notes, version), (11, 12));
    runtime.stop();
}
on_both_stores!(snapshots_are_taken_and_foreign_versions_ignored);

async fn a_full_mailbox_refuses_and_repeats_append_once(backend: &Backend) {
    let store = backend.open().await;
    let runtime = ActorRuntime::start(1);
    let tickets = group(
        &store,
        &runtime,
        GroupConfig {
            mailbox: 2,
            ..GroupConfig::default()
        },
    );
    let tenant = acme();
    tickets
        .execute(&tenant, "T-busy", open(), CommandMeta::default())
        .await
        .unwrap();

    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let (g, tenant) = (tickets.clone(), tenant.clone());
            actix_rt::spawn(async move {
                g.execute(
                    &tenant,
                    "T-busy",
                    note(&format!("n{n}")),
                    CommandMeta::default(),
                )
                .await
            })
        })
        .collect();
    let (mut done, mut busy) = (0u64, 0u64);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => done += 1,
            Err(CommandError::Busy { .. }) => busy += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(
        busy > 0,
        "40 commands at once into a mailbox of 2 were all queued"
    );
    assert_eq!(done + busy, 40);
    let (state, version) = tickets.state(&tenant, "T-busy").await.unwrap().unwrap();
    assert_eq!(
        (state.notes, version),
        (done, 1 + done),
        "every accepted command took effect once"
    );

    // A reaction's command, delivered twice: its events are appended once.
    let meta = CommandMeta {
        dedupe_key: Some("outage-monitor/0190-test".into()),
        ..CommandMeta::default()
    };
    let first = tickets
        .execute(&tenant, "T-busy", note("from a reaction"), meta.clone())
        .await
        .unwrap();
    let again = tickets
        .execute(&tenant, "T-busy", note("from a reaction"), meta)
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.events, first.events);
    let (_, after) = tickets.state(&tenant, "T-busy").await.unwrap().unwrap();
    assert_eq!(after, version + 1);

    // Over HTTP-like JSON: unknown commands and bad bodies are typed errors.
    let target: &dyn CommandTarget = &tickets;
    assert!(matches!(
        target
            .execute_json(
                &tenant,
                "T-busy",
                "explode",
                json!({}),
                CommandMeta::default()
            )
            .await,
        Err(CommandError::UnknownCommand { .. })
    ));
    assert!(matches!(
        target
            .execute_json(
                &tenant,
                "T-busy",
                "append_note",
                json!({"nope": 1}),
                CommandMeta::default()
            )
            .await,
        Err(CommandError::InvalidBody { .. })
    ));
    // A field over its schema's bound is refused as invalid, nothing written.
    match target
        .execute_json(
            &tenant,
            "T-busy",
            "append_note",
            json!({"note": "x".repeat(100_000)}),
            CommandMeta::default(),
        )
        .await
    {
        Err(CommandError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Invalid),
        other => panic!("an oversized note: {other:?}"),
    }
    let (_, unchanged) = tickets.state(&tenant, "T-busy").await.unwrap().unwrap();
    assert_eq!(unchanged, after);
    runtime.stop();
}
on_both_stores!(a_full_mailbox_refuses_and_repeats_append_once);
