//! Compatibility between two versions of an event type's JSON Schema (draft
//! 2020-12): the modes a type can be registered under, and the structural
//! check that decides, from the schemas alone, whether a new version may
//! follow the previous one.
//!
//! The check is sound rather than complete: it never accepts a pair when some
//! instance could break it, and it refuses, with a reason naming the keyword,
//! what it does not model. It does no I/O and never resolves references
//! outside the schema being compared.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};

/// Which instances a new version of an event type must keep accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// Every event valid under the old version is valid under the new one, so
    /// readers of the new version can read old events.
    #[default]
    Backward,
    /// Every event valid under the new version is valid under the old one, so
    /// readers still on the old version can read new events.
    Forward,
    /// Both backward and forward.
    Full,
    /// Any new version is accepted.
    None,
}

impl Compatibility {
    /// Every mode, in the order they are offered.
    pub const ALL: [Compatibility; 4] = [
        Compatibility::Backward,
        Compatibility::Forward,
        Compatibility::Full,
        Compatibility::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "backward",
            Compatibility::Forward => "forward",
            Compatibility::Full => "full",
            Compatibility::None => "none",
        }
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compatibility::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown compatibility mode {s:?}: expected one of backward, forward, full, none"
                )
            })
    }
}

/// One reason why a new version may not follow the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incompatibility {
    /// JSON pointer to the keyword at fault: into the schema whose demand is
    /// not met (the new one for backward problems, the old one for forward
    /// problems), or into the other one when what it allows cannot be
    /// analysed. `reason` names the version.
    pub path: String,
    /// A sentence a producer understands.
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Whether `new` may follow `old` under `mode`: `Backward` = every instance
/// valid under old is valid under new (readers of the new version can read
/// old events); `Forward` = every instance valid under new is valid under old;
/// `Full` = both; `None` = always Ok.
pub fn check(mode: Compatibility, old: &Value, new: &Value) -> Result<(), Vec<Incompatibility>> {
    let problems = match mode {
        Compatibility::None => Vec::new(),
        Compatibility::Backward => compare(new, old, Roles::BACKWARD),
        Compatibility::Forward => compare(old, new, Roles::FORWARD),
        Compatibility::Full => {
            let mut problems = compare(new, old, Roles::BACKWARD);
            problems.extend(compare(old, new, Roles::FORWARD));
            problems.truncate(MAX_PROBLEMS);
            problems
        }
    };
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Every instance valid under `narrower` is also valid under `wider` (decided
/// structurally). Sound: it never answers Ok when some instance of `narrower`
/// fails `wider`; it is conservative, refusing with a reason, for keywords it
/// does not model.
pub fn accepts_all_of(wider: &Value, narrower: &Value) -> Result<(), Vec<Incompatibility>> {
    let problems = compare(wider, narrower, Roles::GENERIC);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// At most this many problems are reported for one comparison.
const MAX_PROBLEMS: usize = 20;
/// Deeper nesting (of compared subschemas, or of `$ref` hops) is refused
/// rather than followed, so hostile schemas cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// At most this many subschema comparisons for one check.
const MAX_STEPS: usize = 10_000;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords that never change which instances are valid. `$anchor` and
/// `$dynamicAnchor` only name a place: references by name are refused anyway.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "examples",
    "default",
    "deprecated",
    "$comment",
    "readOnly",
    "writeOnly",
    "$anchor",
    "$dynamicAnchor",
];

/// Places that hold subschemas only for `$ref` to reach.
const DEFINITIONS: &[&str] = &["$defs", "definitions"];

/// Keywords compared by their meaning rather than by identity.
const MODELLED: &[&str] = &[
    "type",
    "required",
    "properties",
    "additionalProperties",
    "patternProperties",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "items",
    "prefixItems",
    "pattern",
    "format",
];

/// How the two sides are named in reasons.
#[derive(Debug, Clone, Copy)]
struct Roles {
    wider: &'static str,
    narrower: &'static str,
    narrower_events: &'static str,
}

impl Roles {
    const BACKWARD: Roles = Roles {
        wider: "the new version",
        narrower: "the old version",
        narrower_events: "old events",
    };
    const FORWARD: Roles = Roles {
        wider: "the old version",
        narrower: "the new version",
        narrower_events: "new events",
    };
    const GENERIC: Roles = Roles {
        wider: "the wider schema",
        narrower: "the narrower schema",
        narrower_events: "instances of the narrower schema",
    };
}

static TRUE: Value = Value::Bool(true);

fn compare(wider: &Value, narrower: &Value, roles: Roles) -> Vec<Incompatibility> {
    let mut checker = Checker {
        wider_root: wider,
        narrower_root: narrower,
        roles,
        problems: Vec::new(),
        in_progress: HashMap::new(),
        steps: 0,
    };
    checker.preflight(wider, roles.wider);
    checker.preflight(narrower, roles.narrower);
    if checker.problems.is_empty() {
        checker.subset(At::root(wider), At::root(narrower), 0, 0);
    }
    if checker.steps > MAX_STEPS {
        let reason =
            format!("cannot decide: comparing the schemas takes more than {MAX_STEPS} steps");
        checker.problems.insert(
            0,
            Incompatibility {
                path: String::new(),
                reason,
            },
        );
    }
    checker.problems.truncate(MAX_PROBLEMS);
    checker.problems
}

/// A subschema and where it sits in its root document.
#[derive(Debug, Clone)]
struct At<'a> {
    schema: &'a Value,
    loc: String,
    /// Read the schema without its `$ref`: the referenced schema is compared
    /// separately, since in 2020-12 `$ref` and its siblings all apply.
    skip_ref: bool,
}

impl<'a> At<'a> {
    fn root(schema: &'a Value) -> Self {
        At {
            schema,
            loc: String::new(),
            skip_ref: false,
        }
    }

    fn child(&self, schema: &'a Value, tokens: &[&str]) -> Self {
        let mut loc = self.loc.clone();
        for token in tokens {
            loc.push('/');
            loc.push_str(&escape_token(token));
        }
        At {
            schema,
            loc,
            skip_ref: false,
        }
    }

    fn keyword_path(&self, keyword: &str) -> String {
        format!("{}/{}", self.loc, escape_token(keyword))
    }

    fn reference(&self) -> Option<&'a Value> {
        match self.schema {
            Value::Object(map) if !self.skip_ref => map.get("$ref"),
            _ => None,
        }
    }

    /// The keywords that constrain instances, `$ref` excepted.
    fn keywords(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        let map = match self.schema {
            Value::Object(map) => Some(map),
            _ => None,
        };
        map.into_iter().flatten().filter_map(|(k, v)| {
            let constrains = !ANNOTATIONS.contains(&k.as_str())
                && !DEFINITIONS.contains(&k.as_str())
                && k != "$ref";
            constrains.then_some((k.as_str(), v))
        })
    }

    fn get(&self, keyword: &str) -> Option<&'a Value> {
        match self.schema {
            Value::Object(map) => map.get(keyword),
            _ => None,
        }
    }

    fn has_sibling_constraints(&self) -> bool {
        self.keywords().next().is_some()
    }
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Finds what a `$ref` points at within `root`; only same-document pointers
/// are followed (a registry never fetches other documents).
fn resolve<'a>(root: &'a Value, reference: &Value) -> Result<At<'a>, String> {
    let Some(reference) = reference.as_str() else {
        return Err("$ref is not a string".to_owned());
    };
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(format!(
            "cannot follow $ref {reference:?}: only references within the schema (\"#/$defs/...\") are followed"
        ));
    };
    if pointer.contains('%') || !(pointer.is_empty() || pointer.starts_with('/')) {
        return Err(format!(
            "cannot follow $ref {reference:?}: only plain JSON pointers (\"#/$defs/...\") are followed"
        ));
    }
    let tokens: Vec<String> = pointer.split('/').skip(1).map(unescape_token).collect();
    let mut target = root;
    for token in &tokens {
        target = match target {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("$ref {reference:?} points at nothing in the schema"))?;
    }
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Ok(At::root(root).child(target, &refs))
}

