//! Three websocket subscribers with different filters while 50,000 events
//! are appended concurrently by 8 producers over HTTP: each sees exactly the
//! events its filter matches, in position order, none twice, none missing —
//! including the one that subscribes from the start in the middle of the
//! stream (history, then live, across the seam), and the one that stops
//! reading, is cut off as a slow consumer with its resume cursor, reconnects
//! with it and continues exactly after the last event it got.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, Herald, WsClient};

const PRODUCERS: usize = 8;
const EVENTS: usize = 50_000;
const BATCH: usize = 250;
const STREAMS: usize = 100;

/// What a producer appended: (position, id, type, stream).
type Appended = (u64, String, String, String);

fn item(producer: usize, n: usize) -> Value {
    let stream = format!("tickets/P{producer}-{}", n % (STREAMS / PRODUCERS + 1));
    if n.is_multiple_of(5) {
        json!({"stream": stream, "type": "tickets.ticket_assigned", "version": 1,
               "payload": {"assignee": format!("agent-{n}")}})
    } else {
        json!({"stream": stream, "type": "tickets.note_appended", "version": 1,
               "payload": {"note": format!("producer {producer} note {n}")}})
    }
}

/// Reads frames until `want` events of subscription `id` arrived; returns
/// (position, event id) in arrival order, and the closing frame if the
/// connection closed first.
async fn collect(
    client: &mut WsClient,
    id: &str,
    into: &Mutex<Vec<(u64, String)>>,
    want: &AtomicUsize,
) -> Option<Value> {
    loop {
        if want.load(Ordering::SeqCst) != 0
            && into.lock().unwrap().len() >= want.load(Ordering::SeqCst)
        {
            return None;
        }
        let frame = client.next().await?;
        match frame["type"].as_str() {
            Some("event") if frame["subscription"] == id => {
                let event = &frame["event"];
                into.lock().unwrap().push((
                    event["position"].as_u64().unwrap(),
                    event["id"].as_str().unwrap().to_owned(),
                ));
            }
            Some("closing") => return Some(frame),
            Some("close") => return Some(frame),
            _ => {}
        }
    }
}

