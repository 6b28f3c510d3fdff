//! Draft documents far bigger than the broker's largest message work end to
//! end: commands over HTTP grow a document to ~240 KB with 40 KB patches
//! while RabbitMQ takes at most 8 KB per message; the relay sends those
//! events as claim checks, a downstream consumer resolves every one of them
//! through the store to the full event, the drafts read model (woken by the
//! same deliveries) serves the whole document at every version, and the
//! aggregate's own state agrees.

#![cfg(feature = "amqp")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use async_trait::async_trait;
use futures::StreamExt;
use herald::api::{self, Limits};
use herald::relay::{Relay, RelayConfig};
use herald_actors::drafts::Draft;
use herald_actors::{ActorRuntime, AggregateGroup, Domains, GroupConfig};
use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
use herald_brokers::{Broker, ConsumerGroup, EventLoader, Payload, Topic, WireSettings};
use herald_events::{Domain, EventEnvelope, EventRegistry, Position};
use herald_projections::read_models::drafts::DraftsProjection;
use herald_projections::{ProjectionRunner, RunnerConfig};
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};

const MAX_MESSAGE: usize = 8 * 1024;
const CHUNK: usize = 40 * 1024;
const PATCHES: usize = 5;
const WAIT: Duration = Duration::from_secs(60);

struct StoreLoader(Arc<dyn EventStore>);

