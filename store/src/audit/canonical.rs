//! Canonical bytes (`docs/hash-chain.md`) straight from stored columns,
//! without decoding them into an event: the fast path of verification.
//! Decoding builds a `serde_json::Value` of the payload and validated ids
//! for every row, most of a walk's cost; a row whose link holds never needs
//! them. The payload's JSON text is canonicalised as it is read (objects'
//! members sorted by key, whitespace dropped, strings and numbers written
//! as `herald_events::chain` writes them).
//!
//! This is only ever a shortcut: when it cannot tell (a column of an
//! unexpected shape, JSON it does not take) or its bytes do not hash to the
//! stored hash, the walk decodes the row as the stores' readers do and
//! hashes that with `herald_events::chain_hash`, which decides. Its bytes
//! matching the stored hash means they are the bytes hashed at append, so
//! it can only ever confirm a link, never break one.

use std::borrow::Cow;
use std::io::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use uuid::Uuid;

/// Deepest nesting taken (serde_json's own limit); deeper is left to the
/// decoder.
const MAX_DEPTH: usize = 128;

/// An id column: a UUID, or its stored text (expected in canonical form).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Id<'a> {
    Uuid(Uuid),
    Text(&'a str),
}

/// A time column: a time, or its stored text (expected in canonical form).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Time<'a> {
    At(DateTime<Utc>),
    Text(&'a str),
}

/// The payload column: text already in canonical form (as the embedded
/// store keeps it), or any JSON text (as Postgres prints `jsonb`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    Canonical(&'a str),
    Json(&'a str),
}

/// The columns of a stored event that its canonical bytes are made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub id: Id<'a>,
    pub tenant: &'a str,
    pub domain: &'a str,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub version: i64,
    pub occurred_at: Time<'a>,
    pub recorded_at: Time<'a>,
    pub correlation_id: Id<'a>,
    pub causation_id: Id<'a>,
    pub producer: &'a str,
    pub payload: Payload<'a>,
}

/// Writes the canonical bytes of the event the columns hold, as if it stood
/// at `position`, into `out` (cleared first). False when the payload is not
/// JSON this takes; `out` is then unspecified.
pub(crate) fn write_event(c: &Columns<'_>, position: u64, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.extend_from_slice(b"{\"causation_id\":");
    write_id(out, c.causation_id);
    out.extend_from_slice(b",\"correlation_id\":");
    write_id(out, c.correlation_id);
    out.extend_from_slice(b",\"id\":");
    write_id(out, c.id);
    out.extend_from_slice(b",\"occurred_at\":");
    write_time(out, c.occurred_at);
    out.extend_from_slice(b",\"payload\":");
    match c.payload {
        Payload::Canonical(text) => out.extend_from_slice(text.as_bytes()),
        Payload::Json(text) => {
            if !write_json_text(text.as_bytes(), out) {
                return false;
            }
        }
    }
    out.extend_from_slice(b",\"position\":");
    write_u64(out, position);
    out.extend_from_slice(b",\"producer\":");
    write_str(out, c.producer);
    out.extend_from_slice(b",\"recorded_at\":");
    write_time(out, c.recorded_at);
    out.extend_from_slice(b",\"stream\":");
    // JSON escaping is per character, so `domain/id` escaped is the two
    // parts escaped around the slash.
    write_str(out, c.domain);
    out.pop();
    out.push(b'/');
    let at = out.len();
    write_str(out, c.stream_id);
    out.remove(at);
    out.extend_from_slice(b",\"stream_version\":");
    write_i64(out, c.stream_version);
    out.extend_from_slice(b",\"tenant\":");
    write_str(out, c.tenant);
    out.extend_from_slice(b",\"type\":");
    write_str(out, c.event_type);
    out.extend_from_slice(b",\"version\":");
    write_i64(out, c.version);
    out.push(b'}');
    true
}

