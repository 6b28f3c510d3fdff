//! `herald automations` against `herald serve` on its embedded defaults, as
//! a team's CI and operators use it: `apply` of a YAML file creates the
//! automation (exit 0), applying it again changes nothing, an invalid file
//! exits 1 naming where the problem is; the automation then acts on a
//! ticket opened over HTTP (the bot's note appears), and `test` of the file
//! over the whole history lists each decision — the matching ticket's with
//! its rendered command, the other's with its condition false; `list`,
//! `show`, `disable` and `delete` answer; a missing file or an unreachable
//! server exits 2.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, Herald};

const NAME: &str = "note-affecting";

const AUTOMATION: &str = r#"
name: note-affecting
description: Every service-affecting ticket gets a note from the bot.
trigger:
  event: {types: [tickets.ticket_opened]}
when: event.payload.kind == 'affecting'
actions:
  - command:
      domain: tickets
      id: "{{ event.stream_id }}"
      name: append_note
      body: {note: "auto {{ event.payload.customer }}", author: "bot"}
"#;

/// Its condition is not CEL.
const INVALID: &str = r#"
name: note-broken
trigger:
  event: {types: [tickets.ticket_opened]}
when: "event.payload.kind =="
actions:
  - command: {domain: tickets, id: "{{ event.stream_id }}", name: append_note, body: {note: x}}
"#;

