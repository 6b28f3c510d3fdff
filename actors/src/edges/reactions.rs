//! The outage monitor: a reaction that opens and resolves incident tickets
//! as edges go down and come back.
//!
//! - `edges.edge_went_offline` → schedule a recheck timer (default 5 s
//!   after the event was recorded) that sends the edge `confirm_outage`.
//! - `edges.outage_confirmed` (the edge was still offline at the recheck)
//!   → open the edge's outage ticket (`tickets/outage.<edge>`), or reopen it
//!   if it was resolved or closed, or do nothing if it is open.
//! - `edges.edge_came_online` → resolve the edge's open outage ticket, with
//!   a resolution note.
//! - `edges.link_degraded` → open the edge's affecting ticket
//!   (`tickets/affecting.<edge>`), or append a note to it (reopening it
//!   first if it was resolved).
//!
//! Every command carries the reaction's dedupe key, so a repeated delivery
//! appends nothing twice. Because a repeat may also come late (after the
//! edge changed again), opening and resolving first check that the edge is
//! still in the state the event reported.

use std::time::Duration;

use async_trait::async_trait;
use herald_events::EventEnvelope;
use serde_json::{json, Value};

use crate::aggregate::RefusalKind;
use crate::error::CommandError;
use crate::reactions::{Reaction, ReactionContext, ReactionError};
use crate::tickets::outage_ticket_id;

/// The default time between an edge going offline and its recheck.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(5);

/// The id of an edge's affecting ticket.
pub fn affecting_ticket_id(edge: &str) -> String {
    format!("affecting.{edge}")
}

/// The outage monitor.
#[derive(Debug, Clone)]
pub struct OutageMonitor {
    /// How long an edge must stay offline before its outage ticket opens.
    pub recheck: Duration,
}

impl Default for OutageMonitor {
    fn default() -> Self {
        Self {
            recheck: DEFAULT_RECHECK,
        }
    }
}

#[async_trait]
impl Reaction for OutageMonitor {
    fn name(&self) -> &'static str {
        "outage-monitor"
    }

    fn domains(&self) -> &'static [&'static str] {
        &["edges"]
    }

    async fn react(
        &self,
        event: &EventEnvelope,
        ctx: &ReactionContext<'_>,
    ) -> Result<(), ReactionError> {
        let edge = event.stream.id();
        match event.event_type.name() {
            "edge_went_offline" => self.schedule_recheck(event, edge, ctx).await,
            "outage_confirmed" => open_outage(event, edge, ctx).await,
            "edge_came_online" => resolve_outage(edge, ctx).await,
            "link_degraded" => affecting(event, edge, ctx).await,
            _ => Ok(()),
        }
    }
}