// Instance types as bits, so that "integer" can be a part of "number".
const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const STRING: u8 = 16;
const INTEGER: u8 = 32;
/// Numbers with a fractional part: "number" is `INTEGER | FRACTION`.
const FRACTION: u8 = 64;
const NUMBER: u8 = INTEGER | FRACTION;
const ANY: u8 = NULL | BOOLEAN | OBJECT | ARRAY | STRING | NUMBER;

fn type_bits(name: &str) -> Option<u8> {
    Some(match name {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "object" => OBJECT,
        "array" => ARRAY,
        "string" => STRING,
        "integer" => INTEGER,
        "number" => NUMBER,
        _ => return None,
    })
}

/// The types a schema's `type` keyword allows (all when absent).
fn types_of(at: &At<'_>) -> Result<u8, String> {
    match at.get("type") {
        None => Ok(ANY),
        Some(Value::String(name)) => {
            type_bits(name).ok_or_else(|| format!("unknown type {name:?}"))
        }
        Some(Value::Array(names)) => names.iter().try_fold(0, |bits, name| {
            name.as_str()
                .and_then(type_bits)
                .map(|b| bits | b)
                .ok_or_else(|| format!("unknown type {name}"))
        }),
        Some(other) => Err(format!(
            "type {other} is neither a name nor a list of names"
        )),
    }
}

fn describe_types(bits: u8) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (NULL, "null"),
        (BOOLEAN, "booleans"),
        (OBJECT, "objects"),
        (ARRAY, "arrays"),
        (STRING, "strings"),
    ] {
        if bits & bit != 0 {
            names.push(name);
        }
    }
    match bits & NUMBER {
        NUMBER => names.push("numbers"),
        INTEGER => names.push("integers"),
        FRACTION => names.push("numbers with a fractional part"),
        _ => {}
    }
    names.join(", ")
}

fn value_type(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Object(_) => OBJECT,
        Value::Array(_) => ARRAY,
        Value::String(_) => STRING,
        Value::Number(n) if is_integer(n) => INTEGER,
        Value::Number(_) => FRACTION,
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// The instance type a keyword applies to; keywords of other types are
/// ignored by validators, so they cannot matter when those types cannot
/// occur.
fn keyword_applies_to(keyword: &str) -> u8 {
    match keyword {
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => NUMBER,
        "minLength" | "maxLength" | "pattern" | "format" | "contentEncoding"
        | "contentMediaType" | "contentSchema" => STRING,
        "items" | "prefixItems" | "minItems" | "maxItems" | "uniqueItems" | "contains"
        | "minContains" | "maxContains" | "unevaluatedItems" => ARRAY,
        "required"
        | "properties"
        | "additionalProperties"
        | "patternProperties"
        | "propertyNames"
        | "dependentRequired"
        | "dependentSchemas"
        | "dependencies"
        | "minProperties"
        | "maxProperties"
        | "unevaluatedProperties" => OBJECT,
        _ => ANY,
    }
}

/// A JSON number compared exactly, whether it was written as an integer or
/// not (validators treat `1` and `1.0` alike).
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            Num::Int(u.into())
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }

    /// The least integer not below it.
    fn ceil(self) -> Num {
        match self {
            Num::Float(f) if f.abs() < 1e30 => Num::Int(f.ceil() as i128),
            other => other,
        }
    }

    /// The least integer above it.
    fn next_integer(self) -> Num {
        match self {
            Num::Int(i) => Num::Int(i + 1),
            Num::Float(f) if f.abs() < 1e30 => Num::Int(f.floor() as i128 + 1),
            other => other,
        }
    }
}

/// Compares without rounding the integer to a float, which could make two
/// different numbers look equal above 2^53.
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= 1e30 {
        return Some(Ordering::Less);
    }
    if f <= -1e30 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => (0.0).partial_cmp(&(f - whole)),
        unequal => Some(unequal),
    }
}

/// Equality as validators see it for `enum` and `const`: numbers by value.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

/// A bound on numbers, lengths or item counts.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: Num,
    exclusive: bool,
}

impl Bound {
    fn read(value: &Value, exclusive: bool) -> Option<Bound> {
        value.as_number().map(|n| Bound {
            value: Num::of(n),
            exclusive,
        })
    }

    /// Whether every number at or beyond `self` (in direction `towards`,
    /// `Greater` for lower bounds) also satisfies `demand`.
    fn implies(self, demand: Bound, towards: Ordering) -> bool {
        match self.value.cmp(demand.value) {
            Some(o) if o == towards => true,
            Some(Ordering::Equal) => self.exclusive || !demand.exclusive,
            _ => false,
        }
    }
}

