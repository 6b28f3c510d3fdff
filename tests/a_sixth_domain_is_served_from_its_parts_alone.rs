//! A sixth domain, `counters` (`tests/sixth_domain/`), made only of a
//! domain's parts — events and schema, aggregate, read model, view — and
//! the one line registering them, is served end to end by `herald serve`'s
//! library entry beside the five built-in ones on the embedded store: a
//! command on it commits, its state at a moment answers, its view answers,
//! `/openapi.json` lists its command and view, and `herald replay state`'s
//! entry point shows its state.

mod sixth_domain;
mod support;

use std::sync::Arc;
use std::time::Duration;

use herald::cli::replay::state::{answer, StateArgs};
use herald::cli::serve::{serve, Stop, StopWhen};
use herald::config::{FileConfig, ServeArgs, ServeConfig, StoreArgs};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{json, Value};

/// How long the server may take to start and the read model to catch up.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_domain_is_served_from_its_parts_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let store = StoreArgs {
        data_dir: Some(dir.path().to_owned()),
        ..StoreArgs::default()
    };
    let args = ServeArgs {
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        store: store.clone(),
        workers: Some(1),
        ..ServeArgs::default()
    };
    let config = ServeConfig::resolve(&args, &FileConfig::default()).unwrap();
    let list = || Arc::new(herald::domains::builtin().with(sixth_domain::domain()));

    // Herald on its own actix system, stopped when told.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let domains = list();
    let server = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(serve(
            config,
            PrometheusBuilder::new().build_recorder().handle(),
            domains,
            StopWhen::Told(Box::pin(async move {
                let _ = stop_rx.await;
                Stop {
                    signal: "test",
                    graceful: true,
                }
            })),
        ))
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = herald_testkit::eventually(PATIENCE, || async {
        assert!(!server.is_finished(), "Herald stopped while starting");
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(
        started,
        "Herald did not answer /healthz within {PATIENCE:?}"
    );

    // A command on it commits.
    let first = client
        .post(format!("{base}/v1/counters/c-1/increment"))
        .json(&json!({ "by": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first["events"][0]["type"], "counters.counter_incremented",
        "{first}"
    );
    let at = first["events"][0]["position"].as_u64().unwrap();
    let second = client
        .post(format!("{base}/v1/counters/c-1/increment"))
        .json(&json!({ "by": 4 }))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 201);
    // Its schema holds.
    let refused = client
        .post(format!("{base}/v1/streams/counters/c-2/events"))
        .json(&json!({ "type": "counters.counter_incremented", "payload": { "by": 0 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);

    // Its state now and at a moment.
    let now: Value = client
        .get(format!("{base}/v1/counters/c-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["state"], json!({ "total": 7 }), "{now}");
    let then = client
        .get(format!("{base}/v1/streams/counters/c-1?at={at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(then.status(), 200);
    let then: Value = then.json().await.unwrap();
    assert_eq!(then["state"], json!({ "total": 3 }), "{then}");
    assert_eq!(then["version"], 1);

    // Its view, once the read model has the events.
    let view_url = format!("{base}/v1/views/counters/c-1");
    let counted = herald_testkit::eventually(PATIENCE, || async {
        let Ok(r) = client.get(&view_url).send().await else {
            return false;
        };
        r.status() == 200 && r.json::<Value>().await.is_ok_and(|v| v["total"] == 7)
    })
    .await;
    assert!(
        counted,
        "the counters view did not count 7 within {PATIENCE:?}"
    );
    let view: Value = client
        .get(&view_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view, json!({ "id": "c-1", "total": 7 }));

    // The OpenAPI document lists its command and its view.
    let doc: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["CommandDomain"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("counters")),
        "{}",
        schemas["CommandDomain"]
    );
    assert!(schemas["CommandName"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("increment")));
    assert!(doc["paths"]["/v1/views/counters/{id}"]["get"].is_object());
    // The five built-in domains are still there.
    assert!(doc["paths"]["/v1/views/tickets"]["get"].is_object());

    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || server.join())
        .await
        .unwrap()
        .expect("the server thread")
        .expect("Herald stopped in order");

    // `herald replay state`'s entry point, given the same list.
    let state = answer(
        &list(),
        &StateArgs {
            domain: "counters".into(),
            id: "c-1".into(),
            at: at.to_string(),
            tenant: "default".into(),
            json: true,
        },
        &store,
        &FileConfig::default(),
    )
    .await
    .expect("replay state answers");
    assert_eq!(state.state, json!({ "total": 3 }));
    assert_eq!(state.events.len(), 1);
}
