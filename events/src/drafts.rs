//! Events of the `drafts` domain (autosaved JSON documents edited by many
//! clients with JSON Patch, RFC 6902), version 1. Their schemas are
//! `schemas/drafts/*.v1.json`.
//!
//! A draft is created with a title and a JSON object (draft version 1).
//! Each patch that changes the document is recorded with the patch itself,
//! the version the client edited (`base_version`) and the version it made
//! (`version`, one more than the one before): replaying the patches in order
//! from the created document rebuilds every version. A version may be
//! published (it stays retrievable as published), the draft renamed,
//! deleted and restored. Which patch is accepted on which version is the
//! aggregate's decision, not this module's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::typed::typed_events;

/// The domain's name, the first part of its streams and event types.
pub const DOMAIN: &str = "drafts";

/// Most operations one patch may carry.
pub const MAX_PATCH_OPERATIONS: usize = 1000;

/// One RFC 6902 operation, as stored. `path` and `from` are JSON Pointers
/// (RFC 6901): `""` is the whole document, `/a/0/b~1c` the member `b/c` of
/// the first element of the array at member `a`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum PatchOperation {
    /// Adds `value` at `path` (an object member, added or replaced; an
    /// array element inserted at an index, or appended with `-`).
    Add { path: String, value: Value },
    /// Removes the value at `path`, which must exist.
    Remove { path: String },
    /// Replaces the value at `path`, which must exist.
    Replace { path: String, value: Value },
    /// Removes the value at `from` and adds it at `path`.
    Move { from: String, path: String },
    /// Adds a copy of the value at `from` at `path`.
    Copy { from: String, path: String },
    /// Fails the whole patch unless the value at `path` equals `value`.
    Test { path: String, value: Value },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftCreated {
    pub title: String,
    /// The document at draft version 1.
    pub document: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftPatched {
    /// The operations, as the client sent them (test operations included);
    /// at most [`MAX_PATCH_OPERATIONS`], at least one.
    pub patch: Vec<PatchOperation>,
    /// The draft version the client edited, from 1.
    pub base_version: u64,
    /// The draft version this patch made, from 2.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRenamed {
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftPublished {
    /// The draft version published, from 1.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftDeleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRestored {}

typed_events! {
    DraftCreated => "draft_created",
    DraftPatched => "draft_patched",
    DraftRenamed => "draft_renamed",
    DraftPublished => "draft_published",
    DraftDeleted => "draft_deleted",
    DraftRestored => "draft_restored",
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::typed::testing::{
        assert_refused, assert_schema_refuses, assert_valid_and_round_trips, check,
        domain_schema_names, opt_text, registry, text,
    };
    use crate::typed::TypedEvent;

    fn document() -> Map<String, Value> {
        json!({"body": "Hello", "tags": ["a", "b"], "meta": {"words": 1, "draft": true, "x": null}})
            .as_object()
            .unwrap()
            .clone()
    }

    fn every_op() -> Vec<PatchOperation> {
        vec![
            PatchOperation::Test {
                path: "/body".into(),
                value: json!("Hello"),
            },
            PatchOperation::Add {
                path: "/tags/-".into(),
                value: json!({"c": [1, 2.5, null]}),
            },
            PatchOperation::Remove {
                path: "/meta/x".into(),
            },
            PatchOperation::Replace {
                path: "/meta/a~1b~0c".into(),
                value: Value::Null,
            },
            PatchOperation::Move {
                from: "/tags/0".into(),
                path: "/first".into(),
            },
            PatchOperation::Copy {
                from: "".into(),
                path: "/".into(),
            },
        ]
    }

    fn patched_payload() -> Value {
        json!({
            "patch": [{"op": "replace", "path": "/body", "value": "Hi"}],
            "base_version": 3,
            "version": 5,
        })
    }

    #[test]
    fn every_event_type_has_exactly_its_schema() {
        let mut declared: Vec<&str> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
        declared.sort_unstable();
        assert_eq!(domain_schema_names(DOMAIN), declared);
        assert!(EVENT_TYPES.iter().all(|(_, v)| *v == 1));
    }

    #[test]
    fn examples_validate_and_round_trip() {
        let r = registry();
        assert_valid_and_round_trips(
            &r,
            &DraftCreated {
                title: "Release notes".into(),
                document: document(),
                created_by: Some("ada".into()),
            },
        );
        assert_valid_and_round_trips(
            &r,
            &DraftCreated {
                title: "Empty".into(),
                document: Map::new(),
                created_by: None,
            },
        );
        assert_valid_and_round_trips(
            &r,
            &DraftPatched {
                patch: every_op(),
                base_version: 1,
                version: 2,
                author: Some("grace".into()),
            },
        );
        assert_valid_and_round_trips(&r, &DraftRenamed { title: "v2".into() });
        assert_valid_and_round_trips(
            &r,
            &DraftPublished {
                version: 1,
                published_by: None,
            },
        );
        assert_valid_and_round_trips(&r, &DraftDeleted { reason: None });
        assert_valid_and_round_trips(
            &r,
            &DraftDeleted {
                reason: Some("duplicate".into()),
            },
        );
        assert_valid_and_round_trips(&r, &DraftRestored {});
    }

    #[test]
    fn the_wire_format_is_rfc_6902() {
        let e = DraftPatched {
            patch: every_op(),
            base_version: 4,
            version: 7,
            author: None,
        };
        assert_eq!(
            e.to_payload(),
            json!({
                "patch": [
                    {"op": "test", "path": "/body", "value": "Hello"},
                    {"op": "add", "path": "/tags/-", "value": {"c": [1, 2.5, null]}},
                    {"op": "remove", "path": "/meta/x"},
                    {"op": "replace", "path": "/meta/a~1b~0c", "value": null},
                    {"op": "move", "from": "/tags/0", "path": "/first"},
                    {"op": "copy", "from": "", "path": "/"},
                ],
                "base_version": 4,
                "version": 7,
            })
        );
        assert_eq!(DraftRestored {}.to_payload(), json!({}));
    }

    #[test]
    fn payloads_outside_the_schemas_are_refused() {
        let r = registry();
        let with = |pointer: &str, value: Value| {
            let mut p = patched_payload();
            *p.pointer_mut(pointer).unwrap() = value;
            p
        };
        assert!(DraftPatched::from_payload(patched_payload()).is_ok());
        r.validate(
            &DraftPatched::event_type(),
            DraftPatched::schema_version(),
            &patched_payload(),
        )
        .unwrap();
        // Both the schema and serde refuse these.
        for bad in [
            with("/patch/0", json!({"op": "frobnicate", "path": "/a"})),
            with("/patch/0", json!({"op": "add", "path": "/a"})),
            with("/patch/0", json!({"op": "move", "path": "/a"})),
            with(
                "/patch/0",
                json!({"op": "remove", "path": "/a", "value": 1}),
            ),
            with("/patch/0", json!({"path": "/a", "value": 1})),
            with("/patch/0", json!({"op": "test", "path": 7, "value": 1})),
            with("/patch", json!({"op": "remove", "path": "/a"})),
            with("/base_version", json!(-1)),
            with("/version", json!("2")),
            json!({"patch": [], "base_version": 1}),
        ] {
            assert_refused::<DraftPatched>(&r, bad);
        }
        // The schema alone refuses these (serde has no ranges, lengths or
        // pointer syntax).
        for bad in [
            with("/patch", json!([])),
            with("/patch/0/path", json!("body")),
            with("/patch/0/path", json!("/a~2")),
            with("/patch/0/path", json!("/a~")),
            with(
                "/patch",
                Value::Array(vec![
                    json!({"op": "remove", "path": "/a"});
                    MAX_PATCH_OPERATIONS + 1
                ]),
            ),
            with("/base_version", json!(0)),
            with("/version", json!(1)),
        ] {
            assert_schema_refuses::<DraftPatched>(&r, &bad);
        }

        let created = json!({"title": "t", "document": {"a": 1}});
        assert!(DraftCreated::from_payload(created.clone()).is_ok());
        for document in [json!([1]), json!("text"), json!(null)] {
            let mut bad = created.clone();
            bad["document"] = document;
            assert_refused::<DraftCreated>(&r, bad);
        }
        assert_refused::<DraftCreated>(&r, json!({"document": {}}));
        assert_schema_refuses::<DraftCreated>(&r, &json!({"title": "", "document": {}}));
        assert_schema_refuses::<DraftCreated>(
            &r,
            &json!({"title": "x".repeat(201), "document": {}}),
        );
        assert_schema_refuses::<DraftRenamed>(&r, &json!({"title": ""}));
        assert_refused::<DraftRenamed>(&r, json!({}));
        assert_schema_refuses::<DraftPublished>(&r, &json!({"version": 0}));
        assert_refused::<DraftPublished>(&r, json!({"version": 1, "by": "me"}));
        assert_refused::<DraftDeleted>(&r, json!({"reason": 5}));
        assert_refused::<DraftRestored>(&r, json!({"reason": "x"}));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z~/]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// JSON Pointers, with escaped `~` and `/` in their tokens.
    fn pointer() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z0-9~/-]{0,6}", 0..4).prop_map(|tokens| {
            tokens
                .iter()
                .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                .collect()
        })
    }

    fn operation() -> impl Strategy<Value = PatchOperation> {
        prop_oneof![
            (pointer(), json_value()).prop_map(|(path, value)| PatchOperation::Add { path, value }),
            pointer().prop_map(|path| PatchOperation::Remove { path }),
            (pointer(), json_value())
                .prop_map(|(path, value)| PatchOperation::Replace { path, value }),
            (pointer(), pointer()).prop_map(|(from, path)| PatchOperation::Move { from, path }),
            (pointer(), pointer()).prop_map(|(from, path)| PatchOperation::Copy { from, path }),
            (pointer(), json_value())
                .prop_map(|(path, value)| PatchOperation::Test { path, value }),
        ]
    }

    proptest! {
        /// What the typed Rust events write is what their schemas accept,
        /// and it reads back as the same value.
        #[test]
        fn typed_draft_events_match_their_schemas(
            title in text(),
            document in prop::collection::btree_map("[a-z~/]{0,6}", json_value(), 0..6),
            patch in prop::collection::vec(operation(), 1..8),
            (base, ahead) in (1u64..u64::MAX / 2, 1u64..u64::MAX / 2),
            (who, reason) in (opt_text(), opt_text()),
        ) {
            let r = registry();
            check(&r, &DraftCreated {
                title: title.clone(),
                document: document.into_iter().collect(),
                created_by: who.clone(),
            })?;
            check(&r, &DraftPatched { patch, base_version: base, version: base + ahead, author: who.clone() })?;
            check(&r, &DraftRenamed { title })?;
            check(&r, &DraftPublished { version: base, published_by: who })?;
            check(&r, &DraftDeleted { reason })?;
            check(&r, &DraftRestored {})?;
        }
    }
}
