//! `herald replay`: history put to work. `state` shows an aggregate as it
//! was at a moment, `projection` rebuilds a read model blue-green (or builds
//! one beside the serving one for inspection, or diffs a fresh build with
//! it), and `publish` republishes a range of the log to a broker topic for
//! a downstream consumer, each message marked as a replay.
//!
//! Each opens the store `herald serve` uses (the same `--data-dir`,
//! `--store`, `--config` and `HERALD_*` variables) and may run beside it.
//! `--json` prints one JSON document on stdout for scripts; long work shows
//! a progress bar on stderr when stderr is a terminal. Exit codes: 0 done,
//! 1 the answer is "no" (no state at that moment, read models differ),
//! 2 anything else (bad input, unknown domain or read model, a store or
//! broker that cannot be reached).

mod projection;
mod publish;
pub mod state;

use clap::{Args, Subcommand};

use crate::config::{LogArgs, StoreArgs};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 the answer is no (no state at that moment, read models \
                  differ); 2 bad input or a failure."
)]
pub struct ReplayArgs {
    /// The store to read, before or after the subcommand.
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: ReplayCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// An aggregate's state at a moment, and the events that made it
    State(state::StateArgs),
    /// Rebuild a read model blue-green, build one for inspection
    /// (--to-position), or diff a fresh build with the serving one (--diff)
    Projection(projection::ProjectionArgs),
    /// Republish a range of the log to a broker topic, marked as a replay
    Publish(publish::PublishArgs),
}

/// Why `herald replay` did not succeed, and its exit code.
pub(crate) use super::tool::usage;

/// The answer is "no": exit code 1.
pub(crate) fn negative(message: impl Into<String>) -> anyhow::Error {
    super::tool::no(message)
}

/// Runs `herald replay` (exit codes: see the module doc).
pub fn run(log: &LogArgs, args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.store.config.clone();
    let store = args.store;
    super::tool::run(log, config.as_deref(), |file| async move {
        match args.command {
            ReplayCommand::State(a) => state::run(a, &store, &file).await,
            ReplayCommand::Projection(a) => projection::run(a, &store, &file).await,
            ReplayCommand::Publish(a) => publish::run(a, &store, &file).await,
        }
    })
}

/// A progress bar over log positions.
pub(crate) fn progress_bar(label: &str, length: u64) -> indicatif::ProgressBar {
    super::tool::progress_bar(label, length, "position")
}

/// Prints one JSON document on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
