//! `GET /v1/console/overview`: one answer with what the console's overview
//! page shows and polls — readiness with its reasons, the log's head,
//! counters to draw append and delivery rates from, the relay, the
//! projections' lag, connected subscribers and the last warnings and
//! errors. Each part comes from where the rest of Herald keeps it (the
//! readiness checks, the metrics recorder, the read side); nothing is
//! counted twice.

use std::sync::LazyLock;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::recent_errors::{self, LoggedError};
use crate::api::problem::{ApiResult, Problem};
use crate::api::views::Params;
use crate::api::AppState;
use crate::auth::Identity;

static STARTED_AT: LazyLock<DateTime<Utc>> = LazyLock::new(Utc::now);

/// Notes the process's start (for the overview's uptime).
pub fn mark_start() {
    LazyLock::force(&STARTED_AT);
}

/// What the overview shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub process: ProcessView,
    /// `embedded` or `postgres`.
    pub store: String,
    /// `in-process`, `rabbitmq` or `kafka`.
    pub broker: String,
    pub ready: ReadyView,
    pub head: HeadView,
    /// Counters since the process started; rates are their differences.
    pub totals: Totals,
    /// Open websockets and SSE streams on this process.
    pub subscribers: u64,
    /// This process's relay (`null` without the `admin` scope).
    pub relay: Option<RelayView>,
    /// Every projection (`null` without the `admin` scope, or when this
    /// Herald runs none).
    pub projections: Option<Vec<ProjectionLag>>,
    /// The last warnings and errors this process logged, newest first
    /// (`[]` without the `admin` scope).
    pub recent_errors: Vec<LoggedError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    pub version: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    pub ready: bool,
    /// Why not: each a component (`store`, `broker`, or a stalled worker)
    /// and the reason.
    pub problems: Vec<NotReady>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotReady {
    pub component: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeadView {
    /// The log's last position (every tenant's; 0 when empty).
    pub position: u64,
    pub recorded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Totals {
    /// Events this process wrote to the log.
    pub events_appended: u64,
    /// Events this process's relay published to the broker.
    pub events_delivered: u64,
    /// HTTP requests this process answered.
    pub http_requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RelayView {
    /// True while this process's relay is the active one (one process
    /// relays at a time; the others stand by).
    pub active_here: bool,
    /// The last position the relay published, as stored.
    pub checkpoint: u64,
    /// Events committed and not yet published.
    pub lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionLag {
    pub name: String,
    pub position: u64,
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub parked: usize,
    /// True while a blue-green rebuild is under way.
    pub rebuilding: bool,
}

/// `GET /v1/console/overview`
#[utoipa::path(
    get,
    path = "/v1/console/overview",
    tag = "console",
    operation_id = "console_overview",
    summary = "What the console's overview shows",
    description = "Readiness with its reasons (the checks of `/readyz`), the log's head, this \
        process's counters (events appended, events relayed, HTTP requests: the console draws \
        rates from their differences), connected subscribers and, for the `admin` scope, the \
        relay, every projection's lag and the last 50 warnings and errors this process \
        logged. Answers within about a second whatever the backends do.",
    responses(
        (status = 200, description = "The overview", body = Overview),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn overview(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Params::parse(req.query_string(), &[])?;
    let admin = identity.is_admin();
    let mut problems = Vec::new();
    let head =
        match tokio::time::timeout(crate::api::admin::CHECK_TIMEOUT, state.store.head()).await {
            Ok(Ok(head)) => Some(head),
            Ok(Err(e)) => {
                problems.push(NotReady {
                    component: "store".into(),
                    reason: e.to_string(),
                });
                None
            }
            Err(_) => {
                problems.push(NotReady {
                    component: "store".into(),
                    reason: "no answer within 800 ms".into(),
                });
                None
            }
        };
    match tokio::time::timeout(crate::api::admin::CHECK_TIMEOUT, state.broker.check()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(NotReady {
            component: "broker".into(),
            reason: e.to_string(),
        }),
        Err(_) => problems.push(NotReady {
            component: "broker".into(),
            reason: "no answer within 800 ms".into(),
        }),
    }
    for stalled in state.progress.stalled() {
        problems.push(NotReady {
            component: stalled.component.to_string(),
            reason: stalled.to_string(),
        });
    }
    let metrics = state.metrics.render();
    let head_position = head.as_ref().map_or(0, |h| h.position.get());
    let relay = admin.then(|| {
        let checkpoint = metric_sum(&metrics, crate::relay::CHECKPOINT_POSITION) as u64;
        RelayView {
            active_here: metric_sum(&metrics, crate::relay::ACTIVE) >= 1.0,
            checkpoint,
            lag: head_position.saturating_sub(checkpoint),
        }
    });
    let projections = match (&state.read_side, admin) {
        (Some(read_side), true) => match read_side.statuses().await {
            Ok(statuses) => Some(
                statuses
                    .into_iter()
                    .map(|s| ProjectionLag {
                        name: s.name,
                        position: s.position.get(),
                        lag_events: s.lag_events,
                        lag_seconds: s.lag_seconds,
                        parked: s.parked,
                        rebuilding: s.rebuild.is_some(),
                    })
                    .collect(),
            ),
            Err(e) => {
                problems.push(NotReady {
                    component: "projections".into(),
                    reason: e.to_string(),
                });
                None
            }
        },
        _ => None,
    };
    let answer = Overview {
        process: ProcessView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: *STARTED_AT,
        },
        store: state.store.backend().to_owned(),
        broker: state.broker.backend().to_owned(),
        ready: ReadyView {
            ready: problems.is_empty(),
            problems,
        },
        head: HeadView {
            position: head_position,
            recorded_at: head.and_then(|h| h.recorded_at),
        },
        totals: Totals {
            events_appended: metric_sum(&metrics, herald_store::telemetry::EVENTS_WRITTEN_TOTAL)
                as u64,
            events_delivered: metric_sum(&metrics, crate::relay::PUBLISHED_TOTAL) as u64,
            http_requests: metric_sum(&metrics, crate::api::HTTP_REQUESTS_TOTAL) as u64,
        },
        subscribers: metric_sum(&metrics, crate::telemetry::SUBSCRIBERS).max(0.0) as u64,
        relay,
        projections,
        recent_errors: if admin {
            recent_errors::recent()
        } else {
            Vec::new()
        },
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// The sum of every series of one metric in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not `name_suffix`.
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn a_metric_sums_its_series_and_no_other_metric() {
        let text = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3\na_total 100\nab 7\na 1\n";
        assert_eq!(metric_sum(text, "a"), 6.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }
}
