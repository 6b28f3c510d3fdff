//! Trying an automation on history without effects: the events of a
//! stretch of the log go through the same matching, lookups and
//! [`Compiled::decide`] as in the engine, and the answer lists, in log
//! order, what it would have done and why — the matching event, the
//! condition's value, each rendered action. Nothing is appended.
//!
//! Differences from the live engine, all about time:
//! - an absence is decided on the recording times: the awaited event
//!   counts when it was recorded at most `within` after the start event
//!   (live, the wait ends when its timer's event is appended, a little
//!   later); a wait that ends after the stretch (or after now) is listed as
//!   pending;
//! - a schedule is tried on the `automations.schedule_due` events of the
//!   stretch (its own firings, when it ran in place);
//! - lookups read the state as of the triggering event (for an absence,
//!   the start event).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_events::automations::{ScheduleDue, DOMAIN};
use herald_events::{EventEnvelope, Position, TenantId, TypedEvent};
use herald_store::search::MAX_SEARCH_LIMIT;
use herald_store::{EventStore, SearchQuery, StoreError};
use serde::Serialize;
use serde_json::{json, Value};

use crate::definition::{Compiled, CompiledTrigger};
use crate::engine::{LookupError, States};
use crate::expr::Scope;
use crate::plan::{automation_view, event_view, Decision, TriggerRef};

/// The stretch of history tried.
#[derive(Debug, Clone)]
pub struct Stretch {
    /// Events after this position …
    pub after: Position,
    /// … and at most this one (`None`: the head as it is).
    pub until: Option<Position>,
    /// Recorded at or after …
    pub from: Option<DateTime<Utc>>,
    /// … and before.
    pub to: Option<DateTime<Utc>>,
    /// Stop after this many decisions (the answer says where to go on).
    pub max_decisions: usize,
    /// Stop after this many events scanned.
    pub max_scanned: u64,
}

impl Default for Stretch {
    fn default() -> Self {
        Self {
            after: Position::START,
            until: None,
            from: None,
            to: None,
            max_decisions: 1000,
            max_scanned: 1_000_000,
        }
    }
}

/// An absence whose wait ends after the stretch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub trigger: TriggerRef,
    pub correlation: Value,
    pub due_at: DateTime<Utc>,
}

/// What a dry run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub automation: String,
    /// Events of the tenant that matched the trigger's types in the
    /// stretch.
    pub scanned: u64,
    /// Every trigger that matched, in log order, with what it decided
    /// (`condition: false` ones included).
    pub decisions: Vec<Decision>,
    /// Absences still waiting at the end of the stretch.
    pub pending: Vec<Pending>,
    /// Where to continue (`after`) when a limit stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Why a dry run failed.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a lookup failed: {0}")]
    Lookup(String),
}

/// Tries `compiled` (as version `version`) on the tenant's events of
/// `stretch`.
pub async fn dry_run(
    store: &dyn EventStore,
    privacy: Option<&herald_privacy::Privacy>,
    states: &dyn States,
    tenant: &TenantId,
    compiled: Arc<Compiled>,
    version: u32,
    stretch: &Stretch,
) -> Result<Report, DryRunError> {
    let name = compiled.definition.name.clone();
    let mut report = Report {
        automation: name.clone(),
        scanned: 0,
        decisions: Vec::new(),
        pending: Vec::new(),
        next_after: None,
    };
    let automation = automation_view(&name, version);
    let (patterns, stream, schedule) = match &compiled.trigger {
        CompiledTrigger::Event(m) => (m.type_patterns(), m.exact_stream(), false),
        CompiledTrigger::Absence { start, .. } => {
            (start.type_patterns(), start.exact_stream(), false)
        }
        CompiledTrigger::Schedule { .. } => {
            (vec![format!("{DOMAIN}.{}", ScheduleDue::NAME)], None, true)
        }
    };
    let head = match stretch.until {
        Some(u) => u,
        None => store.head().await?.position,
    };
    let now = Utc::now();
    let mut query = SearchQuery::new(tenant.clone());
    query.types = patterns;
    // One stream named exactly: its index narrows the search.
    if let Some(stream) = stream.and_then(|s| s.parse().ok()) {
        query.streams = vec![stream];
    }
    query.after = stretch.after;
    query.recorded_from = stretch.from;
    query.recorded_to = stretch.to;
    query.limit = MAX_SEARCH_LIMIT;
    'pages: loop {
        let page = store.search(&query).await?;
        for sealed in &page.events {
            // Conditions see personal fields in plaintext, as live.
            let revealed = match privacy {
                Some(privacy) => crate::engine::revealed(privacy, sealed)
                    .await
                    .map_err(|e| DryRunError::Lookup(e.to_string()))?,
                None => None,
            };
            let event = revealed.as_ref().unwrap_or(sealed);
            if event.position > head {
                break 'pages;
            }
            if report.decisions.len() >= stretch.max_decisions
                || report.scanned >= stretch.max_scanned
            {
                report.next_after = Some(event.position.get() - 1);
                break 'pages;
            }
            report.scanned += 1;
            let event_type = event.event_type.to_string();
            let stream = event.stream.to_string();
            match &compiled.trigger {
                CompiledTrigger::Event(m) => {
                    if !m.matches(&event_type, &stream)
                        || event.producer == crate::engine::producer(&name)
                    {
                        continue;
                    }
                    let scope = scope(states, &compiled, event, &automation).await?;
                    report
                        .decisions
                        .push(decide(&compiled, version, event, scope));
                }
                CompiledTrigger::Schedule { .. } => {
                    let ours = schedule
                        && ScheduleDue::from_payload(event.payload.clone())
                            .is_ok_and(|d| d.automation == name);
                    if !ours {
                        continue;
                    }
                    let scope = scope(states, &compiled, event, &automation).await?;
                    report
                        .decisions
                        .push(decide(&compiled, version, event, scope));
                }
                CompiledTrigger::Absence {
                    start,
                    missing,
                    within,
                    correlate,
                } => {
                    if !start.matches(&event_type, &stream)
                        || event.producer == crate::engine::producer(&name)
                    {
                        continue;
                    }
                    let scope = match scope(states, &compiled, event, &automation).await? {
                        Ok(s) => s,
                        Err(e) => {
                            report.decisions.push(failed(&name, version, event, e));
                            continue;
                        }
                    };
                    if let Some(when) = &compiled.when {
                        match when.eval_bool(&scope, "when") {
                            Ok(true) => {}
                            Ok(false) => {
                                report.decisions.push(Decision {
                                    automation: name.clone(),
                                    version,
                                    trigger: TriggerRef::of(event),
                                    condition: false,
                                    error: None,
                                    actions: Vec::new(),
                                });
                                continue;
                            }
                            Err(e) => {
                                report
                                    .decisions
                                    .push(failed(&name, version, event, e.to_string()));
                                continue;
                            }
                        }
                    }
                    let correlation = match correlate.eval(&scope, "trigger.absence.correlate") {
                        Ok(v) => v,
                        Err(e) => {
                            report
                                .decisions
                                .push(failed(&name, version, event, e.to_string()));
                            continue;
                        }
                    };
                    let due = event.recorded_at
                        + chrono::Duration::from_std(*within).unwrap_or(chrono::Duration::MAX);
                    let came = came_by(
                        store,
                        tenant,
                        missing,
                        correlate,
                        &automation,
                        &correlation,
                        event.position,
                        due,
                    )
                    .await?;
                    if came {
                        continue;
                    }
                    let ends_after = stretch.to.is_some_and(|to| due >= to) || due > now;
                    if ends_after {
                        report.pending.push(Pending {
                            trigger: TriggerRef::of(event),
                            correlation,
                            due_at: due,
                        });
                        continue;
                    }
                    let decision = compiled.decide(version, TriggerRef::of(event), &scope);
                    report.decisions.push(decision);
                }
            }
        }
        match page.last_scanned {
            Some(p) if p < head => query.after = p,
            _ => break,
        }
    }
    Ok(report)
}