impl OutageMonitor {
    async fn schedule_recheck(
        &self,
        event: &EventEnvelope,
        edge: &str,
        ctx: &ReactionContext<'_>,
    ) -> Result<(), ReactionError> {
        // From the recording time, so a repeat schedules the same instant.
        let at = event.recorded_at
            + chrono::Duration::from_std(self.recheck).unwrap_or(chrono::Duration::seconds(5));
        let version = event.stream_version.get();
        let timer = format!("outage-recheck.{edge}.{version}");
        let body = json!({
            "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "deliver": {
                "kind": "command",
                "domain": "edges",
                "stream_id": edge,
                "name": "confirm_outage",
                "body": {"offline_since_version": version},
            },
            "label": "outage recheck",
        });
        match ctx
            .send("timers", &timer, "schedule", body, "schedule-recheck")
            .await
        {
            Ok(_) => Ok(()),
            // Already scheduled (a repeat): nothing to do.
            Err(CommandError::Refused(r)) if r.kind == RefusalKind::Forbidden => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The edge's state as its aggregate answers it.
async fn edge_state(edge: &str, ctx: &ReactionContext<'_>) -> Result<Option<Value>, ReactionError> {
    Ok(ctx.state("edges", edge).await?.map(|(state, _)| state))
}

fn is_offline(edge: &Value) -> bool {
    edge.get("state").and_then(Value::as_str) == Some("offline")
}

async fn open_outage(
    event: &EventEnvelope,
    edge: &str,
    ctx: &ReactionContext<'_>,
) -> Result<(), ReactionError> {
    let Some(state) = edge_state(edge, ctx).await? else {
        return Ok(());
    };
    if !is_offline(&state) {
        // A late repeat: the edge is back; its ticket is not to be opened.
        return Ok(());
    }
    let customer = state
        .get("customer")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let ticket = outage_ticket_id(edge);
    let open = json!({
        "kind": "outage",
        "customer": customer,
        "edge": edge,
        "description": format!("Edge {edge} is offline (still offline at the recheck after {}).", event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "opened_by": "outage-monitor",
    });
    match ctx.send("tickets", &ticket, "open", open, "open").await {
        Ok(_) => return Ok(()),
        Err(CommandError::Refused(r)) if r.kind == RefusalKind::Forbidden => {}
        Err(e) => return Err(e.into()),
    }
    // The edge had an outage ticket before: reopen it unless it is open.
    let reopen = json!({"reason": format!("Edge {edge} is offline again."), "reopened_by": "outage-monitor"});
    match ctx
        .send("tickets", &ticket, "reopen", reopen, "reopen")
        .await
    {
        Ok(_) => Ok(()),
        Err(CommandError::Refused(r)) if r.kind == RefusalKind::Forbidden => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn resolve_outage(edge: &str, ctx: &ReactionContext<'_>) -> Result<(), ReactionError> {
    if let Some(state) = edge_state(edge, ctx).await? {
        if is_offline(&state) {
            // A late repeat: the edge is down again.
            return Ok(());
        }
    }
    let resolve = json!({
        "resolution": format!("Edge {edge} came back online."),
        "resolved_by": "outage-monitor",
    });
    match ctx
        .send(
            "tickets",
            &outage_ticket_id(edge),
            "resolve",
            resolve,
            "resolve",
        )
        .await
    {
        Ok(_) => Ok(()),
        // No open outage ticket (never confirmed, or already resolved).
        Err(CommandError::Refused(r))
            if matches!(r.kind, RefusalKind::Forbidden | RefusalKind::NotFound) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn affecting(
    event: &EventEnvelope,
    edge: &str,
    ctx: &ReactionContext<'_>,
) -> Result<(), ReactionError> {
    let link = event
        .payload
        .get("link")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let note = format!(
        "Link {link} degraded: latency {} ms, jitter {} ms, packet loss {} %.",
        event
            .payload
            .get("latency_ms")
            .cloned()
            .unwrap_or(Value::Null),
        event
            .payload
            .get("jitter_ms")
            .cloned()
            .unwrap_or(Value::Null),
        event
            .payload
            .get("packet_loss_pct")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let ticket = affecting_ticket_id(edge);
    let customer = edge_state(edge, ctx)
        .await?
        .and_then(|s| s.get("customer").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let open = json!({
        "kind": "affecting",
        "customer": customer,
        "edge": edge,
        "description": note,
        "opened_by": "outage-monitor",
    });
    match ctx.send("tickets", &ticket, "open", open, "open").await {
        Ok(_) => return Ok(()),
        Err(CommandError::Refused(r)) if r.kind == RefusalKind::Forbidden => {}
        Err(e) => return Err(e.into()),
    }
    let reopen =
        json!({"reason": format!("Link {link} degraded again."), "reopened_by": "outage-monitor"});
    match ctx
        .send("tickets", &ticket, "reopen", reopen, "reopen")
        .await
    {
        Ok(_) | Err(CommandError::Refused(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match ctx
        .send(
            "tickets",
            &ticket,
            "append_note",
            json!({"note": note, "author": "outage-monitor"}),
            "note",
        )
        .await
    {
        Ok(_) | Err(CommandError::Refused(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
