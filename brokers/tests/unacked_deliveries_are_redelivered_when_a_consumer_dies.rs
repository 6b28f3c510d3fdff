//! A member that dies without acknowledging leaves nothing behind: what it
//! had not acknowledged is delivered again to the group.

mod conformance;

use std::collections::HashSet;

use conformance::{events, id_of, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::Topic;
use herald_events::EventId;

async fn unacked_work_goes_to_the_next_member(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("redeliver");
    let published = events(&domain, 8, 40);
    let expected: HashSet<EventId> = published.iter().map(|e| e.id).collect();

    let first = backend.open().await;
    let mut dying = first
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    first.publish_batch(&published).await.unwrap();

    // Take 20 deliveries, acknowledge every other one, then die.
    let mut acked = HashSet::new();
    let mut held = Vec::new();
    for i in 0..20 {
        let d = next_within(&mut dying, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{}: delivery {i} never came", backend.name()));
        if i % 2 == 0 {
            acked.insert(id_of(&d));
            d.ack().await.unwrap();
        } else {
            held.push(d);
        }
    }
    drop(held);
    drop(dying);
    drop(first);

    let second = backend.open().await;
    let mut survivor = second
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut redelivered_flagged = 0;
    while acked.len() < expected.len() {
        let d = next_within(&mut survivor, PATIENCE)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} of {} events never reached the group",
                    backend.name(),
                    expected.len() - acked.len(),
                    expected.len()
                )
            });
        if d.redelivered {
            redelivered_flagged += 1;
        }
        acked.insert(id_of(&d));
        d.ack().await.unwrap();
    }
    assert_eq!(acked, expected);
    assert!(
        redelivered_flagged > 0 || backend.name() == "kafka",
        "{}: redeliveries are not flagged",
        backend.name()
    );
    drop(survivor);
    backend.teardown(&[topic], &[group]).await;
}
conformance!(unacked_work_goes_to_the_next_member);
