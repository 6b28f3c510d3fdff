//! Two relays on one store (two processes): one is active, the other stands
//! by; when the active one dies without releasing its lease, the stand-by
//! takes over within 10 s and nothing committed is left unpublished. The
//! stand-by's store is told to poll only every minute, so its prompt
//! publishing of events committed through the other process shows the
//! cross-process wake-up (LISTEN/NOTIFY) at work.
//!
//! Then the same with two `herald serve` processes on one Postgres and
//! RabbitMQ (a vhost of the test's own), the leader SIGKILLed while it
//! publishes under load: the stand-by exports `herald_relay_active` 0 (and
//! the other relay series at zero) before, 1 after, and its
//! `herald_relay_republished_total{cause="takeover"}` is at least the
//! number of duplicates a consumer of the topic saw, and at most one batch.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::relay::{Relay, RelayConfig, RELAY_NAME};
use herald_brokers::memory::MemoryBroker;
use herald_brokers::{Broker, ConsumerGroup, Subscription, Topic};
use herald_events::{Domain, EventId, NewEvent, SchemaVersion, TenantId};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;
use serde_json::json;

fn config() -> RelayConfig {
    RelayConfig {
        lease_ttl: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        standby_poll: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

async fn store(db: &TestDatabase) -> Arc<dyn EventStore> {
    let mut config = PostgresConfig::new(db.url());
    config.poll_interval = Duration::from_secs(60);
    config.pool_size = 4;
    Arc::new(PostgresStore::open(config).await.unwrap())
}

async fn append(store: &Arc<dyn EventStore>, n: usize, label: &str) -> Vec<EventId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let e = NewEvent::new(
            "tickets.note_appended".parse().unwrap(),
            SchemaVersion::V1,
            json!({"note": format!("{label}-{i}")}),
        );
        ids.push(e.id);
        let stream = format!("tickets/T-{}", i % 7).parse().unwrap();
        store
            .append(
                &TenantId::default_tenant(),
                &stream,
                ExpectedVersion::Any,
                vec![e],
            )
            .await
            .unwrap();
    }
    ids
}

/// Receives until every id in `want` has been seen (duplicates allowed).
async fn receive_all(
    sub: &mut Subscription,
    want: &HashSet<EventId>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut missing = want.clone();
    while !missing.is_empty() {
        let left = within.checked_sub(started.elapsed()).unwrap_or_default();
        let d = tokio::time::timeout(left, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} events still unpublished after {within:?}",
                    missing.len()
                )
            })
            .unwrap()
            .unwrap();
        missing.remove(&d.content.as_ref().unwrap().event_id());
        d.ack().await.unwrap();
    }
    started.elapsed()
}

