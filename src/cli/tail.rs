//! `herald tail`: follows events live over the `herald.v1` websocket
//! (`docs/websocket.md`) and prints each one as a line on stdout. It owns
//! the client side of that protocol: authentication, one filtered
//! subscription, answering heartbeats, and resuming after a dropped
//! connection or a slow-consumer close from the last cursor it printed, so
//! no event is skipped or printed twice.
//!
//! Plain `ws://` only, like `herald publish`: TLS is expected to be
//! terminated in front of Herald.

use std::cell::RefCell;
use std::io::{self, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures::{SinkExt, StreamExt};
use herald_events::Backoff;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::publish::{error_chain, ServerArgs};
use crate::ws::protocol::{close, SUBPROTOCOL};

/// The id of the one subscription `herald tail` holds.
const SUBSCRIPTION: &str = "tail";
/// Reconnection attempts in a row without any progress before giving up.
const RECONNECTS: u32 = 8;
/// Pauses before reconnecting: 200 ms, doubled on each further attempt, at
/// most 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server sends a heartbeat every 15 s; this much silence means the
/// connection is dead even if TCP has not noticed.
const SILENCE: Duration = Duration::from_secs(45);

/// How events are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One compact JSON object per line: the event with its `cursor`.
    #[default]
    Json,
    /// `position  type  stream  cursor`.
    Text,
}

/// Flags of `herald tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Only events of this type; `*` is a wildcard (`tickets.*`); repeatable
    #[arg(long = "type", value_name = "PATTERN")]
    pub types: Vec<String>,

    /// Only events of this domain; repeatable
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,

    /// Only events of this stream (`domain/id`); repeatable
    #[arg(long = "stream", value_name = "DOMAIN/ID")]
    pub streams: Vec<String>,

    /// `start` (the whole history), `now` (only new events) or a cursor
    /// printed earlier (continue right after that event)
    #[arg(long, default_value = "now", value_name = "start|now|CURSOR")]
    pub from: String,

    /// Exit after printing this many events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Why `herald tail` stopped (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Usage(String),
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("authentication failed (close code 4001): {0}")]
    Auth(String),
    #[error("the credentials were revoked or no longer allow this (close code 4003): {0}")]
    Forbidden(String),
    #[error("resync required (close code 4009): {0} (here: --from start)")]
    Resync(String),
    #[error("the server refused the subscription ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("the server closed the connection ({code}): {reason}")]
    Closed { code: u16, reason: String },
    #[error("gave up after {attempts} reconnection attempts: {reason}")]
    GaveUp { attempts: u32, reason: String },
    #[error("cannot write to stdout: {0}")]
    Output(io::Error),
}

/// Runs `herald tail`. Exits with 2 itself on errors and with 130 on
/// Ctrl-C (143 on SIGTERM), since `main` maps every error to 1.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let state = RefCell::new(State {
        resume: Resume::parse(&args.from),
        printed: 0,
        count: args.count,
        last_position: None,
        progressed: false,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = follow(&args, &state) => Ok(result),
            code = stopped() => Err(code),
        }
    });
    drop(runtime);
    let resume = state.borrow().resume.as_str().to_owned();
    match result {
        Ok(Ok(())) => Ok(()),
        Err(code) => {
            eprintln!("herald: interrupted; resume with --from {resume}");
            std::process::exit(code);
        }
        Ok(Err(e)) => {
            eprintln!("herald: {e}");
            if matches!(e, TailError::GaveUp { .. }) {
                eprintln!("herald: resume with --from {resume}");
            }
            std::process::exit(2);
        }
    }
}

/// Waits for Ctrl-C (or SIGTERM, as a supervisor stops a follower);
/// returns the conventional exit code, 128 + the signal.
async fn stopped() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return 130,
                _ = terminate.recv() => return 143,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    130
}

/// Where the next subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    Start,
    Now,
    After(String),
}

