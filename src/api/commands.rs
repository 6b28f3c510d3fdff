//! Commands and aggregate states of every domain:
//! `POST /v1/{domain}/{id}/{command}` with the command's JSON body runs it
//! through the domain's actor group and answers with the events it caused;
//! `GET /v1/{domain}/{id}` answers the aggregate's current state and
//! version. A command needs a `publish` scope covering every event type of
//! its domain; a state needs `read` on the domain. Both act in the caller's
//! tenant only. An `Idempotency-Key` makes a command safe to retry
//! ([`super::idempotency`]).

use actix_web::{web, HttpRequest, HttpResponse};
use herald_actors::{CommandError, CommandMeta, Idempotency, RefusalKind};
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::read_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::{Action, Identity};
use crate::placement::{Failure, Outcome};

/// `POST /v1/{domain}/{id}/{command}`
#[utoipa::path(
    post,
    path = "/v1/{domain}/{id}/{command}",
    tag = "commands",
    operation_id = "execute_command",
    summary = "Run a command",
    description = "Runs the command on the aggregate `{domain}/{id}` of the caller's tenant through \
        the domain's actor group and answers with the events it caused. Each domain's commands \
        and their JSON bodies are documented in the README, \"Domains and commands\". Needs a \
        `publish` scope covering the whole domain (`publish:tickets`). With an `Idempotency-Key` \
        a retry is safe: a repeat of the same command and body on the same aggregate within the \
        key's window (24 h by default) answers 200 with the first answer's events, \
        `\"duplicate\": true` and `Idempotent-Replayed: true`, and appends nothing; the key \
        with another command or body is refused (422 `idempotency-key-reused`).",
    params(
        ("domain" = super::openapi::CommandDomain, Path, description = "A domain Herald runs; its commands and their bodies are in the README, \"Domains and commands\""),
        ("id" = String, Path, description = "The aggregate's id (its stream's id): not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
        ("command" = super::openapi::CommandName, Path, description = "One of the domain's commands (README, \"Domains and commands\")"),
        ("X-Correlation-Id" = Option<Uuid>, Header, description = "Joins the caused events to an existing correlation"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: 1 to 200 visible ASCII characters, scoped to the tenant and the aggregate, kept 24 h (`--idempotency-window`) from its first use", max_length = 200, min_length = 1),
    ),
    request_body = super::openapi::CommandBody,
    responses(
        (status = 201, description = "Done: the events it caused", body = super::openapi::CommandAnswer),
        (
            status = 200,
            description = "Nothing changed, or a repeat of an earlier command with the same \
                `Idempotency-Key`: the first answer, `duplicate` true (`Idempotent-Replayed: true`)",
            body = super::openapi::CommandAnswer,
            headers(("Idempotent-Replayed" = bool, description = "`true` when this repeats an earlier answer")),
        ),
        (status = 400, description = "`invalid-json`, `invalid-utf8` or `invalid-stream-id` (malformed, `.` or `..`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `publish` scope covering the domain", body = Problem, content_type = "application/problem+json"),
        (
            status = 404,
            description = "`not-found` (no such domain), `unknown-command`, or `aggregate-not-found` (the \
                command needs an aggregate that does not exist yet)",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (status = 409, description = "`command-refused` (the aggregate's state forbids it) or `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`: over `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout` (`timeout_ms` given); the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: no `Content-Type`, or one other than JSON", body = Problem, content_type = "application/problem+json"),
        (
            status = 422,
            description = "`invalid-command` (a field breaks a rule or its event's schema) or \
                `invalid-request` (a body of the wrong shape, text holding U+0000 — its JSON \
                `pointer` given — or a malformed `X-Correlation-Id` or `Idempotency-Key`), or \
                `idempotency-key-reused` (the key was used for another command or body on this \
                aggregate; `idempotency_key` and `first_used_at` given)",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (
            status = 503,
            description = "`busy` (too many commands wait for the aggregate), `store-unavailable` or \
                `shutting-down` (`Retry-After` given)",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
    security(("bearer" = [])),
)]
pub async fn execute(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (domain, id, command) = path.into_inner();
    let Some(group) = state.domains.get(&domain) else {
        return Err(unknown_domain(&domain));
    };
    identity.require_domain(Action::Publish, &domain)?;
    let key = super::idempotency::key(&req)?;
    let body: Value = read_json(&req, payload, &state.limits).await?;
    super::text::check_body(&body, ProblemKind::InvalidRequest)?;
    refuse_reserved_delivery(&domain, &command, &body)?;
    let idempotency = key.map(|key| Idempotency {
        fingerprint: herald_store::idempotency::fingerprint(&[
            "command",
            &command,
            &herald_events::chain::canonical_json(&body),
        ]),
        key,
    });
    let keyed = idempotency.is_some();
    let meta = CommandMeta {
        correlation_id: correlation(&req)?,
        causation_id: None,
        dedupe_key: None,
        producer: Some(format!("http:{}", identity.subject)),
        idempotency,
        // Set by the placement when this process owns the aggregate.
        decided_by_owner: false,
    };
    let executed = place(
        &state,
        &**group,
        &identity.tenant,
        &id,
        &command,
        body,
        meta,
    )
    .await?;
    let status = if executed.events.is_empty() || executed.duplicate {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    let mut response = HttpResponse::build(status);
    if keyed && executed.duplicate {
        response.insert_header((super::idempotency::REPLAYED, "true"));
    }
    Ok(response.json(executed))
}

/// `GET /v1/{domain}/{id}`
#[utoipa::path(
    get,
    path = "/v1/{domain}/{id}",
    tag = "commands",
    operation_id = "aggregate_state",
    summary = "An aggregate's state",
    description = "The current state and version of the aggregate `{domain}/{id}` of the caller's \
        tenant. Each domain's state is described in the README, \"Domains and commands\". Needs \
        `read` on the domain.",
    params(
        ("domain" = super::openapi::CommandDomain, Path, description = "A domain Herald runs; its commands and their bodies are in the README, \"Domains and commands\""),
        ("id" = String, Path, description = "The aggregate's id (its stream's id): not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
    ),
    responses(
        (status = 200, description = "The state and version", body = super::openapi::AggregateState),
        (status = 400, description = "`invalid-stream-id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` scope on the domain", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` (no such domain) or `aggregate-not-found` (no events yet)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn state(
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (domain, id) = path.into_inner();
    let Some(group) = state.domains.get(&domain) else {
        return Err(unknown_domain(&domain));
    };
    identity.require_domain(Action::Read, &domain)?;
    match group
        .state_json(&identity.tenant, &id)
        .await
        .map_err(problem)?
    {
        Some((aggregate, version)) => Ok(HttpResponse::Ok().json(json!({
            "domain": domain,
            "id": id,
            "version": version,
            "state": aggregate,
        }))),
        None => Err(Problem::new(
            ProblemKind::AggregateNotFound,
            format!("{domain}/{id} has no events"),
        )),
    }
}

/// Runs a command where its aggregate lives (here, or at the process that
/// owns it), with the answer or problem the owner gave.
pub(super) async fn place(
    state: &AppState,
    group: &dyn herald_actors::CommandTarget,
    tenant: &herald_events::TenantId,
    id: &str,
    command: &str,
    body: Value,
    meta: CommandMeta,
) -> ApiResult<herald_actors::Executed> {
    match state
        .placement
        .execute(group, group.domain(), tenant, id, command, body, meta)
        .await
    {
        Outcome::Here(executed) => executed.map_err(problem),
        Outcome::There(executed) => executed.map_err(from_failure),
    }
}

fn unknown_domain(domain: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!(
            "no domain {:?} takes commands here",
            domain.chars().take(64).collect::<String>()
        ),
    )
}

/// An optional `X-Correlation-Id` header joins the command's events to an
/// existing correlation.
fn correlation(req: &HttpRequest) -> ApiResult<Option<Uuid>> {
    match req.headers().get("x-correlation-id") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| Uuid::parse_str(v).ok())
            .map(Some)
            .ok_or_else(|| {
                Problem::new(
                    ProblemKind::InvalidRequest,
                    "X-Correlation-Id must be a UUID",
                )
            }),
    }
}

/// A command's failure as the owner of its aggregate sends it to the
/// process that forwarded the command.
pub(crate) fn describe(e: CommandError) -> Failure {
    let problem = problem(e);
    Failure {
        kind: problem.kind.slug().to_owned(),
        detail: problem.detail,
        extensions: problem.extensions,
        retry_after_secs: problem.retry_after_secs,
    }
}

/// The problem the owner described, answered as it would have.
fn from_failure(failure: Failure) -> Problem {
    let kind = ProblemKind::ALL
        .iter()
        .copied()
        .find(|k| k.slug() == failure.kind)
        .unwrap_or(ProblemKind::Internal);
    let mut problem = Problem::new(kind, failure.detail);
    problem.extensions = failure.extensions;
    problem.retry_after_secs = failure.retry_after_secs;
    problem
}

/// The HTTP face of a command's failure.
pub(super) fn problem(e: CommandError) -> Problem {
    match e {
        CommandError::Refused(refusal) => {
            let kind = match refusal.kind {
                RefusalKind::Forbidden => ProblemKind::CommandRefused,
                RefusalKind::Invalid => ProblemKind::InvalidCommand,
                RefusalKind::NotFound => ProblemKind::AggregateNotFound,
            };
            Problem::new(kind, refusal.message)
        }
        CommandError::InvalidStream { source, .. } => {
            Problem::new(ProblemKind::InvalidStreamId, source.to_string())
        }
        CommandError::UnknownCommand { domain, command } => Problem::new(
            ProblemKind::UnknownCommand,
            format!("the {domain} domain has no command {command:?}"),
        ),
        CommandError::InvalidBody { command, source } => Problem::new(
            ProblemKind::InvalidRequest,
            format!("the body of {command}: {source}"),
        ),
        CommandError::Busy { .. } => Problem::new(ProblemKind::Busy, e.to_string()).retry_after(1),
        CommandError::Contended { .. } => Problem::new(ProblemKind::Contended, e.to_string()),
        CommandError::IdempotencyKeyReused { key, first_used_at } => {
            super::idempotency::reused(&key, first_used_at)
        }
        CommandError::Store(store) => Problem::from(store),
        CommandError::Unavailable { stream } => Problem::new(
            ProblemKind::ShuttingDown,
            format!("the actor of {stream} kept stopping"),
        )
        .retry_after(1),
        // A stored event the aggregate cannot read, a recorded answer or a
        // state that cannot be (de)coded, a domain missing from the
        // process: bugs, not the caller's doing.
        _ => {
            tracing::error!(error = %e, "Command failed inside Herald.");
            Problem::new(
                ProblemKind::Internal,
                "the command failed; the error is logged",
            )
        }
    }
}

/// A timer may not deliver into the domains only Herald appends to
/// (`registry`, `automations`): a timer delivering `automations.absence_elapsed`
/// would end an automation's wait by hand. Herald's own timers are
/// scheduled by the automations engine directly, not over HTTP.
fn refuse_reserved_delivery(domain: &str, command: &str, body: &Value) -> ApiResult<()> {
    if domain != herald_events::timers::DOMAIN || command != "schedule" {
        return Ok(());
    }
    let target = body
        .get("deliver")
        .and_then(|d| d.get("domain"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if target == herald_events::registry::events::DOMAIN
        || target == herald_events::automations::DOMAIN
        || target == herald_events::subjects::DOMAIN
    {
        return Err(Problem::new(
            ProblemKind::ReservedEventType,
            format!(
                "a timer cannot deliver into the {target} domain: only Herald appends its events"
            ),
        )
        .with("pointer", "/deliver/domain"));
    }
    Ok(())
}