/// Decimal digits, written directly: `write!` parses a format for every
/// number, and this runs a dozen times per event verified.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

/// `n` in exactly `width` digits, zero-padded (`n` fits).
fn write_padded(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for at in (start..start + width).rev() {
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is exactly the documented one.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_id(out: &mut Vec<u8>, id: Id<'_>) {
    out.push(b'"');
    match id {
        Id::Uuid(id) => {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        }
        Id::Text(text) => out.extend_from_slice(text.as_bytes()),
    }
    out.push(b'"');
}

fn write_time(out: &mut Vec<u8>, t: Time<'_>) {
    out.push(b'"');
    match t {
        // `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as `herald_events::chain` writes it.
        Time::At(t) if (0..=9999).contains(&t.year()) => {
            write_padded(out, t.year() as u32, 4);
            out.push(b'-');
            write_padded(out, t.month(), 2);
            out.push(b'-');
            write_padded(out, t.day(), 2);
            out.push(b'T');
            write_padded(out, t.hour(), 2);
            out.push(b':');
            write_padded(out, t.minute(), 2);
            out.push(b':');
            write_padded(out, t.second(), 2);
            out.push(b'.');
            // A leap second shows as nanosecond >= 1e9; keep it in six digits.
            write_padded(out, (t.nanosecond() % 1_000_000_000) / 1000, 6);
            out.push(b'Z');
        }
        Time::At(t) => out.extend_from_slice(herald_events::chain::canonical_time(&t).as_bytes()),
        Time::Text(text) => out.extend_from_slice(text.as_bytes()),
    }
    out.push(b'"');
}

/// The canonical JSON of a JSON text, as
/// `herald_events::chain::canonical_json` writes the value it holds, without
/// building the value; `None` for text this does not take (not JSON, or
/// nested deeper than serde_json reads).
pub fn canonical_json_text(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    write_json_text(text.as_bytes(), &mut out).then(|| String::from_utf8(out).ok())?
}

/// Appends the canonical JSON of `text` to `out`; false when it does not
/// take the text.
pub(crate) fn write_json_text(text: &[u8], out: &mut Vec<u8>) -> bool {
    let mut parser = Parser { s: text, i: 0 };
    if parser.value(out, 0).is_none() {
        return false;
    }
    parser.ws();
    parser.i == text.len()
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => self.object(out, depth + 1),
            b'[' => self.array(out, depth + 1),
            b'"' => {
                let token = self.string()?;
                write_string_token(out, token)
            }
            b't' => self.literal(out, b"true"),
            b'f' => self.literal(out, b"false"),
            b'n' => self.literal(out, b"null"),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn literal(&mut self, out: &mut Vec<u8>, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| {
            out.extend_from_slice(word);
            self.i = end;
        })
    }

    /// A string token, quotes included.
    fn string(&mut self) -> Option<Token<'a>> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            match *self.s.get(self.i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                // Raw control characters are not JSON.
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        self.i += 1;
        Some(Token {
            text: self.s.get(start..self.i)?,
            escaped,
        })
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let start = self.i;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        let token = &self.s[start..self.i];
        // Plain integers of up to 18 digits fit in an i64, and are written
        // as they are.
        if token.len() <= 18
            && token.iter().all(u8::is_ascii_digit)
            && (token == b"0" || token[0] != b'0')
        {
            out.extend_from_slice(token);
            return Some(());
        }
        let n: serde_json::Number = serde_json::from_slice(token).ok()?;
        write_number(out, &n);
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        out.push(b'[');
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out, depth)?;
            self.ws();
            match *self.s.get(self.i)? {
                b',' => {
                    self.i += 1;
                    out.push(b',');
                }
                b']' => {
                    self.i += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.extend_from_slice(b"{}");
            return Some(());
        }
        // Each member is written canonically into `members`, then they are
        // put in key order.
        let mut members = Vec::new();
        let mut keys: Vec<(Cow<'a, [u8]>, std::ops::Range<usize>)> = Vec::new();
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            let sort_key = key.decoded()?;
            let start = members.len();
            write_string_token(&mut members, key)?;
            self.expect(b':')?;
            members.push(b':');
            self.value(&mut members, depth)?;
            keys.push((sort_key, start..members.len()));
            self.ws();
            match *self.s.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        // Stable: of repeated keys the last one stays, as in a parsed map.
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(b'{');
        let mut first = true;
        for (n, (key, range)) in keys.iter().enumerate() {
            if keys.get(n + 1).is_some_and(|(next, _)| next == key) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&members[range.clone()]);
        }
        out.push(b'}');
        Some(())
    }
}

