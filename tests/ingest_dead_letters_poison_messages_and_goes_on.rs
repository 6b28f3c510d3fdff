//! A poison message never blocks the ingest. `herald serve` on Postgres
//! consumes the ingest topic; messages Postgres cannot store (a `producer`
//! of `"p\u0000"`, which used to be retried forever, a payload key holding
//! U+0000, an idempotency key holding it, a time past the year 9999) come
//! first on a partition, valid ones after them on the same partition and on
//! another. Each poison message lands in `herald.dlq.herald-ingest` once,
//! its reason naming the field; every valid one is appended, in order; and
//! the ingest never retried. On librdkafka's mock Kafka cluster and on
//! RabbitMQ.

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald_brokers::{partition_for, Broker, ConsumerGroup, Topic, WireMessage};
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{free_port, Herald};

/// Generous: a new Kafka group forms after 3 s on the mock, and RabbitMQ
/// declares queues before anything flows.
const PATIENCE: Duration = Duration::from_secs(60);
const PARTITIONS: u32 = 2;
/// Tags this run's messages, since RabbitMQ's dead letters are shared.
const RUN: &str = "test-run";
const CASE: &str = "test-case";

fn suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

fn note(stream: &str, text: &str) -> Value {
    json!({"stream": stream, "type": "tickets.note_appended", "version": 1,
           "payload": {"note": text}})
}

/// The partition of the default tenant's stream `tickets/{id}`.
fn partition(id: &str) -> u32 {
    partition_for(&format!("default/tickets/{id}"), PARTITIONS)
}

/// The messages of one run: the poison ones first on `P`'s partition, then
/// valid ones on it and on another partition.
struct Plan {
    run: String,
    topic: Topic,
    same: String,
    other: String,
}

impl Plan {
    fn new(topic: Topic) -> Self {
        let same = "P-1".to_owned();
        let other = (0..)
            .map(|i| format!("Q-{i}"))
            .find(|id| partition(id) != partition(&same))
            .expect("a stream on another partition");
        Self {
            run: suffix(),
            topic,
            same,
            other,
        }
    }

    fn message(&self, case: &str, id: &str, body: Vec<u8>) -> WireMessage {
        let key = format!("default/tickets/{id}");
        WireMessage {
            topic: self.topic.clone(),
            partition: partition(id),
            key,
            headers: vec![
                (RUN.to_owned(), self.run.clone()),
                (CASE.to_owned(), case.to_owned()),
                // Each message its own event, whatever its body.
                (
                    "herald-message-id".to_owned(),
                    format!("{}-{case}", self.run),
                ),
            ],
            body,
        }
    }

    /// The poison cases, each with the words its dead letter's reason holds.
    fn poison(&self) -> Vec<(WireMessage, &'static [&'static str])> {
        let stream = format!("tickets/{}", self.same);
        let with = |key: &str, value: Value| {
            let mut body = note(&stream, "poison");
            body[key] = value;
            serde_json::to_vec(&body).unwrap()
        };
        vec![
            (
                self.message(
                    "nul-producer",
                    &self.same,
                    with("producer", json!("p\u{0}")),
                ),
                &["invalid-append: /producer holds the character U+0000"],
            ),
            (
                self.message(
                    "nul-key",
                    &self.same,
                    with("payload", json!({"note": "x", "a\u{0}": 1})),
                ),
                &["invalid-append: a key of /payload holds the character U+0000"],
            ),
            (
                self.message(
                    "nul-idempotency-key",
                    &self.same,
                    with("idempotency_key", json!("k\u{0}")),
                ),
                &["invalid-append: /idempotency_key holds the character U+0000"],
            ),
            (
                self.message(
                    "far-future",
                    &self.same,
                    with("occurred_at", json!("+10000-01-01T00:00:00Z")),
                ),
                &["invalid-append: occurred_at", "years 1 to 9999"],
            ),
        ]
    }

    /// Valid messages on the poison's partition and on the other.
    fn valid(&self) -> Vec<WireMessage> {
        (0..5)
            .flat_map(|i| {
                [&self.same, &self.other].map(|id| {
                    let text = format!("{id}#{i}");
                    let body = serde_json::to_vec(&note(&format!("tickets/{id}"), &text)).unwrap();
                    self.message(&text, id, body)
                })
            })
            .collect()
    }
}

