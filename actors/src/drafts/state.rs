//! A draft as its events left it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{parsed_patch, patched, DraftEvent};

/// The draft aggregate's state. `version` is 0 until it is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub title: String,
    /// The current document: a JSON object once created (null before).
    pub document: Value,
    /// The draft version: 1 after creation, one more per recorded patch.
    pub version: u64,
    /// The published versions, each with its document as published.
    pub published: BTreeMap<u64, Value>,
    pub deleted: bool,
}

impl Draft {
    /// Whether the draft was created.
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// The document of a published version.
    pub fn published(&self, version: u64) -> Option<&Value> {
        self.published.get(&version)
    }

    /// The latest published version and its document.
    pub fn latest_published(&self) -> Option<(u64, &Value)> {
        self.published.iter().next_back().map(|(v, d)| (*v, d))
    }

    pub fn apply_event(&mut self, event: &DraftEvent) {
        match event {
            DraftEvent::Created(e) => {
                *self = Draft {
                    title: e.title.clone(),
                    document: Value::Object(e.document.clone()),
                    version: 1,
                    published: BTreeMap::new(),
                    deleted: false,
                };
            }
            DraftEvent::Patched(e) => {
                // It applied when it was decided; it applies again unless the
                // stream was written by something else than `decide`.
                let result = parsed_patch(&e.patch)
                    .and_then(|patch| patched(&self.document, &patch).map_err(|e| e.to_string()));
                match result {
                    Ok(document) => {
                        if e.version != self.version + 1 {
                            tracing::warn!(
                                recorded = e.version,
                                counted = self.version + 1,
                                "A draft_patched event records another version than its place in the stream; the count wins."
                            );
                        }
                        self.document = document;
                        self.version += 1;
                    }
                    Err(reason) => tracing::error!(
                        version = e.version,
                        base_version = e.base_version,
                        %reason,
                        "A stored draft patch does not apply to the replayed document; the draft is left as it was."
                    ),
                }
            }
            DraftEvent::Renamed(e) => self.title = e.title.clone(),
            DraftEvent::Published(e) => {
                if e.version == self.version {
                    self.published.insert(e.version, self.document.clone());
                } else {
                    tracing::error!(
                        published = e.version,
                        current = self.version,
                        "A draft_published event names another version than the current one; its document is unknown, so it is not recorded as published."
                    );
                }
            }
            DraftEvent::Deleted(_) => self.deleted = true,
            DraftEvent::Restored(_) => self.deleted = false,
        }
    }
}
