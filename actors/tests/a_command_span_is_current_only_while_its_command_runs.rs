//! A command's tracing span is current on its actor's thread only while the
//! command's future is polled. Held across the command's awaits, it stayed
//! current while the thread ran other actors, so each command started inside
//! the one before: every command span got the previous one as its parent, a
//! chain as long as the process's busy life, whose closing finally overflowed
//! the thread's stack (all three `herald serve` of a load test died so after
//! about 2,000 commands per aggregate, in debug builds).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{ActorRuntime, AggregateGroup, CommandMeta, GroupConfig};
use herald_events::tickets::TicketKind;
use herald_events::{EventRegistry, TenantId};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Counts command spans, and those opened while another span was current on
/// their thread or that got a parent.
#[derive(Clone, Default)]
struct Nesting {
    commands: Arc<AtomicUsize>,
    nested: Arc<AtomicUsize>,
}

impl<S> Layer<S> for Nesting
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "command" {
            return;
        }
        self.commands.fetch_add(1, Ordering::SeqCst);
        let inside_another = ctx
            .lookup_current()
            .is_some_and(|current| current.id() != *id);
        let has_parent = ctx.span(id).and_then(|span| span.parent()).is_some();
        if inside_another || has_parent {
            self.nested.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[actix_rt::test]
async fn command_spans_never_nest_however_many_commands_share_a_thread() {
    let nesting = Nesting::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(nesting.clone()))
        .expect("the only subscriber of this test binary");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backend = support::Backend::Embedded(dir);
    let store = backend.open().await;
    // One thread: every actor's commands interleave on it.
    let runtime = ActorRuntime::start(1);
    let tickets: AggregateGroup<Ticket> = AggregateGroup::new(
        Arc::clone(&store),
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(&runtime),
        GroupConfig::default(),
    );
    let tenant = TenantId::new("acme").unwrap();
    for t in 0..4 {
        tickets
            .execute(
                &tenant,
                &format!("T-{t}"),
                TicketCommand::Open {
                    kind: TicketKind::Other,
                    customer: "acme".into(),
                    edge: None,
                    description: "spans".into(),
                    opened_by: None,
                },
                CommandMeta::default(),
            )
            .await
            .expect("open");
    }
    // Commands of four aggregates at once: each waits on the store while the
    // thread runs the others.
    let mut running = Vec::new();
    for n in 0..200 {
        let tickets = tickets.clone();
        let tenant = tenant.clone();
        running.push(tokio::spawn(async move {
            tickets
                .execute(
                    &tenant,
                    &format!("T-{}", n % 4),
                    TicketCommand::AppendNote {
                        note: format!("note {n}"),
                        author: None,
                    },
                    CommandMeta::default(),
                )
                .await
                .expect("append a note")
        }));
    }
    for r in running {
        r.await.expect("a command ran");
    }
    assert_eq!(nesting.commands.load(Ordering::SeqCst), 204);
    assert_eq!(
        nesting.nested.load(Ordering::SeqCst),
        0,
        "a command's span was opened inside another span"
    );
    runtime.stop();
}