#[async_trait]
impl EventLoader for StoreLoader {
    async fn load(&self, position: Position) -> Result<Option<EventEnvelope>, String> {
        let events = self
            .0
            .read_all(position, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(events.into_iter().find(|e| e.position == position))
    }
}

fn text(n: usize, fill: char) -> String {
    std::iter::repeat_n(fill, n).collect()
}

#[actix_web::test]
async fn drafts_bigger_than_a_broker_message_travel_end_to_end() {
    let db = TestDatabase::create().await;
    let postgres = PostgresStore::open(PostgresConfig::new(db.url()))
        .await
        .unwrap();
    let pool = postgres.pool().clone();
    let store: Arc<dyn EventStore> = Arc::new(postgres);
    let wire = WireSettings {
        max_message_bytes: MAX_MESSAGE,
        ..WireSettings::default()
    };
    let amqp = AmqpBroker::connect(AmqpConfig::new(herald_testkit::amqp_url(), wire))
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is not reachable ({e}); start it with `rabbitmq-server -detached`")
        });
    let topic = Topic::for_domain(&Domain::new("drafts").unwrap());
    let audit = ConsumerGroup::new("big-drafts-audit").unwrap();
    let groups = [
        audit.clone(),
        ConsumerGroup::new(herald_projections::LIVE_GROUP).unwrap(),
    ];
    // What an earlier, interrupted run may have left.
    amqp.delete_topology(std::slice::from_ref(&topic), &groups)
        .await
        .unwrap();
    let broker: Arc<dyn Broker> = Arc::new(amqp.clone());
    // Subscribed before anything is published: RabbitMQ keeps messages only
    // for queues that exist.
    let mut downstream = broker
        .subscribe(&audit, std::slice::from_ref(&topic))
        .await
        .unwrap();

    let runner = ProjectionRunner::new(pool, Arc::clone(&store), vec![Arc::new(DraftsProjection)])
        .with_config(RunnerConfig {
            // Only deliveries can explain prompt progress.
            poll_interval: Duration::from_secs(30),
            ..RunnerConfig::default()
        })
        .with_broker(Arc::clone(&broker), vec![topic.clone()]);
    runner.install().await.unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        let stop = stop.clone();
        async move { runner.run(stop).await }
    });
    let relay = Relay::new(
        Arc::clone(&store),
        Arc::clone(&broker),
        RelayConfig::default(),
    )
    .spawn(stop.clone());

    let registry = EventRegistry::builtin().unwrap();
    let drafts = AggregateGroup::<Draft>::new(
        Arc::clone(&store),
        registry,
        ActorRuntime::start(1),
        GroupConfig::default(),
    );
    let mut state = support::state(
        Arc::clone(&store),
        Limits {
            max_body_bytes: 1024 * 1024,
            max_events_per_append: 10,
            body_timeout: herald::config::DEFAULT_BODY_TIMEOUT,
        },
    )
    .await;
    state.domains = Domains::default().with(Arc::new(drafts));
    state.broker = Arc::clone(&broker);
    state.read_side = Some(runner.clone().into());
    let (_, key) = support::create_key(
        &store,
        "acme",
        &["publish:drafts", "read:drafts"],
        Some(100_000),
    )
    .await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let post = |path: &str, body: Value| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .set_json(body)
            .to_request()
    };
    let get = |path: &str| {
        test::TestRequest::get()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request()
    };

    // The document grows far past one message.
    let mut expected = json!({"title": "Big", "sections": [text(CHUNK, 'a')]});
    let created = test::call_service(
        &app,
        post(
            "/v1/drafts/big/create",
            json!({"title": "Big", "document": expected}),
        ),
    )
    .await;
    assert_eq!(created.status(), 201);
    for i in 0..PATCHES {
        let section = text(CHUNK, char::from(b'b' + i as u8));
        let answer = test::call_service(
            &app,
            post(
                "/v1/drafts/big/apply_patch",
                json!({"patch": [{"op": "add", "path": "/sections/-", "value": section}],
                       "base_version": i + 1}),
            ),
        )
        .await;
        assert_eq!(answer.status(), 201, "patch {i}");
        expected["sections"]
            .as_array_mut()
            .unwrap()
            .push(json!(section));
    }
    let published = test::call_service(&app, post("/v1/drafts/big/publish", json!({}))).await;
    assert_eq!(published.status(), 201);
    let size = serde_json::to_vec(&expected).unwrap().len();
    assert!(size > 30 * MAX_MESSAGE, "the document is {size} bytes");

    // Downstream: every event arrives, the big ones as claim checks that
    // resolve through the store to the full event.
    let loader = StoreLoader(Arc::clone(&store));
    let mut claim_checks = 0;
    let mut seen = Vec::new();
    while seen.len() < PATCHES + 2 {
        let delivery = tokio::time::timeout(WAIT, downstream.next())
            .await
            .expect("every event is delivered within a minute")
            .expect("the subscription stays open")
            .expect("a delivery");
        let payload = delivery.content.clone().expect("a readable message");
        if matches!(payload, Payload::ClaimCheck(_)) {
            claim_checks += 1;
        }
        let event = payload
            .resolve(&loader)
            .await
            .expect("the claim check resolves");
        seen.push((
            event.event_type.as_str().to_owned(),
            serde_json::to_vec(&event.payload).unwrap().len(),
        ));
        delivery.ack().await.unwrap();
    }
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types[0], "drafts.draft_created");
    assert_eq!(types[PATCHES + 1], "drafts.draft_published");
    assert_eq!(
        claim_checks,
        PATCHES + 1,
        "every event over 8 KB went as a claim check"
    );
    assert!(seen[1..=PATCHES].iter().all(|(_, bytes)| *bytes > CHUNK));

    // The read model serves the whole document, now and at every version.
    let current = eventually(WAIT, || async {
        let answer = test::call_service(&app, get("/v1/views/drafts/big")).await;
        if answer.status() != 200 {
            return false;
        }
        let body: Value = test::read_body_json(answer).await;
        body["document"] == expected
    })
    .await;
    assert!(current, "the read model serves the complete document");
    let answer = test::call_service(&app, get("/v1/views/drafts/big?version=3")).await;
    assert_eq!(answer.status(), 200);
    let at_three: Value = test::read_body_json(answer).await;
    assert_eq!(
        at_three["document"]["sections"].as_array().unwrap().len(),
        3
    );
    assert_eq!(at_three["document"]["sections"][2], json!(text(CHUNK, 'c')));

    // And the aggregate agrees.
    let answer = test::call_service(&app, get("/v1/drafts/big")).await;
    assert_eq!(answer.status(), 200);
    let aggregate: Value = test::read_body_json(answer).await;
    assert_eq!(aggregate["state"]["document"], expected);

    stop_tx.send(true).unwrap();
    relay.await.unwrap();
    drop(downstream);
    amqp.delete_topology(std::slice::from_ref(&topic), &groups)
        .await
        .unwrap();
    amqp.close().await;
}
