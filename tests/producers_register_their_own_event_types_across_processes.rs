//! A producer brings its own event type, as a user runs Herald: two
//! `herald serve` on one Postgres store and one RabbitMQ, the ingest on.
//! `orders.order_placed` v1 is registered through one process; events of
//! it are published over HTTP through both and over the broker ingest, the
//! relay carries them to `herald.orders`, a websocket subscriber of
//! `orders.*` gets them, a search with a payload
//! filter finds them. An incompatible v2 is refused with the path of what
//! breaks; a compatible v2 and a v3 with an upcaster are accepted, and the
//! v1 events read as v3 (as stored on request). A deprecated version is
//! refused for new events. The other process sees every step within a
//! second, without being asked to look; server-sent events from it carry
//! the type too. Afterwards `herald audit verify` finds the chain intact,
//! `herald audit export --domain registry` carries every registration, `herald replay state registry schemas` shows the
//! registry at each registration's instant, and a restarted process
//! rebuilds the registry from the log.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, Payload, Topic, WireMessage, WireSettings};
use herald_events::Domain;
use herald_testkit::{eventually, TestDatabase, TestVhost};
use serde_json::{json, Value};
use support::{herald_command, start_serves, Herald, WsClient};

const PATIENCE: Duration = Duration::from_secs(60);
/// How soon the other process must apply a registration.
const FOLLOW_WITHIN: Duration = Duration::from_secs(1);
const TYPE: &str = "orders.order_placed";
const INGEST_TOPIC: &str = "herald.ingest.orders";

fn v1() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["order_id", "amount"],
        "properties": {
            "order_id": {"type": "string", "minLength": 1},
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD"]}
        },
        "additionalProperties": false
    })
}

/// v1 with a new required property: old events lack it.
fn v2_incompatible() -> Value {
    let mut schema = v1();
    schema["properties"]["customer"] = json!({"type": "string"});
    schema["required"] = json!(["order_id", "amount", "customer"]);
    schema
}

/// v1 with one more currency and an optional note.
fn v2() -> Value {
    let mut schema = v1();
    schema["properties"]["currency"]["enum"] = json!(["EUR", "USD", "GBP"]);
    schema["properties"]["note"] = json!({"type": "string", "maxLength": 500});
    schema
}

