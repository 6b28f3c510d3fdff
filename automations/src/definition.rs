//! An automation as written (YAML or JSON): a trigger, an optional
//! condition, lookups of aggregates' state, and actions. [`Definition`] is
//! the document; [`Definition::compile`] checks everything that can be
//! checked before any event arrives (names, durations, patterns, every
//! expression and template) and gives the [`Compiled`] form the engine and
//! the dry run share.
//!
//! The published JSON Schema of the document is
//! `automations/schema/automation.schema.json`; the serde model here is
//! stricter (unknown fields are refused) and the two are kept equal by a
//! test.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::expr::{CompileError, Expr, Template};
use crate::matcher::{EventMatcher, MatcherError};

/// The published JSON Schema of the document (`GET /v1/automations/schema`).
pub const SCHEMA: &str = include_str!("../schema/automation.schema.json");

/// The largest definition accepted, as JSON.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// The most actions of an automation, counting fallbacks.
pub const MAX_ACTIONS: usize = 32;
/// How deep `on_refused` fallbacks nest.
pub const MAX_FALLBACK_DEPTH: usize = 3;
/// The most lookups of an automation.
pub const MAX_LOOKUPS: usize = 8;
/// The longest absence wait.
pub const MAX_WITHIN: Duration = Duration::from_secs(366 * 24 * 3600);
/// The shortest schedule interval.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest wait or interval a timer action may name.
pub const MAX_TIMER_DELAY: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// An automation document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Lower-case letters, digits, `-` and `_`, starting with a letter; at
    /// most 64 characters. Unique per tenant.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub trigger: Trigger,
    /// A CEL condition; the actions run when it gives `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Aggregates whose state the condition and actions read, as
    /// `state.<key>`: their state as of the triggering event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, Lookup>,
    pub actions: Vec<Action>,
}

/// What starts an automation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Every event that matches.
    Event(EventFilter),
    /// A matching `start` event not followed by a matching `missing` event
    /// with the same correlation value within `within`.
    Absence(Absence),
    /// The clock: every interval.
    Schedule(Schedule),
}

/// Which events match: types (with `*` wildcards) and a stream pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Event types, `domain.name`; `*` matches any run of characters
    /// (`edges.*`, `*.ticket_opened`, `*`).
    pub types: Vec<String>,
    /// A stream pattern, `domain/id` with `*` wildcards (`edges/site-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    pub start: EventFilter,
    pub missing: EventFilter,
    /// How long to wait, e.g. `5s`, `10m`, `1h 30m`.
    pub within: String,
    /// A CEL expression evaluated on the start event and on each candidate
    /// `missing` event (as `event`): equal values belong together.
    pub correlate: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The interval, e.g. `30s`, `1h`; at least one second …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// … or a cron expression: five fields (minute, hour, day of month,
    /// month, day of week) or six with seconds first, e.g. `0 9 * * MON-FRI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression reads in (default `UTC`),
    /// e.g. `Europe/Paris`: 09:00 stays 09:00 across daylight saving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Cadence {
    Every(Duration),
    Cron {
        cron: Box<croner::Cron>,
        zone: chrono_tz::Tz,
        source: String,
    },
}

impl Cadence {
    /// The first instant strictly after `after` at which it fires.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Cadence::Every(every) => Some(after + chrono::Duration::from_std(*every).ok()?),
            Cadence::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&after.with_timezone(zone), false)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
        }
    }
}

/// An aggregate's state to read: `domain` and a templated `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub domain: String,
    pub id: String,
}

/// One thing an automation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A command to an aggregate, as `POST /v1/{domain}/{id}/{name}`.
    Command(CommandAction),
    /// An event appended to a stream.
    Event(EventAction),
    /// A durable timer scheduled (the `timers` domain's `schedule`).
    ScheduleTimer(ScheduleTimerAction),
    /// A durable timer cancelled.
    CancelTimer(CancelTimerAction),
    /// An HTTP POST of a JSON body, signed, retried, in order per stream.
    Webhook(WebhookAction),
    /// An email over the process's SMTP server (`HERALD_SMTP_URL`).
    Email(EmailAction),
}

