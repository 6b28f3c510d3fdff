//! Every read model of `herald serve`, fed live while 100,000 events are
//! appended, then rebuilt blue-green from the log all at once: the rebuilt
//! tables equal the live ones row for row, and the query API answers
//! throughout the rebuild (from the old tables until the switch, then from
//! the new ones).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use herald::api;
use herald_testkit::TestDatabase;

#[path = "../benches/support/workload.rs"]
mod workload;

const EVENTS: usize = 100_000;
const QUERIES: &[&str] = &[
    "/v1/views/tickets?limit=5",
    "/v1/views/edges?limit=5",
    "/v1/views/timers?limit=5",
    "/v1/views/countdowns?limit=5",
    "/v1/views/drafts?limit=5",
    "/v1/views/statistics?from=2026-11-01&to=2026-11-30&group_by=day",
    "/v1/views/streams?limit=5",
];

#[actix_web::test]
async fn every_read_model_rebuilt_from_100k_events_equals_the_live_one() {
    let db = TestDatabase::create().await;
    let (state, runner, _stop) =
        support::postgres_state_with_projections(&db, herald_projections::read_models::all()).await;
    let store = Arc::clone(&state.store);
    let (_, key) = support::create_key(&store, "acme", &["read:*"], Some(1_000_000)).await;
    let (_, admin_key) = support::create_key(&store, "acme", &["admin:*"], Some(1_000_000)).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;

    // The read models follow the log while it is written.
    let appended = workload::append_all(
        &store,
        workload::mixed(EVENTS, &["acme", "globex", "initech"], 11),
        32,
    )
    .await;
    assert!(appended >= EVENTS);
    support::caught_up(&runner, Duration::from_secs(600)).await;
    let names = runner.names();
    assert_eq!(names.len(), 6, "every domain has a read model: {names:?}");

    // The live tables, kept aside (the live generation is dropped after the
    // switch).
    let sql = db.connect().await;
    sql.batch_execute("CREATE SCHEMA live").await.unwrap();
    let mut tables = BTreeMap::new();
    for p in herald_projections::read_models::all() {
        let generation = runner.status(p.name()).await.unwrap().generation.unwrap();
        let schema = herald_projections::schema_name(p.name(), generation);
        for table in p.tables() {
            let copy = format!("live.{}_{table}", p.name());
            sql.batch_execute(&format!(
                "CREATE TABLE {copy} AS SELECT * FROM {schema}.{table}"
            ))
            .await
            .unwrap();
            tables.insert(copy, (p.name(), *table, generation));
        }
    }
    let rows: i64 = {
        let mut total = 0;
        for copy in tables.keys() {
            total += sql
                .query_one(&format!("SELECT count(*) FROM {copy}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0);
        }
        total
    };
    assert!(rows > 10_000, "the live read models hold {rows} rows");

    // Rebuild everything at once while queries keep coming.
    for name in &names {
        runner.rebuild(name).await.expect("start a rebuild");
    }
    let rebuilding = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicU64::new(0));
    let query = |path: &str, key: &str| {
        test::TestRequest::get()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request()
    };
    let mut during_rebuild = 0u64;
    while rebuilding.load(Ordering::SeqCst) {
        for path in QUERIES {
            let answer = test::call_service(&app, query(path, &key)).await;
            assert_eq!(answer.status(), 200, "{path} answers during the rebuild");
            let body: serde_json::Value = test::read_body_json(answer).await;
            let listed = body["items"].as_array().or(body["rows"].as_array());
            assert!(
                listed.is_some_and(|l| !l.is_empty()),
                "{path} answers with rows during the rebuild: {body}"
            );
            answered.fetch_add(1, Ordering::SeqCst);
        }
        let status = test::call_service(&app, query("/v1/projections", &admin_key)).await;
        assert_eq!(status.status(), 200);
        let body: serde_json::Value = test::read_body_json(status).await;
        let building = body["projections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["rebuild"].is_null())
            .count();
        if building > 0 {
            during_rebuild += 1;
        } else {
            rebuilding.store(false, Ordering::SeqCst);
        }
    }
    assert!(
        during_rebuild > 0,
        "queries were answered while the rebuild ran ({} answers)",
        answered.load(Ordering::SeqCst)
    );
    support::caught_up(&runner, Duration::from_secs(600)).await;

    // The rebuilt tables equal the live ones.
    for (copy, (name, table, live_generation)) in &tables {
        let generation = runner.status(name).await.unwrap().generation.unwrap();
        assert!(
            generation > *live_generation,
            "{name} switched to its rebuild"
        );
        let schema = herald_projections::schema_name(name, generation);
        let differing: i64 = sql
            .query_one(
                &format!(
                    "SELECT count(*) FROM ((SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM {copy}) \
                     UNION ALL (SELECT * FROM {copy} EXCEPT ALL SELECT * FROM {schema}.{table})) d"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            differing, 0,
            "{name}.{table}: the rebuild equals the live table"
        );
    }
}
