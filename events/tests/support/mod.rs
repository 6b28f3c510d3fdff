//! Shared helpers of the schema compatibility tests: the corpus of schema
//! pairs in `tests/fixtures/schema_pairs.json`, validators built as the
//! registry builds them, and a strategy for instances of a schema.

pub mod instances;

use herald_events::{Compatibility, UpcasterSpec};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde::Deserialize;
use serde_json::Value;

/// One pair of the corpus: two versions of a schema and what the checker
/// must answer for them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub name: String,
    /// Why the answer is what it is, for the reader of the corpus.
    #[serde(default)]
    pub why: Option<String>,
    pub old: Value,
    pub new: Value,
    pub mode: Compatibility,
    pub compatible: bool,
    /// A pointer the checker must report among its problems when the pair
    /// is incompatible.
    #[serde(default)]
    pub path: Option<String>,
    /// Turns every old instance into a valid new one, when the pair is not
    /// compatible as it is.
    #[serde(default)]
    pub upcaster: Option<UpcasterSpec>,
}

impl Pair {
    /// The pair's name, and why it gets its answer, for failure messages.
    pub fn label(&self) -> String {
        match &self.why {
            Some(why) => format!("{:?} ({why})", self.name),
            None => format!("{:?}", self.name),
        }
    }
}

pub fn corpus() -> Vec<Pair> {
    serde_json::from_str(include_str!("../fixtures/schema_pairs.json"))
        .expect("tests/fixtures/schema_pairs.json is a list of pairs")
}

/// A validator built as the registry builds one.
pub fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{schema} is not a valid schema: {e}"))
}

/// Runs `check` on `cases` generated instances of `schema`, after making
/// sure each really is one (a broken generator would prove nothing).
pub fn for_instances_of(
    schema: &Value,
    cases: u32,
    check: impl Fn(&Value) -> Result<(), TestCaseError>,
) -> Result<(), TestError<Value>> {
    let own = validator(schema);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&instances::instances(schema), |instance| {
        proptest::prop_assert!(
            own.is_valid(&instance),
            "the generator made {instance}, which its own schema {schema} rejects"
        );
        check(&instance)
    })
}
