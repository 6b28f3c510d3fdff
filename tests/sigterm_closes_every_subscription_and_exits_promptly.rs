//! On SIGTERM (and SIGINT) `herald serve` closes every subscription at once
//! and exits within 2 s of the signal, with 100 websocket subscribers and a
//! few server-sent-event streams connected and events still being appended:
//! each websocket gets a `closing` frame whose cursor is that of the last
//! event it received, then close code 1001; each SSE stream ends with a
//! `closing` event whose id is its last event's cursor. After a restart,
//! every subscriber resumes from that cursor and, together with what it had,
//! holds exactly its stream's events: no gap, no duplicate.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_testkit::{eventually, TestDatabase};
use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

/// Streams the subscribers are spread over (each subscriber follows one).
const STREAMS: usize = 20;
/// The bound the issue sets on the stop, measured from the signal.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

fn stream_of(n: usize) -> String {
    format!("tickets/sd-{}", n % STREAMS)
}

/// What one subscriber saw until the server closed it.
#[derive(Debug, Default)]
struct Seen {
    stream: String,
    /// (cursor, event id) of every event, in order.
    events: Vec<(String, String)>,
    /// The `closing` frame (websocket) or the `closing` event's data and id
    /// (SSE).
    closing: Option<Value>,
    closing_id: Option<String>,
    close_code: Option<u16>,
    /// The SSE body ended (rather than failing).
    ended: bool,
}

/// A websocket subscriber of `stream` from now on; counts itself in `live`
/// once its subscription is live and in `fed` at its first event.
async fn websocket_subscriber(
    base: String,
    n: usize,
    live: Arc<AtomicUsize>,
    fed: Arc<AtomicUsize>,
) -> Seen {
    let stream = stream_of(n);
    let (mut ws, ready) = WsClient::connect(&base, "").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    let sub = format!("sub-{n}");
    ws.send(
        json!({"type": "subscribe", "id": sub, "filter": {"streams": [stream]}, "from": "now"}),
    )
    .await;
    let mut seen = Seen {
        stream,
        ..Seen::default()
    };
    while let Some(frame) = ws.next().await {
        match frame["type"].as_str().unwrap() {
            "subscribed" => {}
            "live" => {
                live.fetch_add(1, Ordering::SeqCst);
            }
            "event" => {
                assert_eq!(frame["subscription"], sub.as_str());
                assert_eq!(frame["event"]["stream"], seen.stream.as_str());
                if seen.events.is_empty() {
                    fed.fetch_add(1, Ordering::SeqCst);
                }
                seen.events.push((
                    frame["cursor"].as_str().unwrap().to_owned(),
                    frame["event"]["id"].as_str().unwrap().to_owned(),
                ));
            }
            "closing" => {
                assert!(seen.closing.is_none(), "a second closing frame: {frame}");
                seen.closing = Some(frame);
            }
            "close" => {
                seen.close_code = frame["code"].as_u64().map(|c| c as u16);
                break;
            }
            _ => panic!("unexpected frame {frame}"),
        }
    }
    seen
}

/// One SSE block: (event kind, id, data).
type Block = (Option<String>, Option<String>, Option<String>);

/// Splits complete blocks off the front of `buffer`.
fn blocks(buffer: &mut String) -> Vec<Block> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let (mut kind, mut id, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v.to_owned());
            }
        }
        out.push((kind, id, data));
    }
    out
}

/// An SSE subscriber of `stream` from now on, reading until the body ends.
async fn sse_subscriber(
    base: String,
    n: usize,
    live: Arc<AtomicUsize>,
    fed: Arc<AtomicUsize>,
) -> Seen {
    let stream = stream_of(n);
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/events/stream?stream={stream}&from=now"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut seen = Seen {
        stream,
        ..Seen::default()
    };
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("the SSE stream carries something (or ends) within 30 s");
        let Some(chunk) = chunk else {
            seen.ended = true;
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(
            &chunk.expect("the SSE body reads"),
        ));
        for (kind, id, data) in blocks(&mut buffer) {
            match kind.as_deref() {
                Some("live") => {
                    live.fetch_add(1, Ordering::SeqCst);
                }
                Some("event") => {
                    let event: Value = serde_json::from_str(&data.unwrap()).unwrap();
                    assert_eq!(event["stream"], seen.stream.as_str());
                    if seen.events.is_empty() {
                        fed.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.events
                        .push((id.unwrap(), event["id"].as_str().unwrap().to_owned()));
                }
                Some("closing") => {
                    assert!(seen.closing.is_none(), "a second closing event");
                    seen.closing = Some(serde_json::from_str(&data.unwrap()).unwrap());
                    seen.closing_id = id;
                }
                // Heartbeats are comments.
                None => {}
                Some(other) => panic!("unexpected SSE event {other}"),
            }
        }
    }
    seen
}

