//! Declarative upcasters: a version N → N+1 change of an event type written
//! as data (renames, removals, defaults and a JSON Patch) rather than code, so
//! producers can register one with a schema at runtime. Applied on read, to
//! payloads already stored; this module only checks and applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// At most this many operations in one spec, so a registered upcaster stays
/// cheap to run on every read of an old event.
pub const MAX_OPERATIONS: usize = 100;

/// A declarative upcaster from version N to N+1, applied on read.
///
/// Locations are JSON pointers (`/amount`, `/customer/name`) or, without a
/// leading `/`, one top-level key (`amount`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpcasterSpec {
    /// Renames, `from` → `to`. Applied first, all at once: every `from` is
    /// taken out before any `to` is set, so renames may swap fields. A missing
    /// `from` is skipped; an existing `to` is overwritten.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Removed keys, applied second; missing ones are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Values set where absent, applied third; missing intermediate objects
    /// are created.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, Value>,
    /// JSON Patch (RFC 6902) operations, applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<json_patch::Patch>,
}

impl UpcasterSpec {
    /// Refuses an empty spec, malformed or overlapping locations, and more
    /// than [`MAX_OPERATIONS`] operations, with a reason naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err(
                "an upcaster must rename, remove, set defaults or patch something".to_owned(),
            );
        }
        let operations = self.rename.len()
            + self.remove.len()
            + self.defaults.len()
            + self.patch.as_ref().map_or(0, |p| p.len());
        if operations > MAX_OPERATIONS {
            return Err(format!(
                "an upcaster has at most {MAX_OPERATIONS} operations, this one has {operations}"
            ));
        }
        let mut taken = Vec::new();
        let mut placed = Vec::new();
        for (from, to) in &self.rename {
            let field = format!("rename[{from:?}]");
            taken.push((
                parse_location(from).map_err(|e| format!("{field}: {e}"))?,
                field.clone(),
            ));
            placed.push((
                parse_location(to).map_err(|e| format!("{field}: target {to:?}: {e}"))?,
                field,
            ));
        }
        // Taking out `/a` and then `/a/b` would depend on the order; so would
        // setting both.
        for list in [&taken, &placed] {
            for (i, (a, first)) in list.iter().enumerate() {
                if let Some((_, second)) = list[i + 1..]
                    .iter()
                    .find(|(b, _)| a.starts_with(b.as_slice()) || b.starts_with(a.as_slice()))
                {
                    return Err(format!("{first} and {second} overlap"));
                }
            }
        }
        for key in &self.remove {
            parse_location(key).map_err(|e| format!("remove[{key:?}]: {e}"))?;
        }
        for key in self.defaults.keys() {
            parse_location(key).map_err(|e| format!("defaults[{key:?}]: {e}"))?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rename.is_empty()
            && self.remove.is_empty()
            && self.defaults.is_empty()
            && self.patch.as_ref().is_none_or(|p| p.is_empty())
    }

    /// Applies it to a payload; `Err(reason)` when a patch operation fails or
    /// a value cannot be placed (its parent is not an object). Never panics,
    /// even on a spec that [`check`](Self::check) would refuse.
    pub fn apply(&self, mut payload: Value) -> Result<Value, String> {
        let mut moving = Vec::new();
        for (from, to) in &self.rename {
            let field = format!("rename[{from:?}]");
            let from_tokens = parse_location(from).map_err(|e| format!("{field}: {e}"))?;
            let to_tokens =
                parse_location(to).map_err(|e| format!("{field}: target {to:?}: {e}"))?;
            if let Some(value) = take(&mut payload, &from_tokens) {
                moving.push((field, to_tokens, value));
            }
        }
        for (field, to, value) in moving {
            place(&mut payload, &to, value, true).map_err(|e| format!("{field}: {e}"))?;
        }
        for key in &self.remove {
            let tokens = parse_location(key).map_err(|e| format!("remove[{key:?}]: {e}"))?;
            take(&mut payload, &tokens);
        }
        for (key, value) in &self.defaults {
            let field = format!("defaults[{key:?}]");
            let tokens = parse_location(key).map_err(|e| format!("{field}: {e}"))?;
            place(&mut payload, &tokens, value.clone(), false)
                .map_err(|e| format!("{field}: {e}"))?;
        }
        if let Some(patch) = &self.patch {
            // The payload is ours: a failed patch leaves nothing half-applied
            // that anyone could see, so the undo log of `patch` is not needed.
            json_patch::patch_unsafe(&mut payload, patch).map_err(|e| format!("patch: {e}"))?;
        }
        Ok(payload)
    }
}

/// The reference tokens of a location: a JSON pointer, or one top-level key.
fn parse_location(location: &str) -> Result<Vec<String>, String> {
    if location.is_empty() {
        return Err(
            "an empty location (the whole payload) cannot be renamed, removed or defaulted"
                .to_owned(),
        );
    }
    let Some(pointer) = location.strip_prefix('/') else {
        return Ok(vec![location.to_owned()]);
    };
    pointer
        .split('/')
        .map(|token| {
            let mut unescaped = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    unescaped.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => unescaped.push('~'),
                    Some('1') => unescaped.push('/'),
                    _ => {
                        return Err(format!(
                            "{location:?} is not a JSON pointer: \"~\" must be followed by 0 or 1"
                        ))
                    }
                }
            }
            Ok(unescaped)
        })
        .collect()
}

