//! A tenant's automations as its definitions stream folds them, and the
//! pure decisions that change them (apply, enable, disable, delete). The
//! engine folds the same stream in log order, so an automation applied at
//! position P runs on the events after P — the same rule a dry run over
//! history follows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use herald_events::automations::{
    AutomationApplied, AutomationDeleted, AutomationDisabled, AutomationEnabled, DefinitionChange,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::definition::{Compiled, Definition, InvalidDefinition};

/// One automation as it stands.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub version: u32,
    pub enabled: bool,
    /// The document as stored.
    pub definition: Value,
    /// `None` when a stored definition no longer compiles (a later Herald
    /// tightened a rule): it is then kept, shown, and not run.
    pub compiled: Option<Arc<Compiled>>,
    /// Why it does not compile, when it does not.
    pub problem: Option<String>,
    /// The event that made the current version or switched it on: the
    /// schedule trigger's timer is named after it.
    pub since_event: Uuid,
    /// When the current version was applied.
    pub applied_at: chrono::DateTime<chrono::Utc>,
    pub applied_position: u64,
    /// Triggers matched since the engine last saved its counters: counted
    /// here, without a lookup, for every automation every event matches.
    pub pending_matched: Arc<AtomicU64>,
}

impl Entry {
    /// Whether it runs.
    pub fn runs(&self) -> bool {
        self.enabled && self.compiled.is_some()
    }
}

/// A tenant's automations.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
    /// The definitions stream's version this fold is at.
    pub stream_version: u64,
    /// The running automations by the equality their condition requires.
    index: Index,
}

/// Which running automations an event can trigger, found without
/// evaluating every condition: an automation whose condition requires
/// `event.<path> == 'text'` is a candidate only for events whose string at
/// that path is that text (or that have no string there, where the
/// condition decides). Rules engines call this a discrimination index.
#[derive(Debug, Clone, Default)]
struct Index {
    /// Running automations without such an equality.
    always: Vec<String>,
    /// Per path: the automations by the text they require, and all of them.
    by_path: Vec<PathIndex>,
}

/// An event path, the automations by the text they require there, and all
/// of them.
type PathIndex = (Vec<String>, HashMap<String, Vec<String>>, Vec<String>);

impl Index {
    fn of(entries: &BTreeMap<String, Entry>) -> Self {
        let mut index = Index::default();
        for entry in entries.values().filter(|e| e.runs()) {
            let required = entry
                .compiled
                .as_ref()
                .and_then(|c| c.when.as_ref())
                .and_then(|w| w.required_equality());
            match required {
                None => index.always.push(entry.name.clone()),
                Some((path, text)) => {
                    let slot = match index.by_path.iter().position(|(p, ..)| *p == path) {
                        Some(i) => i,
                        None => {
                            index.by_path.push((path, HashMap::new(), Vec::new()));
                            index.by_path.len() - 1
                        }
                    };
                    let (_, by_text, all) = &mut index.by_path[slot];
                    by_text.entry(text).or_default().push(entry.name.clone());
                    all.push(entry.name.clone());
                }
            }
        }
        index
    }
}

/// The string an event has at `path`, as expressions see it (`None`: not a
/// string there, or a field the index does not read).
fn text_at<'a>(
    event: &'a herald_events::EventEnvelope,
    path: &[String],
) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    let (first, rest) = path.split_first()?;
    let whole = |text: Cow<'a, str>| rest.is_empty().then_some(text);
    match first.as_str() {
        "payload" => {
            let mut value = &event.payload;
            for key in rest {
                value = value.get(key)?;
            }
            value.as_str().map(Cow::Borrowed)
        }
        "type" => whole(Cow::Owned(event.event_type.to_string())),
        "domain" => whole(Cow::Borrowed(event.event_type.domain())),
        "name" => whole(Cow::Borrowed(event.event_type.name())),
        "stream" => whole(Cow::Owned(event.stream.to_string())),
        "stream_id" => whole(Cow::Borrowed(event.stream.id())),
        "tenant" => whole(Cow::Borrowed(event.tenant.as_str())),
        "producer" => whole(Cow::Borrowed(event.producer.as_str())),
        _ => None,
    }
}

