//! Names and declarations of what topics and groups have on the server (see
//! the module above for the table), and Herald's string headers as an AMQP
//! header table and back.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::failure;
use crate::error::BrokerError;
use crate::message::{ConsumerGroup, Topic};

/// The exchange every group's dead letters go through.
pub const DEAD_LETTER_EXCHANGE: &str = "herald.dead-letter";

/// The queue of `group` for one shard of `topic`: `<topic>.<group>.<shard>`.
pub fn shard_queue(topic: &Topic, group: &ConsumerGroup, shard: u32) -> String {
    format!("{topic}.{group}.{shard}")
}

/// The queue holding `group`'s dead letters: `herald.dlq.<group>`.
pub fn dead_letter_queue(group: &ConsumerGroup) -> String {
    Topic::dead_letters(group).as_str().to_owned()
}

/// A name as AMQP carries it (at most 255 bytes).
pub(super) fn short(kind: &'static str, name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::InvalidName {
        kind,
        value: name.chars().take(120).collect(),
        rule: "at most 255 bytes on RabbitMQ (a shard queue's name is topic, group and shard)",
    })
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn classic() -> FieldTable {
    let mut arguments = FieldTable::default();
    // Handing a shard over relies on classic queues putting returned
    // messages back at their place; say so rather than inherit a default.
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    arguments
}

/// A topic's exchange.
pub(super) async fn declare_exchange(channel: &Channel, topic: &str) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            short("topic", topic)?,
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| failure("declare an exchange", &e))
}

/// The dead-letter exchange and `group`'s dead-letter queue, bound.
pub(super) async fn declare_dead_letters(
    channel: &Channel,
    group: &ConsumerGroup,
) -> Result<(), BrokerError> {
    let queue = short("queue", &dead_letter_queue(group))?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| failure("declare the dead-letter exchange", &e))?;
    channel
        .queue_declare(queue.clone(), durable_queue(), classic())
        .await
        .map_err(|e| failure("declare a dead-letter queue", &e))?;
    channel
        .queue_bind(
            queue.clone(),
            DEAD_LETTER_EXCHANGE.into(),
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| failure("bind a dead-letter queue", &e))
}

/// `group`'s queue for one shard of `topic`, bound to the topic's exchange
/// (which must exist).
pub(super) async fn declare_shard(
    channel: &Channel,
    topic: &Topic,
    group: &ConsumerGroup,
    shard: u32,
) -> Result<(), BrokerError> {
    let queue = short("queue", &shard_queue(topic, group, shard))?;
    let mut arguments = classic();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead_letter_queue(group).into()),
    );
    channel
        .queue_declare(queue.clone(), durable_queue(), arguments)
        .await
        .map_err(|e| failure("declare a shard queue", &e))?;
    channel
        .queue_bind(
            queue,
            short("topic", topic.as_str())?,
            shard.to_string().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| failure("bind a shard queue", &e))
}

/// Deletes a queue (deleting one that does not exist succeeds).
pub(super) async fn delete_queue(channel: &Channel, queue: &str) -> Result<(), BrokerError> {
    channel
        .queue_delete(short("queue", queue)?, QueueDeleteOptions::default())
        .await
        .map(drop)
        .map_err(|e| failure("delete a queue", &e))
}

/// Deletes an exchange, only when no queue is bound to it if `if_unused`.
pub(super) async fn delete_exchange(
    channel: &Channel,
    exchange: &str,
    if_unused: bool,
) -> Result<(), BrokerError> {
    channel
        .exchange_delete(
            short("exchange", exchange)?,
            ExchangeDeleteOptions {
                if_unused,
                ..ExchangeDeleteOptions::default()
            },
        )
        .await
        .map_err(|e| failure("delete an exchange", &e))
}

/// Herald's headers as an AMQP header table (long strings).
pub(super) fn header_table<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<FieldTable, BrokerError> {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(
            short("header", name)?,
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    Ok(table)
}

/// The string headers of a delivered message (other values, like RabbitMQ's
/// own `x-death`, are left out).
pub(super) fn string_headers(table: Option<&FieldTable>) -> Vec<(String, String)> {
    let Some(table) = table else {
        return Vec::new();
    };
    table
        .into_iter()
        .filter_map(|(name, value)| {
            let value = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                _ => return None,
            };
            Some((name.as_str().to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_scheme() {
        let topic = Topic::named("herald.tickets").unwrap();
        let group = ConsumerGroup::new("projections").unwrap();
        assert_eq!(
            shard_queue(&topic, &group, 3),
            "herald.tickets.projections.3"
        );
        assert_eq!(dead_letter_queue(&group), "herald.dlq.projections");
    }

    #[test]
    fn headers_round_trip() {
        let table = header_table([("herald-type", "tickets.opened"), ("a", "b")]).unwrap();
        let mut back = string_headers(Some(&table));
        back.sort();
        assert_eq!(
            back,
            vec![
                ("a".to_owned(), "b".to_owned()),
                ("herald-type".to_owned(), "tickets.opened".to_owned())
            ]
        );
    }

    #[test]
    fn over_long_names_are_refused_not_a_panic() {
        assert!(matches!(
            short("queue", &"x".repeat(256)),
            Err(BrokerError::InvalidName { .. })
        ));
    }
}