/// The tightest of a schema's bounds on one side, as `(inclusive, exclusive)`
/// keyword names; `towards` is `Greater` for lower bounds.
fn tightest(at: &At<'_>, keywords: (&str, &str), towards: Ordering) -> Option<Bound> {
    let inclusive = at.get(keywords.0).and_then(|v| Bound::read(v, false));
    let exclusive = at.get(keywords.1).and_then(|v| Bound::read(v, true));
    match (inclusive, exclusive) {
        (Some(a), Some(b)) => Some(if a.implies(b, towards) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A count keyword (`minLength`, `maxItems`, ...); validators accept `5.0`.
fn count(at: &At<'_>, keyword: &str) -> Option<u64> {
    let n = at.get(keyword)?.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })
}

fn is_false(schema: &Value) -> bool {
    matches!(schema, Value::Bool(false))
}

/// Schemas that accept everything: `true`, or only annotations.
fn is_trivially_true(schema: &Value) -> bool {
    match schema {
        Value::Bool(b) => *b,
        Value::Object(_) => {
            !At::root(schema).has_sibling_constraints() && schema.get("$ref").is_none()
        }
        _ => false,
    }
}

struct Checker<'a> {
    wider_root: &'a Value,
    narrower_root: &'a Value,
    roles: Roles,
    problems: Vec<Incompatibility>,
    /// Pairs of locations being compared further up, with the instance depth
    /// they were entered at. Meeting a pair again deeper in the instance is
    /// a recursive schema: assuming the pair holds there is sound, since
    /// instances are finite. Meeting it at the same depth is a `$ref` cycle
    /// that never descends, which is refused.
    in_progress: HashMap<(String, bool, String, bool), usize>,
    /// Comparisons made so far: schemas whose references fan out could
    /// otherwise make the check take exponential time. Beyond
    /// `MAX_STEPS` the check gives up, and refuses.
    steps: usize,
}

