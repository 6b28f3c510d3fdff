//! `herald schemas`: the schema registry of a running Herald, from the
//! command line — `register` a JSON Schema file as the next version of an
//! event type, `check` whether it would be accepted without registering it
//! (for a producer's CI), `list` the types, `show` one version, `deprecate`
//! one, set a type's `compatibility` rule. Exit codes: 0 done (or accepted); 1 the registry refused (the
//! reasons are printed, each incompatibility with its path); 2 bad usage,
//! an unreachable server or any other error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::publish::ServerArgs;

#[derive(Debug, Args)]
#[command(
    about = "Register, check, list, show and deprecate the event types producers bring",
    after_help = "Exit codes: 0 done (check: it would be accepted); 1 the registry refused \
                  (incompatible, invalid, reserved, over a limit, or the wrong version); 2 bad \
                  usage, an unreachable server or another error."
)]
pub struct SchemasArgs {
    #[command(subcommand)]
    pub command: SchemasCommand,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Register a JSON Schema file as the next version of an event type
    Register(Registration),
    /// Tell whether a JSON Schema file would be accepted, registering nothing
    Check(Registration),
    /// List the event types (built-in and registered) and their versions
    List(ListArgs),
    /// Show one version of an event type
    Show(ShowArgs),
    /// Stop a version from being published (stored events still read)
    Deprecate(DeprecateArgs),
    /// Set the rule a type's next version is checked by
    Compatibility(CompatibilityArgs),
}

/// What `register` and `check` send.
#[derive(Debug, Args)]
pub struct Registration {
    /// The JSON Schema (2020-12) file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The event type, domain.name
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,

    /// The version meant; refused unless it is the next one
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,

    /// The type's rule from this version on: backward, forward, full or none
    #[arg(long, value_name = "RULE")]
    pub compatibility: Option<String>,

    /// A JSON file with the upcaster from the previous version
    /// ({"rename": {...}, "remove": [...], "defaults": {...}, "patch": [...]})
    #[arg(long, value_name = "FILE")]
    pub upcaster: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Print the server's answer as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this domain's types
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Print the server's answer as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event type, domain.name
    #[arg(value_name = "TYPE")]
    pub event_type: String,