/// What a fold step did to an automation, for the engine's side effects
/// (a schedule trigger's timer starts or stops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Runs from now on (new, changed, or enabled).
    Started {
        name: String,
    },
    /// Stopped running (disabled, deleted, or replaced by a version that
    /// runs again, which is `Stopped` then `Started`).
    Stopped {
        name: String,
        since_event: Uuid,
        version: u32,
    },
    Nothing,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The automations that run.
    pub fn running(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.runs())
    }

    /// The running automations whose condition can hold for `event`, in
    /// name order (the order [`Catalog::running`] gives): the others'
    /// conditions require a text the event does not have.
    pub fn candidates(&self, event: &herald_events::EventEnvelope) -> Vec<&Entry> {
        match self.candidate_names(event) {
            None => self.running().collect(),
            Some(names) => names
                .into_iter()
                .filter_map(|n| self.entries.get(n))
                .collect(),
        }
    }

    /// The names of [`Catalog::candidates`]; `None` when every running
    /// automation is one (no condition is indexed).
    pub fn candidate_names(&self, event: &herald_events::EventEnvelope) -> Option<BTreeSet<&str>> {
        if self.index.by_path.is_empty() {
            return None;
        }
        let mut names: BTreeSet<&str> = self.index.always.iter().map(String::as_str).collect();
        for (path, by_text, all) in &self.index.by_path {
            match text_at(event, path) {
                Some(text) => {
                    if let Some(found) = by_text.get(text.as_ref()) {
                        names.extend(found.iter().map(String::as_str));
                    }
                }
                None => names.extend(all.iter().map(String::as_str)),
            }
        }
        Some(names)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Folds one change (the event `event_id` at `position`, recorded at
    /// `at`); answers what started or stopped running.
    pub fn apply(
        &mut self,
        change: &DefinitionChange,
        event_id: Uuid,
        position: u64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Transition> {
        self.stream_version += 1;
        let mut transitions = Vec::new();
        let stop = |entry: &Entry| Transition::Stopped {
            name: entry.name.clone(),
            since_event: entry.since_event,
            version: entry.version,
        };
        match change {
            DefinitionChange::Applied(a) => {
                if let Some(old) = self.entries.get(&a.name).filter(|e| e.runs()) {
                    transitions.push(stop(old));
                }
                let (compiled, problem) =
                    match Definition::from_value(a.definition.clone()).and_then(|d| d.compile()) {
                        Ok(c) => (Some(Arc::new(c)), None),
                        Err(e) => (None, Some(e.to_string())),
                    };
                let entry = Entry {
                    name: a.name.clone(),
                    version: a.version,
                    enabled: a.enabled,
                    definition: a.definition.clone(),
                    compiled,
                    problem,
                    since_event: event_id,
                    applied_at: at,
                    applied_position: position,
                    // Counts not saved yet carry over to the new version.
                    pending_matched: self
                        .entries
                        .get(&a.name)
                        .map(|e| Arc::clone(&e.pending_matched))
                        .unwrap_or_default(),
                };
                if entry.runs() {
                    transitions.push(Transition::Started {
                        name: a.name.clone(),
                    });
                }
                self.entries.insert(a.name.clone(), entry);
            }
            DefinitionChange::Enabled(e) => {
                if let Some(entry) = self.entries.get_mut(&e.name) {
                    if !entry.enabled {
                        entry.enabled = true;
                        entry.since_event = event_id;
                        if entry.runs() {
                            transitions.push(Transition::Started {
                                name: e.name.clone(),
                            });
                        }
                    }
                }
            }
            DefinitionChange::Disabled(d) => {
                if let Some(entry) = self.entries.get_mut(&d.name) {
                    if entry.runs() {
                        transitions.push(stop(entry));
                    }
                    entry.enabled = false;
                }
            }
            DefinitionChange::Deleted(d) => {
                if let Some(entry) = self.entries.remove(&d.name) {
                    if entry.runs() {
                        transitions.push(stop(&entry));
                    }
                }
            }
        }
        self.index = Index::of(&self.entries);
        transitions
    }
}

/// Why a change to the automations was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Invalid(#[from] InvalidDefinition),
    #[error("no automation is named {name:?}")]
    NotFound { name: String },
    #[error("automation {name:?} is at version {current}, not {expected}")]
    VersionConflict {
        name: String,
        current: u32,
        expected: u32,
    },
    #[error("a tenant has at most {max} automations")]
    TooMany { max: usize },
}

/// The most automations of one tenant.
pub const MAX_AUTOMATIONS: usize = 1000;

/// What an accepted request does: the change to append, or nothing (the
/// same request again).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub change: Option<DefinitionChange>,
    pub name: String,
    pub version: u32,
    pub created: bool,
}

