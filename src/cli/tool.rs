//! What the offline tools (`herald audit`, `herald replay`) share: quiet
//! logging (their output is the answer), a runtime of their own, progress
//! bars that draw only on a terminal, and exit codes — 0 done, 1 the answer
//! is "no" (a broken chain, read models that differ, nothing at that
//! moment), 2 bad input or a failure — which `main` alone cannot give,
//! since it maps every error to 1.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{FileConfig, LogArgs};

/// Why a tool did not succeed, and its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exit {
    pub code: i32,
    pub message: String,
}

/// The answer is "no": exit code 1.
pub(crate) fn no(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: 1,
        message: message.into(),
    }
    .into()
}

/// Bad input: exit code 2.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: 2,
        message: message.into(),
    }
    .into()
}

/// Loads the configuration file, sets quiet logging, runs `work` on a
/// runtime of its own and exits with the code its error carries (any other
/// error: 2).
pub(crate) fn run<F, Fut>(log: &LogArgs, config: Option<&Path>, work: F) -> anyhow::Result<()>
where
    F: FnOnce(FileConfig) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let result = FileConfig::load_optional(config)
        .and_then(|file| {
            let quiet = LogArgs {
                log: log
                    .log
                    .clone()
                    .or_else(|| file.log.clone())
                    .or_else(|| Some("warn".to_owned())),
                log_format: log.log_format,
            };
            crate::telemetry::init_logging(&quiet, &file)?;
            Ok(file)
        })
        .and_then(|file| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(work(file))
        });
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let code = match e.downcast_ref::<Exit>() {
                Some(exit) => {
                    if !exit.message.is_empty() {
                        eprintln!("herald: {}", exit.message);
                    }
                    exit.code
                }
                None => {
                    eprintln!("herald: {e:#}");
                    2
                }
            };
            std::process::exit(code);
        }
    }
}

/// A progress bar on stderr when it is a terminal, else one that draws
/// nothing; `unit` names what it counts.
pub(crate) fn progress_bar(label: &str, length: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    let style = ProgressStyle::with_template(&format!(
        "{{msg}} [{{elapsed_precise}}] [{{bar:40.cyan/blue}}] {unit} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
    ))
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar
}
