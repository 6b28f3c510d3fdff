//! The broker ingest: raw messages published onto the ingest topic are
//! checked as `POST /v1/events` checks an event. Exactly the valid ones are
//! appended, under the tenant of their `herald-tenant` header, each stream in
//! the order published; each invalid one lands in the group's dead letters
//! with a reason naming the problem; a message published twice (same
//! idempotency key, or same `herald-message-id`) is appended once. Run on
//! the in-process broker with the embedded store and on RabbitMQ with
//! Postgres; and a message that arrives while Postgres refuses connections
//! is appended once it is back, neither lost nor dead-lettered. Last,
//! `herald serve` on RabbitMQ runs the ingest and stops cleanly.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald::api::item::idempotent_id;
use herald::ingest::{
    body_event_id, message_event_id, Ingest, IngestConfig, IngestHandle, RETRIES_TOTAL,
};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::{partition_for, Broker, ConsumerGroup, Topic, WireMessage};
use herald_events::{EventEnvelope, EventRegistry, Position, StreamId, StreamVersion, TenantId};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, PostgresConfig, PostgresStore};
use herald_testkit::{database_url, eventually, TestDatabase};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Generous: RabbitMQ declares queues and consumers before anything flows.
const PATIENCE: Duration = Duration::from_secs(30);
/// Bodies larger than this are refused.
const MAX_BODY: usize = 4096;
/// Names this test's messages in the dead letters.
const CASE: &str = "test-case";

fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("a metrics recorder")
    })
}

/// The value of a counter line starting with `prefix`, 0 when absent.
fn counter(prefix: &str) -> u64 {
    metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// A topic and group of this test alone.
fn config() -> IngestConfig {
    let suffix = suffix();
    IngestConfig {
        topic: Topic::named(format!("herald.ingest.t{suffix}")).unwrap(),
        group: ConsumerGroup::new(format!("herald-ingest-t{suffix}")).unwrap(),
        max_body_bytes: MAX_BODY,
        max_backoff: Duration::from_millis(200),
        ..IngestConfig::default()
    }
}

fn note(stream: &str, text: &str) -> Value {
    json!({"stream": stream, "type": "tickets.note_appended", "version": 1, "payload": {"note": text}})
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// Builds raw messages for the ingest topic, as any producer would.
struct Producer {
    topic: Topic,
    partitions: u32,
}

impl Producer {
    /// A message of `case` for `tenant` (no header when `None`); `stream`
    /// picks the partition, so a stream's messages stay in order.
    fn message(
        &self,
        case: &str,
        tenant: Option<&str>,
        stream: &str,
        extra: &[(&str, &str)],
        body: Vec<u8>,
    ) -> WireMessage {
        let key = format!("{}/{stream}", tenant.unwrap_or(TenantId::DEFAULT));
        let mut headers = vec![(CASE.to_owned(), case.to_owned())];
        if let Some(tenant) = tenant {
            headers.push(("herald-tenant".to_owned(), tenant.to_owned()));
        }
        headers.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        WireMessage {
            topic: self.topic.clone(),
            partition: partition_for(&key, self.partitions),
            key,
            headers,
            body,
        }
    }
}

async fn start(
    store: &Arc<dyn EventStore>,
    broker: &Arc<dyn Broker>,
    config: &IngestConfig,
) -> (watch::Sender<bool>, IngestHandle) {
    let (stop, stop_rx) = watch::channel(false);
    let mut ingest = Ingest::new(
        Arc::clone(store),
        Arc::clone(broker),
        EventRegistry::builtin().unwrap(),
        config.clone(),
    )
    .spawn(stop_rx);
    let joined = tokio::time::timeout(PATIENCE, ingest.subscribed()).await;
    assert!(
        matches!(joined, Ok(true)),
        "the ingest did not join its group"
    );
    (stop, ingest)
}

async fn stop(stop: watch::Sender<bool>, ingest: IngestHandle) {
    stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, ingest.join())
        .await
        .expect("the ingest stops after its batch");
}

async fn stream_notes(store: &Arc<dyn EventStore>, tenant: &str, stream: &str) -> Vec<String> {
    store
        .read_stream(
            &TenantId::new(tenant).unwrap(),
            &stream.parse::<StreamId>().unwrap(),
            StreamVersion(1),
            100,
        )
        .await
        .unwrap()
        .iter()
        .map(|e| e.payload["note"].as_str().unwrap().to_owned())
        .collect()
}

async fn stored(store: &Arc<dyn EventStore>) -> Vec<EventEnvelope> {
    store.read_all(Position(0), 1000).await.unwrap()
}

/// Dead-letter reasons by test case.
async fn dead_letters(broker: &Arc<dyn Broker>, group: &ConsumerGroup) -> BTreeMap<String, String> {
    broker
        .dead_letters(group, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let case = d.message.header(CASE).unwrap_or("?").to_owned();
            (case, d.error)
        })
        .collect()
}

