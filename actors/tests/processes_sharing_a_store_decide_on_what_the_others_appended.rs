//! Processes that share a store (`catch_up_before_deciding`, as `herald
//! serve` sets it on a shared broker) read what the others appended to an
//! aggregate before deciding, so commands that alternate between processes
//! are decided on the latest state the first time: none needs the conflict
//! path, even with a single attempt allowed. Alone on its store, an actor
//! trusts its memory, and the same alternation is refused as contended.

mod support;

use std::sync::Arc;

use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{ActorRuntime, AggregateGroup, CommandError, CommandMeta, GroupConfig};
use herald_events::tickets::TicketKind;
use herald_events::{EventRegistry, TenantId};
use herald_store::EventStore;
use support::Backend;

fn group(
    store: &Arc<dyn EventStore>,
    runtime: &Arc<ActorRuntime>,
    catch_up: bool,
) -> AggregateGroup<Ticket> {
    AggregateGroup::new(
        Arc::clone(store),
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(runtime),
        GroupConfig {
            // One attempt: a decision on a stale state is not retried.
            conflict_retries: 1,
            catch_up_before_deciding: catch_up,
            ..GroupConfig::default()
        },
    )
}

fn note(text: &str) -> TicketCommand {
    TicketCommand::AppendNote {
        note: text.into(),
        author: None,
    }
}

async fn commands_alternating_between_processes_need_no_retry(backend: &Backend) {
    let (store_a, store_b) = (backend.open().await, backend.open().await);
    let runtime = ActorRuntime::start(2);
    let tenant = TenantId::new("acme").unwrap();
    let (a, b) = (
        group(&store_a, &runtime, true),
        group(&store_b, &runtime, true),
    );
    a.execute(
        &tenant,
        "T-1",
        TicketCommand::Open {
            kind: TicketKind::Other,
            customer: "acme".into(),
            edge: None,
            description: "shared".into(),
            opened_by: None,
        },
        CommandMeta::default(),
    )
    .await
    .expect("open");
    for n in 0..10 {
        let (here, name) = if n % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let done = here
            .execute(
                &tenant,
                "T-1",
                note(&format!("{name}{n}")),
                CommandMeta::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("note {n} through {name}: {e}"));
        assert_eq!(done.stream_version, n + 2, "decided on the latest state");
    }
    let (state, version) = a.state(&tenant, "T-1").await.unwrap().unwrap();
    assert_eq!((state.notes, version), (10, 11));

    // Alone on the store, an actor trusts its memory: the same alternation
    // meets the other process's appends as a conflict.
    let (c, d) = (
        group(&store_a, &runtime, false),
        group(&store_b, &runtime, false),
    );
    c.execute(&tenant, "T-1", note("c"), CommandMeta::default())
        .await
        .expect("c's first command reads the stream");
    d.execute(&tenant, "T-1", note("d"), CommandMeta::default())
        .await
        .expect("d's first command reads the stream");
    let stale = c
        .execute(&tenant, "T-1", note("c again"), CommandMeta::default())
        .await;
    assert!(
        matches!(stale, Err(CommandError::Contended { .. })),
        "{stale:?}"
    );
    runtime.stop();
}
on_both_stores!(commands_alternating_between_processes_need_no_retry);