/// The notes of `GET /v1/events`, by stream.
async fn notes(client: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let page: Value = client
        .get(format!("{base}/v1/events?from=0&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_owned(),
                e["payload"]["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// This run's dead letters: (case, reason).
async fn dead_letters(broker: &Arc<dyn Broker>, run: &str) -> Vec<(String, String)> {
    let group = ConsumerGroup::new(herald::ingest::GROUP).unwrap();
    broker
        .dead_letters(&group, 1000)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.message.header(RUN) == Some(run))
        .map(|d| (d.message.header(CASE).unwrap_or("?").to_owned(), d.error))
        .collect()
}

/// A counter of herald's `/metrics`, summed over its labels.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Publishes the plan's messages to `herald` (already consuming) and checks
/// what became of each.
async fn poison_never_blocks(herald: &Herald, broker: &Arc<dyn Broker>, plan: &Plan) {
    let client = reqwest::Client::new();
    let before = notes(&client, &herald.base).await.len();
    let poison = plan.poison();
    let mut messages: Vec<WireMessage> = poison.iter().map(|(m, _)| m.clone()).collect();
    messages.extend(plan.valid());
    broker.publish(messages).await.unwrap();

    let arrived = eventually(PATIENCE, || {
        let (client, base) = (&client, &herald.base);
        async move { notes(client, base).await.len() >= before + 10 }
    })
    .await;
    let stored = notes(&client, &herald.base).await;
    assert!(
        arrived,
        "valid messages after the poison were not appended: {stored:#?}"
    );
    for id in [&plan.same, &plan.other] {
        let stream = format!("tickets/{id}");
        let texts: Vec<&str> = stored
            .iter()
            .filter(|(s, n)| *s == stream && n.starts_with(id.as_str()))
            .map(|(_, n)| n.as_str())
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("{id}#{i}")).collect();
        assert_eq!(texts, want, "{stream}");
    }
    assert!(
        !stored.iter().any(|(_, n)| n == "poison"),
        "a poison message was stored: {stored:#?}"
    );

    let all_dead = eventually(PATIENCE, || async {
        dead_letters(broker, &plan.run).await.len() >= poison.len()
    })
    .await;
    let mut dead = dead_letters(broker, &plan.run).await;
    assert!(all_dead, "dead letters: {dead:#?}");
    dead.sort();
    let mut cases: Vec<String> = poison
        .iter()
        .map(|(m, _)| m.header(CASE).unwrap().to_owned())
        .collect();
    cases.sort();
    assert_eq!(
        dead.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        cases,
        "each poison message is dead-lettered exactly once: {dead:#?}"
    );
    for (message, words) in &poison {
        let case = message.header(CASE).unwrap();
        let reason = &dead.iter().find(|(c, _)| c == case).unwrap().1;
        for word in *words {
            assert!(reason.contains(word), "{case}: {reason:?} lacks {word:?}");
        }
    }
    assert_eq!(
        metric(&client, &herald.base, "herald_ingest_retries_total").await,
        0.0,
        "the ingest retried a message"
    );
    assert_eq!(
        metric(
            &client,
            &herald.base,
            "herald_ingest_dead_lettered_total{reason=\"invalid-append\"}"
        )
        .await,
        poison.len() as f64
    );
}

fn serve(dir: &std::path::Path, db: &TestDatabase, broker: &str, topic: &Topic) -> Herald {
    let listen = format!("127.0.0.1:{}", free_port());
    let partitions = PARTITIONS.to_string();
    Herald::start(
        dir,
        &["serve", "--listen", &listen],
        &[
            ("HERALD_STORE", db.url()),
            ("HERALD_BROKER", broker),
            ("HERALD_BROKER_PARTITIONS", partitions.as_str()),
            ("HERALD_INGEST_TOPIC", topic.as_str()),
            // No relay: the ingest is what is tested, and on RabbitMQ the
            // relay would leave the domains' exchanges on the shared server.
            ("HERALD_RELAY", "false"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka() {
    use herald_brokers::kafka::{KafkaBroker, KafkaConfig};
    use herald_brokers::WireSettings;

    let mock = support::kafka::cluster();
    let servers = mock.bootstrap_servers();
    // The mock has no CreateTopics: every topic herald serve checks at
    // start is made here, the test's own ingest topic too.
    let needed = support::kafka::needed(&servers);
    support::kafka::create_topics(&mock, &needed, |_| PARTITIONS as i32);
    let topic = Topic::named(format!("herald.ingest.p{}", suffix())).unwrap();
    mock.create_topic(topic.as_str(), PARTITIONS as i32, 1)
        .expect("the mock creates the ingest topic");
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut herald = serve(dir.path(), &db, &format!("kafka://{servers}"), &topic);
    herald.wait_healthy(PATIENCE).await;

    let wire = WireSettings {
        partitions: PARTITIONS,
        ..WireSettings::default()
    };
    let broker: Arc<dyn Broker> = Arc::new(
        KafkaBroker::connect(KafkaConfig::new(servers, wire))
            .await
            .expect("a client of the mock"),
    );
    // Kafka keeps what is published before the group joins: the ingest
    // starts from the beginning of the topic.
    poison_never_blocks(&herald, &broker, &Plan::new(topic)).await;

    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq() {
    use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
    use herald_brokers::WireSettings;
    use herald_testkit::amqp_url;

    let topic = Topic::named(format!("herald.ingest.p{}", suffix())).unwrap();
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let url = amqp_url();
    let mut herald = serve(dir.path(), &db, &url, &topic);
    herald.wait_healthy(PATIENCE).await;
    let wire = WireSettings {
        partitions: PARTITIONS,
        ..WireSettings::default()
    };
    let amqp = AmqpBroker::connect(AmqpConfig::new(url.clone(), wire))
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ at {url} is not reachable ({e}); start it with `rabbitmq-server -detached`")
        });
    let broker: Arc<dyn Broker> = Arc::new(amqp.clone());

    // RabbitMQ drops what is published before the ingest's queues exist:
    // publish a first message (one event, however often) until it shows.
    let plan = Plan::new(topic.clone());
    let client = reqwest::Client::new();
    for id in [&plan.same, &plan.other] {
        let ready = plan.message(
            &format!("ready-{id}"),
            id,
            serde_json::to_vec(&note(&format!("tickets/{id}"), "ready")).unwrap(),
        );
        let consuming = eventually(PATIENCE, || {
            let (broker, client, base, ready) = (&broker, &client, &herald.base, ready.clone());
            async move {
                broker.publish(vec![ready]).await.unwrap();
                notes(client, base)
                    .await
                    .iter()
                    .any(|(s, n)| *s == format!("tickets/{id}") && n == "ready")
            }
        })
        .await;
        assert!(consuming, "herald serve never consumed the ingest topic");
    }
    poison_never_blocks(&herald, &broker, &plan).await;

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
