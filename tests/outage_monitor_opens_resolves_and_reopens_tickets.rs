//! The outage scenario end to end through the HTTP API, on Postgres, with
//! the in-process broker and with RabbitMQ: an edge goes offline → after
//! the recheck its outage ticket is open; it comes back online → the ticket
//! is resolved; it goes offline again → the same ticket is reopened. Every
//! event the monitor reacts to is then delivered to it a second time (and
//! the first outage's twice more): no second ticket and no extra ticket
//! event appear.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use herald::api;
use herald::config::ActorSettings;
use herald::relay::{Relay, RelayConfig};
use herald_actors::GroupConfig;
use herald_brokers::Broker;
use herald_events::{Domain, EventRegistry, StreamId, StreamVersion, TenantId};
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(30);

fn suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

async fn scenario(broker: Arc<dyn Broker>, edge: &str) {
    let db = TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        PostgresStore::open(PostgresConfig::new(db.url()))
            .await
            .expect("open the Postgres store"),
    );
    let registry = EventRegistry::builtin().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let settings = ActorSettings {
        group: GroupConfig::default(),
        threads: 2,
        outage_recheck: Duration::from_millis(500),
    };
    let running = herald::domains::start(
        &settings,
        &store,
        &registry,
        &broker,
        &Default::default(),
        stopped.clone(),
    )
    .await;
    let relay = Relay::new(
        Arc::clone(&store),
        Arc::clone(&broker),
        RelayConfig::default(),
    )
    .spawn(stopped);
    let mut state = support::state(Arc::clone(&store), support::TEST_LIMITS).await;
    state.domains = running.domains.clone();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    let command = |path: String, body: Value| {
        test::TestRequest::post()
            .uri(&path)
            .set_json(body)
            .to_request()
    };
    let report = |state: &str| json!({"state": state, "links": [{"name": "wan0", "latency_ms": 12.0, "jitter_ms": 1.0, "packet_loss_pct": 0.0}]});
    let ticket_path = format!("/v1/tickets/outage.{edge}");

    let resp = test::call_service(
        &app,
        command(
            format!("/v1/edges/{edge}/register"),
            json!({"customer": "acme", "serial": "SN-1", "site": "Lyon"}),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = test::call_service(
        &app,
        command(format!("/v1/edges/{edge}/report_status"), report("online")),
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());

    // Offline: after the recheck, one outage ticket is open.
    let resp = test::call_service(
        &app,
        command(format!("/v1/edges/{edge}/report_status"), report("offline")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let ticket = |status: &'static str| {
        let app = &app;
        let path = ticket_path.clone();
        move || {
            let path = path.clone();
            async move {
                let resp =
                    test::call_service(app, test::TestRequest::get().uri(&path).to_request()).await;
                if resp.status() != StatusCode::OK {
                    return false;
                }
                let body: Value = test::read_body_json(resp).await;
                body["state"]["status"] == status
            }
        }
    };
    assert!(
        eventually(PATIENCE, ticket("open")).await,
        "no outage ticket opened after the recheck"
    );

    // Online: resolved.
    let resp = test::call_service(
        &app,
        command(format!("/v1/edges/{edge}/report_status"), report("online")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        eventually(PATIENCE, ticket("resolved")).await,
        "the outage ticket was not resolved"
    );

    // The monitor's inputs so far, delivered again: nothing may change.
    let tenant = TenantId::default_tenant();
    let edge_stream = StreamId::new(Domain::new("edges").unwrap(), edge).unwrap();
    let edge_events = store
        .read_stream(&tenant, &edge_stream, StreamVersion(1), 100)
        .await
        .unwrap();
    broker.publish_batch(&edge_events).await.unwrap();

    // Offline again: the same ticket reopened.
    let resp = test::call_service(
        &app,
        command(format!("/v1/edges/{edge}/report_status"), report("offline")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let reopened = eventually(PATIENCE, || async {
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri(&ticket_path).to_request(),
        )
        .await;
        let body: Value = test::read_body_json(resp).await;
        body["state"]["status"] == "open" && body["state"]["times_reopened"] == 1
    })
    .await;
    assert!(reopened, "the outage ticket was not reopened");

    // Everything once more, then a marker: once the marker's effect shows,
    // the repeats before it (same stream, same partition) were handled.
    let edge_events = store
        .read_stream(&tenant, &edge_stream, StreamVersion(1), 100)
        .await
        .unwrap();
    broker.publish_batch(&edge_events).await.unwrap();
    let resp = test::call_service(
        &app,
        command(format!("/v1/edges/{edge}/report_status"), report("online")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        eventually(PATIENCE, ticket("resolved")).await,
        "the reopened ticket was not resolved"
    );

    let ticket_stream =
        StreamId::new(Domain::new("tickets").unwrap(), format!("outage.{edge}")).unwrap();
    let history: Vec<String> = store
        .read_stream(&tenant, &ticket_stream, StreamVersion(1), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type.to_string())
        .collect();
    assert_eq!(
        history,
        [
            "tickets.ticket_opened",
            "tickets.ticket_resolved",
            "tickets.ticket_reopened",
            "tickets.ticket_resolved"
        ],
        "one ticket, each transition once"
    );
    // Only one outage ticket exists for the edge: no other ticket stream
    // was opened by the monitor.
    let opened = store
        .search(&herald_store::SearchQuery {
            types: vec!["tickets.ticket_opened".into()],
            ..herald_store::SearchQuery::new(tenant.clone())
        })
        .await
        .unwrap();
    assert_eq!(opened.events.len(), 1, "{:?}", opened.events);
    // Each event caused by the monitor names its cause and correlation.
    let first = &store
        .read_stream(&tenant, &ticket_stream, StreamVersion(1), 1)
        .await
        .unwrap()[0];
    assert_eq!(first.producer, "reaction:outage-monitor");
    assert_ne!(first.causation_id, first.id.as_uuid());

    let _ = stop.send(true);
    let _ = relay.await;
    running.stop().await;
    store.close().await;
}

#[actix_web::test]
async fn on_the_in_process_broker() {
    let broker: Arc<dyn Broker> =
        Arc::new(herald_brokers::memory::MemoryBroker::new(Default::default()));
    scenario(broker, &format!("E-{}", suffix())).await;
}

#[cfg(feature = "amqp")]
#[actix_web::test]
async fn on_rabbitmq() {
    use herald_brokers::amqp::{AmqpBroker, AmqpConfig};
    use herald_brokers::{ConsumerGroup, Topic, WireSettings};

    let amqp = AmqpBroker::connect(AmqpConfig::new(
        herald_testkit::amqp_url(),
        WireSettings::default(),
    ))
    .await
    .unwrap_or_else(|e| {
        panic!(
            "RabbitMQ at {} is not reachable ({e}); start it with `rabbitmq-server -detached`",
            herald_testkit::amqp_url()
        )
    });
    let topics: Vec<Topic> = ["edges", "tickets", "timers"]
        .iter()
        .map(|d| Topic::for_domain(&Domain::new(*d).unwrap()))
        .collect();
    let groups = [ConsumerGroup::new("reaction.outage-monitor").unwrap()];
    // What an earlier, interrupted run may have left.
    amqp.delete_topology(&topics, &groups).await.unwrap();
    scenario(Arc::new(amqp.clone()), &format!("E-{}", suffix())).await;
    amqp.delete_topology(&topics, &groups).await.unwrap();
    amqp.close().await;
}
