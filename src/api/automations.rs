//! Automations over HTTP: `POST /v1/automations` saves one (create or a new
//! version), `GET /v1/automations` lists them, `GET /v1/automations/{name}`
//! shows one with its counters and latest failures, `POST …/enable` and
//! `…/disable` switch it, `DELETE` removes it, `POST /v1/automations/dry-run`
//! tries a definition (or a saved automation, enabled or not) on the
//! tenant's history, and `GET /v1/automations/schema` publishes the JSON
//! Schema of the document. Changing needs `automations:write`, reading
//! `automations:read`; everything acts in the caller's tenant.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_automations::catalog::Refused;
use herald_automations::dry_run::Stretch;
use herald_automations::engine::AutomationStats;
use herald_automations::Definition;
use herald_events::Position;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use super::body::read_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::Identity;
use crate::automations::AutomationError;

/// The published JSON Schema of an automation document.
pub const AUTOMATION_SCHEMA: &str = herald_automations::definition::SCHEMA;

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        apply,
        list,
        show,
        enable,
        disable,
        delete,
        dry_run,
        schema,
        deliveries,
        retry_delivery
    ),
    components(schemas(
        Applied,
        AutomationList,
        AutomationDoc,
        StatsDoc,
        FailureDoc,
        Switch,
        DryRunRequest,
        DeliveryList,
        crate::automations::Delivery,
        Retried
    ))
)]
pub struct Api;

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/automations")
            .service(
                web::resource("")
                    .route(web::post().to(apply))
                    .route(web::get().to(list))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/schema")
                    .route(web::get().to(schema))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/dry-run")
                    .route(web::post().to(dry_run))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{name}")
                    .route(web::get().to(show))
                    .route(web::delete().to(delete))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{name}/enable")
                    .route(web::post().to(enable))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{name}/disable")
                    .route(web::post().to(disable))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{name}/deliveries")
                    .route(web::get().to(deliveries))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{name}/deliveries/{delivery}/retry")
                    .route(web::post().to(retry_delivery))
                    .default_service(web::to(super::method_not_allowed)),
            ),
    );
}

/// The answer to a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    pub name: String,
    /// The automation's version after the change.
    pub version: u32,
    pub enabled: bool,
    /// False when the request changed nothing (the same definition again).
    pub changed: bool,
    /// The change's event in the log (absent when nothing changed): the
    /// engine runs the new version on the events after it.
    pub position: Option<u64>,
}

/// The tenant's automations.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutomationList {
    pub automations: Vec<AutomationDoc>,
}

/// One automation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutomationDoc {
    pub name: String,
    pub version: u32,
    pub enabled: bool,
    /// False when the stored definition does not compile in this Herald
    /// (`problem` says why): it is kept and not run.
    pub runnable: bool,
    pub problem: Option<String>,
    /// `event`, `absence` or `schedule`.
    pub trigger: String,
    pub applied_at: DateTime<Utc>,
    pub applied_position: u64,
    #[schema(value_type = Object)]
    pub definition: Value,
    /// The engine's counters (in `GET /v1/automations/{name}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsDoc>,
    /// The latest failures for good, oldest first (in
    /// `GET /v1/automations/{name}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<Vec<FailureDoc>>,
}

/// What the engine counted for one automation.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsDoc {
    /// Triggers that matched (absences: waits that ended without the
    /// awaited event).
    pub matched: u64,
    /// Triggers whose condition held; their actions ran.
    pub acted: u64,
    /// Actions that failed for good (each is in `failures`).
    pub failed: u64,
    /// Absence waits ended by the awaited event.
    pub cancelled: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The log position the engine had finished when it saved these.
    pub as_of_position: u64,
}

/// One failure for good: the automation's dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDoc {
    /// The `automations.action_failed` event.
    pub event: uuid::Uuid,
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    /// The event that triggered the automation.
    pub trigger_event: uuid::Uuid,
    pub version: u32,
    /// The action's place in the definition (`actions[0]`, `when`, …).
    pub action: String,
    pub error: String,
}

/// Why an automation is switched.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub reason: Option<String>,
}

/// What to try, and on which stretch of history.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// A definition to try (saved or not) …
    #[schema(value_type = Option<Object>)]
    pub definition: Option<Value>,
    /// … or the name of a saved one (enabled or not).
    pub name: Option<String>,
    /// Events after this log position (default: from the start).
    pub after: Option<u64>,
    /// Events at or before this log position (default: the head).
    pub until: Option<u64>,
    /// Events recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Events recorded before this instant.
    pub to: Option<DateTime<Utc>>,
    /// At most this many decisions, 1 to 10000 (default 1000); `next_after`
    /// then says where to go on.
    pub limit: Option<usize>,
}

