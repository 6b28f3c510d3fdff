//! A proptest strategy for instances of a JSON Schema, for the keywords the
//! compatibility checker models. It leans towards the edges (bounds, empty
//! and longest strings, optional properties left out, extra properties with
//! common names), where a wrong compatibility answer shows.
//!
//! It trusts what it is given: `enum` and `const` values are taken as valid,
//! and keywords it does not model are ignored, so tests must check each
//! instance against its own schema with a real validator.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

/// Beyond this nesting, optional properties and items are left out so that
/// recursive schemas stay finite.
const DEEPEST: usize = 6;

/// Property names extra keys are drawn from besides random ones: names used
/// by the corpus and the random schemas, so that an extra key of an open
/// object often hits a property the other version constrains.
pub const COMMON_NAMES: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "id", "name", "note", "amount", "total", "customer", "currency",
    "channel", "order_id", "tags", "meta", "count",
];

/// Instances valid under `schema` (for the keywords it models).
pub fn instances(schema: &Value) -> BoxedStrategy<Value> {
    Generator { root: schema }.schema(schema, 0)
}

struct Generator<'a> {
    /// What `$ref` pointers resolve against.
    root: &'a Value,
}

impl Generator<'_> {
    fn schema(&self, schema: &Value, depth: usize) -> BoxedStrategy<Value> {
        let map = match schema {
            Value::Bool(true) => return any_value(),
            Value::Bool(false) => panic!("no instance can satisfy the schema `false`"),
            Value::Object(map) => map,
            other => panic!("{other} is not a schema"),
        };
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            return self.schema(&self.with_reference(map, reference), depth + 1);
        }
        if let Some(constant) = map.get("const") {
            return Just(constant.clone()).boxed();
        }
        if let Some(values) = map.get("enum").and_then(Value::as_array) {
            return select(values.clone()).boxed();
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            // Any type is valid: objects, strings, ... alike.
            _ => vec![
                "null", "boolean", "integer", "number", "string", "array", "object",
            ],
        };
        // A type whose bounds leave no value is left out; the schema still
        // has instances of its other types.
        let alternatives: Vec<BoxedStrategy<Value>> = types
            .into_iter()
            .filter_map(|name| match name {
                "null" => Some(Just(Value::Null).boxed()),
                "boolean" => Some(any::<bool>().prop_map(Value::Bool).boxed()),
                "integer" => integers(map),
                "number" => numbers(map),
                "string" => strings(map),
                "array" => self.arrays(map, depth),
                "object" => Some(self.objects(map, depth)),
                other => panic!("unknown type {other:?}"),
            })
            .collect();
        assert!(
            !alternatives.is_empty(),
            "no value of any type {schema} allows lies within its bounds"
        );
        proptest::strategy::Union::new(alternatives).boxed()
    }

    /// The referenced schema with the referring one's other keywords laid
    /// over it; enough for the corpus, where they do not clash.
    fn with_reference(&self, map: &Map<String, Value>, reference: &str) -> Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("$ref {reference:?} is not within the schema"));
        let target = self
            .root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference:?} points at nothing"));
        let mut merged = match target {
            Value::Object(target) => target.clone(),
            other => return other.clone(),
        };
        for (key, value) in map {
            if key != "$ref" {
                merged.insert(key.clone(), value.clone());
            }
        }
        Value::Object(merged)
    }

    fn arrays(&self, map: &Map<String, Value>, depth: usize) -> Option<BoxedStrategy<Value>> {
        let min = count(map, "minItems").unwrap_or(0);
        let most = if depth >= DEEPEST { min } else { min + 4 };
        let max = count(map, "maxItems").map_or(most, |max| max.min(most));
        if min > max {
            return None;
        }
        let item = match map.get("items") {
            Some(Value::Bool(false)) if min == 0 => {
                return Some(Just(Value::Array(Vec::new())).boxed())
            }
            Some(Value::Bool(false)) => return None,
            Some(items) => self.schema(items, depth + 1),
            None => any_value(),
        };
        Some(
            proptest::collection::vec(item, min..=max)
                .prop_map(Value::Array)
                .boxed(),
        )
    }

    fn objects(&self, map: &Map<String, Value>, depth: usize) -> BoxedStrategy<Value> {
        let empty = Map::new();
        let listed = map
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let rest = map
            .get("additionalProperties")
            .unwrap_or(&Value::Bool(true));
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
        for name in &required {
            let schema = listed.get(*name).unwrap_or(rest);
            let name = name.to_string();
            fields.push(
                self.schema(schema, depth + 1)
                    .prop_map(move |v| Some((name.clone(), v)))
                    .boxed(),
            );
        }
        if depth < DEEPEST {
            for (name, schema) in listed {
                if required.contains(&name.as_str()) || schema == &Value::Bool(false) {
                    continue;
                }
                let name = name.clone();
                fields.push(
                    proptest::option::of(self.schema(schema, depth + 1))
                        .prop_map(move |v| v.map(|v| (name.clone(), v)))
                        .boxed(),
                );
            }
        }
        let extras = if rest == &Value::Bool(false) || depth >= DEEPEST {
            Just(Vec::new()).boxed()
        } else {
            let taken: Vec<String> = listed
                .keys()
                .cloned()
                .chain(required.iter().map(|r| r.to_string()))
                .collect();
            let name = prop_oneof![
                3 => select(COMMON_NAMES).prop_map(str::to_owned),
                1 => "[a-z]{1,6}",
            ]
            .prop_filter("extra keys are not listed properties", move |k| {
                !taken.contains(k)
            });
            proptest::collection::vec((name, self.schema(rest, depth + 1)), 0..3).boxed()
        };
        (fields, extras)
            .prop_map(|(fields, extras)| {
                let mut object = Map::new();
                for (name, value) in extras.into_iter().chain(fields.into_iter().flatten()) {
                    object.insert(name, value);
                }
                Value::Object(object)
            })
            .boxed()
    }
}

