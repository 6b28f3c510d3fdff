//! What text and times a store can keep, decided once for both backends and
//! for every edge that takes input (HTTP, the broker ingest, websockets):
//! Postgres' `text` and `jsonb` cannot hold U+0000, so no string anywhere in
//! an event, a query or a snapshot may hold it, on either backend — what the
//! embedded store accepted Postgres would refuse, and what one backend
//! stored a read must be able to return on both. Every other Unicode scalar
//! value is kept as given (a Rust string cannot hold a lone surrogate).
//!
//! Times are kept within the years 1 to 9999: the embedded store writes
//! them as RFC 3339 text, which has four-digit years, and could not read a
//! later one back.
//!
//! Numbers are stored as Postgres' `numeric` gives them back: a whole
//! number written with an exponent (`1e18`, `1.5e17`, as serde writes doubles
//! from 10^16 up) comes back from `jsonb` as the integer it is, so such a double
//! within the 64-bit integer range is stored as that integer on both
//! backends, and an event's hash covers what a read returns. Neither keeps
//! a negative zero: `-0.0` is stored as `0.0`.

use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;

/// Most levels of arrays and objects in a payload (the payload object is
/// the first). A reader of the log meets an event's payload two or three
/// levels down (a page's `events`, a frame), and common JSON parsers stop
/// at 128 levels (serde_json does): within this limit every payload stored
/// can be read back by them.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// The one character no store can keep.
pub const UNSTORABLE_CHAR: char = '\0';

/// The years a stored time may fall in.
pub const STORABLE_YEARS: RangeInclusive<i32> = 1..=9999;

/// True when `text` can be stored as it is.
pub fn is_storable(text: &str) -> bool {
    !text.contains(UNSTORABLE_CHAR)
}

/// True when `time` falls within [`STORABLE_YEARS`].
pub fn is_storable_time(time: &DateTime<Utc>) -> bool {
    STORABLE_YEARS.contains(&time.year())
}

/// The JSON pointer of the first array or object in `value` that lies more
/// than `max` levels deep (`value` itself, when an array or object, being
/// level 1), if any.
pub fn deeper_than(value: &Value, max: usize) -> Option<String> {
    fn walk(value: &Value, level: usize, max: usize, pointer: &mut String) -> bool {
        let children: Box<dyn Iterator<Item = (String, &Value)>> = match value {
            Value::Array(items) => {
                Box::new(items.iter().enumerate().map(|(i, v)| (i.to_string(), v)))
            }
            Value::Object(map) => Box::new(
                map.iter()
                    .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)),
            ),
            _ => return false,
        };
        if level > max {
            return true;
        }
        for (token, child) in children {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&token);
            if walk(child, level + 1, max, pointer) {
                return true;
            }
            pointer.truncate(len);
        }
        false
    }
    let mut pointer = String::new();
    walk(value, 1, max, &mut pointer).then_some(pointer)
}

/// `value` with every number as a store gives it back (see the module
/// documentation); everything else as it is.
pub fn as_stored(value: &Value) -> Value {
    let mut value = value.clone();
    store_numbers(&mut value);
    value
}

fn store_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
                return;
            };
            if f == 0.0 && f.is_sign_negative() {
                // Neither backend keeps a negative zero.
                if let Some(zero) = serde_json::Number::from_f64(0.0) {
                    *n = zero;
                }
            } else if let Some(whole) = whole_number(f) {
                *n = whole;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(store_numbers),
        Value::Object(map) => map.values_mut().for_each(store_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// The integer a double written with an exponent and no fraction stands
/// for, when a 64-bit integer holds it.
fn whole_number(f: f64) -> Option<serde_json::Number> {
    // 2^63 and 2^64: exact as doubles.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    if !f.is_finite() || f.fract() != 0.0 {
        return None;
    }
    // Written without an exponent (`100.0`), numeric keeps the scale and
    // jsonb gives back a fraction: a double again. With a positive exponent
    // (`1.5e17`) the scale is 0 and it gives back an integer.
    let text = serde_json::Number::from_f64(f)?.to_string();
    if !text.contains('e') || text.contains("e-") {
        return None;
    }
    if (0.0..U64_END).contains(&f) {
        Some((f as u64).into())
    } else if (-I64_END..0.0).contains(&f) {
        Some((f as i64).into())
    } else {
        None
    }
}

/// Where a JSON value holds text no store can keep: a string value, or a
/// key of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstorable {
    /// JSON pointer (RFC 6901) to the string, or to the object whose key it
    /// is; `""` is the value itself.
    pub pointer: String,
    /// The text is one of the keys of the object at `pointer`.
    pub in_key: bool,
}

impl Unstorable {
    /// The string at `pointer`, when it holds U+0000.
    pub fn in_text(pointer: &str, text: &str) -> Option<Self> {
        (!is_storable(text)).then(|| Self {
            pointer: pointer.to_owned(),
            in_key: false,
        })
    }