/// A string token as it appears in the text.
#[derive(Clone, Copy)]
struct Token<'a> {
    /// With its quotes.
    text: &'a [u8],
    /// Holds a backslash escape.
    escaped: bool,
}

impl<'a> Token<'a> {
    /// The string's UTF-8 bytes.
    fn decoded(self) -> Option<Cow<'a, [u8]>> {
        if self.escaped {
            let s: String = serde_json::from_slice(self.text).ok()?;
            Some(Cow::Owned(s.into_bytes()))
        } else {
            Some(Cow::Borrowed(&self.text[1..self.text.len() - 1]))
        }
    }
}

/// A string written as canonical JSON escapes it. Without escapes the token
/// is already that: nothing in it needs escaping (raw quotes, backslashes
/// and control characters cannot appear unescaped).
fn write_string_token(out: &mut Vec<u8>, token: Token<'_>) -> Option<()> {
    if token.escaped {
        let s: String = serde_json::from_slice(token.text).ok()?;
        write_str(out, &s);
    } else {
        out.extend_from_slice(token.text);
    }
    Some(())
}

/// A number as `herald_events::chain` writes it.
fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use herald_events::chain::{canonical_event_bytes, canonical_json};
    use serde_json::{json, Value};

    /// JSON text as Postgres prints `jsonb`: `", "` and `": "` separators,
    /// keys shortest first, non-ASCII as is.
    fn postgres_text(v: &Value) -> String {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| (a.0.len(), a.0).cmp(&(b.0.len(), b.0)));
                let members: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", Value::String((*k).clone()), postgres_text(v)))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(postgres_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }

    struct Dice(u64);

    impl Dice {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn random(dice: &mut Dice, depth: u32) -> Value {
        const STRINGS: &[&str] = &[
            "",
            "a",
            "b",
            "ab",
            "é",
            "日本",
            "quote\"back\\slash",
            "line\nfeed\ttab",
            "\u{1}\u{1f}",
            "/slash",
            "\u{7f}",
            "emoji 🎉",
            "Z",
            "aa",
        ];
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "1",
            "-1",
            "12.5",
            "0.1",
            "1.0",
            "-0.0",
            "1e300",
            "2.5E-3",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "123456789012345678",
            "1234567890123456789",
            "0.30000000000000004",
        ];
        match dice.next() % if depth > 3 { 5 } else { 7 } {
            0 => Value::Null,
            1 => Value::Bool(dice.next().is_multiple_of(2)),
            2 => serde_json::from_str(NUMBERS[(dice.next() % NUMBERS.len() as u64) as usize])
                .unwrap(),
            3 | 4 => Value::String(STRINGS[(dice.next() % STRINGS.len() as u64) as usize].into()),
            5 => Value::Array(
                (0..dice.next() % 4)
                    .map(|_| random(dice, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..dice.next() % 5)
                    .map(|_| {
                        let key = STRINGS[(dice.next() % STRINGS.len() as u64) as usize];
                        (key.to_owned(), random(dice, depth + 1))
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn json_text_canonicalises_as_the_chain_does() {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let value = random(&mut dice, 0);
            let want = canonical_json(&value);
            for text in [postgres_text(&value), value.to_string(), want.clone()] {
                assert_eq!(
                    canonical_json_text(&text).as_deref(),
                    Some(want.as_str()),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn escapes_repeats_and_odd_spacing_read_as_the_parsed_value() {
        for text in [
            r#"{"b":1,"a":2,"a":3}"#,
            r#" { "\u0061" : "\u00e9\ud83c\udf89" , "b\/c" : [ 1 , -0 , 1E2 ] } "#,
            r#"{"k": "\u001f"}"#,
            r#"[]"#,
            r#"{}"#,
            r#""x""#,
            r#"-12"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                canonical_json_text(text),
                Some(canonical_json(&value)),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_json_is_left_to_the_decoder() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "tru",
            "\"a",
            "\"\u{1}\"",
            "{} {}",
            "[1 2]",
            "{\"a\":1,}",
            "nul",
        ] {
            assert_eq!(canonical_json_text(text), None, "{text:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(canonical_json_text(&deep), None);
    }

    #[test]
    fn times_and_numbers_are_written_as_formatting_would() {
        for text in [
            "0001-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000001Z",
            "2026-11-30T23:59:59.999999Z",
            "9999-12-31T23:59:59.5Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            let mut out = Vec::new();
            write_time(&mut out, Time::At(t));
            let want = format!("\"{}\"", herald_events::chain::canonical_time(&t));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        for n in [0, 1, -1, 9, 10, 4096, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_i64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn columns_make_the_bytes_the_chain_hashes() {
        let id = Uuid::now_v7();
        let at = DateTime::parse_from_rfc3339("2026-11-01T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let payload = json!({"z": [1, 2.5, "é\"q"], "a": {"y": null, "b": -0.0}});
        let event = herald_events::EventEnvelope {
            id: herald_events::EventId(id),
            tenant: "acme".parse().unwrap(),
            stream: "tickets/T-\"1"
                .parse()
                .unwrap_or_else(|_| "tickets/T-1".parse().unwrap()),
            stream_version: herald_events::StreamVersion(3),
            position: herald_events::Position(42),
            event_type: "tickets.note_appended".parse().unwrap(),
            version: herald_events::SchemaVersion::V1,
            occurred_at: at,
            recorded_at: at,
            correlation_id: id,
            causation_id: Uuid::nil(),
            producer: "pro\"ducer\n".into(),
            payload: payload.clone(),
            hash: herald_events::ChainHash::GENESIS,
        };
        let want = canonical_event_bytes(&event);
        let pg = postgres_text(&payload);
        let time = herald_events::chain::canonical_time(&at);
        let (id_text, nil_text) = (id.to_string(), Uuid::nil().to_string());
        let canonical = canonical_json(&payload);
        let columns = [
            Columns {
                id: Id::Uuid(id),
                tenant: "acme",
                domain: "tickets",
                stream_id: event.stream.id(),
                stream_version: 3,
                event_type: "tickets.note_appended",
                version: 1,
                occurred_at: Time::At(at),
                recorded_at: Time::At(at),
                correlation_id: Id::Uuid(id),
                causation_id: Id::Uuid(Uuid::nil()),
                producer: "pro\"ducer\n",
                payload: Payload::Json(&pg),
            },
            Columns {
                id: Id::Text(&id_text),
                occurred_at: Time::Text(&time),
                recorded_at: Time::Text(&time),
                correlation_id: Id::Text(&id_text),
                causation_id: Id::Text(&nil_text),
                payload: Payload::Canonical(&canonical),
                tenant: "acme",
                domain: "tickets",
                stream_id: event.stream.id(),
                stream_version: 3,
                event_type: "tickets.note_appended",
                version: 1,
                producer: "pro\"ducer\n",
            },
        ];
        for c in columns {
            let mut out = Vec::new();
            assert!(write_event(&c, 42, &mut out));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want.clone()).unwrap()
            );
        }
    }
}