impl<'a> Checker<'a> {
    fn push(&mut self, path: String, reason: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Incompatibility { path, reason });
        }
    }

    fn full(&self) -> bool {
        self.problems.len() >= MAX_PROBLEMS
    }

    /// Refuses what would make pointers resolve elsewhere than in the root,
    /// or give keywords another draft's meaning.
    fn preflight(&mut self, root: &Value, name: &str) {
        if let Some(dialect) = root.get("$schema") {
            let known = dialect
                .as_str()
                .is_some_and(|d| d.trim_end_matches('#') == DRAFT_2020_12);
            if !known {
                self.push(
                    "/$schema".to_owned(),
                    format!(
                        "{name} declares $schema {dialect}; only draft 2020-12 schemas are compared"
                    ),
                );
            }
        }
        if let Some(loc) = embedded_resource(root, "", true) {
            self.push(
                loc,
                format!(
                    "{name} embeds a schema resource ($id below the root), whose references this check does not follow"
                ),
            );
        }
    }

    /// Every instance of `n` is an instance of `w`. `depth` counts descents
    /// into properties and items, `hops` every step, `$ref` included.
    fn subset(&mut self, w: At<'a>, n: At<'a>, depth: usize, hops: usize) {
        if self.full() {
            return;
        }
        self.steps += 1;
        if self.steps > MAX_STEPS {
            // Reported once the comparison ends: a problem pushed here could
            // be dropped with a failed attempt at a narrower `$ref`.
            return;
        }
        if hops > MAX_DEPTH {
            let reason =
                format!("cannot decide: the schemas nest deeper than {MAX_DEPTH} levels here");
            self.push(w.loc, reason);
            return;
        }
        let key = (w.loc.clone(), w.skip_ref, n.loc.clone(), n.skip_ref);
        match self.in_progress.get(&key) {
            Some(&entered) if entered < depth => return,
            Some(_) => {
                let reason = format!(
                    "cannot decide: $ref cycles back to {} without descending into a property or item",
                    w.loc
                );
                self.push(w.loc, reason);
                return;
            }
            None => {}
        }
        self.in_progress.insert(key.clone(), depth);
        self.subset_entered(w, n, depth, hops);
        self.in_progress.remove(&key);
    }

    fn subset_entered(&mut self, w: At<'a>, n: At<'a>, depth: usize, hops: usize) {
        if let Some(reference) = w.reference() {
            // Both the referenced schema and the siblings must hold.
            match resolve(self.wider_root, reference) {
                Ok(target) => self.subset(target, n.clone(), depth, hops + 1),
                Err(reason) => self.push(w.keyword_path("$ref"), reason),
            }
            let siblings = At {
                skip_ref: true,
                ..w
            };
            self.subset(siblings, n, depth, hops + 1);
            return;
        }
        if let Some(reference) = n.reference() {
            let target = match resolve(self.narrower_root, reference) {
                Ok(target) => target,
                Err(reason) => {
                    let reason = format!("{} (in {})", reason, self.roles.narrower);
                    self.push(n.keyword_path("$ref"), reason);
                    return;
                }
            };
            let siblings = At {
                skip_ref: true,
                ..n
            };
            if !siblings.has_sibling_constraints() {
                self.subset(w, target, depth, hops + 1);
                return;
            }
            // The narrower is the conjunction of both; either one being
            // accepted suffices. Intersecting them is not modelled.
            let before = std::mem::take(&mut self.problems);
            self.subset(w.clone(), target, depth, hops + 1);
            let through_target = std::mem::replace(&mut self.problems, before);
            if through_target.is_empty() {
                return;
            }
            let before = std::mem::take(&mut self.problems);
            self.subset(w, siblings, depth, hops + 1);
            let through_siblings = std::mem::replace(&mut self.problems, before);
            if !through_siblings.is_empty() {
                for problem in through_target {
                    self.push(problem.path, problem.reason);
                }
            }
            return;
        }
        self.subset_resolved(w, n, depth, hops);
    }

    fn subset_resolved(&mut self, w: At<'a>, n: At<'a>, depth: usize, hops: usize) {
        let roles = self.roles;
        match (w.schema, n.schema) {
            (Value::Bool(true), _) | (_, Value::Bool(false)) => return,
            (Value::Bool(false), _) => {
                let reason = format!(
                    "{} accepts no value here but {} may hold one",
                    roles.wider, roles.narrower_events
                );
                self.push(w.loc, reason);
                return;
            }
            (Value::Object(_), Value::Object(_) | Value::Bool(true)) => {}
            (Value::Object(_), _) => {
                let reason = format!("{} has a non-schema value here", roles.narrower);
                self.push(n.loc, reason);
                return;
            }
            _ => {
                let reason = format!("{} has a non-schema value here", roles.wider);
                self.push(w.loc, reason);
                return;
            }
        }
        if let Some(values) = finite_values(&n) {
            self.values_accepted(&w, &n, &values);
            return;
        }
        let (w_types, n_types) = match (types_of(&w), types_of(&n)) {
            (Ok(w_types), Ok(n_types)) => (w_types, n_types),
            (Err(reason), _) => {
                self.push(w.keyword_path("type"), reason);
                return;
            }
            (_, Err(reason)) => {
                self.push(n.keyword_path("type"), reason);
                return;
            }
        };
        let missing = n_types & !w_types;
        if missing != 0 {
            let reason = format!(
                "{} may hold {} here but {} accepts only {}",
                roles.narrower_events,
                describe_types(missing),
                roles.wider,
                describe_types(w_types)
            );
            self.push(w.keyword_path("type"), reason);
        }
        let shared = n_types & w_types;
        if shared == 0 {
            return;
        }
        for keyword in ["enum", "const"] {
            if w.get(keyword).is_some() {
                let reason = format!(
                    "{} accepts only the values it lists ({keyword}) but {} does not limit them to a list",
                    roles.wider, roles.narrower
                );
                self.push(w.keyword_path(keyword), reason);
            }
        }
        if shared & NUMBER != 0 {
            self.numbers(&w, &n, shared & NUMBER == INTEGER);
        }
        if shared & STRING != 0 {
            self.strings(&w, &n);
        }
        if shared & ARRAY != 0 {
            self.arrays(&w, &n, depth, hops);
        }
        if shared & OBJECT != 0 {
            self.objects(&w, &n, depth, hops);
        }
        self.unmodelled(&w, &n, shared);
    }

    /// `n` only allows the listed values: each must pass `w`.
    fn values_accepted(&mut self, w: &At<'a>, n: &At<'a>, values: &[Value]) {
        let roles = self.roles;
        for value in values {
            if self.full() {
                return;
            }
            if let Verdict::Reject { .. } = evaluate(self.narrower_root, n, value, 0) {
                continue;
            }
            match evaluate(self.wider_root, w, value, 0) {
                Verdict::Accept => {}
                Verdict::Reject { path } => {
                    let reason = format!(
                        "{} may hold the value {value} but {} rejects it",
                        roles.narrower_events, roles.wider
                    );
                    self.push(path, reason);
                }
                Verdict::Unknown { path, keyword } => {
                    let reason = format!(
                        "cannot decide whether {} accepts the value {value} allowed by {}: keyword {keyword:?} is not modelled",
                        roles.wider, roles.narrower
                    );
                    self.push(path, reason);
                }
            }
        }
    }

    fn numbers(&mut self, w: &At<'a>, n: &At<'a>, integers_only: bool) {
        let roles = self.roles;
        let sides = [
            (
                ("minimum", "exclusiveMinimum"),
                Ordering::Greater,
                "at least",
                "greater than",
                "smaller",
            ),
            (
                ("maximum", "exclusiveMaximum"),
                Ordering::Less,
                "at most",
                "less than",
                "larger",
            ),
        ];
        for (keywords, towards, inclusive_words, exclusive_words, beyond) in sides {
            let mut held = tightest(n, keywords, towards);
            if integers_only {
                // Integers above 0.5 are at least 1: what a bound admits
                // among integers is its rounding inwards.
                held = held.map(|b| {
                    let value = match (towards, b.exclusive) {
                        (Ordering::Greater, false) => b.value.ceil(),
                        (Ordering::Greater, true) => b.value.next_integer(),
                        (_, false) => negate(negate(b.value).ceil()),
                        (_, true) => negate(negate(b.value).next_integer()),
                    };
                    Bound {
                        value,
                        exclusive: false,
                    }
                });
            }
            for (keyword, exclusive) in [(keywords.0, false), (keywords.1, true)] {
                let Some(raw) = w.get(keyword) else { continue };
                let Some(demand) = Bound::read(raw, exclusive) else {
                    let reason = format!("{keyword} {raw} is not a number");
                    self.push(w.keyword_path(keyword), reason);
                    continue;
                };
                if held.is_some_and(|b| b.implies(demand, towards)) {
                    continue;
                }
                let words = if exclusive {
                    exclusive_words
                } else {
                    inclusive_words
                };
                let reason = format!(
                    "{} requires numbers {words} {raw} ({keyword}) but {} may hold {beyond} ones",
                    roles.wider, roles.narrower_events
                );
                self.push(w.keyword_path(keyword), reason);
            }
        }
    }

    fn strings(&mut self, w: &At<'a>, n: &At<'a>) {
        self.counts(w, n, ("minLength", "maxLength"), "strings", "characters");
        for keyword in ["pattern", "format"] {
            let Some(demand) = w.get(keyword) else {
                continue;
            };
            let reason = match n.get(keyword) {
                Some(held) if held == demand => continue,
                Some(held) => format!(
                    "cannot decide whether every string with {keyword} {held} (in {}) also has {keyword} {demand} (in {}); only identical values are compared",
                    self.roles.narrower, self.roles.wider
                ),
                None => format!(
                    "{} requires strings with {keyword} {demand} but {} may hold any string",
                    self.roles.wider, self.roles.narrower_events
                ),
            };
            self.push(w.keyword_path(keyword), reason);
        }
    }

    fn counts(&mut self, w: &At<'a>, n: &At<'a>, keywords: (&str, &str), what: &str, unit: &str) {
        let roles = self.roles;
        let (min, max) = keywords;
        if let Some(demand) = count(w, min) {
            if count(n, min).unwrap_or(0) < demand {
                let reason = format!(
                    "{} requires {what} of at least {demand} {unit} ({min}) but {} may hold shorter ones",
                    roles.wider, roles.narrower_events
                );
                self.push(w.keyword_path(min), reason);
            }
        }
        if let Some(demand) = count(w, max) {
            if count(n, max).is_none_or(|held| held > demand) {
                let reason = format!(
                    "{} accepts {what} of at most {demand} {unit} ({max}) but {} may hold longer ones",
                    roles.wider, roles.narrower_events
                );
                self.push(w.keyword_path(max), reason);
            }
        }
    }

    fn arrays(&mut self, w: &At<'a>, n: &At<'a>, depth: usize, hops: usize) {
        self.counts(w, n, ("minItems", "maxItems"), "arrays", "items");
        if count(n, "maxItems") == Some(0) {
            return;
        }
        if w.get("prefixItems").is_some() || n.get("prefixItems").is_some() {
            // Which items `items` applies to depends on `prefixItems`.
            if w.get("prefixItems").is_some() || w.get("items").is_some() {
                self.same_or_refuse(w, n, &["prefixItems", "items"]);
            }
            return;
        }
        let Some(w_items) = w.get("items") else {
            return;
        };
        if w_items.is_array() || n.get("items").is_some_and(Value::is_array) {
            self.same_or_refuse(w, n, &["items"]);
            return;
        }
        let n_items = match n.get("items") {
            Some(items) => n.child(items, &["items"]),
            None => n.child(&TRUE, &["items"]),
        };
        self.subset(w.child(w_items, &["items"]), n_items, depth + 1, hops + 1);
    }

    fn objects(&mut self, w: &At<'a>, n: &At<'a>, depth: usize, hops: usize) {
        let roles = self.roles;
        if let Some(required) = w.get("required") {
            let held: HashSet<&str> = n
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (i, name) in required.as_array().into_iter().flatten().enumerate() {
                let Some(name) = name.as_str() else { continue };
                if !held.contains(name) {
                    let reason = format!(
                        "property {name:?} is required by {} but {} may lack it",
                        roles.wider, roles.narrower_events
                    );
                    self.push(format!("{}/required/{i}", w.loc), reason);
                }
            }
        }
        let group = ["properties", "patternProperties", "additionalProperties"];
        if !group.iter().any(|k| w.get(k).is_some()) {
            return;
        }
        if w.get("patternProperties").is_some() || n.get("patternProperties").is_some() {
            // Which properties fall under `additionalProperties` depends on
            // regular expressions, which are not compared.
            self.same_or_refuse(w, n, &group);
            return;
        }
        let w_props = w.get("properties").and_then(Value::as_object);
        let n_props = n.get("properties").and_then(Value::as_object);
        let w_rest = match w.get("additionalProperties") {
            Some(schema) => w.child(schema, &["additionalProperties"]),
            None => w.child(&TRUE, &["additionalProperties"]),
        };
        let n_rest = match n.get("additionalProperties") {
            Some(schema) => n.child(schema, &["additionalProperties"]),
            None => n.child(&TRUE, &["additionalProperties"]),
        };
        let names: BTreeSet<&String> = w_props
            .into_iter()
            .chain(n_props)
            .flat_map(Map::keys)
            .collect();
        for name in names {
            if self.full() {
                return;
            }
            let n_prop = match n_props.and_then(|props| props.get(name)) {
                Some(schema) => n.child(schema, &["properties", name]),
                None => n_rest.clone(),
            };
            let w_prop = match w_props.and_then(|props| props.get(name)) {
                Some(schema) => w.child(schema, &["properties", name]),
                None => w_rest.clone(),
            };
            if is_false(n_prop.schema) || is_trivially_true(w_prop.schema) {
                continue;
            }
            if !n_props.is_some_and(|props| props.contains_key(name))
                && is_trivially_true(n_rest.schema)
            {
                let reason = format!(
                    "property {name:?} is constrained by {} but {} does not list it and allows additional properties, so {} may hold any value under it",
                    roles.wider, roles.narrower, roles.narrower_events
                );
                self.push(w_prop.loc, reason);
                continue;
            }
            if !w_props.is_some_and(|props| props.contains_key(name)) && is_false(w_rest.schema) {
                let reason = format!(
                    "property {name:?} is allowed by {} but {} neither lists it nor accepts additional properties",
                    roles.narrower, roles.wider
                );
                self.push(w_rest.loc.clone(), reason);
                continue;
            }
            self.subset(w_prop, n_prop, depth + 1, hops + 1);
        }
        if is_false(w_rest.schema) && !is_false(n_rest.schema) {
            let reason = format!(
                "{} accepts no properties beyond those it lists but {} allows others, so {} may carry extra ones",
                roles.wider, roles.narrower, roles.narrower_events
            );
            self.push(w_rest.loc, reason);
        } else {
            self.subset(w_rest, n_rest, depth + 1, hops + 1);
        }
    }

    /// Keywords of `w` that are not modelled must be in `n` with the same
    /// meaning.
    fn unmodelled(&mut self, w: &At<'a>, n: &At<'a>, shared: u8) {
        for (keyword, _) in w.keywords() {
            if MODELLED.contains(&keyword) || keyword_applies_to(keyword) & shared == 0 {
                continue;
            }
            match keyword {
                // Only effective through `then`/`else`, or `contains`.
                "if" | "minContains" | "maxContains" => {}
                "then" | "else" => self.same_or_refuse(w, n, &[keyword, "if"]),
                "contains" => {
                    self.same_or_refuse(w, n, &["contains", "minContains", "maxContains"])
                }
                "$dynamicRef" | "$recursiveRef" => {
                    // Their target depends on the path evaluation took.
                    let reason = format!(
                        "cannot decide: {keyword:?} of {} is not followed",
                        self.roles.wider
                    );
                    self.push(w.keyword_path(keyword), reason);
                }
                "unevaluatedProperties" | "unevaluatedItems" => {
                    // What is "unevaluated" depends on every other keyword,
                    // `$ref` included: a side read without its `$ref` cannot
                    // be compared.
                    let split = w.skip_ref || n.skip_ref;
                    let w_all: Map<String, Value> = w
                        .keywords()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect();
                    let n_all: Map<String, Value> = n
                        .keywords()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect();
                    if split || !self.same_meaning(&Value::Object(w_all), &Value::Object(n_all)) {
                        let reason = format!(
                            "cannot decide: keyword {keyword:?} of {} depends on all its other keywords, so only an identical schema is accepted here",
                            self.roles.wider
                        );
                        self.push(w.keyword_path(keyword), reason);
                    }
                }
                _ => self.same_or_refuse(w, n, &[keyword]),
            }
            if self.full() {
                return;
            }
        }
    }

    /// Refuses, naming the first keyword, unless every keyword in `keywords`
    /// means the same on both sides (both absent counts as the same).
    fn same_or_refuse(&mut self, w: &At<'a>, n: &At<'a>, keywords: &[&str]) {
        let differs = keywords.iter().find(|k| match (w.get(k), n.get(k)) {
            (None, None) => false,
            (Some(a), Some(b)) => !self.same_meaning(a, b),
            _ => true,
        });
        if differs.is_some() {
            let keyword = keywords[0];
            let reason = format!(
                "cannot decide whether {} satisfy {keyword:?} of {}: keyword {keyword:?} changed, and only identical values of it are compared",
                self.roles.narrower_events, self.roles.wider
            );
            self.push(w.keyword_path(keyword), reason);
        }
    }

    /// Identical JSON whose references also point at identical schemas.
    fn same_meaning(&self, a: &Value, b: &Value) -> bool {
        let mut seen = HashSet::new();
        same_meaning(self.wider_root, a, self.narrower_root, b, &mut seen)
    }
}