/// How long anything asynchronous may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// `herald automations <args> --url <base>`: (exit code, stdout, stderr).
fn automations(base: &str, args: &[&str]) -> (i32, String, String) {
    let output = support::herald_command()
        .arg("automations")
        .args(args)
        .args(["--url", base])
        .output()
        .expect("run herald automations");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn open_ticket(client: &reqwest::Client, base: &str, id: &str, kind: &str) {
    let response = client
        .post(format!("{base}/v1/tickets/{id}/open"))
        .json(&json!({"kind": kind, "customer": "acme", "description": "d", "opened_by": "me"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "opening {id}: {status} {body}");
}

/// The payloads of the stream's `tickets.note_appended` events.
async fn notes(client: &reqwest::Client, base: &str, id: &str) -> Vec<Value> {
    let Ok(response) = client
        .get(format!("{base}/v1/streams/tickets/{id}/events"))
        .send()
        .await
    else {
        return Vec::new();
    };
    let page: Value = response.json().await.unwrap_or_default();
    page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "tickets.note_appended")
        .map(|e| e["payload"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_automations_applies_and_tests_files_as_ci_would() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(data.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(60)).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();

    let file = write(files.path(), "note-affecting.yaml", AUTOMATION);
    let invalid = write(files.path(), "note-broken.yaml", INVALID);
    let not_yaml = write(files.path(), "not-yaml.yaml", "name: [unclosed\n");

    // Nothing yet: an empty table.
    let (code, out, err) = automations(&base, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(NAME), "{out}");

    // Apply, then apply again: the second changes nothing.
    let (code, out, err) = automations(&base, &["apply", &file]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("created {NAME} version 1"));
    let (code, out, err) = automations(&base, &["apply", &file]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("unchanged {NAME} version 1"));
    // The version a CI job expects is checked.
    let (code, out, err) = automations(&base, &["apply", &file, "--expected-version", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("automation-version-conflict"), "{out}");

    // What CI sees for a condition that is not CEL: exit 1, naming `when`;
    // nothing saved. The same for `test` of the file.
    let (code, out, err) = automations(&base, &["apply", &invalid]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("invalid-automation"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("  when: ")),
        "the problem names where it is: {out}"
    );
    let (code, out, err) = automations(&base, &["test", &invalid]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("  when: ")), "{out}");
    let (code, out, err) = automations(&base, &["apply", &invalid, "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let problem: Value = serde_json::from_str(out.trim()).expect("the problem as JSON");
    assert!(
        problem["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["at"] == "when")),
        "{problem}"
    );
    // A file that is not YAML is refused before anything is sent.
    let (code, out, err) = automations(&base, &["apply", &not_yaml]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not valid YAML"), "{out}");
    let (_, out, _) = automations(&base, &["list"]);
    assert!(!out.contains("note-broken"), "{out}");

    // The automation acts on the affecting ticket, not on the other.
    open_ticket(&client, &base, "T-1", "affecting").await;
    open_ticket(&client, &base, "T-2", "other").await;
    let noted = herald_testkit::eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            notes(&client, &base, "T-1")
                .await
                .contains(&json!({"note": "auto acme", "author": "bot"}))
        }
    })
    .await;
    assert!(noted, "the bot's note never reached T-1");

    // `test` over the whole history: T-1 with its command, T-2 with its
    // condition false, in log order.
    let (code, out, err) = automations(&base, &["test", &file]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let t1 = lines
        .iter()
        .position(|l| l.ends_with(" tickets.ticket_opened tickets/T-1 condition=true"))
        .unwrap_or_else(|| panic!("no decision for T-1:\n{out}"));
    assert_eq!(
        lines[t1 + 1],
        r#"  actions[0] command tickets/T-1 append_note {"author":"bot","note":"auto acme"}"#,
        "{out}"
    );
    let t2 = lines
        .iter()
        .position(|l| l.ends_with(" tickets.ticket_opened tickets/T-2 condition=false"))
        .unwrap_or_else(|| panic!("no decision for T-2:\n{out}"));
    assert!(t1 < t2, "{out}");
    assert!(
        !lines[t2 + 1].starts_with("  "),
        "no action when the condition is false:\n{out}"
    );
    assert!(out.contains("2 decisions"), "{out}");
    // The saved one, by name, and the answer as is.
    let (code, out, err) = automations(&base, &["test", "--name", NAME, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(out.trim()).expect("the report as JSON");
    assert_eq!(report["automation"], NAME, "{report}");
    assert_eq!(report["decisions"].as_array().map(Vec::len), Some(2));
    // An empty stretch runs too, deciding nothing.
    let (code, out, err) = automations(
        &base,
        &[
            "test",
            &file,
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2000-01-02T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 decisions"), "{out}");
    // Neither or both of FILE and --name, or no such automation: exit 2.
    let (code, _, err) = automations(&base, &["test"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = automations(&base, &["test", &file, "--name", NAME]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = automations(&base, &["test", "--name", "nobody"]);
    assert_eq!(code, 2, "{err}");

    // `list` and `show`.
    let (code, out, err) = automations(&base, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    let header = out.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "VERSION", "ENABLED", "TRIGGER"],
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [NAME, "1", "true", "event"]),
        "{out}"
    );
    let acted = herald_testkit::eventually(PATIENCE, || {
        let request = client.get(format!("{base}/v1/automations/{NAME}")).send();
        async move {
            match request.await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|doc| doc["stats"]["acted"] == 1),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(acted, "the engine's counters never showed the action");
    let (code, out, err) = automations(&base, &["show", NAME]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("enabled: true"), "{out}");
    assert!(
        out.contains("  when: event.payload.kind == 'affecting'"),
        "the definition as YAML: {out}"
    );
    assert!(out.contains("acted 1"), "{out}");
    assert!(out.contains("failures: none"), "{out}");

    // Switched off, it still shows; deleted, it is gone.
    let (code, out, err) = automations(&base, &["disable", NAME, "--reason", "noisy"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("disabled {NAME} (version 1)"));
    let (code, out, err) = automations(&base, &["show", NAME]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("enabled: false"), "{out}");
    let (code, out, err) = automations(&base, &["disable", NAME]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing changed"), "{out}");
    let (code, out, err) = automations(&base, &["delete", NAME]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("deleted {NAME}")), "{out}");
    let (code, out, err) = automations(&base, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(NAME), "{out}");
    let (code, out, err) = automations(&base, &["show", NAME]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not-found"), "{out}");

    // Errors that are not the server's answer exit 2.
    let (code, _, err) = automations(&base, &["apply", "/no/such/file.yaml"]);
    assert_eq!(code, 2, "{err}");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = automations(&nobody, &["apply", &file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("could not reach"), "{err}");

    assert!(herald.terminate(Duration::from_secs(30)).success());
}
