//! Durable timers on a real store (Postgres and embedded), with the
//! scheduler running: a due timer fires once and its command is delivered
//! once (an event delivery is appended once); two schedulers on one store
//! (two processes) fire due timers exactly once each and deliver once; a
//! timer that came due while no scheduler ran fires promptly when one
//! starts, marked late, and a firing whose delivery was lost (a crash in
//! between) is delivered at start; a recurring timer fires its occurrences
//! in order, once each, until cancelled; a countdown expires at its
//! deadline with its view count, after which views are refused; a restart
//! reads only the log after the scheduler's checkpoint (saved at an orderly
//! stop and every few seconds), and timers known only from the saved index
//! still fire once.
//!
//! Every wait is a condition with a deadline; "nothing more happened" is
//! checked after a later timer (a barrier) was delivered.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::timers::scheduler::{
    delivered_event_id, delivery_dedupe_key, fire_dedupe_key, CHECKPOINT,
};
use herald_actors::timers::{
    SchedulerConfig, SchedulerHandle, Timer, TimerCommand, TimerScheduler, TimerStatus, LATE_AFTER,
};
use herald_actors::{
    ActorRuntime, AggregateGroup, CommandError, CommandMeta, CommandTarget, Domains, GroupConfig,
    RefusalKind,
};
use herald_events::tickets::TicketKind;
use herald_events::timers::{CountdownExpired, TimerFired, TimerScheduled};
use herald_events::{
    Domain, EventEnvelope, EventRegistry, StreamId, StreamVersion, TenantId, TypedEvent,
};
use herald_store::EventStore;
use herald_testkit::eventually;
use serde_json::{json, Value};
use support::Backend;
use tokio::sync::watch;

/// Long enough for a loaded machine; the conditions usually hold in
/// about a second.
const PATIENCE: Duration = Duration::from_secs(30);

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A process: its store handle, actor runtime and groups.
struct Node {
    store: Arc<dyn EventStore>,
    runtime: Arc<ActorRuntime>,
    tickets: AggregateGroup<Ticket>,
    timers: AggregateGroup<Timer>,
    domains: Domains,
    registry: EventRegistry,
}

/// A running scheduler and its stop signal.
struct Running {
    stop: watch::Sender<bool>,
    handle: SchedulerHandle,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.handle.task.await.expect("the scheduler ends cleanly");
    }
}

impl Node {
    async fn start(backend: &Backend) -> Node {
        let store = backend.open().await;
        let runtime = ActorRuntime::start(2);
        let registry = EventRegistry::builtin().expect("the built-in schemas");
        let config = GroupConfig {
            conflict_retries: 50,
            ..GroupConfig::default()
        };
        let tickets = AggregateGroup::<Ticket>::new(
            Arc::clone(&store),
            registry.clone(),
            Arc::clone(&runtime),
            config.clone(),
        );
        let timers = AggregateGroup::<Timer>::new(
            Arc::clone(&store),
            registry.clone(),
            Arc::clone(&runtime),
            config,
        );
        let domains = Domains::default()
            .with(Arc::new(tickets.clone()))
            .with(Arc::new(timers.clone()));
        Node {
            store,
            runtime,
            tickets,
            timers,
            domains,
            registry,
        }
    }

    /// Starts a scheduler and waits until it has read the log.
    async fn scheduler(&self) -> Running {
        let (stop, stopped) = watch::channel(false);
        let mut handle = TimerScheduler::new(
            Arc::clone(&self.store),
            self.timers.clone(),
            self.domains.clone(),
            self.registry.clone(),
        )
        .spawn(stopped);
        assert!(
            handle.caught_up(PATIENCE).await,
            "the scheduler did not catch up with the log"
        );
        Running { stop, handle }
    }

    async fn open_ticket(&self, id: &str) {
        let open = TicketCommand::Open {
            kind: TicketKind::Other,
            customer: "acme".into(),
            edge: None,
            description: "no answer".into(),
            opened_by: None,
        };
        self.tickets
            .execute(&acme(), id, open, CommandMeta::default())
            .await
            .unwrap();
    }

