//! `herald replay publish --from P --to P --topic T`: republishes a range
//! of the log, in position order, to a broker topic of its own (never a
//! domain's topic, whose consumers have had these events) so a downstream
//! consumer can catch up or rebuild. Each message is the event exactly as
//! the relay puts it on the wire (same body, headers and partition, so a
//! group still gets each stream in order), plus `herald-replay: true` and
//! `herald-replay-id` (one id per run). `--rate N/s` caps the pace; the
//! broker is chosen as for `herald serve`.

use std::num::NonZeroU32;

use anyhow::Context;
use clap::Args;
use governor::{Quota, RateLimiter};
use herald_brokers::{Broker, Topic, WireMessage};
use herald_events::Position;
use serde_json::json;
use uuid::Uuid;

use super::{print_json, progress_bar, usage};
use crate::config::{
    broker_settings, store_settings, BrokerArgs, BrokerLocation, BrokerSettings, FileConfig,
    StoreArgs, WireCodec,
};

/// Marks a republished message.
pub const HEADER_REPLAY: &str = "herald-replay";
/// The id of the run that republished a message.
pub const HEADER_REPLAY_ID: &str = "herald-replay-id";

/// Most events read and published at once.
const BATCH: usize = 500;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The first log position to republish
    #[arg(long, value_name = "P")]
    pub from: u64,

    /// The last log position to republish (inclusive; the head if beyond it)
    #[arg(long, value_name = "P")]
    pub to: u64,

    /// The topic to publish to (on RabbitMQ the exchange; a name of its own,
    /// not a domain's topic)
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// At most this many messages per second (`200` or `200/s`) [default: as
    /// fast as the broker confirms]
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<NonZeroU32>,

    /// The broker: `amqp://user:password@host:port/vhost` (RabbitMQ) or
    /// `kafka://host:port[,host:port]`
    #[arg(long, env = "HERALD_BROKER", value_name = "BROKER")]
    pub broker: Option<String>,

    /// Envelope encoding on the broker [default: bincode]
    #[arg(long, env = "HERALD_BROKER_CODEC", value_enum)]
    pub broker_codec: Option<WireCodec>,

    /// Largest message body; larger events travel as claim checks [default: 1048576]
    #[arg(long, env = "HERALD_BROKER_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub broker_max_message_bytes: Option<usize>,

    /// Partitions per topic (shard queues on RabbitMQ) [default: 4]
    #[arg(long, env = "HERALD_BROKER_PARTITIONS", value_name = "N")]
    pub broker_partitions: Option<u32>,

    /// Print a JSON summary
    #[arg(long)]
    pub json: bool,
}

/// `N` or `N/s`, at least 1.
fn parse_rate(text: &str) -> Result<NonZeroU32, String> {
    let number = text.trim().trim_end_matches("/s").trim();
    number
        .parse::<NonZeroU32>()
        .map_err(|_| format!("{text:?} is not a rate such as 200 or 200/s (at least 1)"))
}

/// The broker settings, as `herald serve` resolves them.
fn settings(args: &PublishArgs, file: &FileConfig) -> anyhow::Result<BrokerSettings> {
    let broker = BrokerArgs {
        broker: args.broker.clone(),
        broker_codec: args.broker_codec,
        broker_max_message_bytes: args.broker_max_message_bytes,
        broker_partitions: args.broker_partitions,
        ..BrokerArgs::default()
    };
    broker_settings(&broker, file).map_err(|e| usage(format!("{e:#}")))
}

/// Refuses topics whose consumers would take a replay for live events.
fn check_topic(topic: &Topic, settings: &BrokerSettings) -> anyhow::Result<()> {
    for domain in crate::domains::builtin().specs().names() {
        if topic.as_str() == format!("{}{domain}", Topic::PREFIX) {
            return Err(usage(format!(
                "--topic {topic} is the {domain} domain's topic, whose consumers have had these \
                 events; republish to a topic of its own"
            )));
        }
    }
    if topic
        .as_str()
        .starts_with(&format!("{}dlq.", Topic::PREFIX))
    {
        return Err(usage(format!("--topic {topic} is a dead-letter topic")));
    }
    if *topic == settings.ingest.topic {
        return Err(usage(format!(
            "--topic {topic} is the ingest topic, which takes new events, not envelopes"
        )));
    }
    Ok(())
}