/// Appends one event to every stream, batch after batch, until told to
/// stop or refused (the server stopping).
async fn publish(base: String, stop: Arc<AtomicBool>, batches: Arc<AtomicUsize>) {
    let client = reqwest::Client::new();
    for batch in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let events: Vec<Value> = (0..STREAMS)
            .map(|s| {
                json!({"stream": stream_of(s), "type": "tickets.note_appended", "version": 1,
                       "payload": {"note": format!("batch {batch}")}})
            })
            .collect();
        match client
            .post(format!("{base}/v1/events"))
            .json(&json!({ "events": events }))
            .send()
            .await
        {
            Ok(r) if r.status() == 201 => {
                batches.fetch_add(1, Ordering::SeqCst);
            }
            _ => return,
        }
    }
}

/// Every event id of the log, by stream, in order.
async fn log_by_stream(base: &str) -> HashMap<String, Vec<String>> {
    let client = reqwest::Client::new();
    let mut by_stream: HashMap<String, Vec<String>> = HashMap::new();
    let mut from = 0;
    loop {
        let page: Value = client
            .get(format!("{base}/v1/events?from={from}&limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return by_stream;
        }
        for e in events {
            by_stream
                .entry(e["stream"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["id"].as_str().unwrap().to_owned());
        }
        from = page["next"].as_u64().unwrap();
    }
}

/// The events of `stream` after `cursor`, up to the live edge, over a
/// websocket.
async fn resume_websocket(base: &str, stream: &str, cursor: &str) -> Vec<String> {
    let (mut ws, _) = WsClient::connect(base, "").await;
    ws.send(json!({"type": "subscribe", "id": "again", "filter": {"streams": [stream]}, "from": cursor}))
        .await;
    let mut ids = Vec::new();
    loop {
        let frame = ws
            .next()
            .await
            .expect("the resumed subscription stays open");
        match frame["type"].as_str().unwrap() {
            "subscribed" => assert_eq!(frame["cursor"], cursor),
            "event" => ids.push(frame["event"]["id"].as_str().unwrap().to_owned()),
            "live" => return ids,
            _ => panic!("unexpected frame {frame}"),
        }
    }
}

/// The events of `stream` after `last_event_id`, up to the live edge, over
/// SSE.
async fn resume_sse(base: &str, stream: &str, last_event_id: &str) -> Vec<String> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/events/stream?stream={stream}"))
        .header("Last-Event-ID", last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut ids = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("the resumed SSE stream carries something within 30 s")
            .expect("the resumed SSE stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        for (kind, _, data) in blocks(&mut buffer) {
            match kind.as_deref() {
                Some("event") => {
                    let event: Value = serde_json::from_str(&data.unwrap()).unwrap();
                    ids.push(event["id"].as_str().unwrap().to_owned());
                }
                Some("live") => return ids,
                _ => {}
            }
        }
    }
}

/// Requests made while the process stops: each is answered or refused
/// promptly, never left hanging. Returns the statuses of those answered.
async fn probe_until_refused(base: String) -> Vec<u16> {
    // A new connection per request: the point is what a new client meets.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(EXIT_WITHIN)
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    loop {
        match client.get(format!("{base}/healthz")).send().await {
            Ok(r) => statuses.push(r.status().as_u16()),
            Err(e) => {
                assert!(!e.is_timeout(), "a request during the stop hung: {e}");
                return statuses;
            }
        }
    }
}

async fn subscribers_close_with_cursors_and_herald_exits_promptly(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    signal: &str,
    websockets: usize,
    sse_streams: usize,
) {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["serve", "--listen", &listen];
    let mut herald = Herald::start(dir, &args, env);
    herald.wait_healthy(Duration::from_secs(20)).await;
    let base = herald.base.clone();

    let (live, fed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let subscribers = websockets + sse_streams;
    let mut tasks = Vec::new();
    for n in 0..websockets {
        let (base, live, fed) = (base.clone(), live.clone(), fed.clone());
        tasks.push(tokio::spawn(websocket_subscriber(base, n, live, fed)));
    }
    for n in 0..sse_streams {
        let (base, live, fed) = (base.clone(), live.clone(), fed.clone());
        tasks.push(tokio::spawn(sse_subscriber(base, n, live, fed)));
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            live.load(Ordering::SeqCst) == subscribers
        })
        .await,
        "{} of {subscribers} subscriptions went live",
        live.load(Ordering::SeqCst)
    );

    // Appends go on while the signal arrives: a subscriber's last event is
    // whatever reached it, not a quiet end of the log.
    let (stop_publishing, batches) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let publisher = tokio::spawn(publish(
        base.clone(),
        stop_publishing.clone(),
        batches.clone(),
    ));
    assert!(
        eventually(Duration::from_secs(30), || async {
            fed.load(Ordering::SeqCst) == subscribers
        })
        .await,
        "{} of {subscribers} subscribers received an event",
        fed.load(Ordering::SeqCst)
    );

    let pid = herald.child.id().to_string();
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -{signal} failed");
    let prober = tokio::spawn(probe_until_refused(base.clone()));
    let (status, took, herald) = tokio::task::spawn_blocking(move || {
        let status = herald.wait_exit(Duration::from_secs(60));
        (status, signalled.elapsed(), herald)
    })
    .await
    .unwrap();
    stop_publishing.store(true, Ordering::SeqCst);
    publisher.await.unwrap();
    eprintln!("herald exited {took:?} after SIG{signal} with {subscribers} subscribers");
    assert!(
        status.success(),
        "herald exited with {status} after {signal}"
    );
    assert!(
        took < EXIT_WITHIN,
        "herald took {took:?} to exit after {signal} with {subscribers} subscribers"
    );
    for answered in prober.await.unwrap() {
        assert!(
            answered == 200 || answered == 503,
            "a request during the stop got {answered}"
        );
    }

    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("a subscriber task"));
    }
    for (n, s) in seen.iter().enumerate() {
        let (last_cursor, _) = s.events.last().expect("every subscriber had an event");
        if n < websockets {
            let closing = s
                .closing
                .as_ref()
                .unwrap_or_else(|| panic!("websocket {n} got no closing frame"));
            assert_eq!(closing["code"], 1001, "{closing}");
            let cursors = closing["cursors"].as_object().unwrap();
            assert_eq!(cursors.len(), 1, "{closing}");
            assert_eq!(
                cursors[&format!("sub-{n}")],
                last_cursor.as_str(),
                "websocket {n}: the closing cursor is not that of the last event it received"
            );
            assert_eq!(s.close_code, Some(1001), "websocket {n}'s close code");
        } else {
            assert!(s.ended, "SSE stream {n} did not end");
            let closing = s
                .closing
                .as_ref()
                .unwrap_or_else(|| panic!("SSE stream {n} ended without a closing event"));
            assert_eq!(closing["code"], 1001, "{closing}");
            assert_eq!(closing["cursor"], last_cursor.as_str());
            assert_eq!(
                s.closing_id.as_deref(),
                Some(last_cursor.as_str()),
                "SSE stream {n}: the closing event's id is not the last event's cursor"
            );
        }
    }

    // Resuming from the closing cursors after a restart misses nothing and
    // repeats nothing.
    drop(herald);
    let mut herald = Herald::start(dir, &args, env);
    herald.wait_healthy(Duration::from_secs(20)).await;
    let log = log_by_stream(&herald.base).await;
    for (n, s) in seen.iter().enumerate() {
        let mut ids: Vec<String> = s.events.iter().map(|(_, id)| id.clone()).collect();
        if n < websockets {
            let cursor = s.closing.as_ref().unwrap()["cursors"][&format!("sub-{n}")]
                .as_str()
                .unwrap()
                .to_owned();
            ids.extend(resume_websocket(&herald.base, &s.stream, &cursor).await);
        } else {
            let id = s.closing_id.clone().unwrap();
            ids.extend(resume_sse(&herald.base, &s.stream, &id).await);
        }
        assert_eq!(
            &ids, &log[&s.stream],
            "subscriber {n} of {}: what it got before the stop and after resuming is not its stream",
            s.stream
        );
    }
    assert!(
        herald.terminate(Duration::from_secs(30)).success(),
        "the restarted herald stops cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    subscribers_close_with_cursors_and_herald_exits_promptly(dir.path(), &[], "TERM", 100, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_postgres() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    subscribers_close_with_cursors_and_herald_exits_promptly(
        dir.path(),
        &[("HERALD_STORE", db.url())],
        "TERM",
        100,
        4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    subscribers_close_with_cursors_and_herald_exits_promptly(dir.path(), &[], "INT", 10, 2).await;
}