    async fn schedule(&self, id: &str, body: Value) {
        let done = self
            .timers
            .execute_json(&acme(), id, "schedule", body, CommandMeta::default())
            .await
            .unwrap_or_else(|e| panic!("scheduling {id}: {e}"));
        assert_eq!(done.events.len(), 1, "{done:?}");
    }

    async fn notes(&self, ticket: &str) -> u64 {
        self.tickets
            .state(&acme(), ticket)
            .await
            .unwrap()
            .map_or(0, |(state, _)| state.notes)
    }

    async fn timer(&self, id: &str) -> Timer {
        self.timers.state(&acme(), id).await.unwrap().unwrap().0
    }

    async fn events(&self, domain: &str, id: &str) -> Vec<EventEnvelope> {
        let stream = StreamId::new(Domain::new(domain).unwrap(), id).unwrap();
        self.store
            .read_stream(&acme(), &stream, StreamVersion(1), 10_000)
            .await
            .unwrap()
    }

    /// The timer's `timer_fired` events.
    async fn firings(&self, id: &str) -> Vec<(EventEnvelope, TimerFired)> {
        self.events("timers", id)
            .await
            .into_iter()
            .filter(|e| e.event_type.name() == "timer_fired")
            .map(|e| {
                let fired = TimerFired::from_payload(e.payload.clone()).unwrap();
                (e, fired)
            })
            .collect()
    }

    /// Schedules a timer due now that notes `barrier` on the ticket, and
    /// waits for the note: whatever the schedulers had to do before is done.
    async fn barrier(&self, ticket: &str) {
        if self.events("tickets", ticket).await.is_empty() {
            self.open_ticket(ticket).await;
        }
        let before = self.notes(ticket).await;
        let id = format!("barrier-{}", uuid::Uuid::now_v7());
        self.schedule(
            &id,
            json!({"after_secs": 0, "deliver": note_to(ticket, "barrier")}),
        )
        .await;
        assert!(
            eventually(PATIENCE, || async { self.notes(ticket).await > before }).await,
            "the barrier timer {id} was not delivered"
        );
    }
}

/// A delivery appending a note to a ticket.
fn note_to(ticket: &str, note: &str) -> Value {
    json!({
        "kind": "command",
        "domain": "tickets",
        "stream_id": ticket,
        "name": "append_note",
        "body": {"note": note, "author": "timer"},
    })
}

