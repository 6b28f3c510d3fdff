//! `/v1/streams/{domain}/{id}/events`: append events to a stream (validated
//! against their schemas, answered only after commit) and read a stream.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, EventId, NewEvent, StreamId, StreamVersion};
use herald_store::ExpectedVersion;
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The stream version the producer last saw; `null` or absent for no check,
    /// `0` for "the stream must not exist yet".
    #[serde(default)]
    pub expected_version: Option<u64>,
    pub events: Vec<EventBody>,
}

/// One event of an append.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Makes retries idempotent; Herald makes a UUID v7 when absent.
    pub id: Option<Uuid>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub payload: Value,
    pub occurred_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub producer: Option<String>,
}

#[derive(Debug, Serialize)]
struct AppendedBody {
    id: EventId,
    position: u64,
    stream_version: u64,
}

#[derive(Debug, Serialize)]
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
    let body: AppendBody = read_json(&req, payload, state.limits.max_body_bytes).await?;
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
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| to_new_event(i, e, &stream, &state, &identity))
        .collect::<ApiResult<Vec<_>>>()?;

    let expected = ExpectedVersion::from_option(body.expected_version);
    let outcome = state
        .store
        .append(&identity.tenant, &stream, expected, events)
        .await?;

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
    let mut response = if outcome.duplicate {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    Ok(response
        .insert_header((
            header::LOCATION,
            format!(
                "/v1/streams/{}/{}/events?from_version={first}",
                stream.domain(),
                stream.id()
            ),
        ))
        .json(answer))
}

/// `?tenant=`: optional, and when given it must be the caller's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    tenant: Option<String>,
    from_version: Option<u64>,
    limit: Option<usize>,
    /// Return events as stored instead of upcast to their latest version.
    #[serde(default)]
    as_stored: bool,
}

#[derive(Debug, Serialize)]
struct StreamPage {
    stream: String,
    /// The stream's version when read.
    stream_version: u64,
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
        .map_err(|e| Problem::new(ProblemKind::InvalidQuery, e.to_string()))
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
    let events = upcast_all(&state, events, query.as_stored)?;
    Ok(HttpResponse::Ok().json(StreamPage {
        stream: stream.to_string(),
        stream_version: version.get().max(next_version - 1),
        events,
        next_version,
    }))
}
