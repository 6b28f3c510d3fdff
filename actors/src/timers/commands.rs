//! What can be asked of a timer or a countdown. Over HTTP each is
//! `POST /v1/timers/{id}/{name}` with the variant's fields as the body.

use chrono::{DateTime, Utc};
use herald_events::timers::Delivery;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TimerCommand {
    /// `schedule {at? | after_secs?, every_secs?, deliver: {kind, domain,
    /// stream_id, name, body}, correlation_id?, label?}`: exactly one of
    /// `at` (RFC 3339) and `after_secs` (from the time of the decision).
    Schedule {
        #[serde(default)]
        at: Option<DateTime<Utc>>,
        #[serde(default)]
        after_secs: Option<u64>,
        #[serde(default)]
        every_secs: Option<u64>,
        deliver: Delivery,
        #[serde(default)]
        correlation_id: Option<Uuid>,
        #[serde(default)]
        label: Option<String>,
    },
    /// `fire {occurrence, due_at}`: sent by the scheduler when an
    /// occurrence is due (a countdown's expiry is its occurrence 1, due at
    /// its deadline).
    Fire {
        occurrence: u64,
        due_at: DateTime<Utc>,
    },
    /// `cancel {reason?}`
    Cancel {
        #[serde(default)]
        reason: Option<String>,
    },
    /// `create_countdown {deadline, label}`
    CreateCountdown {
        deadline: DateTime<Utc>,
        label: String,
    },
    /// `record_view {}`
    RecordView {},
}

/// The commands' names, as in URLs.
pub const NAMES: &[&str] = &[
    "schedule",
    "fire",
    "cancel",
    "create_countdown",
    "record_view",
];