/// Saves `definition` (compiled first): a new automation at version 1, a
/// changed one at the next version, the same one again changes nothing
/// (unless `enabled` differs, which enables or disables it). With
/// `expected_version`, the current version must be that (0: must be new).
pub fn decide_apply(
    catalog: &Catalog,
    definition: &Value,
    enabled: bool,
    expected_version: Option<u32>,
) -> Result<Accepted, Refused> {
    let parsed = Definition::from_value(definition.clone())?;
    parsed.compile()?;
    // Stored in its own serialization, so equal documents compare equal.
    let stored = serde_json::to_value(&parsed).expect("a definition serializes");
    let name = parsed.name;
    let current = catalog.get(&name);
    let current_version = current.map_or(0, |e| e.version);
    if let Some(expected) = expected_version {
        if expected != current_version {
            return Err(Refused::VersionConflict {
                name,
                current: current_version,
                expected,
            });
        }
    }
    match current {
        Some(entry) if entry.definition == stored => {
            let change = match (entry.enabled, enabled) {
                (false, true) => Some(DefinitionChange::Enabled(AutomationEnabled {
                    name: name.clone(),
                    version: entry.version,
                })),
                (true, false) => Some(DefinitionChange::Disabled(AutomationDisabled {
                    name: name.clone(),
                    version: entry.version,
                    reason: None,
                })),
                _ => None,
            };
            Ok(Accepted {
                change,
                name,
                version: entry.version,
                created: false,
            })
        }
        _ => {
            if current.is_none() && catalog.len() >= MAX_AUTOMATIONS {
                return Err(Refused::TooMany {
                    max: MAX_AUTOMATIONS,
                });
            }
            let version = current_version + 1;
            Ok(Accepted {
                change: Some(DefinitionChange::Applied(AutomationApplied {
                    name: name.clone(),
                    version,
                    definition: stored,
                    enabled,
                })),
                name,
                version,
                created: current.is_none(),
            })
        }
    }
}

/// Enables or disables an automation; the same state again changes
/// nothing.
pub fn decide_switch(
    catalog: &Catalog,
    name: &str,
    enabled: bool,
    reason: Option<String>,
) -> Result<Accepted, Refused> {
    let entry = catalog.get(name).ok_or_else(|| Refused::NotFound {
        name: name.to_owned(),
    })?;
    let change = (entry.enabled != enabled).then(|| {
        if enabled {
            DefinitionChange::Enabled(AutomationEnabled {
                name: name.to_owned(),
                version: entry.version,
            })
        } else {
            DefinitionChange::Disabled(AutomationDisabled {
                name: name.to_owned(),
                version: entry.version,
                reason,
            })
        }
    });
    Ok(Accepted {
        change,
        name: name.to_owned(),
        version: entry.version,
        created: false,
    })
}

/// Deletes an automation.
pub fn decide_delete(catalog: &Catalog, name: &str) -> Result<Accepted, Refused> {
    let entry = catalog.get(name).ok_or_else(|| Refused::NotFound {
        name: name.to_owned(),
    })?;
    Ok(Accepted {
        change: Some(DefinitionChange::Deleted(AutomationDeleted {
            name: name.to_owned(),
            version: entry.version,
        })),
        name: name.to_owned(),
        version: entry.version,
        created: false,
    })
}

/// An automation as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub version: u32,
    pub enabled: bool,
    /// False when the stored definition does not compile here.
    pub runnable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub trigger: &'static str,
    pub applied_at: chrono::DateTime<chrono::Utc>,
    pub applied_position: u64,
    pub definition: Value,
}

