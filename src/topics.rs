//! The broker topics `herald serve` uses, made ready before anything
//! starts: every domain's topic (the relay places each event in its
//! stream's partition), the ingest topic, and the dead-letter topic of
//! every consumer group the process joins. On Kafka, missing topics are
//! created with `HERALD_BROKER_PARTITIONS` partitions; a domain topic with
//! fewer partitions, or a missing topic the cluster would not create, stops
//! the start with a message naming each topic and what to change. Partitions
//! are never added for the operator: see `herald_brokers::kafka` (admin)
//! for why that would break per-stream order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use herald_brokers::{Broker, BrokerError, ConsumerGroup, Topic, TopicProblem};
use herald_events::{Domain, EventRegistry};

use crate::config::{ActorSettings, BrokerSettings};

/// How long the start waits for a broker that cannot be reached.
const REACH_PATIENCE: Duration = Duration::from_secs(30);

/// The topics of a process: those it places events in, and the others.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needed {
    pub placed: Vec<Topic>,
    pub keyed: Vec<Topic>,
}

/// What `herald serve` with these settings publishes to and consumes.
pub fn needed(
    broker: &BrokerSettings,
    actors: &ActorSettings,
    list: &crate::domains::DomainList,
    registry: &EventRegistry,
) -> Needed {
    let domains: BTreeSet<String> = registry
        .types()
        .map(|(t, _)| t.domain().to_owned())
        .collect();
    let mut placed: Vec<Topic> = domains
        .iter()
        .filter_map(|d| Domain::new(d.as_str()).ok())
        .map(|d| Topic::for_domain(&d))
        .collect();
    let mut groups: Vec<ConsumerGroup> = list.reaction_groups(actors);
    // Commands travel to their aggregate's owner on a shared broker
    // (`placement`), answers back on the reply topic (Kafka).
    if !matches!(broker.location, crate::config::BrokerLocation::Memory) {
        placed.extend(Topic::named(crate::placement::COMMAND_TOPIC).ok());
        groups.extend(ConsumerGroup::new(crate::placement::COMMAND_GROUP).ok());
    }
    #[cfg(feature = "kafka")]
    if matches!(broker.location, crate::config::BrokerLocation::Kafka { .. }) {
        placed.extend(Topic::named(herald_brokers::kafka::REPLY_TOPIC).ok());
    }
    if broker.relay {
        groups.extend(ConsumerGroup::new(herald_projections::LIVE_GROUP).ok());
    }
    let mut keyed = Vec::new();
    if broker.ingest.enabled {
        keyed.push(broker.ingest.topic.clone());
        groups.extend(ConsumerGroup::new(crate::ingest::GROUP).ok());
    }
    keyed.extend(groups.iter().map(Topic::dead_letters));
    Needed { placed, keyed }
}

/// Prepares the topics of `needed` on `broker`, waiting up to 30 s for a
/// broker that cannot be reached; refuses the start when a topic cannot
/// serve, saying what to change.
pub async fn prepare(
    broker: &Arc<dyn Broker>,
    needed: &Needed,
    partitions: u32,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match broker.prepare_topics(&needed.placed, &needed.keyed).await {
            Ok(()) => return Ok(()),
            Err(BrokerError::Topics { backend, problems }) => {
                bail!(refusal(backend, &problems, partitions))
            }
            Err(e @ BrokerError::Unavailable { .. }) if started.elapsed() < REACH_PATIENCE => {
                tracing::warn!(error = %e, "Cannot check the broker's topics yet; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => bail!("cannot prepare the broker's topics: {e}"),
        }
    }
}

/// The message of a refused start: each problem, then what to do.
fn refusal(backend: &str, problems: &[TopicProblem], partitions: u32) -> String {
    let mut text = format!("the {backend} topics do not fit this configuration:");
    for problem in problems {
        text.push_str("\n  - ");
        text.push_str(&problem.to_string());
    }
    let smallest = problems
        .iter()
        .filter_map(|p| match p {
            TopicProblem::TooFewPartitions { partitions, .. } => Some(*partitions),
            _ => None,
        })
        .min();
    if let Some(smallest) = smallest {
        text.push_str(&format!(
            "\nHerald puts each stream's events in one partition of its domain's topic, chosen \
             among HERALD_BROKER_PARTITIONS={partitions}, and does not add partitions to an \
             existing topic (a stream's later events would land in another partition than its \
             earlier ones and could be consumed before them). Either set \
             HERALD_BROKER_PARTITIONS={smallest} (at most the smallest count above), or, once \
             every consumer group has read these topics to their end, give them {partitions} \
             partitions (kafka-topics.sh --alter --partitions {partitions}) or delete them and \
             let Herald create them."
        ));
    }
    if problems
        .iter()
        .any(|p| matches!(p, TopicProblem::Missing { .. }))
    {
        text.push_str(&format!(
            "\nCreate the missing topics ({partitions} partitions for a domain topic, any count \
             for the ingest and dead-letter topics), or let Herald create them (allow it the \
             CreateTopics operation)."
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_each_topic_both_counts_and_what_to_change() {
        let text = refusal(
            "kafka",
            &[
                TopicProblem::TooFewPartitions {
                    topic: "herald.tickets".into(),
                    partitions: 1,
                    wanted: 4,
                },
                TopicProblem::TooFewPartitions {
                    topic: "herald.edges".into(),
                    partitions: 2,
                    wanted: 4,
                },
            ],
            4,
        );
        assert!(text.contains("herald.tickets has 1 partition"), "{text}");
        assert!(text.contains("herald.edges has 2 partition"), "{text}");
        assert!(text.contains("HERALD_BROKER_PARTITIONS=1"), "{text}");
        assert!(!text.contains("CreateTopics"), "{text}");

        let text = refusal(
            "kafka",
            &[TopicProblem::Missing {
                topic: "herald.dlq.herald-ingest".into(),
                reason: "not authorized".into(),
            }],
            4,
        );
        assert!(text.contains("herald.dlq.herald-ingest"), "{text}");
        assert!(text.contains("not authorized"), "{text}");
        assert!(text.contains("CreateTopics"), "{text}");
    }
}