async fn lease_holder(db: &TestDatabase) -> Option<String> {
    let client = db.connect().await;
    client
        .query_opt(
            "SELECT holder FROM herald_leases WHERE name = $1 AND expires_at > now()",
            &[&RELAY_NAME],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_within_ten_seconds() {
    let db = TestDatabase::create().await;
    let (store_a, store_b) = (store(&db).await, store(&db).await);
    let broker = Arc::new(MemoryBroker::default());
    let topic = Topic::for_domain(&Domain::new("tickets").unwrap());
    let mut sub = broker
        .subscribe(&ConsumerGroup::new("takeover").unwrap(), &[topic])
        .await
        .unwrap();

    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay_a = Relay::new(store_a.clone(), broker.clone() as Arc<dyn Broker>, config());
    let holder_a = relay_a.holder().to_owned();
    let task_a = relay_a.spawn(stop_rx.clone());
    assert!(
        herald_testkit::eventually(Duration::from_secs(10), || async {
            lease_holder(&db).await.as_deref() == Some(holder_a.as_str())
        })
        .await,
        "the first relay never became active"
    );
    let relay_b = Relay::new(store_b.clone(), broker.clone() as Arc<dyn Broker>, config());
    let holder_b = relay_b.holder().to_owned();
    let task_b = relay_b.spawn(stop_rx);

    let first: HashSet<EventId> = append(&store_a, 50, "before").await.into_iter().collect();
    receive_all(&mut sub, &first, Duration::from_secs(10)).await;
    assert_eq!(
        lease_holder(&db).await.as_deref(),
        Some(holder_a.as_str()),
        "the stand-by took over a live relay"
    );

    // The active relay dies: its task is gone and its lease is not released.
    task_a.abort();
    let died = Instant::now();
    // Commits through the dead relay's store (its process lives on), which
    // only the stand-by can publish, woken by NOTIFY.
    let second: HashSet<EventId> = append(&store_a, 50, "after").await.into_iter().collect();
    receive_all(&mut sub, &second, Duration::from_secs(10)).await;
    let took_over = died.elapsed();
    assert_eq!(lease_holder(&db).await.as_deref(), Some(holder_b.as_str()));
    assert!(
        took_over < Duration::from_secs(10),
        "takeover took {took_over:?}"
    );
    eprintln!("stand-by published everything {took_over:?} after the active relay died");

    task_b.abort();
    store_a.close().await;
    store_b.close().await;
}

/// A `herald serve` on `db` and `amqp`, relay on, ingest off.
fn serve(dir: &std::path::Path, db: &TestDatabase, amqp: &str) -> support::Herald {
    let listen = format!("127.0.0.1:{}", support::free_port());
    support::Herald::start(
        dir,
        &["serve"],
        &[
            ("HERALD_LISTEN", listen.as_str()),
            ("HERALD_STORE", db.url()),
            ("HERALD_BROKER", amqp),
            ("HERALD_INGEST", "off"),
            ("HERALD_LOG", "warn,herald::relay=info"),
        ],
    )
}

/// Appends batches of 20 events over HTTP until `stop`; answers the ids
/// acknowledged.
async fn produce(base: String, stop: tokio::sync::watch::Receiver<bool>) -> Vec<EventId> {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut round = 0u64;
    while !*stop.borrow() {
        round += 1;
        let events: Vec<_> = (0..20)
            .map(|i| {
                json!({
                    "stream": format!("tickets/T-{}", (round * 20 + i) % 13),
                    "type": "tickets.note_appended",
                    "version": 1,
                    "payload": {"note": format!("load {round}/{i}")},
                })
            })
            .collect();
        let response = client
            .post(format!("{base}/v1/events"))
            .json(&json!({"events": events, "atomic": true}))
            .send()
            .await
            .expect("the stand-by answers");
        assert_eq!(response.status().as_u16(), 201);
        let answer: serde_json::Value = response.json().await.unwrap();
        for result in answer["results"].as_array().unwrap() {
            acknowledged.push(result["id"].as_str().unwrap().parse().unwrap());
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_after_sigkill_counts_what_it_publishes_again() {
    let db = TestDatabase::create().await;
    let vhost = herald_testkit::TestVhost::create().await;
    let witness = herald_brokers::amqp::AmqpBroker::connect(herald_brokers::amqp::AmqpConfig::new(
        vhost.url(),
        herald_brokers::WireSettings::default(),
    ))
    .await
    .expect("RabbitMQ answers");
    let topic = Topic::for_domain(&Domain::new("tickets").unwrap());
    // Joined before anything is published: every message reaches it.
    let mut sub = witness
        .subscribe(&ConsumerGroup::new("takeover-witness").unwrap(), &[topic])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut leader = serve(dir.path(), &db, vhost.url());
    leader.wait_healthy(Duration::from_secs(30)).await;
    assert!(
        herald_testkit::eventually(Duration::from_secs(30), || async {
            support::probe::metric(&leader.base, "herald_relay_active").await == Some(1.0)
        })
        .await,
        "the first process's relay never became active"
    );
    let mut standby = serve(dir.path(), &db, vhost.url());
    standby.wait_healthy(Duration::from_secs(30)).await;
    let before = support::probe::metrics(&standby.base).await;
    for (series, want) in [
        ("herald_relay_active", 0.0),
        ("herald_relay_published_total", 0.0),
        (r#"herald_relay_republished_total{cause="takeover"}"#, 0.0),
        (r#"herald_relay_republished_total{cause="retry"}"#, 0.0),
        (
            r#"herald_relay_publish_failures_total{kind="not_confirmed"}"#,
            0.0,
        ),
        ("herald_relay_checkpoint_position", 0.0),
    ] {
        assert_eq!(
            support::probe::value(&before, series),
            Some(want),
            "the stand-by exports {series}"
        );
    }

    let (stop_load, load_stop) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(produce(standby.base.clone(), load_stop));
    // The leader publishes under load; it dies in the middle of it.
    let mut deliveries: HashMap<EventId, u32> = HashMap::new();
    while deliveries.len() < 400 {
        let d = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("the leader publishes")
            .unwrap()
            .unwrap();
        *deliveries
            .entry(d.content.as_ref().unwrap().event_id())
            .or_default() += 1;
        d.ack().await.unwrap();
    }
    leader.child.kill().expect("SIGKILL the leader");
    leader.child.wait().unwrap();
    assert!(
        herald_testkit::eventually(Duration::from_secs(15), || async {
            support::probe::metric(&standby.base, "herald_relay_active").await == Some(1.0)
        })
        .await,
        "the stand-by never took over"
    );
    // Some load after the takeover too.
    let published_after = support::probe::metric(&standby.base, "herald_relay_published_total")
        .await
        .unwrap_or(0.0);
    assert!(
        herald_testkit::eventually(Duration::from_secs(15), || async {
            support::probe::metric(&standby.base, "herald_relay_published_total")
                .await
                .is_some_and(|n| n >= published_after + 100.0)
        })
        .await
    );
    stop_load.send(true).unwrap();
    let acknowledged: HashSet<EventId> = load.await.unwrap().into_iter().collect();

    let mut missing: HashSet<EventId> = acknowledged
        .iter()
        .filter(|id| !deliveries.contains_key(id))
        .copied()
        .collect();
    while !missing.is_empty() {
        let d = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{} acknowledged events never published", missing.len()))
            .unwrap()
            .unwrap();
        let id = d.content.as_ref().unwrap().event_id();
        *deliveries.entry(id).or_default() += 1;
        missing.remove(&id);
        d.ack().await.unwrap();
    }
    // Late duplicates of the last batch, if any, come right after.
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        *deliveries
            .entry(d.content.as_ref().unwrap().event_id())
            .or_default() += 1;
        d.ack().await.unwrap();
    }

    let duplicates: u32 = deliveries.values().map(|n| n - 1).sum();
    let after = support::probe::metrics(&standby.base).await;
    let republished = support::probe::value(
        &after,
        r#"herald_relay_republished_total{cause="takeover"}"#,
    )
    .expect("the takeover count is exported");
    eprintln!(
        "{} events acknowledged, {duplicates} delivered twice, {republished} counted as republished by the takeover",
        acknowledged.len()
    );
    assert!(
        deliveries.values().all(|n| *n <= 2),
        "an event came more than twice"
    );
    assert!(
        f64::from(duplicates) <= republished,
        "{duplicates} duplicates seen, {republished} counted"
    );
    assert!(
        republished <= RelayConfig::default().batch_max as f64,
        "the count is bounded by the one batch the leader may have had in flight: {republished}"
    );
    assert_eq!(
        support::probe::value(&after, "herald_relay_active"),
        Some(1.0)
    );
    witness.close().await;
}
