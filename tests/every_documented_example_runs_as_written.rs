//! Every example of the README, `docs/*.md` and `docker/README.md` runs as
//! written, or is listed in [`NOT_RUN`] with the reason it cannot run here.
//! A fenced block nobody claims fails the test, so a new example is run from
//! the day it is written.
//!
//! How a block is checked depends on what it is:
//! - ```` ```console ````: each `$ command` runs in one bash session per
//!   scenario (so `cd`, files and `$?` carry over), stderr merged into
//!   stdout as a terminal shows them; the lines under it are what it must
//!   print (JSON compared as JSON, other text line by line), and it must
//!   exit 0 unless the next step is `echo $?`, which shows its status;
//! - ```` ```sh ````: the block runs as one `set -e` script and must exit 0;
//! - ```` ```json ````: a request body is sent where the text says and must
//!   be answered 201; a websocket frame is sent, or compared with what the
//!   server sends; a report is compared with the tool's output;
//! - ```` ```text ````, ```` ```js ````, ```` ```python ```` and
//!   ```` ```jsonl ````: each as its scenario says (output compared, the URL
//!   requested, the script run, the file written).
//!
//! In what the docs show, `…` stands for any text (an id, a time, a hash);
//! cursors are shown for an example store (epoch `a45f`) and are re-issued
//! for the test's store, and the README's example key stands for the key
//! `herald keys create` printed. `herald serve` listens on
//! `127.0.0.1:8080`, as the docs' commands expect, so this file's scenarios
//! run one after another in one test.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use support::{free_port, herald_command, Herald, WsClient};

/// What the docs' commands talk to.
const BASE: &str = "http://127.0.0.1:8080";
/// The epoch of the example store whose cursors the docs show.
const DOC_EPOCH: &str = "a45f";
/// Longest a documented command may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Blocks this test does not run, by file and a text only that block holds,
/// each with the reason.
const NOT_RUN: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "\"x-personal\": {\"subject\": \"/customer\"}}",
        "one property of a schema, not a whole one; the built-in ticket_opened schema carries \
         it as shown (schemas/tickets/ticket_opened.v1.json), and \
         tests/a_producers_own_type_seals_its_personal_fields_per_tenant.rs registers a type \
         marked the same way",
    ),
    (
        "README.md",
        "{\"timestamp\":",
        "a log line of `herald serve`, not something to run; \
         tests/requests_carry_an_id_into_answers_and_logs.rs checks that a refused request logs \
         one with these members",
    ),
    (
        "README.md",
        "cargo run --release -- serve",
        "builds the release binary; every scenario below starts the `herald serve` cargo built \
         for the tests, with no configuration, in an empty directory, as this block does",
    ),
    (
        "README.md",
        "scripts/test",
        "runs the whole test suite, this test included",
    ),
    (
        "README.md",
        "docker compose -f docker/compose.yaml up -d --build",
        "needs a Docker engine; tests/compose_brings_up_an_authenticated_herald_on_rabbitmq.rs \
         runs its key recipe, checks docker/compose.yaml and runs Herald with its command line \
         and environment",
    ),
    (
        "README.md",
        "docker compose -f docker/compose.yaml up -d postgres rabbitmq",
        "needs a Docker engine; the tests reach Postgres and RabbitMQ at the addresses it names",
    ),
    (
        "docs/websocket.md",
        "\"code\": 4008",
        "a slow-consumer close needs a client that stops reading while 512 frames queue; \
         tests/websocket_subscribers_see_exactly_their_events_in_order.rs provokes one",
    ),
    (
        "docs/hash-chain.md",
        "hash(event 1) = SHA-256",
        "a formula, not a command",
    ),
    (
        "docs/ingest.md",
        "rabbitmqadmin publish",
        "rabbitmqadmin speaks RabbitMQ's management API, which the test server does not run; \
         tests/ingest_appends_valid_messages_and_dead_letters_invalid_ones.rs publishes such \
         messages over AMQP, and this test posts the body above over HTTP",
    ),
    (
        "docs/ingest.md",
        "kcat -P",
        "needs a Kafka cluster and kcat, neither of which is here; the Kafka tests use \
         librdkafka's in-process mock cluster",
    ),
    (
        "docker/README.md",
        "docker build -f docker/Dockerfile",
        "needs a Docker engine; tests/compose_brings_up_an_authenticated_herald_on_rabbitmq.rs \
         checks the Dockerfile against the compose file",
    ),
    (
        "docker/README.md",
        "logs -f herald",
        "needs a Docker engine; tests/compose_brings_up_an_authenticated_herald_on_rabbitmq.rs \
         runs its key recipe and Herald with the compose file's command line and environment",
    ),
    (
        "docker/README.md",
        "--profile kafka",
        "needs a Docker engine; tests/compose_brings_up_an_authenticated_herald_on_rabbitmq.rs \
         checks the Kafka profile statically",
    ),
    (
        "docker/README.md",
        "up -d postgres rabbitmq",
        "needs a Docker engine; the tests reach Postgres and RabbitMQ at the addresses it names",
    ),
];

