//! What an automation does with one event, decided without doing it: the
//! shared half of the live engine and the dry run. Given the triggering
//! event and the looked-up states, [`Compiled::decide`] evaluates the
//! condition and renders every action (ids, bodies, payloads), so the dry
//! run lists exactly what the engine then executes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use herald_events::EventEnvelope;

use crate::definition::{Compiled, CompiledAction, CompiledKind};
use crate::expr::{EvalError, Scope};

/// The event as expressions see it (`event.*`).
pub fn event_view(event: &EventEnvelope) -> Value {
    json!({
        "id": event.id.as_uuid().to_string(),
        "type": event.event_type.to_string(),
        "domain": event.event_type.domain(),
        "name": event.event_type.name(),
        "schema_version": event.version.get(),
        "stream": event.stream.to_string(),
        "stream_id": event.stream.id(),
        "version": event.stream_version.get(),
        "position": event.position.get(),
        "tenant": event.tenant.to_string(),
        "occurred_at": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "recorded_at": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "correlation_id": event.correlation_id.to_string(),
        "causation_id": event.causation_id.to_string(),
        "producer": event.producer,
        "payload": event.payload,
    })
}

/// The automation as expressions see it (`automation.*`).
pub fn automation_view(name: &str, version: u32) -> Value {
    json!({"name": name, "version": version})
}

/// The trigger of a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerRef {
    pub event: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub stream: String,
    pub position: u64,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl TriggerRef {
    pub fn of(event: &EventEnvelope) -> Self {
        Self {
            event: event.id.as_uuid(),
            event_type: event.event_type.to_string(),
            stream: event.stream.to_string(),
            position: event.position.get(),
            recorded_at: event.recorded_at,
        }
    }
}

/// An action with every template rendered: what would be done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Rendered {
    Command {
        domain: String,
        id: String,
        name: String,
        body: Value,
    },
    Event {
        stream: String,
        #[serde(rename = "type")]
        event_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
        payload: Value,
    },
    /// A `schedule` command to the timer `timers/{id}`.
    ScheduleTimer { id: String, body: Value },
    /// A `cancel` command to the timer `timers/{id}`.
    CancelTimer { id: String, body: Value },
    /// An email, queued for sending (at least once, with a stable
    /// Message-ID).
    Email {
        to: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        subject: String,
        body: String,
        retry_for_secs: u64,
    },
    /// An HTTP POST, queued for delivery (at least once, with a stable
    /// delivery id).
    Webhook {
        url: String,
        body: Value,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_env: Option<String>,
        timeout_ms: u64,
        retry_for_secs: u64,
    },
}

/// One action of a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAction {
    /// Where it is written (`actions[0]`, `actions[0].on_refused[0]`).
    pub path: String,
    /// Its own condition's value, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<bool>,
    /// What it does; `None` when its condition is false or it failed to
    /// render.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Rendered>,
    /// Why it could not be rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a command: what happens if its aggregate refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_refused: Option<Vec<PlannedAction>>,
}

/// What an automation decided for one trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub automation: String,
    pub version: u32,
    pub trigger: TriggerRef,
    /// The condition's value (`true` when there is none).
    pub condition: bool,
    /// Why the condition could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The actions, in order (empty when the condition is false).
    pub actions: Vec<PlannedAction>,
}

/// The dedupe key of an action: the automation, its version, the trigger
/// and the action's place. The same trigger never takes effect twice.
pub fn dedupe_key(automation: &str, version: u32, trigger: Uuid, path: &str) -> String {
    format!("automation/{automation}/{version}/{trigger}/{path}")
}

impl Compiled {
    /// The aggregates to look up for `scope`'s event, as `(key, domain,
    /// id)`.
    pub fn lookups_for(&self, scope: &Scope) -> Result<Vec<(String, String, String)>, EvalError> {
        self.lookups
            .iter()
            .map(|l| {
                let at = format!("with.{}.id", l.key);
                Ok((
                    l.key.clone(),
                    l.domain.clone(),
                    l.id.render_text(scope, &at)?,
                ))
            })
            .collect()
    }

    /// Decides for one trigger: `scope` holds the event and the states.
    pub fn decide(&self, version: u32, trigger: TriggerRef, scope: &Scope) -> Decision {
        let name = self.definition.name.clone();
        let (condition, error) = match &self.when {
            None => (true, None),
            Some(expr) => match expr.eval_bool(scope, "when") {
                Ok(b) => (b, None),
                Err(e) => (false, Some(e.to_string())),
            },
        };
        let actions = if condition {
            render_all(&self.actions, scope, trigger.recorded_at)
        } else {
            Vec::new()
        };
        Decision {
            automation: name,
            version,
            trigger,
            condition,
            error,
            actions,
        }
    }
}