fn negate(n: Num) -> Num {
    match n {
        Num::Int(i) => Num::Int(-i),
        Num::Float(f) => Num::Float(-f),
    }
}

fn same_meaning<'a>(
    a_root: &'a Value,
    a: &'a Value,
    b_root: &'a Value,
    b: &'a Value,
    seen: &mut HashSet<String>,
) -> bool {
    if !json_equal(a, b) {
        return false;
    }
    let mut refs = Vec::new();
    if !collect_refs(a, &mut refs) {
        return false;
    }
    refs.into_iter().all(|reference| {
        let Some(text) = reference.as_str() else {
            return false;
        };
        if !seen.insert(text.to_owned()) {
            return true;
        }
        match (resolve(a_root, reference), resolve(b_root, reference)) {
            (Ok(x), Ok(y)) => same_meaning(a_root, x.schema, b_root, y.schema, seen),
            _ => false,
        }
    })
}

/// Collects every `$ref` below `value`; false when it holds a dynamic
/// reference, whose target depends on the evaluation path.
fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a Value>) -> bool {
    match value {
        Value::Object(map) => {
            if map.contains_key("$dynamicRef") || map.contains_key("$recursiveRef") {
                return false;
            }
            if let Some(reference) = map.get("$ref") {
                refs.push(reference);
            }
            map.values().all(|v| collect_refs(v, refs))
        }
        Value::Array(items) => items.iter().all(|v| collect_refs(v, refs)),
        _ => true,
    }
}