    /// The same place, seen from a document that holds the value at `base`
    /// (a JSON pointer).
    pub fn within(mut self, base: &str) -> Self {
        self.pointer = format!("{base}{}", self.pointer);
        self
    }
}

impl fmt::Display for Unstorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "the value"
        } else {
            &self.pointer
        };
        if self.in_key {
            write!(f, "a key of {at} holds the character U+0000")?;
        } else {
            write!(f, "{at} holds the character U+0000")?;
        }
        f.write_str(", which Herald cannot store")
    }
}

/// The first place in `value` (depth first, keys before their values)
/// holding U+0000, if any.
pub fn find_unstorable(value: &Value) -> Option<Unstorable> {
    let mut pointer = String::new();
    find(value, &mut pointer).map(|in_key| Unstorable { pointer, in_key })
}

/// Whether `value` holds U+0000: `None` when not, else `Some(in_key)` with
/// `pointer` extended to where (else left as it was).
fn find(value: &Value, pointer: &mut String) -> Option<bool> {
    match value {
        Value::String(s) => (!is_storable(s)).then_some(false),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&i.to_string());
            let found = find(item, pointer);
            if found.is_none() {
                pointer.truncate(len);
            }
            found
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if !is_storable(key) {
                return Some(true);
            }
            let len = pointer.len();
            pointer.push('/');
            // RFC 6901: `~` is written `~0` and `/` is written `~1`.
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            let found = find(item, pointer);
            if found.is_none() {
                pointer.truncate(len);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_first_string_or_key_holding_nul() {
        let at = |v: Value| find_unstorable(&v).map(|u| (u.pointer, u.in_key));
        assert_eq!(
            at(json!({"a": ["x", {"b": "y\u{0}"}]})),
            Some(("/a/1/b".into(), false))
        );
        assert_eq!(at(json!({"a": {"k\u{0}": 1}})), Some(("/a".into(), true)));
        assert_eq!(
            at(json!({"a/b~c": "\u{0}"})),
            Some(("/a~1b~0c".into(), false))
        );
        assert_eq!(at(json!("\u{0}")), Some((String::new(), false)));
        assert_eq!(at(json!({"a": ["x", 1, null, {"b": "\u{1}é😀"}]})), None);
    }

    #[test]
    fn says_where_and_what() {
        let found = find_unstorable(&json!({"k\u{0}": 1}))
            .unwrap()
            .within("/payload");
        assert_eq!(
            found.to_string(),
            "a key of /payload holds the character U+0000, which Herald cannot store"
        );
        let found = find_unstorable(&json!("\u{0}")).unwrap();
        assert!(found.to_string().starts_with("the value holds"));
    }

    #[test]
    fn doubles_written_with_an_exponent_are_stored_as_the_integers_they_are() {
        let stored = |text: &str| as_stored(&serde_json::from_str(text).unwrap());
        assert_eq!(
            stored("[1e18, -1e18, 1.5e17, 1e19]"),
            json!([
                1_000_000_000_000_000_000u64,
                -1_000_000_000_000_000_000i64,
                150_000_000_000_000_000u64,
                10_000_000_000_000_000_000u64
            ])
        );
        // Beyond 64-bit integers, fractions, and doubles written with a
        // decimal point stay doubles.
        assert_eq!(stored("-0.0").to_string(), "0.0");
        for text in ["1e20", "-1e19", "1.5", "100.0", "1e-7", "5e-324"] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(stored(text), value, "{text}");
            assert!(
                stored(text).as_f64().is_some() && stored(text).is_f64(),
                "{text}"
            );
        }
        assert_eq!(
            stored(r#"{"a": [{"b": 2e16}], "c": 7, "d": "1e18"}"#),
            json!({"a": [{"b": 20_000_000_000_000_000u64}], "c": 7, "d": "1e18"})
        );
    }

    #[test]
    fn nesting_is_measured_in_levels_of_arrays_and_objects() {
        let nested = |levels: usize| (1..levels).fold(json!([]), |v, _| json!({"a": [v]}));
        assert_eq!(deeper_than(&json!(1), 0), None);
        assert_eq!(deeper_than(&json!({}), 1), None);
        assert_eq!(deeper_than(&json!({"x": []}), 1), Some("/x".to_owned()));
        assert_eq!(deeper_than(&nested(3), 5), None);
        assert_eq!(deeper_than(&nested(3), 4), Some("/a/0/a/0".to_owned()));
    }

    #[test]
    fn times_are_kept_within_four_digit_years() {
        let year = |y: i32| {
            chrono::NaiveDate::from_ymd_opt(y, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
        };
        assert!(is_storable_time(&year(1)) && is_storable_time(&year(9999)));
        assert!(!is_storable_time(&year(0)) && !is_storable_time(&year(10000)));
    }
}