// ---------------------------------------------------------------------------
// The blocks

/// One fenced block of a document.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn place(&self) -> String {
        format!("{}:{} (```{})", self.file, self.line, self.lang)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents whose examples must run: the README, every `docs/*.md`,
/// and `docker/README.md`.
fn documents() -> Vec<String> {
    let mut files = vec!["README.md".to_owned(), "docker/README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a docs/ entry").file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn parse_blocks(file: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(lang) = line.strip_prefix("```") {
                    open = Some(Block {
                        file: file.to_owned(),
                        line: i + 1,
                        lang: lang.trim().to_owned(),
                        text: String::new(),
                    });
                }
            }
            Some(block) => {
                if line.trim_end() == "```" {
                    blocks.push(open.take().unwrap());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{file}: a fenced block is never closed");
    blocks
}

/// Every block, and which have been claimed by a check (or [`NOT_RUN`]).
struct Docs {
    blocks: Vec<Block>,
    claimed: Vec<Option<&'static str>>,
}

impl Docs {
    fn load() -> Self {
        let mut blocks = Vec::new();
        for file in documents() {
            let text = std::fs::read_to_string(root().join(&file))
                .unwrap_or_else(|e| panic!("read {file}: {e}"));
            blocks.extend(parse_blocks(&file, &text));
        }
        let claimed = vec![None; blocks.len()];
        let mut docs = Self { blocks, claimed };
        for (file, marker, reason) in NOT_RUN {
            docs.claim(file, marker, reason);
        }
        docs
    }

    fn find(&self, file: &str, marker: &str) -> usize {
        let found: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].file == file && self.blocks[i].text.contains(marker))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{file}: {} blocks hold {marker:?}; this test names each block by a text only it holds",
            found.len()
        );
        found[0]
    }

    /// The block of `file` holding `marker`, claimed by `how`.
    fn claim(&mut self, file: &str, marker: &str, how: &'static str) -> Block {
        let i = self.find(file, marker);
        assert!(
            self.claimed[i].is_none(),
            "{} is claimed twice: {:?} and {how:?}",
            self.blocks[i].place(),
            self.claimed[i]
        );
        self.claimed[i] = Some(how);
        self.blocks[i].clone()
    }

    /// The block of `file` holding `marker`, to read (claimed elsewhere).
    fn peek(&self, file: &str, marker: &str) -> Block {
        self.blocks[self.find(file, marker)].clone()
    }

    fn unclaimed(&self) -> Vec<String> {
        (0..self.blocks.len())
            .filter(|&i| self.claimed[i].is_none())
            .map(|i| {
                let b = &self.blocks[i];
                format!(
                    "{}: {}",
                    b.place(),
                    b.text.lines().next().unwrap_or("").trim()
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// What the docs show, and what ran

/// What the docs' example values stand for in this run: the key
/// `herald keys create` printed for the README's, the store's cursors for
/// the example store's, and placeholders the test fills in.
#[derive(Debug, Default)]
struct Subst {
    pairs: Vec<(String, String)>,
    epoch: Option<String>,
}

impl Subst {
    fn set(&mut self, doc: &str, actual: &str) {
        self.pairs.retain(|(d, _)| d != doc);
        self.pairs.push((doc.to_owned(), actual.to_owned()));
        // Longer first, so a key is replaced before the id inside it.
        self.pairs.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
    }

    fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (doc, actual) in &self.pairs {
            out = out.replace(doc, actual);
        }
        match &self.epoch {
            Some(epoch) => reissue_cursors(&out, epoch),
            None => out,
        }
    }

    /// Learns, from a line the docs show and the line printed, what the
    /// docs' example API key (and its id) stand for.
    fn learn_keys(&mut self, expected: &str, actual: &str) {
        for (e, a) in expected.split_whitespace().zip(actual.split_whitespace()) {
            if let (Some(doc_id), Some(id)) = (key_id(e), key_id(a)) {
                if e != a {
                    self.set(e, a);
                    self.set(doc_id, id);
                }
            }
        }
    }
}

/// The id of an API key `hk_<16 hex>_<secret>`.
fn key_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("hk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// The position of an example-store cursor (`h1.a45f.<position>`).
fn doc_cursor_position(token: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    raw.strip_prefix(&format!("h1.{DOC_EPOCH}."))?.parse().ok()
}

/// Replaces every example-store cursor in `text` with the cursor of the
/// same position in the store of `epoch`.
fn reissue_cursors(text: &str, epoch: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match doc_cursor_position(token) {
            Some(position) if token.len() >= 8 => {
                out.push_str(&URL_SAFE_NO_PAD.encode(format!("h1.{epoch}.{position}")))
            }
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// `actual` matches `pattern`, where each `…` stands for any text.
fn glob(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    if !rest.ends_with(last) {
        return false;
    }
    rest = &rest[..rest.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// `expected` matches `actual` when both have the same shape and values,
/// objects the same keys, and a string holding `…` in `expected` matches
/// any value (`"…"`) or any string it globs.
fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), _) if s == "…" => Ok(()),
        (Value::String(e), Value::String(a)) if e.contains('…') && glob(e, a) => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            let (mut ek, mut ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            ek.sort();
            ak.sort();
            if ek != ak {
                return Err(format!("{path}: keys {ak:?}, the docs show {ek:?}"));
            }
            e.iter()
                .try_for_each(|(k, v)| matches(v, &a[k], &format!("{path}/{k}")))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (e, a))| matches(e, a, &format!("{path}/{i}"))),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: got {a}, the docs show {e}")),
    }
}

/// Every JSON value of `text`, one after another (a frame per line, or one
/// formatted document); `None` when it is not only JSON.
fn json_values(text: &str) -> Option<Vec<Value>> {
    if !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

fn compare_json(expected: &str, actual: &str, what: &str) {
    let e = json_values(expected)
        .unwrap_or_else(|| panic!("{what}: what the docs show is not JSON:\n{expected}"));
    let a = json_values(actual)
        .unwrap_or_else(|| panic!("{what}: printed {actual:?}, not the JSON the docs show"));
    assert_eq!(
        e.len(),
        a.len(),
        "{what}: {} JSON values, the docs show {}:\n{actual}",
        a.len(),
        e.len()
    );
    for (e, a) in e.iter().zip(&a) {
        if let Err(diff) = matches(e, a, "") {
            panic!("{what}\n{diff}\nfull answer: {a}");
        }
    }
}

/// Compares text line by line (after the substitutions), learning the key
/// `herald keys create` printed.
fn compare_text(expected: &str, actual: &str, subst: &mut Subst, what: &str) {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    assert_eq!(
        e.len(),
        a.len(),
        "{what}: printed {} lines, the docs show {}:\n{actual}",
        a.len(),
        e.len()
    );
    for (e, a) in e.iter().zip(&a) {
        subst.learn_keys(e, a);
        let e = subst.apply(e);
        assert!(
            glob(e.trim_end(), a.trim_end()),
            "{what}: printed\n  {a}\nthe docs show\n  {e}"
        );
    }
}

// ---------------------------------------------------------------------------
// A shell session

/// One bash session: a scenario's commands run in it one after another.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    output: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    steps: usize,
}

impl Shell {
    /// A bash in `cwd` with the `herald` under test first on its PATH and
    /// no `HERALD_*` variable of the test's environment.
    fn start(cwd: &Path) -> Self {
        let bin = Path::new(env!("CARGO_BIN_EXE_herald")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        for (key, _) in std::env::vars() {
            if key.starts_with("HERALD_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .current_dir(cwd)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bash");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        // As a terminal shows them: stderr among stdout, in order.
        writeln!(stdin, "exec 2>&1").unwrap();
        Self {
            child,
            stdin,
            output,
            pending: Vec::new(),
            steps: 0,
        }
    }

    /// Runs `command`; returns its exit status and everything it printed.
    fn run(&mut self, command: &str) -> (i32, String) {
        self.steps += 1;
        let marker = format!("@@herald-doc-step-{}@@", self.steps);
        // The command reads nothing of the script that feeds the shell; the
        // marker keeps `$?` for a following `echo $?`.
        write!(
            self.stdin,
            "{{ {command}\n}} < /dev/null\n__herald_rc=$?; printf '\\n{marker} %d\\n' \"$__herald_rc\"; (exit $__herald_rc)\n"
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            if let Some(at) = text.find(&format!("\n{marker} ")) {
                let rest = &text[at + marker.len() + 2..];
                if let Some(end) = rest.find('\n') {
                    let status: i32 = rest[..end].trim().parse().unwrap();
                    let printed = text[..at].to_owned();
                    let consumed = at + marker.len() + 2 + end + 1;
                    self.pending = text.as_bytes()[consumed..].to_vec();
                    return (status, printed);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.pending.extend(bytes),
                Err(_) => panic!(
                    "`{command}` did not finish within {STEP_TIMEOUT:?}; it printed:\n{text}"
                ),
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a console block's `$ ` steps in `shell` and compares what each
/// prints with what the block shows under it.
fn run_console(shell: &mut Shell, block: &Block, subst: &mut Subst) {
    assert_eq!(block.lang, "console", "{}", block.place());
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in block.text.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.to_owned(), String::new()));
        } else {
            let (_, expected) = steps
                .last_mut()
                .unwrap_or_else(|| panic!("{}: output before any `$ `", block.place()));
            expected.push_str(line);
            expected.push('\n');
        }
    }
    assert!(!steps.is_empty(), "{}: no `$ ` step", block.place());
    for (i, (command, expected)) in steps.iter().enumerate() {
        let command = subst.apply(command);
        let (status, printed) = shell.run(&command);
        let what = format!("{}: `{command}`", block.place());
        let shown_next = steps.get(i + 1).is_some_and(|(next, _)| next == "echo $?");
        assert!(
            status == 0 || shown_next,
            "{what} exited {status}:\n{printed}"
        );
        if expected.trim().is_empty() {
            assert!(
                printed.trim().is_empty(),
                "{what} printed what the docs do not show:\n{printed}"
            );
        } else if json_values(&subst.apply(expected)).is_some() {
            compare_json(&subst.apply(expected), &printed, &what);
        } else {
            compare_text(expected, &printed, subst, &what);
        }
    }
}

/// Runs an sh block as one `set -e` script in `shell`; it must exit 0.
fn run_sh(shell: &mut Shell, block: &Block, subst: &Subst) {
    assert_eq!(block.lang, "sh", "{}", block.place());
    let script = subst.apply(&block.text);
    let (status, printed) = shell.run(&format!("( set -e\n{script})"));
    assert_eq!(
        status,
        0,
        "{}: exited {status}:\n{script}\nprinted:\n{printed}",
        block.place()
    );
}

// ---------------------------------------------------------------------------
// Servers and clients

/// Starts `herald serve` with no configuration in `dir`, on 127.0.0.1:8080;
/// it must answer `/healthz` `within`.
async fn serve_on_8080(dir: &Path, within: Duration) -> Herald {
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8080").is_ok(),
        "127.0.0.1:8080 is taken: the docs' commands talk to Herald there, so this test needs \
         the port (is another copy of it running?)"
    );
    let mut herald = Herald::start(dir, &["serve"], &[]);
    let took = herald.wait_healthy(within).await;
    eprintln!("herald answered /healthz {took:?} after start");
    assert_eq!(herald.base, BASE);
    herald
}

/// The epoch and position of the cursor of a websocket's `ready` frame:
/// the store's, and the head the subscription hub has seen.
async fn ready_cursor(token: &str) -> (String, u64) {
    let (_client, ready) = WsClient::connect(BASE, token).await;
    let cursor = ready["cursor"].as_str().expect("a ready cursor");
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).unwrap()).unwrap();
    let mut parts = raw.split('.').skip(1);
    let epoch = parts.next().expect("an epoch").to_owned();
    (epoch, parts.next().unwrap().parse().unwrap())
}

/// The store's epoch.
async fn epoch(token: &str) -> String {
    ready_cursor(token).await.0
}

async fn post(path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{BASE}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("Herald answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts a request body the docs show; it must be appended (201).
async fn post_body(block: &Block, path: &str, key: Option<&str>) {
    assert_eq!(block.lang, "json", "{}", block.place());
    let (status, answer) = post(path, key, &block.text).await;
    assert_eq!(
        status,
        201,
        "{}: POST {path} with this body answered {answer}",
        block.place()
    );
}

/// The server-sent events of `response` as text, read until `done` holds
/// for what arrived (or the stream ends).
async fn read_sse(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&str) -> bool,
    within: Duration,
) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + within;
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("the event stream failed: {e}\n{text}"),
            Err(_) => panic!(
                "the event stream did not show what the docs show within {within:?}:\n{text}"
            ),
        }
    }
    text
}

/// The events of SSE text (blank-line separated), comment lines apart.
fn sse_events(text: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let mut events = Vec::new();
    let mut comments = Vec::new();
    for chunk in text.split("\n\n") {
        let mut fields = Vec::new();
        for line in chunk.lines() {
            if line.starts_with(':') {
                comments.push(line.to_owned());
            } else if !line.is_empty() {
                fields.push(line.to_owned());
            }
        }
        if !fields.is_empty() {
            events.push(fields);
        }
    }
    (events, comments)
}

/// SSE text matches what the docs show: the same events, field by field
/// (`data:` compared as JSON), and the comments the docs show among those
/// that came.
fn compare_sse(expected: &str, actual: &str, subst: &Subst, what: &str) {
    let (e_events, e_comments) = sse_events(&subst.apply(expected));
    let (a_events, a_comments) = sse_events(actual);
    assert_eq!(
        e_events.len(),
        a_events.len(),
        "{what}: {} events, the docs show {}:\n{actual}",
        a_events.len(),
        e_events.len()
    );
    for (e, a) in e_events.iter().zip(&a_events) {
        assert_eq!(
            e.len(),
            a.len(),
            "{what}: fields {a:?}, the docs show {e:?}"
        );
        for (e, a) in e.iter().zip(a) {
            match (e.strip_prefix("data: "), a.strip_prefix("data: ")) {
                (Some(e), Some(a)) => compare_json(e, a, what),
                _ => assert!(glob(e, a), "{what}: got {a:?}, the docs show {e:?}"),
            }
        }
    }
    for comment in e_comments {
        assert!(
            a_comments.contains(&comment),
            "{what}: no {comment:?} came: {a_comments:?}"
        );
    }
}

fn herald_output(dir: &Path, args: &[&str]) -> std::process::Output {
    herald_command()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run herald")
}

/// Makes an API key with `herald keys create`; returns it.
fn create_key(dir: &Path, tenant: &str, scopes: &str) -> String {
    let out = herald_output(
        dir,
        &["keys", "create", "--tenant", tenant, "--scopes", scopes],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ---------------------------------------------------------------------------
// The scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_as_written() {
    let mut docs = Docs::load();
    synopsis_names_only_flags_the_commands_take(&mut docs);
    keys_as_the_readme_shows(&mut docs);
    on_defaults_the_walkthrough_and_the_tools(&mut docs).await;
    subscribing_as_docs_websocket_shows(&mut docs).await;
    a_broken_chain_reported_as_docs_hash_chain_shows(&mut docs).await;
    let unclaimed = docs.unclaimed();
    assert!(
        unclaimed.is_empty(),
        "examples nobody runs (run them here, or list them in NOT_RUN with the reason):\n{}",
        unclaimed.join("\n")
    );
}

/// The README's command-line synopsis names only flags the commands take,
/// the store flags after the subcommand included.
fn synopsis_names_only_flags_the_commands_take(docs: &mut Docs) {
    let block = docs.claim("README.md", "herald keys create --tenant T", "synopsis");
    let dir = tempfile::tempdir().unwrap();
    let mut entries: Vec<String> = Vec::new();
    for line in block.text.lines() {
        if line.starts_with("herald ") {
            entries.push(line.to_owned());
        } else if let Some(last) = entries.last_mut() {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut checked = 0;
    for entry in &entries {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let path: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .copied()
            .collect();
        if path.is_empty() {
            continue;
        }
        let mut flags: BTreeSet<String> = entry
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_owned)
            .collect();
        if entry.contains("[store flags]") {
            flags.extend(["--data-dir", "--store", "--config"].map(str::to_owned));
        }
        let mut args = path.clone();
        args.push("--help");
        let help = herald_output(dir.path(), &args);
        assert!(help.status.success(), "herald {}", args.join(" "));
        let help = String::from_utf8(help.stdout).unwrap();
        for flag in &flags {
            if flag == "--help" {
                continue;
            }
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "the README's synopsis gives `herald {}` the flag {flag}, which it does not take:\n{help}",
                path.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "the synopsis lost its flags: {entries:#?}");
}

/// The README's `herald keys` example, in a directory of its own.
fn keys_as_the_readme_shows(docs: &mut Docs) {
    let block = docs.claim("README.md", "$ herald keys create --tenant acme", "keys");
    let dir = tempfile::tempdir().unwrap();
    let mut shell = Shell::start(dir.path());
    let mut subst = Subst::default();
    run_console(&mut shell, &block, &mut subst);
    assert!(
        subst.pairs.iter().any(|(doc, _)| doc.starts_with("hk_")),
        "the example's key was never printed"
    );
}

/// `herald serve` on its defaults, and what the README, docs/websocket.md
/// and docs/hash-chain.md do against it: the walkthrough, a search, a
/// refused second process, `herald publish` and `herald tail`, and the
/// audit tools with the auditor's script.
async fn on_defaults_the_walkthrough_and_the_tools(docs: &mut Docs) {
    let dir = tempfile::tempdir().unwrap();
    // "Run it": with no configuration, /healthz within seconds, the store
    // in ./data.
    let mut herald = serve_on_8080(dir.path(), Duration::from_secs(5)).await;
    assert!(
        dir.path().join("data/herald.db").exists(),
        "the embedded store is not in ./data"
    );
    let mut subst = Subst {
        epoch: Some(epoch("").await),
        ..Subst::default()
    };
    let mut shell = Shell::start(dir.path());

    // A second process on the store is refused, as "Several processes" shows.
    let block = docs.claim(
        "README.md",
        "another Herald process uses this store",
        "refusal",
    );
    let refused = herald_output(
        dir.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let mut shown = Subst::default();
    shown.set("pid 4242", &format!("pid {}", herald.child.id()));
    let expected = shown.apply(block.text.trim());
    assert!(
        stderr.lines().any(|line| line == expected),
        "{}: the refusal reads\n{stderr}\nthe README shows\n{expected}",
        block.place()
    );

    // The walkthrough, in order.
    for marker in [
        "$ curl -s localhost:8080/healthz",
        "T-1001/events -H 'content-type: application/json' -d '{\"expected_version\": 0",
        "\"duplicate\": true",
        "wrong-expected-version",
        "from_version=3",
        "$ curl -s -X POST localhost:8080/v1/tickets/T-2001/open",
    ] {
        let block = docs.claim("README.md", marker, "walkthrough");
        run_console(&mut shell, &block, &mut subst);
    }
    // A keyed command, and its repeat after a lost answer: both succeed
    // (`curl -f` fails on an error answer), the second replayed.
    let keyed = docs.claim("README.md", "-H 'Idempotency-Key: ", "retry");
    run_sh(&mut shell, &keyed, &subst);
    run_sh(&mut shell, &keyed, &subst);
    let search = docs.claim("README.md", "/v1/events/search?type=tickets.*", "search");
    run_console(&mut shell, &search, &mut subst);
    // "Countdown images": a countdown created in a style, its image URL
    // issued, the image fetched as Gmail's proxy would, and the view.
    let countdown = docs.claim(
        "README.md",
        "/v1/timers/spring-sale/create_countdown",
        "countdown images",
    );
    run_console(&mut shell, &countdown, &mut subst);
    // "Your own events": a type registered, published, a breaking version
    // refused, bridged by an upcaster, read back upcast, listed.
    for marker in [
        "\"version\": 1, \"payload\": {\"order_id\": \"O-1\", \"amount\": 12.5}",
        "\"incompatibilities\":[",
        "\"upcaster\": {\"rename\": {\"amount\": \"total\"}",
        "$ herald schemas list --domain orders",
    ] {
        let block = docs.claim("README.md", marker, "your own events");
        run_console(&mut shell, &block, &mut subst);
    }

    // "Automations": the file the README shows, tried on the history it
    // makes, then saved.
    let file = docs.claim("README.md", "name: escalate-urgent", "escalate.yaml");
    assert_eq!(file.lang, "yaml", "{}", file.place());
    std::fs::write(dir.path().join("escalate.yaml"), &file.text).unwrap();
    let block = docs.claim(
        "README.md",
        "$ herald automations test escalate.yaml",
        "automations",
    );
    run_console(&mut shell, &block, &mut subst);

    // herald publish reads the file the README shows; herald tail follows.
    let file = docs.claim("README.md", "{bad json}", "events.jsonl");
    assert_eq!(file.lang, "jsonl", "{}", file.place());
    std::fs::write(dir.path().join("events.jsonl"), &file.text).unwrap();
    for marker in [
        "$ herald publish events.jsonl",
        "$ herald tail --type 'tickets.ticket_*'",
    ] {
        let block = docs.claim("README.md", marker, "command line");
        run_console(&mut shell, &block, &mut subst);
    }
    let tail = docs.claim("docs/websocket.md", "herald tail --url", "tail");
    run_sh(&mut shell, &tail, &subst);

    // The audit tools: anchoring first, since verify reads its anchor file.
    let db = herald_testkit::TestDatabase::create().await;
    subst.set("postgres://…", db.url());
    for marker in [
        "herald audit anchor > anchor.txt",
        "# the embedded store in ./data",
        "herald audit export --output trail.jsonl",
    ] {
        let block = docs.claim("docs/hash-chain.md", marker, "audit");
        run_sh(&mut shell, &block, &subst);
    }
    let script = docs.claim("docs/hash-chain.md", "def canon(v):", "script");
    assert_eq!(script.lang, "python", "{}", script.place());
    // `events` is what the script's comment says: the log as returned with
    // as_stored=true, and then the export of the whole log.
    for prelude in [
        "import json, urllib.request\nevents = json.load(urllib.request.urlopen(\
         'http://127.0.0.1:8080/v1/events?as_stored=true&limit=1000'))['events']\n",
        "import json\nevents = [json.loads(line) for line in open('trail.jsonl')]\n",
    ] {
        let path = dir.path().join("verify_chain.py");
        std::fs::write(
            &path,
            format!(
                "{prelude}{}\nassert len(events) > 5, len(events)\n",
                script.text
            ),
        )
        .unwrap();
        let (status, printed) = shell.run("python3 verify_chain.py");
        assert_eq!(status, 0, "{}: {printed}", script.place());
    }

    // The publish body of the README, on this log (T-1002 was refused in
    // the walkthrough, so it does not exist yet).
    let body = docs.claim(
        "README.md",
        "\"idempotency_key\": \"gateway-7:open:T-1002\"",
        "body",
    );
    post_body(&body, "/v1/events", None).await;

    let status = tokio::task::spawn_blocking(move || herald.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success());
}

/// docs/websocket.md's frames and server-sent events, against a server
/// whose store holds the README's key of `acme` and the log the page
/// describes, which the README's append body and docs/ingest.md's message
/// body make.
async fn subscribing_as_docs_websocket_shows(docs: &mut Docs) {
    let dir = tempfile::tempdir().unwrap();
    let mut subst = Subst::default();
    // The README's key, made with the README's command.
    let readme_keys = docs.peek("README.md", "$ herald keys create --tenant acme");
    let create = readme_keys
        .text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("$ ")
        .unwrap();
    let mut shell = Shell::start(dir.path());
    let (status, printed) = shell.run(create);
    assert_eq!(status, 0, "{create}: {printed}");
    let example_key = readme_keys.text.lines().nth(1).unwrap();
    subst.learn_keys(example_key, printed.lines().next().unwrap());
    let key = subst.apply(example_key);
    assert!(key.starts_with("hk_") && key != example_key, "{printed}");
    let admin = create_key(dir.path(), "acme", "admin");

    let mut herald = serve_on_8080(dir.path(), Duration::from_secs(15)).await;
    subst.epoch = Some(epoch(&key).await);

    let append = docs.claim("README.md", "\"producer\": \"edge-gateway\"", "body");
    post_body(&append, "/v1/streams/tickets/T-1001/events", Some(&admin)).await;
    let message = docs.claim(
        "docs/ingest.md",
        "\"idempotency_key\": \"noc-note-5521\"",
        "body",
    );
    // "exactly like one item of POST /v1/events": the same checks over HTTP.
    post_body(&message, "/v1/events", Some(&admin)).await;
    // The hub follows the log: the `ready` frame shows the head once it has
    // read both events.
    let caught_up = herald_testkit::eventually(Duration::from_secs(10), || async {
        ready_cursor(&key).await.1 == 2
    })
    .await;
    assert!(caught_up, "the subscription hub never saw the log's head");

    // Authenticate, subscribe, and receive what the page shows.
    let mut client = WsClient::open(BASE).await;
    let auth = docs.claim("docs/websocket.md", "{\"type\": \"auth\"", "frame");
    client
        .send(serde_json::from_str(&subst.apply(&auth.text)).unwrap())
        .await;
    let ready = docs.claim("docs/websocket.md", "{\"type\": \"ready\"", "frame");
    let frame = client.next().await.expect("a ready frame");
    compare_json(
        &subst.apply(&ready.text),
        &frame.to_string(),
        &ready.place(),
    );
    let subscribe = docs.claim("docs/websocket.md", "{\"type\": \"subscribe\"", "frame");
    client
        .send(serde_json::from_str(&subst.apply(&subscribe.text)).unwrap())
        .await;
    let answers = docs.claim("docs/websocket.md", "{\"type\": \"subscribed\"", "frames");
    let shown = json_values(&subst.apply(&answers.text)).expect("frames as JSON");
    let mut got = Vec::new();
    for _ in 0..shown.len() {
        got.push(client.next().await.expect("a frame").to_string());
    }
    compare_json(
        &subst.apply(&answers.text),
        &got.join("\n"),
        &answers.place(),
    );

    // A filter outside the key's scopes is refused with the frame shown.
    let error = docs.claim(
        "docs/websocket.md",
        "{\"type\": \"error\", \"subscription\"",
        "frame",
    );
    let (mut other, _) = WsClient::connect(BASE, &key).await;
    other
        .send(serde_json::json!({"type": "subscribe", "id": "outages", "filter": {"domains": ["edges"]}, "from": "start"}))
        .await;
    let frame = other.next().await.expect("an error frame");
    compare_json(
        &subst.apply(&error.text),
        &frame.to_string(),
        &error.place(),
    );

    // Server-sent events, with the header.
    let sse = docs.claim("docs/websocket.md", "event: live", "sse");
    let query =
        "/v1/events/stream?type=tickets.ticket_*&domain=tickets&stream=tickets/T-1001&from=start";
    let websocket_md = std::fs::read_to_string(root().join("docs/websocket.md")).unwrap();
    assert!(
        websocket_md.contains(&format!("`GET {query}`")),
        "{}: the request this test makes is no longer the one the page shows",
        sse.place()
    );
    let mut stream = reqwest::Client::new()
        .get(format!("{BASE}{query}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The heartbeat comment comes right after the stream opened, before or
    // after the first events.
    let text = read_sse(
        &mut stream,
        |t| t.contains("event: live") && t.contains(": heartbeat") && t.ends_with("\n\n"),
        Duration::from_secs(10),
    )
    .await;
    compare_sse(&sse.text, &text, &subst, &sse.place());

    // In a browser: the URL of the script, the token appended, no header.
    let script = docs.claim("docs/websocket.md", "new EventSource(", "browser");
    assert_eq!(script.lang, "js", "{}", script.place());
    let start = script
        .text
        .find("\"/v1/events/stream?")
        .expect("the script's URL")
        + 1;
    let end = start + script.text[start..].find('"').unwrap();
    let url = &script.text[start..end];
    assert!(url.ends_with("access_token="), "{url}");
    let token: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let mut browser = reqwest::Client::new()
        .get(format!("{BASE}{url}{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200, "{}: {url}", script.place());
    let text = read_sse(
        &mut browser,
        |t| t.contains("event: live"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        text.contains("\"stream\":\"tickets/T-1001\""),
        "{}: {text}",
        script.place()
    );
    drop(browser);

    // SIGTERM: the websocket's closing frame and the stream's last event.
    let pid = herald.child.id().to_string();
    let stop = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(stop.success());
    let closing = docs.claim("docs/websocket.md", "\"code\": 1001", "frame");
    let frame = client.next().await.expect("a closing frame");
    compare_json(
        &subst.apply(&closing.text),
        &frame.to_string(),
        &closing.place(),
    );
    let last = docs.claim("docs/websocket.md", "event: closing", "sse");
    let text = read_sse(&mut stream, |_| false, Duration::from_secs(10)).await;
    compare_sse(&last.text, &text, &subst, &last.place());
    let status = tokio::task::spawn_blocking(move || herald.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success());
}

/// docs/hash-chain.md's report of a broken chain is what `herald audit
/// verify --json` prints for a log of 20 events whose fifth was edited.
async fn a_broken_chain_reported_as_docs_hash_chain_shows(docs: &mut Docs) {
    let block = docs.claim("docs/hash-chain.md", "\"intact\": false", "report");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(15)).await;
    let client = reqwest::Client::new();
    for i in 1..=20 {
        let response = client
            .post(format!("{}/v1/streams/tickets/T-1001/events", herald.base))
            .json(&serde_json::json!({"events": [{"type": "tickets.note_appended", "version": 1, "payload": {"note": format!("note {i}")}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let status = tokio::task::spawn_blocking(move || herald.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success());
    let db = rusqlite::Connection::open(dir.path().join("data/herald.db")).unwrap();
    let edited = db
        .execute(
            r#"UPDATE herald_events SET payload = '{"note": "changed"}' WHERE position = 5"#,
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(db);
    let out = herald_output(dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a broken chain is exit code 1");
    compare_json(
        &block.text,
        &String::from_utf8_lossy(&out.stdout),
        &format!("{}: herald audit verify --json", block.place()),
    );
}

#[test]
fn the_matchers_can_fail() {
    let e: Value = serde_json::json!({"a": "…", "b": [1, 2], "c": "the row at 5 …"});
    let ok = serde_json::json!({"a": 5, "b": [1, 2], "c": "the row at 5 moved"});
    assert!(matches(&e, &ok, "").is_ok());
    assert!(matches(
        &e,
        &serde_json::json!({"a": 5, "b": [1, 3], "c": "the row at 5 x"}),
        ""
    )
    .is_err());
    assert!(matches(
        &e,
        &serde_json::json!({"a": 5, "b": [1, 2], "c": "the row at 6 x"}),
        ""
    )
    .is_err());
    assert!(matches(
        &e,
        &serde_json::json!({"b": [1, 2], "c": "the row at 5 x"}),
        ""
    )
    .is_err());
    assert!(glob("a…c", "abbbc") && glob("…", "") && !glob("a…c", "abd") && !glob("ab", "abc"));
    assert!(glob("x…y…z", "x1y2z") && !glob("x…y…z", "x1z"));
    let cursor = URL_SAFE_NO_PAD.encode(format!("h1.{DOC_EPOCH}.3"));
    assert_eq!(
        reissue_cursors(&format!("--from {cursor} "), "ff00"),
        format!("--from {} ", URL_SAFE_NO_PAD.encode("h1.ff00.3"))
    );
    let mut subst = Subst::default();
    subst.learn_keys("hk_65d3029cd2feab76_secret", "hk_0123456789abcdef_other");
    assert_eq!(
        subst.apply("revoke 65d3029cd2feab76"),
        "revoke 0123456789abcdef"
    );
}

#[test]
fn blocks_are_found_with_their_language() {
    let blocks = parse_blocks("x.md", "a\n```sh\nls\n```\n```\nplain\n```\n");
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        (blocks[0].lang.as_str(), blocks[0].text.as_str()),
        ("sh", "ls\n")
    );
    assert_eq!((blocks[1].lang.as_str(), blocks[1].line), ("", 5));
}
