//! Operational endpoints: liveness (`/healthz`), readiness (`/readyz`, only
//! when the store and the broker answer) and Prometheus metrics (`/metrics`).

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
    let (store, broker) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.store.check()),
        tokio::time::timeout(READY_TIMEOUT, state.broker.check()),
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
                format!("no answer within {} s", READY_TIMEOUT.as_secs()),
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
                format!("no answer within {} s", READY_TIMEOUT.as_secs()),
            )
            .kind(ProblemKind::BrokerUnavailable))
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "store": state.store.backend(),
        "broker": state.broker.backend(),
    })))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
