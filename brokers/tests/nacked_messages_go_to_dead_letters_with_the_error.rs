//! A delivery the consumer rejects goes to the group's dead letters with the
//! consumer's error attached, visible there, and the partition goes on.

mod conformance;

use conformance::{events, id_of, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::Topic;

async fn nack_dead_letters_with_the_error(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("dlq");
    let broker = backend.open().await;
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    // One stream, so one partition: the rejected event sits between others.
    let published = events(&domain, 1, 5);
    broker.publish_batch(&published).await.unwrap();

    let mut after_rejection = Vec::new();
    for i in 0..5 {
        let d = next_within(&mut sub, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{}: delivery {i} never came", backend.name()));
        let id = id_of(&d);
        if id == published[2].id {
            d.nack("cannot apply: ticket T-3 is closed").await.unwrap();
        } else {
            if i > 2 {
                after_rejection.push(id);
            }
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        after_rejection,
        vec![published[3].id, published[4].id],
        "{}: the partition stalled",
        backend.name()
    );

    let dead = herald_testkit::eventually(PATIENCE, || {
        let broker = broker.clone();
        let group = group.clone();
        async move { !broker.dead_letters(&group, 10).await.unwrap().is_empty() }
    })
    .await;
    assert!(dead, "{}: no dead letter appeared", backend.name());
    let dead = broker.dead_letters(&group, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{}: {dead:?}", backend.name());
    assert_eq!(dead[0].error, "cannot apply: ticket T-3 is closed");
    assert_eq!(dead[0].topic, topic);
    assert_eq!(
        dead[0].content.as_ref().unwrap().event_id(),
        published[2].id
    );
    drop(sub);
    backend.teardown(&[topic], &[group]).await;
}
conformance!(nack_dead_letters_with_the_error);
