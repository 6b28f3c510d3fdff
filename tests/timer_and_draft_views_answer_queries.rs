//! `/v1/views/timers`, `/v1/views/countdowns` and `/v1/views/drafts` answer
//! from the read models over Postgres: lists filter, sort and page (every
//! row exactly once across pages), a draft is answered at a version and at
//! an instant, each tenant sees only its own rows, a key without `read` on
//! the domain gets 403, malformed parameters 400, and unknown ids 404.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use chrono::{DateTime, TimeDelta, Utc};
use herald::api;
use herald_events::drafts::{DraftCreated, DraftDeleted, DraftPatched, DraftPublished};
use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownViewed, Delivery, DeliveryKind, TimerCancelled,
    TimerFired, TimerScheduled,
};
use herald_events::{NewEvent, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::drafts::DraftsProjection;
use herald_projections::read_models::timers::TimersProjection;
use herald_store::ExpectedVersion;
use herald_testkit::TestDatabase;
use serde_json::{json, Value};
use support::create_key;

fn t(offset_secs: i64) -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(offset_secs)
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn schedule(due: i64) -> NewEvent {
    TimerScheduled {
        due_at: t(due),
        every_secs: None,
        deliver: Delivery {
            kind: DeliveryKind::Command,
            domain: "tickets".into(),
            stream_id: "T-1".into(),
            name: "close".into(),
            body: serde_json::Map::new(),
        },
        correlation_id: None,
        label: Some(format!("due at {due}")),
    }
    .to_new_event()
}

fn draft(title: &str, at: i64) -> NewEvent {
    DraftCreated {
        title: title.into(),
        document: json!({"body": title}).as_object().unwrap().clone(),
        created_by: None,
    }
    .to_new_event()
    .occurred_at(t(at))
}

fn body_patch(body: &str, version: u64, at: i64) -> NewEvent {
    DraftPatched {
        patch: serde_json::from_value(json!([{"op": "replace", "path": "/body", "value": body}]))
            .unwrap(),
        base_version: version - 1,
        version,
        author: Some("grace".into()),
    }
    .to_new_event()
    .occurred_at(t(at))
}

async fn answer(response: ServiceResponse) -> (StatusCode, Value) {
    let status = response.status();
    let body = test::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn timer_and_draft_views_answer_queries() {
    let db = TestDatabase::create().await;
    let (state, runner, _stop) = support::postgres_state_with_projections(
        &db,
        vec![Arc::new(TimersProjection), Arc::new(DraftsProjection)],
    )
    .await;
    let store = Arc::clone(&state.store);
    let (_, acme) = create_key(
        &store,
        "acme",
        &["read:timers", "read:drafts"],
        Some(100_000),
    )
    .await;
    let (_, tickets_only) = create_key(&store, "acme", &["read:tickets"], Some(100_000)).await;
    let (_, globex) = create_key(&store, "globex", &["read:*"], Some(100_000)).await;
    let append = |tenant: &str, stream: &str, events: Vec<NewEvent>| {
        let store = Arc::clone(&store);
        let tenant = TenantId::new(tenant).unwrap();
        let stream: StreamId = stream.parse().unwrap();
        async move {
            store
                .append(&tenant, &stream, ExpectedVersion::Any, events)
                .await
                .expect("append");
        }
    };

    // acme: 12 timers due at 0, 10, ..., 110; t03 fired, t07 cancelled.
    for i in 0..12 {
        let mut events = vec![schedule(i * 10)];
        if i == 3 {
            events.push(
                TimerFired {
                    occurrence: 1,
                    due_at: t(30),
                    fired_at: t(31),
                    late: false,
                    next_due_at: None,
                }
                .to_new_event(),
            );
        }
        if i == 7 {
            events.push(TimerCancelled { reason: None }.to_new_event());
        }
        append("acme", &format!("timers/t{i:02}"), events).await;
    }
    let far = "2999-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    for (id, views) in [("c-a", 3u64), ("c-b", 1), ("c-c", 2)] {
        let mut events = vec![CountdownCreated {
            deadline: far,
            label: id.into(),
            style: herald_events::timers::CountdownStyle::v2_default(),
        }
        .to_new_event()];
        for n in 1..=views {
            // The first view as Herald stored it before version 2: the read
            // model reads it through the upcaster.
            events.push(if n == 1 {
                herald_events::NewEvent::new(
                    CountdownViewed::event_type(),
                    herald_events::SchemaVersion::new(1).unwrap(),
                    serde_json::json!({"views": 1, "viewed_at": t(1)}),
                )
            } else {
                CountdownViewed {
                    views: n,
                    viewed_at: t(n as i64),
                    client: herald_events::timers::ViewerClient::Other,
                }
                .to_new_event()
            });
        }
        append("acme", &format!("timers/{id}"), events).await;
    }
    append(
        "acme",
        "timers/c-old",
        vec![
            // Created before countdowns had a style (version 1).
            herald_events::NewEvent::new(
                CountdownCreated::event_type(),
                herald_events::SchemaVersion::new(1).unwrap(),
                serde_json::json!({"deadline": t(100), "label": "old"}),
            ),
            CountdownExpired {
                deadline: t(100),
                views: 0,
            }
            .to_new_event(),
        ],
    )
    .await;
    // acme drafts: d0..d4 created at 0, 100, ..., 400; d1 patched twice
    // and published at version 2; d4 deleted.
    for i in 0..5 {
        let title = if i % 2 == 0 { "Plan" } else { "Notes" };
        let mut events = vec![draft(&format!("{title} {i}"), i * 100)];
        if i == 1 {
            events.extend([
                body_patch("second", 2, 110),
                DraftPublished {
                    version: 2,
                    published_by: Some("ada".into()),
                }
                .to_new_event()
                .occurred_at(t(115)),
                body_patch("third", 3, 120),
            ]);
        }
        if i == 4 {
            events.push(
                DraftDeleted { reason: None }
                    .to_new_event()
                    .occurred_at(t(450)),
            );
        }
        append("acme", &format!("drafts/d{i}"), events).await;
    }
    // globex: the same ids, its own facts.
    append("globex", "timers/t00", vec![schedule(5000)]).await;
    append("globex", "drafts/d1", vec![draft("Globex", 0)]).await;
    support::caught_up(&runner, Duration::from_secs(30)).await;

    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let get = |key: &str, path: &str| {
        let request = test::TestRequest::get()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request();
        let app = &app;
        async move { answer(app.call(request).await.unwrap()).await }
    };
    // Every item of a list, following next_cursor; each page is full but
    // the last.
    let all_pages = |key: &str, path: &str| {
        let (key, path) = (key.to_owned(), path.to_owned());
        let get = &get;
        async move {
            let mut items = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let sep = if path.contains('?') { '&' } else { '?' };
                let url = match &next {
                    Some(cursor) => format!("{path}{sep}cursor={cursor}"),
                    None => path.clone(),
                };
                let (status, body) = get(&key, &url).await;
                assert_eq!(status, StatusCode::OK, "{url}: {body}");
                items.extend(body["items"].as_array().unwrap().iter().cloned());
                match body["next_cursor"].as_str() {
                    Some(cursor) => next = Some(cursor.to_owned()),
                    None => break,
                }
            }
            items
        }
    };
    let field = |items: &[Value], name: &str| -> Vec<String> {
        items
            .iter()
            .map(|i| i[name].as_str().unwrap().to_owned())
            .collect()
    };
    let numbers = |items: &[Value], name: &str| -> Vec<i64> {
        items.iter().map(|i| i[name].as_i64().unwrap()).collect()
    };

    // Timers: by due time, every one once across pages of 5.
    let timers = all_pages(&acme, "/v1/views/timers?limit=5").await;
    let expected: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
    assert_eq!(field(&timers, "id"), expected);
    let desc = all_pages(&acme, "/v1/views/timers?sort=id&order=desc&limit=5").await;
    assert_eq!(
        field(&desc, "id"),
        expected.iter().rev().cloned().collect::<Vec<_>>()
    );
    let pending = all_pages(&acme, "/v1/views/timers?status=pending&limit=4").await;
    assert_eq!(pending.len(), 10);
    assert!(pending.iter().all(|t| t["status"] == "pending"));
    let (_, fired) = get(&acme, "/v1/views/timers?status=fired").await;
    assert_eq!(field(fired["items"].as_array().unwrap(), "id"), ["t03"]);
    let window = format!(
        "/v1/views/timers?due_after={}&due_before={}",
        text(t(20)),
        text(t(50))
    );
    let (status, window) = get(&acme, &window).await;
    assert_eq!(status, StatusCode::OK, "{window}");
    assert_eq!(
        field(window["items"].as_array().unwrap(), "id"),
        ["t02", "t03", "t04"]
    );

    let (status, t03) = get(&acme, "/v1/views/timers/t03").await;
    assert_eq!(status, StatusCode::OK, "{t03}");
    assert_eq!(t03["timer"]["status"], "fired");
    assert_eq!(t03["timer"]["fired_count"], 1);
    assert_eq!(t03["timer"]["label"], "due at 30");
    assert_eq!(t03["firings"][0]["occurrence"], 1);
    assert_eq!(t03["firings"][0]["late"], false);
    assert_eq!(t03["timer"]["deliver"]["domain"], "tickets");

    // Countdowns: filters, sort by views, remaining time.
    let (_, running) = get(
        &acme,
        "/v1/views/countdowns?expired=false&sort=views&order=desc",
    )
    .await;
    let running = running["items"].as_array().unwrap().clone();
    assert_eq!(field(&running, "id"), ["c-a", "c-c", "c-b"]);
    assert_eq!(numbers(&running, "views"), [3, 2, 1]);
    let by_views = all_pages(&acme, "/v1/views/countdowns?sort=views&limit=1").await;
    assert_eq!(field(&by_views, "id"), ["c-old", "c-b", "c-c", "c-a"]);
    let (_, expired) = get(&acme, "/v1/views/countdowns?expired=true").await;
    assert_eq!(field(expired["items"].as_array().unwrap(), "id"), ["c-old"]);
    let (status, c_a) = get(&acme, "/v1/views/countdowns/c-a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (c_a["views"].as_i64(), c_a["expired"].as_bool()),
        (Some(3), Some(false))
    );
    assert!(c_a["remaining_secs"].as_i64().unwrap() > 30_000_000_000);
    let (_, c_old) = get(&acme, "/v1/views/countdowns/c-old").await;
    assert_eq!(c_old["remaining_secs"], 0);

    // Drafts: live by default, filters, pages, documents at versions.
    let live = all_pages(&acme, "/v1/views/drafts?sort=created_at&limit=2").await;
    assert_eq!(field(&live, "id"), ["d0", "d1", "d2", "d3"]);
    assert!(live.iter().all(|d| d.get("document").is_none()));
    assert!(live.iter().all(|d| d["size_bytes"].as_i64().unwrap() > 0));
    let (_, deleted) = get(&acme, "/v1/views/drafts?deleted=true").await;
    assert_eq!(field(deleted["items"].as_array().unwrap(), "id"), ["d4"]);
    let (_, published) = get(&acme, "/v1/views/drafts?published=true").await;
    assert_eq!(field(published["items"].as_array().unwrap(), "id"), ["d1"]);
    let (_, plans) = get(
        &acme,
        "/v1/views/drafts?title_prefix=Plan&sort=id&order=desc",
    )
    .await;
    assert_eq!(
        field(plans["items"].as_array().unwrap(), "id"),
        ["d2", "d0"]
    );
    let (_, by_update) = get(&acme, "/v1/views/drafts?order=desc").await;
    assert_eq!(
        field(by_update["items"].as_array().unwrap(), "id"),
        ["d3", "d2", "d1", "d0"],
        "d1 was last updated at 120, before d2 was created"
    );

    let (status, d1) = get(&acme, "/v1/views/drafts/d1").await;
    assert_eq!(status, StatusCode::OK, "{d1}");
    assert_eq!(d1["document"], json!({"body": "third"}));
    assert_eq!(
        (
            d1["draft"]["version"].as_i64(),
            d1["version"]["version"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(d1["draft"]["published_version"], 2);
    let (_, v2) = get(&acme, "/v1/views/drafts/d1?version=2").await;
    assert_eq!(v2["document"], json!({"body": "second"}));
    assert_eq!(
        (
            v2["version"]["published"].as_bool(),
            v2["version"]["author"].as_str()
        ),
        (Some(true), Some("grace"))
    );
    assert_eq!(
        v2["draft"]["version"], 3,
        "the draft's own version is the current one"
    );
    let (status, then) = get(&acme, &format!("/v1/views/drafts/d1?at={}", text(t(115)))).await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(then["version"]["version"], 2);
    assert_eq!(then["document"], json!({"body": "second"}));
    let (_, first) = get(&acme, &format!("/v1/views/drafts/d1?at={}", text(t(100)))).await;
    assert_eq!(
        (
            first["version"]["version"].as_i64(),
            first["version"]["kind"].as_str()
        ),
        (Some(1), Some("created"))
    );
    let (status, _) = get(&acme, &format!("/v1/views/drafts/d1?at={}", text(t(99)))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "d1 did not exist yet");
    let (status, _) = get(&acme, "/v1/views/drafts/d1?version=4").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, d4) = get(&acme, "/v1/views/drafts/d4").await;
    assert_eq!(
        (status, d4["draft"]["deleted"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let versions = all_pages(&acme, "/v1/views/drafts/d1/versions?limit=2").await;
    assert_eq!(numbers(&versions, "version"), [1, 2, 3]);
    assert_eq!(field(&versions, "kind"), ["created", "patched", "patched"]);
    let published: Vec<bool> = versions
        .iter()
        .map(|v| v["published"].as_bool().unwrap())
        .collect();
    assert_eq!(published, [false, true, false]);
    assert_eq!(versions[1]["published_by"], "ada");
    let newest_first = all_pages(&acme, "/v1/views/drafts/d1/versions?order=desc&limit=1").await;
    assert_eq!(numbers(&newest_first, "version"), [3, 2, 1]);

    // Tenants apart.
    let (_, theirs) = get(&globex, "/v1/views/timers").await;
    assert_eq!(field(theirs["items"].as_array().unwrap(), "id"), ["t00"]);
    assert_eq!(theirs["items"][0]["label"], "due at 5000");
    let (_, theirs) = get(&globex, "/v1/views/drafts/d1").await;
    assert_eq!(theirs["document"], json!({"body": "Globex"}));
    for path in [
        "/v1/views/timers/t01",
        "/v1/views/countdowns/c-a",
        "/v1/views/drafts/d0",
        "/v1/views/drafts/d0/versions",
    ] {
        let (status, problem) = get(&globex, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:not-found");
    }
    let (_, none) = get(&globex, "/v1/views/countdowns").await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["next_cursor"], Value::Null);

    // Unknown ids; a countdown is not a timer.
    for path in [
        "/v1/views/timers/nope",
        "/v1/views/timers/c-a",
        "/v1/views/countdowns/t01",
        "/v1/views/drafts/nope",
        "/v1/views/drafts/nope/versions",
    ] {
        let (status, problem) = get(&acme, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }

    // No read scope on the domain.
    for path in [
        "/v1/views/timers",
        "/v1/views/timers/t01",
        "/v1/views/countdowns",
        "/v1/views/countdowns/c-a",
        "/v1/views/drafts",
        "/v1/views/drafts/d1",
        "/v1/views/drafts/d1/versions",
    ] {
        let (status, problem) = get(&tickets_only, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:forbidden");
    }

    // Malformed parameters.
    let (_, first_page) = get(&acme, "/v1/views/timers?limit=2").await;
    let due_cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    for path in [
        "/v1/views/timers?status=late".to_owned(),
        "/v1/views/timers?due_before=yesterday".to_owned(),
        "/v1/views/timers?sort=label".to_owned(),
        "/v1/views/timers?order=up".to_owned(),
        "/v1/views/timers?limit=0".to_owned(),
        "/v1/views/timers?limit=501".to_owned(),
        "/v1/views/timers?cursor=garbage".to_owned(),
        format!("/v1/views/timers?sort=id&cursor={due_cursor}"),
        "/v1/views/timers?colour=red".to_owned(),
        "/v1/views/timers?limit=1&limit=2".to_owned(),
        "/v1/views/timers/t01?x=1".to_owned(),
        "/v1/views/countdowns?expired=maybe".to_owned(),
        "/v1/views/countdowns?sort=deadline&cursor=v1.e30".to_owned(),
        "/v1/views/drafts?deleted=yes".to_owned(),
        "/v1/views/drafts?sort=title".to_owned(),
        format!("/v1/views/drafts/d1?version=2&at={}", text(t(115))),
        "/v1/views/drafts/d1?version=0".to_owned(),
        "/v1/views/drafts/d1?version=two".to_owned(),
        "/v1/views/drafts/d1?at=noon".to_owned(),
        "/v1/views/drafts/d1/versions?cursor=nope".to_owned(),
        format!("/v1/views/drafts/d1/versions?cursor={due_cursor}"),
    ] {
        let (status, problem) = get(&acme, &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(
            problem["type"], "urn:herald:problem:invalid-query",
            "{path}"
        );
    }
}
