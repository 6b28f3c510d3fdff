//! What the console's Events and Audit pages stand on, against `herald
//! serve`: an event's page names its neighbours in the hash chain and walks
//! its causes back to the command that started them (an outage ticket the
//! monitor opened leads to the `report_status` that took the edge offline);
//! a correlation search lists what that command caused; an export holds
//! exactly the events the same search finds, as stored; a verification run
//! reports its progress and an intact chain; the anchor is the head.

mod support;

use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(30);

async fn get(client: &Client, url: String) -> Value {
    let answer = client.get(&url).send().await.unwrap();
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer.json().await.unwrap()
}

async fn post(client: &Client, url: String, body: Value) -> Value {
    let answer = client.post(&url).json(&body).send().await.unwrap();
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer.json().await.unwrap()
}

/// Every event a search finds, page by page.
async fn search_all(client: &Client, base: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_query = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let page = get(client, format!("{base}/v1/events/search?{page_query}")).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_page_leads_back_to_its_command_and_exports_match_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[("HERALD_OUTAGE_RECHECK", "200ms")],
    );
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // An edge goes offline; the monitor opens its outage ticket.
    let report = |state: &str| {
        json!({"state": state, "links": [{"name": "wan0", "latency_ms": 12.0,
            "jitter_ms": 1.0, "packet_loss_pct": 0.0}]})
    };
    post(
        &client,
        format!("{base}/v1/edges/E-1/register"),
        json!({"customer": "acme", "serial": "SN-1", "site": "Lyon"}),
    )
    .await;
    post(
        &client,
        format!("{base}/v1/edges/E-1/report_status"),
        report("online"),
    )
    .await;
    let offline = post(
        &client,
        format!("{base}/v1/edges/E-1/report_status"),
        report("offline"),
    )
    .await;
    let offline_ids: Vec<String> = offline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let ticket_query = "type=tickets.ticket_opened&stream=tickets%2Foutage.E-1";
    let opened = herald_testkit::eventually(PATIENCE, || {
        let client = &client;
        let base = &base;
        async move { !search_all(client, base, ticket_query).await.is_empty() }
    })
    .await;
    assert!(opened, "the monitor opened no outage ticket");
    let ticket = search_all(&client, &base, ticket_query).await.remove(0);

    // Its page: the neighbours' hashes are theirs, and the causes lead back
    // to the command's first event.
    let id = ticket["id"].as_str().unwrap();
    let page = get(&client, format!("{base}/v1/events/{id}")).await;
    assert_eq!(page["event"]["id"], id);
    let position = page["event"]["position"].as_u64().unwrap();
    let around = get(
        &client,
        format!("{base}/v1/events?from={}&limit=3", position - 1),
    )
    .await;
    let hash_at = |p: u64| {
        around["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["position"] == p)
            .map(|e| e["hash"].clone())
    };
    assert_eq!(page["previous"]["position"], position - 1);
    assert_eq!(
        Some(page["previous"]["hash"].clone()),
        hash_at(position - 1)
    );
    if let Some(next) = hash_at(position + 1) {
        assert_eq!(page["next"]["hash"], next);
    }
    let causes = page["caused_by"].as_array().unwrap();
    assert!(!causes.is_empty(), "{page}");
    assert_eq!(causes[0]["id"], ticket["causation_id"]);
    for pair in causes.windows(2) {
        assert_eq!(pair[1]["id"], pair[0]["causation_id"], "{page}");
    }
    let root = causes.last().unwrap();
    assert_eq!(root["causation_id"], root["id"], "the root began its chain");
    assert!(
        offline_ids.iter().any(|o| root["id"] == o.as_str()),
        "the root is the offline report's event: {root}"
    );
    assert!(root["producer"].as_str().unwrap().starts_with("http:"));
    assert!(root["type"].as_str().unwrap().starts_with("edges."));

    // What that command caused shares its correlation.
    let correlation = root["correlation_id"].as_str().unwrap();
    let chain = search_all(&client, &base, &format!("correlation={correlation}")).await;
    let chain_ids: Vec<&Value> = chain.iter().map(|e| &e["id"]).collect();
    assert!(chain_ids.contains(&&root["id"]) && chain_ids.contains(&&ticket["id"]));
    assert!(chain.iter().all(|e| e["correlation_id"] == correlation));

    // An export holds what the search finds, as stored; CSV has its header.
    let by_correlation = format!("correlation={correlation}");
    for filter in [
        "domain=edges",
        "type=tickets.*",
        by_correlation.as_str(),
        "from=2000-01-01T00:00:00Z",
    ] {
        let exported = client
            .get(format!("{base}/v1/events/export?{filter}"))
            .send()
            .await
            .unwrap();
        assert_eq!(exported.status(), 200);
        assert_eq!(exported.headers()["content-type"], "application/x-ndjson");
        let lines: Vec<Value> = exported
            .text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let found = search_all(&client, &base, &format!("{filter}&as_stored=true")).await;
        assert_eq!(lines, found, "{filter}");
        assert!(!lines.is_empty(), "{filter}");
    }
    let csv = client
        .get(format!("{base}/v1/events/export?format=csv&domain=edges"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "position,id,tenant,stream,stream_version,type,version,occurred_at,recorded_at,\
             correlation_id,causation_id,producer,payload,hash"
        )
    );
    assert_eq!(
        rows.count(),
        search_all(&client, &base, "domain=edges").await.len()
    );
    let refused = client
        .get(format!("{base}/v1/events/export?format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // A verification run reports progress to an intact verdict; the anchor
    // is the head.
    let run = post(&client, format!("{base}/v1/audit/verify/runs"), json!({})).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert!(run["total"].as_u64().unwrap() >= position);
    let done = herald_testkit::eventually(PATIENCE, || {
        let client = &client;
        let url = format!("{base}/v1/audit/verify/runs/{run_id}");
        async move { get(client, url).await["state"] == "done" }
    })
    .await;
    assert!(done, "the run did not finish");
    let run = get(&client, format!("{base}/v1/audit/verify/runs/{run_id}")).await;
    assert_eq!(run["report"]["intact"], true, "{run}");
    assert_eq!(run["checked"], run["report"]["checked"]);
    let anchor = get(&client, format!("{base}/v1/audit/anchor")).await;
    let head = get(&client, format!("{base}/v1/events?from=0&limit=1")).await;
    assert_eq!(anchor["position"], head["head"], "{anchor}");
    assert_eq!(
        anchor["anchor"],
        format!(
            "{}:{}",
            anchor["position"],
            anchor["hash"].as_str().unwrap()
        )
    );

    let status = herald.terminate(PATIENCE);
    assert!(status.success(), "herald exited with {status}");
}
