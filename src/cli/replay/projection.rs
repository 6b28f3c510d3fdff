//! `herald replay projection <name>`: rebuild one read model blue-green as
//! the runner of `herald serve` does (a new generation filled from the log
//! beside the serving one, switched to once it has caught up), with a
//! progress bar on the rebuild's position. `--to-position P` builds a
//! generation only up to P and leaves it beside the serving one, unswitched,
//! for inspection; `--diff` compares a fresh build with the serving tables,
//! lists the rows that differ and drops the build. Both read models
//! backends: Postgres (a `postgres://` store) and SQLite beside the
//! embedded store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use herald_events::Position;
use herald_projections::diff::Progress;
use herald_projections::{ProjectionError, ReadSide, ReadSideSettings};
use herald_store::{EventStore, StoreLocation};
use indicatif::ProgressBar;
use serde_json::json;

use super::{negative, print_json, progress_bar, usage};
use crate::config::{parse_duration, store_settings, FileConfig, StoreArgs};

/// How often the rebuild's progress is read.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct ProjectionArgs {
    /// The read model: tickets, edges, timers, drafts, statistics or streams
    pub name: String,

    /// Build a new generation only up to this log position, beside the
    /// serving one, and do not switch to it (its tables stay for inspection)
    #[arg(long, value_name = "P", conflicts_with = "diff")]
    pub to_position: Option<u64>,

    /// Compare a fresh build with the serving tables and list the rows that
    /// differ, switching nothing (exit code 1 when some differ)
    #[arg(long)]
    pub diff: bool,

    /// With --to-position: how long the generation is kept before a runner
    /// drops it (500ms, 5s, 2m, 24h)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub keep: Duration,

    /// With --diff: most differing rows listed per table and direction (all
    /// are counted)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_rows: usize,

    /// Print the answer as one JSON document
    #[arg(long)]
    pub json: bool,
}

/// The read side on whichever backend the store implies, running only the
/// named read model, with a small pool of its own.
fn open_read_side(
    location: &StoreLocation,
    store: &Arc<dyn EventStore>,
    name: &str,
) -> anyhow::Result<ReadSide> {
    let domains = crate::domains::builtin();
    let set = domains.read_model_set();
    let only = set.only(name);
    if only.postgres.is_empty() && only.sqlite.is_empty() {
        let names: Vec<&str> = set.postgres.iter().map(|p| p.name()).collect();
        return Err(usage(format!(
            "no read model named {name:?}; the read models are {}",
            names.join(", ")
        )));
    }
    Ok(ReadSide::open(
        location,
        Arc::clone(store),
        only,
        ReadSideSettings { pool_size: 4 },
    )?)
}

/// A progress callback that moves `bar`.
fn moves(bar: &ProgressBar) -> Progress {
    let bar = bar.clone();
    Arc::new(move |reached: Position, target: Position| {
        bar.set_length(target.get());
        bar.set_position(reached.get());
    })
}

/// What a projection error means to the person who ran the command.
fn explain(name: &str, e: ProjectionError) -> anyhow::Error {
    match e {
        ProjectionError::NotServing(_) => usage(format!(
            "the read model {name} is not being served yet (no generation of it was ever \
             built): run `herald replay projection {name}` or `herald serve` first"
        )),
        other => anyhow::Error::new(other).context(format!("the read model {name}")),
    }
}

pub async fn run(args: ProjectionArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    let settings = store_settings(store, file)?;
    let location = settings.location.clone();
    let store = herald_store::open(settings)
        .await
        .context("opening the event store")?;
    let result = async {
        let runner = open_read_side(&location, &store, &args.name)?;
        if args.diff {
            diff(&runner, &args).await
        } else if let Some(to) = args.to_position {
            detached(&runner, &args, Position(to)).await
        } else {
            rebuild(&runner, &store, &args).await
        }
    }
    .await;
    store.close().await;
    result
}

