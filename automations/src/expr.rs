//! Expressions and templates: CEL (the Common Expression Language, as
//! Kubernetes uses it for validation rules) over what an automation sees,
//! and JSON templates whose strings embed expressions as `{{ expr }}`.
//!
//! Everything is compiled when an automation is applied, so a typo is a
//! 422 at `POST /v1/automations`, not a failure at the first event. An
//! expression sees the variables of a [`Scope`]: `event` (the triggering
//! event), `state` (the aggregates the automation looks up) and
//! `automation` (its name and version). Evaluation is pure: no clock, no
//! I/O, so a dry run over history computes what the live engine computes.
//!
//! Templates:
//! - a string that is exactly one `{{ expr }}` takes the expression's value
//!   with its JSON type (a number stays a number, a map an object);
//! - a string with `{{ expr }}` among other text is the text with each
//!   expression's value put in (a string as is, anything else as JSON);
//! - objects and arrays are templates member by member; other values are
//!   literal. `{{` has no escape: a literal `{{` in a body is not supported.

use std::sync::{Arc, LazyLock};

use serde_json::Value;

/// The longest expression source accepted.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// Why an expression or template did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct CompileError {
    /// Where in the automation, e.g. `when` or `actions[0].command.id`.
    pub at: String,
    pub message: String,
}

/// Why an expression did not give a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct EvalError {
    pub at: String,
    pub message: String,
}

/// The one CEL environment: the standard library and the string
/// extension functions (`lowerAscii`, `split`, `replace`, …).
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // The strings extension is part of the crate; failing to add it would
    // be a bug of the build, and every expression would then be refused.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// A compiled CEL expression with its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<cel::Program>,
    /// The variables it reads.
    reads: Vec<&'static str>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles `source`; `at` names where it is written.
    pub fn compile(source: &str, at: &str) -> Result<Self, CompileError> {
        let err = |message: String| CompileError {
            at: at.to_owned(),
            message,
        };
        if source.trim().is_empty() {
            return Err(err("the expression is empty".to_owned()));
        }
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(err(format!(
                "the expression is longer than {MAX_EXPRESSION_BYTES} bytes"
            )));
        }
        let program = ENV
            .compile(source)
            .map_err(|e| err(format!("not a valid CEL expression: {e}")))?;
        let mut free = std::collections::BTreeSet::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(name) = free
            .iter()
            .find(|n| !VARIABLES.contains(&n.as_str()) && !TYPE_NAMES.contains(&n.as_str()))
        {
            return Err(err(format!(
                "unknown variable `{name}`; an expression sees {}",
                VARIABLES.join(", ")
            )));
        }
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
            reads: VARIABLES
                .iter()
                .copied()
                .filter(|v| free.contains(*v))
                .collect(),
        })
    }

    /// Whether it reads the variable `name` (`event`, `state`,
    /// `automation`): the engine sets only what a condition reads.
    pub fn reads(&self, name: &str) -> bool {
        self.reads.contains(&name)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// An equality the expression requires of the event: one of its
    /// top-level `&&` conjuncts is `event.<path> == '<text>'` (either way
    /// round). The engine indexes automations by it, so an event is only
    /// evaluated against conditions that can hold: when the event has a
    /// string at that path and it differs, the conjunct is false and so is
    /// the whole condition (CEL's `&&` is false when any side is, errors
    /// aside).
    pub fn required_equality(&self) -> Option<(Vec<String>, String)> {
        use cel::common::ast::operators::{EQUALS, LOGICAL_AND};
        use cel::common::ast::{Expr as Node, LiteralValue};
        fn conjuncts<'a>(
            e: &'a cel::parser::Expression,
            out: &mut Vec<&'a cel::parser::Expression>,
        ) {
            match &e.expr {
                Node::Call(call) if call.func_name == LOGICAL_AND && call.target.is_none() => {
                    for arg in &call.args {
                        conjuncts(arg, out);
                    }
                }
                _ => out.push(e),
            }
        }
        fn event_path(e: &cel::parser::Expression) -> Option<Vec<String>> {
            match &e.expr {
                Node::Select(select) if !select.test => {
                    let mut path = event_path(&select.operand)?;
                    path.push(select.field.clone());
                    Some(path)
                }
                Node::Ident(name) if name == "event" => Some(Vec::new()),
                _ => None,
            }
        }
        let mut all = Vec::new();
        conjuncts(self.program.expression(), &mut all);
        all.into_iter().find_map(|c| match &c.expr {
            Node::Call(call)
                if call.func_name == EQUALS && call.target.is_none() && call.args.len() == 2 =>
            {
                let (a, b) = (&call.args[0], &call.args[1]);
                let literal = |e: &cel::parser::Expression| match &e.expr {
                    Node::Literal(LiteralValue::String(s)) => Some(s.inner().to_owned()),
                    _ => None,
                };
                match (event_path(a), literal(b), event_path(b), literal(a)) {
                    (Some(path), Some(text), _, _) | (_, _, Some(path), Some(text))
                        if !path.is_empty() =>
                    {
                        Some((path, text))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
    }

    /// The expression's value in `scope`, as JSON.
    pub fn eval(&self, scope: &Scope, at: &str) -> Result<Value, EvalError> {
        let err = |message: String| EvalError {
            at: at.to_owned(),
            message,
        };
        let value = self
            .program
            .execute(&scope.context)
            .map_err(|e| err(format!("`{}` failed: {e}", self.source)))?;
        value.json().map_err(|e| {
            err(format!(
                "`{}` gave a value JSON cannot hold: {e}",
                self.source
            ))
        })
    }

    /// The expression's value, which must be a boolean (a condition).
    pub fn eval_bool(&self, scope: &Scope, at: &str) -> Result<bool, EvalError> {
        match self.eval(scope, at)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError {
                at: at.to_owned(),
                message: format!(
                    "`{}` must give true or false, not {}",
                    self.source,
                    kind_of(&other)
                ),
            }),
        }
    }
}

/// The variables an expression may name.
pub const VARIABLES: &[&str] = &["event", "state", "automation"];

/// CEL's type names, which read as identifiers (`type(x) == int`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// The identifiers `expr` reads that no macro (`exists`, `map`, …) binds.
fn free_variables(
    expr: &cel::parser::Expression,
    bound: &mut Vec<String>,
    free: &mut std::collections::BTreeSet<String>,
) {
    use cel::common::ast::{EntryExpr, Expr as Node};
    let entries = |entries: &Vec<cel::common::ast::IdedEntryExpr>,
                   bound: &mut Vec<String>,
                   free: &mut std::collections::BTreeSet<String>| {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(field) => free_variables(&field.value, bound, free),
                EntryExpr::MapEntry(e) => {
                    free_variables(&e.key, bound, free);
                    free_variables(&e.value, bound, free);
                }
            }
        }
    };
    match &expr.expr {
        Node::Unspecified | Node::Literal(_) => {}
        Node::Ident(name) => {
            if !name.starts_with('@') && !bound.iter().any(|b| b == name) {
                free.insert(name.clone());
            }
        }
        Node::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, free);
            }
            for arg in &call.args {
                free_variables(arg, bound, free);
            }
        }
        Node::Comprehension(c) => {
            free_variables(&c.iter_range, bound, free);
            free_variables(&c.accu_init, bound, free);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            free_variables(&c.loop_cond, bound, free);
            free_variables(&c.loop_step, bound, free);
            free_variables(&c.result, bound, free);
            bound.truncate(before);
        }
        Node::List(list) => {
            for e in &list.elements {
                free_variables(e, bound, free);
            }
        }
        Node::Map(map) => entries(&map.entries, bound, free),
        Node::Struct(s) => entries(&s.entries, bound, free),
        Node::Select(select) => free_variables(&select.operand, bound, free),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The variables of one evaluation, converted to CEL once and shared by
