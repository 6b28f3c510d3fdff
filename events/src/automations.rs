//! Events of the `automations` domain, version 1: the history of a
//! tenant's automations and the engine's own marks. Definitions live in
//! the stream `automations/definitions` (so the rules in force at any
//! moment are hash-chained, exported and audited like every other event);
//! each automation's stream `automations/<name>` carries what its durable
//! timers and failures record: absences that elapsed, schedule ticks and
//! actions that failed for good. Their schemas are
//! `schemas/automations/*.v1.json`.
//!
//! Only Herald appends these (through `POST /v1/automations` and the
//! engine); producers cannot publish them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::typed::{typed_events, TypedEvent};

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "automations";

/// The id of every tenant's definitions stream (`automations/definitions`).
pub const DEFINITIONS_STREAM_ID: &str = "definitions";

/// A version of an automation was saved (created, or changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationApplied {
    pub name: String,
    /// 1 for a new automation, then one more per change.
    pub version: u32,
    /// The automation document as accepted (JSON, validated against the
    /// published automation schema and compiled before it was stored).
    pub definition: Value,
    /// Whether it runs from this event on.
    pub enabled: bool,
}

/// An automation starts running on the events after this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationEnabled {
    pub name: String,
    pub version: u32,
}

/// An automation stops running from this event on; it can still be tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationDisabled {
    pub name: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An automation is gone; its name may be used again (from version 1 of
/// a new history, told apart by this event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationDeleted {
    pub name: String,
    pub version: u32,
}

/// An absence trigger's wait ended: the engine now checks whether the
/// awaited event came. Delivered by the durable timer the start event
/// scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsenceElapsed {
    pub automation: String,
    pub version: u32,
    /// The event that started the wait.
    pub trigger_event: Uuid,
    /// Its log position.
    pub trigger_position: u64,
    /// The correlation value the awaited event must have.
    pub correlation: Value,
}

/// A schedule trigger's time came. Delivered by the automation's durable
/// timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDue {
    pub automation: String,
    pub version: u32,
    /// The event that switched this version on: a firing of an earlier
    /// switch-on is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Uuid>,
    /// When this firing was due (cron schedules: the next one is computed
    /// from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An action failed for good (refused, invalid, or its template did not
/// evaluate): the automation's dead letter, kept for audit and retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFailed {
    pub automation: String,
    pub version: u32,
    pub trigger_event: Uuid,
    /// The action's path in the definition, e.g. `actions[1]` or
    /// `actions[0].on_refused[0]`.
    pub action: String,
    pub error: String,
}

/// A webhook action's delivery, queued: the dispatcher POSTs it until it
/// is delivered or its retry window ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequested {
    pub automation: String,
    pub version: u32,
    pub trigger_event: Uuid,
    pub action: String,
    /// The `Herald-Delivery` header: the same on every attempt.
    pub delivery_id: Uuid,
    pub url: String,
    pub body: Value,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub headers: serde_json::Map<String, Value>,
    /// The variable holding the signing secret (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    pub timeout_ms: u64,
    pub retry_for_secs: u64,
    /// Deliveries with the same key (the trigger's stream) to the same
    /// endpoint go one at a time, in order.
    pub order_key: String,
}

/// An email action's message, queued: the dispatcher sends it over SMTP
/// until the server accepts it or its retry window ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequested {
    pub automation: String,
    pub version: u32,
    pub trigger_event: Uuid,
    pub action: String,
    /// The message's `Message-ID` is `<delivery_id@herald>`: the same on
    /// every attempt.
    pub delivery_id: Uuid,
    pub to: Vec<String>,
    /// The sender; the process's `HERALD_SMTP_FROM` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub subject: String,
    pub body: String,
    pub retry_for_secs: u64,
    pub order_key: String,
}

/// A delivery succeeded: a webhook answered 2xx, or an email was accepted
/// by the SMTP server (`status` is its reply code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySucceeded {
    pub automation: String,
    pub delivery_id: Uuid,
    pub status: u16,
    pub attempts: u32,
    /// The successful attempt's time.
    pub latency_ms: u64,
}

/// A webhook delivery failed until its retry window ended: its dead
/// letter, retryable with `POST …/deliveries/{id}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryDeadLettered {
    pub automation: String,
    pub delivery_id: Uuid,
    pub attempts: u32,
    /// The last attempt's status, when it got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    pub error: String,
}

/// A dead-lettered delivery is to be tried again (a new retry window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRetryRequested {
    pub automation: String,
    pub delivery_id: Uuid,
}

typed_events! {
    AutomationApplied => "automation_applied",
    AutomationEnabled => "automation_enabled",
    AutomationDisabled => "automation_disabled",
    AutomationDeleted => "automation_deleted",
    AbsenceElapsed => "absence_elapsed",
    ScheduleDue => "schedule_due",
    ActionFailed => "action_failed",
    WebhookRequested => "webhook_requested",
    EmailRequested => "email_requested",
    DeliverySucceeded => "delivery_succeeded",
    DeliveryDeadLettered => "delivery_dead_lettered",
    DeliveryRetryRequested => "delivery_retry_requested",
}

/// One change to a tenant's automations, as stored in its definitions
/// stream.
#[derive(Debug, Clone, PartialEq)]
pub enum DefinitionChange {
    Applied(AutomationApplied),
    Enabled(AutomationEnabled),
    Disabled(AutomationDisabled),
    Deleted(AutomationDeleted),
}

impl DefinitionChange {
    /// The change a stored event records: `None` for any other event, an
    /// error for a definitions event whose payload does not read.
    pub fn from_envelope(envelope: &crate::EventEnvelope) -> Option<Result<Self, String>> {
        if envelope.event_type.domain() != DOMAIN {
            return None;
        }
        let payload = envelope.payload.clone();
        let name = envelope.event_type.name();
        let change = if name == AutomationApplied::NAME {
            AutomationApplied::from_payload(payload).map(Self::Applied)
        } else if name == AutomationEnabled::NAME {
            AutomationEnabled::from_payload(payload).map(Self::Enabled)
        } else if name == AutomationDisabled::NAME {
            AutomationDisabled::from_payload(payload).map(Self::Disabled)
        } else if name == AutomationDeleted::NAME {
            AutomationDeleted::from_payload(payload).map(Self::Deleted)
        } else {
            return None;
        };
        Some(change.map_err(|e| {
            format!(
                "{} at position {}: {e}",
                envelope.event_type, envelope.position
            )
        }))
    }

    /// The automation the change is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Applied(e) => &e.name,
            Self::Enabled(e) => &e.name,
            Self::Disabled(e) => &e.name,
            Self::Deleted(e) => &e.name,
        }
    }

    pub fn to_new_event(&self) -> crate::NewEvent {
        match self {
            Self::Applied(e) => e.to_new_event(),
            Self::Enabled(e) => e.to_new_event(),
            Self::Disabled(e) => e.to_new_event(),
            Self::Deleted(e) => e.to_new_event(),
        }
    }
}
