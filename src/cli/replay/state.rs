//! `herald replay state <domain> <id> --at <instant|position>`: the
//! aggregate's state as it was then, folded from its stream's events with
//! the domain's own rules ([`herald_actors::state_at`], reached through the
//! domain list as `GET /v1/streams/{domain}/{id}?at=` reaches it), and the
//! events that made it. [`answer`] is the library's entry point, for a
//! caller-given domain list.

use anyhow::Context;
use clap::Args;
use herald_events::TenantId;

use super::{negative, print_json, usage};
use herald_actors::state_at::{Moment, StateAt, StateAtError};

use crate::config::{store_settings, FileConfig, StoreArgs};
use crate::domains::DomainList;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The aggregate's domain: tickets, edges, drafts or timers, or
    /// `registry` (id `schemas`) for the schema registry
    pub domain: String,

    /// The aggregate's id (the id part of its stream, e.g. T-1001)
    pub id: String,

    /// The moment: a log position (a whole number: after the events at or
    /// before it) or an RFC 3339 instant (after the events recorded at or
    /// before it)
    #[arg(long, value_name = "INSTANT|POSITION")]
    pub at: String,

    /// The tenant whose aggregate it is
    #[arg(long, value_name = "TENANT", default_value = "default")]
    pub tenant: String,

    /// Print the answer as one JSON document
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StateArgs, store: &StoreArgs, file: &FileConfig) -> anyhow::Result<()> {
    let answer = answer(&crate::domains::builtin(), &args, store, file).await?;
    if args.json {
        print_json(&answer)
    } else {
        print_text(&answer)
    }
}

/// The state `args` ask for, among `domains`, from the store `store` and
/// `file` name; a "no" answer is [`negative`], bad input [`usage`].
pub async fn answer(
    domains: &DomainList,
    args: &StateArgs,
    store: &StoreArgs,
    file: &FileConfig,
) -> anyhow::Result<StateAt> {
    // Bad input is told before any store is opened.
    let at = Moment::parse(&args.at).map_err(|e| usage(format!("--at: {e}")))?;
    let tenant = TenantId::new(args.tenant.clone()).map_err(|e| usage(format!("--tenant: {e}")))?;
    let specs = domains.specs();
    if !specs.with_state().any(|s| s.name() == args.domain) {
        return Err(usage(format!(
            "no domain {:?} has aggregates; the domains are {}",
            args.domain,
            specs
                .with_state()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let settings = store_settings(store, file)?;
    let store = herald_store::open(settings)
        .await
        .context("opening the event store")?;
    let answer = specs
        .state_at(&*store, &tenant, &args.domain, &args.id, at, None)
        .await;
    store.close().await;
    answer.map_err(|e| match e {
        StateAtError::NoStream { .. } | StateAtError::NotYet { .. } => negative(e.to_string()),
        StateAtError::UnknownDomain { .. } | StateAtError::InvalidStream(_) => usage(e.to_string()),
        other => anyhow::Error::new(other),
    })
}

fn print_text(answer: &StateAt) -> anyhow::Result<()> {
    let time = |t| herald_events::chain::canonical_time(&t);
    println!(
        "{}/{} of tenant {} at {}: version {}, position {} (recorded {})",
        answer.domain,
        answer.id,
        answer.tenant,
        answer.at,
        answer.version,
        answer.position,
        time(answer.recorded_at)
    );
    println!("{}", serde_json::to_string_pretty(&answer.state)?);
    println!("Events:");
    println!(
        "  {:>7}  {:>10}  {:<27}  {:<27}  type",
        "version", "position", "recorded_at", "occurred_at"
    );
    for event in &answer.events {
        println!(
            "  {:>7}  {:>10}  {:<27}  {:<27}  {}",
            event.stream_version,
            event.position,
            time(event.recorded_at),
            time(event.occurred_at),
            event.event_type
        );
    }
    Ok(())
}