fn refused(e: AutomationError) -> Problem {
    let detail = e.to_string();
    match e {
        AutomationError::Refused(Refused::Invalid(invalid)) => {
            Problem::new(ProblemKind::InvalidAutomation, detail).with(
                "problems",
                json!(invalid
                    .problems
                    .iter()
                    .map(|p| json!({"at": p.at, "message": p.message}))
                    .collect::<Vec<_>>()),
            )
        }
        AutomationError::Refused(Refused::NotFound { .. }) => {
            Problem::new(ProblemKind::NotFound, detail)
        }
        AutomationError::Refused(Refused::VersionConflict { current, .. }) => {
            Problem::new(ProblemKind::AutomationVersionConflict, detail)
                .with("current_version", current)
        }
        AutomationError::Refused(Refused::TooMany { .. }) => {
            Problem::new(ProblemKind::AutomationLimitReached, detail)
        }
        AutomationError::Store(e) => e.into(),
        AutomationError::Contended { .. } => Problem::new(ProblemKind::Contended, detail),
        AutomationError::DryRun(herald_automations::dry_run::DryRunError::Store(e)) => e.into(),
        AutomationError::NotDeadLettered { .. } => {
            Problem::new(ProblemKind::NotDeadLettered, detail)
        }
        AutomationError::DryRun(_) => {
            Problem::new(ProblemKind::StoreUnavailable, detail).retry_after(1)
        }
    }
}