/// Removes and returns the value at `tokens`, if there is one.
fn take(payload: &mut Value, tokens: &[String]) -> Option<Value> {
    let (last, parents) = tokens.split_last()?;
    let mut parent = payload;
    for token in parents {
        parent = match parent {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => items.get_mut(array_index(token)?)?,
            _ => return None,
        };
    }
    match parent {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let index = array_index(last).filter(|i| *i < items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

/// Sets the value at `tokens`, creating missing objects on the way; unless
/// `overwrite`, an existing value is kept.
fn place(
    payload: &mut Value,
    tokens: &[String],
    value: Value,
    overwrite: bool,
) -> Result<(), String> {
    let Some((last, parents)) = tokens.split_last() else {
        return Err("no location".to_owned());
    };
    let mut parent = payload;
    let mut at = String::new();
    for token in parents {
        let Value::Object(map) = parent else {
            return Err(format!("{} is not an object", describe(&at)));
        };
        at.push('/');
        at.push_str(&token.replace('~', "~0").replace('/', "~1"));
        parent = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(map) = parent else {
        return Err(format!("{} is not an object", describe(&at)));
    };
    if overwrite || !map.contains_key(last) {
        map.insert(last.clone(), value);
    }
    Ok(())
}

fn describe(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the payload"
    } else {
        pointer
    }
}

/// An array index as RFC 6901 spells it: digits, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    let canonical =
        token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| token.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> UpcasterSpec {
        serde_json::from_value(value).expect("a spec")
    }

    #[test]
    fn renames_then_removes_then_defaults_then_patches() {
        let spec = spec(json!({
            "rename": {"amount": "total", "/meta/by": "/author/name"},
            "remove": ["/total_cents", "legacy"],
            "defaults": {"channel": "web", "/author/role": "user", "total": 0},
            "patch": [
                {"op": "test", "path": "/total", "value": 12.5},
                {"op": "add", "path": "/tags/-", "value": "migrated"}
            ]
        }));
        spec.check().unwrap();
        let old = json!({
            "amount": 12.5, "total_cents": 1250, "legacy": true,
            "meta": {"by": "ann"}, "tags": []
        });
        assert_eq!(
            spec.apply(old).unwrap(),
            json!({
                "total": 12.5, "channel": "web", "meta": {},
                "author": {"name": "ann", "role": "user"}, "tags": ["migrated"]
            })
        );
    }

    #[test]
    fn renames_happen_at_once_so_fields_can_swap() {
        let swap = spec(json!({"rename": {"a": "b", "b": "a"}}));
        assert_eq!(
            swap.apply(json!({"a": 1, "b": 2})).unwrap(),
            json!({"a": 2, "b": 1})
        );
        assert_eq!(swap.apply(json!({"a": 1})).unwrap(), json!({"b": 1}));
    }

    #[test]
    fn missing_fields_are_skipped_and_present_ones_kept() {
        let spec = spec(
            json!({"rename": {"x": "y"}, "remove": ["/nope/deeper"], "defaults": {"channel": "web"}}),
        );
        assert_eq!(
            spec.apply(json!({"channel": null})).unwrap(),
            json!({"channel": null})
        );
    }

    #[test]
    fn a_failing_patch_is_an_error_not_a_panic() {
        let spec = spec(json!({"patch": [{"op": "remove", "path": "/missing"}]}));
        let err = spec.apply(json!({"a": 1})).unwrap_err();
        assert!(err.starts_with("patch: "), "{err}");
        let test_fails = self::spec(json!({"patch": [{"op": "test", "path": "/a", "value": 2}]}));
        assert!(test_fails.apply(json!({"a": 1})).is_err());
    }

    #[test]
    fn a_default_under_a_non_object_is_an_error() {
        let spec = spec(json!({"defaults": {"/meta/source": "import"}}));
        let err = spec.apply(json!({"meta": "flat"})).unwrap_err();
        assert_eq!(err, "defaults[\"/meta/source\"]: /meta is not an object");
        assert!(spec.apply(json!(null)).is_err());
    }

    #[test]
    fn check_names_the_field_at_fault() {
        assert!(UpcasterSpec::default()
            .check()
            .unwrap_err()
            .contains("must"));
        assert!(UpcasterSpec::default().is_empty());
        assert!(spec(json!({"patch": []})).is_empty());
        let bad = spec(json!({"rename": {"a": "/b~2"}}));
        assert!(bad
            .check()
            .unwrap_err()
            .starts_with("rename[\"a\"]: target \"/b~2\""));
        assert!(bad.apply(json!({"a": 1})).is_err());
        let bad = spec(json!({"remove": [""]}));
        assert!(bad.check().unwrap_err().starts_with("remove[\"\"]"));
        let overlapping = spec(json!({"rename": {"/a": "x", "/a/b": "y"}}));
        assert_eq!(
            overlapping.check().unwrap_err(),
            "rename[\"/a\"] and rename[\"/a/b\"] overlap"
        );
        let too_many = UpcasterSpec {
            remove: (0..=MAX_OPERATIONS).map(|i| format!("k{i}")).collect(),
            ..UpcasterSpec::default()
        };
        assert!(too_many.check().unwrap_err().contains("at most 100"));
    }

    #[test]
    fn unknown_fields_are_refused_and_empty_ones_not_written() {
        assert!(serde_json::from_value::<UpcasterSpec>(json!({"renames": {}})).is_err());
        let spec = spec(json!({"defaults": {"channel": "web"}}));
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"defaults": {"channel": "web"}})
        );
    }

    #[test]
    fn pointers_unescape_and_reach_into_arrays() {
        let spec = spec(json!({"rename": {"/a~1b": "/c~0d"}, "remove": ["/list/0"]}));
        assert_eq!(
            spec.apply(json!({"a/b": 1, "list": [1, 2]})).unwrap(),
            json!({"c~d": 1, "list": [2]})
        );
    }
}