/// A blue-green rebuild, followed until the new generation serves.
async fn rebuild(
    runner: &ReadSide,
    store: &Arc<dyn EventStore>,
    args: &ProjectionArgs,
) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let before = runner.status(name).await.map_err(|e| explain(name, e))?;
    let head = store.head().await.context("reading the log head")?.position;
    let generation = runner.rebuild(name).await.map_err(|e| explain(name, e))?;
    let bar = progress_bar(
        &format!("rebuilding {name} (generation {generation})"),
        head.get(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let runner = runner.clone();
        tokio::spawn(async move { runner.run(stopped).await })
    };
    let outcome = loop {
        if running.is_finished() {
            break Err(anyhow::anyhow!("the projection runner stopped"));
        }
        let status = match runner.status(name).await {
            Ok(status) => status,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => break Err(explain(name, e)),
        };
        let serving = status.generation == Some(generation);
        let building = status.rebuild.as_ref().map(|r| (r.generation, r.position));
        match building {
            Some((g, position)) if g == generation => bar.set_position(position.get()),
            _ if serving => bar.set_position(status.position.get().min(head.get())),
            _ => {
                break Err(anyhow::anyhow!(
                    "the rebuild of {name} (generation {generation}) was abandoned: another \
                     version of the read model took over (serving generation {:?})",
                    status.generation
                ))
            }
        }
        if serving && status.position >= head {
            break Ok(status);
        }
        tokio::time::sleep(POLL).await;
    };
    let _ = stop.send(true);
    let ran = running.await;
    bar.finish_and_clear();
    if let Ok(Err(e)) = ran {
        return Err(explain(name, e));
    }
    let status = outcome?;
    let replaced = before.generation.filter(|g| *g != generation);
    if args.json {
        print_json(&json!({
            "projection": name,
            "generation": generation,
            "replaced": replaced,
            "position": status.position.get(),
            "switched": true,
        }))
    } else {
        match replaced {
            Some(old) => println!(
                "{name}: generation {generation} serves now, built from the log up to position \
                 {} (generation {old} is retired; a runner drops it after its grace period)",
                status.position
            ),
            None => println!(
                "{name}: generation {generation} serves now, built from the log up to position {}",
                status.position
            ),
        }
        Ok(())
    }
}

/// A generation built up to `to` and left beside the serving one.
async fn detached(runner: &ReadSide, args: &ProjectionArgs, to: Position) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let bar = progress_bar(&format!("building {name} up to {to}"), to.get());
    let built = runner
        .build_detached(name, Some(to), args.keep, moves(&bar))
        .await
        .map_err(|e| explain(name, e));
    bar.finish_and_clear();
    let built = built?;
    if args.json {
        return print_json(&built);
    }
    let serving = match built.serving_generation {
        Some(g) => format!("generation {g} still serves"),
        None => "nothing serves yet".to_owned(),
    };
    let short = if built.position < to {
        format!(" (the log ends there, before {to})")
    } else {
        String::new()
    };
    let tables = if built.tables_in.ends_with('_') {
        format!("the tables {}<table>", built.tables_in)
    } else {
        format!("the schema {}", built.tables_in)
    };
    println!(
        "{name}: generation {} built up to position {}{short}, not switched to ({serving}); \
         its rows are in {tables} until {} (then a runner drops them)",
        built.generation,
        built.position,
        herald_events::chain::canonical_time(&built.expires_at)
    );
    Ok(())
}

/// A fresh build compared with the serving tables.
async fn diff(runner: &ReadSide, args: &ProjectionArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let bar = progress_bar(&format!("building {name} to compare"), 0);
    let diff = runner
        .diff(name, args.max_rows, moves(&bar))
        .await
        .map_err(|e| explain(name, e));
    bar.finish_and_clear();
    let diff = diff?;
    if args.json {
        print_json(&diff)?;
    } else {
        println!(
            "{name}: serving generation {} and a fresh build, both at position {}:",
            diff.live_generation, diff.position
        );
        for table in &diff.tables {
            if table.is_empty() {
                println!("  {}: same rows", table.table);
                continue;
            }
            println!(
                "  {}: {} row(s) only in the serving table (-), {} only in the rebuild (+)",
                table.table, table.only_in_live_count, table.only_in_rebuild_count
            );
            for row in &table.only_in_live {
                println!("    - {row}");
            }
            for row in &table.only_in_rebuild {
                println!("    + {row}");
            }
            let unlisted = (table.only_in_live_count + table.only_in_rebuild_count)
                .saturating_sub((table.only_in_live.len() + table.only_in_rebuild.len()) as u64);
            if unlisted > 0 {
                println!("    … and {unlisted} more (--max-rows)");
            }
        }
    }
    if diff.differs() {
        Err(negative(format!(
            "the serving {name} tables differ from a fresh build of them"
        )))
    } else {
        Ok(())
    }
}
