//! One websocket connection speaking `herald.v1`: authentication in the
//! first frame, subscriptions, heartbeats both ways, re-checking the
//! credentials while connected, and closing with a documented code — with
//! the cursors to resume from when the client is too slow or the server is
//! shutting down (1001, at once, so that no subscriber holds the stop back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use bytestring::ByteString;
use futures::StreamExt;
use herald_events::Position;

use super::hub::{Outbound, Queue, ShutdownSignal, Sink, Slow, SubscriptionKey};
use super::protocol::{close, json_string, ClientFrame, Cursor, Filter, FilterError, SUBPROTOCOL};
use crate::api::problem::{Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::Identity;

/// How long a client has to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Silence from the client after which the connection is closed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// How often the credentials are checked again, so a revoked key's
/// connections close within this long.
const RECHECK: Duration = Duration::from_secs(2);
/// Frames queued for one connection before it counts as slow.
pub const QUEUE: usize = 512;
/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 100;
/// Largest frame a client may send.
const MAX_FRAME: usize = 64 * 1024;

/// `GET /v1/subscribe`: upgrades to a `herald.v1` websocket.
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "subscriptions",
    operation_id = "subscribe",
    summary = "Websocket subscriptions (herald.v1)",
    description = "Upgrades to a websocket speaking the `herald.v1` subprotocol, which carries \
        several subscriptions, each with a filter (types with wildcards, domains, streams) and a \
        starting point (a cursor, `start` or `now`): history, then live with no gap and no \
        duplicate. The credential is not a header: the client's first frame is \
        `{\"type\": \"auth\", \"token\": \"<credential>\"}` (close code 4001 otherwise), so \
        the upgrade itself needs none. Frames, close codes (4008 for a slow consumer and 1001 \
        when the server shuts down, each after a `closing` frame with the cursors to resume \
        from) and examples: [docs/websocket.md](docs/websocket.md).",
    params(
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake nonce"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Protocol" = String, Header, description = "Must offer `herald.v1`"),
    ),
    responses(
        (
            status = 101,
            description = "Switching Protocols: the connection is a `herald.v1` websocket",
            headers(("Sec-WebSocket-Protocol" = String, description = "`herald.v1`")),
        ),
        (
            status = 400,
            description = "`subprotocol-required`: `herald.v1` not offered in `Sec-WebSocket-Protocol`",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (
            status = 426,
            description = "`upgrade-required`: `herald.v1` offered, but not a websocket upgrade \
                (`Upgrade: websocket` given)",
            body = Problem,
            content_type = "application/problem+json",
            headers(("Upgrade" = String, description = "`websocket`")),
        ),
        (
            status = 503,
            description = "`shutting-down`: the server is stopping (`Retry-After` given)",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub async fn subscribe(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let offered = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !offered.split(',').any(|p| p.trim() == SUBPROTOCOL) {
        return Err(Problem::new(
            ProblemKind::SubprotocolRequired,
            format!("open the websocket with subprotocol {SUBPROTOCOL} (Sec-WebSocket-Protocol)"),
        ));
    }
    if state.hub.is_shutting_down() {
        return Err(shutting_down());
    }
    let (mut response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(upgraded) => upgraded,
        Err(e) => return Ok(upgrade_required(&e)),
    };
    response.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let state = state.into_inner();
    actix_web::rt::spawn(run(state, session, stream.max_frame_size(MAX_FRAME)));
    Ok(response)
}

/// 426 `upgrade-required`, with `Upgrade: websocket` (RFC 9110 §15.5.22).
fn upgrade_required(why: &dyn std::fmt::Display) -> HttpResponse {
    let problem = Problem::new(
        ProblemKind::UpgradeRequired,
        format!("not a websocket upgrade ({why}); open a websocket with subprotocol {SUBPROTOCOL}"),
    );
    let mut response = actix_web::ResponseError::error_response(&problem);
    response.headers_mut().insert(
        actix_web::http::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    response
}

/// The answer to a subscription asked for while the process stops.
pub(crate) fn shutting_down() -> Problem {
    Problem::new(
        ProblemKind::ShuttingDown,
        "Herald is shutting down; reconnect (to another instance) and resume with your cursor",
    )
    .retry_after(1)
}

/// Why the connection ends.
struct Ending {
    code: u16,
    reason: String,
}

impl Ending {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    fn going_away() -> Self {
        Self::new(
            close::GOING_AWAY,
            "Herald is shutting down: reconnect and resume with the cursors of the closing frame",
        )
    }
}

fn error_frame(subscription: Option<&str>, code: &str, message: &str) -> String {
    match subscription {
        Some(id) => format!(
            r#"{{"type":"error","subscription":{},"code":{},"message":{}}}"#,
            json_string(id),
            json_string(code),
            json_string(message)
        ),
        None => format!(
            r#"{{"type":"error","code":{},"message":{}}}"#,
            json_string(code),
            json_string(message)
        ),
    }
}

async fn close_with(mut session: Session, ending: Ending) {
    let _ = session
        .text(error_frame(None, "closing", &ending.reason))
        .await;
    let _ = session
        .close(Some(CloseReason {
            code: CloseCode::from(ending.code),
            description: Some(ending.reason.chars().take(100).collect()),
        }))
        .await;
}

async fn run(state: Arc<AppState>, mut session: Session, mut stream: MessageStream) {
    let _connected = crate::telemetry::Subscriber::connected("websocket");
    // 1. Authentication, in the first frame.
    let mut shutdown = state.hub.shutdown_signal();
    let first = tokio::select! {
        first = tokio::time::timeout(AUTH_TIMEOUT, stream.next()) => first,
        _ = shutdown.wait() => return close_with(session, Ending::going_away()).await,
    };
    let token = match first {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Auth { token }) => token,
            _ => {
                return close_with(
                    session,
                    Ending::new(close::AUTH_FAILED, "the first frame must be auth"),
                )
                .await;
            }
        },
        Err(_) => {
            return close_with(
                session,
                Ending::new(close::AUTH_FAILED, "no auth frame in time"),
            )
            .await;
        }
        _ => {
            return close_with(
                session,
                Ending::new(close::AUTH_FAILED, "the first frame must be auth"),
            )
            .await;
        }
    };
    let identity = match state.auth.authenticate(Some(&token)).await {
        Ok(identity) => identity,
        Err(e) => {
            let problem = Problem::from(e);
            return close_with(session, Ending::new(close::AUTH_FAILED, problem.detail)).await;
        }
    };
    if session
        .text(format!(
            r#"{{"type":"ready","protocol":"{SUBPROTOCOL}","tenant":{},"heartbeat_ms":{},"cursor":"{}"}}"#,
            json_string(identity.tenant.as_str()),
            HEARTBEAT.as_millis(),
            state.hub.head_cursor()
        ))
        .await
        .is_err()
    {
        return;
    }

    // 2. A writer owns the socket from here; everything else queues frames.
    let (sink, rx) = Sink::queue(QUEUE);
    let slow = Arc::clone(&sink.slow);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Ending>();
    let writer = actix_web::rt::spawn(write(
        session,
        crate::api::personal::Revealer::new(&state, &identity),
        rx,
        Arc::clone(&slow),
        end_rx,
        state.hub.shutdown_signal(),
        state.hub.epoch().to_owned(),
    ));

    let mut connection = Connection {
        state: &state,
        identity,
        token,
        sink,
        subscriptions: HashMap::new(),
    };
    let ending = connection.read(&mut stream).await;
    for (_, key) in connection.subscriptions.drain() {
        state.hub.unsubscribe(key);
    }
    let _ = end_tx.send(ending);
    drop(connection);
    let _ = writer.await;
}

struct Connection<'a> {
    state: &'a AppState,
    identity: Identity,
    token: String,
    sink: Sink,
    subscriptions: HashMap<String, SubscriptionKey>,
}

impl Connection<'_> {
    /// Reads client frames until the connection should end.
    async fn read(&mut self, stream: &mut MessageStream) -> Ending {
        let mut last_heard = Instant::now();
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        let mut shutdown = self.state.hub.shutdown_signal();
        loop {
            let timeout_at = tokio::time::Instant::from_std(last_heard + CLIENT_TIMEOUT);
            tokio::select! {
                message = stream.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Err(ending) = self.frame(&text) {
                                return ending;
                            }
                        }
                        Some(Ok(Message::Ping(bytes))) => {
                            if self.sink.tx.try_send(Outbound::Pong(bytes.to_vec())).is_err() {
                                self.sink.slow.flag();
                            }
                        }
                        Some(Ok(Message::Pong(_))) | Some(Ok(Message::Nop)) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            return Ending::new(1000, "closed by the client");
                        }
                        Some(Ok(Message::Binary(_))) | Some(Ok(Message::Continuation(_))) => {
                            return Ending::new(close::PROTOCOL_ERROR, "herald.v1 frames are text (JSON)");
                        }
                        Some(Err(e)) => {
                            return Ending::new(close::PROTOCOL_ERROR, format!("websocket error: {e}"));
                        }
                    }
                }
                _ = tokio::time::sleep_until(timeout_at) => {
                    return Ending::new(close::HEARTBEAT_TIMEOUT, "no frame from the client for 45 s");
                }
                _ = recheck.tick() => {
                    match self.state.auth.authenticate(Some(&self.token)).await {
                        Ok(_) => {}
                        Err(crate::auth::AuthError::Store(_)) => {}
                        Err(_) => return Ending::new(close::FORBIDDEN, "the credentials were revoked"),
                    }
                }
                _ = self.sink.slow.wait() => {
                    // The writer closes a slow connection itself.
                    return Ending::new(close::SLOW_CONSUMER, "slow consumer");
                }
                _ = shutdown.wait() => {
                    // So is one of a process that stops; this leaves the
                    // hub at once instead of when the client answers.
                    return Ending::going_away();
                }
            }
        }
    }

    /// Handles one client frame; an `Err` ends the connection.
    fn frame(&mut self, text: &str) -> Result<(), Ending> {
        let frame: ClientFrame = serde_json::from_str(text).map_err(|e| {
            Ending::new(close::PROTOCOL_ERROR, format!("not a herald.v1 frame: {e}"))
        })?;
        match frame {
            ClientFrame::Auth { .. } => {
                self.send(error_frame(
                    None,
                    "already-authenticated",
                    "auth comes once, first",
                ));
            }
            ClientFrame::Ping { id } => {
                let id = id.map(|i| json_string(&i)).unwrap_or_else(|| "null".into());
                self.send(format!(r#"{{"type":"pong","id":{id}}}"#));
            }
            ClientFrame::Unsubscribe { id } => match self.subscriptions.remove(&id) {
                Some(key) => {
                    self.state.hub.unsubscribe(key);
                    self.send(format!(
                        r#"{{"type":"unsubscribed","subscription":{}}}"#,
                        json_string(&id)
                    ));
                }
                None => self.send(error_frame(
                    Some(&id),
                    "unknown-subscription",
                    "no such subscription",
                )),
            },
            ClientFrame::Subscribe {
                id,
                filter,
                from,
                tenant,
            } => self.subscribe(id, filter, from, tenant)?,
        }
        Ok(())
    }

    fn subscribe(
        &mut self,
        id: String,
        filter: super::protocol::FilterSpec,
        from: Option<String>,
        tenant: Option<String>,
    ) -> Result<(), Ending> {
        if id.is_empty() || id.len() > 100 {
            self.send(error_frame(
                Some(&id),
                "invalid-subscription",
                "a subscription id is 1 to 100 characters",
            ));
            return Ok(());
        }
        if self.subscriptions.contains_key(&id) {
            self.send(error_frame(
                Some(&id),
                "duplicate-subscription",
                "that id is already subscribed",
            ));
            return Ok(());
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            self.send(error_frame(
                Some(&id),
                "too-many-subscriptions",
                "at most 100 subscriptions per connection",
            ));
            return Ok(());
        }
        if let Err(problem) = self.identity.require_tenant(tenant.as_deref()) {
            self.send(error_frame(Some(&id), "forbidden", &problem.detail));
            return Ok(());
        }
        let filter = match Filter::new(filter, &self.identity) {
            Ok(f) => f,
            Err(FilterError::Forbidden(why)) => {
                self.send(error_frame(Some(&id), "forbidden", &why));
                return Ok(());
            }
            Err(FilterError::Invalid(why)) => {
                self.send(error_frame(Some(&id), "invalid-filter", &why));
                return Ok(());
            }
        };
        let after = match from.as_deref() {
            None | Some("now") => None,
            Some("start") => Some(Position::START),
            Some(text) => {
                let cursor = match Cursor::decode(text) {
                    Ok(c) => c,
                    Err(why) => {
                        self.send(error_frame(Some(&id), "invalid-cursor", &why));
                        return Ok(());
                    }
                };
                if cursor.epoch != self.state.hub.epoch() {
                    return Err(Ending::new(
                        close::RESYNC_REQUIRED,
                        "the cursor is from another store; start over with from=start",
                    ));
                }
                Some(cursor.position)
            }
        };
        let key = self
            .state
            .hub
            .subscribe(&id, filter, after, self.sink.clone());
        self.subscriptions.insert(id, key);
        Ok(())
    }

    fn send(&self, frame: String) {
        self.sink.offer_frame(frame);
    }
}

impl Sink {
    fn offer_frame(&self, frame: String) {
        if self.tx.try_send(Outbound::Frame(frame)).is_err() {
            self.slow.flag();
        }
    }
}

/// Writes queued frames to the socket, sends heartbeats, and closes the
/// connection: on the reader's word, when it is too slow, or when the
/// process shuts down.
async fn write(
    mut session: Session,
    reveal: crate::api::personal::Revealer,
    mut rx: Queue,
    slow: Arc<Slow>,
    mut end: tokio::sync::oneshot::Receiver<Ending>,
    mut shutdown: ShutdownSignal,
    epoch: String,
) {
    let mut delivered: HashMap<Arc<str>, Position> = HashMap::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let ending = loop {
        tokio::select! {
            biased;
            _ = slow.wait() => break Ending::new(close::SLOW_CONSUMER, "slow consumer: resume with the cursors of the closing frame"),
            ending = &mut end => break ending.unwrap_or_else(|_| Ending::new(1011, "server error")),
            // Frames still queued are not waited for: the cursors say
            // exactly what this client got.
            _ = shutdown.wait() => break Ending::going_away(),
            out = rx.recv() => {
                let Some(out) = out else { break Ending::new(1000, "done") };
                let text = match out {
                    Outbound::Started { sub, position } => {
                        delivered.insert(sub, position);
                        continue;
                    }
                    Outbound::Events { sub, frames } => {
                        let mut last = None;
                        let mut failed = false;
                        for (position, text) in frames {
                            let text = match reveal.frame(&text).await {
                                Ok(Some(revealed)) => ByteString::from(revealed),
                                Ok(None) => text,
                                Err(e) => {
                                    tracing::warn!(error = %e, "Personal fields cannot be revealed; closing the subscription.");
                                    failed = true;
                                    break;
                                }
                            };
                            if session.text(text).await.is_err() {
                                return;
                            }
                            last = Some(position);
                        }
                        if let Some(position) = last {
                            delivered.insert(sub, position);
                        }
                        if failed {
                            break Ending::new(1011, "server error: resume with the cursors of this frame");
                        }
                        continue;
                    }
                    Outbound::Frame(text) => ByteString::from(text),
                    Outbound::Pong(payload) => {
                        if session.pong(&payload).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                if session.text(text).await.is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                let frame = r#"{"type":"heartbeat"}"#;
                if session.text(frame).await.is_err() || session.ping(b"herald").await.is_err() {
                    return;
                }
            }
        }
    };
    // What was queued but not written is dropped: the cursors say where each
    // subscription stands, so the client resumes exactly after what it got.
    rx.close();
    let cursors: serde_json::Map<String, serde_json::Value> = delivered
        .iter()
        .map(|(sub, position)| {
            (
                sub.to_string(),
                serde_json::Value::String(
                    Cursor {
                        epoch: epoch.clone(),
                        position: *position,
                    }
                    .encode(),
                ),
            )
        })
        .collect();
    let closing = serde_json::json!({
        "type": "closing",
        "code": ending.code,
        "reason": ending.reason,
        "cursors": cursors,
    });
    let goodbye = async {
        let _ = session.text(closing.to_string()).await;
        let _ = session
            .close(Some(CloseReason {
                code: CloseCode::from(ending.code),
                description: Some(ending.reason.chars().take(100).collect()),
            }))
            .await;
    };
    // A client that reads nothing at all cannot be waited for forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), goodbye).await;
}
