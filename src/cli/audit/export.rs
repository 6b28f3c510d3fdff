//! `herald audit export`: events as stored (with their hashes), filtered by
//! tenant, domain, stream, type pattern, position range and recording time,
//! written as JSON lines or CSV. The log is read in pages and every page is
//! written before the next but two is read, so memory stays flat whatever
//! the export's size. The range ends at the head when the export starts, so
//! the file is a snapshot even while Herald appends. A file is written
//! beside its name and renamed into place once complete, so a failed export
//! leaves no partial file behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use herald_events::chain::{canonical_json, canonical_time};
use herald_events::{Domain, Position, StreamId, TenantId};
use herald_store::audit::{read_pages, AuditRow, RowFilter};

use super::{broken, open_store, progress_bar, usage};
use crate::config::{FileConfig, StoreArgs};

/// The columns of the CSV export, in order.
pub const CSV_COLUMNS: [&str; 14] = [
    "position",
    "id",
    "tenant",
    "stream",
    "stream_version",
    "type",
    "version",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "causation_id",
    "producer",
    "payload",
    "hash",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line: the event as stored, with its hash
    Jsonl,
    /// A header and one row per event, fixed columns; the payload as JSON text
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this tenant's events (repeat for any of several)
    #[arg(long, value_name = "TENANT")]
    pub tenant: Vec<String>,

    /// Only this domain's events (repeat for any of several)
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Vec<String>,

    /// Only this stream's events, `domain/id` (repeat for any of several)
    #[arg(long, value_name = "DOMAIN/ID")]
    pub stream: Vec<String>,

    /// Only types matching this pattern, `*` for any run of characters:
    /// `tickets.*`, `*.note_appended` (repeat for any of several)
    #[arg(long = "type", value_name = "PATTERN")]
    pub types: Vec<String>,

    /// First position (inclusive)
    #[arg(long, value_name = "P")]
    pub from_position: Option<u64>,

    /// Last position (inclusive) [default: the head when the export starts]
    #[arg(long, value_name = "P")]
    pub to_position: Option<u64>,

    /// Recorded at or after this instant (RFC 3339, or a date for its
    /// midnight UTC)
    #[arg(long, value_name = "INSTANT")]
    pub since: Option<String>,

    /// Recorded before this instant (RFC 3339, or a date for its midnight UTC)
    #[arg(long, value_name = "INSTANT")]
    pub until: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,

    /// Where to write: a file, or `-` for stdout
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    pub output: String,
}

/// An instant: RFC 3339, or a date meaning its midnight UTC.
fn instant(flag: &str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            usage(format!(
                "--{flag} {text:?} is not an instant (RFC 3339, e.g. 2026-11-01T12:00:00Z, or a date)"
            ))
        })
}

/// The filter the flags ask for (the head bound is added once it is known).
fn filter(args: &ExportArgs) -> anyhow::Result<RowFilter> {
    let bad = |flag: &str, value: &str, e: &dyn std::fmt::Display| {
        usage(format!("--{flag} {value:?}: {e}"))
    };
    let filter = RowFilter {
        to: args.to_position.map(Position),
        tenants: args
            .tenant
            .iter()
            .map(|t| TenantId::new(t.as_str()).map_err(|e| bad("tenant", t, &e)))
            .collect::<anyhow::Result<_>>()?,
        domains: args
            .domain
            .iter()
            .map(|d| Domain::new(d.as_str()).map_err(|e| bad("domain", d, &e)))
            .collect::<anyhow::Result<_>>()?,
        streams: args
            .stream
            .iter()
            .map(|s| s.parse::<StreamId>().map_err(|e| bad("stream", s, &e)))
            .collect::<anyhow::Result<_>>()?,
        types: args.types.clone(),
        recorded_from: args
            .since
            .as_deref()
            .map(|t| instant("since", t))
            .transpose()?,
        recorded_to: args
            .until
            .as_deref()
            .map(|t| instant("until", t))
            .transpose()?,
    };
    filter.validate().map_err(|e| usage(e.to_string()))?;
    if let (Some(from), Some(to)) = (args.from_position, args.to_position) {
        if to < from {
            return Err(usage(format!(
                "--to-position {to} is before --from-position {from}"
            )));
        }
    }
    Ok(filter)
}

/// Rows per page read: small pages keep memory flat (a page is held
/// decoded while it is written, and two more are read ahead).
const PAGE_ROWS: usize = 1024;

/// The text of `rows` in `format`, in order (the CSV header aside). A row
/// that no longer reads as an event fails the export.
/// An event's fields in the order of [`CSV_COLUMNS`].
pub fn csv_fields(event: &herald_events::EventEnvelope) -> [String; 14] {
    [
        event.position.get().to_string(),
        event.id.to_string(),
        event.tenant.as_str().to_owned(),
        event.stream.as_str().to_owned(),
        event.stream_version.get().to_string(),
        event.event_type.as_str().to_owned(),
        event.version.get().to_string(),
        canonical_time(&event.occurred_at),
        canonical_time(&event.recorded_at),
        event.correlation_id.to_string(),
        event.causation_id.to_string(),
        event.producer.clone(),
        canonical_json(&event.payload),
        event.hash.to_hex(),
    ]
}

