//! Events of the `subjects` domain, version 1: what Herald records when a
//! person's data is erased. The stream of a subject is
//! `subjects/<subject reference>`; the reference is a keyed hash, so the
//! record of an erasure names nobody. Its schema is
//! `schemas/subjects/subject_forgotten.v1.json`.
//!
//! Only Herald appends these; producers cannot publish them.

use serde::{Deserialize, Serialize};

use crate::typed::typed_events;

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "subjects";

/// Every data key of a subject was destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectForgotten {
    pub subject_ref: String,
    pub keys_destroyed: Vec<String>,
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

typed_events! {
    SubjectForgotten => "subject_forgotten",
}