/// every expression evaluated on the same event.
pub struct Scope {
    context: cel::Context<'static, 'static>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl Scope {
    /// A scope with `event`, `state` (a map of looked-up states, may be
    /// empty) and `automation`.
    pub fn new(event: &Value, state: &Value, automation: &Value) -> Self {
        let mut context = cel::Context::with_env(Arc::clone(&ENV));
        for (name, value) in [
            ("event", event),
            ("state", state),
            ("automation", automation),
        ] {
            context.add_variable_from_value(name, to_cel(value));
        }
        Self { context }
    }

    /// Sets `automation` (one scope serves every automation an event
    /// triggers: the event is converted once).
    pub fn set_automation(&mut self, automation: &Value) {
        self.context
            .add_variable_from_value("automation", to_cel(automation));
    }

    /// The same variables with `state` replaced (after the lookups ran).
    pub fn with_state(mut self, state: &Value) -> Self {
        self.context.add_variable_from_value("state", to_cel(state));
        self
    }
}

/// JSON as CEL sees it: whole numbers are `int` (so `payload.n + 1` works
/// as written), `uint` only beyond `int`'s range, other numbers `double`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => cel::Value::Int(i),
            (None, Some(u), _) => cel::Value::UInt(u),
            (_, _, f) => cel::Value::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(members) => {
            let map: std::collections::HashMap<String, cel::Value> = members
                .iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect();
            map.into()
        }
    }
}

