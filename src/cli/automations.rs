//! `herald automations`: the automations of a running Herald, from the
//! command line — `apply` a YAML or JSON file (create it, or save it as the
//! next version), `list` them, `show` one with its counters and latest
//! failures, `enable`, `disable` and `delete` one, and `test` a file (or a
//! saved automation) on the history with the server's dry run, printing
//! what it would have done event by event. Exit codes: 0 done; 1 the server
//! refused (an invalid definition, each problem printed with where it is; a
//! version conflict; no such automation) or the file is not YAML or JSON;
//! 2 bad usage, an unreachable server or any other error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

use super::http::{path_segment, Answer, Client};
use super::publish::ServerArgs;

/// A dry run over a long history takes a while.
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
#[command(
    about = "Apply, list, show, switch, delete and test automations",
    after_help = "Exit codes: 0 done (test: it ran, whatever it decided); 1 the server refused \
                  (an invalid definition, each problem printed with where it is; the wrong \
                  version; no such automation; too many) or FILE is not YAML or JSON; 2 bad \
                  usage, an unreachable server or another error."
)]
pub struct AutomationsArgs {
    #[command(subcommand)]
    pub command: AutomationsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AutomationsCommand {
    /// Save a YAML or JSON automation file: create it, or its next version
    Apply(ApplyArgs),
    /// List the automations with their version, whether they run, their trigger
    List(ListArgs),
    /// Show one automation: its definition, counters and latest failures
    Show(ShowArgs),
    /// Switch an automation on: it runs on the events after this
    Enable(NameArgs),
    /// Switch an automation off (it can still be tested)
    Disable(DisableArgs),
    /// Delete an automation (its history stays in the log)
    Delete(NameArgs),
    /// Try a file, or a saved automation, on the history without any effect
    Test(TestArgs),
}

/// The flags every subcommand shares.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Print the server's answer as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The automation, a YAML or JSON file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Save it switched off (to test it in place first)
    #[arg(long)]
    pub disabled: bool,

    /// Refuse the save unless the saved version is N (0: it must be new)
    #[arg(long, value_name = "N")]
    pub expected_version: Option<u32>,

    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The automation's name
    #[arg(value_name = "NAME")]
    pub name: String,

    /// How many of the latest failures, 0 to 1000 (default 20)
    #[arg(long, value_name = "N")]
    pub failures: Option<u32>,

    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The automation's name
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The automation's name
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Why, recorded with the change (1 to 1000 characters)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["file", "name"])))]
pub struct TestArgs {
    /// The automation to try, a YAML or JSON file (saved or not)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Try the saved automation of this name instead (enabled or not)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Only events recorded at or after this RFC 3339 instant
    #[arg(long, value_name = "T1", value_parser = instant)]
    pub from: Option<DateTime<Utc>>,

    /// Only events recorded before this RFC 3339 instant
    #[arg(long, value_name = "T2", value_parser = instant)]
    pub to: Option<DateTime<Utc>>,

    /// Only events after this log position (default: from the start)
    #[arg(long, value_name = "POS")]
    pub after: Option<u64>,

    /// Only events at or before this log position (default: the head)
    #[arg(long, value_name = "POS")]
    pub until: Option<u64>,

    /// At most N decisions, 1 to 10000 (default 1000); the answer says
    /// where to go on
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,

    #[command(flatten)]
    pub common: Common,
}

fn instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 instant (e.g. 2025-01-31T08:00:00Z): {e}"))
}

/// How a command ended.
enum Ended {
    Done,
    Refused,
}

/// Runs `herald automations`; exits with 1 or 2 itself (see the module doc).
pub fn run(args: AutomationsArgs) -> anyhow::Result<()> {
    let outcome = execute(args);
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(Ended::Done) => Ok(()),
        Ok(Ended::Refused) => std::process::exit(1),
        Err(e) => {
            eprintln!("herald: {e}");
            std::process::exit(2);
        }
    }
}

/// `/v1/automations/{name}[/suffix]`, the name percent-encoded.
fn automation_path(name: &str, suffix: &str) -> String {
    format!("/v1/automations/{}{suffix}", path_segment(name))
}