fn count(map: &Map<String, Value>, keyword: &str) -> Option<usize> {
    map.get(keyword).and_then(Value::as_f64).map(|n| n as usize)
}

fn number(map: &Map<String, Value>, keyword: &str) -> Option<f64> {
    map.get(keyword).and_then(Value::as_f64)
}

fn integers(map: &Map<String, Value>) -> Option<BoxedStrategy<Value>> {
    let low = [
        number(map, "minimum").map(|m| m.ceil()),
        number(map, "exclusiveMinimum").map(|m| m.floor() + 1.0),
    ]
    .into_iter()
    .flatten()
    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    let high = [
        number(map, "maximum").map(|m| m.floor()),
        number(map, "exclusiveMaximum").map(|m| m.ceil() - 1.0),
    ]
    .into_iter()
    .flatten()
    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))));
    let (low, high) = match (low, high) {
        (Some(l), Some(h)) => (l as i64, h as i64),
        (Some(l), None) => (l as i64, l as i64 + 1000),
        (None, Some(h)) => (h as i64 - 1000, h as i64),
        (None, None) => (-1000, 1000),
    };
    if low > high {
        return None;
    }
    let strategy = prop_oneof![
        1 => Just(low),
        1 => Just(high),
        4 => low..=high,
    ];
    Some(strategy.prop_map(Value::from).boxed())
}

fn numbers(map: &Map<String, Value>) -> Option<BoxedStrategy<Value>> {
    let inclusive_low = number(map, "minimum");
    let exclusive_low = number(map, "exclusiveMinimum");
    let inclusive_high = number(map, "maximum");
    let exclusive_high = number(map, "exclusiveMaximum");
    let low = inclusive_low
        .into_iter()
        .chain(exclusive_low)
        .fold(f64::NAN, f64::max);
    let high = inclusive_high
        .into_iter()
        .chain(exclusive_high)
        .fold(f64::NAN, f64::min);
    let (low, high) = match (low.is_nan(), high.is_nan()) {
        (false, false) => (low, high),
        (false, true) => (low, low + 1000.0),
        (true, false) => (high - 1000.0, high),
        (true, true) => (-1000.0, 1000.0),
    };
    let within = move |x: &f64| {
        inclusive_low.is_none_or(|m| *x >= m)
            && exclusive_low.is_none_or(|m| *x > m)
            && inclusive_high.is_none_or(|m| *x <= m)
            && exclusive_high.is_none_or(|m| *x < m)
    };
    if low > high || !(within(&low) || within(&high) || within(&((low + high) / 2.0))) {
        return None;
    }
    // Just inside each bound, so that a bound loosened from inclusive to
    // exclusive (or tightened by a little) shows.
    let nudge = ((high - low) / 1e6).max(1e-9);
    let strategy = prop_oneof![
        1 => Just(low),
        1 => Just(high),
        1 => Just(low + nudge),
        1 => Just(high - nudge),
        2 => (low.ceil() as i64..=high.floor().max(low.ceil()) as i64).prop_map(|i| i as f64),
        4 => low..=high,
    ];
    let numbers = strategy
        .prop_filter("within the bounds", within)
        .prop_map(|x| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                Value::from(x as i64)
            } else {
                Value::Number(Number::from_f64(x).expect("a finite number"))
            }
        });
    Some(numbers.boxed())
}

fn strings(map: &Map<String, Value>) -> Option<BoxedStrategy<Value>> {
    let min = count(map, "minLength").unwrap_or(0);
    let max = count(map, "maxLength");
    let shaped: Option<String> = match map.get("format").and_then(Value::as_str) {
        Some("date-time") => Some(
            "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?Z".into(),
        ),
        Some("date") => Some("20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".into()),
        Some("uuid") => Some("[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}".into()),
        Some("email") => Some("[a-z]{1,8}@[a-z]{1,8}\\.(com|org)".into()),
        _ => map
            .get("pattern")
            .and_then(Value::as_str)
            .map(|p| p.trim_start_matches('^').trim_end_matches('$').to_owned()),
    };
    let text: BoxedStrategy<String> = match shaped {
        Some(regex) => proptest::string::string_regex(&regex)
            .unwrap_or_else(|e| panic!("cannot generate strings for {regex:?}: {e}"))
            .boxed(),
        None => {
            let longest = max.unwrap_or(min + 12).min(min + 12);
            if min > longest {
                return None;
            }
            // Characters of one to four bytes: lengths count characters.
            let character = prop_oneof![
                6 => proptest::char::range('a', 'z'),
                1 => select(vec!['É', '€', '字', '😀', ' ', '"']),
            ];
            prop_oneof![
                1 => proptest::collection::vec(character.clone(), min..=min),
                1 => proptest::collection::vec(character.clone(), longest..=longest),
                3 => proptest::collection::vec(character, min..=longest),
            ]
            .prop_map(|chars| chars.into_iter().collect())
            .boxed()
        }
    };
    let strings = text.prop_filter("within the length bounds", move |s| {
        let length = s.chars().count();
        length >= min && max.is_none_or(|max| length <= max)
    });
    Some(strings.prop_map(Value::String).boxed())
}

/// Any small JSON value.
pub fn any_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        (-1000.0f64..1000.0).prop_map(Value::from),
        "[a-z€😀]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((select(COMMON_NAMES).prop_map(str::to_owned), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
    .boxed()
}