/// What an email action sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAction {
    /// Recipients (templates), `name@domain` or `Name <name@domain>`.
    pub to: Vec<String>,
    /// The subject (a template).
    pub subject: String,
    /// The plain-text body (a template).
    pub body: String,
    /// The sender (a template); the process's `HERALD_SMTP_FROM` when left
    /// out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How long refusals are retried before the dead letter (default 1 h,
    /// at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// What a webhook sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAction {
    /// `http://` or `https://` (a template).
    pub url: String,
    /// The JSON body (a template); the triggering event when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Extra headers (templates); `Herald-*`, `Content-Type` and hop
    /// headers are Herald's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The environment variable (`HERALD_WEBHOOK_…`) holding the HMAC
    /// secret the body is signed with. The secret itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// How long one attempt may take (default 10 s, at most 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How long failed attempts are retried before the delivery is
    /// dead-lettered (default 1 h, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// The default and longest attempt of a webhook.
pub const WEBHOOK_TIMEOUT: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(60));
/// The default and longest retry window of a webhook.
pub const WEBHOOK_RETRY_FOR: (Duration, Duration) = (
    Duration::from_secs(3600),
    Duration::from_secs(7 * 24 * 3600),
);
/// Environment variables a webhook's secret may come from start so.
pub const SECRET_ENV_PREFIX: &str = "HERALD_WEBHOOK_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    pub domain: String,
    /// The aggregate's id (a template).
    pub id: String,
    pub name: String,
    /// The command's body (a template).
    #[serde(default = "empty_object")]
    pub body: Value,
    /// Runs only when this CEL condition gives `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// What to do when the aggregate's rules refuse the command (it does
    /// not exist, or its state forbids it): these actions instead. Without
    /// it a refusal is a failure (dead-lettered); `[]` ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_refused: Option<Vec<Action>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventAction {
    /// The stream, `domain/id` (a template).
    pub stream: String,
    /// The event's type, `domain.name`, of the stream's domain.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its schema version; the latest when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The payload (a template), checked against the type's schema.
    #[serde(default = "empty_object")]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTimerAction {
    /// The timer's id (a template); ids are used once.
    pub id: String,
    /// When, as an RFC 3339 instant (a template) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// … or after a wait from the triggering event's recording, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Fires again every interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// What it delivers: `{kind: command|event, domain, stream_id, name,
    /// body}` (a template).
    pub deliver: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelTimerAction {
    /// The timer's id (a template).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Why a document is not an automation: every problem found, each with
/// where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the automation is not valid: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidDefinition {
    pub problems: Vec<CompileError>,
}

impl InvalidDefinition {
    fn one(at: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![CompileError {
                at: at.to_owned(),
                message: message.into(),
            }],
        }
    }
}

/// Reads a document as YAML or JSON (JSON is YAML) into JSON.
pub fn parse_document(text: &str) -> Result<Value, InvalidDefinition> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(InvalidDefinition::one(
            "",
            format!("the document is larger than {MAX_DEFINITION_BYTES} bytes"),
        ));
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|e| InvalidDefinition::one("", format!("not valid JSON: {e}")));
    }
    serde_yaml_ng::from_str::<Value>(text)
        .map_err(|e| InvalidDefinition::one("", format!("not valid YAML: {e}")))
}

/// Whether `name` can name an automation.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        // The definitions stream's id: an automation of that name would
        // share its stream.
        && name != herald_events::automations::DEFINITIONS_STREAM_ID
}

/// Parses a duration such as `5s`, `250ms`, `10m`, `1h 30m`, `2d`.
pub fn parse_duration(text: &str, at: &str) -> Result<Duration, CompileError> {
    humantime::parse_duration(text.trim()).map_err(|e| CompileError {
        at: at.to_owned(),
        message: format!("{text:?} is not a duration (e.g. 5s, 10m, 1h 30m): {e}"),
    })
}

/// An automation ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub definition: Definition,
    pub trigger: CompiledTrigger,
    pub when: Option<Expr>,
    pub lookups: Vec<CompiledLookup>,
    pub actions: Vec<CompiledAction>,
}