fn failed(name: &str, version: u32, event: &EventEnvelope, error: String) -> Decision {
    Decision {
        automation: name.to_owned(),
        version,
        trigger: TriggerRef::of(event),
        condition: false,
        error: Some(error),
        actions: Vec::new(),
    }
}

fn decide(
    compiled: &Compiled,
    version: u32,
    event: &EventEnvelope,
    scope: Result<Scope, String>,
) -> Decision {
    match scope {
        Ok(scope) => compiled.decide(version, TriggerRef::of(event), &scope),
        Err(e) => failed(&compiled.definition.name, version, event, e),
    }
}

/// The scope of `event` with its lookups as of the event; a lookup that
/// can never succeed is the decision's error, a transient one fails the
/// dry run.
async fn scope(
    states: &dyn States,
    compiled: &Compiled,
    event: &EventEnvelope,
    automation: &Value,
) -> Result<Result<Scope, String>, DryRunError> {
    let scope = Scope::new(&event_view(event), &json!({}), automation);
    if compiled.lookups.is_empty() {
        return Ok(Ok(scope));
    }
    let targets = match compiled.lookups_for(&scope) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut found = serde_json::Map::new();
    for (key, domain, id) in targets {
        match states
            .state_at(&event.tenant, &domain, &id, event.position.get())
            .await
        {
            Ok(v) => {
                found.insert(key, v.unwrap_or(Value::Null));
            }
            Err(LookupError::Invalid(e)) => return Ok(Err(format!("with.{key}: {e}"))),
            Err(LookupError::Transient(e)) => return Err(DryRunError::Lookup(e)),
        }
    }
    Ok(Ok(scope.with_state(&Value::Object(found))))
}

/// Whether an event matching `missing` with the correlation `wanted` was
/// recorded after `after` and at most at `due`.
#[allow(clippy::too_many_arguments)]
async fn came_by(
    store: &dyn EventStore,
    tenant: &TenantId,
    missing: &crate::matcher::EventMatcher,
    correlate: &crate::expr::Expr,
    automation: &Value,
    wanted: &Value,
    after: Position,
    due: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut query = SearchQuery::new(tenant.clone());
    query.types = missing.type_patterns();
    query.after = after;
    query.limit = 500;
    loop {
        let page = store.search(&query).await?;
        for candidate in &page.events {
            if candidate.recorded_at > due {
                return Ok(false);
            }
            if !missing.matches(
                &candidate.event_type.to_string(),
                &candidate.stream.to_string(),
            ) {
                continue;
            }
            let scope = Scope::new(&event_view(candidate), &json!({}), automation);
            if correlate
                .eval(&scope, "trigger.absence.correlate")
                .is_ok_and(|v| &v == wanted)
            {
                return Ok(true);
            }
        }
        match page.last_scanned {
            Some(p) => query.after = p,
            None => return Ok(false),
        }
    }
}