async fn a_due_timer_delivers_once(backend: &Backend) {
    let node = Node::start(backend).await;
    let scheduler = node.scheduler().await;
    let tenant = acme();
    node.open_ticket("T-1").await;

    node.schedule(
        "nudge",
        json!({
            "after_secs": 1,
            "deliver": note_to("T-1", "no answer from the customer"),
            "label": "nudge the customer",
        }),
    )
    .await;
    // An event delivery: appended to tickets/T-evt as tickets.note_appended.
    node.schedule(
        "stamp",
        json!({
            "after_secs": 1,
            "deliver": {
                "kind": "event", "domain": "tickets", "stream_id": "T-evt",
                "name": "note_appended", "body": {"note": "stamped"},
            },
        }),
    )
    .await;
    let scheduled_at = Utc::now();
    assert!(
        eventually(PATIENCE, || async {
            node.notes("T-1").await == 1 && node.events("tickets", "T-evt").await.len() == 1
        })
        .await,
        "the timers were not delivered"
    );

    let timer_events = node.events("timers", "nudge").await;
    assert_eq!(timer_events.len(), 2, "scheduled, then fired once");
    let scheduled = TimerScheduled::from_payload(timer_events[0].payload.clone()).unwrap();
    let firings = node.firings("nudge").await;
    let (fired_event, fired) = &firings[0];
    assert_eq!(fired.occurrence, 1);
    assert_eq!(fired.due_at, scheduled.due_at);
    assert!(fired.fired_at >= fired.due_at, "{fired:?}");
    assert!(!fired.late, "{fired:?}");
    assert!(fired.next_due_at.is_none());
    assert!(fired.due_at <= scheduled_at + TimeDelta::seconds(1));
    let timer = node.timer("nudge").await;
    assert_eq!((timer.status, timer.fired), (Some(TimerStatus::Fired), 1));

    // The delivered command: caused by the firing, in the timer's
    // correlation (the scheduling request's), by the timers producer.
    let ticket_events = node.events("tickets", "T-1").await;
    assert_eq!(ticket_events.len(), 2, "opened, then one note");
    let note = &ticket_events[1];
    assert_eq!(note.event_type.as_str(), "tickets.note_appended");
    assert_eq!(note.payload["note"], "no answer from the customer");
    assert_eq!(note.causation_id, fired_event.id.as_uuid());
    assert_eq!(note.correlation_id, timer_events[0].correlation_id);
    assert_eq!(fired_event.correlation_id, timer_events[0].correlation_id);
    assert_eq!(note.producer, "timers");

    // The delivered event: its id derives from the delivery's dedupe key.
    let stamped = &node.events("tickets", "T-evt").await[0];
    assert_eq!(
        stamped.id.as_uuid(),
        delivered_event_id(&delivery_dedupe_key(&tenant, "stamp", 1))
    );
    assert_eq!(stamped.payload, json!({"note": "stamped"}));
    let stamp_fired = &node.firings("stamp").await[0].0;
    assert_eq!(stamped.causation_id, stamp_fired.id.as_uuid());

    // A restart catches up, finds both deliveries done, and repeats nothing.
    scheduler.stop().await;
    let scheduler = node.scheduler().await;
    node.barrier("T-barrier").await;
    assert_eq!(node.events("tickets", "T-1").await.len(), 2);
    assert_eq!(node.events("tickets", "T-evt").await.len(), 1);
    assert_eq!(node.firings("nudge").await.len(), 1);
    scheduler.stop().await;
    node.runtime.stop();
}
on_both_stores!(a_due_timer_delivers_once);

async fn two_processes_fire_each_occurrence_once(backend: &Backend) {
    // Two nodes on two store handles, each with its scheduler.
    let a = Node::start(backend).await;
    let b = Node::start(backend).await;
    let scheduler_a = a.scheduler().await;
    let scheduler_b = b.scheduler().await;
    a.open_ticket("T-race").await;

    let due = rfc3339(Utc::now() + TimeDelta::milliseconds(1500));
    let timers = 6;
    for i in 0..timers {
        let node = if i % 2 == 0 { &a } else { &b };
        node.schedule(
            &format!("race-{i}"),
            json!({"at": due, "deliver": note_to("T-race", &format!("race {i}"))}),
        )
        .await;
    }
    // A command whose repeat the target refuses (a closed ticket is not
    // closed again): both processes deliver it, it takes effect once.
    a.open_ticket("T-close").await;
    b.schedule(
        "race-close",
        json!({"at": due, "deliver": {
            "kind": "command", "domain": "tickets", "stream_id": "T-close",
            "name": "close", "body": {"reason": "no answer"},
        }}),
    )
    .await;
    assert!(
        eventually(PATIENCE, || async {
            a.notes("T-race").await >= timers && a.events("tickets", "T-close").await.len() == 2
        })
        .await,
        "not every timer was delivered"
    );
    // Both schedulers have had their go at every timer once the barrier
    // timer (due after the race) was delivered through each of them.
    a.barrier("T-barrier-a").await;
    b.barrier("T-barrier-b").await;
    for i in 0..timers {
        let firings = a.firings(&format!("race-{i}")).await;
        assert_eq!(firings.len(), 1, "race-{i} fired {} times", firings.len());
        assert_eq!(firings[0].1.occurrence, 1);
    }
    let mut notes: Vec<String> = a
        .events("tickets", "T-race")
        .await
        .iter()
        .filter(|e| e.event_type.name() == "note_appended")
        .map(|e| e.payload["note"].as_str().unwrap().to_owned())
        .collect();
    notes.sort();
    let expected: Vec<String> = (0..timers).map(|i| format!("race {i}")).collect();
    assert_eq!(notes, expected, "one note per timer");
    let closing: Vec<String> = a
        .events("tickets", "T-close")
        .await
        .iter()
        .map(|e| e.event_type.name().to_owned())
        .collect();
    assert_eq!(closing, ["ticket_opened", "ticket_closed"], "closed once");
    assert_eq!(a.firings("race-close").await.len(), 1);
    scheduler_a.stop().await;
    scheduler_b.stop().await;
    a.runtime.stop();
    b.runtime.stop();
}
on_both_stores!(two_processes_fire_each_occurrence_once);

