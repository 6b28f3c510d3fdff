//! A message nobody can read (garbage on the wire) reaches the consumer as a
//! decode error instead of killing it; the consumer dead-letters it and the
//! events behind it in the same partition still arrive.

mod conformance;

use conformance::{events, id_of, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::message::{HEADER_CONTENT_TYPE, HEADER_EVENT_ID};
use herald_brokers::{partition_for, partition_key, Topic, WireMessage};
use herald_events::Codec;

async fn poison_is_dead_lettered_and_the_partition_goes_on(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("poison");
    let broker = backend.open().await;
    let mut sub = broker
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();

    let published = events(&domain, 1, 3);
    let key = partition_key(&published[0].tenant, &published[0].stream);
    let poison = WireMessage {
        topic: topic.clone(),
        partition: partition_for(&key, broker.wire().partitions),
        key,
        headers: vec![
            (
                HEADER_CONTENT_TYPE.to_owned(),
                Codec::Bincode.content_type().to_owned(),
            ),
            (HEADER_EVENT_ID.to_owned(), "not-a-uuid".to_owned()),
        ],
        body: b"\xff\xfe this is not an envelope".to_vec(),
    };
    broker.publish_batch(&published[..1]).await.unwrap();
    broker.publish(vec![poison]).await.unwrap();
    broker.publish_batch(&published[1..]).await.unwrap();

    let mut good = Vec::new();
    let mut poisoned = 0;
    for i in 0..4 {
        let d = next_within(&mut sub, PATIENCE).await.unwrap_or_else(|| {
            panic!(
                "{}: delivery {i} never came; the partition stalled",
                backend.name()
            )
        });
        match &d.content {
            Ok(_) => {
                good.push(id_of(&d));
                d.ack().await.unwrap();
            }
            Err(e) => {
                poisoned += 1;
                let reason = format!("undecodable: {e}");
                d.nack(reason).await.unwrap();
            }
        }
    }
    assert_eq!(poisoned, 1);
    assert_eq!(good, published.iter().map(|e| e.id).collect::<Vec<_>>());
    let dead = herald_testkit::eventually(PATIENCE, || {
        let (broker, group) = (broker.clone(), group.clone());
        async move { broker.dead_letters(&group, 10).await.unwrap().len() == 1 }
    })
    .await;
    assert!(
        dead,
        "{}: the poison is not in the dead letters",
        backend.name()
    );
    let dead = broker.dead_letters(&group, 10).await.unwrap();
    assert!(
        dead[0].error.starts_with("undecodable"),
        "{:?}",
        dead[0].error
    );
    assert!(dead[0].content.is_err());
    drop(sub);
    backend.teardown(&[topic], &[group]).await;
}
conformance!(poison_is_dead_lettered_and_the_partition_goes_on);