/// `POST /v1/automations`
#[utoipa::path(
    post,
    path = "/v1/automations",
    tag = "automations",
    operation_id = "apply_automation",
    summary = "Save an automation",
    description = "Saves the automation in the body (JSON; `herald automations apply FILE` \
        sends YAML files too) in the caller's tenant: version 1 for a new name, the next version \
        when the definition differs from the saved one, nothing when it is the same (200, \
        `changed: false`). The document must match the JSON Schema at \
        `GET /v1/automations/schema`, and every expression and template must compile; all \
        problems are answered at once, each with where it is. The change is an event of the \
        tenant's stream `automations/definitions`; the engine runs the new version on the \
        events after it. `enabled=false` saves it switched off (to dry-run it in place); \
        `expected_version=N` refuses the save unless the saved version is N (0: must be new). \
        Needs `automations:write`.",
    params(
        ("enabled" = Option<bool>, Query, description = "Whether it runs (default true)"),
        ("expected_version" = Option<u32>, Query, description = "The version the automation must be at (0: it must not exist)"),
    ),
    request_body(content = Object, description = "The automation document (see `GET /v1/automations/schema`)"),
    responses(
        (status = 201, description = "Created (version 1)", body = Applied),
        (status = 200, description = "A new version, a switch, or nothing changed (`changed`)", body = Applied),
        (status = 400, description = "`invalid-json`, `invalid-utf8` or `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `automations:write` scope", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`automation-version-conflict` (`current_version` given) or `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-automation` (`problems` lists each with `at` and `message`) or `automation-limit-reached`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn apply(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = super::views::Params::parse(req.query_string(), &["enabled", "expected_version"])?;
    identity.require_automations(true)?;
    let enabled = match params.get("enabled") {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                format!("enabled is true or false, not {other:?}"),
            ))
        }
    };
    let expected = params
        .number("expected_version")?
        .map(|n| {
            u32::try_from(n).map_err(|_| {
                Problem::new(ProblemKind::InvalidQuery, "expected_version is too large")
            })
        })
        .transpose()?;
    let definition: Value = read_json(&req, payload, &state.limits).await?;
    super::text::check_body(&definition, ProblemKind::InvalidAutomation)?;
    let changed = state
        .automations
        .apply(&identity.tenant, &definition, enabled, expected)
        .await
        .map_err(refused)?;
    let created = changed.accepted.created;
    let answer = Applied {
        name: changed.accepted.name,
        version: changed.accepted.version,
        enabled,
        changed: changed.position.is_some(),
        position: changed.position.map(Position::get),
    };
    Ok(if created {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}

/// `GET /v1/automations`
#[utoipa::path(
    get,
    path = "/v1/automations",
    tag = "automations",
    operation_id = "list_automations",
    summary = "The tenant's automations",
    description = "Every automation of the caller's tenant with its version, whether it is \
        enabled and runnable, its trigger kind and its definition, by name. Needs \
        `automations:read` (or `automations:write`).",
    responses(
        (status = 200, description = "The automations", body = AutomationList),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(false)?;
    let catalog = state.automations.catalog(&identity.tenant).await?;
    let automations = catalog.entries().map(|e| doc(e, None, None)).collect();
    Ok(HttpResponse::Ok().json(AutomationList { automations }))
}

fn doc(
    entry: &herald_automations::Entry,
    stats: Option<StatsDoc>,
    failures: Option<Vec<FailureDoc>>,
) -> AutomationDoc {
    let s = entry.summary();
    AutomationDoc {
        name: s.name,
        version: s.version,
        enabled: s.enabled,
        runnable: s.runnable,
        problem: s.problem,
        trigger: s.trigger.to_owned(),
        applied_at: s.applied_at,
        applied_position: s.applied_position,
        definition: s.definition,
        stats,
        failures,
    }
}

fn stats_doc(stats: AutomationStats, position: Position) -> StatsDoc {
    StatsDoc {
        matched: stats.matched,
        acted: stats.acted,
        failed: stats.failed,
        cancelled: stats.cancelled,
        last_error: stats.last_error,
        last_error_at: stats.last_error_at,
        as_of_position: position.get(),
    }
}

/// `GET /v1/automations/{name}`
#[utoipa::path(
    get,
    path = "/v1/automations/{name}",
    tag = "automations",
    operation_id = "show_automation",
    summary = "One automation, its counters and failures",
    description = "The automation with the engine's counters (matched, acted, failed, \
        cancelled absences, the last error; as of the engine's last saved position, at most a \
        second behind) and its latest failures for good (`limit`, default 20), each an \
        `automations.action_failed` event of its stream `automations/{name}`. Needs \
        `automations:read`.",
    params(
        ("name" = String, Path, description = "The automation's name"),
        ("limit" = Option<usize>, Query, description = "How many of the latest failures, 0 to 1000 (default 20)", minimum = 0, maximum = 1000),
    ),
    responses(
        (status = 200, description = "The automation", body = AutomationDoc),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no automation of that name", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    req: HttpRequest,
    identity: Identity,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = super::views::Params::parse(req.query_string(), &["limit"])?;
    identity.require_automations(false)?;
    let limit = match params.number("limit")? {
        None => 20,
        Some(n) if n <= 1000 => n as usize,
        Some(_) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                "limit must be a whole number from 0 to 1000",
            ))
        }
    };
    let name = name.into_inner();
    let catalog = state.automations.catalog(&identity.tenant).await?;
    let entry = catalog.get(&name).ok_or_else(|| not_found(&name))?;
    let (stats, position) = state.automations.stats(&identity.tenant, &name).await?;
    let failures = state
        .automations
        .failures(&identity.tenant, &name, limit)
        .await?
        .into_iter()
        .map(|(event, failure)| FailureDoc {
            event: event.id.as_uuid(),
            position: event.position.get(),
            recorded_at: event.recorded_at,
            trigger_event: failure.trigger_event,
            version: failure.version,
            action: failure.action,
            error: failure.error,
        })
        .collect();
    Ok(HttpResponse::Ok().json(doc(entry, Some(stats_doc(stats, position)), Some(failures))))
}

fn not_found(name: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!(
            "no automation is named {:?} in this tenant",
            name.chars().take(80).collect::<String>()
        ),
    )
}

async fn switch(
    req: HttpRequest,
    identity: Identity,
    name: String,
    payload: web::Payload,
    state: web::Data<AppState>,
    enabled: bool,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(true)?;
    let request: Switch = super::body::read_optional_json(&req, payload, &state.limits).await?;
    super::text::check_reason(request.reason.as_deref())?;
    let changed = state
        .automations
        .switch(&identity.tenant, &name, enabled, request.reason)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(Applied {
        name: changed.accepted.name,
        version: changed.accepted.version,
        enabled,
        changed: changed.position.is_some(),
        position: changed.position.map(Position::get),
    }))
}

