//! Arbitrary input never gets a 5xx, never stalls Herald, and never stores
//! what a read cannot return, on both stores. A property test sends
//! arbitrary bytes and arbitrary JSON — U+0000 in keys and values, odd
//! Unicode, huge and tiny numbers, nesting up to and past the parser's
//! limit — to `herald serve` through every way in over HTTP (publish,
//! append, commands, search with `payload.*` filters, every view's query
//! string and ids, the log, SSE filters), and to the broker ingest. Every
//! answer is below 500; afterwards every event appended reads back from the
//! log exactly as it was stored and hashed, the audit chain is intact, the
//! read models caught up, and a valid event sent last is appended.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald::ingest::{APPENDED_TOTAL, DEAD_LETTERED_TOTAL, DUPLICATES_TOTAL, RETRIES_TOTAL};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::{partition_for, Broker, ConsumerGroup, Topic, WireMessage};
use herald_events::{chain_hash, ChainHash, EventRegistry, Position};
use herald_store::storable::as_stored;
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Number, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(30);
/// Requests per store; each case is one request.
const HTTP_CASES: u32 = 800;
/// Messages per store through the ingest.
const INGEST_CASES: u32 = 400;

// ---- what is sent ----

/// Text with what breaks things over-represented: U+0000, odd Unicode,
/// characters that mean something in URLs, JSON pointers and search paths.
fn text() -> impl Strategy<Value = String> {
    let odd = || {
        prop::sample::select(vec![
            '\u{1}',
            '\u{7f}',
            'a',
            'Z',
            '0',
            'é',
            '😀',
            '\u{feff}',
            '\u{fffe}',
            '\u{10ffff}',
            '\u{200b}',
            '"',
            '\\',
            '/',
            '~',
            '%',
            '&',
            '=',
            '+',
            '.',
            ' ',
            '*',
            '_',
            '\n',
            '?',
            '#',
        ])
    };
    prop_oneof![
        4 => vec(odd(), 0..10).prop_map(String::from_iter),
        1 => (vec(odd(), 0..5), vec(odd(), 0..5))
            .prop_map(|(a, b)| format!("{}\u{0}{}", String::from_iter(a), String::from_iter(b))),
        1 => vec(any::<char>(), 0..10).prop_map(String::from_iter),
        2 => "[A-Za-z0-9._:@~-]{1,12}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    let doubles = prop::sample::select(vec![
        1e16,
        1.5e17,
        1e18,
        -1e18,
        1e19,
        -1e19,
        1e20,
        1e300,
        -0.0,
        0.1,
        5e-324,
        2.2e-308,
        f64::MAX,
        f64::MIN,
        9_007_199_254_740_993.0,
    ]);
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        doubles.prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(text(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arrays nested `depth` deep: within serde's limit of 128 and past it.
fn deep() -> impl Strategy<Value = Value> {
    (1usize..140).prop_map(|depth| (0..depth).fold(json!("bottom"), |v, _| json!([v])))
}

fn object() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => btree_map(text(), json(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => deep().prop_map(|d| json!({"deep": d})),
    ]
}

/// A `drafts.draft_created` event, often valid, with arbitrary text in
/// every field, and sometimes one field replaced by arbitrary JSON.
fn item() -> impl Strategy<Value = Value> {
    let id = prop_oneof![3 => "[A-Za-z0-9._:@~-]{1,16}", 1 => text()];
    let fields = (
        id,
        text(),
        object(),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(
            0.2,
            prop_oneof![
                Just("2026-01-01T00:00:00Z".to_owned()),
                Just("+10000-01-01T00:00:00Z".to_owned()),
                Just("0000-01-01T00:00:00Z".to_owned()),
                text(),
            ],
        ),
    );
    let mutation = prop::option::weighted(
        0.2,
        (
            prop::sample::select(vec![
                "stream",
                "type",
                "version",
                "payload",
                "producer",
                "idempotency_key",
                "tenant",
                "id",
                "occurred_at",
                "expected_version",
                "correlation_id",
            ]),
            json(),
        ),
    );
    (fields, mutation).prop_map(
        |((id, title, document, producer, key, occurred_at), mutation)| {
            let mut item = json!({
                "stream": format!("drafts/{id}"),
                "type": "drafts.draft_created",
                "version": 1,
                "payload": {"title": if title.is_empty() { "t".to_owned() } else { title },
                            "document": document},
            });
            if let Some(producer) = producer {
                item["producer"] = json!(producer);
            }
            if let Some(key) = key {
                item["idempotency_key"] = json!(key);
            }
            if let Some(at) = occurred_at {
                item["occurred_at"] = json!(at);
            }
            if let Some((field, value)) = mutation {
                item[field] = value;
            }
            item
        },
    )
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Bytes(b) => b.clone(),
        }
    }
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => item().prop_map(Body::Json),
        1 => (vec(item(), 0..4), any::<bool>())
            .prop_map(|(events, atomic)| Body::Json(json!({"events": events, "atomic": atomic}))),
        1 => json().prop_map(Body::Json),
        1 => vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ]
}

