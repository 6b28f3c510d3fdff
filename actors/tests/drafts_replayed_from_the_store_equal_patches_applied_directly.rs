//! A draft rebuilt from the store is the document its patches make when
//! applied directly: random objects and random sequences of valid RFC 6902
//! patches (built against the document as it evolves: add, replace and
//! remove of existing or new members, nested objects, arrays by index and
//! `-`, move and copy between existing paths, test operations that hold),
//! some sent against an older draft version than the current one (stale but
//! clean, so accepted), some followed by a publish, are run through the real
//! runtime on the embedded store; then a fresh group (nothing in memory, no
//! snapshot) replays the stream, and its document, version and published
//! versions must equal those of `json_patch` applied directly. Once more
//! with a snapshot every 3 events: snapshot plus the events after it give
//! the same draft as the whole stream folded from the start.
//!
//! proptest's runner is synchronous, so each case runs in its own actix
//! system, on a store shared by all cases (reopened each time: a restart),
//! with a fresh stream id.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use herald_actors::aggregate::DomainEvent;
use herald_actors::drafts::{Draft, DraftCommand, DraftEvent};
use herald_actors::{ActorRuntime, Aggregate, AggregateGroup, CommandMeta, GroupConfig};
use herald_events::{Domain, EventRegistry, StreamId, StreamVersion, TenantId};
use herald_store::{EmbeddedConfig, EmbeddedStore, EventStore};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// Documents past this many nodes only shrink (so copies cannot double
/// them forever).
const MAX_NODES: usize = 150;
/// Copies of subtrees bigger than this are not made.
const MAX_COPIED_NODES: usize = 12;

/// The random choices one operation is built from, against whatever the
/// document is when its turn comes.
#[derive(Debug, Clone)]
struct OpChoice {
    kind: u8,
    at: usize,
    to: usize,
    index: usize,
    key: String,
    value: Value,
}

#[derive(Debug, Clone)]
struct StepChoice {
    ops: Vec<OpChoice>,
    /// How many versions behind the current one the client claims to be
    /// (modulo the current version).
    behind: u64,
    publish: bool,
}

#[derive(Debug, Clone)]
struct Case {
    document: Map<String, Value>,
    steps: Vec<StepChoice>,
}

fn key() -> impl Strategy<Value = String> {
    // A small alphabet, so new keys often meet existing ones; `~` and `/`
    // need escaping in pointers, and "" is a key too.
    "[ab~/ ]{0,2}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z ~/]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn op_choice() -> impl Strategy<Value = OpChoice> {
    (
        0u8..8,
        any::<usize>(),
        any::<usize>(),
        any::<usize>(),
        key(),
        json_value(),
    )
        .prop_map(|(kind, at, to, index, key, value)| OpChoice {
            kind,
            at,
            to,
            index,
            key,
            value,
        })
}

fn case(steps: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    let step = (
        prop::collection::vec(op_choice(), 1..5),
        any::<u64>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(ops, behind, publish)| StepChoice {
            ops,
            behind,
            publish,
        });
    (
        prop::collection::btree_map(key(), json_value(), 0..5),
        prop::collection::vec(step, steps),
    )
        .prop_map(|(document, steps)| Case {
            document: document.into_iter().collect(),
            steps,
        })
}

/// A JSON Pointer from unescaped tokens.
fn pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Every node of the document with its tokens, the root first.
fn nodes(doc: &Value) -> Vec<(Vec<String>, &Value)> {
    fn walk<'a>(value: &'a Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
        out.push((path.clone(), value));
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

fn size(value: &Value) -> usize {
    nodes(value).len()
}

/// Where a new value goes in `container`: a member (an existing one every
/// other time, when there is one) or an array position (an index up to
/// the length, or `-`).
fn slot(container: &Value, choice: &OpChoice) -> String {
    match container {
        Value::Object(map) if choice.index % 2 == 1 && !map.is_empty() => map
            .keys()
            .nth(choice.index / 2 % map.len())
            .expect("in range")
            .clone(),
        Value::Object(_) => choice.key.clone(),
        Value::Array(items) => match choice.index % (items.len() + 2) {
            i if i > items.len() => "-".to_owned(),
            i => i.to_string(),
        },
        _ => unreachable!("only containers take new values"),
    }
}

fn containers(doc: &Value) -> Vec<Vec<String>> {
    nodes(doc)
        .into_iter()
        .filter(|(_, v)| v.is_object() || v.is_array())
        .map(|(p, _)| p)
        .collect()
}

fn value_at<'a>(doc: &'a Value, tokens: &[String]) -> &'a Value {
    doc.pointer(&pointer(tokens))
        .expect("a node of the document")
}

