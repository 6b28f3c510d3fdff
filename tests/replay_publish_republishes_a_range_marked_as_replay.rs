//! `herald replay publish` republishes a range of the log to a topic of its
//! own on RabbitMQ, from the embedded store and from Postgres: a consumer
//! group subscribed to that topic receives exactly the events at positions
//! 3 to 7, in order, each exactly as stored and marked `herald-replay: true`
//! with the run's `herald-replay-id`. Domain topics, an in-process broker
//! and an empty range are refused. The topology is deleted at the end.
#![cfg(feature = "amqp")]

mod support;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, Payload, Topic, WireSettings};
use herald_events::tickets::{NoteAppended, TicketKind, TicketOpened};
use herald_events::{EventEnvelope, Position, StreamId, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion};
use serde_json::Value;
use support::herald_command;

/// One partition, so the group's deliveries come in publish order and a
/// later run's message proves no earlier one is still on its way.
const WIRE: WireSettings = WireSettings {
    codec: herald_events::Codec::Bincode,
    max_message_bytes: 1024 * 1024,
    partitions: 1,
};

fn replay(store_args: &[String], args: &[&str]) -> Output {
    herald_command()
        .args(["replay", "publish"])
        .args(args)
        .args(store_args)
        .output()
        .expect("run herald replay publish")
}

fn summary(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A delivery as the test checks it.
struct Received {
    position: u64,
    event: EventEnvelope,
    replay: Option<String>,
    replay_id: Option<String>,
}

async fn scenario(store: Arc<dyn EventStore>, store_args: Vec<String>) {
    let tenant = TenantId::default_tenant();
    for i in 1..=10u32 {
        let stream: StreamId = format!("tickets/T-{}", i % 3).parse().unwrap();
        let event = if i <= 3 {
            TicketOpened {
                kind: TicketKind::Other,
                customer: "acme".into(),
                edge: None,
                description: format!("ticket {i}"),
                opened_by: None,
            }
            .to_new_event()
        } else {
            NoteAppended {
                note: format!("note {i}"),
                author: None,
            }
            .to_new_event()
        };
        store
            .append(&tenant, &stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let stored = store.read_all(Position(1), 100).await.unwrap();
    assert_eq!(stored.len(), 10);
    store.close().await;

    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let topic = Topic::named(format!("herald.replay-test.{suffix}")).unwrap();
    let group = ConsumerGroup::new(format!("replay-test-{suffix}")).unwrap();
    // A vhost of its own: the other store's run deletes its topology
    // beside this one, and the dead-letter exchange is shared per vhost.
    let vhost = herald_testkit::TestVhost::create().await;
    let amqp_url = vhost.url().to_owned();
    let amqp = AmqpBroker::connect(AmqpConfig::new(amqp_url.clone(), WIRE))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {} is not reachable ({e}); start it with `rabbitmq-server -detached`",
                amqp_url
            )
        });
    amqp.delete_topology(std::slice::from_ref(&topic), std::slice::from_ref(&group))
        .await
        .unwrap();
    let mut deliveries = amqp
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();

    let broker_args = [
        "--topic",
        topic.as_str(),
        "--broker",
        &amqp_url,
        "--broker-partitions",
        "1",
        "--json",
    ]
    .map(str::to_owned);
    let with = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain(broker_args.iter().cloned())
            .collect()
    };
    let run = |args: Vec<String>| {
        let store_args = store_args.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                replay(&store_args, &args)
            })
            .await
            .unwrap()
        }
    };
    let first = summary(&run(with(&["--from", "3", "--to", "7", "--rate", "50/s"])).await);
    assert_eq!(first["published"], 5, "{first}");
    assert_eq!(
        (first["from"].clone(), first["to"].clone()),
        (3.into(), 7.into())
    );
    assert_eq!(first["topic"], topic.as_str());
    let first_id = first["replay_id"].as_str().unwrap().to_owned();
    // A second run, of position 9: once it arrives, nothing of the first
    // is still on its way (one partition, in order).
    let second = summary(&run(with(&["--from", "9", "--to", "9"])).await);
    let second_id = second["replay_id"].as_str().unwrap().to_owned();
    assert_ne!(first_id, second_id);

    let mut received: Vec<Received> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.last().is_none_or(|r| r.position != 9) {
        let delivery = tokio::time::timeout_at(deadline, deliveries.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the republished events arrive within 30 s; got positions {:?}",
                    received.iter().map(|r| r.position).collect::<Vec<_>>()
                )
            })
            .expect("the subscription goes on")
            .expect("a delivery");
        let header = |name: &str| {
            delivery
                .headers()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (replay, replay_id) = (header("herald-replay"), header("herald-replay-id"));
        let event = match delivery.content.clone().expect("an envelope") {
            Payload::Event(event) => *event,
            Payload::ClaimCheck(c) => panic!("a small event travels inline: {c:?}"),
        };
        assert_eq!(delivery.topic, topic);
        received.push(Received {
            position: event.position.get(),
            event,
            replay,
            replay_id,
        });
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        received.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7, 9],
        "exactly the range, in order, then the second run"
    );
    for r in &received {
        assert_eq!(r.replay.as_deref(), Some("true"), "position {}", r.position);
        let expected_id = if r.position == 9 {
            &second_id
        } else {
            &first_id
        };
        assert_eq!(
            r.replay_id.as_ref(),
            Some(expected_id),
            "position {}",
            r.position
        );
        let original = &stored[r.position as usize - 1];
        assert_eq!(
            &r.event, original,
            "position {} is the stored event",
            r.position
        );
    }
    drop(deliveries);

    // Refused: a domain's topic, the in-process broker, an empty range, a
    // range past the log.
    for (args, says) in [
        (
            vec![
                "--from",
                "1",
                "--to",
                "2",
                "--topic",
                "herald.tickets",
                "--broker",
                "amqp://127.0.0.1:1/%2f",
            ],
            "domain's topic",
        ),
        (
            vec!["--from", "1", "--to", "2", "--topic", "herald.replay-x"],
            "needs a broker other processes reach",
        ),
        (
            vec!["--from", "5", "--to", "2", "--topic", "herald.replay-x"],
            "before --from",
        ),
        (
            vec![
                "--from",
                "50",
                "--to",
                "60",
                "--topic",
                topic.as_str(),
                "--broker",
                &amqp_url,
            ],
            "past the end of the log",
        ),
    ] {
        let output = replay(&store_args, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    amqp.delete_topology(std::slice::from_ref(&topic), std::slice::from_ref(&group))
        .await
        .unwrap();
    amqp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        herald_store::EmbeddedStore::open(herald_store::EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let args = vec![
        "--data-dir".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
    ];
    scenario(store, args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_postgres() {
    let db = herald_testkit::TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        herald_store::PostgresStore::open(herald_store::PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    scenario(store, vec!["--store".to_owned(), db.url().to_owned()]).await;
}