/// The file's document as JSON, or why it is not one: `Err(Ok(problems))`
/// when it does not parse (a refusal, exit 1), `Err(Err(error))` when it
/// cannot be read.
fn read_document(path: &Path) -> Result<Value, Result<Value, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Err(format!("cannot read {}: {e}", path.display())))?;
    herald_automations::definition::parse_document(&text).map_err(|invalid| {
        Ok(json!({
            "detail": format!("{} is not an automation document", path.display()),
            "problems": invalid
                .problems
                .iter()
                .map(|p| json!({"at": p.at, "message": p.message}))
                .collect::<Vec<_>>(),
        }))
    })
}

/// Reads FILE, or prints why it is not YAML or JSON and says so.
fn document_or_refusal(path: &Path, json_out: bool) -> Result<Result<Value, Ended>, String> {
    match read_document(path) {
        Ok(document) => Ok(Ok(document)),
        Err(Err(error)) => Err(error),
        Err(Ok(problem)) => {
            if json_out {
                println!("{problem}");
            } else {
                println!("refused: {}", explain_body(&problem));
            }
            Ok(Err(Ended::Refused))
        }
    }
}

fn short_kind(answer: &Answer) -> &str {
    answer.body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:herald:problem:"))
        .unwrap_or("error")
}

/// A problem's detail (unless its problems say it all) and each problem
/// of the definition, `  at: message`.
fn explain_body(body: &Value) -> String {
    let problems: Vec<String> = body["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let at = p["at"].as_str().unwrap_or_default();
            let message = p["message"].as_str().unwrap_or_default();
            format!(
                "\n  {}: {}",
                if at.is_empty() { "(document)" } else { at },
                // A message over several lines (a CEL error shows where)
                // stays under its place.
                message.trim_end().replace('\n', "\n    ")
            )
        })
        .collect();
    let detail = match body["detail"].as_str() {
        // The server's detail repeats every problem on one line.
        Some(_) if !problems.is_empty() && body.get("type").is_some() => {
            "the automation is not valid".to_owned()
        }
        Some(detail) => detail.to_owned(),
        None => body.to_string(),
    };
    format!("{detail}{}", problems.concat())
}

/// The problem, in words: its status, kind and detail, and each problem of
/// the definition.
fn explain(answer: &Answer) -> String {
    format!(
        "{} ({}): {}",
        answer.status,
        short_kind(answer),
        explain_body(&answer.body)
    )
}

/// Whether a problem is the server's refusal (exit 1) rather than an error
/// of the request or the server (exit 2).
fn is_refusal(answer: &Answer) -> bool {
    answer.status == 409
        || [
            "invalid-automation",
            "automation-version-conflict",
            "automation-limit-reached",
            "not-found",
        ]
        .contains(&short_kind(answer))
}