fn params(known: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_owned),
        1 => text().prop_map(|t| format!("payload.{t}")),
        1 => text(),
    ];
    vec((key, text()), 0..4)
}

#[derive(Debug, Clone)]
enum Request {
    /// `POST /v1/events`
    Publish(Body),
    /// `POST /v1/streams/{domain}/{id}/events`
    Append(String, String, Body),
    /// `POST /v1/{domain}/{id}/{command}`
    Command(String, String, String, Body),
    /// `GET {path}?{params}`
    Get(String, Vec<(String, String)>),
}

const VIEWS: &[&str] = &[
    "tickets",
    "edges",
    "timers",
    "countdowns",
    "drafts",
    "statistics",
];
const VIEW_PARAMS: &[&str] = &[
    "status",
    "kind",
    "customer",
    "edge",
    "assignee",
    "state",
    "site",
    "has_open_incident",
    "sort",
    "order",
    "limit",
    "cursor",
    "from",
    "to",
    "group_by",
    "version",
    "at",
];
const SEARCH_PARAMS: &[&str] = &[
    "type",
    "domain",
    "stream",
    "from",
    "to",
    "cursor",
    "limit",
    "tenant",
    "as_stored",
];
const LOG_PARAMS: &[&str] = &["from", "limit", "tenant", "as_stored", "from_version"];
const SSE_PARAMS: &[&str] = &["type", "domain", "stream", "from", "tenant"];

fn request() -> impl Strategy<Value = Request> {
    let id = || prop_oneof![2 => "[A-Za-z0-9._:@~-]{1,12}", 1 => text()];
    let domain = prop::sample::select(vec!["drafts", "tickets", "edges", "timers", "nope"]);
    let command = prop::sample::select(vec![
        "create",
        "apply_patch",
        "rename",
        "open",
        "append_note",
        "assign",
        "report_status",
        "schedule",
        "nope",
    ]);
    let command_body = prop_oneof![
        2 => (text(), object()).prop_map(|(title, document)| {
            Body::Json(json!({"title": title, "document": document}))
        }),
        1 => (text(), text()).prop_map(|(a, b)| Body::Json(json!({
            "kind": "outage", "customer": a, "description": b, "note": a, "assignee": b
        }))),
        1 => json().prop_map(Body::Json),
        1 => vec(any::<u8>(), 0..100).prop_map(Body::Bytes),
    ];
    let view = prop::sample::select(VIEWS).prop_map(|v| format!("/v1/views/{v}"));
    prop_oneof![
        10 => body().prop_map(Request::Publish),
        2 => (domain.clone(), id(), body()).prop_map(|(d, i, b)| Request::Append(d.into(), i, b)),
        3 => (domain.clone(), id(), command, command_body)
            .prop_map(|(d, i, c, b)| Request::Command(d.into(), i, c.into(), b)),
        3 => params(SEARCH_PARAMS).prop_map(|p| Request::Get("/v1/events/search".into(), p)),
        3 => (view.clone(), params(VIEW_PARAMS)).prop_map(|(v, p)| Request::Get(v, p)),
        2 => (view, id(), prop::option::of(Just("/versions")), params(VIEW_PARAMS))
            .prop_map(|(v, i, tail, p)| Request::Get(format!("{v}/{}{}", encode(&i), tail.unwrap_or("")), p)),
        1 => params(LOG_PARAMS).prop_map(|p| Request::Get("/v1/events".into(), p)),
        1 => (domain.clone(), id(), params(LOG_PARAMS))
            .prop_map(|(d, i, p)| Request::Get(format!("/v1/streams/{d}/{}/events", encode(&i)), p)),
        1 => (domain, id()).prop_map(|(d, i)| Request::Get(format!("/v1/{d}/{}", encode(&i)), vec![])),
        1 => params(SSE_PARAMS).prop_map(|p| Request::Get("/v1/events/stream".into(), p)),
    ]
}

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // No regression files in the source tree; a failure prints its input.
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    })
}

