//! Commands with a client's idempotency key, on both stores: a command whose
//! process died after its events committed but before its answer was
//! recorded is answered, when repeated, with those events (found in the log
//! by the ids derived from the key) rather than decided again on the moved
//! state (which would refuse it); the same key sent at once to two groups
//! on one store (two processes) appends one set of events and every answer
//! names it; the key with another body is refused; a refused command keeps
//! nothing, so the key serves the corrected command.

mod support;

use std::sync::Arc;

use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{
    ActorRuntime, AggregateGroup, CommandError, CommandMeta, GroupConfig, Idempotency,
};
use herald_events::tickets::{TicketKind, TicketOpened};
use herald_events::{EventRegistry, StreamId, StreamVersion, TenantId, TypedEvent};
use herald_store::{Claimed, EventStore, ExpectedVersion, IdempotencyClaim};
use support::Backend;

fn group(store: &Arc<dyn EventStore>, runtime: &Arc<ActorRuntime>) -> AggregateGroup<Ticket> {
    AggregateGroup::new(
        Arc::clone(store),
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(runtime),
        GroupConfig::default(),
    )
}

fn open(customer: &str) -> TicketCommand {
    TicketCommand::Open {
        kind: TicketKind::Other,
        customer: customer.into(),
        edge: None,
        description: "retry me".into(),
        opened_by: None,
    }
}

fn keyed(key: &str, fingerprint: &str) -> CommandMeta {
    CommandMeta {
        idempotency: Some(Idempotency {
            key: key.into(),
            fingerprint: fingerprint.into(),
        }),
        ..CommandMeta::default()
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

async fn a_repeat_after_a_crash_finds_the_committed_events(backend: &Backend) {
    let store = backend.open().await;
    let tenant = acme();
    let stream: StreamId = "tickets/T-1".parse().unwrap();
    let claim = IdempotencyClaim {
        tenant: tenant.clone(),
        stream: stream.clone(),
        key: "k".into(),
        fingerprint: "open acme".into(),
    };
    // The first attempt: claimed, its event committed, then the process
    // died before recording the answer.
    assert_eq!(
        store.claim_idempotency_key(&claim).await.unwrap(),
        Claimed::New
    );
    let opened = TicketOpened {
        kind: TicketKind::Other,
        customer: "acme".into(),
        edge: None,
        description: "retry me".into(),
        opened_by: None,
    }
    .to_new_event()
    .with_id(claim.event_id(0));
    let committed = store
        .append(&tenant, &stream, ExpectedVersion::NO_STREAM, vec![opened])
        .await
        .unwrap();

    // The restarted process gets the repeat.
    let runtime = ActorRuntime::start(1);
    let tickets = group(&store, &runtime);
    let again = tickets
        .execute(&tenant, "T-1", open("acme"), keyed("k", "open acme"))
        .await
        .expect("a repeat of a command that took effect is not refused");
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.stream_version, 1);
    assert_eq!(again.events.len(), 1);
    assert_eq!(again.events[0].id, claim.event_id(0).as_uuid());
    assert_eq!(again.events[0].position, committed.events[0].position.get());
    assert_eq!(again.events[0].event_type, "tickets.ticket_opened");
    // Its answer is recorded now: asked again, the same.
    let third = tickets
        .execute(&tenant, "T-1", open("acme"), keyed("k", "open acme"))
        .await
        .unwrap();
    assert_eq!(third, again);
    assert_eq!(
        store.stream_version(&tenant, &stream).await.unwrap(),
        StreamVersion(1)
    );

    // The key with another body is refused, naming the key.
    match tickets
        .execute(&tenant, "T-1", open("globex"), keyed("k", "open globex"))
        .await
    {
        Err(CommandError::IdempotencyKeyReused { key, .. }) => assert_eq!(key, "k"),
        other => panic!("expected a refusal of the reused key, got {other:?}"),
    }

    // A refused command keeps nothing: the key then serves the corrected one.
    match tickets
        .execute(&tenant, "T-2", open(" "), keyed("k2", "open blank"))
        .await
    {
        Err(CommandError::Refused(_)) => {}
        other => panic!("an empty customer is refused, got {other:?}"),
    }
    let corrected = tickets
        .execute(&tenant, "T-2", open("acme"), keyed("k2", "open acme"))
        .await
        .unwrap();
    assert!(!corrected.duplicate);
    assert_eq!(corrected.events.len(), 1);
    runtime.stop();
}
on_both_stores!(a_repeat_after_a_crash_finds_the_committed_events);

async fn the_same_key_at_once_in_two_processes_appends_once(backend: &Backend) {
    let (store_a, store_b) = (backend.open().await, backend.open().await);
    let runtime = ActorRuntime::start(2);
    let groups = [group(&store_a, &runtime), group(&store_b, &runtime)];
    let tenant = acme();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let tickets = groups[i % 2].clone();
            let tenant = tenant.clone();
            actix_rt::spawn(async move {
                tickets
                    .execute(&tenant, "T-race", open("acme"), keyed("race", "open acme"))
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every repeat is answered"));
    }
    let firsts = answers.iter().filter(|a| !a.duplicate).count();
    assert_eq!(firsts, 1, "exactly one attempt wrote: {answers:?}");
    for answer in &answers {
        assert_eq!(answer.events, answers[0].events, "{answers:?}");
        assert_eq!(answer.events.len(), 1);
    }
    let stream: StreamId = "tickets/T-race".parse().unwrap();
    assert_eq!(
        store_a.stream_version(&tenant, &stream).await.unwrap(),
        StreamVersion(1),
        "one set of events"
    );
    runtime.stop();
}
on_both_stores!(the_same_key_at_once_in_two_processes_appends_once);
