//! Operational endpoints: liveness (`/healthz`), readiness (`/readyz`, only
//! when the store answers) and Prometheus metrics (`/metrics`).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::problem::{Problem, ProblemKind};
use super::AppState;

/// How long readiness waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.check()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({
            "status": "ready",
            "store": state.store.backend(),
        }))),
        Ok(Err(e)) => Err(Problem::new(
            ProblemKind::StoreUnavailable,
            format!("the store does not answer: {e}"),
        )
        .with("store", state.store.backend())
        .retry_after(1)),
        Err(_) => Err(Problem::new(
            ProblemKind::StoreUnavailable,
            format!(
                "the store did not answer within {} s",
                READY_TIMEOUT.as_secs()
            ),
        )
        .with("store", state.store.backend())
        .retry_after(1)),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
