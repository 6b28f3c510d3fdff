//! `herald publish`: streams a JSONL file (or stdin) of events to a running
//! Herald through `POST /v1/events`, in batches that stay within the
//! server's limits, and maps every per-event answer back to its input line.
//! It also owns [`ServerArgs`], the `--url`/`--key` pair every client
//! subcommand shares.
//!
//! The client speaks plain HTTP only (reqwest is built without TLS): put a
//! TLS-terminating proxy in front of Herald to reach it over the network.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use herald_events::Backoff;
use serde_json::{json, Map, Value};

use crate::config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_EVENTS_PER_APPEND};

/// Where Herald listens when neither `--url` nor `HERALD_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How long one batch is retried after a connection error, 503 or 429,
/// unless `--retry-for` says: long enough to ride out a store restart.
const DEFAULT_RETRY_FOR: &str = "60s";
/// Pauses between attempts: 250 ms, doubled on each further attempt, at
/// most 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), MAX_BACKOFF);
/// Longest pause between two attempts, whatever the doubling says.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest pause a server's `Retry-After` may impose on one retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `{"events":[` plus `],"atomic":false}`: what a batch adds to its events.
const ENVELOPE_BYTES: usize = r#"{"events":[],"atomic":false}"#.len();

/// An API key or token; never shown in `Debug` output or messages.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one header or frame that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// How a client subcommand reaches Herald.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Herald's address; plain http only (terminate TLS in front of Herald)
    #[arg(long, env = "HERALD_URL", default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,

    /// API key or token, sent as `Authorization: Bearer <key>`
    #[arg(
        long,
        env = "HERALD_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<Secret>,
}

impl ServerArgs {
    /// The base URL (`http://host:port`, no trailing slash), or why it is
    /// unusable.
    pub fn base(&self) -> Result<String, String> {
        let url = self.url.trim().trim_end_matches('/');
        if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(format!(
                "{url}: the herald CLI speaks plain http only; reach Herald on a private \
                 network or through a local TLS-terminating proxy"
            ));
        }
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            // `host:port` alone is common enough to accept.
            format!("http://{url}")
        };
        if !url.starts_with("http://") {
            return Err(format!("{url}: --url must be an http:// URL"));
        }
        if url.len() <= "http://".len() {
            return Err("--url names no host".to_owned());
        }
        Ok(url)
    }

    /// The key, unless it is absent or empty.
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref().filter(|k| !k.0.trim().is_empty())
    }
}

/// Flags of `herald publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// JSONL file, one event object per line as `POST /v1/events` takes it;
    /// `-` or nothing reads stdin
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Most events per request (the server's default limit is the maximum)
    #[arg(
        long,
        default_value_t = 500,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=DEFAULT_MAX_EVENTS_PER_APPEND as i64)
    )]
    pub batch: u16,

    /// The server's body limit; batches are cut to stay within it
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Each batch is all or nothing: one refused line fails its whole batch
    #[arg(long)]
    pub atomic: bool,

    /// Print one JSON result per line and a JSON summary on stdout
    #[arg(long)]
    pub json: bool,

    /// How long a batch is retried after a connection error, 503 (store
    /// down or restarting) or 429, with backoff (`0s` never retries)
    #[arg(
        long,
        default_value = DEFAULT_RETRY_FOR,
        value_name = "DURATION",
        value_parser = crate::config::parse_duration
    )]
    pub retry_for: Duration,
}

/// Why `herald publish` stopped before the end of its input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {input}: {source}")]
    Input { input: String, source: io::Error },
    #[error("could not reach {url}: {reason}. {unknown}; nothing after line {last_line} was sent")]
    Unreachable {
        url: String,
        reason: String,
        /// Which lines may or may not have been published.
        unknown: String,
        last_line: u64,
    },
    #[error("{url} refused the credentials ({status}): {detail}")]
    Credentials {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} answered {status} ({detail}); is --url a Herald server?")]
    NotHerald {
        url: String,
        status: u16,
        detail: String,
    },
}

