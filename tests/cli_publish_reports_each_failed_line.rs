//! `herald publish` against a real `herald serve`: a JSONL file mixing
//! valid events, a line that is not JSON, a schema violation, an unknown
//! type and blank lines publishes exactly the valid lines, in order, and
//! names exactly the bad line numbers (exit 1); idempotency keys make a
//! second run append nothing; stdin works; `--atomic` appends nothing of a
//! batch holding a bad line; an unreachable server is exit 2.

mod support;

use std::io::Write;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, herald_command, Herald, Output};

/// What a finished `herald` command printed.
#[derive(Debug)]
struct Ran {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

/// Runs `herald <args>` (no `HERALD_*` variable from the environment),
/// feeding `stdin`; kills it and fails if it runs longer than a minute.
fn herald(args: &[&str], stdin: Option<&str>) -> Ran {
    let mut cmd = herald_command();
    let mut child = cmd
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let mut output = Output::collect(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald {args:?} did not finish within 60 s");
        }
        // std has no wait with a timeout, so poll the exit status.
        std::thread::park_timeout(Duration::from_millis(10));
    };
    let (stdout, stderr) = output.finish();
    Ran {
        status,
        stdout,
        stderr,
    }
}

/// Line numbers named by `line N: ...` messages, in the order printed.
fn failed_lines(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect()
}

/// The message about line `n`.
fn message(stderr: &str, n: u64) -> &str {
    let prefix = format!("line {n}: ");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no message about line {n} in {stderr}"))
}

async fn log(base: &str) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{base}/v1/events?from=0&limit=1000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"].as_array().unwrap().clone()
}

fn note(stream: &str, note: &str) -> Value {
    json!({"stream": stream, "type": "tickets.note_appended", "version": 1,
           "payload": {"note": note}})
}

