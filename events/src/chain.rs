//! The audit hash chain: each event's hash is SHA-256 over the previous
//! event's hash followed by the event's canonical bytes, so editing,
//! deleting, inserting or reordering stored events breaks the chain at the
//! first event touched.
//!
//! Canonical bytes (`docs/hash-chain.md` has the same text for auditors):
//! the compact JSON text of an object holding the envelope fields
//! `causation_id, correlation_id, id, occurred_at, payload, position,
//! producer, recorded_at, stream, stream_version, tenant, type, version`.
//! Object keys, at every depth, are sorted by their UTF-8 bytes; no
//! whitespace; strings escaped as JSON requires (`"`, `\` and control
//! characters, the latter as `\n`, `\t`, … or `\u00XX`), everything else
//! written as UTF-8; integers in decimal; other numbers in the shortest form
//! that reads back to the same IEEE-754 double, negative zero as `0.0`;
//! times as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; ids in lowercase hyphenated form.
//! The first event chains over 32 zero bytes.

use std::fmt;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::EventEnvelope;

/// A SHA-256 link of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What the first event chains over.
    pub const GENESIS: Self = Self([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let bytes = hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)?;
        Self::from_slice(&bytes)
            .ok_or_else(|| serde::de::Error::custom("a chain hash is 32 bytes (64 hex digits)"))
    }
}

/// Formats a time the way the chain and the stores write it.
pub fn canonical_time(t: &DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(27);
    write_time(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written directly: this runs for every
/// event appended, and chrono's format strings are parsed on every call.
fn write_time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        // A leap second shows as nanosecond ≥ 1e9; keep it in six digits.
        (t.nanosecond() % 1_000_000_000) / 1000
    );
}

fn write_quoted_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// Writes `value` as canonical JSON (see the module docs).
pub fn write_canonical_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorting here rather than trusting the map's order keeps the
            // bytes stable whether or not serde_json's `preserve_order` is on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_canonical_json(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `value` as a canonical JSON string.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical_json(&mut out, value);
    // Only valid UTF-8 is ever written above.
    String::from_utf8(out).unwrap_or_default()
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // Postgres' numeric has no negative zero, so -0.0 is written as 0.0 to
        // hash the same before and after a round trip through jsonb.
        let f = if f == 0.0 { 0.0 } else { f };
        let _ = write!(
            out,
            "{}",
            serde_json::Number::from_f64(f).unwrap_or(n.clone())
        );
    } else {
        let _ = write!(out, "{n}");
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping is exactly the documented one.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The canonical bytes of an envelope (everything but its own hash).
pub fn canonical_event_bytes(event: &EventEnvelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.producer.len());
    let field = |out: &mut Vec<u8>, first: bool, key: &str| {
        if !first {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
    };
    out.push(b'{');
    field(&mut out, true, "causation_id");
    write_quoted_uuid(&mut out, &event.causation_id);
    field(&mut out, false, "correlation_id");
    write_quoted_uuid(&mut out, &event.correlation_id);
    field(&mut out, false, "id");
    write_quoted_uuid(&mut out, &event.id.as_uuid());
    field(&mut out, false, "occurred_at");
    out.push(b'"');
    write_time(&mut out, &event.occurred_at);
    out.push(b'"');
    field(&mut out, false, "payload");
    write_canonical_json(&mut out, &event.payload);
    field(&mut out, false, "position");
    let _ = write!(out, "{}", event.position.get());
    field(&mut out, false, "producer");
    write_string(&mut out, &event.producer);
    field(&mut out, false, "recorded_at");
    out.push(b'"');
    write_time(&mut out, &event.recorded_at);
    out.push(b'"');
    field(&mut out, false, "stream");
    write_string(&mut out, event.stream.as_str());
    field(&mut out, false, "stream_version");
    let _ = write!(out, "{}", event.stream_version.get());
    field(&mut out, false, "tenant");
    write_string(&mut out, event.tenant.as_str());
    field(&mut out, false, "type");
    write_string(&mut out, event.event_type.as_str());
    field(&mut out, false, "version");
    let _ = write!(out, "{}", event.version.get());
    out.push(b'}');
    out
}

/// The hash of `event` chained over `previous`.
pub fn chain_hash(previous: &ChainHash, event: &EventEnvelope) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(previous.0);
    hasher.update(canonical_event_bytes(event));
    ChainHash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, 2.5, "x"], "m": null}, "A": true});
        assert_eq!(
            canonical_json(&v),
            r#"{"A":true,"a":{"m":null,"z":[1,2.5,"x"]},"b":1}"#
        );
    }

    #[test]
    fn canonical_json_writes_negative_zero_as_zero() {
        assert_eq!(canonical_json(&json!(-0.0)), "0.0");
        assert_eq!(canonical_json(&json!(-1.5)), "-1.5");
    }

    #[test]
    fn times_have_exactly_six_fraction_digits() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000007Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_time(&t), "2026-01-02T03:04:05.000007Z");
        let t = DateTime::parse_from_rfc3339("1999-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_time(&t), "1999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn canonical_json_escapes_control_characters() {
        assert_eq!(
            canonical_json(&json!("a\"b\\c\n\u{1}é")),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
    }
}