/// Runs `herald publish`; exits with 2 itself on usage and connection
/// errors, since `main` maps every error to 1 and 1 means "some lines
/// failed" here.
pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    match execute(args) {
        Ok(summary) if summary.failed == 0 => Ok(()),
        Ok(summary) => Err(anyhow::anyhow!(
            "{} of {} lines failed",
            summary.failed,
            summary.lines
        )),
        Err(e) => {
            let _ = io::stdout().flush();
            eprintln!("herald: {e}");
            std::process::exit(2);
        }
    }
}

/// What happened to the lines read.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    /// Non-blank lines.
    lines: u64,
    /// Appended now.
    published: u64,
    /// Already in the store (a repeated idempotency key or event id).
    already_present: u64,
    failed: u64,
}

fn execute(args: PublishArgs) -> Result<Summary, PublishError> {
    let base = args.server.base().map_err(PublishError::Usage)?;
    if args.max_body_bytes <= ENVELOPE_BYTES {
        return Err(PublishError::Usage(format!(
            "--max-body-bytes must be more than {ENVELOPE_BYTES}"
        )));
    }
    let (name, reader): (String, Box<dyn BufRead>) = match &args.file {
        None => ("stdin".to_owned(), Box::new(io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => ("stdin".to_owned(), Box::new(io::stdin().lock())),
        Some(p) => {
            let file = File::open(p).map_err(|source| PublishError::Input {
                input: p.display().to_string(),
                source,
            })?;
            (p.display().to_string(), Box::new(BufReader::new(file)))
        }
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A full batch commits in well under this; a longer wait means the
        // server is stuck, and the batch's outcome becomes unknown.
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| PublishError::Usage(format!("cannot set up the HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PublishError::Usage(format!("cannot start the runtime: {e}")))?;
    let mut publisher = Publisher {
        http,
        endpoint: format!("{base}/v1/events"),
        key: args.server.key().cloned(),
        runtime,
        atomic: args.atomic,
        json: args.json,
        max_events: usize::from(args.batch),
        max_bytes: args.max_body_bytes,
        retry_for: args.retry_for,
        answered: false,
        batch: Vec::new(),
        batch_bytes: ENVELOPE_BYTES,
        summary: Summary::default(),
        out: io::BufWriter::new(io::stdout()),
    };
    let read = publisher.read_all(reader, &name);
    // What was read completely is still published when reading fails.
    let flushed = publisher.flush();
    read.and(flushed)?;
    publisher.print_summary();
    Ok(publisher.summary)
}

/// One non-blank input line.
#[derive(Debug)]
struct Slot {
    line: u64,
    item: Result<Item, String>,
}

/// An event to send: its JSON exactly as read.
#[derive(Debug)]
struct Item {
    raw: Vec<u8>,
    /// True when resending it cannot append it twice.
    keyed: bool,
}

/// What became of one line.
#[derive(Debug)]
enum Outcome {
    Published {
        status: u16,
        result: Value,
    },
    Failed {
        status: Option<u16>,
        error: String,
        problem: Option<Value>,
    },
}

impl Outcome {
    fn failed(error: impl Into<String>) -> Self {
        Outcome::Failed {
            status: None,
            error: error.into(),
            problem: None,
        }
    }

    fn from_problem(status: u16, problem: &Value, note: &str) -> Self {
        Outcome::Failed {
            status: Some(status),
            error: format!("{}{note}", describe(problem)),
            problem: Some(problem.clone()),
        }
    }
}

/// `title: detail` of a problem, without the batch-relative `events[i]: `
/// the server puts in front of item details (the line number replaces it).
fn describe(problem: &Value) -> String {
    let title = problem["title"].as_str().unwrap_or("refused");
    let detail = problem["detail"].as_str().unwrap_or("");
    let detail = detail
        .strip_prefix("nothing was appended: ")
        .unwrap_or(detail);
    let detail = match detail.strip_prefix("events[") {
        Some(rest) => match rest.split_once("]: ") {
            Some((index, rest)) if index.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => detail,
        },
        None => detail,
    };
    if detail.is_empty() {
        title.to_owned()
    } else {
        format!("{title}: {detail}")
    }
}

/// The server's answer to one request.
#[derive(Debug)]
enum Answer {
    Http {
        status: u16,
        body: Value,
        retry_after: Option<Duration>,
    },
    /// No answer. `sent` is false when the connection was never made, so
    /// nothing can have been appended.
    Transport { reason: String, sent: bool },
}

struct Publisher {
    http: reqwest::Client,
    endpoint: String,
    key: Option<Secret>,
    runtime: tokio::runtime::Runtime,
    atomic: bool,
    json: bool,
    max_events: usize,
    max_bytes: usize,
    retry_for: Duration,
    /// True once the server has answered a request of this run.
    answered: bool,
    batch: Vec<Slot>,
    /// Body size of `batch` as it would be sent.
    batch_bytes: usize,
    summary: Summary,
    out: io::BufWriter<io::Stdout>,
}

impl Publisher {
    /// Reads lines one at a time, sending each batch as it fills, so memory
    /// stays bounded by one batch however long the input.
    fn read_all(&mut self, mut reader: Box<dyn BufRead>, name: &str) -> Result<(), PublishError> {
        let mut buf = Vec::new();
        let mut line = 0u64;
        // No single event may exceed the body limit, so reading stops there
        // rather than buffering an arbitrarily long line.
        let limit = self.max_bytes - ENVELOPE_BYTES;
        loop {
            let read =
                read_line(&mut reader, &mut buf, limit).map_err(|source| PublishError::Input {
                    input: name.to_owned(),
                    source,
                })?;
            let Some(complete) = read else { break };
            line += 1;
            let mut text = &buf[..];
            if line == 1 {
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            let text = text.trim_ascii();
            if complete && text.is_empty() {
                continue;
            }
            let item = if complete {
                parse_item(text)
            } else {
                Err(format!(
                    "the line is longer than the server's body limit of {} bytes",
                    self.max_bytes
                ))
            };
            self.push(Slot { line, item })?;
        }
        Ok(())
    }

    fn push(&mut self, slot: Slot) -> Result<(), PublishError> {
        self.summary.lines += 1;
        let size = slot.item.as_ref().map_or(0, |i| i.raw.len() + 1);
        if self.batch.len() >= self.max_events || self.batch_bytes + size > self.max_bytes {
            self.flush()?;
        }
        self.batch_bytes += size;
        self.batch.push(slot);
        if self.batch.len() >= self.max_events {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch and reports every line of it, in line order.
    fn flush(&mut self) -> Result<(), PublishError> {
        let slots = std::mem::take(&mut self.batch);
        self.batch_bytes = ENVELOPE_BYTES;
        if slots.is_empty() {
            return Ok(());
        }
        let mut outcomes: Vec<Option<Outcome>> = slots.iter().map(|_| None).collect();
        let mut to_send = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            match &slot.item {
                Ok(_) => to_send.push(i),
                Err(why) => outcomes[i] = Some(Outcome::failed(why.clone())),
            }
        }
        let bad: Vec<u64> = slots
            .iter()
            .filter(|s| s.item.is_err())
            .map(|s| s.line)
            .collect();
        if self.atomic && !bad.is_empty() {
            // All or nothing holds for the lines of a batch, not just for
            // the ones that reach the server.
            for &i in &to_send {
                outcomes[i] = Some(Outcome::failed(format!(
                    "not sent: its atomic batch holds invalid {}",
                    line_numbers(&bad)
                )));
            }
        } else if !to_send.is_empty() {
            let sent = self.send(&slots, to_send, &mut outcomes);
            if let Err(e) = sent {
                self.report(&slots, outcomes);
                return Err(e);
            }
        }
        self.report(&slots, outcomes);
        Ok(())
    }

    /// Prints each decided line's outcome and counts it.
    fn report(&mut self, slots: &[Slot], outcomes: Vec<Option<Outcome>>) {
        for (slot, outcome) in slots.iter().zip(outcomes) {
            let Some(outcome) = outcome else { continue };
            let line = slot.line;
            match outcome {
                Outcome::Published { status, result } => {
                    let duplicate = result["duplicate"].as_bool().unwrap_or(status == 200);
                    if duplicate {
                        self.summary.already_present += 1;
                    } else {
                        self.summary.published += 1;
                    }
                    if self.json {
                        let mut record = Map::new();
                        record.insert("line".into(), line.into());
                        record.insert("ok".into(), true.into());
                        record.insert("status".into(), status.into());
                        if let Value::Object(fields) = result {
                            for (k, v) in fields {
                                if k != "index" && k != "status" {
                                    record.insert(k, v);
                                }
                            }
                        }
                        let _ = writeln!(self.out, "{}", Value::Object(record));
                    }
                }
                Outcome::Failed {
                    status,
                    error,
                    problem,
                } => {
                    self.summary.failed += 1;
                    eprintln!("line {line}: {error}");
                    if self.json {
                        let mut record =
                            json!({"line": line, "ok": false, "status": status, "error": error});
                        if let Some(problem) = problem {
                            record["problem"] = problem;
                        }
                        let _ = writeln!(self.out, "{record}");
                    }
                }
            }
        }
        let _ = self.out.flush();
    }

    fn print_summary(&mut self) {
        let s = self.summary;
        let _ = if self.json {
            writeln!(
                self.out,
                "{}",
                json!({"summary": {"lines": s.lines, "published": s.published,
                                   "already_present": s.already_present, "failed": s.failed}})
            )
        } else {
            writeln!(
                self.out,
                "{} published, {} already present, {} failed ({} lines)",
                s.published, s.already_present, s.failed, s.lines
            )
        };
        let _ = self.out.flush();
    }

    /// Sends the items `indices` of `slots`, cut to the current limits,
    /// retrying where that cannot append anything twice, and records an
    /// outcome for each.
    fn send(
        &mut self,
        slots: &[Slot],
        indices: Vec<usize>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), PublishError> {
        let mut queue: VecDeque<Vec<usize>> = self.chunks(slots, indices).into();
        while let Some(chunk) = queue.pop_front() {
            let mut pending = chunk;
            let mut retries = Retries::new(self.retry_for);
            loop {
                let keyed = pending.iter().all(|&i| item(slots, i).keyed);
                let answer = self.post(slots, &pending);
                let can_retry = retries.allowed();
                let (status, body, retry_after) = match answer {
                    Answer::Transport { reason, sent } => {
                        // Unsent, nothing can have been appended: retrying
                        // is safe without keys too. Only a server that has
                        // answered is waited for: one that never did is more
                        // likely a wrong --url than a restart.
                        if self.answered && (keyed || !sent) && can_retry {
                            retries.pause(&reason, &lines_of(slots, &pending), None);
                            continue;
                        }
                        let lines: Vec<u64> = pending.iter().map(|&i| slots[i].line).collect();
                        let unknown = if !sent {
                            format!(
                                "{} {} not sent",
                                line_numbers(&lines),
                                if lines.len() == 1 { "was" } else { "were" }
                            )
                        } else if keyed {
                            format!(
                                "{} may or may not have been published (sending them \
                                 again is safe: they carry idempotency keys or ids)",
                                line_numbers(&lines)
                            )
                        } else {
                            format!(
                                "{} may or may not have been published (not retried: \
                                 not every one carries an idempotency key)",
                                line_numbers(&lines)
                            )
                        };
                        return Err(PublishError::Unreachable {
                            url: self.endpoint.clone(),
                            reason,
                            unknown,
                            last_line: lines.last().copied().unwrap_or(0),
                        });
                    }
                    Answer::Http {
                        status,
                        body,
                        retry_after,
                    } => {
                        self.answered = true;
                        (status, body, retry_after)
                    }
                };

                if let Some(results) = body.get("results").and_then(Value::as_array) {
                    let mut retry = Vec::new();
                    let mut retry_why = String::new();
                    for result in results {
                        let Some(&i) = result["index"]
                            .as_u64()
                            .and_then(|n| pending.get(n as usize))
                        else {
                            continue;
                        };
                        let item_status = result["status"].as_u64().unwrap_or(0) as u16;
                        if (200..300).contains(&item_status) {
                            outcomes[i] = Some(Outcome::Published {
                                status: item_status,
                                result: result.clone(),
                            });
                        } else if item_status == 503 && item(slots, i).keyed && can_retry {
                            retry.push(i);
                            retry_why = format!("503 {}", problem_slug(&result["problem"]));
                        } else {
                            let note = if item_status == 503 {
                                self.not_retried(item(slots, i).keyed)
                            } else {
                                String::new()
                            };
                            outcomes[i] = Some(Outcome::from_problem(
                                item_status,
                                &result["problem"],
                                &note,
                            ));
                        }
                    }
                    for &i in &pending {
                        if outcomes[i].is_none() && !retry.contains(&i) {
                            outcomes[i] = Some(Outcome::failed(format!(
                                "the server ({status}) gave no result for this event"
                            )));
                        }
                    }
                    if retry.is_empty() {
                        break;
                    }
                    retries.pause(&retry_why, &lines_of(slots, &retry), retry_after);
                    pending = retry;
                    continue;
                }

                let kind = body["type"].as_str().unwrap_or("");
                let detail = describe(&body);
                if let Some(errors) = body.get("errors").and_then(Value::as_array) {
                    // An atomic batch refused for some of its events.
                    let mut culprits = Vec::new();
                    for error in errors {
                        if let Some(&i) = error["index"]
                            .as_u64()
                            .and_then(|n| pending.get(n as usize))
                        {
                            let s = error["status"].as_u64().map_or(status, |s| s as u16);
                            outcomes[i] = Some(Outcome::from_problem(s, &error["problem"], ""));
                            culprits.push(slots[i].line);
                        }
                    }
                    for &i in &pending {
                        if outcomes[i].is_none() {
                            outcomes[i] = Some(Outcome::Failed {
                                status: Some(status),
                                error: format!(
                                    "not appended: its atomic batch was refused for {}",
                                    line_numbers(&culprits)
                                ),
                                problem: Some(body.clone()),
                            });
                        }
                    }
                    break;
                }
                match status {
                    401 | 403 => {
                        return Err(PublishError::Credentials {
                            url: self.endpoint.clone(),
                            status,
                            detail,
                        })
                    }
                    404 | 405 => {
                        return Err(PublishError::NotHerald {
                            url: self.endpoint.clone(),
                            status,
                            detail,
                        })
                    }
                    _ => {}
                }
                let over_limit =
                    kind.ends_with(":too-many-events") || kind.ends_with(":body-too-large");
                if over_limit && !self.atomic && pending.len() > 1 {
                    // The server's limits are lower than ours: learn them
                    // and send the same events in smaller requests. Nothing
                    // was appended, so this repeats nothing.
                    self.learn_limits(&body, pending.len());
                    for chunk in self.chunks(slots, pending).into_iter().rev() {
                        queue.push_front(chunk);
                    }
                    break;
                }
                let transient = (status == 503 && keyed) || status == 429;
                if transient && can_retry {
                    retries.pause(
                        &format!("{status} {}", problem_slug(&body)),
                        &lines_of(slots, &pending),
                        retry_after,
                    );
                    continue;
                }
                let note = if over_limit && self.atomic {
                    " (lower --batch or --max-body-bytes to the server's limits)".to_owned()
                } else if status == 503 {
                    self.not_retried(keyed)
                } else if self.atomic && pending.len() > 1 {
                    " (nothing of its atomic batch was appended)".to_owned()
                } else {
                    String::new()
                };
                for &i in &pending {
                    outcomes[i] = Some(Outcome::from_problem(status, &body, &note));
                }
                break;
            }
        }
        Ok(())
    }

    /// Lowers the limits to what a refusal names (or halves the count when
    /// it names nothing), so later batches fit too.
    fn learn_limits(&mut self, problem: &Value, sent: usize) {
        let before = (self.max_events, self.max_bytes);
        if let Some(limit) = problem["limit"].as_u64() {
            self.max_events = self.max_events.min(limit as usize).max(1);
        }
        if let Some(limit) = problem["limit_bytes"].as_u64() {
            self.max_bytes = self.max_bytes.min(limit as usize).max(ENVELOPE_BYTES + 2);
        }
        if (self.max_events, self.max_bytes) == before {
            // Refused without a lower limit named: halving still ends,
            // since a single event is never split again.
            self.max_events = (sent / 2).max(1);
        }
    }

    /// Cuts `indices` into requests within the current limits; an event too
    /// large on its own fails here without being sent.
    fn chunks(&self, slots: &[Slot], indices: Vec<usize>) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut current = Vec::new();
        let mut bytes = ENVELOPE_BYTES;
        for i in indices {
            let size = item(slots, i).raw.len() + 1;
            if !current.is_empty()
                && (current.len() >= self.max_events || bytes + size > self.max_bytes)
            {
                out.push(std::mem::take(&mut current));
                bytes = ENVELOPE_BYTES;
            }
            bytes += size;
            current.push(i);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    fn post(&self, slots: &[Slot], pending: &[usize]) -> Answer {
        let mut body = Vec::with_capacity(
            ENVELOPE_BYTES
                + pending
                    .iter()
                    .map(|&i| item(slots, i).raw.len() + 1)
                    .sum::<usize>(),
        );
        body.extend_from_slice(br#"{"events":["#);
        for (n, &i) in pending.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&item(slots, i).raw);
        }
        body.extend_from_slice(if self.atomic {
            br#"],"atomic":true}"#
        } else {
            br#"],"atomic":false}"#
        });
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        self.runtime.block_on(async move {
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return Answer::Transport {
                        reason: error_chain(&e),
                        sent: !e.is_connect(),
                    }
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
            let bytes = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return Answer::Transport {
                        reason: error_chain(&e),
                        sent: true,
                    }
                }
            };
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&bytes);
                json!({"title": format!("HTTP {status}"),
                       "detail": text.chars().take(200).collect::<String>()})
            });
            Answer::Http {
                status,
                body,
                retry_after,
            }
        })
    }

    /// Why a 503 was not retried, for its line's message.
    fn not_retried(&self, keyed: bool) -> String {
        if keyed {
            format!(
                " (still unavailable after retrying for {} s)",
                self.retry_for.as_secs_f64()
            )
        } else {
            " (not retried: without an idempotency_key or id, a retry could publish it twice, \
             since the first attempt may have committed)"
                .to_owned()
        }
    }
}

/// The retries of one request: allowed until `budget` has passed since its
/// first failure, each after a pause that doubles from [`FIRST_BACKOFF`] up
/// to [`MAX_BACKOFF`], or is as long as the server's `Retry-After`.
struct Retries {
    budget: Duration,
    since: Option<Instant>,
    attempt: u32,
}

impl Retries {
    fn new(budget: Duration) -> Self {
        Self {
            budget,
            since: None,
            attempt: 0,
        }
    }

    /// True while another attempt may be made.
    fn allowed(&self) -> bool {
        match self.since {
            None => !self.budget.is_zero(),
            Some(since) => since.elapsed() < self.budget,
        }
    }

    /// The pause before attempt number `attempt + 1` (the first retry is 1).
    fn backoff(attempt: u32) -> Duration {
        BACKOFF.delay(attempt.saturating_add(1))
    }

    /// Waits before the next attempt, never past the budget; says so on
    /// stderr the first time, since a restarting store can take a while.
    fn pause(&mut self, why: &str, lines: &[u64], retry_after: Option<Duration>) {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.attempt == 0 {
            eprintln!(
                "herald: {why} for {}; retrying for up to {} s",
                line_numbers(lines),
                self.budget.as_secs_f64()
            );
        }
        let backoff = Self::backoff(self.attempt);
        let wait = retry_after.map_or(backoff, |r| r.max(backoff));
        std::thread::sleep(wait.min(self.budget.saturating_sub(since.elapsed())));
        self.attempt += 1;
    }
}

/// The input line numbers of `indices`.
fn lines_of(slots: &[Slot], indices: &[usize]) -> Vec<u64> {
    indices.iter().map(|&i| slots[i].line).collect()
}

/// The last part of a problem's `type` (`store-unavailable`), or nothing.
fn problem_slug(problem: &Value) -> &str {
    problem["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("")
}

fn item(slots: &[Slot], i: usize) -> &Item {
    slots[i]
        .item
        .as_ref()
        .expect("only lines that parsed are sent")
}

/// Checks one line locally: it must be a JSON object; the server checks
/// the rest. The line is sent as written, so numbers and strings reach the
/// server exactly as the producer wrote them.
fn parse_item(text: &[u8]) -> Result<Item, String> {
    let value: Map<String, Value> = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object: each line must be one event object".into()),
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(format!(
                "not valid JSON: {e}",
                e = e.to_string().replace(" at line 1 ", " at ")
            ))
        }
        Err(e) => return Err(format!("not valid JSON: {e}")),
    };
    let has = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    Ok(Item {
        raw: text.to_vec(),
        // An explicit event id makes a resend as harmless as a key does:
        // the store is idempotent on event ids.
        keyed: has("idempotency_key") || has("id"),
    })
}

/// Reads one line into `buf` (without its line ending). `Some(false)` when
/// the line is longer than `limit`: the rest of it is skipped unread into
/// memory.
fn read_line(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let n = io::Read::take(&mut *reader, limit as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if n <= limit {
        return Ok(Some(true));
    }
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        if let Some(end) = available.iter().position(|&b| b == b'\n') {
            reader.consume(end + 1);
            break;
        }
        let len = available.len();
        reader.consume(len);
    }
    Ok(Some(false))
}

/// `line 3` or `lines 3, 5–9, 12`.
fn line_numbers(lines: &[u64]) -> String {
    match lines {
        [one] => format!("line {one}"),
        _ => format!("lines {}", ranges(lines)),
    }
}

/// `3, 5–9, 12` for sorted line numbers.
fn ranges(lines: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// An error and its causes, `: `-separated: reqwest's own message names
/// only the URL, the cause (connection refused, timeout) is further down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_without_reading_them_whole() {
        let input = b"short\nthis line is far too long\n\nlast";
        let mut reader: Box<dyn BufRead> = Box::new(&input[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(complete) = read_line(&mut reader, &mut buf, 10).unwrap() {
            got.push(complete.then(|| String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                Some("short".to_owned()),
                None,
                Some(String::new()),
                Some("last".to_owned()),
            ]
        );
    }

    #[test]
    fn problems_lose_their_batch_index_and_ranges_read_well() {
        let problem = json!({"title": "The payload breaks its schema",
                             "detail": "events[12]: payload of x breaks its schema"});
        assert_eq!(
            describe(&problem),
            "The payload breaks its schema: payload of x breaks its schema"
        );
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1–3, 5, 7–8");
    }

    #[test]
    fn retries_back_off_to_a_ceiling_within_their_budget() {
        let pauses: Vec<u64> = (0..8)
            .map(|a| Retries::backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert!(Retries::backoff(u32::MAX) == MAX_BACKOFF);
        assert!(!Retries::new(Duration::ZERO).allowed());
        let mut retries = Retries::new(Duration::from_millis(30));
        assert!(retries.allowed());
        let started = Instant::now();
        // The pause is cut to what is left of the budget, after which no
        // further attempt is allowed.
        retries.pause("503 store-unavailable", &[1], Some(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!retries.allowed());
    }

    #[test]
    fn only_objects_are_sent_and_keys_make_retries_safe() {
        assert!(parse_item(b"[1]").is_err());
        assert!(parse_item(b"{\"a\":")
            .unwrap_err()
            .starts_with("not valid JSON"));
        assert!(parse_item(br#"{"idempotency_key":"k"}"#).unwrap().keyed);
        assert!(!parse_item(br#"{"idempotency_key":""}"#).unwrap().keyed);
        assert!(!parse_item(br#"{"stream":"a/b"}"#).unwrap().keyed);
    }
}