/// (stream, type, payload) of each event, to compare logs with inputs.
fn summary(events: &[Value]) -> Vec<(String, String, Value)> {
    events
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
                e["payload"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_each_failed_line_and_appends_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    server.wait_healthy(Duration::from_secs(10)).await;
    let base = server.base.clone();

    // 1. A mixed file, in batches of three non-blank lines: [1, 3, 4],
    // [5, 6, 8], [9].
    let opened = json!({"stream": "tickets/T-1", "type": "tickets.ticket_opened", "version": 1,
                        "payload": {"kind": "outage", "customer": "acme", "edge": "E-17",
                                    "description": "edge E-17 is offline"}});
    let assigned = json!({"stream": "tickets/T-2", "type": "tickets.ticket_assigned", "version": 1,
                          "payload": {"assignee": "noc"}});
    let lines = [
        opened.to_string(),
        String::new(),
        note("tickets/T-1", "power cut").to_string(),
        r#"{"stream": "tickets/T-1", "type": "tickets.note_appended", "#.to_owned(),
        json!({"stream": "tickets/T-2", "type": "tickets.ticket_opened", "version": 1,
               "payload": {"kind": "flood", "description": "?"}})
        .to_string(),
        json!({"stream": "tickets/T-2", "type": "tickets.ticket_exploded", "version": 1,
               "payload": {}})
        .to_string(),
        "   \t".to_owned(),
        assigned.to_string(),
        note("tickets/T-1", "restored").to_string(),
    ];
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let ran = herald(
        &[
            "publish",
            file.to_str().unwrap(),
            "--url",
            &base,
            "--batch",
            "3",
        ],
        None,
    );
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert_eq!(failed_lines(&ran.stderr), vec![4, 5, 6], "{}", ran.stderr);
    assert!(
        message(&ran.stderr, 4).starts_with("not valid JSON"),
        "{}",
        ran.stderr
    );
    assert!(
        message(&ran.stderr, 5).starts_with("The payload breaks its schema: ")
            && message(&ran.stderr, 5).contains("/kind"),
        "{}",
        ran.stderr
    );
    assert!(
        message(&ran.stderr, 6).contains("unknown event type tickets.ticket_exploded"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        ran.stdout,
        vec!["4 published, 0 already present, 3 failed (7 lines)"]
    );
    let events = log(&base).await;
    assert_eq!(
        summary(&events),
        summary(&[
            opened.clone(),
            note("tickets/T-1", "power cut"),
            assigned.clone(),
            note("tickets/T-1", "restored"),
        ]),
        "the log holds exactly the valid lines, in file order"
    );
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![1, 2, 3, 4]);

    // 2. Idempotency keys, read from stdin (no FILE), with --json: the
    // first run appends, the second (stdin as `-`) finds them all present.
    let keyed: Vec<Value> = ["k-1", "k-2", "k-3"]
        .iter()
        .map(|k| {
            let mut e = note("tickets/K-1", &format!("keyed {k}"));
            e["idempotency_key"] = json!(k);
            e
        })
        .collect();
    let input: String = keyed.iter().map(|e| format!("{e}\n")).collect();
    let first = herald(&["publish", "--url", &base, "--json"], Some(&input));
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert!(first.stderr.is_empty(), "{first:?}");
    let results: Vec<Value> = first
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4, "three results and a summary: {results:?}");
    for (n, result) in results[..3].iter().enumerate() {
        assert_eq!(result["line"], n as u64 + 1, "{result}");
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["status"], 201, "{result}");
        assert_eq!(result["duplicate"], false, "{result}");
        assert_eq!(result["position"], n as u64 + 5, "{result}");
    }
    assert_eq!(
        results[3],
        json!({"summary": {"lines": 3, "published": 3, "already_present": 0, "failed": 0}})
    );
    let again = herald(&["publish", "-", "--url", &base, "--json"], Some(&input));
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let repeated: Vec<Value> = again
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (before, after) in results[..3].iter().zip(&repeated[..3]) {
        assert_eq!(after["status"], 200, "{after}");
        assert_eq!(after["duplicate"], true, "{after}");
        assert_eq!(after["id"], before["id"]);
        assert_eq!(after["position"], before["position"]);
    }
    assert_eq!(
        repeated[3],
        json!({"summary": {"lines": 3, "published": 0, "already_present": 3, "failed": 0}})
    );
    let events = log(&base).await;
    assert_eq!(events.len(), 7, "nothing was appended twice");
    assert_eq!(summary(&events[4..]), summary(&keyed));

    // 3. --atomic, batches of three: [1-3] all good, [4-6] with a schema
    // violation, [7-9] with a line that is not JSON, [10] good.
    let mut atomic: Vec<String> = (1..=10)
        .map(|n| note("tickets/A-1", &format!("a{n}")).to_string())
        .collect();
    atomic[4] = json!({"stream": "tickets/A-1", "type": "tickets.note_appended", "version": 1,
                       "payload": {"note": ""}})
    .to_string();
    atomic[7] = "not json at all".to_owned();
    let ran = herald(
        &["publish", "--url", &base, "--atomic", "--batch", "3"],
        Some(&(atomic.join("\n") + "\n")),
    );
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert_eq!(
        failed_lines(&ran.stderr),
        vec![4, 5, 6, 7, 8, 9],
        "{}",
        ran.stderr
    );
    assert!(message(&ran.stderr, 5).starts_with("The payload breaks its schema"));
    assert_eq!(
        message(&ran.stderr, 4),
        "not appended: its atomic batch was refused for line 5"
    );
    assert!(message(&ran.stderr, 8).starts_with("not valid JSON"));
    assert_eq!(
        message(&ran.stderr, 9),
        "not sent: its atomic batch holds invalid line 8"
    );
    assert_eq!(
        ran.stdout,
        vec!["4 published, 0 already present, 6 failed (10 lines)"]
    );
    let events = log(&base).await;
    assert_eq!(
        summary(&events[7..]),
        summary(&[
            note("tickets/A-1", "a1"),
            note("tickets/A-1", "a2"),
            note("tickets/A-1", "a3"),
            note("tickets/A-1", "a10"),
        ]),
        "only the batches without a bad line were appended"
    );

    // 4. Nobody listening: a connection error is exit 2, and says what
    // was not sent.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let ran = herald(
        &["publish", "--url", &nowhere],
        Some(&format!("{}\n", note("tickets/X-1", "lost"))),
    );
    assert_eq!(ran.status.code(), Some(2), "{ran:?}");
    assert!(
        ran.stderr.contains("could not reach") && ran.stderr.contains("line 1 was not sent"),
        "{}",
        ran.stderr
    );
    assert_eq!(log(&base).await.len(), 11);
}