async fn timers_due_while_down_fire_late_at_start(backend: &Backend) {
    let node = Node::start(backend).await;
    let tenant = acme();
    // A scheduler ran, then the process went down.
    node.scheduler().await.stop().await;
    node.open_ticket("T-late").await;
    let due = Utc::now() - TimeDelta::seconds(10);
    node.schedule(
        "overdue",
        json!({"at": rfc3339(due), "deliver": note_to("T-late", "overdue")}),
    )
    .await;
    // A firing whose delivery was lost: fired (as the scheduler does), then
    // the process died before delivering.
    let crashed_due = Utc::now() - TimeDelta::seconds(5);
    node.schedule(
        "crashed",
        json!({"at": rfc3339(crashed_due), "deliver": note_to("T-late", "after a crash")}),
    )
    .await;
    let fired = node
        .timers
        .execute(
            &tenant,
            "crashed",
            TimerCommand::Fire {
                occurrence: 1,
                due_at: node.timer("crashed").await.next_due_at.unwrap(),
            },
            CommandMeta {
                dedupe_key: Some(fire_dedupe_key(&tenant, "crashed", 1)),
                ..CommandMeta::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(fired.events.len(), 1);
    assert_eq!(node.notes("T-late").await, 0);

    let started = Instant::now();
    let scheduler = node.scheduler().await;
    assert!(
        eventually(PATIENCE, || async { node.notes("T-late").await == 2 }).await,
        "the overdue timer and the lost delivery were not delivered at start"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "not prompt: {took:?}");
    let firings = node.firings("overdue").await;
    assert_eq!(firings.len(), 1);
    let overdue = &firings[0].1;
    assert!(overdue.late, "{overdue:?}");
    assert!(overdue.fired_at - overdue.due_at > LATE_AFTER);
    assert_eq!(node.timer("overdue").await.late_firings, 1);
    assert_eq!(
        node.firings("crashed").await.len(),
        1,
        "the crashed timer is not fired again"
    );

    // Another restart: both deliveries left their trace; nothing is repeated.
    scheduler.stop().await;
    let scheduler = node.scheduler().await;
    node.barrier("T-barrier").await;
    let notes: Vec<Value> = node
        .events("tickets", "T-late")
        .await
        .iter()
        .filter(|e| e.event_type.name() == "note_appended")
        .map(|e| e.payload["note"].clone())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.contains(&json!("overdue")) && notes.contains(&json!("after a crash")));
    scheduler.stop().await;
    node.runtime.stop();
}
on_both_stores!(timers_due_while_down_fire_late_at_start);

async fn a_recurring_timer_fires_in_order_until_cancelled(backend: &Backend) {
    let node = Node::start(backend).await;
    let scheduler = node.scheduler().await;
    let tenant = acme();
    node.open_ticket("T-tick").await;
    node.schedule(
        "every-second",
        json!({"after_secs": 1, "every_secs": 1, "deliver": note_to("T-tick", "tick")}),
    )
    .await;
    assert!(
        eventually(PATIENCE, || async {
            node.timer("every-second").await.fired >= 3
        })
        .await,
        "the recurring timer did not fire three times"
    );
    let cancelled = node
        .timers
        .execute_json(
            &tenant,
            "every-second",
            "cancel",
            json!({"reason": "enough"}),
            CommandMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.events.len(), 1);
    let timer = node.timer("every-second").await;
    assert_eq!(timer.status, Some(TimerStatus::Cancelled));
    let fired = timer.fired;

    // A later timer, due after two more ticks would have come.
    node.schedule(
        "after-cancel",
        json!({"after_secs": 2, "deliver": note_to("T-tick", "after")}),
    )
    .await;
    assert!(
        eventually(PATIENCE, || async {
            node.firings("after-cancel").await.len() == 1 && node.notes("T-tick").await == fired + 1
        })
        .await,
        "not every occurrence was delivered once ({} notes, {fired} firings)",
        node.notes("T-tick").await
    );
    let events = node.events("timers", "every-second").await;
    let names: Vec<&str> = events.iter().map(|e| e.event_type.name()).collect();
    let mut expected = vec!["timer_scheduled"];
    expected.extend(std::iter::repeat_n("timer_fired", fired as usize));
    expected.push("timer_cancelled");
    assert_eq!(names, expected, "fired in order, nothing after the cancel");
    let firings = node.firings("every-second").await;
    for (i, (_, f)) in firings.iter().enumerate() {
        assert_eq!(f.occurrence, i as u64 + 1);
        let next = f.next_due_at.expect("a recurring firing names the next");
        assert!(next > f.due_at);
        if let Some((_, following)) = firings.get(i + 1) {
            assert_eq!(
                following.due_at, next,
                "each occurrence is due when announced"
            );
        }
    }
    assert!(firings.len() >= 3);
    let ticks = node
        .events("tickets", "T-tick")
        .await
        .iter()
        .filter(|e| e.payload["note"] == "tick")
        .count() as u64;
    assert_eq!(ticks, fired, "one delivery per occurrence");
    scheduler.stop().await;
    node.runtime.stop();
}
on_both_stores!(a_recurring_timer_fires_in_order_until_cancelled);

async fn a_countdown_expires_at_its_deadline_with_its_views(backend: &Backend) {
    let node = Node::start(backend).await;
    let scheduler = node.scheduler().await;
    let tenant = acme();
    let deadline: DateTime<Utc> = rfc3339(Utc::now() + TimeDelta::milliseconds(2500))
        .parse()
        .unwrap();
    let target: &dyn CommandTarget = &node.timers;
    target
        .execute_json(
            &tenant,
            "offer-ends",
            "create_countdown",
            json!({"deadline": rfc3339(deadline), "label": "Offer ends"}),
            CommandMeta::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        target
            .execute_json(
                &tenant,
                "offer-ends",
                "record_view",
                json!({}),
                CommandMeta::default(),
            )
            .await
            .unwrap();
    }
    assert!(
        eventually(PATIENCE, || async {
            node.timer("offer-ends").await.status == Some(TimerStatus::Expired)
        })
        .await,
        "the countdown did not expire"
    );
    let events = node.events("timers", "offer-ends").await;
    let names: Vec<&str> = events.iter().map(|e| e.event_type.name()).collect();
    assert_eq!(
        names,
        [
            "countdown_created",
            "countdown_viewed",
            "countdown_viewed",
            "countdown_expired"
        ]
    );
    let expired = CountdownExpired::from_payload(events[3].payload.clone()).unwrap();
    assert_eq!(expired, CountdownExpired { deadline, views: 2 });
    assert!(
        events[3].recorded_at >= deadline,
        "expired before its deadline"
    );
    match target
        .execute_json(
            &tenant,
            "offer-ends",
            "record_view",
            json!({}),
            CommandMeta::default(),
        )
        .await
    {
        Err(CommandError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Forbidden),
        other => panic!("a view after the deadline: {other:?}"),
    }
    scheduler.stop().await;
    node.runtime.stop();
}
on_both_stores!(a_countdown_expires_at_its_deadline_with_its_views);

/// A scheduler saving its index every 100 ms (instead of every 5 s).
async fn checkpointing_scheduler(node: &Node) -> Running {
    let (stop, stopped) = watch::channel(false);
    let mut handle = TimerScheduler::new(
        Arc::clone(&node.store),
        node.timers.clone(),
        node.domains.clone(),
        node.registry.clone(),
    )
    .with_config(SchedulerConfig {
        checkpoint_every: Duration::from_millis(100),
        ..SchedulerConfig::default()
    })
    .spawn(stopped);
    assert!(
        handle.caught_up(PATIENCE).await,
        "the scheduler did not catch up with the log"
    );
    Running { stop, handle }
}

async fn a_restart_reads_only_the_log_after_the_checkpoint(backend: &Backend) {
    let node = Node::start(backend).await;
    node.open_ticket("T-cp").await;
    let scheduler = checkpointing_scheduler(&node).await;
    assert_eq!(
        scheduler.handle.catch_up().unwrap().from.get(),
        1,
        "a first start reads the log from its start"
    );
    // Known only from events read before the checkpoint: a timer due after
    // the restarts, and one due now whose note shows the scheduler ran.
    let later = Utc::now() + TimeDelta::seconds(4);
    node.schedule(
        "later",
        json!({"at": rfc3339(later), "deliver": note_to("T-cp", "later")}),
    )
    .await;
    node.schedule(
        "soon",
        json!({"after_secs": 0, "deliver": note_to("T-cp", "soon")}),
    )
    .await;
    assert!(
        eventually(PATIENCE, || async { node.notes("T-cp").await == 1 }).await,
        "the due timer was not delivered"
    );
    // An orderly stop saves the index as far as the scheduler has read.
    scheduler.stop().await;
    let (saved, state) = node
        .store
        .checkpoint_state(CHECKPOINT)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert!(state.is_some_and(|s| s.contains("later")));
    let head = node.store.head().await.unwrap().position;
    assert!(
        saved.get() >= 4 && saved <= head,
        "saved {saved}, head {head}"
    );

    let scheduler = checkpointing_scheduler(&node).await;
    let catch_up = scheduler.handle.catch_up().unwrap();
    assert_eq!(catch_up.from, saved.next(), "read from the checkpoint on");
    assert_eq!(
        catch_up.events_read,
        head.get() - saved.get(),
        "nothing before the checkpoint was read again"
    );

    // A crash (the task aborted, no orderly save) after more events: the
    // periodic save still bounds what the next start reads.
    node.open_ticket("T-cp2").await;
    let grown = node.store.head().await.unwrap().position;
    assert!(
        eventually(PATIENCE, || async {
            node.store
                .checkpoint_state(CHECKPOINT)
                .await
                .unwrap()
                .is_some_and(|(p, _)| p >= grown)
        })
        .await,
        "the running scheduler never saved its index past {grown}"
    );
    scheduler.handle.task.abort();
    let _ = scheduler.handle.task.await;
    let scheduler = checkpointing_scheduler(&node).await;
    assert!(scheduler.handle.catch_up().unwrap().from > grown);

    // The timer known only through the saved index fires once.
    assert!(
        eventually(PATIENCE, || async { node.notes("T-cp").await == 2 }).await,
        "the timer scheduled before the checkpoints was not delivered"
    );
    node.barrier("T-cp-barrier").await;
    assert_eq!(node.firings("later").await.len(), 1);
    assert_eq!(node.notes("T-cp").await, 2);
    scheduler.stop().await;
    node.runtime.stop();
}
on_both_stores!(a_restart_reads_only_the_log_after_the_checkpoint);
