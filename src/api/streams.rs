//! `/v1/streams/{domain}/{id}/events`: append events to a stream (validated
//! against their schemas, answered only after commit) and read a stream.
//! An `Idempotency-Key` makes an append safe to retry
//! ([`super::idempotency`]): events without an id of their own get ids
//! derived from the key, and a repeat is answered from the key's record.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, EventId, NewEvent, StreamId, StreamVersion};
use herald_store::{Claimed, ExpectedVersion, IdempotencyClaim};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::body::read_json;
use super::item::EventFields;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::{Action, Identity};

/// Most events one read returns.
pub const MAX_READ: usize = 1000;
const DEFAULT_READ: usize = 100;

/// The body of an append.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The stream version the producer last saw; `null` or absent for no check,
    /// `0` for "the stream must not exist yet".
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// 1 to `max_events_per_append` events, each of a type of the stream's
    /// domain.
    pub events: Vec<EventBody>,
}

/// One event of an append.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Makes retries idempotent; Herald makes a UUID v7 when absent.
    pub id: Option<Uuid>,
    /// A registered event type, `domain.name`.
    #[serde(rename = "type")]
    #[schema(example = "tickets.ticket_opened")]
    pub event_type: String,
    /// The schema version the payload is written in.
    pub version: u32,
    /// The event's data, checked against its type's schema.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// When it happened; the time of the append when absent.
    pub occurred_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The sender's name.
    pub producer: Option<String>,
}

/// One appended event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
struct AppendedBody {
    #[schema(value_type = Uuid)]
    id: EventId,
    position: u64,
    stream_version: u64,
}

/// The answer to an append.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
struct AppendAnswer {
    stream: String,
    stream_version: u64,
    /// True when this repeated an earlier append: nothing new was written.
    duplicate: bool,
    events: Vec<AppendedBody>,
}

pub(super) fn stream_from_path(domain: &str, id: &str) -> ApiResult<StreamId> {
    StreamId::parse_parts(domain, id).map_err(|e| {
        Problem::new(
            ProblemKind::InvalidStreamId,
            format!("stream {domain}/{id}: {e}"),
        )
    })
}

pub(super) fn to_new_event(
    index: usize,
    body: EventBody,
    stream: &StreamId,
    state: &AppState,
    identity: &Identity,
) -> ApiResult<NewEvent> {
    super::item::check_event(
        index,
        stream,
        EventFields {
            event_type: body.event_type,
            version: body.version,
            payload: body.payload,
            id: body.id,
            occurred_at: body.occurred_at,
            correlation_id: body.correlation_id,
            causation_id: body.causation_id,
            producer: body.producer,
        },
        &state.registry,
        identity,
    )
}