/// Prints a refusal (exit 1) or turns any other failure into an error.
fn failed(answer: Answer, json_out: bool, refusal: fn(&Answer) -> bool) -> Result<Ended, String> {
    if refusal(&answer) {
        if json_out {
            println!("{}", answer.body);
        } else {
            println!("refused: {}", explain(&answer));
        }
        Ok(Ended::Refused)
    } else {
        Err(explain(&answer))
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

fn execute(args: AutomationsArgs) -> Result<Ended, String> {
    use reqwest::Method;
    match args.command {
        AutomationsCommand::Apply(args) => {
            let json_out = args.common.json;
            let document = match document_or_refusal(&args.file, json_out)? {
                Ok(document) => document,
                Err(ended) => return Ok(ended),
            };
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            // The saved version, to tell a new version from a switch in
            // words; the answer alone says neither.
            let before = document["name"]
                .as_str()
                .filter(|_| !json_out)
                .and_then(|name| {
                    let path = automation_path(name, "?limit=0");
                    client.send(Method::GET, &path, None).ok()
                })
                .filter(|a| a.status == 200)
                .and_then(|a| a.body["version"].as_u64());
            let mut path = format!("/v1/automations?enabled={}", !args.disabled);
            if let Some(expected) = args.expected_version {
                path.push_str(&format!("&expected_version={expected}"));
            }
            let answer = client.send(Method::POST, &path, Some(document))?;
            if !matches!(answer.status, 200 | 201) {
                return failed(answer, json_out, is_refusal);
            }
            if json_out {
                println!("{}", answer.body);
                return Ok(Ended::Done);
            }
            let name = text(&answer.body, "name");
            let version = &answer.body["version"];
            let off = if answer.body["enabled"] == false {
                " (disabled)"
            } else {
                ""
            };
            if answer.status == 201 {
                println!("created {name} version {version}{off}");
            } else if answer.body["changed"] == true && before == version.as_u64() {
                let state = if answer.body["enabled"] == false {
                    "disabled"
                } else {
                    "enabled"
                };
                println!("{state} {name} version {version} (the definition is unchanged)");
            } else if answer.body["changed"] == true {
                println!("updated {name} to version {version}{off}");
            } else {
                println!("unchanged {name} version {version}{off}");
            }
            Ok(Ended::Done)
        }
        AutomationsCommand::List(args) => {
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            let answer = client.send(Method::GET, "/v1/automations", None)?;
            if answer.status != 200 {
                return failed(answer, args.common.json, is_refusal);
            }
            if args.common.json {
                println!("{}", answer.body);
                return Ok(Ended::Done);
            }
            let mut rows = vec![[
                "NAME".to_owned(),
                "VERSION".to_owned(),
                "ENABLED".to_owned(),
                "TRIGGER".to_owned(),
            ]];
            for entry in answer.body["automations"].as_array().into_iter().flatten() {
                let mut trigger = text(entry, "trigger").to_owned();
                if entry["runnable"] == false {
                    trigger.push_str(" (not runnable)");
                }
                rows.push([
                    text(entry, "name").to_owned(),
                    entry["version"].to_string(),
                    entry["enabled"].to_string(),
                    trigger,
                ]);
            }
            print_table(&rows);
            Ok(Ended::Done)
        }
        AutomationsCommand::Show(args) => {
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            let mut path = automation_path(&args.name, "");
            if let Some(n) = args.failures {
                path.push_str(&format!("?limit={n}"));
            }
            let answer = client.send(Method::GET, &path, None)?;
            if answer.status != 200 {
                return failed(answer, args.common.json, is_refusal);
            }
            if args.common.json {
                println!("{}", answer.body);
            } else {
                print_automation(&answer.body);
            }
            Ok(Ended::Done)
        }
        AutomationsCommand::Enable(args) => {
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            let path = automation_path(&args.name, "/enable");
            let answer = client.send(Method::POST, &path, None)?;
            switched(answer, args.common.json, "enabled")
        }
        AutomationsCommand::Disable(args) => {
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            let path = automation_path(&args.name, "/disable");
            let body = args.reason.as_ref().map(|r| json!({"reason": r}));
            let answer = client.send(Method::POST, &path, body)?;
            switched(answer, args.common.json, "disabled")
        }
        AutomationsCommand::Delete(args) => {
            let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
            let answer = client.send(Method::DELETE, &automation_path(&args.name, ""), None)?;
            if answer.status != 200 {
                return failed(answer, args.common.json, is_refusal);
            }
            if args.common.json {
                println!("{}", answer.body);
            } else {
                println!(
                    "deleted {} (it was at version {})",
                    text(&answer.body, "name"),
                    answer.body["version"]
                );
            }
            Ok(Ended::Done)
        }
        AutomationsCommand::Test(args) => test(args),
    }
}

/// What `enable` and `disable` print.
fn switched(answer: Answer, json_out: bool, state: &str) -> Result<Ended, String> {
    if answer.status != 200 {
        return failed(answer, json_out, is_refusal);
    }
    if json_out {
        println!("{}", answer.body);
    } else if answer.body["changed"] == true {
        println!(
            "{state} {} (version {})",
            text(&answer.body, "name"),
            answer.body["version"]
        );
    } else {
        println!(
            "{} was {state} already; nothing changed",
            text(&answer.body, "name")
        );
    }
    Ok(Ended::Done)
}

/// Rows in columns as wide as their widest cell, two spaces apart.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `show`: the automation, its definition as YAML, its counters and its
/// latest failures.
fn print_automation(doc: &Value) {
    println!("name: {}", text(doc, "name"));
    println!("version: {}", doc["version"]);
    println!("enabled: {}", doc["enabled"]);
    println!("trigger: {}", text(doc, "trigger"));
    if doc["runnable"] == false {
        println!(
            "runnable: false ({})",
            doc["problem"]
                .as_str()
                .unwrap_or("it does not compile here")
        );
    }
    println!(
        "applied: {} (position {})",
        text(doc, "applied_at"),
        doc["applied_position"]
    );
    println!();
    println!("definition:");
    for line in definition_yaml(&doc["definition"]).lines() {
        println!("  {line}");
    }
    let stats = &doc["stats"];
    if stats.is_object() {
        println!();
        println!("stats (as of position {}):", stats["as_of_position"]);
        println!(
            "  matched {}, acted {}, failed {}, cancelled {}",
            stats["matched"], stats["acted"], stats["failed"], stats["cancelled"]
        );
        if let Some(error) = stats["last_error"].as_str() {
            println!(
                "  last error ({}): {error}",
                stats["last_error_at"].as_str().unwrap_or("when unknown")
            );
        }
    }
    if let Some(failures) = doc["failures"].as_array() {
        println!();
        if failures.is_empty() {
            println!("failures: none");
        } else {
            println!("failures (latest {}, oldest first):", failures.len());
            for f in failures {
                println!(
                    "  {} {} v{} {}: {} (trigger {})",
                    f["position"],
                    text(f, "recorded_at"),
                    f["version"],
                    text(f, "action"),
                    text(f, "error"),
                    text(f, "trigger_event")
                );
            }
        }
    }
}

/// The definition as YAML, as it would be written: its fields in the
/// document's order (JSON gives them sorted), what they carry (bodies,
/// payloads) as given.
fn definition_yaml(definition: &Value) -> String {
    serde_yaml_ng::to_string(&yaml_value(definition, Some(TOP_ORDER))).unwrap_or_else(|_| {
        serde_json::to_string_pretty(definition).unwrap_or_else(|_| definition.to_string())
    })
}

/// The order of a document's top-level fields, and of the fields within;
/// any other key comes after, sorted.
const TOP_ORDER: &[&str] = &["name", "description", "trigger", "when", "with", "actions"];
const FIELD_ORDER: &[&str] = &[
    "event",
    "absence",
    "schedule",
    "command",
    "schedule_timer",
    "cancel_timer",
    "webhook",
    "start",
    "missing",
    "within",
    "correlate",
    "every",
    "types",
    "stream",
    "url",
    "domain",
    "id",
    "type",
    "version",
    "name",
    "at",
    "after",
    "label",
    "reason",
    "body",
    "payload",
    "deliver",
    "when",
    "on_refused",
];

/// `value` as YAML, its keys in `order`; `None` inside what a field
/// carries (a body, a payload), whose keys keep their order.
fn yaml_value(value: &Value, order: Option<&[&str]>) -> serde_yaml_ng::Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            if let Some(order) = order {
                keys.sort_by_key(|k| order.iter().position(|f| f == k).unwrap_or(order.len()));
            }
            let inner = order.map(|_| FIELD_ORDER);
            let mut out = serde_yaml_ng::Mapping::new();
            for key in keys {
                let carried = matches!(key.as_str(), "body" | "payload" | "deliver" | "headers");
                let child = if key == "with" {
                    // Its keys are the lookups' names; each is a lookup.
                    let lookups = map[key]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone().into(), yaml_value(v, inner)))
                        .collect();
                    serde_yaml_ng::Value::Mapping(lookups)
                } else {
                    yaml_value(&map[key], if carried { None } else { inner })
                };
                out.insert(key.clone().into(), child);
            }
            serde_yaml_ng::Value::Mapping(out)
        }
        Value::Array(items) => serde_yaml_ng::Value::Sequence(
            items
                .iter()
                .map(|v| yaml_value(v, order.map(|_| FIELD_ORDER)))
                .collect(),
        ),
        other => serde_yaml_ng::to_value(other).unwrap_or(serde_yaml_ng::Value::Null),
    }
}

