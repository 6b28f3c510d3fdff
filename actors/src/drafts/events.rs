//! The draft aggregate's events: one variant per `drafts.*` event type.

pub use herald_events::drafts::{
    DraftCreated, DraftDeleted, DraftPatched, DraftPublished, DraftRenamed, DraftRestored,
    PatchOperation,
};

crate::domain_events! {
    /// Everything that can happen to a draft.
    pub enum DraftEvent for herald_events::drafts::DOMAIN {
        Created(DraftCreated),
        Patched(DraftPatched),
        Renamed(DraftRenamed),
        Published(DraftPublished),
        Deleted(DraftDeleted),
        Restored(DraftRestored),
    }
}

/// The stored form of a parsed patch (the same RFC 6902 JSON).
pub fn stored_patch(patch: &json_patch::Patch) -> Vec<PatchOperation> {
    patch.iter().map(stored_operation).collect()
}

fn stored_operation(op: &json_patch::PatchOperation) -> PatchOperation {
    use json_patch::PatchOperation as Op;
    let pointer = |p: &json_patch::jsonptr::PointerBuf| p.as_str().to_owned();
    match op {
        Op::Add(o) => PatchOperation::Add {
            path: pointer(&o.path),
            value: o.value.clone(),
        },
        Op::Remove(o) => PatchOperation::Remove {
            path: pointer(&o.path),
        },
        Op::Replace(o) => PatchOperation::Replace {
            path: pointer(&o.path),
            value: o.value.clone(),
        },
        Op::Move(o) => PatchOperation::Move {
            from: pointer(&o.from),
            path: pointer(&o.path),
        },
        Op::Copy(o) => PatchOperation::Copy {
            from: pointer(&o.from),
            path: pointer(&o.path),
        },
        Op::Test(o) => PatchOperation::Test {
            path: pointer(&o.path),
            value: o.value.clone(),
        },
    }
}

/// A stored patch, parsed to be applied; fails only on a malformed JSON
/// Pointer (which the schema and the command's parsing both keep out).
pub fn parsed_patch(ops: &[PatchOperation]) -> Result<json_patch::Patch, String> {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{
        AddOperation, CopyOperation, MoveOperation, PatchOperation as Op, RemoveOperation,
        ReplaceOperation, TestOperation,
    };
    let pointer = |p: &str| PointerBuf::parse(p).map_err(|e| format!("pointer {p:?}: {e}"));
    ops.iter()
        .map(|op| {
            Ok(match op {
                PatchOperation::Add { path, value } => Op::Add(AddOperation {
                    path: pointer(path)?,
                    value: value.clone(),
                }),
                PatchOperation::Remove { path } => Op::Remove(RemoveOperation {
                    path: pointer(path)?,
                }),
                PatchOperation::Replace { path, value } => Op::Replace(ReplaceOperation {
                    path: pointer(path)?,
                    value: value.clone(),
                }),
                PatchOperation::Move { from, path } => Op::Move(MoveOperation {
                    from: pointer(from)?,
                    path: pointer(path)?,
                }),
                PatchOperation::Copy { from, path } => Op::Copy(CopyOperation {
                    from: pointer(from)?,
                    path: pointer(path)?,
                }),
                PatchOperation::Test { path, value } => Op::Test(TestOperation {
                    path: pointer(path)?,
                    value: value.clone(),
                }),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(json_patch::Patch)
}

/// The document after `patch`, or the failing operation; `document` is
/// left as it was either way.
pub fn patched(
    document: &serde_json::Value,
    patch: &[json_patch::PatchOperation],
) -> Result<serde_json::Value, json_patch::PatchError> {
    // On a copy, without the undo log `json_patch::patch` keeps: a failure
    // simply drops the copy.
    let mut copy = document.clone();
    json_patch::patch_unsafe(&mut copy, patch)?;
    Ok(copy)
}