async fn valid_and_invalid_messages(
    store: Arc<dyn EventStore>,
    broker: Arc<dyn Broker>,
    config: &IngestConfig,
) {
    let (stop_ingest, ingest) = start(&store, &broker, config).await;
    let p = Producer {
        topic: config.topic.clone(),
        partitions: broker.wire().partitions,
    };
    let acme = Some("acme");
    let m = |case: &str, tenant: Option<&str>, stream: &str, body: Vec<u8>| {
        p.message(case, tenant, stream, &[], body)
    };
    let first_note = bytes(&note("tickets/I-1", "a1"));
    let mut keyed = note("tickets/I-1", "a3");
    keyed["idempotency_key"] = json!("order-1");
    let mut stale = note("tickets/I-1", "stale");
    stale["expected_version"] = json!(0);
    let schema_violation = json!({
        "stream": "tickets/I-3", "type": "tickets.note_appended", "version": 1,
        "payload": {"author": "noc"}
    });
    let unknown_type = json!({
        "stream": "tickets/I-3", "type": "tickets.nope", "version": 1, "payload": {}
    });
    let too_large = note("tickets/I-1", &"x".repeat(MAX_BODY));
    let msg_1 = [("herald-message-id", "msg-1")];
    let by_message_id = bytes(&note("tickets/I-4", "m1"));
    let messages = vec![
        m("a1", acme, "tickets/I-1", first_note.clone()),
        m(
            "g1",
            Some("globex"),
            "tickets/I-1",
            bytes(&note("tickets/I-1", "g1")),
        ),
        m("a2", acme, "tickets/I-1", bytes(&note("tickets/I-1", "a2"))),
        // Valid for its schema but refused by the store; appended with its
        // neighbours, only it is refused.
        m(
            "invalid-append",
            acme,
            "tickets/I-1",
            bytes(&note("tickets/I-1", "nul \u{0}")),
        ),
        m(
            "invalid-json",
            acme,
            "tickets/I-2",
            br#"{"stream": "tickets/I-2", "#.to_vec(),
        ),
        m(
            "schema-violation",
            acme,
            "tickets/I-3",
            bytes(&schema_violation),
        ),
        m(
            "unknown-event-type",
            acme,
            "tickets/I-3",
            bytes(&unknown_type),
        ),
        m(
            "invalid-tenant",
            Some("Not A Tenant!"),
            "tickets/I-1",
            bytes(&note("tickets/I-1", "x")),
        ),
        m("d1", None, "tickets/I-1", bytes(&note("tickets/I-1", "d1"))),
        m("a3", acme, "tickets/I-1", bytes(&keyed)),
        m("a3-again", acme, "tickets/I-1", bytes(&keyed)),
        m("wrong-expected-version", acme, "tickets/I-1", bytes(&stale)),
        m("body-too-large", acme, "tickets/I-1", bytes(&too_large)),
        p.message("m1", acme, "tickets/I-4", &msg_1, by_message_id.clone()),
        p.message("m1-again", acme, "tickets/I-4", &msg_1, by_message_id),
    ];
    broker.publish(messages).await.unwrap();
    // After the repeats in their streams: once these are in, the repeats
    // before them were handled.
    broker
        .publish(vec![
            p.message(
                "a4",
                acme,
                "tickets/I-1",
                &[],
                bytes(&note("tickets/I-1", "a4")),
            ),
            p.message(
                "m2",
                acme,
                "tickets/I-4",
                &[],
                bytes(&note("tickets/I-4", "m2")),
            ),
        ])
        .await
        .unwrap();

    let all_in = eventually(PATIENCE, || {
        let store = Arc::clone(&store);
        async move { stored(&store).await.len() >= 8 }
    })
    .await;
    assert!(all_in, "only {} events arrived", stored(&store).await.len());
    let all_dead = eventually(PATIENCE, || {
        let broker = Arc::clone(&broker);
        let group = config.group.clone();
        async move { dead_letters(&broker, &group).await.len() >= 7 }
    })
    .await;
    let dead = dead_letters(&broker, &config.group).await;
    assert!(all_dead, "dead letters: {dead:#?}");

    // Exactly the valid ones, under their tenants, in order per stream.
    assert_eq!(
        stream_notes(&store, "acme", "tickets/I-1").await,
        ["a1", "a2", "a3", "a4"]
    );
    assert_eq!(stream_notes(&store, "globex", "tickets/I-1").await, ["g1"]);
    assert_eq!(stream_notes(&store, "default", "tickets/I-1").await, ["d1"]);
    assert_eq!(
        stream_notes(&store, "acme", "tickets/I-4").await,
        ["m1", "m2"]
    );
    let events = stored(&store).await;
    assert_eq!(events.len(), 8, "{events:#?}");

    // The ids follow the documented rule.
    let acme_tenant = TenantId::new("acme").unwrap();
    let id_of = |text: &str| {
        events
            .iter()
            .find(|e| e.payload["note"] == text)
            .unwrap_or_else(|| panic!("{text} is stored"))
            .id
    };
    assert_eq!(id_of("a3"), idempotent_id(&acme_tenant, "order-1"));
    assert_eq!(id_of("m1"), message_event_id(&acme_tenant, "msg-1"));
    assert_eq!(id_of("a1"), body_event_id(&acme_tenant, &first_note));

    // Each invalid one is dead-lettered once, with a reason naming the problem.
    let expected: [(&str, &[&str]); 7] = [
        ("invalid-json", &["invalid-json", "line 1"]),
        ("schema-violation", &["schema-violation", "note"]),
        (
            "unknown-event-type",
            &["unknown-event-type", "tickets.nope"],
        ),
        ("invalid-tenant", &["invalid-tenant", "Not A Tenant!"]),
        (
            "wrong-expected-version",
            &["wrong-expected-version", "tickets/I-1"],
        ),
        ("body-too-large", &["body-too-large", &MAX_BODY.to_string()]),
        ("invalid-append", &["invalid-append", "U+0000"]),
    ];
    assert_eq!(
        dead.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut cases: Vec<&str> = expected.iter().map(|(c, _)| *c).collect();
            cases.sort();
            cases
        },
        "{dead:#?}"
    );
    for (case, words) in expected {
        let reason = &dead[case];
        for word in words {
            assert!(reason.contains(word), "{case}: {reason:?} lacks {word:?}");
        }
    }
    assert_eq!(
        broker.dead_letters(&config.group, 100).await.unwrap().len(),
        7
    );

    stop(stop_ingest, ingest).await;
    assert!(counter("herald_ingest_appended_total") >= 8);
    assert!(counter("herald_ingest_dead_lettered_total{reason=\"schema-violation\"}") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_broker_and_embedded_store() {
    metrics();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    valid_and_invalid_messages(Arc::clone(&store), broker, &config()).await;
    store.close().await;
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_and_postgres() {
    use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
    use herald_brokers::WireSettings;
    use herald_testkit::amqp_url;

    metrics();
    let db = TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    let amqp = AmqpBroker::connect(AmqpConfig::new(amqp_url(), WireSettings::default()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {} is not reachable ({e}); start it with `rabbitmq-server -detached`",
                amqp_url()
            )
        });
    let config = config();
    let broker: Arc<dyn Broker> = Arc::new(amqp.clone());
    valid_and_invalid_messages(Arc::clone(&store), broker, &config).await;
    amqp.delete_topology(
        std::slice::from_ref(&config.topic),
        std::slice::from_ref(&config.group),
    )
    .await
    .unwrap();
    amqp.close().await;
    store.close().await;
}

/// Refuses or allows new connections to the test's database, ending those open.
async fn set_connections(db: &TestDatabase, allowed: bool) {
    let (admin, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}",
            db.name()
        ))
        .await
        .unwrap();
    if !allowed {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&db.name()],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_waits_while_the_store_is_down() {
    metrics();
    let db = TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    let config = config();
    let (stop_ingest, ingest) = start(&store, &broker, &config).await;
    let p = Producer {
        topic: config.topic.clone(),
        partitions: broker.wire().partitions,
    };

    set_connections(&db, false).await;
    let retries_before = counter(RETRIES_TOTAL);
    broker
        .publish(vec![p.message(
            "outage",
            Some("acme"),
            "tickets/O-1",
            &[],
            bytes(&note("tickets/O-1", "during the outage")),
        )])
        .await
        .unwrap();
    let retried = eventually(PATIENCE, || async {
        counter(RETRIES_TOTAL) > retries_before
    })
    .await;
    assert!(
        retried,
        "the ingest never tried the store while it was down"
    );
    assert!(dead_letters(&broker, &config.group).await.is_empty());

    set_connections(&db, true).await;
    let appended = eventually(PATIENCE, || {
        let store = Arc::clone(&store);
        async move {
            store
                .read_all(Position(0), 10)
                .await
                .is_ok_and(|events| events.len() == 1)
        }
    })
    .await;
    assert!(
        appended,
        "the message was not appended after the store came back"
    );
    assert_eq!(
        stream_notes(&store, "acme", "tickets/O-1").await,
        ["during the outage"]
    );
    assert!(dead_letters(&broker, &config.group).await.is_empty());
    stop(stop_ingest, ingest).await;
    store.close().await;
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_serve_ingests_from_rabbitmq_and_stops_cleanly() {
    use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
    use herald_brokers::WireSettings;
    use herald_testkit::amqp_url;
    use support::{free_port, Herald};

    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::named(format!("herald.ingest.s{}", suffix())).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = amqp_url();
    // No relay: it would leave the domain's exchange on the shared server.
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[
            ("HERALD_BROKER", url.as_str()),
            ("HERALD_INGEST_TOPIC", topic.as_str()),
            ("HERALD_RELAY", "false"),
        ],
    );
    herald.wait_healthy(PATIENCE).await;
    let amqp = AmqpBroker::connect(AmqpConfig::new(url.clone(), WireSettings::default()))
        .await
        .unwrap();
    let message = Producer {
        topic: topic.clone(),
        partitions: WireSettings::default().partitions,
    }
    // No tenant header: the default tenant, the one anonymous reads see.
    .message(
        "serve",
        None,
        "tickets/S-1",
        &[("herald-message-id", "s-1")],
        bytes(&note("tickets/S-1", "through herald serve")),
    );
    // RabbitMQ drops what is published before the ingest's queues exist, so
    // publish until the event shows; the message id makes the copies one.
    let client = reqwest::Client::new();
    let log = format!("{}/v1/events?from=0", herald.base);
    let appended = eventually(PATIENCE, || {
        let (amqp, client, log, message) = (&amqp, &client, &log, message.clone());
        async move {
            amqp.publish(vec![message]).await.unwrap();
            let page: Value = client.get(log).send().await.unwrap().json().await.unwrap();
            !page["events"].as_array().unwrap().is_empty()
        }
    })
    .await;
    assert!(appended, "herald serve never appended the published event");
    let page: Value = client.get(&log).send().await.unwrap().json().await.unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["tenant"], "default");
    assert_eq!(
        events[0]["id"],
        message_event_id(&TenantId::default_tenant(), "s-1").to_string()
    );

    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
    amqp.delete_topology(
        std::slice::from_ref(&topic),
        &[ConsumerGroup::new(herald::ingest::GROUP).unwrap()],
    )
    .await
    .unwrap();
    amqp.close().await;
}
