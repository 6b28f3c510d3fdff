//! The draft's decisions: which events each command causes in each state.

use serde_json::Value;

use crate::aggregate::{Aggregate, CommandContext, Refusal};

use super::commands::{DraftCommand, NAMES};
use super::events::{
    patched, stored_patch, DraftCreated, DraftDeleted, DraftEvent, DraftPatched, DraftPublished,
    DraftRenamed, DraftRestored,
};
use super::state::Draft;

/// At most this many characters of a failing operation are quoted in a
/// refusal.
const QUOTED_OPERATION: usize = 200;

impl Aggregate for Draft {
    const DOMAIN: &'static str = herald_events::drafts::DOMAIN;
    const STATE_VERSION: u32 = 1;
    const COMMANDS: &'static [&'static str] = NAMES;
    type Command = DraftCommand;
    type Event = DraftEvent;

    fn apply(&mut self, event: &DraftEvent) {
        self.apply_event(event);
    }

    fn decide(
        &self,
        command: DraftCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<DraftEvent>, Refusal> {
        let id = ctx.stream.id();
        if let DraftCommand::Create {
            title,
            document,
            created_by,
        } = command
        {
            if self.exists() {
                return Err(Refusal::forbidden(format!(
                    "draft {id} already exists; patch it instead"
                )));
            }
            if title.trim().is_empty() {
                return Err(Refusal::invalid("title must not be blank"));
            }
            return Ok(vec![DraftCreated {
                title,
                document,
                created_by,
            }
            .into()]);
        }
        if !self.exists() {
            return Err(Refusal::not_found(format!(
                "draft {id} has not been created"
            )));
        }
        if self.deleted {
            return match command {
                DraftCommand::Restore {} => Ok(vec![DraftRestored {}.into()]),
                _ => Err(Refusal::forbidden(format!(
                    "draft {id} is deleted: restore it first"
                ))),
            };
        }
        match command {
            DraftCommand::Create { .. } => unreachable!("handled above"),
            DraftCommand::ApplyPatch {
                patch,
                base_version,
                author,
            } => self.decide_patch(id, patch, base_version, author),
            DraftCommand::Rename { title } => {
                if title.trim().is_empty() {
                    return Err(Refusal::invalid("title must not be blank"));
                }
                if title == self.title {
                    return Ok(Vec::new());
                }
                Ok(vec![DraftRenamed { title }.into()])
            }
            DraftCommand::Publish { published_by } => {
                if self.published.contains_key(&self.version) {
                    return Ok(Vec::new());
                }
                Ok(vec![DraftPublished {
                    version: self.version,
                    published_by,
                }
                .into()])
            }
            DraftCommand::Delete { reason } => Ok(vec![DraftDeleted { reason }.into()]),
            DraftCommand::Restore {} => {
                Err(Refusal::forbidden(format!("draft {id} is not deleted")))
            }
        }
    }
}

impl Draft {
    /// The stale-version rule (see the module's documentation): version
    /// numbers only rule out versions that do not exist; whether the patch
    /// applies to the current document decides the rest.
    fn decide_patch(
        &self,
        id: &str,
        patch: json_patch::Patch,
        base_version: u64,
        author: Option<String>,
    ) -> Result<Vec<DraftEvent>, Refusal> {
        let current = self.version;
        if base_version == 0 || base_version > current {
            return Err(Refusal::invalid(format!(
                "base_version {base_version} is not a version of draft {id}: its versions are 1 to {current}"
            )));
        }
        let document = patched(&self.document, &patch).map_err(|e| {
            let operation = patch
                .get(e.operation)
                .map(|op| quoted(&op.to_string()))
                .unwrap_or_default();
            let stale = if base_version < current {
                format!(" (the patch was made against version {base_version})")
            } else {
                String::new()
            };
            Refusal::forbidden(format!(
                "patch[{}] {operation} does not apply to version {current} of draft {id}{stale}: {}",
                e.operation, e.kind
            ))
        })?;
        if !document.is_object() {
            return Err(Refusal::invalid(format!(
                "the patch would make draft {id}'s document {}; a draft's document is an object",
                kind_of(&document)
            )));
        }
        if document == self.document {
            return Ok(Vec::new());
        }
        Ok(vec![DraftPatched {
            patch: stored_patch(&patch),
            base_version,
            version: current + 1,
            author,
        }
        .into()])
    }
}

