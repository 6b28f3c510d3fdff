//! A plain AMQP consumer written from `docs/consumers.md` alone gets what
//! the page says: it declares `herald.tickets` as documented, binds its own
//! queue with the routing keys `0` to `N-1`, and receives every event, each
//! with the routing key of its stream's partition (FNV-1a of
//! `tenant/domain/id` modulo N), the documented properties, exactly the
//! `herald-*` headers the page lists for every event (plus the claim-check
//! header on an event too large to travel inline, whose body is empty and
//! which loads as documented), and a JSON body equal to the event as
//! `GET /v1/events?as_stored=true` shows it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use herald_testkit::TestVhost;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use support::{free_port, Herald};

/// Partitions: `HERALD_BROKER_PARTITIONS`' default, as the page says.
const N: u64 = 4;

fn consumers_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/consumers.md"))
        .expect("read docs/consumers.md")
}

/// The page's header table: header name → the "on" column.
fn documented_headers() -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for line in consumers_md().lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4 {
            if let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                if name.starts_with("herald-") || name == "content-type" {
                    headers.insert(name.to_owned(), cells[2].to_owned());
                }
            }
        }
    }
    headers
}

/// The partition of a stream as the page describes it.
fn partition(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % N
}

fn string_headers(table: Option<&FieldTable>) -> BTreeMap<String, String> {
    table
        .map(|t| {
            t.into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        AMQPValue::LongString(s) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => panic!("header {} is not a long string: {other:?}", name.as_str()),
                    };
                    (name.as_str().to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_page_lists_the_headers_and_content_types_herald_uses() {
    let headers = documented_headers();
    let on = |kind: &str| -> BTreeSet<&str> {
        headers
            .iter()
            .filter(|(_, o)| o.as_str() == kind)
            .map(|(h, _)| h.as_str())
            .collect()
    };
    assert_eq!(
        on("every event"),
        BTreeSet::from([
            "content-type",
            "herald-event-id",
            "herald-key",
            "herald-position",
            "herald-stream",
            "herald-tenant",
            "herald-type"
        ])
    );
    assert_eq!(on("claim checks"), BTreeSet::from(["herald-claim-check"]));
    assert_eq!(
        on("replays"),
        // src/cli/replay/publish.rs sets these.
        BTreeSet::from(["herald-replay", "herald-replay-id"])
    );
    assert_eq!(
        on("dead letters"),
        BTreeSet::from([
            herald_brokers::message::HEADER_ERROR,
            herald_brokers::message::HEADER_GROUP,
            herald_brokers::message::HEADER_ORIGINAL_TOPIC,
            "herald-original-partition"
        ])
    );
    let page = consumers_md();
    for content_type in [
        herald_events::Codec::BINCODE_CONTENT_TYPE,
        herald_events::Codec::JSON_CONTENT_TYPE,
    ] {
        assert!(page.contains(content_type), "{content_type}");
    }
    // The ingest page's worked example of the same partitioning.
    assert_eq!(partition("acme/tickets/T-1001"), 3);
    let ingest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ingest.md")).unwrap();
    assert!(ingest.contains("`acme/tickets/T-1001` → `3` with N = 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_its_own_gets_every_event_as_documented() {
    let vhost = TestVhost::create().await;
    let dir = tempfile::tempdir().unwrap();

    // The consumer first, as the page says it may: its own queue, bound to
    // every routing key of the domain's exchange.
    let connection = Connection::connect(vhost.url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            "herald.tickets".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the documented declaration");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for key in 0..N {
        channel
            .queue_bind(
                queue.name().clone(),
                "herald.tickets".into(),
                key.to_string().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "docs-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[
            ("HERALD_BROKER", vhost.url()),
            ("HERALD_BROKER_CODEC", "json"),
            ("HERALD_BROKER_MAX_MESSAGE_BYTES", "2048"),
        ],
    );
    herald.wait_healthy(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    // Twelve streams of one tenant (every partition gets some), and one
    // event too large to travel inline.
    let mut sent = 0;
    for i in 0..12 {
        let body = json!({"stream": format!("tickets/C-{i}"), "type": "tickets.note_appended", "version": 1, "payload": {"note": format!("note {i}")}});
        let resp = http
            .post(format!("{}/v1/events", herald.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        sent += 1;
    }
    let big = json!({"stream": "tickets/C-big", "type": "tickets.note_appended", "version": 1, "payload": {"note": "x".repeat(4096)}});
    let resp = http
        .post(format!("{}/v1/events", herald.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    sent += 1;

    let headers = documented_headers();
    let every: BTreeSet<String> = headers
        .iter()
        .filter(|(_, on)| on.as_str() == "every event")
        .map(|(h, _)| h.clone())
        .collect();
    let mut partitions_seen = BTreeSet::new();
    let mut claim_checks = 0;
    let mut positions = BTreeSet::new();
    while positions.len() < sent {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("every event arrives within 30 s")
            .expect("the consumer stays open")
            .expect("a delivery");
        let got = string_headers(delivery.properties.headers().as_ref());
        let names: BTreeSet<String> = got.keys().cloned().collect();
        let claim_check = got.get("herald-claim-check").map(String::as_str) == Some("1");
        let mut expected = every.clone();
        if claim_check {
            expected.insert("herald-claim-check".to_owned());
        }
        assert_eq!(names, expected, "the headers are the page's: {got:?}");

        let content_type = delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned());
        assert_eq!(
            content_type.as_deref(),
            Some("application/vnd.herald.envelope.v1+json")
        );
        assert_eq!(
            got["content-type"],
            "application/vnd.herald.envelope.v1+json"
        );
        assert_eq!(
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str()),
            Some(got["herald-event-id"].as_str())
        );
        assert_eq!(*delivery.properties.delivery_mode(), Some(2));
        let key = &got["herald-key"];
        assert_eq!(
            key,
            &format!("{}/{}", got["herald-tenant"], got["herald-stream"])
        );
        assert_eq!(
            delivery.routing_key.as_str(),
            partition(key).to_string(),
            "the routing key is the stream's partition"
        );
        partitions_seen.insert(delivery.routing_key.as_str().to_owned());

        // The event as the log shows it, loaded as the page says.
        let position = &got["herald-position"];
        let page: Value = http
            .get(format!(
                "{}/v1/events?from={position}&limit=1&as_stored=true",
                herald.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored = &page["events"][0];
        assert_eq!(stored["id"], got["herald-event-id"].as_str());
        assert_eq!(stored["type"], got["herald-type"].as_str());
        if claim_check {
            claim_checks += 1;
            assert!(delivery.data.is_empty(), "a claim check has no body");
            assert_eq!(got["herald-stream"], "tickets/C-big");
        } else {
            let body: Value = serde_json::from_slice(&delivery.data).expect("a JSON body");
            assert_eq!(&body, stored, "the body is the event as stored");
        }
        positions.insert(position.clone());
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(claim_checks, 1);
    assert_eq!(
        partitions_seen.len() as u64,
        N,
        "twelve streams reach every partition: {partitions_seen:?}"
    );
    let _ = connection.close(200, "done".into()).await;
    assert!(herald.terminate(Duration::from_secs(30)).success());
}