impl Resume {
    fn parse(text: &str) -> Self {
        match text.trim() {
            "start" => Resume::Start,
            "now" => Resume::Now,
            cursor => Resume::After(cursor.to_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Resume::Start => "start",
            Resume::Now => "now",
            Resume::After(cursor) => cursor,
        }
    }
}

/// What survives from one connection to the next.
#[derive(Debug)]
struct State {
    resume: Resume,
    printed: u64,
    /// `--count`: stop after printing this many.
    count: Option<u64>,
    /// Position of the last event printed: a guard against printing an
    /// event twice, whatever the server resends.
    last_position: Option<u64>,
    /// Set when a connection got somewhere, which resets the retry budget.
    progressed: bool,
}

/// How one connection ended, when it did not end the command.
enum End {
    Fatal(TailError),
    Lost(String),
}

async fn follow(args: &TailArgs, state: &RefCell<State>) -> Result<(), TailError> {
    let base = args.server.base().map_err(TailError::Usage)?;
    if args.from.trim().is_empty() {
        return Err(TailError::Usage(
            "--from is start, now or a cursor".to_owned(),
        ));
    }
    let url = format!("ws{}/v1/subscribe", &base["http".len()..]);
    let mut failures = 0u32;
    let mut first = true;
    loop {
        state.borrow_mut().progressed = false;
        let ended = connection(args, &url, state, first).await;
        first = false;
        let reason = match ended {
            Ok(()) => return Ok(()),
            Err(End::Fatal(e)) => return Err(e),
            Err(End::Lost(reason)) => reason,
        };
        if state.borrow().progressed {
            failures = 0;
        }
        failures += 1;
        if failures > RECONNECTS {
            return Err(TailError::GaveUp {
                attempts: RECONNECTS,
                reason,
            });
        }
        let backoff = BACKOFF.delay(failures);
        eprintln!(
            "herald: {reason}; reconnecting in {} ms from {} (attempt {failures} of {RECONNECTS})",
            backoff.as_millis(),
            state.borrow().resume.as_str()
        );
        tokio::time::sleep(backoff).await;
    }
}

/// One websocket connection, from the handshake until it closes or the
/// `--count` is reached (`Ok`).
async fn connection(
    args: &TailArgs,
    url: &str,
    state: &RefCell<State>,
    first: bool,
) -> Result<(), End> {
    let unreachable = |reason: String| {
        if first {
            // A server that is not there at all is more likely a wrong
            // --url than an outage worth waiting for.
            End::Fatal(TailError::Connect {
                url: url.to_owned(),
                reason,
            })
        } else {
            End::Lost(format!("could not reconnect: {reason}"))
        }
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| End::Fatal(TailError::Usage(format!("{url}: {e}"))))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let mut socket = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((socket, _response))) => socket,
        Ok(Err(tungstenite::Error::Http(response))) if !response.status().is_server_error() => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            return Err(End::Fatal(TailError::Connect {
                url: url.to_owned(),
                reason: format!(
                    "the server answered {} instead of opening a {SUBPROTOCOL} websocket: {}",
                    response.status(),
                    body.chars().take(300).collect::<String>()
                ),
            }));
        }
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    };

    let token = args.server.key().map_or("", |k| k.expose());
    send(&mut socket, json!({"type": "auth", "token": token})).await?;
    // The last `error` frame not about the subscription: it explains the
    // close that follows it better than the truncated close reason.
    let mut last_error: Option<String> = None;
    loop {
        let message = match tokio::time::timeout(SILENCE, socket.next()).await {
            Err(_) => {
                return Err(End::Lost(format!(
                    "no frame from the server for {} s",
                    SILENCE.as_secs()
                )))
            }
            Ok(None) => return Err(End::Lost("the connection dropped".to_owned())),
            Ok(Some(Err(e))) => {
                return Err(End::Lost(format!(
                    "the connection dropped: {}",
                    error_chain(&e)
                )))
            }
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let reason = last_error.unwrap_or(reason);
                return Err(match code {
                    close::AUTH_FAILED => End::Fatal(TailError::Auth(reason)),
                    close::FORBIDDEN => End::Fatal(TailError::Forbidden(reason)),
                    close::RESYNC_REQUIRED => End::Fatal(TailError::Resync(reason)),
                    close::PROTOCOL_ERROR => End::Fatal(TailError::Closed { code, reason }),
                    _ => End::Lost(format!(
                        "the server closed the connection ({code}: {reason})"
                    )),
                });
            }
            // tungstenite answers pings itself; binary frames are not herald.v1.
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).map_err(|e| {
            End::Fatal(TailError::Closed {
                code: close::PROTOCOL_ERROR,
                reason: format!("the server sent a frame that is not JSON: {e}"),
            })
        })?;
        let ours = frame["subscription"].as_str() == Some(SUBSCRIPTION);
        match frame["type"].as_str().unwrap_or("") {
            "ready" => {
                let from = {
                    let mut s = state.borrow_mut();
                    if s.resume == Resume::Now {
                        // "now" pinned to this head: a reconnect before any
                        // event then still misses nothing committed since.
                        if let Some(cursor) = frame["cursor"].as_str() {
                            s.resume = Resume::After(cursor.to_owned());
                        }
                    }
                    s.resume.as_str().to_owned()
                };
                let subscribe = json!({
                    "type": "subscribe",
                    "id": SUBSCRIPTION,
                    "filter": {"types": args.types, "domains": args.domains, "streams": args.streams},
                    "from": from,
                });
                send(&mut socket, subscribe).await?;
            }
            "event" if ours => {
                let done = print(args.format, &frame, state)?;
                if done {
                    // Best effort: the events are printed whatever the
                    // server makes of the goodbye.
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return Ok(());
                }
            }
            "live" if ours => {
                // Everything before the live edge was printed, so resuming
                // from it skips re-reading a history that has no matches.
                let mut s = state.borrow_mut();
                if let Some(cursor) = frame["cursor"].as_str() {
                    s.resume = Resume::After(cursor.to_owned());
                }
                s.progressed = true;
            }
            "heartbeat" => {
                send(&mut socket, json!({"type": "ping", "id": "heartbeat"})).await?;
            }
            "error" if frame.get("subscription").is_some() => {
                return Err(End::Fatal(TailError::Refused {
                    code: frame["code"].as_str().unwrap_or("error").to_owned(),
                    message: frame["message"].as_str().unwrap_or("").to_owned(),
                }));
            }
            "error" => last_error = frame["message"].as_str().map(str::to_owned),
            // `subscribed`, `pong`, `closing` (its cursors are the ones we
            // printed last), and frames of later protocol versions.
            _ => {}
        }
    }
}