// ---- over HTTP ----

/// What one request changed, as far as the check at the end needs.
#[derive(Default)]
struct Sent {
    /// Payloads of single events answered 201, by event id.
    appended: BTreeMap<String, Value>,
}

async fn send(client: &reqwest::Client, base: &str, request: &Request, sent: &mut Sent) {
    let (method, url, body) = match request {
        Request::Publish(body) => ("POST", format!("{base}/v1/events"), Some(body)),
        Request::Append(domain, id, body) => (
            "POST",
            format!("{base}/v1/streams/{domain}/{}/events", encode(id)),
            Some(body),
        ),
        Request::Command(domain, id, command, body) => (
            "POST",
            format!("{base}/v1/{domain}/{}/{command}", encode(id)),
            Some(body),
        ),
        Request::Get(path, params) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            ("GET", format!("{base}{path}?{query}"), None)
        }
    };
    let mut builder = match method {
        "POST" => client.post(&url).header("content-type", "application/json"),
        _ => client.get(&url),
    };
    if let Some(body) = body {
        builder = builder.body(body.bytes());
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: no answer: {e}"));
    let status = response.status();
    // An SSE stream that opened never ends: its status is the answer.
    let text = if url.contains("/v1/events/stream") && status.is_success() {
        String::new()
    } else {
        response.text().await.unwrap_or_default()
    };
    assert!(
        status.as_u16() < 500,
        "{method} {url} answered {status}: {text}\nrequest: {request:?}"
    );
    if !status.is_success() {
        let problem: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {url}: {status} without a problem: {text}"));
        assert!(problem["type"].as_str().is_some(), "{text}");
    }
    if let (Request::Publish(Body::Json(item)), 201) = (request, status.as_u16()) {
        if item.get("events").is_none() {
            let answer: Value = serde_json::from_str(&text).unwrap();
            let id = answer["id"].as_str().unwrap().to_owned();
            sent.appended.insert(id, item["payload"].clone());
        }
    }
}