/// `amount` renamed to `total`, a required `channel`: bridged by an upcaster.
fn v3() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["order_id", "total", "channel"],
        "properties": {
            "order_id": {"type": "string", "minLength": 1},
            "total": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
            "note": {"type": "string", "maxLength": 500},
            "channel": {"type": "string", "enum": ["web", "store", "phone"]}
        },
        "additionalProperties": false
    })
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let answer = http.post(url).json(&body).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let answer = http.get(url).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The versions of `orders.order_placed` process `base` lists (without
/// being made to read the store: the list reads what it applied).
async fn listed_versions(http: &reqwest::Client, base: &str) -> Vec<(u64, bool)> {
    let (_, list) = get(http, format!("{base}/v1/schemas?domain=orders")).await;
    list["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == TYPE)
        .flat_map(|t| t["versions"].as_array().cloned().unwrap_or_default())
        .map(|v| (v["version"].as_u64().unwrap(), v["deprecated"] == true))
        .collect()
}

/// Waits until `base` lists `expected`; how long it took.
async fn follows(http: &reqwest::Client, base: &str, expected: &[(u64, bool)]) -> Duration {
    let started = Instant::now();
    let seen = eventually(FOLLOW_WITHIN, || async {
        listed_versions(http, base).await == expected
    })
    .await;
    assert!(
        seen,
        "{base} lists {:?} after {FOLLOW_WITHIN:?}, not {expected:?}",
        listed_versions(http, base).await
    );
    started.elapsed()
}

/// The streams of the first `count` events of `GET /v1/events/stream`
/// (server-sent events) filtered on `orders.*`, from the start.
async fn sse_streams(http: &reqwest::Client, base: &str, count: usize) -> Vec<String> {
    let answer = http
        .get(format!("{base}/v1/events/stream?type=orders.*&from=start"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.bytes_stream();
    let (mut buffer, mut streams) = (String::new(), Vec::new());
    while streams.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("events within 20 s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if !block.lines().any(|l| l == "event: event") {
                continue;
            }
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("an event's data");
            let event: Value = serde_json::from_str(data).unwrap();
            assert_eq!(event["type"], TYPE, "{event}");
            streams.push(event["stream"].as_str().unwrap().to_owned());
        }
    }
    streams
}

fn publish_body(id: &str, version: u32, payload: Value) -> Value {
    json!({"stream": format!("orders/{id}"), "type": TYPE, "version": version, "payload": payload})
}

/// `herald <args>` against the store; (exit code, stdout).
fn herald_cli(db: &TestDatabase, args: &[&str]) -> (i32, String) {
    let output = herald_command()
        .args(args)
        .env("HERALD_STORE", db.url())
        .output()
        .expect("run herald");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_register_their_own_event_types_across_processes() {
    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let env = [
        ("HERALD_STORE", db.url()),
        ("HERALD_BROKER", vhost.url()),
        ("HERALD_INGEST", "on"),
        ("HERALD_INGEST_TOPIC", INGEST_TOPIC),
    ];
    let (dirs, mut processes) = start_serves(2, &env, &[], PATIENCE).await;
    let (a, b) = (processes[0].base.clone(), processes[1].base.clone());
    let http = reqwest::Client::new();

    // An unknown type is refused as before.
    let (status, problem) = post(
        &http,
        format!("{b}/v1/events"),
        publish_body("O-0", 1, json!({"order_id": "O-0", "amount": 1})),
    )
    .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("urn:herald:problem:unknown-event-type"))
    );

    // v1, registered through A; B follows.
    let (status, registered) = post(
        &http,
        format!("{a}/v1/schemas"),
        json!({"type": TYPE, "schema": v1()}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["version"], 1);
    let v1_position = registered["position"].as_u64().expect("a position");
    let took = follows(&http, &b, &[(1, false)]).await;
    println!("B applied v1 after {took:?}");
    // Registering it again changes nothing.
    let (status, again) = post(
        &http,
        format!("{b}/v1/schemas"),
        json!({"type": TYPE, "schema": v1()}),
    )
    .await;
    assert_eq!(
        (status, again["registered"].as_bool()),
        (200, Some(false)),
        "{again}"
    );

    // The relay publishes the new domain's events to `herald.orders`:
    // its consumers subscribe before anything is published, as RabbitMQ
    // keeps nothing for queues that do not exist yet.
    let broker = AmqpBroker::connect(AmqpConfig::new(vhost.url(), WireSettings::default()))
        .await
        .expect("RabbitMQ answers");
    let broker: Arc<dyn Broker> = Arc::new(broker);
    let orders_topic = Topic::for_domain(&Domain::new("orders").unwrap());
    let mut relayed = broker
        .subscribe(
            &ConsumerGroup::new("orders-reader").unwrap(),
            &[orders_topic],
        )
        .await
        .expect("a subscription to herald.orders");

    // Published over HTTP through both processes, checked against v1.
    for (base, id, amount) in [(&a, "O-1", 12.5), (&b, "O-2", 40.0)] {
        let (status, answer) = post(
            &http,
            format!("{base}/v1/events"),
            publish_body(
                id,
                1,
                json!({"order_id": id, "amount": amount, "currency": "EUR"}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, problem) = post(
        &http,
        format!("{b}/v1/events"),
        publish_body("O-9", 1, json!({"order_id": "O-9", "amount": -1})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:schema-violation");

    // A websocket subscriber of orders.* on B.
    let (mut subscriber, ready) = WsClient::connect(&b, "").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    subscriber
        .send(json!({"type": "subscribe", "id": "o", "filter": {"types": ["orders.*"]}, "from": "start"}))
        .await;

    // Published over the broker ingest.
    let message = WireMessage {
        topic: Topic::named(INGEST_TOPIC).unwrap(),
        partition: 0,
        key: "orders/O-3".into(),
        headers: vec![("herald-message-id".into(), "ingest-O-3".into())],
        body: serde_json::to_vec(&publish_body(
            "O-3",
            1,
            json!({"order_id": "O-3", "amount": 7, "currency": "USD"}),
        ))
        .unwrap(),
    };
    // RabbitMQ drops what is published before the ingest's queues exist.
    let ingested = eventually(PATIENCE, || {
        let (broker, message, http, b) = (&broker, message.clone(), &http, &b);
        async move {
            broker.publish(vec![message]).await.unwrap();
            get(http, format!("{b}/v1/streams/orders/O-3/events"))
                .await
                .0
                == 200
        }
    })
    .await;
    assert!(ingested, "the ingest appended the orders event");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = subscriber
            .next()
            .await
            .expect("the subscription stays open");
        if frame["type"] == "event" {
            assert_eq!(frame["event"]["type"], TYPE, "{frame}");
            seen.push(frame["event"]["stream"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["orders/O-1", "orders/O-2", "orders/O-3"]);
    // The relay carried each to the domain's topic (at least once).
    let mut carried = std::collections::BTreeMap::new();
    while carried.len() < 3 {
        let delivery = tokio::time::timeout(PATIENCE, relayed.next())
            .await
            .expect("the relay publishes the orders events")
            .expect("the subscription stays open")
            .expect("a delivery");
        let Ok(Payload::Event(event)) = &delivery.content else {
            panic!("an event inline");
        };
        assert_eq!(event.event_type.as_str(), TYPE);
        carried.insert(event.position.get(), event.stream.to_string());
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        carried.into_values().collect::<Vec<_>>(),
        ["orders/O-1", "orders/O-2", "orders/O-3"]
    );
    drop(relayed);

    // And server-sent events with a type wildcard, from the other process.
    assert_eq!(
        sse_streams(&http, &a, 3).await,
        ["orders/O-1", "orders/O-2", "orders/O-3"]
    );

    // Searched with a payload filter.
    let (status, found) = get(
        &http,
        format!("{a}/v1/events/search?type=orders.*&payload.currency=EUR"),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let streams: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["orders/O-1", "orders/O-2"]);

    // An incompatible v2 is refused, saying what breaks; nothing changes.
    let (status, problem) = post(
        &http,
        format!("{b}/v1/schemas"),
        json!({"type": TYPE, "schema": v2_incompatible()}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:incompatible-schema");
    let reasons = problem["incompatibilities"].to_string();
    assert!(
        problem["incompatibilities"][0]["path"]
            .as_str()
            .is_some_and(|p| p.contains("required"))
            && reasons.contains("customer"),
        "the refusal names the new required property: {problem}"
    );
    assert_eq!(listed_versions(&http, &a).await, [(1, false)]);

    // A compatible v2 through B; A follows.
    let (status, registered) = post(
        &http,
        format!("{b}/v1/schemas"),
        json!({"type": TYPE, "version": 2, "schema": v2()}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["reads_previous"], true);
    let v2_position = registered["position"].as_u64().unwrap();
    follows(&http, &a, &[(1, false), (2, false)]).await;

    // v3 breaks backward compatibility, so it needs an upcaster from v2.
    let (status, problem) = post(
        &http,
        format!("{a}/v1/schemas"),
        json!({"type": TYPE, "schema": v3()}),
    )
    .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("urn:herald:problem:incompatible-schema"))
    );
    let (status, registered) = post(
        &http,
        format!("{a}/v1/schemas"),
        json!({
            "type": TYPE,
            "schema": v3(),
            "upcaster": {"rename": {"amount": "total"}, "defaults": {"channel": "web"}}
        }),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["version"], 3);
    let v3_position = registered["position"].as_u64().unwrap();
    follows(&http, &b, &[(1, false), (2, false), (3, false)]).await;

    // The v1 events read as v3 on both processes; as stored on request.
    for base in [&a, &b] {
        let (status, read) = get(&http, format!("{base}/v1/streams/orders/O-1/events")).await;
        assert_eq!(status, 200, "{read}");
        let event = &read["events"][0];
        assert_eq!(event["version"], 3, "{event}");
        assert_eq!(
            event["payload"],
            json!({"order_id": "O-1", "total": 12.5, "currency": "EUR", "channel": "web"})
        );
        let (_, stored) = get(
            &http,
            format!("{base}/v1/streams/orders/O-1/events?as_stored=true"),
        )
        .await;
        assert_eq!(stored["events"][0]["version"], 1);
        assert_eq!(stored["events"][0]["payload"]["amount"], 12.5);
    }
    // A v3 event through B; a v1 event still accepted until deprecated.
    let (status, answer) = post(
        &http,
        format!("{b}/v1/events"),
        publish_body(
            "O-4",
            3,
            json!({"order_id": "O-4", "total": 3, "channel": "store"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");

    // v1 deprecated through A: B refuses new v1 events within a second.
    let (status, answer) = post(
        &http,
        format!("{a}/v1/schemas/{TYPE}/1/deprecate"),
        json!({"reason": "amount is now total"}),
    )
    .await;
    assert_eq!(
        (status, answer["changed"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    follows(&http, &b, &[(1, true), (2, false), (3, false)]).await;
    let (status, problem) = post(
        &http,
        format!("{b}/v1/events"),
        publish_body("O-5", 1, json!({"order_id": "O-5", "amount": 1})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:herald:problem:deprecated-schema-version"
    );

    // A restarted process rebuilds the registry from the log.
    let status = processes[1].terminate(PATIENCE);
    assert!(status.success(), "B exited with {status}");
    let listen = processes[1].base.trim_start_matches("http://").to_owned();
    let mut envs: Vec<(&str, &str)> = env.to_vec();
    envs.push(("HERALD_LISTEN", listen.as_str()));
    let mut restarted = Herald::start(dirs[1].path(), &["serve"], &envs);
    restarted.wait_healthy(PATIENCE).await;
    assert_eq!(
        listed_versions(&http, &restarted.base).await,
        [(1, true), (2, false), (3, false)]
    );
    let (_, read) = get(
        &http,
        format!("{}/v1/streams/orders/O-2/events", restarted.base),
    )
    .await;
    assert_eq!(read["events"][0]["version"], 3);
    assert_eq!(read["events"][0]["payload"]["total"], 40.0);

    for process in processes.iter_mut().take(1) {
        assert!(process.terminate(PATIENCE).success());
    }
    assert!(restarted.terminate(PATIENCE).success());
    broker.close().await;

    // The registrations are in the hash chain, and it holds.
    let (code, report) = herald_cli(&db, &["audit", "verify", "--json"]);
    assert_eq!(code, 0, "{report}");
    let report: Value = serde_json::from_str(&report).expect("a JSON report");
    assert_eq!(report["intact"], true, "{report}");

    // The registrations are exported with the trail, as stored.
    let (code, trail) = herald_cli(
        &db,
        &["audit", "export", "--domain", "registry", "--output", "-"],
    );
    assert_eq!(code, 0, "{trail}");
    let exported: Vec<(String, String)> = trail
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("a JSON line");
            (
                row["stream"].as_str().unwrap_or_default().to_owned(),
                row["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let registered = (
        "registry/schemas".to_owned(),
        "registry.schema_registered".to_owned(),
    );
    let deprecated = (
        "registry/schemas".to_owned(),
        "registry.schema_deprecated".to_owned(),
    );
    assert_eq!(
        exported,
        [
            registered.clone(),
            registered.clone(),
            registered,
            deprecated
        ],
        "{trail}"
    );

    // The registry as it was at each registration.
    for (position, versions) in [
        (v1_position, vec!["1"]),
        (v2_position, vec!["1", "2"]),
        (v3_position, vec!["1", "2", "3"]),
    ] {
        let at = position.to_string();
        let (code, state) = herald_cli(
            &db,
            &[
                "replay", "state", "registry", "schemas", "--at", &at, "--json",
            ],
        );
        assert_eq!(code, 0, "{state}");
        let state: Value = serde_json::from_str(&state).expect("a JSON state");
        let known: Vec<&String> = state["state"]["types"][TYPE]["versions"]
            .as_object()
            .expect("the type's versions")
            .keys()
            .collect();
        assert_eq!(
            known, versions,
            "the registry at position {position}: {state}"
        );
        assert_eq!(
            state["state"]["types"][TYPE]["versions"]["1"]["deprecated"], false,
            "v1 was not deprecated yet at {position}"
        );
    }
    drop(dirs);
}
