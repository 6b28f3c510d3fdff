//! An event larger than the maximum message size travels as a claim check
//! (headers only) and is loaded from the store by position on the other
//! side; small events in the same batch travel inline.

mod conformance;

use std::collections::HashMap;

use conformance::{event, next_within, unique_domain, unique_group, Backend, Published, PATIENCE};
use herald_brokers::{Payload, Topic};

async fn a_five_mib_event_arrives_whole(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("claims");
    let broker = backend.open().await;
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();

    let small = event(&domain, "doc", 1, 1);
    let mut big = event(&domain, "doc", 2, 2);
    big.payload = serde_json::json!({"document": "x".repeat(5 * 1024 * 1024)});
    broker
        .publish_batch(&[small.clone(), big.clone()])
        .await
        .unwrap();
    let store = Published(HashMap::from([
        (small.position, small.clone()),
        (big.position, big.clone()),
    ]));

    let first = next_within(&mut sub, PATIENCE)
        .await
        .expect("the small event");
    assert!(
        matches!(first.content, Ok(Payload::Event(_))),
        "{}: small events travel inline",
        backend.name()
    );
    let content = first.content.clone().unwrap();
    assert_eq!(content.resolve(&store).await.unwrap(), small);
    first.ack().await.unwrap();

    let second = next_within(&mut sub, PATIENCE)
        .await
        .expect("the large event");
    let content = second.content.clone().unwrap();
    assert!(
        matches!(content, Payload::ClaimCheck(_)),
        "{}: a 5 MiB event must be a claim check",
        backend.name()
    );
    assert_eq!(content.resolve(&store).await.unwrap(), big);
    second.ack().await.unwrap();
    drop(sub);
    backend.teardown(&[topic], &[group]).await;
}
conformance!(a_five_mib_event_arrives_whole);
