//! Requests to a group's members: a request published to a partition is
//! consumed by the one member that owns the partition (and knows it owns
//! it), and the reply that member sends to the request's reply address comes
//! back to the asking client's inbox, matched by request id. Afterwards each
//! partition is owned by exactly one member. The in-process broker has no
//! inbox: its one process owns everything.

mod conformance;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use conformance::{next_within, unique_domain, unique_group, Backend, PATIENCE};
use herald_brokers::message::header;
use herald_brokers::request::{HEADER_REPLY_TO, HEADER_REQUEST_ID};
use herald_brokers::{BrokerError, Topic, WireMessage};
use herald_testkit::eventually;

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
    for i in 0..REQUESTS {
        inbox
            .requester
            .send(WireMessage {
                topic: topic.clone(),
                partition: i as u32 % PARTITIONS,
                key: format!("k{i}"),
                headers: vec![(HEADER_REQUEST_ID.to_owned(), format!("r{i}"))],
                body: format!("q{i}").into_bytes(),
            })
            .await
            .expect("the broker confirms a request");
    }
    let mut replies = BTreeMap::new();
    while replies.len() < REQUESTS {
        let reply = tokio::time::timeout(PATIENCE, inbox.replies.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: {} of {REQUESTS} replies came back",
                    backend.name(),
                    replies.len()
                )
            })
            .expect("the inbox stays open");
        let id = reply
            .request_id()
            .expect("a reply names its request")
            .to_owned();
        replies.insert(id, String::from_utf8(reply.body).unwrap());
    }
    for i in 0..REQUESTS {
        let answer = &replies[&format!("r{i}")];
        let (member, question) = answer.split_once(':').unwrap();
        assert_eq!(
            question,
            format!("q{i}"),
            "{}: the reply to r{i}",
            backend.name()
        );
        assert!(member == "0" || member == "1");
    }
    let served = served.lock().unwrap().clone();
    assert_eq!(
        served.len(),
        REQUESTS,
        "{}: each request consumed once",
        backend.name()
    );
    assert!(
        served.iter().all(|(_, _, owned)| *owned),
        "{}: a member consumed a request of a partition it did not own: {served:?}",
        backend.name()
    );
    // Each partition has one owner (the group has settled once every
    // partition delivered).
    let settled = eventually(PATIENCE, || async {
        (0..PARTITIONS).all(|p| ownerships.iter().filter(|o| o.owns(&topic, p)).count() <= 1)
    })
    .await;
    assert!(settled, "{}: a partition with two owners", backend.name());
    for m in members {
        m.abort();
    }
    backend.teardown(&[topic], &[group]).await;
}
conformance!(requests_reach_the_owner_and_replies_come_back);
