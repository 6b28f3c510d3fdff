//! `herald tail` against a real `herald serve`: from the start it prints
//! exactly the events its filter matches, in position order, each with its
//! cursor; from the cursor of the k-th it prints exactly the ones after,
//! then live ones as they are committed; when the server dies and comes
//! back it reconnects and continues with nothing skipped or printed twice;
//! Ctrl-C prints the cursor to resume from.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, herald_command, Herald, Output};

/// A running `herald tail`, its stdout collected line by line.
struct Tail {
    child: Child,
    output: Output,
}

impl Tail {
    /// Starts `herald tail <args>` with no `HERALD_*` variable from the
    /// environment.
    fn start(args: &[&str]) -> Self {
        let mut cmd = herald_command();
        let mut child = cmd
            .arg("tail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald tail");
        let output = Output::collect(&mut child);
        Self { child, output }
    }

    fn lines(&self) -> Vec<String> {
        self.output.lines()
    }

    async fn wait_for_lines(&self, n: usize, within: Duration) {
        let printed = eventually(within, || async { self.output.lines().len() >= n }).await;
        assert!(
            printed,
            "herald tail printed {:?}, expected {n} lines",
            self.lines()
        );
    }

    /// Waits for the exit; returns the status, stdout lines and stderr.
    fn wait(mut self, within: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "herald tail did not exit within {within:?}; printed {:?}",
                self.lines()
            );
            // std has no wait with a timeout, so poll the exit status.
            std::thread::park_timeout(Duration::from_millis(10));
        };
        let (stdout, stderr) = self.output.finish();
        (status, stdout, stderr)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends `events` in one request; returns their positions.
async fn append(base: &str, events: &[Value]) -> Vec<u64> {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect()
}

fn event(n: usize) -> Value {
    let stream = format!("tickets/T-{}", n % 3);
    match n % 4 {
        0 => json!({"stream": stream, "type": "tickets.ticket_opened", "version": 1,
                    "payload": {"kind": "outage", "customer": "acme", "description": format!("#{n}")}}),
        1 => json!({"stream": stream, "type": "tickets.note_appended", "version": 1,
                    "payload": {"note": format!("#{n}")}}),
        2 => json!({"stream": stream, "type": "tickets.ticket_assigned", "version": 1,
                    "payload": {"assignee": format!("agent-{n}")}}),
        _ => json!({"stream": stream, "type": "tickets.note_appended", "version": 1,
                    "payload": {"note": format!("#{n} again")}}),
    }
}

