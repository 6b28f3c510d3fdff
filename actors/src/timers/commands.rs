//! What can be asked of a timer or a countdown. Over HTTP each is
//! `POST /v1/timers/{id}/{name}` with the variant's fields as the body.

use chrono::{DateTime, Utc};
use herald_events::timers::{
    CountdownFont, CountdownLabels, CountdownUnit, Delivery, ViewerClient,
};
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
    /// `create_countdown {deadline, label, style?}`: `style` holds any of
    /// [`StyleSettings`]' fields; the rest are the defaults.
    CreateCountdown {
        deadline: DateTime<Utc>,
        label: String,
        #[serde(default)]
        style: Option<StyleSettings>,
    },
    /// `restyle_countdown {style}`: the fields given replace the current
    /// style's.
    RestyleCountdown { style: StyleSettings },
    /// `record_view {client?, key_sha256?}`: with `key_sha256`, only while
    /// it is the countdown's current image URL key (the image endpoint
    /// sends it, so a revoked URL counts nothing).
    RecordView {
        #[serde(default)]
        client: Option<ViewerClient>,
        #[serde(default)]
        key_sha256: Option<String>,
    },
    /// `issue_image_url {key_sha256}`: the SHA-256 (lower-case hex) of a new
    /// image URL's secret; it replaces any earlier URL.
    IssueImageUrl { key_sha256: String },
    /// `revoke_image_url {}`
    RevokeImageUrl {},
}

/// Style fields of a countdown's image, each optional: on creation the
/// missing ones are the defaults, on restyling the current ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleSettings {
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// `#rrggbb` (either case).
    #[serde(default)]
    pub background: Option<String>,
    #[serde(default)]
    pub foreground: Option<String>,
    #[serde(default)]
    pub label_colour: Option<String>,
    #[serde(default)]
    pub font: Option<CountdownFont>,
    #[serde(default)]
    pub units: Option<Vec<CountdownUnit>>,
    /// `null` removes the labels.
    #[serde(default, deserialize_with = "some_or_null")]
    pub labels: Option<Option<CountdownLabels>>,
    #[serde(default)]
    pub expired_text: Option<String>,
}

/// `"labels": null` is a setting (no labels), unlike a missing field.
fn some_or_null<'de, D>(d: D) -> Result<Option<Option<CountdownLabels>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<CountdownLabels>::deserialize(d).map(Some)
}

/// The commands' names, as in URLs.
pub const NAMES: &[&str] = &[
    "schedule",
    "fire",
    "cancel",
    "create_countdown",
    "restyle_countdown",
    "record_view",
    "issue_image_url",
    "revoke_image_url",
];