    /// A version number, or latest
    #[arg(value_name = "VERSION", default_value = "latest")]
    pub version: String,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DeprecateArgs {
    /// The event type, domain.name
    #[arg(value_name = "TYPE")]
    pub event_type: String,

    /// The version to deprecate
    #[arg(value_name = "VERSION")]
    pub version: u32,

    /// Why, recorded with the deprecation
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct CompatibilityArgs {
    /// The event type, domain.name
    #[arg(value_name = "TYPE")]
    pub event_type: String,

    /// backward, forward, full or none
    #[arg(value_name = "RULE")]
    pub rule: String,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// How a command ended.
enum Ended {
    Done,
    Refused,
}

/// Runs `herald schemas`; exits with 1 or 2 itself (see the module doc).
pub fn run(args: SchemasArgs) -> anyhow::Result<()> {
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

/// One request's answer: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

struct Client {
    http: reqwest::Client,
    base: String,
    server: ServerArgs,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new(server: &ServerArgs) -> Result<Self, String> {
        let base = server.base()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        Ok(Self {
            http,
            base,
            server: server.clone(),
            runtime,
        })
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = self.server.key() {
            request = request.bearer_auth(key.expose());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("could not reach {url}: {e}"))?;
            let status = response.status().as_u16();
            let text = response
                .text()
                .await
                .map_err(|e| format!("reading the answer of {url}: {e}"))?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok(Answer { status, body })
        })
    }
}

fn read_json(path: &PathBuf, what: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("the {what} {} is not JSON: {e}", path.display()))
}

fn request_body(args: &Registration) -> Result<Value, String> {
    let mut body = json!({
        "type": args.event_type,
        "schema": read_json(&args.file, "schema")?,
    });
    if let Some(version) = args.version {
        body["version"] = json!(version);
    }
    if let Some(rule) = &args.compatibility {
        let rule: herald_events::Compatibility = rule.parse()?;
        body["compatibility"] = json!(rule.as_str());
    }
    if let Some(path) = &args.upcaster {
        body["upcaster"] = read_json(path, "upcaster")?;
    }
    Ok(body)
}

/// Whether a problem is the registry's refusal (exit 1) rather than an
/// error of the request or the server (exit 2).
fn is_refusal(answer: &Answer) -> bool {
    let kind = answer.body["type"].as_str().unwrap_or_default();
    [
        "invalid-schema",
        "incompatible-schema",
        "schema-version-conflict",
        "reserved-event-type",
        "schema-limit-reached",
        "invalid-request",
    ]
    .iter()
    .any(|k| kind == format!("urn:herald:problem:{k}"))
}

/// The problem, in words: its detail and each incompatibility's path.
fn explain(answer: &Answer) -> String {
    let detail = answer.body["detail"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string());
    let mut text = format!("{} ({}): {detail}", answer.status, short_kind(answer));
    for problem in answer.body["incompatibilities"]
        .as_array()
        .into_iter()
        .flatten()
    {
        text.push_str(&format!(
            "\n  {}: {}",
            problem["path"].as_str().unwrap_or_default(),
            problem["reason"].as_str().unwrap_or_default()
        ));
    }
    text
}

fn short_kind(answer: &Answer) -> &str {
    answer.body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:herald:problem:"))
        .unwrap_or("error")
}

/// Prints a refusal (exit 1) or turns any other failure into an error.
fn failed(answer: Answer, json_out: bool) -> Result<Ended, String> {
    if is_refusal(&answer) {
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

fn execute(args: SchemasArgs) -> Result<Ended, String> {
    use reqwest::Method;
    match args.command {
        SchemasCommand::Register(args) => {
            let client = Client::new(&args.server)?;
            let answer = client.send(Method::POST, "/v1/schemas", Some(request_body(&args)?))?;
            if !matches!(answer.status, 200 | 201) {
                return failed(answer, args.json);
            }
            if args.json {
                println!("{}", answer.body);
            } else if answer.body["registered"] == true {
                println!(
                    "registered {} v{}{}",
                    args.event_type,
                    answer.body["version"],
                    if answer.body["reads_previous"] == true {
                        " (older events read as it unchanged)"
                    } else {
                        ""
                    }
                );
            } else {
                println!(
                    "{} v{} is already registered as given; nothing changed",
                    args.event_type, answer.body["version"]
                );
            }
            Ok(Ended::Done)
        }
        SchemasCommand::Check(args) => {
            let client = Client::new(&args.server)?;
            let answer = client.send(
                Method::POST,
                "/v1/schemas/check",
                Some(request_body(&args)?),
            )?;
            if answer.status != 200 {
                return failed(answer, args.json);
            }
            if args.json {
                println!("{}", answer.body);
            } else if answer.body["new_version"] == true {
                println!(
                    "accepted: {} would be registered as v{}",
                    args.event_type, answer.body["version"]
                );
            } else {
                println!(
                    "accepted: {} v{} is already registered as given",
                    args.event_type, answer.body["version"]
                );
            }
            Ok(Ended::Done)
        }
        SchemasCommand::List(args) => {
            let client = Client::new(&args.server)?;
            let path = match &args.domain {
                Some(domain) => format!(
                    "/v1/schemas?domain={}",
                    form_urlencoded::byte_serialize(domain.as_bytes()).collect::<String>()
                ),
                None => "/v1/schemas".to_owned(),
            };
            let answer = client.send(Method::GET, &path, None)?;
            if answer.status != 200 {
                return Err(explain(&answer));
            }
            if args.json {
                println!("{}", answer.body);
                return Ok(Ended::Done);
            }
            for entry in answer.body["types"].as_array().into_iter().flatten() {
                let versions: Vec<String> = entry["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        let mut text = format!("v{}", v["version"]);
                        if v["deprecated"] == true {
                            text.push_str(" (deprecated)");
                        }
                        text
                    })
                    .collect();
                let rule = entry["compatibility"]
                    .as_str()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default();
                println!(
                    "{}\t{}{rule}\t{}",
                    entry["type"].as_str().unwrap_or_default(),
                    entry["origin"].as_str().unwrap_or_default(),
                    versions.join(" ")
                );
            }
            Ok(Ended::Done)
        }
        SchemasCommand::Show(args) => {
            let client = Client::new(&args.server)?;
            let answer = client.send(
                Method::GET,
                &format!("/v1/schemas/{}/{}", args.event_type, args.version),
                None,
            )?;
            if answer.status != 200 {
                return Err(explain(&answer));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&answer.body).unwrap_or_default()
            );
            Ok(Ended::Done)
        }
        SchemasCommand::Compatibility(args) => {
            let rule: herald_events::Compatibility = args.rule.parse()?;
            let client = Client::new(&args.server)?;
            let answer = client.send(
                Method::PUT,
                &format!("/v1/schemas/{}/compatibility", args.event_type),
                Some(json!({"compatibility": rule.as_str()})),
            )?;
            if answer.status != 200 {
                return Err(explain(&answer));
            }
            if answer.body["changed"] == true {
                println!("{} is now {rule} compatible", args.event_type);
            } else {
                println!("{} was {rule} compatible already", args.event_type);
            }
            Ok(Ended::Done)
        }
        SchemasCommand::Deprecate(args) => {
            let client = Client::new(&args.server)?;
            let body = args.reason.as_ref().map(|r| json!({"reason": r}));
            let answer = client.send(
                Method::POST,
                &format!("/v1/schemas/{}/{}/deprecate", args.event_type, args.version),
                body,
            )?;
            if answer.status != 200 {
                return Err(explain(&answer));
            }
            if answer.body["changed"] == true {
                println!("deprecated {} v{}", args.event_type, args.version);
            } else {
                println!(
                    "{} v{} was already deprecated",
                    args.event_type, args.version
                );
            }
            Ok(Ended::Done)
        }
    }
}
