//! The `timers` domain: durable timers and email countdowns (being written).
