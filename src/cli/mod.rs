//! The `herald` command line: one module per subcommand.

pub(crate) mod audit;
mod automations;
mod http;
mod keys;
mod publish;
pub mod replay;
mod schemas;
pub mod serve;
mod subjects;
mod tail;
mod tool;

use clap::{Parser, Subcommand};

use crate::config::{LogArgs, ServeArgs};

/// Herald: an event-sourced actor system on a message broker.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API over the event store (embedded by default).
    Serve(Box<ServeArgs>),
    /// Manage API keys.
    Keys(keys::KeysArgs),
    /// Publish events from a JSONL file or stdin to a running Herald.
    Publish(publish::PublishArgs),
    /// Follow events live and print each as a JSON line.
    Tail(tail::TailArgs),
    /// Check the hash chain, anchor its head, export the trail.
    Audit(audit::AuditArgs),
    /// Replay history: an aggregate's state at a moment, a read model's
    /// rebuild, a range republished to the broker.
    Replay(replay::ReplayArgs),
    /// The schema registry: register, check, list, show and deprecate the
    /// event types producers bring.
    Schemas(schemas::SchemasArgs),
    /// Automations: apply YAML or JSON files, list, show, enable, disable,
    /// delete, and test them on the history.
    Automations(automations::AutomationsArgs),
    /// Forget a data subject: destroy its keys (its personal fields then
    /// read as [forgotten] everywhere; the hash chain still verifies).
    Forget(subjects::ForgetArgs),
    /// A data subject's record: `export` everything held about one.
    Subject(subjects::SubjectArgs),
    /// Personal data keys: `new-master-key`, `rewrap` after a rotation.
    Personal(subjects::PersonalArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.log, *args),
        Command::Keys(args) => keys::run(&cli.log, args),
        Command::Publish(args) => publish::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Audit(args) => audit::run(&cli.log, args),
        Command::Replay(args) => replay::run(&cli.log, args),
        Command::Schemas(args) => schemas::run(args),
        Command::Automations(args) => automations::run(args),
        Command::Forget(args) => subjects::forget(args),
        Command::Subject(args) => subjects::subject(args),
        Command::Personal(args) => subjects::personal(&cli.log, args),
    }
}