/// Finds an `$id` below the root. Values that are data (`enum`, `default`,
/// ...) are skipped, and so are the names of properties and definitions,
/// which may be spelt `$id` without being one.
fn embedded_resource(value: &Value, loc: &str, is_root: bool) -> Option<String> {
    let within = |v: &Value, tokens: &[&str]| {
        let mut loc = loc.to_owned();
        for token in tokens {
            loc.push('/');
            loc.push_str(&escape_token(token));
        }
        embedded_resource(v, &loc, false)
    };
    match value {
        Value::Object(map) => {
            if !is_root && map.contains_key("$id") {
                return Some(format!("{loc}/$id"));
            }
            map.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("enum" | "const" | "default" | "examples", _) => None,
                (
                    "properties" | "patternProperties" | "$defs" | "definitions"
                    | "dependentSchemas",
                    Value::Object(named),
                ) => named.iter().find_map(|(name, v)| within(v, &[k, name])),
                _ => within(v, &[k]),
            })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| within(v, &[&i.to_string()])),
        _ => None,
    }
}

/// The only values a schema can accept, when it lists them or its types
/// leave only a few.
fn finite_values(at: &At<'_>) -> Option<Vec<Value>> {
    if let Some(constant) = at.get("const") {
        return Some(vec![constant.clone()]);
    }
    if let Some(values) = at.get("enum").and_then(Value::as_array) {
        return Some(values.clone());
    }
    let types = types_of(at).ok()?;
    if types & !(NULL | BOOLEAN) != 0 {
        return None;
    }
    let mut values = Vec::new();
    if types & NULL != 0 {
        values.push(Value::Null);
    }
    if types & BOOLEAN != 0 {
        values.extend([Value::Bool(false), Value::Bool(true)]);
    }
    Some(values)
}

/// Whether a schema accepts one value, as far as the modelled keywords tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject { path: String },
    Unknown { path: String, keyword: String },
}

impl Verdict {
    /// Keywords all apply: one rejection is final, whatever else is unknown.
    fn and(self, other: impl FnOnce() -> Verdict) -> Verdict {
        match self {
            Verdict::Reject { .. } => self,
            Verdict::Accept => other(),
            Verdict::Unknown { .. } => match other() {
                reject @ Verdict::Reject { .. } => reject,
                _ => self,
            },
        }
    }
}