impl Entry {
    pub fn summary(&self) -> Summary {
        let trigger = match self.definition.get("trigger").and_then(Value::as_object) {
            Some(t) if t.contains_key("event") => "event",
            Some(t) if t.contains_key("absence") => "absence",
            Some(t) if t.contains_key("schedule") => "schedule",
            _ => "unknown",
        };
        Summary {
            name: self.name.clone(),
            version: self.version,
            enabled: self.enabled,
            runnable: self.compiled.is_some(),
            problem: self.problem.clone(),
            trigger,
            applied_at: self.applied_at,
            applied_position: self.applied_position,
            definition: self.definition.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(when: &str) -> Value {
        json!({"name": "n1", "trigger": {"event": {"types": ["tickets.*"]}}, "when": when,
               "actions": [{"event": {"stream": "orders/x", "type": "orders.seen", "payload": {}}}]})
    }

    fn fold(catalog: &mut Catalog, accepted: &Accepted) -> Vec<Transition> {
        let change = accepted.change.clone().expect("a change");
        catalog.apply(
            &change,
            Uuid::now_v7(),
            catalog.stream_version + 1,
            chrono::Utc::now(),
        )
    }

    #[test]
    fn versions_count_changes_and_a_repeat_changes_nothing() {
        let mut c = Catalog::default();
        let a = decide_apply(&c, &def("true"), true, None).unwrap();
        assert!(a.created && a.version == 1);
        assert!(matches!(fold(&mut c, &a)[..], [Transition::Started { .. }]));
        let same = decide_apply(&c, &def("true"), true, None).unwrap();
        assert_eq!(same.change, None);
        let changed = decide_apply(&c, &def("false"), true, Some(1)).unwrap();
        assert_eq!(changed.version, 2);
        let t = fold(&mut c, &changed);
        assert!(matches!(
            t[..],
            [
                Transition::Stopped { version: 1, .. },
                Transition::Started { .. }
            ]
        ));
        assert!(matches!(
            decide_apply(&c, &def("1 == 1"), true, Some(1)),
            Err(Refused::VersionConflict { current: 2, .. })
        ));
        let off = decide_switch(&c, "n1", false, None).unwrap();
        assert!(matches!(
            fold(&mut c, &off)[..],
            [Transition::Stopped { .. }]
        ));
        assert!(!c.get("n1").unwrap().runs());
        assert_eq!(decide_switch(&c, "n1", false, None).unwrap().change, None);
        let gone = decide_delete(&c, "n1").unwrap();
        fold(&mut c, &gone);
        assert!(c.get("n1").is_none());
        assert!(matches!(
            decide_delete(&c, "n1"),
            Err(Refused::NotFound { .. })
        ));
    }

    #[test]
    fn candidates_skip_conditions_that_require_another_text() {
        let mut c = Catalog::default();
        for (name, when) in [
            (
                "by-alice",
                "event.payload.author == 'alice' && event.payload.n > 1",
            ),
            ("by-bob", "'bob' == event.payload.author"),
            ("any", "event.payload.n > 1"),
            ("on-type", "event.type == 'tickets.note_appended'"),
        ] {
            let mut d = def(when);
            d["name"] = json!(name);
            let a = decide_apply(&c, &d, true, None).unwrap();
            fold(&mut c, &a);
        }
        let event = |payload: Value| {
            let new = herald_events::NewEvent::new(
                "tickets.note_appended".parse().unwrap(),
                herald_events::SchemaVersion::V1,
                payload,
            );
            herald_events::EventEnvelope {
                id: new.id,
                tenant: herald_events::TenantId::default_tenant(),
                stream: "tickets/T-1".parse().unwrap(),
                stream_version: herald_events::StreamVersion(1),
                position: herald_events::Position(1),
                event_type: new.event_type,
                version: new.version,
                occurred_at: new.occurred_at,
                recorded_at: new.occurred_at,
                correlation_id: new.correlation_id,
                causation_id: new.causation_id,
                producer: new.producer,
                payload: new.payload,
                hash: herald_events::ChainHash::GENESIS,
            }
        };
        let names = |e: &herald_events::EventEnvelope| -> Vec<String> {
            c.candidates(e)
                .into_iter()
                .map(|e| e.name.clone())
                .collect()
        };
        let alice = event(json!({"author": "alice", "n": 2}));
        assert_eq!(names(&alice), ["any", "by-alice", "on-type"]);
        // No string at the path: the conditions decide.
        let none = event(json!({"n": 2}));
        assert!(
            names(&none).contains(&"by-alice".to_owned())
                && names(&none).contains(&"by-bob".to_owned())
        );
    }

    #[test]
    fn an_invalid_definition_changes_nothing() {
        let c = Catalog::default();
        assert!(matches!(
            decide_apply(&c, &def("event.payload >"), true, None),
            Err(Refused::Invalid(_))
        ));
    }
}
