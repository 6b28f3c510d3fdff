//! `herald serve` on Kafka makes its topics ready before it starts, against
//! librdkafka's mock cluster: when every topic fits it serves, and events
//! appended over HTTP reach their domain's topic spread over its four
//! partitions; a domain topic with fewer partitions than
//! `HERALD_BROKER_PARTITIONS` (a cluster's auto-created 1-partition topic)
//! stops the start with a message naming the topic, both counts and what
//! to change — before, the relay retried such a topic forever and no event
//! reached Kafka; a missing topic the cluster will not create stops it too,
//! and looking for topics creates none behind Herald's back.
//!
//! The mock has no CreateTopics, so creating a missing topic with the
//! configured partitions is shown only by the refusal of the mock's
//! answer here; on a real cluster `herald serve` creates it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use support::kafka::{self, Serve, PARTITIONS};

const PATIENCE: Duration = Duration::from_secs(30);

/// The topics a plain client sees (asked for all, which creates none).
fn topics(servers: &str) -> BTreeMap<String, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .expect("a consumer");
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .expect("metadata")
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

/// Reads `topic`'s partitions from the start until `count` records came
/// (or the patience ran out): the partition of each event id.
fn read_all(servers: &str, topic: &str, count: usize) -> BTreeMap<String, i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set(
            "group.id",
            format!("test-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = BTreeMap::new();
    while seen.len() < count && std::time::Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let id = message
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == herald_brokers::message::HEADER_EVENT_ID)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .expect("an event id header");
        seen.insert(id, message.partition());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn herald_serves_when_every_topic_fits_and_events_reach_every_partition() {
    let mock = kafka::cluster();
    let servers = mock.bootstrap_servers();
    let needed = kafka::needed(&servers);
    // A domain topic with more partitions than Herald uses is fine too.
    kafka::create_topics(&mock, &needed, |t| {
        if t == "herald.edges" {
            8
        } else {
            PARTITIONS as i32
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let herald = Serve::start(dir.path(), &servers, &[]);
    assert!(
        herald_testkit::eventually(PATIENCE, || async {
            support::probe::readyz(&herald.base).await.0 == 200
        })
        .await,
        "herald never got ready: {:?}",
        support::probe::readyz(&herald.base).await
    );

    let events: Vec<_> = (0..100)
        .map(|i| {
            json!({
                "stream": format!("tickets/T-{}", i % 20),
                "type": "tickets.note_appended",
                "version": 1,
                "payload": {"note": format!("note {i}")},
            })
        })
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", herald.base))
        .json(&json!({"events": events, "atomic": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{:?}",
        response.text().await
    );
    let answer: serde_json::Value = response.json().await.unwrap();
    let ids: BTreeSet<String> = answer["results"]
        .as_array()
        .expect("one result per event")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 100);

    let servers_for_read = servers.clone();
    let seen =
        tokio::task::spawn_blocking(move || read_all(&servers_for_read, "herald.tickets", 100))
            .await
            .unwrap();
    let arrived: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        arrived, ids,
        "every acknowledged event reached herald.tickets"
    );
    let partitions: BTreeSet<i32> = seen.values().copied().collect();
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "twenty streams spread over every partition: {partitions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_topic_with_fewer_partitions_stops_the_start_naming_it_and_both_counts() {
    let mock = kafka::cluster();
    let servers = mock.bootstrap_servers();
    let needed = kafka::needed(&servers);
    // What a cluster's auto-creation makes (num.partitions=1).
    kafka::create_topics(&mock, &needed, |t| {
        if t == "herald.tickets" {
            1
        } else {
            PARTITIONS as i32
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Serve::start(dir.path(), &servers, &[]);
    let status = herald
        .exited_within(PATIENCE)
        .expect("herald refuses to start");
    assert!(!status.success());
    let log = herald.log().join("\n");
    assert!(
        log.contains(
            "topic herald.tickets has 1 partition(s), fewer than the 4 Herald places events in"
        ),
        "{log}"
    );
    assert!(log.contains("HERALD_BROKER_PARTITIONS=1"), "{log}");
    assert!(
        !log.contains("herald.edges has"),
        "only the topic that does not fit is named: {log}"
    );
    assert!(
        !log.contains("Herald is serving"),
        "it refused before serving: {log}"
    );
    assert_eq!(
        topics(&servers)["herald.tickets"],
        1,
        "the topic is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_topic_the_cluster_will_not_create_stops_the_start() {
    let mock = kafka::cluster();
    let servers = mock.bootstrap_servers();
    let mut needed = kafka::needed(&servers);
    needed.placed.retain(|t| t.as_str() != "herald.tickets");
    kafka::create_topics(&mock, &needed, |_| PARTITIONS as i32);
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Serve::start(dir.path(), &servers, &[]);
    let status = herald
        .exited_within(PATIENCE)
        .expect("herald refuses to start");
    assert!(!status.success());
    let log = herald.log().join("\n");
    assert!(
        log.contains(
            "topic herald.tickets does not exist and could not be created (CreateTopics failed"
        ),
        "{log}"
    );
    assert!(log.contains("CreateTopics operation"), "{log}");
    assert!(
        !topics(&servers).contains_key("herald.tickets"),
        "looking for the topic made the cluster create it"
    );
}
