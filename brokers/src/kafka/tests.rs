//! The Kafka backend's own guarantees, against librdkafka's mock cluster:
//! what the conformance suite cannot see from outside (the offsets a group
//! committed, late settlements after a revocation, the dead-letter reader's
//! order and limit) and the error paths. Groups use the KIP-848 consumer
//! protocol, which assigns a group's first member at once on the mock.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use herald_events::{
    ChainHash, Domain, EventEnvelope, EventId, EventType, Position, SchemaVersion, StreamId,
    StreamVersion, TenantId,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::{KafkaBroker, KafkaConfig};
use crate::message::{
    partition_for, partition_key, ConsumerGroup, Topic, WireSettings, HEADER_ERROR,
};
use crate::{Broker, BrokerError, Delivery, Subscription};

const PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    mock: MockCluster<'static, DefaultProducerContext>,
    servers: String,
}

impl Cluster {
    fn new() -> Self {
        let mock = MockCluster::new(1).expect("a mock cluster");
        let servers = mock.bootstrap_servers();
        Self { mock, servers }
    }

    /// A domain of its own, and its topic created with `partitions`.
    fn topic(&self, partitions: u32) -> (Domain, Topic) {
        let domain = Domain::new(format!(
            "k{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        ))
        .expect("a domain name");
        let topic = Topic::for_domain(&domain);
        self.mock
            .create_topic(topic.as_str(), partitions as i32, 1)
            .expect("the mock creates the topic");
        (domain, topic)
    }

    fn config(&self, partitions: u32) -> KafkaConfig {
        let wire = WireSettings {
            partitions,
            ..WireSettings::default()
        };
        let mut config = KafkaConfig::new(self.servers.clone(), wire);
        config
            .consumer_properties
            .insert("group.protocol".into(), "consumer".into());
        config.commit_interval = Duration::from_millis(20);
        config
    }

    async fn broker(&self, partitions: u32) -> KafkaBroker {
        KafkaBroker::connect(self.config(partitions))
            .await
            .expect("a client of the mock")
    }

    /// The offsets `group` committed on `topic`'s partitions (`None`: none).
    async fn committed(
        &self,
        group: &ConsumerGroup,
        topic: &Topic,
        partitions: u32,
    ) -> Vec<Option<i64>> {
        let (servers, group, topic) = (self.servers.clone(), group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            // A consumer that never subscribes does not join the group.
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", group.as_str())
                .create()
                .expect("a consumer");
            let mut list = TopicPartitionList::new();
            list.add_partition_range(topic.as_str(), 0, partitions as i32 - 1);
            let list = consumer
                .committed_offsets(list, Duration::from_secs(5))
                .expect("committed offsets");
            (0..partitions as i32)
                .map(
                    |p| match list.find_partition(topic.as_str(), p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    },
                )
                .collect()
        })
        .await
        .expect("the lookup ran")
    }

    /// Waits until `group` committed `want`, polling `sub` meanwhile (a
    /// member commits from its polling task) and expecting no delivery.
    async fn committed_becomes(
        &self,
        group: &ConsumerGroup,
        topic: &Topic,
        want: &[Option<i64>],
        sub: &mut Subscription,
    ) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.committed(group, topic, want.len() as u32).await == want {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            assert!(next_within(sub, Duration::from_millis(30)).await.is_none());
        }
    }
}

fn group(label: &str) -> ConsumerGroup {
    ConsumerGroup::new(format!(
        "{label}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ))
    .expect("a group name")
}

/// `count` events over `streams` streams of `domain`, in position order.
fn events(domain: &Domain, streams: usize, count: usize) -> Vec<EventEnvelope> {
    let now = herald_events::envelope::to_stored_precision(chrono::Utc::now());
    let mut versions = vec![0u64; streams];
    (0..count)
        .map(|i| {
            let s = i % streams;
            versions[s] += 1;
            let id = EventId::new_v7();
            EventEnvelope {
                id,
                tenant: TenantId::default_tenant(),
                stream: StreamId::new(domain.clone(), format!("s{s}")).expect("a stream id"),
                stream_version: StreamVersion(versions[s]),
                position: Position(i as u64 + 1),
                event_type: EventType::new(domain, "thing_happened").expect("an event type"),
                version: SchemaVersion::V1,
                occurred_at: now,
                recorded_at: now,
                correlation_id: id.as_uuid(),
                causation_id: id.as_uuid(),
                producer: "kafka-tests".into(),
                payload: serde_json::json!({"i": i}),
                hash: ChainHash::GENESIS,
            }
        })
        .collect()
}

fn partition_of(event: &EventEnvelope, partitions: u32) -> u32 {
    partition_for(&partition_key(&event.tenant, &event.stream), partitions)
}

async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
        Ok(None) | Err(_) => None,
    }
}

async fn next(sub: &mut Subscription) -> Delivery {
    next_within(sub, PATIENCE)
        .await
        .expect("a delivery in time")
}

