//! What can be asked of a draft. Over HTTP each is
//! `POST /v1/drafts/{id}/{name}` with the variant's fields as the body.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DraftCommand {
    /// `create {title, document, created_by?}`: `document` is a JSON object.
    Create {
        title: String,
        document: Map<String, Value>,
        #[serde(default)]
        created_by: Option<String>,
    },
    /// `apply_patch {patch, base_version, author?}`: `patch` is an RFC 6902
    /// JSON Patch (an array of operations), `base_version` the draft version
    /// the client edited. See the stale-version rule in [`super`].
    ApplyPatch {
        patch: json_patch::Patch,
        base_version: u64,
        #[serde(default)]
        author: Option<String>,
    },
    /// `rename {title}`
    Rename { title: String },
    /// `publish {published_by?}`: publishes the current version.
    Publish {
        #[serde(default)]
        published_by: Option<String>,
    },
    /// `delete {reason?}`
    Delete {
        #[serde(default)]
        reason: Option<String>,
    },
    /// `restore {}`
    Restore {},
}

/// The commands' names, as in URLs.
pub const NAMES: &[&str] = &[
    "create",
    "apply_patch",
    "rename",
    "publish",
    "delete",
    "restore",
];
