//! `POST /v1/events`: external producers publish one event or a batch. Each
//! event names its stream, is checked against its schema and the caller's
//! scopes, and is appended to the caller's tenant; the answer comes after
//! commit. An idempotency key makes a retry return the original answer
//! without appending: the event id is derived from the tenant and the key,
//! and the store is idempotent on event ids. In a batch each event gets its
//! own result; `"atomic": true` makes it all or nothing. The check of one
//! event is shared with the broker ingest ([`super::item`]).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::future::join_all;
use herald_events::StreamId;
use herald_store::AppendOutcome;
use serde::Serialize;
use serde_json::{Map, Value};

use super::body::read_json;
use super::item::{prepare, Prepared, PublishItem};
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::Identity;

/// One event's result.
#[derive(Debug, Serialize)]
struct ItemResult {
    index: usize,
    status: u16,
    #[serde(flatten)]
    detail: Map<String, Value>,
}

fn accepted(index: usize, stream: &StreamId, outcome: &AppendOutcome) -> ItemResult {
    let e = outcome.events[0];
    let mut detail = Map::new();
    detail.insert("id".into(), Value::String(e.id.to_string()));
    detail.insert("stream".into(), Value::String(stream.to_string()));
    detail.insert("position".into(), e.position.get().into());
    detail.insert("stream_version".into(), e.stream_version.get().into());
    detail.insert("duplicate".into(), outcome.duplicate.into());
    ItemResult {
        index,
        status: if outcome.duplicate { 200 } else { 201 },
        detail,
    }
}

fn refused(index: usize, problem: &Problem) -> ItemResult {
    let mut detail = Map::new();
    detail.insert("problem".into(), problem.body());
    ItemResult {
        index,
        status: problem.kind.status().as_u16(),
        detail,
    }
}