/// `POST /v1/automations/{name}/enable`
#[utoipa::path(
    post,
    path = "/v1/automations/{name}/enable",
    tag = "automations",
    operation_id = "enable_automation",
    summary = "Switch an automation on",
    description = "The automation runs on the events after this change (an \
        `automations.automation_enabled` event); enabling an enabled one changes nothing. No \
        body. Needs `automations:write`.",
    params(("name" = String, Path, description = "The automation's name")),
    responses(
        (status = 200, description = "Enabled (`changed` says whether it was off)", body = Applied),
        (status = 400, description = "`invalid-json` or `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn enable(
    req: HttpRequest,
    identity: Identity,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    switch(req, identity, name.into_inner(), payload, state, true).await
}

/// `POST /v1/automations/{name}/disable`
#[utoipa::path(
    post,
    path = "/v1/automations/{name}/disable",
    tag = "automations",
    operation_id = "disable_automation",
    summary = "Switch an automation off",
    description = "The automation stops running from this change on (an \
        `automations.automation_disabled` event, with the optional `reason`); its absence \
        waits end without acting and its schedule's timer is cancelled. It can still be tried \
        with `POST /v1/automations/dry-run`. Needs `automations:write`.",
    params(("name" = String, Path, description = "The automation's name")),
    request_body(content = Option<Switch>, description = "Optional: `{\"reason\": \"…\"}`"),
    responses(
        (status = 200, description = "Disabled (`changed` says whether it was on)", body = Applied),
        (status = 400, description = "`invalid-json` or `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request` (a reason that is empty or over 1000 characters)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn disable(
    req: HttpRequest,
    identity: Identity,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    switch(req, identity, name.into_inner(), payload, state, false).await
}

/// `DELETE /v1/automations/{name}`
#[utoipa::path(
    delete,
    path = "/v1/automations/{name}",
    tag = "automations",
    operation_id = "delete_automation",
    summary = "Delete an automation",
    description = "Removes the automation (an `automations.automation_deleted` event); its \
        history stays in the log. The name may be used again, from version 1. Needs \
        `automations:write`.",
    params(("name" = String, Path, description = "The automation's name")),
    responses(
        (status = 200, description = "Deleted", body = Applied),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    req: HttpRequest,
    identity: Identity,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(true)?;
    let changed = state
        .automations
        .delete(&identity.tenant, &name)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(Applied {
        name: changed.accepted.name,
        version: changed.accepted.version,
        enabled: false,
        changed: true,
        position: changed.position.map(Position::get),
    }))
}

/// The most decisions one dry run lists.
const MAX_DRY_RUN_DECISIONS: usize = 10_000;

/// `POST /v1/automations/dry-run`
#[utoipa::path(
    post,
    path = "/v1/automations/dry-run",
    tag = "automations",
    operation_id = "dry_run_automation",
    summary = "Try an automation on history",
    description = "Runs a `definition` (saved or not), or the saved automation `name` (enabled \
        or not), over the caller's events of a stretch of the log without any effect, and \
        lists in log order what it would have done: for each matching event, the condition's \
        value and every action rendered (ids, bodies, payloads; a command's `on_refused` \
        fallbacks as they would be sent if it were refused). Lookups read the state as of the \
        triggering event, as the engine does. An absence counts the awaited event when it was \
        recorded at most `within` after the start; waits that end after the stretch are listed \
        under `pending`. `limit` bounds the decisions; `next_after` then says where to go on. \
        Needs `automations:read`.",
    request_body = DryRunRequest,
    responses(
        (status = 200, description = "What it would have done", body = Object),
        (status = 400, description = "`invalid-json`, `invalid-utf8` or `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no saved automation `name`", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-automation`, or `invalid-request` (neither or both of `definition` and `name`, a bad `limit` or stretch)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn dry_run(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(false)?;
    let request: DryRunRequest = read_json(&req, payload, &state.limits).await?;
    let invalid = |detail: &str| Problem::new(ProblemKind::InvalidRequest, detail.to_owned());
    let (definition, version) = match (request.definition, request.name) {
        (Some(definition), None) => {
            super::text::check_body(&definition, ProblemKind::InvalidAutomation)?;
            let parsed = Definition::from_value(definition)
                .map_err(|e| refused(AutomationError::from(e)))?;
            (parsed, 0)
        }
        (None, Some(name)) => {
            let catalog = state.automations.catalog(&identity.tenant).await?;
            let entry = catalog.get(&name).ok_or_else(|| not_found(&name))?;
            let parsed = Definition::from_value(entry.definition.clone())
                .map_err(|e| refused(AutomationError::from(e)))?;
            (parsed, entry.version)
        }
        _ => return Err(invalid("name exactly one of `definition` and `name`")),
    };
    let limit = request.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_DRY_RUN_DECISIONS {
        return Err(invalid("limit is 1 to 10000"));
    }
    if let (Some(after), Some(until)) = (request.after, request.until) {
        if until <= after {
            return Err(invalid("until must be after `after`"));
        }
    }
    if let (Some(from), Some(to)) = (request.from, request.to) {
        if to <= from {
            return Err(invalid("to must be after from"));
        }
    }
    let stretch = Stretch {
        after: Position(request.after.unwrap_or(0).min(Position::MAX.get())),
        until: request.until.map(|u| Position(u.min(Position::MAX.get()))),
        from: request.from,
        to: request.to,
        max_decisions: limit,
        ..Stretch::default()
    };
    let report = state
        .automations
        .dry_run(&identity.tenant, &definition, version, &stretch)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /v1/automations/schema`
#[utoipa::path(
    get,
    path = "/v1/automations/schema",
    tag = "automations",
    operation_id = "automation_schema",
    summary = "The JSON Schema of an automation",
    description = "The JSON Schema (2020-12) every automation document must match (editors and \
        CI can validate files with it). Needs `automations:read`.",
    responses(
        (status = 200, description = "The schema", body = Object, content_type = "application/schema+json"),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn schema(req: HttpRequest, identity: Identity) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(false)?;
    Ok(HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(AUTOMATION_SCHEMA))
}

/// An automation's latest webhook deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<crate::automations::Delivery>,
}

/// The answer to a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub delivery_id: uuid::Uuid,
    /// The retry's event in the log.
    pub position: u64,
}

/// `GET /v1/automations/{name}/deliveries`
#[utoipa::path(
    get,
    path = "/v1/automations/{name}/deliveries",
    tag = "automations",
    operation_id = "automation_deliveries",
    summary = "An automation's webhook deliveries",
    description = "The latest webhook deliveries of the automation (`limit`, default 50), oldest \
        first: URL, trigger, `pending`, `delivered` (status code, attempts, latency of the \
        successful attempt) or `dead_lettered` (attempts, last status, error). Needs \
        `automations:read`.",
    params(
        ("name" = String, Path, description = "The automation's name"),
        ("limit" = Option<usize>, Query, description = "How many, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn deliveries(
    req: HttpRequest,
    identity: Identity,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = super::views::Params::parse(req.query_string(), &["limit"])?;
    identity.require_automations(false)?;
    let limit = match params.number("limit")? {
        None => 50,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(_) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                "limit must be a whole number from 1 to 1000",
            ))
        }
    };
    if !herald_automations::definition::valid_name(&name) {
        return Ok(HttpResponse::Ok().json(DeliveryList {
            deliveries: Vec::new(),
        }));
    }
    let deliveries = state
        .automations
        .deliveries(&identity.tenant, &name, limit)
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}