type Instant = chrono::DateTime<chrono::Utc>;

fn render_all(actions: &[CompiledAction], scope: &Scope, recorded: Instant) -> Vec<PlannedAction> {
    actions.iter().map(|a| render(a, scope, recorded)).collect()
}

fn render(action: &CompiledAction, scope: &Scope, recorded: Instant) -> PlannedAction {
    let mut planned = PlannedAction {
        path: action.path.clone(),
        condition: None,
        action: None,
        error: None,
        on_refused: None,
    };
    if let Some(when) = &action.when {
        match when.eval_bool(scope, &format!("{}.when", action.path)) {
            Ok(true) => planned.condition = Some(true),
            Ok(false) => {
                planned.condition = Some(false);
                return planned;
            }
            Err(e) => {
                planned.error = Some(e.to_string());
                return planned;
            }
        }
    }
    let at = |field: &str| format!("{}.{field}", action.path);
    let rendered: Result<Rendered, EvalError> = (|| {
        Ok(match &action.kind {
            CompiledKind::Command {
                domain,
                id,
                name,
                body,
                on_refused,
            } => {
                planned.on_refused = on_refused.as_ref().map(|f| render_all(f, scope, recorded));
                Rendered::Command {
                    domain: domain.clone(),
                    id: id.render_text(scope, &at("command.id"))?,
                    name: name.clone(),
                    body: body.render(scope, &at("command.body"))?,
                }
            }
            CompiledKind::Event {
                stream,
                event_type,
                version,
                payload,
            } => Rendered::Event {
                stream: stream.render_text(scope, &at("event.stream"))?,
                event_type: event_type.clone(),
                version: *version,
                payload: payload.render(scope, &at("event.payload"))?,
            },
            CompiledKind::ScheduleTimer {
                id,
                at: when_at,
                after,
                every,
                deliver,
                label,
            } => {
                let mut body = Map::new();
                match (when_at, after) {
                    (Some(t), _) => {
                        body.insert("at".into(), t.render(scope, &at("schedule_timer.at"))?);
                    }
                    (None, Some(after)) => {
                        // From the trigger's recording, not the clock: a
                        // repeat (or the dry run) names the same instant.
                        let due = recorded
                            + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::MAX);
                        body.insert(
                            "at".into(),
                            Value::String(due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                        );
                    }
                    (None, None) => {}
                }
                if let Some(every) = every {
                    body.insert("every_secs".into(), json!(every.as_secs()));
                }
                body.insert(
                    "deliver".into(),
                    deliver.render(scope, &at("schedule_timer.deliver"))?,
                );
                if let Some(label) = label {
                    body.insert("label".into(), Value::String(label.clone()));
                }
                Rendered::ScheduleTimer {
                    id: id.render_text(scope, &at("schedule_timer.id"))?,
                    body: Value::Object(body),
                }
            }
            CompiledKind::Email {
                to,
                subject,
                body,
                from,
                retry_for,
            } => Rendered::Email {
                to: to
                    .iter()
                    .map(|t| t.render_text(scope, &at("email.to")))
                    .collect::<Result<_, _>>()?,
                from: from
                    .as_ref()
                    .map(|f| f.render_text(scope, &at("email.from")))
                    .transpose()?,
                subject: match subject.render(scope, &at("email.subject"))? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                body: match body.render(scope, &at("email.body"))? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                retry_for_secs: retry_for.as_secs().max(1),
            },
            CompiledKind::Webhook {
                url,
                body,
                headers,
                secret_env,
                timeout,
                retry_for,
            } => Rendered::Webhook {
                url: url.render_text(scope, &at("webhook.url"))?,
                body: match body {
                    Some(b) => b.render(scope, &at("webhook.body"))?,
                    None => crate::expr::Expr::compile("event", &at("webhook.body"))
                        .expect("a constant expression compiles")
                        .eval(scope, &at("webhook.body"))?,
                },
                headers: headers
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render_text(scope, &at("webhook.headers"))?)))
                    .collect::<Result<_, EvalError>>()?,
                secret_env: secret_env.clone(),
                timeout_ms: timeout.as_millis() as u64,
                retry_for_secs: retry_for.as_secs().max(1),
            },
            CompiledKind::CancelTimer { id, reason } => {
                let mut body = Map::new();
                if let Some(reason) = reason {
                    body.insert("reason".into(), Value::String(reason.clone()));
                }
                Rendered::CancelTimer {
                    id: id.render_text(scope, &at("cancel_timer.id"))?,
                    body: Value::Object(body),
                }
            }
        })
    })();
    match rendered {
        Ok(r) => planned.action = Some(r),
        Err(e) => planned.error = Some(e.to_string()),
    }
    planned
}
