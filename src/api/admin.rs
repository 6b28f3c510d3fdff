//! Operational endpoints: liveness (`/healthz`), readiness (`/readyz`, only
//! when the store and the broker answer and no worker is stalled) and
//! Prometheus metrics (`/metrics`, with the process metrics read at each
//! scrape).
//!
//! Readiness answers within a second whatever the backends do: each check
//! runs at once beside the other and is given [`CHECK_TIMEOUT`]; one that
//! has not answered by then counts as down (503, naming it and the
//! timeout), as a probe's own timeout would otherwise decide for us.
//!
//! A stalled worker — the relay, the ingest or a reaction that has made no
//! progress for 5 s while work waits (`herald_brokers::progress`) — makes
//! readiness 503 `stalled` with a `stalled` list naming each one, how long
//! and why: the process is not doing all of its work, and an operator or
//! an orchestrator should know. Liveness stays 200: a restart is not
//! assumed to help.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::problem::{Problem, ProblemKind};
use super::AppState;

/// How long readiness waits for each check (they run at the same time).
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "admin",
    operation_id = "healthz",
    summary = "Liveness",
    description = "200 while the process runs. Needs no credentials.",
    responses((status = 200, description = "The process runs", body = super::openapi::Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "admin",
    operation_id = "readyz",
    summary = "Readiness",
    description = "200 when the store and the broker both answer within 0.8 s (checked at the same time, so the answer comes within a second) and no worker (relay, ingest, reaction) has made no progress for 5 s while work waits. Needs no credentials.",
    responses(
        (status = 200, description = "The store and the broker answer, and every worker moves", body = super::openapi::Readiness),
        (
            status = 503,
            description = "`store-unavailable` or `broker-unavailable` (`store` and `broker` name the backends), or `stalled`: `stalled` lists each stalled worker as `{component, stalled_seconds, reason}`",
            body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait")),
        ),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let (store, broker) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.check()),
        tokio::time::timeout(CHECK_TIMEOUT, state.broker.check()),
    );
    let unavailable = |what: &str, detail: String| {
        Problem::new(
            ProblemKind::StoreUnavailable,
            format!("the {what} does not answer: {detail}"),
        )
        .with("store", state.store.backend())
        .with("broker", state.broker.backend())
        .retry_after(1)
    };
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unavailable("store", e.to_string())),
        Err(_) => {
            return Err(unavailable(
                "store",
                format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
            ))
        }
    }
    match broker {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(unavailable("broker", e.to_string()).kind(ProblemKind::BrokerUnavailable))
        }
        Err(_) => {
            return Err(unavailable(
                "broker",
                format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
            )
            .kind(ProblemKind::BrokerUnavailable))
        }
    }
    let stalled = state.progress.stalled();
    if !stalled.is_empty() {
        let detail = stalled
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let list: Vec<_> = stalled
            .iter()
            .map(|s| {
                json!({
                    "component": s.component,
                    "stalled_seconds": s.stalled_for.as_secs(),
                    "reason": s.reason,
                })
            })
            .collect();
        return Err(Problem::new(ProblemKind::Stalled, detail)
            .with("stalled", list)
            .with("store", state.store.backend())
            .with("broker", state.broker.backend())
            .retry_after(1));
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "store": state.store.backend(),
        "broker": state.broker.backend(),
    })))
}

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "The process's metrics in the Prometheus text format (the README's \"Metrics\" table lists them). Needs no credentials.",
    responses((
        status = 200,
        description = "Prometheus text exposition format 0.0.4",
        body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8",
    )),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    let mut text = state.metrics.render();
    text.push_str(&crate::telemetry::process_metrics());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
