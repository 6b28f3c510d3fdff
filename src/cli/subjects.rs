//! `herald forget SUBJECT` and `herald subject export SUBJECT`: erasure
//! and access requests of data subjects against a running Herald, and
//! `herald personal new-master-key`, which prints a fresh master key.
//! Exit codes: 0 done; 1 the server refused (no right to, a subject of the
//! wrong length); 2 bad usage, an unreachable server or another error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::http::{path_segment, Client};
use super::publish::ServerArgs;

#[derive(Debug, Args)]
#[command(
    about = "Forget a subject: destroy its keys, so its personal fields read as [forgotten] everywhere",
    after_help = "Needs an API key with personal:forget. The erasure is recorded as a \
                  subjects.subject_forgotten event (the subject's keyed reference, the keys, who, \
                  why); the hash chain still verifies. Exit codes: 0 done; 1 the server refused; \
                  2 bad usage, an unreachable server or another error."
)]
pub struct ForgetArgs {
    /// The subject's id, as the events name it (a customer id, an author)
    pub subject: String,

    /// Why (recorded in the erasure event: no personal data here)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(about = "A data subject's record")]
pub struct SubjectArgs {
    #[command(subcommand)]
    pub command: SubjectCommand,
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Everything Herald holds about a subject, decrypted, as JSON (needs personal:read)
    Export(SubjectExportArgs),
}

#[derive(Debug, Args)]
pub struct SubjectExportArgs {
    /// The subject's id
    pub subject: String,

    /// Where to write: a file, or `-` for stdout
    #[arg(long, short, default_value = "-", value_name = "PATH")]
    pub output: PathBuf,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(about = "Personal data keys")]
pub struct PersonalArgs {
    #[command(subcommand)]
    pub command: PersonalCommand,
}

#[derive(Debug, Subcommand)]
pub enum PersonalCommand {
    /// Print a new random master key (base64), for HERALD_MASTER_KEY
    NewMasterKey,
    /// Re-wrap every subject's key under HERALD_MASTER_KEY (a rotation: the
    /// old key in HERALD_PREVIOUS_MASTER_KEYS); events are not rewritten
    Rewrap(Box<RewrapArgs>),
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    pub store: crate::config::StoreArgs,

    #[command(flatten)]
    pub master: crate::config::MasterKeyArgs,
}

/// Sends one request; answers the status and the JSON body.
fn send(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    // An access request reads the tenant's whole log.
    let answer = Client::new(server, Duration::from_secs(600))?.send(method, path, body)?;
    Ok((answer.status, answer.body))
}

fn finish(outcome: Result<bool, String>) -> anyhow::Result<()> {
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("herald: {e}");
            std::process::exit(2);
        }
    }
}

fn refused(status: u16, body: &Value) -> Result<bool, String> {
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    if (400..500).contains(&status) {
        eprintln!("herald: refused ({status}): {detail}");
        Ok(false)
    } else {
        Err(format!("the server failed ({status}): {detail}"))
    }
}

pub fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    finish((|| {
        let body = args.reason.as_ref().map(|r| json!({ "reason": r }));
        let (status, answer) = send(
            &args.server,
            reqwest::Method::POST,
            &format!("/v1/subjects/{}/forget", path_segment(&args.subject)),
            body,
        )?;
        if status != 200 {
            return refused(status, &answer);
        }
        let keys = answer
            .get("keys_destroyed")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        println!(
            "forgotten: subject {} ({} key{} destroyed now), recorded at position {}",
            answer
                .get("subject_ref")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            keys,
            if keys == 1 { "" } else { "s" },
            answer.get("position").unwrap_or(&Value::Null)
        );
        Ok(true)
    })())
}

pub fn subject(args: SubjectArgs) -> anyhow::Result<()> {
    match args.command {
        SubjectCommand::Export(args) => finish((|| {
            let (status, answer) = send(
                &args.server,
                reqwest::Method::GET,
                &format!("/v1/subjects/{}/events", path_segment(&args.subject)),
                None,
            )?;
            if status != 200 {
                return refused(status, &answer);
            }
            let text = serde_json::to_string_pretty(&answer).expect("JSON serializes");
            if args.output.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(&args.output, format!("{text}\n"))
                    .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
                let events = answer
                    .get("events")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                eprintln!("{events} events written to {}", args.output.display());
            }
            Ok(true)
        })()),
    }
}

pub fn personal(log: &crate::config::LogArgs, args: PersonalArgs) -> anyhow::Result<()> {
    match args.command {
        PersonalCommand::NewMasterKey => {
            println!("{}", herald_privacy::MasterKey::generate().to_base64());
            Ok(())
        }
        PersonalCommand::Rewrap(args) => {
            let config = args.store.config.clone();
            super::tool::run(log, config.as_deref(), |file| async move {
                let master = crate::config::master_source(&args.master)
                    .map_err(|e| super::tool::usage(format!("{e:#}")))?;
                if matches!(master, herald_privacy::MasterSource::Stored) {
                    return Err(super::tool::usage(
                        "set HERALD_MASTER_KEY (the new key) and HERALD_PREVIOUS_MASTER_KEYS (the old ones)",
                    ));
                }
                let store = super::audit::open_store(&args.store, &file).await?;
                let registry = herald_events::EventRegistry::builtin()?;
                let privacy =
                    herald_privacy::Privacy::open(std::sync::Arc::clone(&store), registry, master)
                        .await?;
                let done = privacy.rewrap_all().await?;
                println!(
                    "re-wrapped {done} subject key{} under master key {}",
                    if done == 1 { "" } else { "s" },
                    privacy.master_id()
                );
                store.close().await;
                Ok(())
            })
        }
    }
}