fn id_of(d: &Delivery) -> EventId {
    d.content.as_ref().expect("a readable delivery").event_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_stop_at_the_oldest_unacknowledged_delivery() {
    let cluster = Cluster::new();
    let (domain, topic) = cluster.topic(1);
    let broker = cluster.broker(1).await;
    let group = group("commits");
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    broker.publish_batch(&events(&domain, 1, 10)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(next(&mut sub).await);
    }
    let fourth = held.remove(3);
    for d in held {
        d.ack().await.unwrap();
    }
    assert!(
        cluster
            .committed_becomes(&group, &topic, &[Some(3)], &mut sub)
            .await,
        "the acknowledged offsets below the open one are committed"
    );
    // Many commit intervals later, still nothing past the open delivery.
    for _ in 0..10 {
        assert!(next_within(&mut sub, Duration::from_millis(30))
            .await
            .is_none());
    }
    assert_eq!(cluster.committed(&group, &topic, 1).await, [Some(3)]);
    fourth.ack().await.unwrap();
    assert!(
        cluster
            .committed_becomes(&group, &topic, &[Some(10)], &mut sub)
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_acks_of_revoked_partitions_are_ignored() {
    const PARTITIONS: u32 = 4;
    let cluster = Cluster::new();
    let (domain, topic) = cluster.topic(PARTITIONS);
    let broker = cluster.broker(PARTITIONS).await;
    let group = group("revoked");
    let published = events(&domain, 8, 40);
    let mut per_partition: HashMap<u32, i64> = HashMap::new();
    for e in &published {
        *per_partition
            .entry(partition_of(e, PARTITIONS))
            .or_default() += 1;
    }

    let mut a = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    broker.publish_batch(&published).await.unwrap();
    let mut a_held = Vec::new();
    for _ in 0..published.len() {
        a_held.push(next(&mut a).await);
    }

    // B joins; A keeps polling so its revocation runs (it is handed nothing new).
    let mut b = cluster
        .broker(PARTITIONS)
        .await
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    // A keeps its remaining partitions without being handed them again.
    let a_poller = tokio::spawn(async move { while a.next().await.is_some() {} });
    let mut b_held = vec![next(&mut b).await];
    // B's partitions are whole once nothing more comes for a while.
    while let Some(d) = next_within(&mut b, Duration::from_secs(1)).await {
        b_held.push(d);
    }
    let b_partitions: BTreeSet<u32> = b_held.iter().map(|d| d.partition).collect();
    assert!(
        b_partitions.len() < PARTITIONS as usize,
        "A kept some partitions"
    );
    for p in &b_partitions {
        let got = b_held.iter().filter(|d| d.partition == *p).count() as i64;
        assert_eq!(got, per_partition[p], "B gets partition {p} from its start");
    }
    let b_ids: BTreeSet<EventId> = b_held.iter().map(id_of).collect();
    let a_late: BTreeSet<EventId> = a_held
        .iter()
        .filter(|d| b_partitions.contains(&d.partition))
        .map(id_of)
        .collect();
    assert!(
        a_late.is_subset(&b_ids),
        "B got again everything A held of its partitions"
    );

    // A acknowledges everything it held: only its own partitions move.
    for d in a_held {
        d.ack().await.unwrap();
    }
    let want_a: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| (!b_partitions.contains(&p)).then(|| per_partition[&p]))
        .collect();
    assert!(
        cluster
            .committed_becomes(&group, &topic, &want_a, &mut b)
            .await,
        "late acknowledgements committed nothing of B's partitions: {:?}",
        cluster.committed(&group, &topic, PARTITIONS).await
    );
    for d in b_held {
        d.ack().await.unwrap();
    }
    let want_all: Vec<Option<i64>> = (0..PARTITIONS).map(|p| Some(per_partition[&p])).collect();
    assert!(
        cluster
            .committed_becomes(&group, &topic, &want_all, &mut b)
            .await
    );
    a_poller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_come_back_oldest_first_with_their_originals() {
    const PARTITIONS: u32 = 4;
    let cluster = Cluster::new();
    let (domain, topic) = cluster.topic(PARTITIONS);
    let broker = cluster.broker(PARTITIONS).await;
    let group = group("dlq");
    assert!(
        broker.dead_letters(&group, 10).await.unwrap().is_empty(),
        "a group that rejected nothing has no dead letters"
    );
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let published = events(&domain, 6, 6);
    broker.publish_batch(&published).await.unwrap();
    let mut rejected = Vec::new();
    for i in 0..published.len() {
        let d = next(&mut sub).await;
        rejected.push((id_of(&d), d.partition));
        d.nack(format!("reason {i}")).await.unwrap();
    }

    let dead = broker.dead_letters(&group, 10).await.unwrap();
    assert_eq!(dead.len(), published.len());
    for (i, (letter, (id, partition))) in dead.iter().zip(&rejected).enumerate() {
        assert_eq!(letter.error, format!("reason {i}"), "oldest first");
        assert_eq!(letter.topic, topic);
        assert_eq!(letter.content.as_ref().unwrap().event_id(), *id);
        assert_eq!(letter.message.topic, topic);
        assert_eq!(letter.message.partition, *partition);
        assert_eq!(letter.message.header(HEADER_ERROR), None);
    }
    let first_two: Vec<String> = broker
        .dead_letters(&group, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.error)
        .collect();
    assert_eq!(first_two, ["reason 0", "reason 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_to_a_partition_the_topic_lacks_fails() {
    let cluster = Cluster::new();
    let (domain, _topic) = cluster.topic(4);
    let broker = cluster.broker(4).await;
    let mut message = crate::message::encode(&events(&domain, 1, 1)[0], broker.wire()).unwrap();
    message.partition = 9;
    let started = Instant::now();
    let result = broker.publish(vec![message]).await;
    assert!(result.is_err(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_tells_whether_the_cluster_answers() {
    let cluster = Cluster::new();
    cluster.broker(4).await.check().await.unwrap();

    // Nothing listens on port 1 of the loopback.
    let mut config = KafkaConfig::new("127.0.0.1:1", WireSettings::default());
    config.request_timeout = Duration::from_millis(500);
    let unreachable = KafkaBroker::connect(config).await.unwrap();
    match unreachable.check().await {
        Err(BrokerError::Unavailable { .. }) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_ends_subscriptions_and_refuses_calls() {
    let cluster = Cluster::new();
    let (domain, topic) = cluster.topic(4);
    let broker = cluster.broker(4).await;
    let group = group("closing");
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    broker.publish_batch(&events(&domain, 1, 1)).await.unwrap();
    let held = next(&mut sub).await;
    broker.close().await;
    assert!(tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("the subscription ends")
        .is_none());
    assert!(matches!(
        broker.publish_batch(&events(&domain, 1, 1)).await,
        Err(BrokerError::Closed)
    ));
    assert!(matches!(
        broker.subscribe(&group, &[topic]).await,
        Err(BrokerError::Closed)
    ));
    assert!(matches!(broker.check().await, Err(BrokerError::Closed)));
    assert!(matches!(
        held.nack("too late").await,
        Err(BrokerError::Closed)
    ));
}

/// A broker that manages its topics, as `herald serve` runs it.
async fn managing(cluster: &Cluster, partitions: u32) -> KafkaBroker {
    let mut config = cluster.config(partitions);
    config.manage_topics = true;
    config.request_timeout = Duration::from_secs(5);
    KafkaBroker::connect(config)
        .await
        .expect("a client of the mock")
}

/// The topics a plain client sees, looked up without creating any.
async fn topic_names(cluster: &Cluster) -> BTreeSet<String> {
    let servers = cluster.servers.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("a consumer");
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .expect("metadata")
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect()
    })
    .await
    .expect("the lookup ran")
}

fn problems(result: Result<(), BrokerError>) -> Vec<crate::TopicProblem> {
    match result {
        Err(BrokerError::Topics { problems, .. }) => problems,
        other => panic!("expected topic problems, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_with_fewer_partitions_than_placed_are_refused_by_name_and_counts() {
    let cluster = Cluster::new();
    let (domain, wide) = cluster.topic(4);
    let (_, narrow) = cluster.topic(1);
    let (_, wider) = cluster.topic(8);
    let broker = managing(&cluster, 4).await;

    broker
        .ensure_topics(
            &[wide.clone(), wider.clone()],
            std::slice::from_ref(&narrow),
        )
        .await
        .expect("enough partitions, and any count for a keyed topic");
    let found = problems(
        broker
            .ensure_topics(&[wide.clone(), narrow.clone()], &[])
            .await,
    );
    assert_eq!(
        found,
        [crate::TopicProblem::TooFewPartitions {
            topic: narrow.as_str().to_owned(),
            partitions: 1,
            wanted: 4,
        }]
    );
    let text = BrokerError::Topics {
        backend: "kafka",
        problems: found,
    }
    .to_string();
    assert!(
        text.contains(narrow.as_str()) && text.contains("1 partition") && text.contains("the 4"),
        "{text}"
    );

    // Publishing there is refused before any record is sent.
    let mut message = crate::message::encode(&events(&domain, 1, 1)[0], broker.wire()).unwrap();
    message.topic = narrow.clone();
    message.partition = 0;
    let started = Instant::now();
    let refused = problems(broker.publish(vec![message]).await);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].topic(), narrow.as_str());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_topic_the_cluster_cannot_create_is_refused_and_looking_creates_nothing() {
    let cluster = Cluster::new();
    let (_, present) = cluster.topic(4);
    let absent = Topic::named(format!(
        "herald.absent{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ))
    .unwrap();
    let broker = managing(&cluster, 4).await;

    // The mock has no CreateTopics: the attempt fails, and says why.
    let found = problems(
        broker
            .ensure_topics(&[present.clone(), absent.clone()], &[])
            .await,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    match &found[0] {
        crate::TopicProblem::Missing { topic, reason } => {
            assert_eq!(topic, absent.as_str());
            assert!(reason.starts_with("CreateTopics failed"), "{reason}");
        }
        other => panic!("expected a missing topic, got {other:?}"),
    }
    let names = topic_names(&cluster).await;
    assert!(names.contains(present.as_str()));
    assert!(
        !names.contains(absent.as_str()),
        "looking up topics made the cluster create one: {names:?}"
    );
}
