//! The RabbitMQ backend (lapin). Being written: see the broker issue.

use crate::message::WireSettings;

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    pub wire: WireSettings,
}
