//! Schedule triggers on the durable timers, through `herald serve`: a cron
//! automation (six fields, every second, in a time zone) and an `every`
//! automation each note a ticket at every firing, once per firing, at whole
//! instants of their cadence. Disabled, they act no more: the cron's
//! pending firing still arrives and is ignored, the `every` timer is
//! cancelled.

mod support;

use std::time::Duration;

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, get_json as get, post_json as post, Herald};

const PATIENCE: Duration = Duration::from_secs(60);

async fn events(client: &reqwest::Client, base: &str, stream: &str) -> Vec<Value> {
    get(
        client,
        format!("{base}/v1/streams/{stream}/events?limit=1000"),
    )
    .await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn notes(events: &[Value], author: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "tickets.note_appended" && e["payload"]["author"] == author)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_per_instant_and_stop_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        format!("{base}/v1/tickets/T-1/open"),
        json!({"kind": "other", "customer": "acme", "description": "d", "opened_by": "me"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // A cron firing names its due instant; an `every` firing its own event.
    for (name, schedule, note) in [
        (
            "cron-clock",
            json!({"cron": "* * * * * *", "timezone": "Asia/Kolkata"}),
            "tick {{ event.payload.due_at }}",
        ),
        ("every-clock", json!({"every": "1s"}), "tick {{ event.id }}"),
    ] {
        let definition = json!({
            "name": name,
            "trigger": {"schedule": schedule},
            "actions": [{"command": {"domain": "tickets", "id": "T-1", "name": "append_note",
                                     "body": {"note": note, "author": name}}}]
        });
        let (status, body) = post(&client, format!("{base}/v1/automations"), definition).await;
        assert_eq!(status, 201, "{body}");
    }

    // Three firings of each.
    let fired = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let all = events(&client, &base, "tickets/T-1").await;
            notes(&all, "cron-clock").len() >= 3 && notes(&all, "every-clock").len() >= 3
        }
    })
    .await;
    assert!(fired, "the schedules did not fire");
    // One note per firing: the cron's name whole seconds, all different.
    let all = events(&client, &base, "tickets/T-1").await;
    let cron: Vec<String> = notes(&all, "cron-clock")
        .iter()
        .map(|e| e["payload"]["note"].as_str().unwrap().to_owned())
        .collect();
    let mut distinct = cron.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), cron.len(), "a firing acted twice: {cron:?}");
    for note in &cron {
        let due = note.trim_start_matches("tick ");
        let due =
            chrono::DateTime::parse_from_rfc3339(due).unwrap_or_else(|e| panic!("{note}: {e}"));
        assert_eq!(
            due.timestamp_subsec_micros(),
            0,
            "{note} is not a whole second"
        );
    }

    // Disabled: nothing more.
    for name in ["cron-clock", "every-clock"] {
        let (status, body) = post(
            &client,
            format!("{base}/v1/automations/{name}/disable"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let disabled_at = get(&client, format!("{base}/v1/events?limit=1")).await["head"]
        .as_u64()
        .unwrap();
    // The cron's pending firing arrives after the disable, and the engine
    // handles it (its position passes it) without acting.
    let passed = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let dues = events(&client, &base, "automations/cron-clock").await;
            let Some(late) = dues
                .iter()
                .filter(|e| e["type"] == "automations.schedule_due")
                .map(|e| e["position"].as_u64().unwrap())
                .find(|p| *p > disabled_at)
            else {
                return false;
            };
            let shown = get(&client, format!("{base}/v1/automations/cron-clock")).await;
            shown["stats"]["as_of_position"].as_u64().unwrap_or(0) >= late
        }
    })
    .await;
    assert!(passed, "the cron's pending firing did not arrive and pass");
    let after = events(&client, &base, "tickets/T-1").await;
    let caused_late: Vec<_> = after
        .iter()
        .filter(|e| {
            e["type"] == "tickets.note_appended" && e["position"].as_u64().unwrap() > disabled_at
        })
        .collect();
    assert!(
        caused_late.is_empty(),
        "disabled automations acted: {caused_late:?}"
    );
    // The `every` timer was cancelled.
    let timers = get(
        &client,
        format!("{base}/v1/events/search?type=timers.timer_cancelled"),
    )
    .await;
    assert!(
        timers["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["stream"]
                .as_str()
                .unwrap()
                .starts_with("timers/automation.every-clock.")),
        "{timers}"
    );
    let status = herald.terminate(PATIENCE);
    assert!(status.success());
}

/// Timer actions: an opened ticket schedules a reminder (a durable timer
/// delivering a note a second later); resolving it first cancels the
/// reminder, which then never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_actions_schedule_and_cancel_durable_timers() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();
    for definition in [
        json!({
            "name": "remind",
            "trigger": {"event": {"types": ["tickets.ticket_opened"]}},
            "actions": [{"schedule_timer": {
                "id": "remind.{{ event.stream_id }}",
                "after": "1s",
                "label": "reminder",
                "deliver": {"kind": "command", "domain": "tickets", "stream_id": "{{ event.stream_id }}",
                            "name": "append_note", "body": {"note": "reminder", "author": "timer"}}
            }}]
        }),
        json!({
            "name": "forget",
            "trigger": {"event": {"types": ["tickets.ticket_resolved"]}},
            "actions": [{"cancel_timer": {"id": "remind.{{ event.stream_id }}", "reason": "resolved"}}]
        }),
    ] {
        let (status, body) = post(&client, format!("{base}/v1/automations"), definition).await;
        assert_eq!(status, 201, "{body}");
    }
    // Nobody schedules a timer into the automations' own domain by hand:
    // it would end an automation's wait.
    let (status, body) = post(
        &client,
        format!("{base}/v1/timers/forged/schedule"),
        json!({"after_secs": 1, "deliver": {"kind": "event", "domain": "automations", "stream_id": "remind",
               "name": "absence_elapsed", "body": {}}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["type"], "urn:herald:problem:reserved-event-type",
        "{body}"
    );
    let open = json!({"kind": "other", "customer": "acme", "description": "d", "opened_by": "me"});
    for id in ["T-10", "T-11"] {
        let (status, body) = post(
            &client,
            format!("{base}/v1/tickets/{id}/open"),
            open.clone(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(
        &client,
        format!("{base}/v1/tickets/T-11/resolve"),
        json!({"resolution": "done"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // T-11's reminder is cancelled; T-10's fires and notes the ticket once.
    let settled = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let cancelled = events(&client, &base, "timers/remind.T-11").await;
            let t10 = events(&client, &base, "tickets/T-10").await;
            cancelled
                .iter()
                .any(|e| e["type"] == "timers.timer_cancelled")
                && notes(&t10, "timer").len() == 1
        }
    })
    .await;
    assert!(
        settled,
        "the reminder did not fire, or the other was not cancelled"
    );
    let fired = events(&client, &base, "timers/remind.T-10").await;
    assert!(
        fired.iter().any(|e| e["type"] == "timers.timer_fired"),
        "{fired:?}"
    );
    // The cancelled one never fires.
    let t11_timer = events(&client, &base, "timers/remind.T-11").await;
    assert!(
        t11_timer.iter().all(|e| e["type"] != "timers.timer_fired"),
        "{t11_timer:?}"
    );
    assert!(notes(&events(&client, &base, "tickets/T-11").await, "timer").is_empty());
    let status = herald.terminate(PATIENCE);
    assert!(status.success());
}