/// A JSON template: literal values with `{{ expr }}` inside strings.
#[derive(Debug, Clone)]
pub enum Template {
    Literal(Value),
    /// A string that is exactly one expression: its value, typed.
    Whole(Expr),
    /// A string mixing text and expressions.
    Text(Vec<Piece>),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

/// A part of a text template.
#[derive(Debug, Clone)]
pub enum Piece {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Compiles a JSON value as a template; `at` names where it is.
    pub fn compile(value: &Value, at: &str) -> Result<Self, CompileError> {
        Ok(match value {
            Value::String(text) => Self::compile_text(text, at)?,
            Value::Array(items) => Self::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::compile(v, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(members) => Self::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Self::compile(v, &format!("{at}.{k}"))?)))
                    .collect::<Result<_, CompileError>>()?,
            ),
            other => Self::Literal(other.clone()),
        })
    }

    /// Compiles a string template.
    pub fn compile_text(text: &str, at: &str) -> Result<Self, CompileError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                return Err(CompileError {
                    at: at.to_owned(),
                    message: "`{{` without its `}}`".to_owned(),
                });
            };
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let source = &rest[open + 2..open + 2 + close];
            pieces.push(Piece::Expr(Expr::compile(source.trim(), at)?));
            rest = &rest[open + 2 + close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(match pieces.as_slice() {
            [] => Self::Literal(Value::String(String::new())),
            [Piece::Text(t)] => Self::Literal(Value::String(t.clone())),
            [Piece::Expr(e)] => Self::Whole(e.clone()),
            _ => Self::Text(pieces),
        })
    }

    /// The template's value in `scope`.
    pub fn render(&self, scope: &Scope, at: &str) -> Result<Value, EvalError> {
        Ok(match self {
            Self::Literal(v) => v.clone(),
            Self::Whole(e) => e.eval(scope, at)?,
            Self::Text(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Expr(e) => match e.eval(scope, at)? {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(out)
            }
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(scope, at))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(scope, at)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
        })
    }

    /// The template's value, which must be a non-empty string (an id, a
    /// name, a URL).
    pub fn render_text(&self, scope: &Scope, at: &str) -> Result<String, EvalError> {
        match self.render(scope, at)? {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(EvalError {
                at: at.to_owned(),
                message: format!("must give a non-empty string, not {}", kind_of(&other)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(
            &json!({"type": "edges.edge_went_offline", "stream_id": "E-1", "payload": {"n": 3, "tags": ["a"]}}),
            &json!({"edge": {"customer": "acme"}}),
            &json!({"name": "a", "version": 2}),
        )
    }

    #[test]
    fn whole_expressions_keep_their_type_and_text_interpolates() {
        let s = scope();
        let t = Template::compile(
            &json!({"n": "{{ event.payload.n + 1 }}", "id": "outage.{{ event.stream_id }}", "c": "{{state.edge.customer}}", "lit": 5, "list": ["{{ event.payload.tags }}"]}),
            "body",
        )
        .unwrap();
        assert_eq!(
            t.render(&s, "body").unwrap(),
            json!({"n": 4, "id": "outage.E-1", "c": "acme", "lit": 5, "list": [["a"]]})
        );
    }

    #[test]
    fn required_equalities_are_found_among_the_conjuncts() {
        let eq = |src: &str| Expr::compile(src, "when").unwrap().required_equality();
        assert_eq!(
            eq("event.payload.author == 'a' && event.payload.n > 1"),
            Some((vec!["payload".into(), "author".into()], "a".into()))
        );
        assert_eq!(
            eq("'x' == event.type"),
            Some((vec!["type".into()], "x".into()))
        );
        assert_eq!(eq("event.payload.author == 'a' || true"), None);
        assert_eq!(eq("event.payload.n == 1"), None);
        assert_eq!(eq("state.x == 'a'"), None);
    }

    #[test]
    fn conditions_must_be_booleans() {
        let s = scope();
        let yes = Expr::compile(
            "event.payload.n > 2 && event.type.startsWith('edges.')",
            "when",
        )
        .unwrap();
        assert!(yes.eval_bool(&s, "when").unwrap());
        let not_bool = Expr::compile("event.payload.n", "when").unwrap();
        let e = not_bool.eval_bool(&s, "when").unwrap_err();
        assert!(e.message.contains("true or false"), "{e}");
    }

    #[test]
    fn unknown_variables_and_bad_syntax_are_refused_with_their_place() {
        let e = Expr::compile("evnt.payload", "when").unwrap_err();
        assert!(e.message.contains("unknown variable `evnt`"), "{e}");
        assert_eq!(e.at, "when");
        let e = Template::compile(&json!({"a": "{{ event. }}"}), "body").unwrap_err();
        assert_eq!(e.at, "body.a");
        let e = Template::compile_text("x {{ event.id", "id").unwrap_err();
        assert!(e.message.contains("without"), "{e}");
        // Variables a macro binds are not unknown.
        Expr::compile("event.payload.tags.exists(t, t == 'a')", "when").unwrap();
    }

    #[test]
    fn a_missing_key_is_an_evaluation_error_naming_the_expression() {
        let s = scope();
        let e = Expr::compile("event.payload.missing == 1", "when")
            .unwrap()
            .eval_bool(&s, "when")
            .unwrap_err();
        assert!(e.message.contains("event.payload.missing"), "{e}");
    }
}