fn render(format: Format, rows: &[AuditRow]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rows.len() * 640);
    let mut csv = match format {
        Format::Csv => Some(
            csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(rows.len() * 640)),
        ),
        Format::Jsonl => None,
    };
    for row in rows {
        let event = row.event().map_err(|why| {
            broken(format!(
                "the row at position {} no longer reads as an event ({why}); \
                 `herald audit verify` tells where and how the log was changed",
                row.position
            ))
        })?;
        match &mut csv {
            None => {
                serde_json::to_writer(&mut out, event)?;
                out.push(b'\n');
            }
            Some(writer) => writer.write_record(csv_fields(event))?,
        }
    }
    match csv {
        None => Ok(out),
        Some(writer) => writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error())),
    }
}

/// [`render`] of a page, its rows decoded and written on all cores (each
/// core a run of rows), the runs then put together in order.
fn render_page(format: Format, rows: &[AuditRow]) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads == 1 || rows.len() < 64 {
        return Ok(vec![render(format, rows)?]);
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let runs: Vec<_> = rows
            .chunks(chunk)
            .map(|run| scope.spawn(move || render(format, run)))
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an export thread panicked")))
            })
            .collect()
    })
}

/// The output file, written under a temporary name until complete.
struct Output {
    path: PathBuf,
    partial: PathBuf,
}

impl Output {
    fn create(path: &Path) -> anyhow::Result<(Self, File)> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file = File::create(&partial)
            .map_err(|e| usage(format!("cannot write {}: {e}", partial.display())))?;
        Ok((
            Self {
                path: path.to_owned(),
                partial,
            },
            file,
        ))
    }

    fn commit(self) -> anyhow::Result<()> {
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("renaming {} into place", self.partial.display()))
    }

    fn abandon(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

pub async fn run(args: ExportArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    // Bad input is told before any store is opened.
    let mut filter = filter(&args)?;
    let store = open_store(store, file).await?;
    let result = export(&args, &mut filter, Arc::clone(&store)).await;
    store.close().await;
    let (count, last) = result?;
    let to = if args.output == "-" {
        "stdout".to_owned()
    } else {
        args.output.clone()
    };
    match last {
        Some(last) => eprintln!(
            "Exported {count} events (to position {last}) to {to} as {:?}.",
            args.format
        ),
        None => eprintln!("Exported no events to {to}: none matched."),
    }
    Ok(())
}

/// Writes every matching event; the count and the last position written.
async fn export(
    args: &ExportArgs,
    filter: &mut RowFilter,
    store: Arc<dyn herald_store::EventStore>,
) -> anyhow::Result<(u64, Option<u64>)> {
    let head = store.head().await.context("reading the log head")?;
    let to = filter.to.map_or(head.position, |to| to.min(head.position));
    filter.to = Some(to);
    let from = args.from_position.unwrap_or(1).max(1);
    let (output, out): (Option<Output>, Box<dyn Write + Send>) = if args.output == "-" {
        (None, Box::new(BufWriter::new(std::io::stdout())))
    } else {
        let (output, file) = Output::create(Path::new(&args.output))?;
        (
            Some(output),
            Box::new(BufWriter::with_capacity(1 << 20, file)),
        )
    };
    let bar = progress_bar("export", (to.get() + 1).saturating_sub(from));
    let mut rx = read_pages(store, filter.clone(), Position(from), PAGE_ROWS);
    let format = args.format;
    let progress = bar.clone();
    // Written on a thread of its own: files and stdout block.
    let written = tokio::task::spawn_blocking(move || {
        let mut out = out;
        if format == Format::Csv {
            let mut header = csv::Writer::from_writer(Vec::new());
            header.write_record(CSV_COLUMNS)?;
            out.write_all(
                &header
                    .into_inner()
                    .map_err(|e| anyhow::anyhow!("{}", e.error()))?,
            )?;
        }
        let (mut count, mut last) = (0u64, None);
        loop {
            let page = match rx.blocking_recv() {
                Some(page) => page.context("reading the log")?,
                None => anyhow::bail!("the log reader stopped before the end of the range"),
            };
            let Some(end) = page.last() else {
                break;
            };
            for run in render_page(format, &page)? {
                out.write_all(&run)?;
            }
            count += page.len() as u64;
            last = Some(end.position.get());
            progress.set_position((end.position.get() + 1).saturating_sub(from));
        }
        out.flush()?;
        Ok((count, last))
    })
    .await
    .context("the export failed")?;
    bar.finish_and_clear();
    match (written, output) {
        (Ok(done), Some(output)) => {
            output.commit()?;
            Ok(done)
        }
        (Ok(done), None) => Ok(done),
        (Err(e), output) => {
            if let Some(output) = output {
                output.abandon();
            }
            Err(e)
        }
    }
}