async fn send<S>(socket: &mut S, frame: Value) -> Result<(), End>
where
    S: futures::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| End::Lost(format!("the connection dropped: {}", error_chain(&e))))
}

/// Prints one event frame unless it was printed already; true when
/// `--count` is reached (or nobody reads stdout any more).
fn print(format: Format, frame: &Value, state: &RefCell<State>) -> Result<bool, End> {
    let mut s = state.borrow_mut();
    let event = &frame["event"];
    let cursor = frame["cursor"].as_str().unwrap_or("");
    let position = event["position"].as_u64();
    if let (Some(p), Some(last)) = (position, s.last_position) {
        if p <= last {
            return Ok(false);
        }
    }
    let line = match format {
        Format::Json => {
            let mut event = event.clone();
            if let Value::Object(map) = &mut event {
                map.insert("cursor".into(), cursor.into());
            }
            event.to_string()
        }
        Format::Text => format!(
            "{}  {}  {}  {cursor}",
            position.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            event["type"].as_str().unwrap_or("?"),
            event["stream"].as_str().unwrap_or("?"),
        ),
    };
    let mut out = io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => {}
        // `herald tail | head -n 3`: the reader is gone, which ends us.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(true),
        Err(e) => return Err(End::Fatal(TailError::Output(e))),
    }
    s.resume = Resume::After(cursor.to_owned());
    s.printed += 1;
    s.last_position = position.or(s.last_position);
    s.progressed = true;
    Ok(s.count.is_some_and(|n| s.printed >= n))
}
