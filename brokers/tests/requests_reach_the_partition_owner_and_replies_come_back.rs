//! Requests to a group's members: a request published to a partition is
//! consumed by the one member that owns the partition (and knows it owns
//! it), and the reply that member sends to the request's reply address comes
//! back to the asking client's inbox, matched by request id. While the
//! members share the partitions out every request is answered; once they
//! have settled (one owner per partition, half each) every request is
//! consumed once, by the member that owns its partition and knows it. The in-process broker has no
//! inbox: its one process owns everything.

mod conformance;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use conformance::{next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::message::header;
use herald_brokers::request::{HEADER_REPLY_TO, HEADER_REQUEST_ID};
use herald_brokers::{BrokerError, Topic, WireMessage};

const REQUESTS: usize = 40;
const PARTITIONS: u32 = 4;

async fn requests_reach_the_owner_and_replies_come_back(backend: &Backend) {
    let asker = backend.open().await;
    if backend.name() == "memory" {
        assert!(
            matches!(
                asker.open_inbox().await,
                Err(BrokerError::Unsupported { .. })
            ),
            "the in-process broker has no inbox"
        );
        return;
    }
    let topic = Topic::for_domain(&unique_domain());
    let mut topics = vec![topic.clone()];
    #[cfg(feature = "kafka")]
    if backend.name() == "kafka" {
        topics.push(Topic::named(herald_brokers::kafka::REPLY_TOPIC).unwrap());
    }
    backend.prepare(&topics).await;
    let group = unique_group("requests");

    // Two members, each its own client; each answers what it consumes and
    // notes whether it owned the partition then.
    let served = Arc::new(Mutex::new(Vec::<(usize, u32, bool)>::new()));
    let mut members = Vec::new();
    let mut ownerships = Vec::new();
    for m in 0..2 {
        let broker = backend.open().await;
        let mut sub = broker
            .subscribe(&group, std::slice::from_ref(&topic))
            .await
            .unwrap();
        let ownership = sub.ownership().expect("a member can tell what it owns");
        ownerships.push(Arc::clone(&ownership));
        let served = Arc::clone(&served);
        let topic = topic.clone();
        members.push(tokio::spawn(async move {
            while let Some(d) = next_within(&mut sub, PATIENCE).await {
                let owned = ownership.owns(&topic, d.partition);
                served.lock().unwrap().push((m, d.partition, owned));
                let to = header(d.headers(), HEADER_REPLY_TO)
                    .expect("a request names its reply address")
                    .to_owned();
                let id = header(d.headers(), HEADER_REQUEST_ID)
                    .expect("a request has an id")
                    .to_owned();
                let body = format!("{m}:{}", String::from_utf8_lossy(d.body())).into_bytes();
                broker
                    .reply(&to, vec![(HEADER_REQUEST_ID.to_owned(), id)], body)
                    .await
                    .expect("reply");
                d.ack().await.unwrap();
            }
        }));
    }

    let mut inbox = asker.open_inbox().await.expect("an inbox");
    let name = backend.name();

    // While the members join and share the partitions out, every request
    // is answered once, by whichever member consumed it.
    let first: Vec<(String, u32)> = (0..REQUESTS)
        .map(|i| (format!("r{i}"), i as u32 % PARTITIONS))
        .collect();
    ask(name, &mut inbox, &topic, &first).await;

    // Settled: each partition has exactly one owner and each member its
    // half, so no hand-over is under way. (A member learns it owns a
    // partition from a delivery, so each round asks every partition.)
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut round = 0;
    let settled = loop {
        round += 1;
        let probes: Vec<(String, u32)> = (0..PARTITIONS)
            .map(|p| (format!("probe{round}-{p}"), p))
            .collect();
        ask(name, &mut inbox, &topic, &probes).await;
        let one_owner_each =
            (0..PARTITIONS).all(|p| ownerships.iter().filter(|o| o.owns(&topic, p)).count() == 1);
        let halves = ownerships.iter().all(|o| {
            (0..PARTITIONS).filter(|&p| o.owns(&topic, p)).count() == (PARTITIONS / 2) as usize
        });
        if one_owner_each && halves {
            break true;
        }
        // Each round waits for its replies, which paces the next.
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
    };
    assert!(
        settled,
        "{name}: the members did not settle on two partitions each"
    );

    // Once settled, each request is consumed once, by the member that owns
    // its partition and knows it.
    served.lock().unwrap().clear();
    let second: Vec<(String, u32)> = (0..REQUESTS)
        .map(|i| (format!("s{i}"), i as u32 % PARTITIONS))
        .collect();
    ask(name, &mut inbox, &topic, &second).await;
    let served = served.lock().unwrap().clone();
    assert_eq!(served.len(), REQUESTS, "{name}: each request consumed once");
    assert!(
        served.iter().all(|(_, _, owned)| *owned),
        "{name}: a member consumed a request of a partition it did not own: {served:?}"
    );
    // Each partition still has at most one owner.
    assert!(
        (0..PARTITIONS).all(|p| ownerships.iter().filter(|o| o.owns(&topic, p)).count() <= 1),
        "{name}: a partition with two owners"
    );
    for m in members {
        m.abort();
    }
    backend.teardown(&[topic], &[group]).await;
}
conformance!(requests_reach_the_owner_and_replies_come_back);

/// Sends `requests` (id, partition) and waits for every reply: each names
/// its request and carries the member's answer to its question.
async fn ask(
    name: &str,
    inbox: &mut herald_brokers::request::Inbox,
    topic: &Topic,
    requests: &[(String, u32)],
) {
    for (id, partition) in requests {
        inbox
            .requester
            .send(WireMessage {
                topic: topic.clone(),
                partition: *partition,
                key: format!("k-{id}"),
                headers: vec![(HEADER_REQUEST_ID.to_owned(), id.clone())],
                body: format!("q-{id}").into_bytes(),
            })
            .await
            .expect("the broker confirms a request");
    }
    let mut replies = BTreeMap::new();
    let wanted: BTreeMap<&str, ()> = requests.iter().map(|(id, _)| (id.as_str(), ())).collect();
    while replies.len() < requests.len() {
        let reply = tokio::time::timeout(PATIENCE, inbox.replies.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{name}: {} of {} replies came back",
                    replies.len(),
                    requests.len()
                )
            })
            .expect("the inbox stays open");
        let id = reply
            .request_id()
            .expect("a reply names its request")
            .to_owned();
        // A request consumed twice (around a rebalance) is answered twice.
        if wanted.contains_key(id.as_str()) {
            replies.insert(id, String::from_utf8(reply.body).unwrap());
        }
    }
    for (id, _) in requests {
        let (member, question) = replies[id].split_once(':').unwrap();
        assert_eq!(question, format!("q-{id}"), "{name}: the reply to {id}");
        assert!(member == "0" || member == "1");
    }
}