#[derive(Debug, Clone)]
pub enum CompiledTrigger {
    Event(EventMatcher),
    Absence {
        start: EventMatcher,
        missing: EventMatcher,
        within: Duration,
        correlate: Expr,
    },
    Schedule(Cadence),
}

#[derive(Debug, Clone)]
pub struct CompiledLookup {
    pub key: String,
    pub domain: String,
    pub id: Template,
}

/// An action with its templates compiled.
#[derive(Debug, Clone)]
pub struct CompiledAction {
    /// Where it is written, e.g. `actions[0].on_refused[1]`: part of its
    /// dedupe key, and how failures name it.
    pub path: String,
    pub when: Option<Expr>,
    pub kind: CompiledKind,
}

#[derive(Debug, Clone)]
pub enum CompiledKind {
    Command {
        domain: String,
        id: Template,
        name: String,
        body: Template,
        on_refused: Option<Vec<CompiledAction>>,
    },
    Event {
        stream: Template,
        event_type: String,
        version: Option<u32>,
        payload: Template,
    },
    ScheduleTimer {
        id: Template,
        at: Option<Template>,
        after: Option<Duration>,
        every: Option<Duration>,
        deliver: Template,
        label: Option<String>,
    },
    CancelTimer {
        id: Template,
        reason: Option<String>,
    },
    Email {
        to: Vec<Template>,
        subject: Template,
        body: Template,
        from: Option<Template>,
        retry_for: Duration,
    },
    Webhook {
        url: Template,
        /// `None`: the triggering event as the body.
        body: Option<Template>,
        headers: Vec<(String, Template)>,
        secret_env: Option<String>,
        timeout: Duration,
        retry_for: Duration,
    },
}

impl Definition {
    /// Reads a JSON value as a definition (unknown fields refused).
    pub fn from_value(value: Value) -> Result<Self, InvalidDefinition> {
        let size = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
        if size > MAX_DEFINITION_BYTES {
            return Err(InvalidDefinition::one(
                "",
                format!("the automation is larger than {MAX_DEFINITION_BYTES} bytes as JSON"),
            ));
        }
        serde_json::from_value(value).map_err(|e| InvalidDefinition::one("", e.to_string()))
    }

    /// Checks and compiles everything; every problem is reported at once.
    pub fn compile(&self) -> Result<Compiled, InvalidDefinition> {
        let mut problems = Vec::new();
        let mut note = |at: &str, message: String| {
            problems.push(CompileError {
                at: at.to_owned(),
                message,
            })
        };
        if !valid_name(&self.name) {
            note(
                "name",
                format!(
                    "{:?} is not an automation name: lower-case letters, digits, - and _, \
                     starting with a letter, at most 64 characters, not `definitions`",
                    self.name
                ),
            );
        }
        let mut errors: Vec<CompileError> = Vec::new();
        let trigger = compile_trigger(&self.trigger, &mut errors);
        let when = self
            .when
            .as_deref()
            .and_then(|w| keep(Expr::compile(w, "when"), &mut errors));
        if self.with.len() > MAX_LOOKUPS {
            errors.push(CompileError {
                at: "with".into(),
                message: format!("at most {MAX_LOOKUPS} lookups"),
            });
        }
        let lookups = self
            .with
            .iter()
            .filter_map(|(key, lookup)| {
                let at = format!("with.{key}");
                if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || key.starts_with(|c: char| c.is_ascii_digit())
                {
                    errors.push(CompileError {
                        at: at.clone(),
                        message: "a lookup's key is an identifier (letters, digits, _)".into(),
                    });
                }
                let id = keep(
                    Template::compile_text(&lookup.id, &format!("{at}.id")),
                    &mut errors,
                )?;
                Some(CompiledLookup {
                    key: key.clone(),
                    domain: lookup.domain.clone(),
                    id,
                })
            })
            .collect();
        if self.actions.is_empty() {
            errors.push(CompileError {
                at: "actions".into(),
                message: "an automation does at least one thing".into(),
            });
        }
        let mut count = 0;
        let actions = compile_actions(&self.actions, "actions", 0, &mut count, &mut errors);
        if count > MAX_ACTIONS {
            errors.push(CompileError {
                at: "actions".into(),
                message: format!("at most {MAX_ACTIONS} actions, fallbacks included ({count})"),
            });
        }
        problems.extend(errors);
        if !problems.is_empty() {
            return Err(InvalidDefinition { problems });
        }
        Ok(Compiled {
            definition: self.clone(),
            trigger: trigger.expect("no problem means the trigger compiled"),
            when,
            lookups,
            actions,
        })
    }
}

