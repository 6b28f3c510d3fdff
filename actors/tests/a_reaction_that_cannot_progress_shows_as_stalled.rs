//! A reaction whose handler cannot take effect (it fails transiently, over
//! and over) while a delivery waits shows as stalled in the process's
//! progress, with its last reason; once the handler succeeds the stall is
//! gone. Against the in-process broker and the embedded store.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_actors::reactions::{spawn_reaction, Reaction, ReactionContext, ReactionError};
use herald_actors::Domains;
use herald_brokers::memory::MemoryBroker;
use herald_brokers::progress::Progress;
use herald_brokers::Broker;
use herald_events::{EventEnvelope, NewEvent, Position, SchemaVersion, TenantId};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion};
use herald_testkit::eventually;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(10);

/// Fails for the time being while `down` holds.
struct Flaky {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl Reaction for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn domains(&self) -> &'static [&'static str] {
        &["tickets"]
    }

    async fn react(
        &self,
        _event: &EventEnvelope,
        _ctx: &ReactionContext<'_>,
    ) -> Result<(), ReactionError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(ReactionError::Transient(
                "the ticket service is down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_retrying_an_event_shows_as_stalled_until_it_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    let progress = Progress::new(Duration::from_secs(2));
    let (down, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handle = spawn_reaction(
        Arc::new(Flaky {
            down: Arc::clone(&down),
            calls: Arc::clone(&calls),
        }),
        Arc::clone(&broker),
        Arc::clone(&store),
        Domains::default(),
        &progress,
        stopped,
    );
    assert!(handle.subscribed(PATIENCE).await);
    assert!(progress.stalled().is_empty(), "nothing waits yet");

    store
        .append(
            &TenantId::default_tenant(),
            &"tickets/T-1".parse().unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "tickets.note_appended".parse().unwrap(),
                SchemaVersion::V1,
                json!({"note": "hello"}),
            )],
        )
        .await
        .unwrap();
    let events = store.read_all(Position(1), 1).await.unwrap();
    broker.publish_batch(&events).await.unwrap();

    assert!(
        eventually(PATIENCE, || async {
            progress.stalled().iter().any(|s| {
                s.component == "reaction.flaky"
                    && s.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("the ticket service is down"))
            })
        })
        .await,
        "the stuck reaction never showed as stalled: {:?}",
        progress.stalled()
    );
    assert!(calls.load(Ordering::SeqCst) >= 2, "it kept retrying");

    down.store(false, Ordering::SeqCst);
    assert!(
        eventually(PATIENCE, || async { progress.stalled().is_empty() }).await,
        "the reaction still shows as stalled: {:?}",
        progress.stalled()
    );
    stop.send(true).unwrap();
    let _ = handle.task.await;
    store.close().await;
}