/// `test`: what the dry run says would have been done, one decision after
/// the other.
fn test(args: TestArgs) -> Result<Ended, String> {
    let json_out = args.common.json;
    let mut body = serde_json::Map::new();
    match (&args.file, &args.name) {
        (Some(file), None) => match document_or_refusal(file, json_out)? {
            Ok(document) => {
                body.insert("definition".into(), document);
            }
            Err(ended) => return Ok(ended),
        },
        (None, Some(name)) => {
            body.insert("name".into(), json!(name));
        }
        _ => return Err("name exactly one of FILE and --name".to_owned()),
    }
    if let Some(from) = args.from {
        body.insert("from".into(), json!(from));
    }
    if let Some(to) = args.to {
        body.insert("to".into(), json!(to));
    }
    if let Some(after) = args.after {
        body.insert("after".into(), json!(after));
    }
    if let Some(until) = args.until {
        body.insert("until".into(), json!(until));
    }
    if let Some(limit) = args.limit {
        body.insert("limit".into(), json!(limit));
    }
    let client = Client::new(&args.common.server, DRY_RUN_TIMEOUT)?;
    let answer = client.send(
        reqwest::Method::POST,
        "/v1/automations/dry-run",
        Some(Value::Object(body)),
    )?;
    if answer.status != 200 {
        // Only the definition's refusal is a "no"; a missing name, a bad
        // stretch or limit is bad usage.
        return failed(answer, json_out, |a| short_kind(a) == "invalid-automation");
    }
    if json_out {
        println!("{}", answer.body);
        return Ok(Ended::Done);
    }
    let report = &answer.body;
    let decisions = report["decisions"].as_array().cloned().unwrap_or_default();
    for decision in &decisions {
        let trigger = &decision["trigger"];
        println!(
            "{} {} {} condition={}",
            trigger["position"],
            text(trigger, "type"),
            text(trigger, "stream"),
            decision["condition"] == true
        );
        if let Some(error) = decision["error"].as_str() {
            println!("  error: {error}");
        }
        for action in decision["actions"].as_array().into_iter().flatten() {
            print_action(action, 1, "");
        }
    }
    for pending in report["pending"].as_array().into_iter().flatten() {
        let trigger = &pending["trigger"];
        println!(
            "pending: {} {} {} correlation={} due {}",
            trigger["position"],
            text(trigger, "type"),
            text(trigger, "stream"),
            pending["correlation"],
            text(pending, "due_at")
        );
    }
    if let Some(next) = report["next_after"].as_u64() {
        println!("next_after: {next} (a limit stopped the run; go on with --after {next})");
    }
    println!(
        "{} decision{}, {} event{} scanned",
        decisions.len(),
        if decisions.len() == 1 { "" } else { "s" },
        report["scanned"],
        if report["scanned"] == 1 { "" } else { "s" }
    );
    Ok(Ended::Done)
}