/// `POST /v1/streams/{domain}/{id}/events`
#[utoipa::path(
    post,
    path = "/v1/streams/{domain}/{id}/events",
    tag = "streams",
    operation_id = "append_to_stream",
    summary = "Append events to a stream",
    description = "Appends the events to the stream `{domain}/{id}` of the caller's tenant, each \
        checked against its type's schema and the caller's `publish` scopes, and answers after \
        commit. Each event's type must belong to the stream's domain. `expected_version` makes \
        the append conditional. Repeating an append (the same event ids) appends nothing and \
        answers 200. With an `Idempotency-Key`, events without an `id` get ids derived from it, \
        and a repeat of the same body on the same stream within the key's window (24 h by \
        default) answers 200 with the first answer, `\"duplicate\": true` and \
        `Idempotent-Replayed: true`; the key with another body is refused (422 \
        `idempotency-key-reused`).",
    params(
        ("domain" = String, Path, description = "The stream's domain", pattern = "^[a-z][a-z0-9_]{0,31}$"),
        ("id" = String, Path, description = "The stream's id within its domain: not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: 1 to 200 visible ASCII characters, scoped to the tenant and the stream, kept 24 h (`--idempotency-window`) from its first use", max_length = 200, min_length = 1),
        TenantQuery,
    ),
    request_body = AppendBody,
    responses(
        (
            status = 201,
            description = "Appended",
            body = AppendAnswer,
            headers(("Location" = String, description = "Reads the stream from the first appended event")),
        ),
        (
            status = 200,
            description = "A repeat of an earlier append (the same event ids, or the same \
                `Idempotency-Key` and body): nothing new was written",
            body = AppendAnswer,
            headers(
                ("Location" = String, description = "Reads the stream from the first event of the append"),
                ("Idempotent-Replayed" = bool, description = "`true` when this repeats the answer to an earlier request with the same `Idempotency-Key`"),
            ),
        ),
        (status = 400, description = "`invalid-json` (line and column given), `invalid-utf8`, `invalid-stream-id` (malformed, `.` or `..`) or `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant, or an event type outside the caller's `publish` scopes", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` (`expected_version`, `actual_version` given) or `duplicate-event-id`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`: over `max_body_bytes` (`limit_bytes` given)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout` (`timeout_ms` given); the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: no `Content-Type`, or one other than JSON", body = Problem, content_type = "application/problem+json"),
        (
            status = 422,
            description = "`invalid-request`, `invalid-append`, `too-many-events`, `unknown-event-type`, \
                `unknown-schema-version`, `payload-not-object` or `schema-violation`; `event_index` names \
                the event and `violations` lists each schema violation with a JSON pointer; \
                `idempotency-key-reused`: the `Idempotency-Key` was used for another body on this \
                stream (`idempotency_key`, `first_used_at` given)",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn append(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (domain, id) = path.into_inner();
    let stream = stream_from_path(&domain, &id)?;
    let scope: TenantQuery = parse_query(&req)?;
    identity.require_tenant(scope.tenant.as_deref())?;
    let key = super::idempotency::key(&req)?;
    let mut body: AppendBody = read_json(&req, payload, &state.limits).await?;
    if body.events.is_empty() {
        return Err(Problem::new(
            ProblemKind::InvalidAppend,
            "events must hold at least one event",
        ));
    }
    if body.events.len() > state.limits.max_events_per_append {
        return Err(Problem::new(
            ProblemKind::TooManyEvents,
            format!(
                "{} events in one append; the limit is {}",
                body.events.len(),
                state.limits.max_events_per_append
            ),
        )
        .with("limit", state.limits.max_events_per_append));
    }
    let claim = match key {
        Some(key) => Some(claim_for(key, &body, &stream, &identity)?),
        None => None,
    };
    if let Some(claim) = &claim {
        for (i, event) in body.events.iter_mut().enumerate() {
            event.id = event.id.or(Some(claim.event_id(i).as_uuid()));
        }
    }
    state
        .schemas
        .prefetch(
            &identity.tenant,
            body.events
                .iter()
                .map(|e| (e.event_type.as_str(), Some(u64::from(e.version)))),
        )
        .await?;
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| to_new_event(i, e, &stream, &state, &identity))
        .collect::<ApiResult<Vec<_>>>()?;

    if let Some(claim) = &claim {
        match state.store.claim_idempotency_key(claim).await? {
            Claimed::New | Claimed::Unsettled => {}
            Claimed::Answered(answer) => return Ok(replay(&stream, answer)),
            Claimed::Conflict { first_used_at } => {
                return Err(super::idempotency::reused(&claim.key, first_used_at))
            }
        }
    }
    let expected = ExpectedVersion::from_option(body.expected_version);
    let appended = state
        .store
        .append(&identity.tenant, &stream, expected, events)
        .await;
    let outcome = match (appended, &claim) {
        (Ok(outcome), _) => outcome,
        (Err(e), Some(claim)) if e.is_caller_error() => {
            // Refused: nothing was written, so the key stays free.
            if let Err(released) = state.store.release_idempotency_key(claim).await {
                tracing::warn!(error = %released, key = %claim.key, "Claim of a refused append not released.");
            }
            return Err(e.into());
        }
        (Err(e), _) => return Err(e.into()),
    };

    let first = outcome.events.first().map_or(1, |e| e.stream_version.get());
    let answer = AppendAnswer {
        stream: stream.to_string(),
        stream_version: outcome.stream_version.get(),
        duplicate: outcome.duplicate,
        events: outcome
            .events
            .iter()
            .map(|e| AppendedBody {
                id: e.id,
                position: e.position.get(),
                stream_version: e.stream_version.get(),
            })
            .collect(),
    };
    if let Some(claim) = &claim {
        // Recorded as first given, whichever attempt gave it.
        let first_answer = AppendAnswer {
            duplicate: false,
            ..answer.clone()
        };
        let recorded = match serde_json::to_value(&first_answer) {
            Ok(value) => state
                .store
                .complete_idempotency_key(claim, &value)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = recorded {
            // A repeat still appends nothing: its event ids are stored.
            tracing::warn!(error = %e, key = %claim.key, "Answer of a keyed append not recorded.");
        }
    }
    let mut response = if outcome.duplicate {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    if claim.is_some() && outcome.duplicate {
        response.insert_header((super::idempotency::REPLAYED, "true"));
    }
    Ok(response
        .insert_header((header::LOCATION, location(&stream, first)))
        .json(answer))
}

fn location(stream: &StreamId, first_version: u64) -> String {
    format!(
        "/v1/streams/{}/{}/events?from_version={first_version}",
        stream.domain(),
        stream.id()
    )
}

/// The claim of an append's `Idempotency-Key`: its fingerprint is the body
/// as sent (before ids are derived), in canonical JSON.
fn claim_for(
    key: String,
    body: &AppendBody,
    stream: &StreamId,
    identity: &Identity,
) -> ApiResult<IdempotencyClaim> {
    let body = serde_json::to_value(body).map_err(|e| {
        Problem::new(
            ProblemKind::Internal,
            format!("the body cannot be hashed: {e}"),
        )
    })?;
    Ok(IdempotencyClaim {
        tenant: identity.tenant.clone(),
        stream: stream.clone(),
        key,
        fingerprint: herald_store::idempotency::fingerprint(&[
            "append",
            &herald_events::chain::canonical_json(&body),
        ]),
    })
}

/// The recorded answer of an earlier append with the same key, as a repeat.
fn replay(stream: &StreamId, mut answer: Value) -> HttpResponse {
    answer["duplicate"] = Value::Bool(true);
    let first = answer["events"][0]["stream_version"].as_u64().unwrap_or(1);
    HttpResponse::Ok()
        .insert_header((header::LOCATION, location(stream, first)))
        .insert_header((super::idempotency::REPLAYED, "true"))
        .json(answer)
}

/// `?tenant=`: optional, and when given it must be the caller's own.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// Optional; any tenant but the caller's own is refused (403).
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Optional; any tenant but the caller's own is refused (403).
    tenant: Option<String>,
    /// The first stream version to return (default 1); at most
    /// 9223372036854775807, the largest version a store holds.
    from_version: Option<u64>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Return events as stored instead of upcast to their latest version.
    #[serde(default)]
    as_stored: bool,
}

/// A page of a stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StreamPage {
    /// `domain/id`.
    stream: String,
    /// The stream's version when read.
    stream_version: u64,
    #[schema(value_type = Vec<super::openapi::EventEnvelope>)]
    events: Vec<EventEnvelope>,
    /// The `from_version` of the next page.
    next_version: u64,
}

pub(super) fn parse_query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> ApiResult<T> {
    serde_urlencoded_query(req.query_string())
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: &str) -> ApiResult<T> {
    web::Query::<T>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| {
            let problem = Problem::new(ProblemKind::InvalidQuery, e.to_string());
            match culprit::<T>(query) {
                Some(name) => Problem::new(
                    ProblemKind::InvalidQuery,
                    format!("the query parameter {name} is malformed: {e}"),
                )
                .with("parameter", name),
                None => problem,
            }
        })
}

/// The parameter whose removal makes `query` parse, when there is one:
/// the error messages of the query parser do not name it.
fn culprit<T: serde::de::DeserializeOwned>(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // These routes take a handful of parameters; many more is no typo.
    if pairs.len() > 16 {
        return None;
    }
    pairs.iter().enumerate().find_map(|(skip, (name, _))| {
        let rest: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                pairs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, pair)| pair),
            )
            .finish();
        web::Query::<T>::from_query(&rest)
            .is_ok()
            .then(|| name.chars().take(64).collect())
    })
}

pub(super) fn upcast_all(
    state: &AppState,
    events: Vec<EventEnvelope>,
    as_stored: bool,
) -> ApiResult<Vec<EventEnvelope>> {
    if as_stored {
        return Ok(events);
    }
    events
        .into_iter()
        .map(|e| {
            let position = e.position;
            state.registry.upcast(e).map_err(|err| {
                tracing::error!(%position, error = %err, "Stored event cannot be upcast.");
                Problem::new(
                    ProblemKind::Internal,
                    format!("event at position {position} cannot be upcast: {err}"),
                )
            })
        })
        .collect()
}

/// `GET /v1/streams/{domain}/{id}/events?from_version=&limit=`
#[utoipa::path(
    get,
    path = "/v1/streams/{domain}/{id}/events",
    tag = "streams",
    operation_id = "read_stream",
    summary = "Read a stream",
    description = "The stream's events from `from_version` in order, upcast to their types' latest \
        schema versions unless `as_stored=true`. Needs `read` on the domain.",
    params(
        ("domain" = String, Path, description = "The stream's domain", pattern = "^[a-z][a-z0-9_]{0,31}$"),
        ("id" = String, Path, description = "The stream's id within its domain: not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
        ReadQuery,
    ),
    responses(
        (status = 200, description = "A page of the stream; `next_version` is the `from_version` of the next", body = StreamPage),
        (status = 400, description = "`invalid-stream-id` or `invalid-query` (`parameter` names it; a `from_version` past 9223372036854775807 included)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: another tenant, or no `read` scope on the domain", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`stream-not-found`: the stream has no events", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn read(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (domain, id) = path.into_inner();
    let stream = stream_from_path(&domain, &id)?;
    let query: ReadQuery = parse_query(&req)?;
    identity.require_tenant(query.tenant.as_deref())?;
    identity.require_domain(Action::Read, stream.domain().as_str())?;
    let limit = query.limit.unwrap_or(DEFAULT_READ);
    if limit == 0 || limit > MAX_READ {
        return Err(Problem::new(
            ProblemKind::InvalidQuery,
            format!("limit must be 1 to {MAX_READ}"),
        ));
    }
    let tenant = &identity.tenant;
    let from = StreamVersion(query.from_version.unwrap_or(1).max(1));
    if from > StreamVersion::MAX {
        return Err(Problem::new(
            ProblemKind::InvalidQuery,
            format!(
                "from_version is {from}, past {}, the largest stream version a store holds",
                StreamVersion::MAX
            ),
        )
        .with("parameter", "from_version"));
    }
    let (version, events) = futures::try_join!(
        state.store.stream_version(tenant, &stream),
        state.store.read_stream(tenant, &stream, from, limit),
    )?;
    if version == StreamVersion::EMPTY && events.is_empty() {
        return Err(Problem::new(
            ProblemKind::StreamNotFound,
            format!("stream {stream} has no events"),
        )
        .with("stream", stream.as_str()));
    }
    let next_version = events
        .last()
        .map_or(from.get(), |e| e.stream_version.get() + 1);
    // The version read may precede an event the read found; never a version
    // the stream has not reached, whatever `from_version` asked for.
    let version = events
        .last()
        .map_or(version, |e| e.stream_version.max(version));
    let events = upcast_all(&state, events, query.as_stored)?;
    Ok(HttpResponse::Ok().json(StreamPage {
        stream: stream.to_string(),
        stream_version: version.get(),
        events,
        next_version,
    }))
}