/// Every event of the log, by `GET /v1/events`.
async fn log(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 0u64;
    loop {
        let response = client
            .get(format!(
                "{base}/v1/events?from={from}&limit=1000&as_stored=true"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the log cannot be read");
        let page: Value = response.json().await.unwrap();
        let batch = page["events"].as_array().unwrap().clone();
        let next = page["next"].as_u64().unwrap();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
        from = next;
    }
}

async fn http_properties(base: &str, store: &str) {
    let client = reqwest::Client::new();
    // Until then a view answers 503 `read-model-unavailable`, retryable.
    let serving = eventually(PATIENCE, || async {
        for view in VIEWS {
            let answer = client.get(format!("{base}/v1/views/{view}")).send().await;
            if !answer.is_ok_and(|a| a.status().is_success()) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(serving, "{store}: the read models are not served");
    let sent = std::cell::RefCell::new(Sent::default());
    let handle = tokio::runtime::Handle::current();
    let mut runner = runner(HTTP_CASES);
    let failure = tokio::task::block_in_place(|| {
        runner
            .run(&request(), |request| {
                handle.block_on(send(&client, base, &request, &mut sent.borrow_mut()));
                Ok(())
            })
            .err()
            .map(|e| e.to_string())
    });
    if let Some(failure) = failure {
        panic!("{store}: {failure}");
    }
    let sent = sent.into_inner();
    eprintln!(
        "{store}: {} of {HTTP_CASES} requests appended an arbitrary event",
        sent.appended.len()
    );
    assert!(
        sent.appended.len() >= 10,
        "{store}: only {} arbitrary events were appended; the generator hardly tests storage",
        sent.appended.len()
    );

    // Nothing stalled: a valid event sent last is appended.
    let last = client
        .post(format!("{base}/v1/events"))
        .json(
            &json!({"stream": "tickets/LAST", "type": "tickets.note_appended",
                      "version": 1, "payload": {"note": "after the junk"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        last.status(),
        201,
        "{store}: {}",
        last.text().await.unwrap()
    );

    // Everything stored reads back as stored and hashed.
    let events = log(&client, base).await;
    let by_id: BTreeMap<&str, &Value> = events
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for (id, payload) in &sent.appended {
        let stored = by_id.get(id.as_str()).unwrap_or_else(|| {
            panic!("{store}: event {id} was answered 201 but is not in the log")
        });
        assert_eq!(stored["payload"], as_stored(payload), "{store}: event {id}");
    }
    assert_eq!(events.last().unwrap()["payload"]["note"], "after the junk");
    let verify: Value = client
        .get(format!("{base}/v1/audit/verify"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["intact"], true, "{store}: {verify}");
    assert_eq!(verify["checked"], events.len(), "{store}: {verify}");

    // The read models took every event: no projection parked one or fell behind.
    let caught_up = eventually(PATIENCE, || async {
        let status: Value = client
            .get(format!("{base}/v1/projections"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        status["projections"]
            .as_array()
            .is_some_and(|all| !all.is_empty() && all.iter().all(|p| p["lag_events"] == 0))
    })
    .await;
    let status = client
        .get(format!("{base}/v1/projections"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(caught_up, "{store}: projections stalled: {status}");
    let detail = client
        .get(format!("{base}/v1/projections/drafts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("{store}: drafts: {detail}");
    for view in VIEWS {
        let response = client
            .get(format!("{base}/v1/views/{view}"))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{store}: {view}: {response:?}"
        );
    }
}

fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Herald {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec![("HERALD_RELAY", "false")];
    all.extend_from_slice(env);
    Herald::start(dir, &["serve", "--listen", &listen], &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut herald = serve(dir.path(), &[]);
    herald.wait_healthy(PATIENCE).await;
    http_properties(&herald.base, "embedded").await;
    assert!(herald.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_on_postgres() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut herald = serve(dir.path(), &[("HERALD_STORE", db.url())]);
    herald.wait_healthy(PATIENCE).await;
    http_properties(&herald.base, "postgres").await;
    assert!(herald.terminate(PATIENCE).success());
}

// ---- through the ingest ----

#[derive(Debug, Clone)]
struct Message {
    tenant: Option<String>,
    message_id: Option<String>,
    body: Body,
}

fn message() -> impl Strategy<Value = Message> {
    let header = || prop::option::weighted(0.3, prop_oneof![text(), "[a-z]{1,8}"]);
    (header(), header(), body()).prop_map(|(tenant, message_id, body)| Message {
        tenant,
        message_id,
        body,
    })
}

async fn ingest_properties(store: Arc<dyn EventStore>, name: &str) {
    use herald::ingest::{Ingest, IngestConfig};

    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
    let suffix = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let config = IngestConfig {
        topic: Topic::named(format!("herald.ingest.a{suffix}")).unwrap(),
        group: ConsumerGroup::new(format!("herald-ingest-a{suffix}")).unwrap(),
        max_backoff: Duration::from_millis(200),
        ..IngestConfig::default()
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut ingest = Ingest::new(
        Arc::clone(&store),
        Arc::clone(&broker),
        EventRegistry::builtin().unwrap(),
        config.clone(),
    )
    .spawn(stop_rx);
    assert!(ingest.subscribed().await, "{name}: the ingest did not join");

    let partitions = broker.wire().partitions;
    let to_wire = |m: &Message, key: String| {
        let mut headers = Vec::new();
        if let Some(tenant) = &m.tenant {
            headers.push(("herald-tenant".to_owned(), tenant.clone()));
        }
        if let Some(id) = &m.message_id {
            headers.push(("herald-message-id".to_owned(), id.clone()));
        }
        WireMessage {
            topic: config.topic.clone(),
            partition: partition_for(&key, partitions),
            key,
            headers,
            body: m.body.bytes(),
        }
    };
    // One property over the whole topic (every message settled, none
    // blocking the next), so the messages are drawn, not run case by case.
    let mut runner = runner(INGEST_CASES);
    let messages: Vec<WireMessage> = (0..INGEST_CASES)
        .map(|i| {
            let m = message().new_tree(&mut runner).unwrap().current();
            // Spread over every partition.
            to_wire(&m, format!("k{i}"))
        })
        .collect();
    let published = messages.len();
    let settled_before = settled();
    let retries_before = counter(RETRIES_TOTAL);
    // After the junk, on every partition: a valid event each.
    let valid: Vec<WireMessage> = (0..partitions)
        .map(|p| {
            let body = json!({"stream": format!("tickets/AFTER-{p}"), "type": "tickets.note_appended",
                              "version": 1, "payload": {"note": "after the junk"}});
            let mut m = to_wire(
                &Message {
                    tenant: None,
                    message_id: None,
                    body: Body::Json(body),
                },
                String::new(),
            );
            m.partition = p;
            m
        })
        .collect();
    for chunk in messages.chunks(50) {
        broker.publish(chunk.to_vec()).await.unwrap();
    }
    broker.publish(valid).await.unwrap();

    // Every message is settled — appended, a repeat, or dead-lettered — and
    // none was retried: nothing the junk did could make the store fail.
    let want = settled_before + published as u64 + u64::from(partitions);
    let all_settled = eventually(PATIENCE, || async { settled() >= want }).await;
    let stored = store.read_all(Position(0), 10_000).await;
    let stored = stored.unwrap_or_else(|e| panic!("{name}: the log cannot be read: {e}"));
    let dead = broker.dead_letters(&config.group, 10_000).await.unwrap();
    assert!(
        all_settled,
        "{name}: {} of {} messages settled ({} stored, {} dead letters)",
        settled() - settled_before,
        want - settled_before,
        stored.len(),
        dead.len()
    );
    assert_eq!(
        counter(RETRIES_TOTAL),
        retries_before,
        "{name}: the ingest retried"
    );
    assert_eq!(
        stored
            .iter()
            .filter(|e| e.payload["note"] == "after the junk")
            .count(),
        partitions as usize,
        "{name}: the valid messages after the junk"
    );
    assert!(
        !dead.is_empty() && stored.len() > partitions as usize,
        "{name}: the generator"
    );
    let mut previous = ChainHash::GENESIS;
    for event in &stored {
        assert_eq!(
            event.hash,
            chain_hash(&previous, event),
            "{name}: {event:?}"
        );
        previous = event.hash;
    }
    for d in &dead {
        let kind = d.error.split(':').next().unwrap_or("");
        assert!(
            !kind.is_empty() && kind != "internal",
            "{name}: dead-lettered for a failure of Herald's own: {}",
            d.error
        );
    }
    stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, ingest.join()).await.unwrap();
    store.close().await;
}

/// One test for both stores, one after the other: the ingest's counters
/// are process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_ingest_on_both_stores() {
    metrics();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    ingest_properties(store, "embedded").await;

    let db = TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    ingest_properties(store, "postgres").await;
}

fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("a metrics recorder")
    })
}

/// A counter of this process, summed over its labels.
fn counter(name: &str) -> u64 {
    metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Messages the ingest settled so far: appended, repeats, dead letters.
fn settled() -> u64 {
    counter(APPENDED_TOTAL) + counter(DUPLICATES_TOTAL) + counter(DEAD_LETTERED_TOTAL)
}