fn keep<T>(result: Result<T, CompileError>, errors: &mut Vec<CompileError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn matcher(filter: &EventFilter, at: &str, errors: &mut Vec<CompileError>) -> Option<EventMatcher> {
    EventMatcher::new(&filter.types, filter.stream.as_deref())
        .map_err(|e: MatcherError| {
            errors.push(CompileError {
                at: at.to_owned(),
                message: e.to_string(),
            })
        })
        .ok()
}

fn compile_trigger(trigger: &Trigger, errors: &mut Vec<CompileError>) -> Option<CompiledTrigger> {
    match trigger {
        Trigger::Event(filter) => {
            matcher(filter, "trigger.event", errors).map(CompiledTrigger::Event)
        }
        Trigger::Absence(a) => {
            let start = matcher(&a.start, "trigger.absence.start", errors);
            let missing = matcher(&a.missing, "trigger.absence.missing", errors);
            let within = keep(parse_duration(&a.within, "trigger.absence.within"), errors);
            if let Some(w) = within {
                if w.is_zero() || w > MAX_WITHIN {
                    errors.push(CompileError {
                        at: "trigger.absence.within".into(),
                        message: "between 1 ms and 366 days".into(),
                    });
                }
            }
            let correlate = keep(
                Expr::compile(&a.correlate, "trigger.absence.correlate"),
                errors,
            );
            Some(CompiledTrigger::Absence {
                start: start?,
                missing: missing?,
                within: within?,
                correlate: correlate?,
            })
        }
        Trigger::Schedule(s) => match (&s.every, &s.cron) {
            (Some(every), None) => {
                if s.timezone.is_some() {
                    errors.push(CompileError {
                        at: "trigger.schedule.timezone".into(),
                        message: "a time zone goes with `cron`, not `every`".into(),
                    });
                }
                let every = keep(parse_duration(every, "trigger.schedule.every"), errors)?;
                if every < MIN_EVERY || every > MAX_TIMER_DELAY || every.subsec_nanos() != 0 {
                    errors.push(CompileError {
                        at: "trigger.schedule.every".into(),
                        message: "a whole number of seconds, at least 1 s".into(),
                    });
                    return None;
                }
                Some(CompiledTrigger::Schedule(Cadence::Every(every)))
            }
            (None, Some(text)) => {
                let zone = match &s.timezone {
                    None => Some(chrono_tz::UTC),
                    Some(name) => name
                        .parse::<chrono_tz::Tz>()
                        .map_err(|_| {
                            errors.push(CompileError {
                                at: "trigger.schedule.timezone".into(),
                                message: format!(
                                    "{name:?} is not an IANA time zone (e.g. Europe/Paris)"
                                ),
                            })
                        })
                        .ok(),
                };
                let cron = text
                    .parse::<croner::Cron>()
                    .map_err(|e| {
                        errors.push(CompileError {
                            at: "trigger.schedule.cron".into(),
                            message: format!("{text:?} is not a cron expression: {e}"),
                        })
                    })
                    .ok();
                let cadence = Cadence::Cron {
                    cron: Box::new(cron?),
                    zone: zone?,
                    source: text.clone(),
                };
                if cadence.next_after(chrono::Utc::now()).is_none() {
                    errors.push(CompileError {
                        at: "trigger.schedule.cron".into(),
                        message: format!("{text:?} never fires"),
                    });
                    return None;
                }
                Some(CompiledTrigger::Schedule(cadence))
            }
            _ => {
                errors.push(CompileError {
                    at: "trigger.schedule".into(),
                    message: "exactly one of `every` and `cron`".into(),
                });
                None
            }
        },
    }
}

fn compile_actions(
    actions: &[Action],
    at: &str,
    depth: usize,
    count: &mut usize,
    errors: &mut Vec<CompileError>,
) -> Vec<CompiledAction> {
    actions
        .iter()
        .enumerate()
        .filter_map(|(i, action)| {
            *count += 1;
            let path = format!("{at}[{i}]");
            compile_action(action, path, depth, count, errors)
        })
        .collect()
}

fn compile_action(
    action: &Action,
    path: String,
    depth: usize,
    count: &mut usize,
    errors: &mut Vec<CompileError>,
) -> Option<CompiledAction> {
    let cond = |when: &Option<String>, errors: &mut Vec<CompileError>| match when {
        Some(w) => keep(Expr::compile(w, &format!("{path}.when")), errors).map(Some),
        None => Some(None),
    };
    let duration = |text: &Option<String>, field: &str, errors: &mut Vec<CompileError>| match text {
        Some(t) => {
            let at = format!("{path}.{field}");
            let d = keep(parse_duration(t, &at), errors)?;
            if d.subsec_nanos() != 0 || d > MAX_TIMER_DELAY || (field == "every" && d < MIN_EVERY) {
                errors.push(CompileError {
                    at,
                    message: "a whole number of seconds (every: at least 1 s)".into(),
                });
                return None;
            }
            Some(Some(d))
        }
        None => Some(None),
    };
    let (when, kind) = match action {
        Action::Command(c) => {
            let at = format!("{path}.command");
            let on_refused = match &c.on_refused {
                Some(fallbacks) if depth + 1 > MAX_FALLBACK_DEPTH => {
                    errors.push(CompileError {
                        at: format!("{path}.on_refused"),
                        message: format!("fallbacks nest at most {MAX_FALLBACK_DEPTH} deep"),
                    });
                    let _ = fallbacks;
                    None
                }
                Some(fallbacks) => Some(compile_actions(
                    fallbacks,
                    &format!("{path}.on_refused"),
                    depth + 1,
                    count,
                    errors,
                )),
                None => None,
            };
            let id = keep(Template::compile_text(&c.id, &format!("{at}.id")), errors);
            let body = keep(Template::compile(&c.body, &format!("{at}.body")), errors);
            if !c.body.is_object() {
                errors.push(CompileError {
                    at: format!("{at}.body"),
                    message: "a command's body is an object".into(),
                });
            }
            (
                cond(&c.when, errors),
                CompiledKind::Command {
                    domain: c.domain.clone(),
                    id: id?,
                    name: c.name.clone(),
                    body: body?,
                    on_refused,
                },
            )
        }
        Action::Event(e) => {
            let at = format!("{path}.event");
            let stream = keep(
                Template::compile_text(&e.stream, &format!("{at}.stream")),
                errors,
            );
            let payload = keep(
                Template::compile(&e.payload, &format!("{at}.payload")),
                errors,
            );
            match e.event_type.parse::<herald_events::EventType>() {
                Ok(t)
                    if t.domain() == herald_events::automations::DOMAIN
                        || t.domain() == herald_events::registry::events::DOMAIN =>
                {
                    errors.push(CompileError {
                        at: format!("{at}.type"),
                        message: format!(
                            "{t} is Herald's own event; an automation cannot append it"
                        ),
                    });
                }
                Ok(_) => {}
                Err(err) => errors.push(CompileError {
                    at: format!("{at}.type"),
                    message: err.to_string(),
                }),
            }
            (
                cond(&e.when, errors),
                CompiledKind::Event {
                    stream: stream?,
                    event_type: e.event_type.clone(),
                    version: e.version,
                    payload: payload?,
                },
            )
        }
        Action::ScheduleTimer(t) => {
            let at = format!("{path}.schedule_timer");
            if t.at.is_some() == t.after.is_some() {
                errors.push(CompileError {
                    at: at.clone(),
                    message: "exactly one of `at` and `after`".into(),
                });
            }
            let id = keep(Template::compile_text(&t.id, &format!("{at}.id")), errors);
            let when_at = match &t.at {
                Some(a) => keep(Template::compile_text(a, &format!("{at}.at")), errors).map(Some),
                None => Some(None),
            };
            let after = duration(&t.after, "schedule_timer.after", errors);
            let every = duration(&t.every, "schedule_timer.every", errors);
            let deliver = keep(
                Template::compile(&t.deliver, &format!("{at}.deliver")),
                errors,
            );
            (
                cond(&t.when, errors),
                CompiledKind::ScheduleTimer {
                    id: id?,
                    at: when_at?,
                    after: after?,
                    every: every?,
                    deliver: deliver?,
                    label: t.label.clone(),
                },
            )
        }
        Action::Webhook(w) => {
            let at = format!("{path}.webhook");
            let url = keep(Template::compile_text(&w.url, &format!("{at}.url")), errors);
            if let Template::Literal(Value::String(u)) =
                url.as_ref().unwrap_or(&Template::Literal(Value::Null))
            {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    errors.push(CompileError {
                        at: format!("{at}.url"),
                        message: "a webhook's URL is http:// or https://".into(),
                    });
                }
            }
            let body = match &w.body {
                Some(b) => keep(Template::compile(b, &format!("{at}.body")), errors).map(Some),
                None => Some(None),
            };
            let headers: Option<Vec<(String, Template)>> = w
                .headers
                .iter()
                .map(|(name, value)| {
                    let lower = name.to_ascii_lowercase();
                    let reserved = lower.starts_with("herald-")
                        || matches!(
                            lower.as_str(),
                            "content-type" | "content-length" | "host" | "connection" | "transfer-encoding" | "te" | "upgrade"
                        );
                    let token = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if reserved || !token {
                        errors.push(CompileError {
                            at: format!("{at}.headers.{name}"),
                            message: "not a header an automation may set (Herald-*, Content-Type, Host and hop headers are Herald's)".into(),
                        });
                        return None;
                    }
                    keep(Template::compile_text(value, &format!("{at}.headers.{name}")), errors)
                        .map(|t| (name.clone(), t))
                })
                .collect();
            if let Some(env) = &w.secret_env {
                if !env.starts_with(SECRET_ENV_PREFIX)
                    || !env
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    errors.push(CompileError {
                        at: format!("{at}.secret_env"),
                        message: format!("the secret's variable is named {SECRET_ENV_PREFIX}… (upper case, digits, _)"),
                    });
                }
            }
            let bounded = |text: &Option<String>,
                           field: &str,
                           (default, max): (Duration, Duration),
                           errors: &mut Vec<CompileError>| {
                let Some(t) = text else { return Some(default) };
                let at = format!("{at}.{field}");
                let d = keep(parse_duration(t, &at), errors)?;
                if d.is_zero() || d > max {
                    errors.push(CompileError {
                        at,
                        message: format!("between 1 ms and {}", humantime::format_duration(max)),
                    });
                    return None;
                }
                Some(d)
            };
            let timeout = bounded(&w.timeout, "timeout", WEBHOOK_TIMEOUT, errors);
            let retry_for = bounded(&w.retry_for, "retry_for", WEBHOOK_RETRY_FOR, errors);
            (
                cond(&w.when, errors),
                CompiledKind::Webhook {
                    url: url?,
                    body: body?,
                    headers: headers?,
                    secret_env: w.secret_env.clone(),
                    timeout: timeout?,
                    retry_for: retry_for?,
                },
            )
        }
        Action::Email(m) => {
            let at = format!("{path}.email");
            if m.to.is_empty() || m.to.len() > 50 {
                errors.push(CompileError {
                    at: format!("{at}.to"),
                    message: "1 to 50 recipients".into(),
                });
            }
            let to: Option<Vec<Template>> =
                m.to.iter()
                    .enumerate()
                    .map(|(i, t)| keep(Template::compile_text(t, &format!("{at}.to[{i}]")), errors))
                    .collect();
            let subject = keep(
                Template::compile_text(&m.subject, &format!("{at}.subject")),
                errors,
            );
            let body = keep(
                Template::compile_text(&m.body, &format!("{at}.body")),
                errors,
            );
            let from = match &m.from {
                Some(f) => keep(Template::compile_text(f, &format!("{at}.from")), errors).map(Some),
                None => Some(None),
            };
            let retry_for = match &m.retry_for {
                None => Some(WEBHOOK_RETRY_FOR.0),
                Some(t) => {
                    let d = keep(parse_duration(t, &format!("{at}.retry_for")), errors);
                    match d {
                        Some(d) if !d.is_zero() && d <= WEBHOOK_RETRY_FOR.1 => Some(d),
                        Some(_) => {
                            errors.push(CompileError {
                                at: format!("{at}.retry_for"),
                                message: "between 1 ms and 7 days".into(),
                            });
                            None
                        }
                        None => None,
                    }
                }
            };
            (
                cond(&m.when, errors),
                CompiledKind::Email {
                    to: to?,
                    subject: subject?,
                    body: body?,
                    from: from?,
                    retry_for: retry_for?,
                },
            )
        }
        Action::CancelTimer(t) => {
            let at = format!("{path}.cancel_timer");
            let id = keep(Template::compile_text(&t.id, &format!("{at}.id")), errors);
            (
                cond(&t.when, errors),
                CompiledKind::CancelTimer {
                    id: id?,
                    reason: t.reason.clone(),
                },
            )
        }
    };
    Some(CompiledAction {
        path,
        when: when?,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(yaml: &str) -> Result<Compiled, InvalidDefinition> {
        Definition::from_value(parse_document(yaml)?)?.compile()
    }

    #[test]
    fn the_outage_monitor_reads_as_an_automation() {
        let compiled = parse(
            r#"
name: outage-monitor
trigger:
  absence:
    start: {types: [edges.edge_went_offline]}
    missing: {types: [edges.edge_came_online]}
    within: 5s
    correlate: event.stream_id
with:
  edge: {domain: edges, id: "{{ event.stream_id }}"}
actions:
  - command:
      domain: tickets
      id: "outage.{{ event.stream_id }}"
      name: open
      body: {kind: outage, customer: "{{ state.edge.customer }}", edge: "{{ event.stream_id }}", description: "offline", opened_by: automation}
      on_refused:
        - command: {domain: tickets, id: "outage.{{ event.stream_id }}", name: reopen, body: {reason: again}, on_refused: []}
"#,
        )
        .unwrap();
        assert!(
            matches!(compiled.trigger, CompiledTrigger::Absence { within, .. } if within == Duration::from_secs(5))
        );
        assert_eq!(compiled.actions.len(), 1);
        let CompiledKind::Command {
            on_refused: Some(f),
            ..
        } = &compiled.actions[0].kind
        else {
            panic!("a command with a fallback");
        };
        assert_eq!(f[0].path, "actions[0].on_refused[0]");
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let e = parse(
            r#"{"name": "Bad Name", "trigger": {"absence": {"start": {"types": []}, "missing": {"types": ["a.b"]}, "within": "soon", "correlate": "evnt.x"}},
                "when": "event.payload.x >", "actions": [{"event": {"stream": "x/{{ event.id }}", "type": "automations.schedule_due"}}]}"#,
        )
        .unwrap_err();
        let places: Vec<&str> = e.problems.iter().map(|p| p.at.as_str()).collect();
        for at in [
            "name",
            "trigger.absence.start",
            "trigger.absence.within",
            "trigger.absence.correlate",
            "when",
            "actions[0].event.type",
        ] {
            assert!(places.contains(&at), "{at} missing from {places:?}");
        }
    }

    /// The published schema and the model agree: every document the model
    /// takes, the schema takes, and shapes the model refuses it refuses.
    #[test]
    fn the_published_schema_agrees_with_the_model() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let good = [
            r#"{"name": "a", "trigger": {"event": {"types": ["tickets.*"], "stream": "tickets/T-*"}}, "when": "true",
                "with": {"t": {"domain": "tickets", "id": "{{ event.stream_id }}"}},
                "actions": [{"command": {"domain": "tickets", "id": "x", "name": "assign", "body": {"assignee": "a"},
                             "when": "true", "on_refused": [{"cancel_timer": {"id": "t", "reason": "r"}}]}},
                            {"event": {"stream": "orders/1", "type": "orders.seen", "version": 1, "payload": {"a": 1}}},
                            {"schedule_timer": {"id": "t", "after": "5s", "every": "1m", "deliver": {"kind": "command"}, "label": "l"}},
                            {"webhook": {"url": "http://example.com/h", "body": {"a": 1}, "headers": {"X-A": "b"},
                                         "secret_env": "HERALD_WEBHOOK_A", "timeout": "5s", "retry_for": "1h"}},
                            {"email": {"to": ["a@example.com"], "subject": "s", "body": "b", "from": "h@example.com", "retry_for": "1h"}}]}"#,
            r#"{"name": "b", "description": "d", "trigger": {"absence": {"start": {"types": ["a.b"]}, "missing": {"types": ["a.c"]},
                "within": "5s", "correlate": "event.stream"}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
            r#"{"name": "c", "trigger": {"schedule": {"every": "1h"}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
            r#"{"name": "d", "trigger": {"schedule": {"cron": "0 9 * * *", "timezone": "Europe/Paris"}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
        ];
        for text in good {
            let doc: Value = serde_json::from_str(text).unwrap();
            assert!(validator.is_valid(&doc), "the schema refuses {text}");
            Definition::from_value(doc).unwrap().compile().unwrap();
        }
        let bad = [
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": [{"cancel_timer": {"id": "x"}}], "extra": 1}"#,
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}, "schedule": {"every": "1s"}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": [{"command": {"domain": "t", "id": "x"}}]}"#,
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": [{"webhook": {"url": "http://x.example", "verb": "PUT"}}]}"#,
            r#"{"name": "a", "trigger": {"schedule": {"every": "1s", "cron": "* * * * *"}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
            r#"{"trigger": {"event": {"types": ["*"]}}, "actions": [{"cancel_timer": {"id": "x"}}]}"#,
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": [{"email": {"to": ["a@example.com"], "subject": "s"}}]}"#,
        ];
        for text in bad {
            let doc: Value = serde_json::from_str(text).unwrap();
            assert!(!validator.is_valid(&doc), "the schema takes {text}");
            assert!(
                Definition::from_value(doc)
                    .and_then(|d| d.compile())
                    .is_err(),
                "the model takes {text}"
            );
        }
    }

    #[test]
    fn cron_schedules_read_in_their_time_zone() {
        let c = parse(r#"{"name": "daily", "trigger": {"schedule": {"cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris"}},
            "actions": [{"cancel_timer": {"id": "x"}}]}"#).unwrap();
        let CompiledTrigger::Schedule(cadence) = &c.trigger else {
            panic!("a schedule")
        };
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        // Friday 27 March 2026, 10:00 Paris (CET, UTC+1) → Monday 30 March,
        // 09:00 Paris, which is summer time (UTC+2) by then.
        assert_eq!(
            cadence.next_after(at("2026-03-27T09:00:00Z")),
            Some(at("2026-03-30T07:00:00Z"))
        );
        assert_eq!(
            cadence.next_after(at("2026-03-26T07:59:59Z")),
            Some(at("2026-03-26T08:00:00Z"))
        );
        for bad in [
            r#"{"cron": "61 * * * *"}"#,
            r#"{"cron": "0 9 * * *", "timezone": "Mars/Olympus"}"#,
            r#"{"every": "1m", "cron": "* * * * *"}"#,
            r#"{"every": "1m", "timezone": "UTC"}"#,
        ] {
            let text = format!(
                r#"{{"name": "x", "trigger": {{"schedule": {bad}}}, "actions": [{{"cancel_timer": {{"id": "x"}}}}]}}"#
            );
            let e = parse(&text).unwrap_err();
            assert!(
                e.problems
                    .iter()
                    .any(|p| p.at.starts_with("trigger.schedule")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_shapes_are_refused() {
        assert!(parse(
            r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": [], "extra": 1}"#
        )
        .is_err());
        let e = parse(r#"{"name": "a", "trigger": {"event": {"types": ["*"]}}, "actions": []}"#)
            .unwrap_err();
        assert_eq!(e.problems[0].at, "actions");
        let e =
            Definition::from_value(json!({"name": "a", "trigger": {"clock": {}}, "actions": []}))
                .unwrap_err();
        assert!(e.to_string().contains("clock"), "{e}");
    }
}
