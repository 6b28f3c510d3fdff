//! `herald audit`: tamper evidence and the audit trail. `verify` walks the
//! hash chain and reports the first position where it breaks and how
//! (edited, deleted, inserted, reordered, truncated; the rules are in
//! `docs/hash-chain.md` and `herald_store::audit::verify`), `anchor` prints
//! the log's head to keep outside the system for `verify --anchor`, and
//! `export` writes events, filtered, as JSON lines or CSV.
//!
//! Each opens the store `herald serve` uses (the same `--data-dir`,
//! `--store`, `--config` and `HERALD_*` variables) and may run beside it.
//! `--json` prints one JSON document on stdout for scripts; long walks show
//! a progress bar on stderr when stderr is a terminal. Exit codes: 0 intact
//! or done, 1 the chain is broken (or a row no longer reads as an event),
//! 2 anything else (bad input, a store that cannot be reached), so a script
//! can tell "tampered" from "could not check".

pub(crate) mod export;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use herald_events::Position;
use herald_store::audit::{Anchor, AuditRow, RowFilter, VerifyOptions, VerifyReport};
use herald_store::EventStore;
use serde_json::json;

use crate::config::{store_settings, FileConfig, LogArgs, StoreArgs};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 intact (or done); 1 the chain is broken, or a row no longer \
                  reads as an event; 2 bad input or a failure (a store that cannot be reached)."
)]
pub struct AuditArgs {
    /// The store to read, before or after the subcommand.
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; report the first position where it breaks, and how
    Verify(VerifyArgs),
    /// Print the log's head (position:hash) to keep outside the system
    Anchor(AnchorArgs),
    /// Write events, filtered, as JSON lines or CSV
    Export(export::ExportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// First position to check; the stored hash of the event before it is
    /// taken on trust [default: 1]
    #[arg(long, value_name = "P")]
    pub from: Option<u64>,

    /// A head kept outside the system (from `herald audit anchor`):
    /// `POSITION:HASH`, a bare HASH, or a file holding either or the
    /// `--json` form; catches a truncated tail
    #[arg(long, value_name = "HEX|FILE")]
    pub anchor: Option<String>,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AnchorArgs {
    /// Print the anchor as JSON
    #[arg(long)]
    pub json: bool,
}

/// Why `herald audit` did not succeed, and its exit code.
pub(crate) use super::tool::usage;

/// The log is broken: exit code 1.
pub(crate) fn broken(message: impl Into<String>) -> anyhow::Error {
    super::tool::no(message)
}

/// Runs `herald audit` (exit codes: see the module doc).
pub fn run(log: &LogArgs, args: AuditArgs) -> anyhow::Result<()> {
    let config = args.store.config.clone();
    let store = args.store;
    super::tool::run(log, config.as_deref(), |file| async move {
        match args.command {
            AuditCommand::Verify(a) => verify(a, &store, &file).await,
            AuditCommand::Anchor(a) => anchor(a, &store, &file).await,
            AuditCommand::Export(a) => export::run(a, &store, &file).await,
        }
    })
}

/// Opens the store the flags name. The embedded store must exist already:
/// opening creates it, and an auditor who mistyped a directory must not be
/// told that an empty log is intact.
pub(crate) async fn open_store(
    args: &StoreArgs,
    file: &FileConfig,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let settings = store_settings(args, file).map_err(|e| usage(format!("{e:#}")))?;
    if let herald_store::StoreLocation::Embedded { data_dir } = &settings.location {
        let path = data_dir.join(herald_store::embedded::FILE_NAME);
        if !path.is_file() {
            return Err(usage(format!(
                "no embedded store at {} (give --data-dir, or --store for Postgres)",
                path.display()
            )));
        }
    }
    herald_store::open(settings)
        .await
        .context("opening the event store")
}

/// A progress bar over log positions.
pub(crate) fn progress_bar(label: &str, length: u64) -> indicatif::ProgressBar {
    super::tool::progress_bar(label, length, "events")
}

/// The anchor a flag names: the text itself, or a file holding it.
fn read_anchor(value: &str) -> anyhow::Result<Anchor> {
    let text_error = match Anchor::parse(value) {
        Ok(anchor) => return Ok(anchor),
        Err(e) => e,
    };
    let path = Path::new(value);
    if !path.is_file() {
        return Err(usage(format!(
            "--anchor {value:?} is neither an anchor ({text_error}) nor a readable file"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the anchor file {value}: {e}")))?;
    Anchor::parse(&text).map_err(|e| usage(format!("the anchor file {value}: {e}")))
}

async fn verify(args: VerifyArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    // Bad input is told before any store is opened.
    let anchor = args.anchor.as_deref().map(read_anchor).transpose()?;
    let from = args.from.unwrap_or(1);
    let store = open_store(store, file).await?;
    let result = async {
        let head = store.head().await.context("reading the log head")?;
        let bar = progress_bar(
            "verify",
            head.position.get().saturating_sub(from.max(1)) + 1,
        );
        let progress = bar.clone();
        let report = herald_store::audit::verify(
            Arc::clone(&store),
            VerifyOptions {
                from: Position(from),
                anchor,
                ..VerifyOptions::default()
            },
            Box::new(move |walked| progress.set_position(walked)),
        )
        .await;
        bar.finish_and_clear();
        report.map_err(|e| match e {
            herald_store::StoreError::InvalidQuery { reason } => usage(reason),
            other => anyhow::Error::new(other).context("verifying the chain"),
        })
    }
    .await;
    store.close().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if report.intact {
        Ok(())
    } else {
        // The report is the message.
        Err(broken(""))
    }
}

fn print_report(report: &VerifyReport) {
    let anchor = report
        .anchor
        .as_deref()
        .map(|a| format!("; the anchor {a} holds"))
        .unwrap_or_default();
    match &report.first_break {
        None => println!(
            "intact: positions {} to {} chain ({} events checked in {:.2} s); head {}:{}{anchor}",
            report.from,
            report.to,
            report.checked,
            report.elapsed_seconds,
            report.head.position,
            report.head.hash
        ),
        Some(b) => {
            println!("broken at position {}: {}", b.position, b.kind);
            println!("{}", b.detail);
            println!(
                "({} events from {} chained before it; checked in {:.2} s)",
                report.checked, report.from, report.elapsed_seconds
            );
        }
    }
}

async fn anchor(args: AnchorArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    let store = open_store(store, file).await?;
    let result = async {
        let head = store.head().await.context("reading the log head")?;
        // The head record is only a copy: the anchor is the hash stored
        // with the event itself, and the two must agree.
        if head.position.get() > 0 {
            let rows = store
                .audit_page(&RowFilter::all(), head.position, 1)
                .await
                .context("reading the head event")?;
            let stored = rows
                .first()
                .filter(|r| r.position == head.position)
                .and_then(|r: &AuditRow| r.hash);
            if stored != Some(head.hash) {
                return Err(broken(format!(
                    "the log head record ({}:{}) does not match the event stored at {}; run \
                     `herald audit verify`",
                    head.position, head.hash, head.position
                )));
            }
        }
        Ok(head)
    }
    .await;
    store.close().await;
    let head = result?;
    let text = Anchor::text(head.position, &head.hash);
    if args.json {
        println!(
            "{}",
            json!({
                "position": head.position.get(),
                "hash": head.hash.to_hex(),
                "recorded_at": head.recorded_at,
                "anchor": text,
            })
        );
    } else {
        println!("{text}");
        eprintln!(
            "Keep this outside the system; check the log against it with \
             `herald audit verify --anchor {text}` (or a file holding it)."
        );
    }
    Ok(())
}
