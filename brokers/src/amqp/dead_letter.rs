//! Reading a group's dead letters without taking them: `basic.get` on the
//! dead-letter queue, then one `basic.nack` with `requeue` puts them all back
//! at their places, on the same channel, so the next read (which goes through
//! the same channel) sees them again, oldest first.

use lapin::options::{BasicGetOptions, BasicNackOptions};
use lapin::protocol::AMQPSoftError;
use lapin::types::{AMQPValue, FieldTable};

use super::publish::{HEADER_KEY, HEADER_ORIGINAL_PARTITION};
use super::topology::{dead_letter_queue, short, string_headers};
use super::{close_channel, failure, soft_error, Shared};
use crate::error::BrokerError;
use crate::message::{
    decode, header, ConsumerGroup, Topic, WireMessage, HEADER_ERROR, HEADER_GROUP,
    HEADER_ORIGINAL_TOPIC,
};
use crate::DeadLetter;

/// Headers a dead letter has that the rejected message did not.
const ADDED: [&str; 5] = [
    HEADER_ERROR,
    HEADER_GROUP,
    HEADER_ORIGINAL_TOPIC,
    HEADER_ORIGINAL_PARTITION,
    HEADER_KEY,
];

pub(super) async fn browse(
    shared: &Shared,
    group: &ConsumerGroup,
    max: usize,
) -> Result<Vec<DeadLetter>, BrokerError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let queue = short("queue", &dead_letter_queue(group))?;
    let mut slot = shared.browse.lock().await;
    let channel = match slot.as_ref().filter(|c| c.status().connected()) {
        Some(channel) => channel.clone(),
        None => {
            let live = shared.consume.connect().await?;
            let channel = live
                .connection
                .create_channel()
                .await
                .map_err(|e| failure("open a channel", &e))?;
            *slot = Some(channel.clone());
            channel
        }
    };
    let mut letters = Vec::new();
    let result = async {
        let mut last_tag = None;
        while letters.len() < max {
            let Some(got) = channel
                .basic_get(queue.clone(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            last_tag = Some(got.delivery.delivery_tag);
            letters.push(dead_letter(
                got.delivery.properties.headers().as_ref(),
                &got.delivery.data,
                group,
            ));
            if got.message_count == 0 {
                break;
            }
        }
        if let Some(tag) = last_tag {
            channel
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await?;
        }
        Ok::<(), lapin::Error>(())
    }
    .await;
    match result {
        Ok(()) => Ok(letters),
        Err(e) => {
            // Closing the channel puts back whatever it had taken.
            *slot = None;
            close_channel(&channel).await;
            if soft_error(&e) == Some(&AMQPSoftError::NOTFOUND) {
                // The group never subscribed: it has no dead letters.
                Ok(Vec::new())
            } else {
                Err(failure("read dead letters", &e))
            }
        }
    }
}

/// A message of a dead-letter queue as the [`DeadLetter`] it stands for.
fn dead_letter(table: Option<&FieldTable>, body: &[u8], group: &ConsumerGroup) -> DeadLetter {
    let all = string_headers(table);
    let died = table.and_then(x_death);
    let error = header(&all, HEADER_ERROR).map_or_else(
        || match &died {
            Some(death) => format!("rejected by RabbitMQ ({})", death.reason),
            None => "rejected by RabbitMQ".to_owned(),
        },
        str::to_owned,
    );
    let topic = header(&all, HEADER_ORIGINAL_TOPIC)
        .map(str::to_owned)
        .or_else(|| died.as_ref().map(|d| d.exchange.clone()))
        .and_then(|t| Topic::named(t).ok())
        .unwrap_or_else(|| Topic::dead_letters(group));
    let partition = header(&all, HEADER_ORIGINAL_PARTITION)
        .map(str::to_owned)
        .or_else(|| died.as_ref().and_then(|d| d.routing_key.clone()))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let key = header(&all, HEADER_KEY).unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = all
        .into_iter()
        .filter(|(name, _)| !ADDED.iter().any(|a| name.eq_ignore_ascii_case(a)))
        .collect();
    DeadLetter {
        topic: topic.clone(),
        error,
        content: decode(&headers, body),
        message: WireMessage {
            topic,
            partition,
            key,
            headers,
            body: body.to_vec(),
        },
    }
}

/// Where a message RabbitMQ itself dead-lettered came from (its first
/// `x-death` entry).
struct Death {
    reason: String,
    exchange: String,
    routing_key: Option<String>,
}

fn x_death(table: &FieldTable) -> Option<Death> {
    fn text(value: Option<&AMQPValue>) -> Option<String> {
        match value? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        }
    }
    let AMQPValue::FieldArray(deaths) = table.inner().get("x-death")? else {
        return None;
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        return None;
    };
    let first = first.inner();
    let routing_key = match first.get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => text(keys.as_slice().first()),
        _ => None,
    };
    Some(Death {
        reason: text(first.get("reason")).unwrap_or_else(|| "unknown".to_owned()),
        exchange: text(first.get("exchange"))?,
        routing_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::topology::header_table;

    #[test]
    fn a_dead_letter_gives_back_the_rejected_message() {
        let group = ConsumerGroup::new("g").unwrap();
        let table = header_table([
            ("herald-type", "tickets.opened"),
            (HEADER_KEY, "default/tickets/T-1"),
            (HEADER_ERROR, "cannot apply"),
            (HEADER_GROUP, "g"),
            (HEADER_ORIGINAL_TOPIC, "herald.tickets"),
            (HEADER_ORIGINAL_PARTITION, "3"),
        ])
        .unwrap();
        let letter = dead_letter(Some(&table), b"body", &group);
        assert_eq!(letter.error, "cannot apply");
        assert_eq!(letter.topic.as_str(), "herald.tickets");
        assert_eq!(letter.message.partition, 3);
        assert_eq!(letter.message.key, "default/tickets/T-1");
        assert_eq!(
            letter.message.headers,
            vec![("herald-type".to_owned(), "tickets.opened".to_owned())]
        );
        assert!(letter.content.is_err());
    }
}
