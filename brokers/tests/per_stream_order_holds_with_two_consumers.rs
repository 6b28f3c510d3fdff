//! Per-stream order inside a consumer group: with 4 partitions and 2
//! members, every stream's events reach the group in stream-version order,
//! whichever member gets them.

mod conformance;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conformance::{events, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::Topic;
use herald_testkit::eventually;

const STREAMS: usize = 40;
const EVENTS: usize = 1000;

/// Distinct (stream, version) pairs among the deliveries.
fn distinct(seen: &[(usize, usize, String, u64)]) -> usize {
    seen.iter()
        .map(|(_, _, stream, version)| (stream, version))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

async fn streams_stay_in_order_across_members(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("ordered");
    let broker = backend.open().await;

    // (receipt sequence, member, stream, version) for every delivery.
    let seen = Arc::new(Mutex::new(Vec::<(usize, usize, String, u64)>::new()));
    let mut members = Vec::new();
    for m in 0..2 {
        // Both join before anything is published.
        let mut sub = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .unwrap();
        let seen = seen.clone();
        members.push(tokio::spawn(async move {
            while let Some(d) = next_within(&mut sub, PATIENCE).await {
                let e = d.content.as_ref().unwrap();
                let herald_brokers::Payload::Event(e) = e else {
                    panic!("inline events expected")
                };
                let done = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen.len();
                    seen.push((n, m, e.stream.id().to_owned(), e.stream_version.get()));
                    distinct(&seen) >= EVENTS
                };
                d.ack().await.unwrap();
                if done {
                    break;
                }
            }
        }));
    }

    let published = events(&domain, STREAMS, EVENTS);
    for chunk in published.chunks(50) {
        broker.publish_batch(chunk).await.unwrap();
    }
    // Redeliveries after a rebalance count once: done when every event
    // came at least once.
    let finished = eventually(PATIENCE * 2, || async {
        distinct(&seen.lock().unwrap()) >= EVENTS
    })
    .await;
    assert!(
        finished,
        "{}: only {} of {EVENTS} delivered",
        backend.name(),
        distinct(&seen.lock().unwrap())
    );
    for m in members {
        m.abort();
    }

    // At-least-once: a version may come again (a redelivery after a
    // rebalance), but a new version must be the next one of its stream.
    let seen = seen.lock().unwrap().clone();
    let mut highest: HashMap<String, u64> = HashMap::new();
    for (_, member, stream, version) in &seen {
        let top = highest.entry(stream.clone()).or_insert(0);
        if *version > *top {
            assert_eq!(
                *version,
                *top + 1,
                "{}: stream {stream} jumped from version {top} to {version} (member {member})",
                backend.name()
            );
            *top = *version;
        }
    }
    assert_eq!(highest.len(), STREAMS);
    assert_eq!(
        highest.values().sum::<u64>() as usize,
        EVENTS,
        "{}: a version is missing",
        backend.name()
    );
    // Both members took part (the group spreads its partitions).
    let members: std::collections::HashSet<usize> = seen.iter().map(|(_, m, _, _)| *m).collect();
    assert_eq!(
        members.len(),
        2,
        "{}: one member got everything",
        backend.name()
    );
    backend.teardown(&[topic], &[group]).await;
}
conformance!(streams_stay_in_order_across_members);
