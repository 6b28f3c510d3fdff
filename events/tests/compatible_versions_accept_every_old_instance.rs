//! What the compatibility checker accepts is really compatible: for every
//! pair of the corpus it gives the expected answer, and whenever it accepts a
//! pair (from the corpus, or made up at random) every generated instance of
//! the narrower schema passes a real validator of the wider one.

mod support;

use herald_events::compat::{accepts_all_of, check};
use herald_events::Compatibility;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};
use support::instances::instances;
use support::{corpus, for_instances_of, validator};

/// Generated instances per accepted direction of a corpus pair.
const CASES_PER_PAIR: u32 = 200;

#[test]
fn every_pair_gets_the_answer_the_corpus_expects() {
    let mut wrong = Vec::new();
    for pair in corpus() {
        let result = check(pair.mode, &pair.old, &pair.new);
        match (&result, pair.compatible) {
            (Ok(()), true) => {}
            (Err(problems), false) => {
                let expected = pair.path.as_deref().unwrap_or_else(|| {
                    panic!("{} is incompatible but names no path", pair.label())
                });
                if !problems.iter().any(|p| p.path == expected) {
                    wrong.push(format!(
                        "{}: expected a problem at {expected}, got {problems:#?}",
                        pair.label()
                    ));
                }
                // The mode `none` accepts anything.
                assert_eq!(check(Compatibility::None, &pair.old, &pair.new), Ok(()));
            }
            (_, expected) => wrong.push(format!(
                "{}: expected compatible = {expected}, got {result:#?}",
                pair.label()
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_corpus_has_the_pairs_the_end_to_end_test_reads() {
    let pairs = corpus();
    assert!(pairs.len() >= 20, "only {} pairs", pairs.len());
    let named = |name: &str| {
        pairs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pair named {name:?}"))
    };
    let v1 = &named("orders.order_placed v1").new;
    let incompatible = named("orders v1 -> v2 incompatible");
    let compatible = named("orders v1 -> v2 compatible");
    let upcast = named("orders v2 -> v3 upcaster");
    assert_eq!(&incompatible.old, v1);
    assert_eq!(&compatible.old, v1);
    assert_eq!(upcast.old, compatible.new);
    assert!(upcast.upcaster.is_some());
    for pair in &pairs {
        // Each schema is one a registry would build a validator for.
        validator(&pair.old);
        validator(&pair.new);
        if let Some(upcaster) = &pair.upcaster {
            upcaster
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", pair.label()));
        }
    }
    let twenty = pairs.iter().any(|p| {
        p.old["properties"]
            .as_object()
            .is_some_and(|props| props.len() >= 20)
    });
    assert!(twenty, "no pair of schemas with 20 properties");
}

#[test]
fn accepted_corpus_pairs_accept_every_generated_instance() {
    for pair in corpus() {
        if check(pair.mode, &pair.old, &pair.new).is_err() {
            continue;
        }
        let directions = match pair.mode {
            Compatibility::Backward => vec![(&pair.old, &pair.new)],
            Compatibility::Forward => vec![(&pair.new, &pair.old)],
            Compatibility::Full => vec![(&pair.old, &pair.new), (&pair.new, &pair.old)],
            Compatibility::None => vec![],
        };
        for (narrower, wider) in directions {
            let wider_validator = validator(wider);
            for_instances_of(narrower, CASES_PER_PAIR, |instance| {
                prop_assert!(
                    wider_validator.is_valid(instance),
                    "{:?} was accepted ({}), yet {instance} fails {wider}",
                    pair.name,
                    pair.mode
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

// Random schemas: objects with a few properties named from a small pool, so
// that mutations and extra keys meet the same names.
const NAMES: &[&str] = &["a", "b", "c", "d", "e"];

fn bound() -> impl Strategy<Value = Value> {
    select(vec![
        json!(-5),
        json!(-0.5),
        json!(0),
        json!(1),
        json!(2.5),
        json!(3),
        json!(10),
    ])
}

fn string_schema() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(0u64..3),
        proptest::option::of(1u64..8),
        proptest::option::of(proptest::sample::subsequence(
            vec!["", "x", "yy", "zzz"],
            1..4,
        )),
    )
        .prop_map(|(min, max, values)| {
            let mut schema = json!({"type": "string"});
            if let Some(min) = min {
                schema["minLength"] = json!(min);
            }
            if let Some(max) = max {
                schema["maxLength"] = json!(max);
            }
            if let Some(values) = values {
                schema["enum"] = json!(values);
            }
            schema
        })
}

fn numeric_schema(kind: &'static str) -> impl Strategy<Value = Value> {
    (
        proptest::option::of((bound(), any::<bool>())),
        proptest::option::of((bound(), any::<bool>())),
    )
        .prop_map(move |(low, high)| {
            let mut schema = json!({"type": kind});
            if let Some((value, exclusive)) = low {
                let keyword = if exclusive {
                    "exclusiveMinimum"
                } else {
                    "minimum"
                };
                schema[keyword] = value;
            }
            if let Some((value, exclusive)) = high {
                let keyword = if exclusive {
                    "exclusiveMaximum"
                } else {
                    "maximum"
                };
                schema[keyword] = value;
            }
            schema
        })
}

fn leaf_schema() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => string_schema(),
        2 => numeric_schema("integer"),
        2 => numeric_schema("number"),
        1 => Just(json!({"type": "boolean"})),
        1 => Just(json!({"type": ["string", "null"], "maxLength": 4})),
        // No type: every type is valid, with each keyword applying to its own.
        1 => (0u64..4).prop_map(|n| json!({"maxLength": n, "minimum": n})),
        1 => Just(json!({})),
        1 => Just(json!(false)),
        2 => (string_schema(), proptest::option::of(0u64..3), proptest::option::of(1u64..4))
            .prop_map(|(items, min, max)| {
                let mut schema = json!({"type": "array", "items": items});
                if let Some(min) = min {
                    schema["minItems"] = json!(min);
                }
                if let Some(max) = max {
                    schema["maxItems"] = json!(max);
                }
                schema
            }),
    ]
}

fn additional() -> impl Strategy<Value = Option<Value>> {
    select(vec![
        None,
        Some(json!(false)),
        Some(json!(true)),
        Some(json!({"type": "string", "maxLength": 3})),
        Some(json!({"type": "integer", "minimum": 0})),
    ])
}

fn object_schema(property: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    (
        proptest::collection::btree_map(select(NAMES), property, 1..4),
        proptest::sample::subsequence(NAMES, 0..3),
        additional(),
        any::<bool>(),
    )
        .prop_map(|(properties, required, additional, typed)| {
            let mut schema = json!({"properties": properties, "required": required});
            if typed {
                schema["type"] = json!("object");
            }
            if let Some(additional) = additional {
                schema["additionalProperties"] = additional;
            }
            schema
        })
}

fn random_schema() -> impl Strategy<Value = Value> {
    let property = prop_oneof![
        4 => leaf_schema(),
        1 => object_schema(leaf_schema().boxed()),
    ]
    .boxed();
    object_schema(property)
}

/// Bounds a mutation may move, add or remove.
const BOUNDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
];

/// A change to an object schema. `usize` picks one of the properties the
/// schema has (modulo their number), so that changes rarely miss.
#[derive(Debug, Clone)]
enum Mutation {
    /// Adds or replaces a property.
    Replace(&'static str, Value),
    Remove(usize),
    ToggleRequired(&'static str),
    Additional(Option<Value>),
    /// Moves one of the property's bounds by a step (removing it at 0), or
    /// adds a bound when it has none.
    Nudge(usize, usize, i64),
    /// Turns `minimum` into `exclusiveMinimum` and back (same for maximum).
    Exclusive(usize),
    Retype(usize, Option<Value>),
    /// Adds the value to the property's enum, or removes it when there.
    ToggleEnumValue(usize, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pick = || any::<usize>();
    prop_oneof![
        1 => (select(NAMES), leaf_schema()).prop_map(|(n, s)| Mutation::Replace(n, s)),
        1 => pick().prop_map(Mutation::Remove),
        2 => select(NAMES).prop_map(Mutation::ToggleRequired),
        1 => additional().prop_map(Mutation::Additional),
        5 => (pick(), pick(), -2i64..=2).prop_map(|(p, k, d)| Mutation::Nudge(p, k, d)),
        1 => pick().prop_map(Mutation::Exclusive),
        2 => (
            pick(),
            select(vec![
                None,
                Some(json!("string")),
                Some(json!("integer")),
                Some(json!("number")),
                Some(json!(["string", "null"])),
                Some(json!(["integer", "string"])),
            ]),
        )
            .prop_map(|(p, t)| Mutation::Retype(p, t)),
        2 => (pick(), select(vec![json!("x"), json!("yy"), json!(""), json!(1), json!(null)]))
            .prop_map(|(p, v)| Mutation::ToggleEnumValue(p, v)),
    ]
}

/// Applies a mutation to the object schema, or to its first nested object
/// property when `deep`.
fn mutate(schema: &mut Value, (deep, mutation): &(bool, Mutation)) {
    let target = if *deep {
        let nested = schema["properties"]
            .as_object_mut()
            .and_then(|props| props.values_mut().find(|p| p.get("properties").is_some()));
        match nested {
            Some(nested) => nested,
            None => schema,
        }
    } else {
        schema
    };
    let target = target.as_object_mut().expect("random schemas are objects");
    match mutation {
        Mutation::ToggleRequired(name) => {
            let required = target["required"].as_array_mut().expect("a required list");
            match required.iter().position(|r| r == name) {
                Some(i) => {
                    required.remove(i);
                }
                None => required.push(json!(name)),
            }
        }
        Mutation::Additional(Some(schema)) => {
            target.insert("additionalProperties".to_owned(), schema.clone());
        }
        Mutation::Additional(None) => {
            target.remove("additionalProperties");
        }
        Mutation::Replace(name, property) => {
            properties(target).insert((*name).to_owned(), property.clone());
        }
        Mutation::Remove(pick) => {
            let properties = properties(target);
            if let Some(name) = picked_name(properties, *pick) {
                properties.remove(&name);
            }
        }
        Mutation::Nudge(pick, which, delta) => {
            let Some(property) = picked_property(target, *pick) else {
                return;
            };
            let present: Vec<&str> = BOUNDS
                .iter()
                .copied()
                .filter(|k| property.contains_key(*k))
                .collect();
            let keyword = match present.len() {
                0 => BOUNDS[which % BOUNDS.len()],
                n => present[which % n],
            };
            let counted = keyword.ends_with("Length") || keyword.ends_with("Items");
            match (property.get(keyword).and_then(Value::as_f64), delta) {
                (Some(_), 0) => {
                    property.remove(keyword);
                }
                (Some(value), delta) => {
                    let moved = value + *delta as f64;
                    let moved = if counted { moved.max(0.0) } else { moved };
                    property.insert(keyword.to_owned(), number(moved));
                }
                (None, delta) => {
                    let start = if counted { delta.abs() } else { *delta };
                    property.insert(keyword.to_owned(), json!(start));
                }
            }
        }
        Mutation::Exclusive(pick) => {
            let Some(property) = picked_property(target, *pick) else {
                return;
            };
            for (a, b) in [
                ("minimum", "exclusiveMinimum"),
                ("maximum", "exclusiveMaximum"),
            ] {
                match (property.remove(a), property.remove(b)) {
                    (Some(v), None) => property.insert(b.to_owned(), v),
                    (None, Some(v)) => property.insert(a.to_owned(), v),
                    (Some(x), Some(y)) => {
                        property.insert(a.to_owned(), y);
                        property.insert(b.to_owned(), x)
                    }
                    (None, None) => None,
                };
            }
        }
        Mutation::Retype(pick, kind) => {
            let Some(property) = picked_property(target, *pick) else {
                return;
            };
            match kind {
                Some(kind) => property.insert("type".to_owned(), kind.clone()),
                None => property.remove("type"),
            };
        }
        Mutation::ToggleEnumValue(pick, value) => {
            let Some(property) = picked_property(target, *pick) else {
                return;
            };
            let values = property
                .entry("enum")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("an enum list");
            match values.iter().position(|v| v == value) {
                Some(i) => {
                    values.remove(i);
                }
                None => values.push(value.clone()),
            }
        }
    }
}

fn properties(schema: &mut Map<String, Value>) -> &mut Map<String, Value> {
    schema["properties"]
        .as_object_mut()
        .expect("random object schemas list properties")
}

fn picked_name(properties: &Map<String, Value>, pick: usize) -> Option<String> {
    let count = properties.len().max(1);
    properties.keys().nth(pick % count).cloned()
}

/// The picked property's schema, unless it is a boolean schema.
fn picked_property(
    schema: &mut Map<String, Value>,
    pick: usize,
) -> Option<&mut Map<String, Value>> {
    let properties = properties(schema);
    let name = picked_name(properties, pick)?;
    properties.get_mut(&name)?.as_object_mut()
}

fn number(value: f64) -> Value {
    if value.fract() == 0.0 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Makes a mutated schema satisfiable again wherever the instance generator
/// needs it to be: bounds in order, enums of values the rest accepts,
/// required properties that may exist. What it accepts changes, but both
/// sides of a pair are repaired before they are compared.
fn repair(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(repair);
    }
    for keyword in ["items", "additionalProperties"] {
        if let Some(inner) = map.get_mut(keyword) {
            repair(inner);
        }
    }
    for (min, max) in [("minLength", "maxLength"), ("minItems", "maxItems")] {
        if let (Some(low), Some(high)) = (
            map.get(min).and_then(Value::as_f64),
            map.get(max).and_then(Value::as_f64),
        ) {
            if low > high {
                map.remove(max);
            }
        }
    }
    if !numbers_fit(map) {
        map.remove("maximum");
        map.remove("exclusiveMaximum");
    }
    if let Some(Value::Array(values)) = map.get("enum").cloned() {
        let mut rest = map.clone();
        rest.remove("enum");
        let rest = validator(&Value::Object(rest));
        let kept: Vec<Value> = values.into_iter().filter(|v| rest.is_valid(v)).collect();
        if kept.is_empty() {
            map.remove("enum");
        } else {
            map.insert("enum".to_owned(), Value::Array(kept));
        }
    }
    let open = map.get("additionalProperties") != Some(&Value::Bool(false));
    let properties = map.get("properties").cloned().unwrap_or_else(|| json!({}));
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|name| match name.as_str().and_then(|n| properties.get(n)) {
            Some(property) => property != &Value::Bool(false),
            None => open,
        });
    }
}

/// Whether some number (an integer, when only integers are allowed) lies
/// within the bounds.
fn numbers_fit(map: &Map<String, Value>) -> bool {
    let get = |k: &str| map.get(k).and_then(Value::as_f64);
    let integers_only = map.get("type") == Some(&json!("integer"));
    let mut low = f64::NEG_INFINITY;
    let mut high = f64::INFINITY;
    if let Some(m) = get("minimum") {
        low = low.max(if integers_only { m.ceil() } else { m });
    }
    if let Some(m) = get("exclusiveMinimum") {
        low = low.max(if integers_only {
            m.floor() + 1.0
        } else {
            m + 1e-6
        });
    }
    if let Some(m) = get("maximum") {
        high = high.min(if integers_only { m.floor() } else { m });
    }
    if let Some(m) = get("exclusiveMaximum") {
        high = high.min(if integers_only {
            m.ceil() - 1.0
        } else {
            m - 1e-6
        });
    }
    low <= high
}

/// A random schema, a mutated copy, and instances of each.
fn pairs_with_instances() -> impl Strategy<Value = (Value, Value, Vec<Value>, Vec<Value>)> {
    (
        random_schema(),
        proptest::collection::vec((any::<bool>(), mutation()), 1..3),
    )
        .prop_map(|(mut a, mutations)| {
            let mut b = a.clone();
            for m in &mutations {
                mutate(&mut b, m);
            }
            repair(&mut a);
            repair(&mut b);
            (a, b)
        })
        .prop_flat_map(|(a, b)| {
            let a_instances = proptest::collection::vec(instances(&a), 10);
            let b_instances = proptest::collection::vec(instances(&b), 10);
            (Just(a), Just(b), a_instances, b_instances)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The soundness property: whatever `accepts_all_of` accepts, a real
    /// validator agrees with on every generated instance.
    #[test]
    fn what_the_checker_accepts_every_instance_passes(
        (a, b, a_instances, b_instances) in pairs_with_instances()
    ) {
        let (a_validator, b_validator) = (validator(&a), validator(&b));
        for (schema, own, generated) in [(&a, &a_validator, &a_instances), (&b, &b_validator, &b_instances)] {
            for instance in generated {
                prop_assert!(own.is_valid(instance), "the generator made {instance}, which {schema} rejects");
            }
        }
        if accepts_all_of(&b, &a).is_ok() {
            for instance in &a_instances {
                prop_assert!(b_validator.is_valid(instance), "accepted that {b} takes every instance of {a}, yet {instance} fails it");
            }
        }
        if accepts_all_of(&a, &b).is_ok() {
            for instance in &b_instances {
                prop_assert!(a_validator.is_valid(instance), "accepted that {a} takes every instance of {b}, yet {instance} fails it");
            }
        }
    }
}

/// The soundness property proves little if the checker accepts nothing but
/// identical schemas: enough different pairs must be accepted.
#[test]
fn the_checker_accepts_many_of_the_random_changes() {
    let mut runner = TestRunner::deterministic();
    let strategy = (
        random_schema(),
        proptest::collection::vec((any::<bool>(), mutation()), 1..3),
    );
    let (mut different, mut accepted) = (0, 0);
    for _ in 0..250 {
        let (mut a, mutations) = strategy
            .new_tree(&mut runner)
            .expect("a random schema")
            .current();
        let mut b = a.clone();
        for m in &mutations {
            mutate(&mut b, m);
        }
        repair(&mut a);
        repair(&mut b);
        if a == b {
            continue;
        }
        different += 1;
        if accepts_all_of(&b, &a).is_ok() || accepts_all_of(&a, &b).is_ok() {
            accepted += 1;
        }
    }
    assert!(
        accepted * 4 >= different,
        "only {accepted} of {different} changed pairs accepted in either direction"
    );
}