/// `POST /v1/automations/{name}/deliveries/{delivery}/retry`
#[utoipa::path(
    post,
    path = "/v1/automations/{name}/deliveries/{delivery}/retry",
    tag = "automations",
    operation_id = "retry_automation_delivery",
    summary = "Retry a dead-lettered webhook delivery",
    description = "Queues the dead-lettered delivery again (an \
        `automations.delivery_retry_requested` event) with a new retry window; it keeps its \
        delivery id. No body. Needs `automations:write`.",
    params(
        ("name" = String, Path, description = "The automation's name"),
        ("delivery" = uuid::Uuid, Path, description = "The delivery id (`Herald-Delivery`)"),
    ),
    responses(
        (status = 202, description = "Queued again", body = Retried),
        (status = 400, description = "`invalid-query` (not a delivery id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not-dead-lettered`: it is pending or was delivered", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn retry_delivery(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    super::views::Params::parse(req.query_string(), &[])?;
    identity.require_automations(true)?;
    let (name, delivery) = path.into_inner();
    let delivery: uuid::Uuid = delivery
        .parse()
        .map_err(|_| Problem::new(ProblemKind::InvalidQuery, "the delivery id is a UUID"))?;
    if !herald_automations::definition::valid_name(&name) {
        return Err(not_found(&name));
    }
    let position = state
        .automations
        .retry_delivery(&identity.tenant, &name, delivery)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Accepted().json(Retried {
        delivery_id: delivery,
        position: position.get(),
    }))
}