/// `POST /v1/events`
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    operation_id = "publish_events",
    summary = "Publish one event or a batch",
    description = "Each event names its stream, is checked against its schema and the caller's \
        `publish` scopes, and is appended to the caller's tenant; the answer comes after commit. \
        An `idempotency_key` stands for the event id, so a retry appends nothing and answers the \
        first answer. A batch (`{\"events\": [...], \"atomic\": false}`) answers one result per \
        event; with `\"atomic\": true` it is all or nothing. The README's \"Publishing events\" \
        has examples.",
    request_body = super::openapi::PublishBody,
    responses(
        (status = 201, description = "Every event was appended", body = super::openapi::PublishResponse),
        (status = 200, description = "Every event repeated an earlier one: nothing new was written", body = super::openapi::PublishResponse),
        (
            status = 207,
            description = "A batch that is not atomic, some of whose events failed (the others are stored)",
            body = super::openapi::PublishAnswer,
        ),
        (status = 400, description = "`invalid-json`, `invalid-utf8` or `invalid-stream-id` (malformed, `.` or `..`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant, or an event type outside the caller's `publish` scopes", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` or `duplicate-event-id`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`: over `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout` (`timeout_ms` given); the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: no `Content-Type`, or one other than JSON", body = Problem, content_type = "application/problem+json"),
        (
            status = 422,
            description = "`invalid-request`, `invalid-append`, `too-many-events`, `unknown-event-type`, \
                `unknown-schema-version`, `payload-not-object` or `schema-violation` (`event_index` names \
                the event). An atomic batch that fails answers its first failing event's problem, \
                with `errors` holding each failing event's result; nothing was appended",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn publish(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let body: Value = read_json(&req, payload, &state.limits).await?;
    let (items, atomic, single) = match body {
        Value::Object(mut map) if map.contains_key("events") => {
            let atomic = match map.remove("atomic") {
                None | Some(Value::Bool(false)) => false,
                Some(Value::Bool(true)) => true,
                Some(_) => {
                    return Err(Problem::new(
                        ProblemKind::InvalidRequest,
                        "atomic must be true or false",
                    ))
                }
            };
            if let Some(extra) = map.keys().find(|k| k.as_str() != "events") {
                return Err(Problem::new(
                    ProblemKind::InvalidRequest,
                    format!("unknown field {extra:?}; a batch is {{\"events\": [...], \"atomic\": bool}}"),
                ));
            }
            let items = match map.remove("events") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(Problem::new(
                        ProblemKind::InvalidRequest,
                        "events must be an array of event objects",
                    ))
                }
            };
            (items, atomic, false)
        }
        Value::Object(map) => (vec![Value::Object(map)], true, true),
        _ => {
            return Err(Problem::new(
                ProblemKind::InvalidRequest,
                "send one event object or {\"events\": [...]}",
            ))
        }
    };
    if items.is_empty() {
        return Err(Problem::new(
            ProblemKind::InvalidAppend,
            "events must hold at least one event",
        ));
    }
    if items.len() > state.limits.max_events_per_append {
        return Err(Problem::new(
            ProblemKind::TooManyEvents,
            format!(
                "{} events in one request; the limit is {}",
                items.len(),
                state.limits.max_events_per_append
            ),
        )
        .with("limit", state.limits.max_events_per_append));
    }

    // Runtime types named here may have just been registered elsewhere.
    state
        .schemas
        .prefetch(&identity.tenant, items.iter().map(named_type))
        .await?;
    // Check every item first.
    let mut prepared: Vec<Result<Prepared, Problem>> = Vec::with_capacity(items.len());
    for (index, raw) in items.into_iter().enumerate() {
        let item = serde_json::from_value::<PublishItem>(raw).map_err(|e| {
            Problem::new(ProblemKind::InvalidRequest, format!("events[{index}]: {e}"))
                .with("event_index", index)
        });
        prepared.push(item.and_then(|item| prepare(index, item, &state.registry, &identity)));
    }
    if single {
        let p = prepared.pop().expect("one item")?;
        let outcome = state
            .store
            .append(&identity.tenant, &p.stream, p.expected, vec![p.event])
            .await?;
        let result = accepted(0, &p.stream, &outcome);
        return Ok(HttpResponse::build(
            StatusCode::from_u16(result.status).unwrap_or(StatusCode::CREATED),
        )
        .json(result.detail));
    }

    if atomic {
        if let Some(problem) = prepared.iter().find_map(|p| p.as_ref().err()) {
            let results: Vec<ItemResult> = prepared
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().err().map(|problem| refused(i, problem)))
                .collect();
            return Err(Problem::new(
                problem.kind,
                format!("nothing was appended: {}", problem.detail),
            )
            .with("errors", serde_json::to_value(results).unwrap_or_default()));
        }
        let ok: Vec<Prepared> = prepared.into_iter().filter_map(Result::ok).collect();
        let streams: Vec<StreamId> = ok.iter().map(|p| p.stream.clone()).collect();
        let outcomes = state
            .store
            .append_all(
                &identity.tenant,
                ok.into_iter()
                    .map(|p| (p.stream, p.expected, vec![p.event]))
                    .collect(),
            )
            .await?;
        let results: Vec<ItemResult> = outcomes
            .iter()
            .zip(&streams)
            .enumerate()
            .map(|(i, (outcome, stream))| accepted(i, stream, outcome))
            .collect();
        return Ok(answer(true, results));
    }

    // Not atomic: each event on its own; streams in parallel, each stream's
    // events in the order given.
    let mut results: Vec<Option<ItemResult>> = (0..prepared.len()).map(|_| None).collect();
    let mut per_stream: BTreeMap<StreamId, Vec<(usize, Prepared)>> = BTreeMap::new();
    for (index, p) in prepared.into_iter().enumerate() {
        match p {
            Ok(p) => per_stream
                .entry(p.stream.clone())
                .or_default()
                .push((index, p)),
            Err(problem) => results[index] = Some(refused(index, &problem)),
        }
    }
    let tenant = identity.tenant.clone();
    let store = &state.store;
    let done = join_all(per_stream.into_values().map(|items| {
        let tenant = tenant.clone();
        async move {
            let mut out = Vec::with_capacity(items.len());
            for (index, p) in items {
                let result = match store
                    .append(&tenant, &p.stream, p.expected, vec![p.event])
                    .await
                {
                    Ok(outcome) => accepted(index, &p.stream, &outcome),
                    Err(e) => refused(index, &Problem::from(e).with("event_index", index)),
                };
                out.push(result);
            }
            out
        }
    }))
    .await;
    for result in done.into_iter().flatten() {
        let index = result.index;
        results[index] = Some(result);
    }
    Ok(answer(false, results.into_iter().flatten().collect()))
}

/// 201 when every event was appended (200 when all were repeats), 207
/// Multi-Status when results differ, with `Retry-After` when some met an
/// unavailable store.
fn answer(atomic: bool, results: Vec<ItemResult>) -> HttpResponse {
    let all_ok = results.iter().all(|r| r.status < 300);
    let all_repeats = results.iter().all(|r| r.status == 200);
    let status = if all_ok && all_repeats {
        StatusCode::OK
    } else if all_ok {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut response = HttpResponse::build(status);
    // Some events met a store that cannot serve now: the header tells the
    // client when to send those again, as a 503 of its own would.
    if results.iter().any(|r| r.status == 503) {
        response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
    }
    response.json(serde_json::json!({ "atomic": atomic, "results": results }))
}

/// The event type and schema version an item names, before it is checked.
pub(super) fn named_type(item: &Value) -> (&str, Option<u64>) {
    (
        item.get("type").and_then(Value::as_str).unwrap_or_default(),
        item.get("version").and_then(Value::as_u64),
    )
}
