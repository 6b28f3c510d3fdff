//! Members joining and leaving a group while events flow lose nothing: every
//! event is acknowledged by some member.

mod conformance;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use conformance::{events, id_of, next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::{Broker, ConsumerGroup, Topic};
use herald_events::EventId;
use herald_testkit::eventually;
use tokio::sync::watch;

/// Joins the group, then consumes and acknowledges into `acked` until told to stop.
async fn member(
    broker: Arc<dyn Broker>,
    group: ConsumerGroup,
    topic: Topic,
    acked: Arc<Mutex<HashSet<EventId>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut sub = broker.subscribe(&group, &[topic]).await.unwrap();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                d = next_within(&mut sub, std::time::Duration::from_millis(200)) => {
                    if let Some(d) = d {
                        let id = id_of(&d);
                        d.ack().await.unwrap();
                        acked.lock().unwrap().insert(id);
                    }
                }
            }
        }
    })
}

async fn membership_changes_lose_nothing(backend: &Backend) {
    let domain = unique_domain();
    let topic = Topic::for_domain(&domain);
    backend.prepare(std::slice::from_ref(&topic)).await;
    let group = unique_group("churn");
    let publisher = backend.open().await;
    let published = events(&domain, 16, 600);
    let expected: HashSet<EventId> = published.iter().map(|e| e.id).collect();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    let (stop_a, stop_a_rx) = watch::channel(false);
    let a = member(
        backend.open().await,
        group.clone(),
        topic.clone(),
        acked.clone(),
        stop_a_rx,
    )
    .await;
    publisher.publish_batch(&published[..200]).await.unwrap();
    assert!(eventually(PATIENCE, || async { acked.lock().unwrap().len() >= 50 }).await);

    // B joins mid-stream.
    let (stop_b, stop_b_rx) = watch::channel(false);
    let b = member(
        backend.open().await,
        group.clone(),
        topic.clone(),
        acked.clone(),
        stop_b_rx,
    )
    .await;
    publisher.publish_batch(&published[200..400]).await.unwrap();
    assert!(eventually(PATIENCE, || async { acked.lock().unwrap().len() >= 250 }).await);

    // A leaves mid-stream, with deliveries possibly in hand.
    stop_a.send(true).unwrap();
    a.await.unwrap();
    publisher.publish_batch(&published[400..]).await.unwrap();

    let complete = eventually(PATIENCE * 2, || async {
        acked.lock().unwrap().len() >= expected.len()
    })
    .await;
    let got = acked.lock().unwrap().clone();
    assert!(
        complete,
        "{}: {} of {} events lost",
        backend.name(),
        expected.len() - got.len(),
        expected.len()
    );
    assert_eq!(got, expected);
    stop_b.send(true).unwrap();
    b.await.unwrap();
    backend.teardown(&[topic], &[group]).await;
}
conformance!(membership_changes_lose_nothing);
