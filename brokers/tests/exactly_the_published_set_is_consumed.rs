//! A consumer group receives exactly the events published to its topics:
//! every one, none it was not sent, none twice when nothing fails; and each
//! group gets its own copy.

mod conformance;

use std::collections::HashSet;

use conformance::{events, id_of, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::Topic;
use herald_events::EventId;

async fn every_group_gets_every_event_once(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let (first, second) = (unique_group("first"), unique_group("second"));
    let broker = backend.open().await;
    let mut a = broker
        .subscribe(&first, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut b = broker
        .subscribe(&second, std::slice::from_ref(&topic))
        .await
        .unwrap();

    let published = events(&domain, 20, 500);
    for chunk in published.chunks(100) {
        backend.open().await.publish_batch(chunk).await.unwrap();
    }
    let expected: HashSet<EventId> = published.iter().map(|e| e.id).collect();

    for (name, sub) in [("first", &mut a), ("second", &mut b)] {
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let d = next_within(sub, PATIENCE).await.unwrap_or_else(|| {
                panic!(
                    "{}: group {name} stopped after {} of {}",
                    backend.name(),
                    seen.len(),
                    expected.len()
                )
            });
            seen.push(id_of(&d));
            d.ack().await.unwrap();
        }
        let distinct: HashSet<EventId> = seen.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "{}: group {name} got duplicates",
            backend.name()
        );
        assert_eq!(
            distinct,
            expected,
            "{}: group {name} got another set",
            backend.name()
        );
    }
    // Nothing more arrives once everything is acknowledged.
    assert!(next_within(&mut a, std::time::Duration::from_millis(500))
        .await
        .is_none());
    drop((a, b));
    backend.teardown(&[topic], &[first, second]).await;
}
conformance!(every_group_gets_every_event_once);