/// Connects to the broker (a real one: the in-process broker reaches no
/// other process), the way `herald serve` does.
async fn open_broker(settings: &BrokerSettings) -> anyhow::Result<std::sync::Arc<dyn Broker>> {
    if matches!(settings.location, BrokerLocation::Memory) {
        return Err(usage(
            "herald replay publish needs a broker other processes reach: --broker amqp://… or \
             kafka://… (or HERALD_BROKER)",
        ));
    }
    crate::cli::serve::open_broker(settings)
        .await
        .context("connecting to the broker")
}

pub async fn run(args: PublishArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    if args.from == 0 {
        return Err(usage("--from must be a log position, 1 or more"));
    }
    if args.to < args.from {
        return Err(usage(format!(
            "--to {} is before --from {}",
            args.to, args.from
        )));
    }
    let topic = Topic::named(args.topic.trim()).map_err(|e| usage(format!("--topic: {e}")))?;
    let broker_settings = settings(&args, file)?;
    check_topic(&topic, &broker_settings)?;
    let store_settings = store_settings(store, file)?;
    let store = herald_store::open(store_settings)
        .await
        .context("opening the event store")?;
    let result = async {
        let head = store.head().await.context("reading the log head")?.position;
        if args.from > head.get() {
            return Err(usage(format!(
                "--from {} is past the end of the log (position {head})",
                args.from
            )));
        }
        let last = args.to.min(head.get());
        let broker = open_broker(&broker_settings).await?;
        let result = republish(&*store, &*broker, &topic, args.from, last, args.rate).await;
        broker.close().await;
        result.map(|(replay_id, published)| (replay_id, published, last))
    }
    .await;
    store.close().await;
    let (replay_id, published, last) = result?;
    if args.json {
        print_json(&json!({
            "replay_id": replay_id,
            "topic": topic.as_str(),
            "from": args.from,
            "to": last,
            "published": published,
        }))
    } else {
        println!(
            "Republished positions {}..{last} ({published} events) to {topic} as replay {replay_id}.",
            args.from
        );
        Ok(())
    }
}

/// Publishes the events at positions `from..=to` to `topic`, each marked
/// as part of one replay; returns its id and how many were published.
async fn republish(
    store: &dyn herald_store::EventStore,
    broker: &dyn Broker,
    topic: &Topic,
    from: u64,
    to: u64,
    rate: Option<NonZeroU32>,
) -> anyhow::Result<(Uuid, u64)> {
    let replay_id = Uuid::now_v7();
    let limiter = rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
    // A tenth of a second's worth per publish keeps the pace even.
    let batch = rate.map_or(BATCH, |r| (r.get() as usize / 10).clamp(1, BATCH));
    let bar = progress_bar(&format!("republishing to {topic}"), to - from + 1);
    let mut next = from;
    let mut published = 0u64;
    while next <= to {
        let room = ((to - next + 1) as usize).min(batch);
        let mut events = store
            .read_all(Position(next), room)
            .await
            .context("reading the log")?;
        events.retain(|e| e.position.get() <= to);
        let Some(last) = events.last().map(|e| e.position.get()) else {
            break;
        };
        let messages = events
            .iter()
            .map(|event| {
                let mut message: WireMessage = herald_brokers::encode(event, broker.wire())?;
                message.topic = topic.clone();
                message
                    .headers
                    .push((HEADER_REPLAY.to_owned(), "true".to_owned()));
                message
                    .headers
                    .push((HEADER_REPLAY_ID.to_owned(), replay_id.to_string()));
                Ok(message)
            })
            .collect::<Result<Vec<_>, herald_brokers::BrokerError>>()?;
        if let (Some(limiter), Some(n)) = (&limiter, NonZeroU32::new(messages.len() as u32)) {
            limiter
                .until_n_ready(n)
                .await
                .map_err(|e| anyhow::anyhow!("rate limit: {e}"))?;
        }
        let count = messages.len() as u64;
        broker.publish(messages).await.with_context(|| {
            format!(
                "publishing positions {next}..{last} to {topic} ({published} events before them \
                 were published)"
            )
        })?;
        published += count;
        next = last + 1;
        bar.set_position(next - from);
    }
    bar.finish_and_clear();
    Ok((replay_id, published))
}