/// (position, type, stream) of the `events` that `keep` accepts, in
/// position order (a batch's streams are appended in parallel, so that is
/// not always the order they were sent in).
fn expected(
    events: &[Value],
    positions: &[u64],
    keep: impl Fn(&Value) -> bool,
) -> Vec<(u64, String, String)> {
    let mut out: Vec<(u64, String, String)> = events
        .iter()
        .zip(positions)
        .filter(|(e, _)| keep(e))
        .map(|(e, p)| {
            (
                *p,
                e["type"].as_str().unwrap().to_owned(),
                e["stream"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What `herald tail --type tickets.ticket_*` must print of `events`.
fn matching(events: &[Value], positions: &[u64]) -> Vec<(u64, String, String)> {
    expected(events, positions, |e| {
        e["type"].as_str().unwrap().starts_with("tickets.ticket_")
    })
}

/// (position, type, stream) and cursor of each printed JSON line.
fn printed(lines: &[String]) -> (Vec<(u64, String, String)>, Vec<String>) {
    lines
        .iter()
        .map(|line| {
            let e: Value = serde_json::from_str(line).expect("one JSON object per line");
            let cursor = e["cursor"].as_str().expect("a cursor").to_owned();
            assert!(!cursor.is_empty());
            (
                (
                    e["position"].as_u64().unwrap(),
                    e["type"].as_str().unwrap().to_owned(),
                    e["stream"].as_str().unwrap().to_owned(),
                ),
                cursor,
            )
        })
        .unzip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_filtered_events_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    server.wait_healthy(Duration::from_secs(10)).await;
    let base = server.base.clone();

    let mut events: Vec<Value> = (0..20).map(event).collect();
    let mut positions = append(&base, &events).await;
    let want = matching(&events, &positions);
    assert_eq!(want.len(), 10, "half the events are ticket_* events");

    // 1. From the start, exactly the matching events, in order, each with
    // a cursor; it exits after --count of them.
    let count = want.len().to_string();
    let tail = Tail::start(&[
        "--url",
        &base,
        "--from",
        "start",
        "--type",
        "tickets.ticket_*",
        "--count",
        &count,
    ]);
    let (status, lines, stderr) = tail.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    let (got, cursors) = printed(&lines);
    assert_eq!(got, want);
    let distinct: BTreeSet<&String> = cursors.iter().collect();
    assert_eq!(distinct.len(), cursors.len(), "one cursor per event");

    // 2. From the cursor of the 4th: exactly the ones after it, then the
    // live ones committed while it runs (history and live edge meet).
    let k = 4;
    let after = (want.len() - k + 2).to_string();
    let tail = Tail::start(&[
        "--url",
        &base,
        "--from",
        &cursors[k - 1],
        "--type",
        "tickets.ticket_*",
        "--count",
        &after,
    ]);
    tail.wait_for_lines(want.len() - k, Duration::from_secs(30))
        .await;
    let live: Vec<Value> = (20..24).map(event).collect();
    let live_positions = append(&base, &live).await;
    events.extend(live);
    positions.extend(live_positions);
    let want = matching(&events, &positions);
    assert_eq!(want.len(), 12);
    let (status, lines, stderr) = tail.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(printed(&lines).0, want[k..].to_vec());

    // 3. Following everything in text form while the server dies and comes
    // back on the same store: it reconnects and resumes after the last
    // event it printed; Ctrl-C then names the cursor to resume from.
    let tail = Tail::start(&[
        "--url",
        &base,
        "--from",
        "start",
        "--format",
        "text",
        "--stream",
        "tickets/T-1",
        "--stream",
        "tickets/T-2",
    ]);
    let followed = |events: &[Value], positions: &[u64]| {
        expected(events, positions, |e| e["stream"] != "tickets/T-0")
    };
    let before = followed(&events, &positions).len();
    tail.wait_for_lines(before, Duration::from_secs(30)).await;

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    server.wait_healthy(Duration::from_secs(10)).await;
    let more: Vec<Value> = (24..30).map(event).collect();
    let more_positions = append(&base, &more).await;
    events.extend(more);
    positions.extend(more_positions);
    let want = followed(&events, &positions);
    assert!(want.len() > before);
    tail.wait_for_lines(want.len(), Duration::from_secs(30))
        .await;

    let interrupt = Command::new("kill")
        .args(["-INT", &tail.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let (status, lines, stderr) = tail.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{stderr}");
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split("  ").collect()).collect();
    let got: Vec<(u64, String, String)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 4, "position  type  stream  cursor: {r:?}");
            (r[0].parse().unwrap(), r[1].to_owned(), r[2].to_owned())
        })
        .collect();
    assert_eq!(
        got, want,
        "nothing skipped, nothing twice across the restart"
    );
    assert!(
        stderr.contains("reconnecting"),
        "it said it reconnects: {stderr}"
    );
    // The cursor named is the last event printed, or the `live` frame's
    // that followed it (the head when the history ended: past events the
    // filter left out, never past one it printed or would print).
    let last_cursor = rows.last().unwrap()[3];
    let named = stderr
        .split("interrupted; resume with --from ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor named: {stderr}"));
    let (last_position, named_position) = (position_of(last_cursor), position_of(named));
    assert!(
        named_position >= last_position,
        "{named} is before {last_cursor}"
    );
    assert!(
        want.iter().all(|(p, _, _)| *p <= last_position),
        "an event followed lies past the last printed"
    );
    let head = positions.iter().max().copied().unwrap();
    assert!(named_position <= head, "{named} is past the head {head}");
}

/// The log position a cursor stands for (`h1.<epoch>.<position>`, in
/// base64url: read here only to compare, as a test may).
fn position_of(cursor: &str) -> u64 {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .expect("a base64url cursor");
    let text = String::from_utf8(text).expect("a text cursor");
    text.rsplit('.')
        .next()
        .unwrap()
        .parse()
        .expect("a position")
}