/// One planned action (`  actions[0] command tickets/T-1 append_note
/// {...}`) and, deeper, its fallbacks (`if refused: …`).
fn print_action(planned: &Value, depth: usize, prefix: &str) {
    let indent = "  ".repeat(depth);
    let path = text(planned, "path");
    let what = if let Some(error) = planned["error"].as_str() {
        format!("error: {error}")
    } else if planned["condition"] == false {
        "(condition false)".to_owned()
    } else {
        let a = &planned["action"];
        match text(a, "kind") {
            "command" => format!(
                "command {}/{} {} {}",
                text(a, "domain"),
                text(a, "id"),
                text(a, "name"),
                a["body"]
            ),
            "event" => {
                let version = a["version"]
                    .as_u64()
                    .map(|v| format!(" v{v}"))
                    .unwrap_or_default();
                format!(
                    "event {} {}{version} {}",
                    text(a, "stream"),
                    text(a, "type"),
                    a["payload"]
                )
            }
            "schedule_timer" => format!(
                "schedule_timer timers/{} schedule {}",
                text(a, "id"),
                a["body"]
            ),
            "cancel_timer" => format!("cancel_timer timers/{} cancel {}", text(a, "id"), a["body"]),
            // Its headers may carry credentials: not shown.
            "webhook" => format!("webhook {} POST {}", text(a, "url"), a["body"]),
            "" => "(nothing)".to_owned(),
            other => format!("{other} {a}"),
        }
    };
    println!("{indent}{prefix}{path} {what}");
    match planned["on_refused"].as_array() {
        Some(fallbacks) if fallbacks.is_empty() => {
            println!("{indent}  if refused: nothing (the refusal is ignored)");
        }
        Some(fallbacks) => {
            for fallback in fallbacks {
                print_action(fallback, depth + 1, "if refused: ");
            }
        }
        None => {}
    }
}