/// One valid operation for `doc`, from `choice`.
fn operation(doc: &Value, choice: &OpChoice) -> Value {
    let all = nodes(doc);
    let inner: Vec<&Vec<String>> = all.iter().skip(1).map(|(p, _)| p).collect();
    let mut kind = choice.kind;
    if all.len() > MAX_NODES {
        kind = 2; // remove
    }
    if inner.is_empty() && kind != 7 {
        kind = 0; // only adds (or the whole-document test) on {}
    }
    let add = |path: Vec<String>| {
        let container = value_at(doc, &path);
        let mut path = path;
        path.push(slot(container, choice));
        json!({"op": "add", "path": pointer(&path), "value": choice.value})
    };
    match kind {
        // Adds, twice as likely as the others.
        0 | 1 => {
            let targets = containers(doc);
            add(targets[choice.at % targets.len()].clone())
        }
        2 => {
            let path = inner[choice.at % inner.len()];
            json!({"op": "remove", "path": pointer(path)})
        }
        3 => {
            let path = inner[choice.at % inner.len()];
            json!({"op": "replace", "path": pointer(path), "value": choice.value})
        }
        4 => {
            // Move: remove `from`, then add in the document that leaves,
            // never inside what moves.
            let from = inner[choice.at % inner.len()].clone();
            let mut rest = doc.clone();
            json_patch::patch(
                &mut rest,
                &serde_json::from_value::<json_patch::Patch>(
                    json!([{"op": "remove", "path": pointer(&from)}]),
                )
                .expect("a patch"),
            )
            .expect("an existing path is removed");
            let targets: Vec<Vec<String>> = containers(&rest)
                .into_iter()
                .filter(|p| !p.starts_with(&from))
                .collect();
            if targets.is_empty() {
                return json!({"op": "test", "path": pointer(&from), "value": value_at(doc, &from)});
            }
            let mut path = targets[choice.to % targets.len()].clone();
            path.push(slot(value_at(&rest, &path), choice));
            if path.starts_with(&from) && path.len() > from.len() {
                return json!({"op": "test", "path": pointer(&from), "value": value_at(doc, &from)});
            }
            json!({"op": "move", "from": pointer(&from), "path": pointer(&path)})
        }
        5 => {
            let from = inner[choice.at % inner.len()];
            if size(value_at(doc, from)) > MAX_COPIED_NODES {
                return json!({"op": "test", "path": pointer(from), "value": value_at(doc, from)});
            }
            let targets = containers(doc);
            let mut path = targets[choice.to % targets.len()].clone();
            path.push(slot(value_at(doc, &path), choice));
            json!({"op": "copy", "from": pointer(from), "path": pointer(&path)})
        }
        // Tests that hold, of any node (the whole document included).
        _ => {
            let (path, value) = &all[choice.at % all.len()];
            json!({"op": "test", "path": pointer(path), "value": value})
        }
    }
}