fn check(
    name: &str,
    got: &[(u64, String)],
    expected: &[Appended],
    keep: impl Fn(&Appended) -> bool,
) {
    let want: Vec<(u64, String)> = expected
        .iter()
        .filter(|e| keep(e))
        .map(|e| (e.0, e.1.clone()))
        .collect();
    let positions: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{name}: not in position order"
    );
    let ids: HashSet<&String> = got.iter().map(|g| &g.1).collect();
    assert_eq!(ids.len(), got.len(), "{name}: an event arrived twice");
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: {} events, expected {}",
        got.len(),
        want.len()
    );
    assert_eq!(got, &want[..], "{name}: another set of events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_subscribers_fifty_thousand_events() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--max-events-per-append",
            "1000",
        ],
        &[],
    );
    herald.wait_healthy(Duration::from_secs(10)).await;
    let base = herald.base.clone();

    // A: every note, from the start, subscribed before anything is written.
    let (mut a, ready) = WsClient::connect(&base, "").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    a.send(json!({"type": "subscribe", "id": "notes", "filter": {"types": ["tickets.note_appended"]}, "from": "start"})).await;
    // C: everything, and it will stop reading.
    let (mut c, _) = WsClient::connect(&base, "").await;
    c.send(json!({"type": "subscribe", "id": "all", "filter": {"types": ["tickets.*"]}, "from": "start"})).await;

    let appended: Arc<Mutex<Vec<Appended>>> = Arc::default();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (base, appended) = (base.clone(), appended.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for chunk in 0..(EVENTS / PRODUCERS / BATCH) {
                    let items: Vec<Value> =
                        (0..BATCH).map(|i| item(p, chunk * BATCH + i)).collect();
                    let sent = items.clone();
                    let resp = client
                        .post(format!("{base}/v1/events"))
                        .json(&json!({"events": items}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 201);
                    let body: Value = resp.json().await.unwrap();
                    let mut appended = appended.lock().unwrap();
                    for (result, item) in body["results"].as_array().unwrap().iter().zip(sent) {
                        appended.push((
                            result["position"].as_u64().unwrap(),
                            result["id"].as_str().unwrap().to_owned(),
                            item["type"].as_str().unwrap().to_owned(),
                            item["stream"].as_str().unwrap().to_owned(),
                        ));
                    }
                }
            })
        })
        .collect();

    // A reads as events come.
    let got_a: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let want_a = Arc::new(AtomicUsize::new(0));
    let reader_a = {
        let (got, want) = (got_a.clone(), want_a.clone());
        tokio::spawn(async move {
            let closed = collect(&mut a, "notes", &got, &want).await;
            assert!(closed.is_none(), "A was closed: {closed:?}");
        })
    };

    // B subscribes from the start once a fifth is written: its history and
    // the live edge meet while producers keep appending.
    assert!(
        eventually(Duration::from_secs(60), || async {
            appended.lock().unwrap().len() >= EVENTS / 5
        })
        .await
    );
    let streams_b: Vec<String> = (0..PRODUCERS).map(|p| format!("tickets/P{p}-3")).collect();
    let (mut b, _) = WsClient::connect(&base, "").await;
    b.send(json!({"type": "subscribe", "id": "some-streams", "filter": {"streams": streams_b}, "from": "start"})).await;
    let got_b: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let want_b = Arc::new(AtomicUsize::new(0));
    let reader_b = {
        let (got, want) = (got_b.clone(), want_b.clone());
        tokio::spawn(async move {
            let closed = collect(&mut b, "some-streams", &got, &want).await;
            assert!(closed.is_none(), "B was closed: {closed:?}");
        })
    };

    for p in producers {
        p.await.unwrap();
    }
    let mut expected = appended.lock().unwrap().clone();
    expected.sort();
    assert_eq!(expected.len(), EVENTS);

    // C, which read nothing so far, finds it was cut off as slow: the frames
    // it was sent, then `closing` with its cursor.
    let got_c: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let closing = collect(&mut c, "all", &got_c, &AtomicUsize::new(0))
        .await
        .expect("C was cut off");
    assert_eq!(closing["type"], "closing", "{closing}");
    assert_eq!(closing["code"], 4008, "{closing}");
    let cursor = closing["cursors"]["all"]
        .as_str()
        .expect("a resume cursor")
        .to_owned();
    let before_cut = got_c.lock().unwrap().len();
    assert!(
        before_cut < EVENTS,
        "C got everything before being cut off; make it slower"
    );
    eprintln!("C was cut off after {before_cut} events");
    // It resumes exactly after the last event it got.
    let (mut c2, _) = WsClient::connect(&base, "").await;
    c2.send(json!({"type": "subscribe", "id": "all", "filter": {"types": ["tickets.*"]}, "from": cursor})).await;
    let want_c = AtomicUsize::new(EVENTS);
    let closed = tokio::time::timeout(
        Duration::from_secs(120),
        collect(&mut c2, "all", &got_c, &want_c),
    )
    .await
    .expect("C catches up");
    assert!(closed.is_none(), "C was closed again: {closed:?}");
    check(
        "C (all, cut off and resumed)",
        &got_c.lock().unwrap(),
        &expected,
        |_| true,
    );

    let notes = expected
        .iter()
        .filter(|e| e.2 == "tickets.note_appended")
        .count();
    want_a.store(notes, Ordering::SeqCst);
    let some: Vec<String> = (0..PRODUCERS).map(|p| format!("tickets/P{p}-3")).collect();
    let in_b = expected.iter().filter(|e| some.contains(&e.3)).count();
    want_b.store(in_b, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(120), || async {
            got_a.lock().unwrap().len() >= notes && got_b.lock().unwrap().len() >= in_b
        })
        .await,
        "A or B did not receive all their events: A {}/{notes}, B {}/{in_b}",
        got_a.lock().unwrap().len(),
        got_b.lock().unwrap().len()
    );
    reader_a.abort();
    reader_b.abort();
    check("A (notes)", &got_a.lock().unwrap(), &expected, |e| {
        e.2 == "tickets.note_appended"
    });
    check(
        "B (some streams, subscribed mid-stream)",
        &got_b.lock().unwrap(),
        &expected,
        |e| some.contains(&e.3),
    );
}
