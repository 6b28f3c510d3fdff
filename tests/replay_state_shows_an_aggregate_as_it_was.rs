//! `herald replay state` shows an aggregate as it was at a moment, on the
//! embedded store and on Postgres: a ticket opened, noted and resolved
//! (with another stream's event between) is shown open, noted, then
//! resolved at positions and instants between its events, with the events
//! that made each state; a moment before its first event, an unknown id or
//! another tenant is a clear "no" (exit 1); an unknown domain or a
//! malformed moment is a usage error (exit 2).

mod support;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_events::edges::EdgeRegistered;
use herald_events::tickets::{NoteAppended, TicketKind, TicketOpened, TicketResolved};
use herald_events::{EventEnvelope, StreamId, StreamVersion, TenantId, TypedEvent};
use herald_store::{EventStore, ExpectedVersion};
use serde_json::Value;
use support::herald_command;

/// Runs `herald replay state <args> <store args>`.
fn replay(store_args: &[String], args: &[&str]) -> Output {
    herald_command()
        .args(["replay", "state"])
        .args(args)
        .args(store_args)
        .output()
        .expect("run herald replay state")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "herald replay state failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn canonical(t: DateTime<Utc>) -> String {
    herald_events::chain::canonical_time(&t)
}

/// Appends one event and waits until the clock is past its record time, so
/// that the next event is recorded strictly later.
async fn append(store: &Arc<dyn EventStore>, stream: &str, event: herald_events::NewEvent) -> u64 {
    let stream: StreamId = stream.parse().unwrap();
    let outcome = store
        .append(
            &TenantId::default_tenant(),
            &stream,
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap();
    let position = outcome.events[0].position;
    let stored = store.read_all(position, 1).await.unwrap();
    let recorded = stored[0].recorded_at;
    assert!(
        herald_testkit::eventually(Duration::from_secs(5), || async {
            Utc::now() > recorded + chrono::Duration::milliseconds(2)
        })
        .await
    );
    position.get()
}

async fn scenario(store: Arc<dyn EventStore>, store_args: Vec<String>) {
    let opened = append(
        &store,
        "tickets/T-1",
        TicketOpened {
            kind: TicketKind::Outage,
            customer: "acme".into(),
            edge: Some("E-1".into()),
            description: "link down".into(),
            opened_by: None,
        }
        .to_new_event(),
    )
    .await;
    let elsewhere = append(
        &store,
        "edges/E-1",
        EdgeRegistered {
            customer: "acme".into(),
            serial: "SN-1".into(),
            site: "lab".into(),
        }
        .to_new_event(),
    )
    .await;
    let noted = append(
        &store,
        "tickets/T-1",
        NoteAppended {
            note: "on it".into(),
            author: Some("ops".into()),
        }
        .to_new_event(),
    )
    .await;
    let resolved = append(
        &store,
        "tickets/T-1",
        TicketResolved {
            resolution: Some("fibre spliced".into()),
            resolved_by: None,
        }
        .to_new_event(),
    )
    .await;
    let events: Vec<EventEnvelope> = store
        .read_stream(
            &TenantId::default_tenant(),
            &"tickets/T-1".parse().unwrap(),
            StreamVersion(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    store.close().await;
    let recorded: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();

    // At positions: its own, and one of another stream between.
    for (at, version, status, notes) in [
        (opened, 1, "open", 0),
        (elsewhere, 1, "open", 0),
        (noted, 2, "open", 1),
        (resolved, 3, "resolved", 1),
        (resolved + 100, 3, "resolved", 1),
    ] {
        let answer = json_of(&replay(
            &store_args,
            &["tickets", "T-1", "--at", &at.to_string(), "--json"],
        ));
        assert_eq!(answer["version"], version, "at {at}: {answer}");
        assert_eq!(answer["state"]["status"], status, "at {at}: {answer}");
        assert_eq!(answer["state"]["notes"], notes, "at {at}: {answer}");
        assert_eq!(answer["at"], serde_json::json!({"position": at}));
        assert_eq!(answer["events"].as_array().unwrap().len(), version);
    }

    // At instants: each event's record time includes it, the moment before
    // the next one does not include that one.
    for (i, at) in recorded.iter().enumerate() {
        let answer = json_of(&replay(
            &store_args,
            &["tickets", "T-1", "--at", &canonical(*at), "--json"],
        ));
        assert_eq!(answer["version"], i + 1, "at {at}: {answer}");
        let before_next = recorded
            .get(i + 1)
            .map(|next| *next - chrono::Duration::microseconds(1));
        if let Some(before_next) = before_next {
            let answer = json_of(&replay(
                &store_args,
                &["tickets", "T-1", "--at", &canonical(before_next), "--json"],
            ));
            assert_eq!(answer["version"], i + 1, "at {before_next}: {answer}");
        }
    }
    // The events that made the last state, as stored.
    let answer = json_of(&replay(
        &store_args,
        &["tickets", "T-1", "--at", &canonical(recorded[2]), "--json"],
    ));
    let shown: Vec<(String, u64, u64, String)> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["stream_version"].as_u64().unwrap(),
                e["position"].as_u64().unwrap(),
                e["occurred_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let stored: Vec<(String, u64, u64, String)> = events
        .iter()
        .map(|e| {
            (
                e.event_type.to_string(),
                e.stream_version.get(),
                e.position.get(),
                serde_json::to_value(e.occurred_at)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shown.iter().map(|s| (&s.0, s.1, s.2)).collect::<Vec<_>>(),
        stored.iter().map(|s| (&s.0, s.1, s.2)).collect::<Vec<_>>()
    );
    for (shown, stored) in shown.iter().zip(&stored) {
        let shown: DateTime<Utc> = shown.3.parse().unwrap();
        let stored: DateTime<Utc> = stored.3.parse().unwrap();
        assert_eq!(shown, stored);
    }
    assert_eq!(
        shown.iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![opened, noted, resolved]
    );
    assert_eq!(answer["state"]["customer"], "acme");
    assert_eq!(answer["tenant"], "default");

    // Text for people.
    let text = replay(&store_args, &["tickets", "T-1", "--at", &noted.to_string()]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("tickets/T-1 of tenant default at position"),
        "{text}"
    );
    assert!(text.contains("\"status\": \"open\""), "{text}");
    assert!(text.contains("tickets.note_appended"), "{text}");
    assert!(!text.contains("tickets.ticket_resolved"), "{text}");

    // "No": before its first event, an unknown id, another tenant.
    let before = recorded[0] - chrono::Duration::microseconds(1);
    for (args, says) in [
        (
            vec!["tickets", "T-1", "--at", &canonical(before) as &str],
            "had no events yet",
        ),
        (
            vec!["tickets", "T-404", "--at", "1000"],
            "tickets/T-404 of tenant default has no events",
        ),
        (
            vec!["tickets", "T-1", "--at", "1000", "--tenant", "globex"],
            "of tenant globex has no events",
        ),
    ] {
        let output = replay(&store_args, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    let output = replay(
        &store_args,
        &["tickets", "T-1", "--at", &before.to_rfc3339()],
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("first is at position {opened}"))
    );

    // Usage errors: an unknown domain, a malformed moment, a bad id.
    for (args, says) in [
        (vec!["widgets", "W-1", "--at", "5"], "no domain \"widgets\""),
        (vec!["statistics", "S-1", "--at", "5"], "tickets, edges"),
        (vec!["tickets", "T-1", "--at", "yesterday"], "RFC 3339"),
        (vec!["tickets", "T 1", "--at", "5"], "T 1"),
    ] {
        let output = replay(&store_args, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        herald_store::EmbeddedStore::open(herald_store::EmbeddedConfig::in_dir(dir.path()))
            .await
            .unwrap(),
    );
    let args = vec![
        "--data-dir".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
    ];
    scenario(store, args).await;
}

#[tokio::test]
async fn on_postgres() {
    let db = herald_testkit::TestDatabase::create().await;
    let store: Arc<dyn EventStore> = Arc::new(
        herald_store::PostgresStore::open(herald_store::PostgresConfig::new(db.url()))
            .await
            .unwrap(),
    );
    scenario(store, vec!["--store".to_owned(), db.url().to_owned()]).await;
}