/// A valid patch for `doc` (each operation built against the document the
/// operations before it made), and the document it makes, applied
/// directly.
fn patch_for(doc: &Value, choices: &[OpChoice]) -> (json_patch::Patch, Value) {
    let mut working = doc.clone();
    let mut ops = Vec::new();
    for choice in choices {
        let op = operation(&working, choice);
        let one: json_patch::Patch =
            serde_json::from_value(json!([op])).expect("a valid operation");
        json_patch::patch(&mut working, &one)
            .unwrap_or_else(|e| panic!("generated {op} does not apply to {working}: {e}"));
        ops.push(op);
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("a patch");
    let mut direct = doc.clone();
    json_patch::patch(&mut direct, &patch).expect("the generated patch applies as a whole");
    assert_eq!(direct, working);
    (patch, direct)
}

/// What applying the case directly gives.
#[derive(Debug, Default)]
struct Expected {
    document: Value,
    version: u64,
    published: BTreeMap<u64, Value>,
}

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

async fn open(dir: &Path) -> Arc<dyn EventStore> {
    Arc::new(
        EmbeddedStore::open(EmbeddedConfig::in_dir(dir))
            .await
            .expect("open the embedded store"),
    )
}

fn group(
    store: &Arc<dyn EventStore>,
    runtime: &Arc<ActorRuntime>,
    snapshot_every: u64,
) -> AggregateGroup<Draft> {
    AggregateGroup::new(
        Arc::clone(store),
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(runtime),
        GroupConfig {
            snapshot_every,
            ..GroupConfig::default()
        },
    )
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn same_draft(draft: &Draft, version: u64, expected: &Expected) -> Result<(), TestCaseError> {
    prop_assert_eq!(&draft.document, &expected.document);
    prop_assert_eq!(draft.version, expected.version);
    prop_assert_eq!(&draft.published, &expected.published);
    prop_assert!(
        version >= draft.version,
        "stream {version} < draft {}",
        draft.version
    );
    Ok(())
}

/// Runs the case through a group of `store`; returns the stream's id and
/// what applying it directly gives.
async fn run_through_the_runtime(
    store: &Arc<dyn EventStore>,
    runtime: &Arc<ActorRuntime>,
    snapshot_every: u64,
    case: &Case,
) -> Result<(String, Expected), TestCaseError> {
    let id = format!("draft-{}", NEXT_STREAM.fetch_add(1, Ordering::Relaxed));
    let drafts = group(store, runtime, snapshot_every);
    let tenant = tenant();
    let run = |command: DraftCommand| {
        let (drafts, tenant, id) = (drafts.clone(), tenant.clone(), id.clone());
        async move {
            drafts
                .execute(&tenant, &id, command, CommandMeta::default())
                .await
                .map_err(|e| TestCaseError::fail(format!("{id}: {e}")))
        }
    };
    run(DraftCommand::Create {
        title: "random".into(),
        document: case.document.clone(),
        created_by: None,
    })
    .await?;
    let mut expected = Expected {
        document: Value::Object(case.document.clone()),
        version: 1,
        published: BTreeMap::new(),
    };
    for step in &case.steps {
        let (patch, document) = patch_for(&expected.document, &step.ops);
        // Stale but clean: accepted whatever version the client saw.
        let base_version = expected.version - step.behind % expected.version;
        let done = run(DraftCommand::ApplyPatch {
            patch,
            base_version,
            author: None,
        })
        .await?;
        let changed = document != expected.document;
        prop_assert_eq!(done.events.len(), usize::from(changed), "{:?}", done);
        if changed {
            expected.document = document;
            expected.version += 1;
        }
        if step.publish {
            run(DraftCommand::Publish { published_by: None }).await?;
            expected
                .published
                .entry(expected.version)
                .or_insert_with(|| expected.document.clone());
        }
    }
    // The group that wrote it holds the same draft.
    let (draft, version) = drafts
        .state(&tenant, &id)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .expect("the draft exists");
    same_draft(&draft, version, &expected)?;
    Ok((id, expected))
}

/// One case: written by one group, replayed from the store by a fresh one.
async fn replayed_equals_direct(dir: &Path, case: &Case) -> Result<(), TestCaseError> {
    let store = open(dir).await;
    let runtime = ActorRuntime::start(1);
    let result = async {
        let (id, expected) = run_through_the_runtime(&store, &runtime, 0, case).await?;
        let fresh = group(&store, &runtime, 0);
        let (draft, version) = fresh
            .state(&tenant(), &id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .expect("the draft exists");
        same_draft(&draft, version, &expected)
    }
    .await;
    runtime.stop();
    result
}

#[test]
fn drafts_replayed_from_the_store_equal_patches_applied_directly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&case(0..16), |case| {
        actix_rt::System::new().block_on(replayed_equals_direct(dir.path(), &case))
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn a_snapshot_and_the_events_after_it_give_the_same_draft() {
    let mut runner = TestRunner::deterministic();
    let case = case(24..32)
        .new_tree(&mut runner)
        .expect("a case")
        .current();
    let dir = tempfile::tempdir().expect("a temporary directory");
    actix_rt::System::new().block_on(async {
        let store = open(dir.path()).await;
        let runtime = ActorRuntime::start(1);
        let (id, expected) = run_through_the_runtime(&store, &runtime, 3, &case)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stream = StreamId::new(Domain::new("drafts").unwrap(), id.as_str()).unwrap();
        let tenant = tenant();
        let writer = group(&store, &runtime, 3);
        let (_, written) = writer.state(&tenant, &id).await.unwrap().unwrap();
        if written % 3 == 0 {
            // Leave events after the last snapshot.
            writer
                .execute(
                    &tenant,
                    &id,
                    DraftCommand::Rename {
                        title: "renamed".into(),
                    },
                    CommandMeta::default(),
                )
                .await
                .unwrap();
        }
        let snapshot = store
            .load_snapshot(&tenant, &stream)
            .await
            .unwrap()
            .expect("a snapshot every 3 events");
        let last = snapshot.stream_version.get();
        assert!(last >= 3 && last % 3 == 0, "snapshot at {last}");

        // Snapshot plus the events after it…
        let fresh = group(&store, &runtime, 3);
        let (draft, version) = fresh.state(&tenant, &id).await.unwrap().unwrap();
        assert!(version > last, "no events after the snapshot at {last}");
        same_draft(&draft, version, &expected).unwrap_or_else(|e| panic!("{e}"));

        // …equal every event folded from the start.
        let events = store
            .read_stream(&tenant, &stream, StreamVersion(1), 100_000)
            .await
            .unwrap();
        assert_eq!(events.len() as u64, version);
        let mut folded = Draft::default();
        for envelope in &events {
            folded.apply(&DraftEvent::from_envelope(envelope).unwrap());
        }
        assert_eq!(folded, draft);
        runtime.stop();
    });
}
