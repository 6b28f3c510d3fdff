//! Try before switching on: a dry run over a stretch of history lists, in
//! order, what an automation would do — and the live automation then does
//! exactly that on the same history. Through `herald serve`'s HTTP API: the
//! same script of tickets and notes runs twice (ids `a-…`, then `b-…`); the
//! unsaved definition is tried on the first run, then saved and enabled
//! before the second. The dry run's decisions (condition values, the events
//! it would append, the commands it would send, the per-action conditions
//! and lookups of the ticket's state) equal the live effects of the second
//! run, ids aside; a dry run of the saved automation over the second run
//! names them exactly, and still runs once it is disabled.

mod support;

use std::time::Duration;

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, Herald};

const PATIENCE: Duration = Duration::from_secs(60);

fn automation() -> Value {
    json!({
        "name": "note-watch",
        "trigger": {"event": {"types": ["tickets.note_appended"]}},
        "with": {"ticket": {"domain": "tickets", "id": "{{ event.stream_id }}"}},
        "when": "event.payload.author != 'bot' && state.ticket.status == 'open'",
        "actions": [
            {"event": {"stream": "audit/{{ event.stream_id }}", "type": "audit.note_seen",
                       "payload": {"ticket": "{{ event.stream_id }}", "author": "{{ event.payload.author }}",
                                   "notes": "{{ state.ticket.notes }}"}}},
            {"command": {"domain": "tickets", "id": "{{ event.stream_id }}", "name": "assign",
                         "body": {"assignee": "{{ event.payload.author }}", "assigned_by": "note-watch"},
                         "when": "event.payload.note.contains('urgent')"}}
        ]
    })
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("herald answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    call(client, reqwest::Method::POST, url, Some(body)).await
}

async fn head(client: &reqwest::Client, base: &str) -> u64 {
    let (status, page) = call(
        client,
        reqwest::Method::GET,
        format!("{base}/v1/events?limit=1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["head"].as_u64().expect("the log head")
}

/// The same tickets and notes, with ids `{prefix}-N`.
async fn script(client: &reqwest::Client, base: &str, prefix: &str) {
    let t = |n: u32| format!("{base}/v1/tickets/{prefix}-{n}");
    for n in 1..=3 {
        let (status, body) = post(
            client,
            format!("{}/open", t(n)),
            json!({"kind": "other", "customer": "acme", "description": "d", "opened_by": "me"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let notes = [
        (1, "alice", "first look"),
        (1, "bot", "automatic reminder"),
        (2, "bob", "urgent: customer waiting"),
        (1, "carol", "urgent as well"),
        (3, "alice", "looks fine"),
    ];
    for (n, author, note) in notes {
        let (status, body) = post(
            client,
            format!("{}/append_note", t(n)),
            json!({"note": note, "author": author}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(
        client,
        format!("{}/resolve", t(3)),
        json!({"resolution": "ok"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // On a resolved ticket the condition is false.
    let (status, body) = post(
        client,
        format!("{}/append_note", t(3)),
        json!({"note": "urgent after all", "author": "dave"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// One trigger: its stream, whether it acted, and its effects as
/// `(stream, type, fields)`.
type Decided = (String, bool, Vec<(String, String, Value)>);

/// A dry run's decisions as (trigger stream, condition, [effects]), each
/// effect `(stream, type, fields)` as the live run would record it.
fn planned(report: &Value) -> Vec<Decided> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d.get("error").is_none(), "a decision failed: {d}");
            let effects = d["actions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| {
                    let action = a.get("action")?;
                    Some(match action["kind"].as_str().unwrap() {
                        "event" => (
                            action["stream"].as_str().unwrap().to_owned(),
                            action["type"].as_str().unwrap().to_owned(),
                            action["payload"].clone(),
                        ),
                        "command" => {
                            assert_eq!(action["name"], "assign");
                            (
                                format!(
                                    "{}/{}",
                                    action["domain"].as_str().unwrap(),
                                    action["id"].as_str().unwrap()
                                ),
                                "tickets.ticket_assigned".to_owned(),
                                action["body"].clone(),
                            )
                        }
                        other => panic!("unexpected action {other}"),
                    })
                })
                .collect();
            (
                d["trigger"]["stream"].as_str().unwrap().to_owned(),
                d["condition"].as_bool().unwrap(),
                effects,
            )
        })
        .collect()
}

async fn stream(client: &reqwest::Client, base: &str, stream: &str) -> Vec<Value> {
    let (status, page) = call(
        client,
        reqwest::Method::GET,
        format!("{base}/v1/streams/{stream}/events?limit=1000"),
        None,
    )
    .await;
    if status == 404 {
        return Vec::new();
    }
    page["events"].as_array().cloned().unwrap_or_default()
}

/// What the live automation did, in the same shape as [`planned`]: for
/// each note of the run's tickets in log order, the effects it caused.
async fn done(client: &reqwest::Client, base: &str, prefix: &str) -> Vec<Decided> {
    let mut notes = Vec::new();
    let mut effects = Vec::new();
    for n in 1..=3 {
        let tickets = stream(client, base, &format!("tickets/{prefix}-{n}")).await;
        notes.extend(
            tickets
                .iter()
                .filter(|e| e["type"] == "tickets.note_appended")
                .cloned(),
        );
        effects.extend(
            tickets
                .into_iter()
                .filter(|e| e["producer"] == "automation:note-watch"),
        );
        effects.extend(stream(client, base, &format!("audit/{prefix}-{n}")).await);
    }
    notes.sort_by_key(|e| e["position"].as_u64().unwrap());
    notes
        .iter()
        .map(|note| {
            let caused: Vec<_> = {
                let mut caused: Vec<&Value> = effects.iter().filter(|e| e["causation_id"] == note["id"]).collect();
                // Actions run in order: the event first, then the command.
                caused.sort_by_key(|e| e["position"].as_u64().unwrap());
                caused
                    .into_iter()
                    .map(|e| {
                        let mut fields = e["payload"].clone();
                        if e["type"] == "tickets.ticket_assigned" {
                            fields = json!({"assignee": fields["assignee"], "assigned_by": fields["assigned_by"]});
                        }
                        (e["stream"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().to_owned(), fields)
                    })
                    .collect()
            };
            let acted = !caused.is_empty();
            (note["stream"].as_str().unwrap().to_owned(), acted, caused)
        })
        .collect()
}

fn renamed(plan: &[Decided], from: &str, to: &str) -> Vec<Decided> {
    let text = serde_json::to_string(plan)
        .unwrap()
        .replace(&format!("{from}-"), &format!("{to}-"));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_lists_what_the_live_automation_does() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        format!("{base}/v1/schemas"),
        json!({"type": "audit.note_seen", "schema": {"type": "object", "required": ["ticket", "author", "notes"],
               "properties": {"ticket": {"type": "string"}, "author": {"type": "string"}, "notes": {"type": "integer"}}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The first run, then the unsaved definition tried on it.
    let before_a = head(&client, &base).await;
    script(&client, &base, "a").await;
    let after_a = head(&client, &base).await;
    let (status, report_a) = post(
        &client,
        format!("{base}/v1/automations/dry-run"),
        json!({"definition": automation(), "after": before_a, "until": after_a}),
    )
    .await;
    assert_eq!(status, 200, "{report_a}");
    let plan_a = planned(&report_a);
    // Six notes: four acted on (the bot's and the resolved ticket's not),
    // two of them urgent.
    assert_eq!(plan_a.len(), 6, "{report_a}");
    assert_eq!(plan_a.iter().filter(|d| d.1).count(), 4, "{report_a}");
    assert_eq!(
        plan_a.iter().map(|d| d.2.len()).sum::<usize>(),
        6,
        "{report_a}"
    );
    // Nothing was done.
    assert!(stream(&client, &base, "audit/a-1").await.is_empty());

    // Saved and enabled, then the same history again.
    let (status, body) = post(&client, format!("{base}/v1/automations"), automation()).await;
    assert_eq!(status, 201, "{body}");
    let applied_at = body["position"].as_u64().unwrap();
    script(&client, &base, "b").await;
    let after_b = head(&client, &base).await;
    let caught_up = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (_, shown) = call(
                &client,
                reqwest::Method::GET,
                format!("{base}/v1/automations/note-watch"),
                None,
            )
            .await;
            shown["stats"]["matched"].as_u64() == Some(6)
                && shown["stats"]["as_of_position"].as_u64() >= Some(after_b)
        }
    })
    .await;
    assert!(caught_up, "the engine did not handle the second run");
    let live_b = done(&client, &base, "b").await;
    // What the live automation did is what the dry run listed.
    let mut expected: Vec<_> = renamed(&plan_a, "a", "b");
    // A decision whose condition is false did nothing.
    for d in &mut expected {
        d.1 = !d.2.is_empty();
    }
    assert_eq!(live_b, expected, "the live effects differ from the dry run");

    // The saved automation tried on the second run names them exactly, and
    // a disabled one can still be tried in place.
    let (status, body) = post(
        &client,
        format!("{base}/v1/automations/note-watch/disable"),
        json!({"reason": "test"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, report_b) = post(
        &client,
        format!("{base}/v1/automations/dry-run"),
        json!({"name": "note-watch", "after": applied_at, "until": after_b}),
    )
    .await;
    assert_eq!(status, 200, "{report_b}");
    let mut plan_b = planned(&report_b);
    for d in &mut plan_b {
        d.1 = !d.2.is_empty();
    }
    assert_eq!(plan_b, live_b);
    assert_eq!(report_b["decisions"][0]["version"], 1);
    // Disabled: the engine acts no more.
    script(&client, &base, "c").await;
    let (_, shown) = call(
        &client,
        reqwest::Method::GET,
        format!("{base}/v1/automations/note-watch"),
        None,
    )
    .await;
    assert_eq!(shown["enabled"], false, "{shown}");
    let status = herald.terminate(PATIENCE);
    assert!(status.success());
}