fn quoted(text: &str) -> String {
    if text.chars().count() <= QUOTED_OPERATION {
        return text.to_owned();
    }
    let cut: String = text.chars().take(QUOTED_OPERATION).collect();
    format!("{cut}…")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::aggregate::RefusalKind;
    use crate::drafts::events::{parsed_patch, PatchOperation};
    use crate::testing::given;

    fn doc() -> Map<String, Value> {
        json!({"title": "Hello", "tags": ["a", "b"], "meta": {"words": 1}})
            .as_object()
            .unwrap()
            .clone()
    }

    fn created() -> DraftEvent {
        DraftCreated {
            title: "Notes".into(),
            document: doc(),
            created_by: None,
        }
        .into()
    }

    fn create(title: &str) -> DraftCommand {
        DraftCommand::Create {
            title: title.into(),
            document: doc(),
            created_by: None,
        }
    }

    fn json_patch(ops: Value) -> json_patch::Patch {
        serde_json::from_value(ops).expect("a valid JSON Patch")
    }

    fn apply_patch(ops: Value, base_version: u64) -> DraftCommand {
        DraftCommand::ApplyPatch {
            patch: json_patch(ops),
            base_version,
            author: None,
        }
    }

    fn patched_event(ops: Value, base_version: u64, version: u64) -> DraftEvent {
        DraftPatched {
            patch: stored_patch(&json_patch(ops)),
            base_version,
            version,
            author: None,
        }
        .into()
    }

    /// Created (version 1), then patched by another client to version 2:
    /// the title became "Hi", and "draft" was tagged.
    fn at_version_2() -> Vec<DraftEvent> {
        vec![
            created(),
            patched_event(
                json!([
                    {"op": "replace", "path": "/title", "value": "Hi"},
                    {"op": "add", "path": "/tags/-", "value": "draft"},
                ]),
                1,
                2,
            ),
        ]
    }

    fn deleted() -> DraftEvent {
        DraftDeleted { reason: None }.into()
    }

    fn published(version: u64) -> DraftEvent {
        DraftPublished {
            version,
            published_by: None,
        }
        .into()
    }

    #[test]
    fn a_draft_is_created_once_with_a_title_and_an_object() {
        let state = given::<Draft>([]).when(create("Notes")).then([created()]);
        assert_eq!(state.version, 1);
        assert_eq!(state.document, Value::Object(doc()));
        assert_eq!(state.title, "Notes");
        assert!(!state.deleted && state.published.is_empty());

        given::<Draft>([created()])
            .when(create("Notes"))
            .then_refused(RefusalKind::Forbidden);
        given::<Draft>([created(), deleted()])
            .when(create("Notes"))
            .then_refused(RefusalKind::Forbidden);
        given::<Draft>([])
            .when(create("  "))
            .then_refused(RefusalKind::Invalid);
        // Over HTTP a document that is not an object does not even parse.
        let body = json!({"create": {"title": "t", "document": [1, 2]}});
        assert!(serde_json::from_value::<DraftCommand>(body).is_err());
    }

    #[test]
    fn commands_on_a_draft_never_created_are_not_found() {
        for command in [
            apply_patch(json!([{"op": "add", "path": "/a", "value": 1}]), 1),
            DraftCommand::Rename { title: "x".into() },
            DraftCommand::Publish { published_by: None },
            DraftCommand::Delete { reason: None },
            DraftCommand::Restore {},
        ] {
            given::<Draft>([])
                .when(command)
                .then_refused(RefusalKind::NotFound);
        }
    }

    #[test]
    fn a_patch_on_the_current_version_applies_as_is() {
        let ops = json!([
            {"op": "test", "path": "/meta/words", "value": 1},
            {"op": "replace", "path": "/meta/words", "value": 2},
            {"op": "add", "path": "/tags/0", "value": "first"},
            {"op": "remove", "path": "/tags/2"},
            {"op": "copy", "from": "/title", "path": "/meta/heading"},
            {"op": "move", "from": "/title", "path": "/name"},
        ]);
        let state = given::<Draft>([created()])
            .when(apply_patch(ops.clone(), 1))
            .then([patched_event(ops, 1, 2)]);
        assert_eq!(state.version, 2);
        assert_eq!(
            state.document,
            json!({"name": "Hello", "tags": ["first", "a"], "meta": {"words": 2, "heading": "Hello"}})
        );
    }

    #[test]
    fn a_stale_patch_that_applies_cleanly_to_the_current_document_is_accepted() {
        // The client saw version 1; version 2 exists. Its patch touches
        // what version 2 left alone, so it applies to version 2's document.
        let ops = json!([{"op": "replace", "path": "/meta/words", "value": 3}]);
        let state = given::<Draft>(at_version_2())
            .when(apply_patch(ops.clone(), 1))
            .then([patched_event(ops, 1, 3)]);
        assert_eq!(state.version, 3);
        assert_eq!(
            state.document,
            json!({"title": "Hi", "tags": ["a", "b", "draft"], "meta": {"words": 3}}),
            "applied to the current document, keeping the other client's change"
        );
        // Even over the other client's change: without a test operation
        // the client asked for last-writer-wins on that member.
        let ops = json!([{"op": "replace", "path": "/title", "value": "Hey"}]);
        let state = given::<Draft>(at_version_2())
            .when(apply_patch(ops.clone(), 1))
            .then([patched_event(ops, 1, 3)]);
        assert_eq!(state.document["title"], "Hey");
    }

    #[test]
    fn a_stale_patch_whose_test_fails_is_refused_naming_the_operation() {
        // Strict optimistic concurrency: the client tests what it saw.
        let why = given::<Draft>(at_version_2())
            .when(apply_patch(
                json!([
                    {"op": "test", "path": "/meta/words", "value": 1},
                    {"op": "test", "path": "/title", "value": "Hello"},
                    {"op": "replace", "path": "/title", "value": "Hey"},
                ]),
                1,
            ))
            .then_refused(RefusalKind::Forbidden);
        assert!(why.contains("patch[1]"), "{why}");
        assert!(
            why.contains(r#"{"op":"test","path":"/title","value":"Hello"}"#),
            "{why}"
        );
        assert!(
            why.contains("version 2") && why.contains("against version 1"),
            "{why}"
        );
        // The same tests pass on the current version: accepted.
        let ops = json!([
            {"op": "test", "path": "/title", "value": "Hi"},
            {"op": "replace", "path": "/title", "value": "Hey"},
        ]);
        given::<Draft>(at_version_2())
            .when(apply_patch(ops.clone(), 1))
            .then([patched_event(ops, 1, 3)]);
    }

    #[test]
    fn a_patch_that_does_not_apply_is_refused_whatever_its_base_version() {
        let missing = json!([
            {"op": "add", "path": "/meta/lines", "value": 1},
            {"op": "remove", "path": "/gone/away"},
        ]);
        for base in [1, 2] {
            let why = given::<Draft>(at_version_2())
                .when(apply_patch(missing.clone(), base))
                .then_refused(RefusalKind::Forbidden);
            assert!(
                why.contains(r#"patch[1] {"op":"remove","path":"/gone/away"} does not apply"#),
                "{why}"
            );
        }
        for ops in [
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            json!([{"op": "add", "path": "/tags/7", "value": "x"}]),
            json!([{"op": "move", "from": "/nope", "path": "/x"}]),
            json!([{"op": "copy", "from": "/tags/9", "path": "/x"}]),
            json!([{"op": "move", "from": "/meta", "path": "/meta/inner"}]),
            json!([{"op": "test", "path": "/nope", "value": null}]),
            json!([{"op": "add", "path": "/title/x", "value": 1}]),
        ] {
            given::<Draft>([created()])
                .when(apply_patch(ops, 1))
                .then_refused(RefusalKind::Forbidden);
        }
    }

    #[test]
    fn a_base_version_that_does_not_exist_is_invalid() {
        let ops = json!([{"op": "add", "path": "/a", "value": 1}]);
        let why = given::<Draft>(at_version_2())
            .when(apply_patch(ops.clone(), 3))
            .then_refused(RefusalKind::Invalid);
        assert!(why.contains("1 to 2"), "{why}");
        given::<Draft>(at_version_2())
            .when(apply_patch(ops, 0))
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn the_document_stays_an_object() {
        for ops in [
            json!([{"op": "replace", "path": "", "value": [1]}]),
            json!([{"op": "add", "path": "", "value": "text"}]),
            json!([{"op": "move", "from": "/tags", "path": ""}]),
        ] {
            given::<Draft>([created()])
                .when(apply_patch(ops, 1))
                .then_refused(RefusalKind::Invalid);
        }
        // Replacing it by another object is a patch like any other.
        let ops = json!([{"op": "copy", "from": "/meta", "path": ""}]);
        let state = given::<Draft>([created()])
            .when(apply_patch(ops.clone(), 1))
            .then([patched_event(ops, 1, 2)]);
        assert_eq!(state.document, json!({"words": 1}));
    }

    #[test]
    fn a_patch_that_changes_nothing_records_nothing() {
        for ops in [
            json!([]),
            json!([{"op": "test", "path": "/title", "value": "Hi"}]),
            json!([{"op": "replace", "path": "/meta/words", "value": 1}]),
            json!([
                {"op": "add", "path": "/x", "value": 1},
                {"op": "remove", "path": "/x"},
            ]),
        ] {
            given::<Draft>(at_version_2())
                .when(apply_patch(ops.clone(), 1))
                .then_nothing();
            given::<Draft>(at_version_2())
                .when(apply_patch(ops, 2))
                .then_nothing();
        }
    }

    #[test]
    fn publishing_freezes_the_current_version_once() {
        let state = given::<Draft>([created()])
            .when(DraftCommand::Publish {
                published_by: Some("ada".into()),
            })
            .then([DraftPublished {
                version: 1,
                published_by: Some("ada".into()),
            }
            .into()]);
        assert_eq!(state.published(1), Some(&Value::Object(doc())));
        given::<Draft>([created(), published(1)])
            .when(DraftCommand::Publish { published_by: None })
            .then_nothing();

        // Editing goes on; version 1 stays as published, version 2 is
        // published on its own.
        let mut events = vec![created(), published(1)];
        events.extend(at_version_2().into_iter().skip(1));
        let state = given::<Draft>(events.clone())
            .when(DraftCommand::Publish { published_by: None })
            .then([published(2)]);
        assert_eq!(state.published(1), Some(&Value::Object(doc())));
        assert_eq!(state.published(2), Some(&state.document));
        assert_eq!(state.latest_published().map(|(v, _)| v), Some(2));
        assert_ne!(state.published(1), state.published(2));
    }

    #[test]
    fn renaming_to_the_same_title_changes_nothing() {
        let renamed: DraftEvent = DraftRenamed {
            title: "Plans".into(),
        }
        .into();
        let state = given::<Draft>([created()])
            .when(DraftCommand::Rename {
                title: "Plans".into(),
            })
            .then([renamed.clone()]);
        assert_eq!((state.title.as_str(), state.version), ("Plans", 1));
        given::<Draft>([created(), renamed])
            .when(DraftCommand::Rename {
                title: "Plans".into(),
            })
            .then_nothing();
        given::<Draft>([created()])
            .when(DraftCommand::Rename { title: "".into() })
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn a_deleted_draft_refuses_everything_but_restore() {
        let state = given::<Draft>([created()])
            .when(DraftCommand::Delete {
                reason: Some("duplicate".into()),
            })
            .then([DraftDeleted {
                reason: Some("duplicate".into()),
            }
            .into()]);
        assert!(state.deleted);
        for command in [
            apply_patch(json!([{"op": "add", "path": "/a", "value": 1}]), 1),
            DraftCommand::Rename { title: "x".into() },
            DraftCommand::Publish { published_by: None },
            DraftCommand::Delete { reason: None },
        ] {
            let why = given::<Draft>([created(), deleted()])
                .when(command)
                .then_refused(RefusalKind::Forbidden);
            assert!(why.contains("deleted"), "{why}");
        }
        // Restored as it was.
        let before = given::<Draft>(at_version_2()).state().clone();
        let mut events = at_version_2();
        events.push(deleted());
        let state = given::<Draft>(events)
            .when(DraftCommand::Restore {})
            .then([DraftRestored {}.into()]);
        assert_eq!(state, before);
    }

    #[test]
    fn restoring_a_draft_that_is_not_deleted_is_forbidden() {
        given::<Draft>([created()])
            .when(DraftCommand::Restore {})
            .then_refused(RefusalKind::Forbidden);
        let restored: DraftEvent = DraftRestored {}.into();
        given::<Draft>([created(), deleted(), restored])
            .when(DraftCommand::Restore {})
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn a_stored_patch_that_no_longer_applies_leaves_the_state_as_it_was() {
        // Not something `decide` writes: a stream written by other means.
        let before = given::<Draft>([created()]).state().clone();
        let broken = patched_event(
            json!([{"op": "test", "path": "/title", "value": "?"}]),
            1,
            2,
        );
        let malformed: DraftEvent = DraftPatched {
            patch: vec![PatchOperation::Remove {
                path: "no-slash".into(),
            }],
            base_version: 1,
            version: 2,
            author: None,
        }
        .into();
        let state = given::<Draft>([created(), broken, malformed])
            .state()
            .clone();
        assert_eq!(state, before);
    }

    #[test]
    fn commands_parse_from_their_json_bodies_and_patches_are_stored_as_sent() {
        let body = json!({"apply_patch": {
            "patch": [
                {"op": "add", "path": "/a~1b/-", "value": {"x": null}},
                {"op": "move", "from": "/m~0n", "path": ""},
            ],
            "base_version": 4,
            "author": "grace",
        }});
        let DraftCommand::ApplyPatch {
            patch,
            base_version,
            author,
        } = serde_json::from_value(body).unwrap()
        else {
            panic!("not apply_patch");
        };
        assert_eq!((base_version, author.as_deref()), (4, Some("grace")));
        let stored = stored_patch(&patch);
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(&patch).unwrap()
        );
        assert_eq!(parsed_patch(&stored).unwrap(), patch);
        for bad in [
            json!({"apply_patch": {"patch": [{"op": "explode", "path": "/a"}], "base_version": 1}}),
            json!({"apply_patch": {"patch": [{"op": "add", "path": "a", "value": 1}], "base_version": 1}}),
            json!({"apply_patch": {"patch": {"op": "add", "path": "/a", "value": 1}, "base_version": 1}}),
            json!({"apply_patch": {"patch": []}}),
            json!({"restore": {"now": true}}),
        ] {
            assert!(
                serde_json::from_value::<DraftCommand>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::from_value::<DraftCommand>(json!({"restore": {}})).unwrap(),
            DraftCommand::Restore {}
        );
    }
}