fn evaluate(root: &Value, at: &At<'_>, value: &Value, hops: usize) -> Verdict {
    let unknown = |keyword: &str| Verdict::Unknown {
        path: at.keyword_path(keyword),
        keyword: keyword.to_owned(),
    };
    if hops > MAX_DEPTH {
        return unknown("$ref");
    }
    let map = match at.schema {
        Value::Bool(true) => return Verdict::Accept,
        Value::Bool(false) => {
            return Verdict::Reject {
                path: at.loc.clone(),
            }
        }
        Value::Object(map) => map,
        _ => return unknown(""),
    };
    let mut verdict = Verdict::Accept;
    if let Some(reference) = at.reference() {
        verdict = match resolve(root, reference) {
            Ok(target) => evaluate(root, &target, value, hops + 1),
            Err(_) => unknown("$ref"),
        };
    }
    let kind = value_type(value);
    for (keyword, demand) in at.keywords() {
        if let Verdict::Reject { .. } = verdict {
            return verdict;
        }
        if keyword_applies_to(keyword) & kind == 0 {
            continue;
        }
        let reject = || Verdict::Reject {
            path: at.keyword_path(keyword),
        };
        let passes = |ok: Option<bool>| match ok {
            Some(true) => Verdict::Accept,
            Some(false) => reject(),
            None => unknown(keyword),
        };
        let outcome = match keyword {
            "type" => passes(types_of(at).ok().map(|t| t & kind != 0)),
            "enum" => passes(
                demand
                    .as_array()
                    .map(|vs| vs.iter().any(|v| json_equal(v, value))),
            ),
            "const" => passes(Some(json_equal(demand, value))),
            "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum" => {
                let order = match (demand.as_number(), value.as_number()) {
                    (Some(bound), Some(number)) => Num::of(number).cmp(Num::of(bound)),
                    _ => None,
                };
                passes(order.map(|o| match keyword {
                    "minimum" => o != Ordering::Less,
                    "exclusiveMinimum" => o == Ordering::Greater,
                    "maximum" => o != Ordering::Greater,
                    _ => o == Ordering::Less,
                }))
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                let length = match value {
                    Value::String(s) => s.chars().count(),
                    Value::Array(items) => items.len(),
                    _ => 0,
                } as u64;
                passes(count(at, keyword).map(|limit| {
                    if keyword.starts_with("min") {
                        length >= limit
                    } else {
                        length <= limit
                    }
                }))
            }
            "pattern" | "format" => passes(
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(&json!({ keyword: demand }))
                    .ok()
                    .map(|validator| validator.is_valid(value)),
            ),
            "items" if demand.is_array() || map.contains_key("prefixItems") => unknown(keyword),
            "items" => value
                .as_array()
                .into_iter()
                .flatten()
                .fold(Verdict::Accept, |v, item| {
                    v.and(|| evaluate(root, &at.child(demand, &["items"]), item, hops + 1))
                }),
            "required" => passes(demand.as_array().map(|names| {
                names
                    .iter()
                    .all(|name| name.as_str().is_some_and(|k| value.get(k).is_some()))
            })),
            "properties" => {
                let listed = demand.as_object();
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .fold(Verdict::Accept, |v, (k, item)| {
                        match listed.and_then(|l| l.get(k)) {
                            Some(schema) => v.and(|| {
                                evaluate(
                                    root,
                                    &at.child(schema, &["properties", k]),
                                    item,
                                    hops + 1,
                                )
                            }),
                            None => v,
                        }
                    })
            }
            "additionalProperties" if map.contains_key("patternProperties") => unknown(keyword),
            "additionalProperties" => {
                let listed = map.get("properties").and_then(Value::as_object);
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .fold(Verdict::Accept, |v, (k, item)| {
                        if listed.is_some_and(|l| l.contains_key(k)) {
                            v
                        } else {
                            v.and(|| {
                                evaluate(
                                    root,
                                    &at.child(demand, &["additionalProperties"]),
                                    item,
                                    hops + 1,
                                )
                            })
                        }
                    })
            }
            "if" if !map.contains_key("then") && !map.contains_key("else") => Verdict::Accept,
            "minContains" | "maxContains" if !map.contains_key("contains") => Verdict::Accept,
            _ => unknown(keyword),
        };
        verdict = verdict.and(|| outcome);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders_v1() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["order_id", "amount"],
            "properties": {
                "order_id": {"type": "string", "minLength": 1},
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "enum": ["EUR", "USD"]}
            },
            "additionalProperties": false
        })
    }

    fn paths(result: Result<(), Vec<Incompatibility>>) -> Vec<String> {
        result
            .expect_err("expected incompatibilities")
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn modes_read_and_print_as_their_names() {
        for mode in Compatibility::ALL {
            assert_eq!(mode.to_string().parse::<Compatibility>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        let err = "sideways".parse::<Compatibility>().unwrap_err();
        assert!(err.contains("backward, forward, full, none"), "{err}");
        assert_eq!(Compatibility::default(), Compatibility::Backward);
    }

    #[test]
    fn widening_an_enum_is_backward_compatible_but_not_forward() {
        let old = orders_v1();
        let mut new = orders_v1();
        new["properties"]["currency"]["enum"] = json!(["EUR", "USD", "GBP"]);
        assert_eq!(check(Compatibility::Backward, &old, &new), Ok(()));
        assert_eq!(
            paths(check(Compatibility::Forward, &old, &new)),
            ["/properties/currency/enum"]
        );
    }

    #[test]
    fn adding_a_required_property_is_not_backward_compatible() {
        let old = orders_v1();
        let mut new = orders_v1();
        new["properties"]["customer"] = json!({"type": "string"});
        new["required"] = json!(["order_id", "amount", "customer"]);
        let problems = check(Compatibility::Backward, &old, &new).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "/required/2");
        assert_eq!(
            problems[0].reason,
            "property \"customer\" is required by the new version but old events may lack it"
        );
        assert_eq!(check(Compatibility::None, &old, &new), Ok(()));
    }

    #[test]
    fn integers_widen_to_numbers_but_not_back() {
        let integer = json!({"type": "integer", "minimum": 0});
        let number = json!({"type": "number", "minimum": 0});
        assert_eq!(check(Compatibility::Backward, &integer, &number), Ok(()));
        assert_eq!(
            paths(check(Compatibility::Backward, &number, &integer)),
            ["/type"]
        );
    }

    #[test]
    fn closing_an_open_object_is_not_backward_compatible() {
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let closed = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        assert_eq!(
            paths(check(Compatibility::Backward, &open, &closed)),
            ["/additionalProperties"]
        );
        assert_eq!(check(Compatibility::Forward, &open, &closed), Ok(()));
    }

    #[test]
    fn constraining_a_property_an_open_object_did_not_list_is_not_backward_compatible() {
        let open = json!({"type": "object"});
        let listed = json!({"type": "object", "properties": {"b": {"type": "integer"}}});
        assert_eq!(
            paths(check(Compatibility::Backward, &open, &listed)),
            ["/properties/b"]
        );
    }

    #[test]
    fn tightening_max_length_is_forward_but_not_backward_compatible() {
        let old = json!({"type": "string", "maxLength": 10});
        let new = json!({"type": "string", "maxLength": 5});
        assert_eq!(
            paths(check(Compatibility::Backward, &old, &new)),
            ["/maxLength"]
        );
        assert_eq!(check(Compatibility::Forward, &old, &new), Ok(()));
        assert_eq!(
            paths(check(Compatibility::Full, &old, &new)),
            ["/maxLength"]
        );
    }

    #[test]
    fn bounds_compare_exclusive_and_integer_rounding() {
        let wider = json!({"type": "integer", "minimum": 1});
        let narrower = json!({"type": "integer", "exclusiveMinimum": 0});
        assert_eq!(accepts_all_of(&wider, &narrower), Ok(()));
        let fractions = json!({"type": "number", "exclusiveMinimum": 0});
        // Only the fractions are a problem: the integers above 0 are at least 1.
        assert_eq!(paths(accepts_all_of(&wider, &fractions)), ["/type"]);
        let same_exclusive = json!({"exclusiveMaximum": 3});
        assert_eq!(
            accepts_all_of(&json!({"maximum": 3}), &same_exclusive),
            Ok(())
        );
        assert_eq!(
            paths(accepts_all_of(&same_exclusive, &json!({"maximum": 3}))),
            ["/exclusiveMaximum"]
        );
    }

    #[test]
    fn references_resolve_against_each_schema_own_root() {
        let old = json!({
            "type": "object",
            "properties": {"who": {"$ref": "#/$defs/name"}},
            "$defs": {"name": {"type": "string", "maxLength": 10}}
        });
        let same_inline = json!({
            "type": "object",
            "properties": {"who": {"type": "string", "maxLength": 10}}
        });
        assert_eq!(check(Compatibility::Full, &old, &same_inline), Ok(()));
        let shorter = json!({
            "type": "object",
            "properties": {"who": {"$ref": "#/definitions/name"}},
            "definitions": {"name": {"type": "string", "maxLength": 4}}
        });
        assert_eq!(
            paths(check(Compatibility::Backward, &old, &shorter)),
            ["/definitions/name/maxLength"]
        );
        let dangling = json!({"properties": {"who": {"$ref": "#/$defs/missing"}}});
        assert_eq!(
            paths(check(Compatibility::Backward, &old, &dangling)),
            ["/properties/who/$ref"]
        );
    }

    #[test]
    fn recursive_schemas_terminate() {
        let tree = |max: u64| {
            json!({
                "$ref": "#/$defs/node",
                "$defs": {"node": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string", "maxLength": max},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
                    }
                }}
            })
        };
        assert_eq!(check(Compatibility::Backward, &tree(5), &tree(8)), Ok(()));
        assert_eq!(
            paths(check(Compatibility::Backward, &tree(8), &tree(5))),
            ["/$defs/node/properties/label/maxLength"]
        );
        let cycle = json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}});
        assert!(check(Compatibility::Backward, &json!({}), &cycle).is_err());
    }

    #[test]
    fn boolean_schemas_are_everything_and_nothing() {
        assert_eq!(
            accepts_all_of(&json!(true), &json!({"type": "string"})),
            Ok(())
        );
        assert_eq!(
            accepts_all_of(&json!({"type": "string"}), &json!(false)),
            Ok(())
        );
        assert_eq!(paths(accepts_all_of(&json!(false), &json!({}))), [""]);
        assert_eq!(
            paths(accepts_all_of(&json!({"type": "string"}), &json!(true))),
            ["/type"]
        );
        let forbids = json!({"properties": {"a": false}});
        assert_eq!(
            accepts_all_of(&json!({"properties": {"a": {"type": "null"}}}), &forbids),
            Ok(())
        );
    }

    #[test]
    fn unmodelled_keywords_are_refused_unless_identical() {
        let one_of = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        assert_eq!(accepts_all_of(&one_of, &one_of), Ok(()));
        let problems = accepts_all_of(&one_of, &json!({"type": "string"})).unwrap_err();
        assert_eq!(problems[0].path, "/oneOf");
        assert!(
            problems[0].reason.contains("\"oneOf\" changed"),
            "{}",
            problems[0].reason
        );
        // Identical JSON whose references point at different definitions.
        let via = |t: &str| json!({"allOf": [{"$ref": "#/$defs/x"}], "$defs": {"x": {"type": t}}});
        assert!(accepts_all_of(&via("string"), &via("integer")).is_err());
        // Keywords of types the narrower cannot hold do not matter.
        assert_eq!(
            accepts_all_of(&json!({"multipleOf": 3}), &json!({"type": "string"})),
            Ok(())
        );
    }

    #[test]
    fn unevaluated_properties_beside_a_ref_are_refused() {
        // The narrower accepts {"y": 1}: `y` is evaluated through its $ref.
        let narrower = json!({
            "$ref": "#/$defs/b",
            "unevaluatedProperties": false,
            "$defs": {"b": {"properties": {"y": {}}}}
        });
        let wider = json!({"unevaluatedProperties": false});
        assert!(accepts_all_of(&wider, &narrower).is_err());
        assert_eq!(accepts_all_of(&wider, &wider), Ok(()));
        let dynamic = json!({"$dynamicRef": "#meta"});
        assert_eq!(paths(accepts_all_of(&dynamic, &dynamic)), ["/$dynamicRef"]);
    }

    #[test]
    fn references_that_fan_out_are_cut_short() {
        // Every level refers twice to the next: 2^18 paths through them.
        let mut defs = Map::new();
        for level in 0..18 {
            let next = format!("#/$defs/l{}", level + 1);
            defs.insert(
                format!("l{level}"),
                json!({"properties": {"p": {"$ref": next}, "q": {"$ref": next}}}),
            );
        }
        defs.insert("l18".to_owned(), json!({"type": "string"}));
        let schema = json!({"$ref": "#/$defs/l0", "$defs": defs});
        let problems = accepts_all_of(&schema, &schema).unwrap_err();
        assert!(problems[0].reason.contains("steps"), "{problems:?}");
    }

    #[test]
    fn patterns_and_formats_must_match_exactly() {
        let wider = json!({"type": "string", "pattern": "^[a-z]+$", "format": "email"});
        assert_eq!(accepts_all_of(&wider, &wider), Ok(()));
        assert_eq!(
            paths(accepts_all_of(
                &wider,
                &json!({"type": "string", "pattern": "^[a-c]+$"})
            )),
            ["/pattern", "/format"]
        );
        let finite = json!({"enum": ["abc", "Abc"]});
        let lower = json!({"type": "string", "pattern": "^[a-z]+$"});
        assert_eq!(paths(accepts_all_of(&lower, &finite)), ["/pattern"]);
    }

    #[test]
    fn other_drafts_and_embedded_resources_are_refused() {
        let draft7 = json!({"$schema": "http://json-schema.org/draft-07/schema#"});
        assert_eq!(paths(accepts_all_of(&json!({}), &draft7)), ["/$schema"]);
        let embedded = json!({"properties": {"a": {"$id": "urn:x", "type": "string"}}});
        assert_eq!(
            paths(accepts_all_of(&json!({}), &embedded)),
            ["/properties/a/$id"]
        );
    }

    #[test]
    fn numbers_compare_exactly() {
        assert_eq!(
            cmp_int_float(9_007_199_254_740_993, 9_007_199_254_740_992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_int_float(1, 1.0), Some(Ordering::Equal));
        assert_eq!(cmp_int_float(1, 1.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-1, -1.5), Some(Ordering::Greater));
        assert!(json_equal(&json!([1, {"a": 2.0}]), &json!([1.0, {"a": 2}])));
    }
}
