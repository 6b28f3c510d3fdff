//! An aggregate's state as it was at a moment: `GET
//! /v1/streams/{domain}/{id}?at=<instant|position>` (admin scope) and
//! `herald replay state`, which share [`state_at`].
//!
//! The stream's events are folded from its first one with the domain's own
//! [`Aggregate::apply`] — what the actor runtime does when it rehydrates an
//! aggregate — stopping before the first event past the moment: past the
//! position, or recorded after the instant (the log's record time, which
//! is what the system knew then; an event's `occurred_at` is the producer's
//! claim and is shown beside it). No snapshot is used: a snapshot is the
//! latest state, not a past one.

use std::collections::VecDeque;
use std::fmt;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_actors::drafts::Draft;
use herald_actors::edges::Edge;
use herald_actors::tickets::Ticket;
use herald_actors::timers::Timer;
use herald_actors::{Aggregate, DecodeError, DomainEvent};
use herald_events::{EventEnvelope, StreamId, StreamVersion, TenantId};
use herald_store::{EventStore, StoreError};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::problem::{ApiResult, Problem, ProblemKind};
use super::views::Params;
use super::AppState;
use crate::auth::Identity;

/// Events read per page while folding.
const READ_PAGE: usize = 1000;
/// Events listed in an HTTP answer unless `limit` says otherwise.
const DEFAULT_LISTED: usize = 100;
/// Most events an HTTP answer lists.
const MAX_LISTED: usize = 1000;

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(paths(show), components(schemas(StateAt, EventAt, Moment)))]
pub struct Api;

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/streams/{domain}/{id}")
            .route(web::get().to(show))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The moment a state is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// After the events at or before this log position.
    Position(u64),
    /// After the events recorded at or before this instant.
    Instant(DateTime<Utc>),
}

impl Moment {
    /// A whole number is a position; anything else must be an RFC 3339
    /// instant.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse()
                .map(Moment::Position)
                .map_err(|_| format!("the position {text} is too large"));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Moment::Instant(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "{:?} is neither a log position (a whole number) nor an RFC 3339 instant \
                     (2026-11-30T12:00:00Z)",
                    text.chars().take(64).collect::<String>()
                )
            })
    }

    /// Whether `event` happened at or before the moment.
    fn includes(&self, event: &EventEnvelope) -> bool {
        match self {
            Moment::Position(p) => event.position.get() <= *p,
            Moment::Instant(t) => event.recorded_at <= *t,
        }
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::Position(p) => write!(f, "position {p}"),
            Moment::Instant(t) => write!(f, "{}", herald_events::chain::canonical_time(t)),
        }
    }
}

/// An aggregate's state at a moment, and the events that made it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StateAt {
    pub domain: String,
    pub id: String,
    pub tenant: String,
    /// The moment asked for.
    pub at: Moment,
    /// The stream version the state is at: how many of its events it folds.
    pub version: u64,
    /// The log position of the last event folded.
    pub position: u64,
    /// When the last event folded was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The aggregate's state, as `GET /v1/{domain}/{id}` shows a current one.
    #[schema(value_type = Object)]
    pub state: Value,
    /// Every event folded, oldest first (the last `limit` of them over HTTP;
    /// `version` says how many there are).
    pub events: Vec<EventAt>,
}

/// One event that made a state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventAt {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "tickets.ticket_opened")]
    pub event_type: String,
    /// The schema version it is read in (the latest, after upcasting).
    pub schema_version: u32,
    pub stream_version: u64,
    pub position: u64,
    /// When it happened, as its producer said.
    pub occurred_at: DateTime<Utc>,
    /// When the store committed it.
    pub recorded_at: DateTime<Utc>,
}

impl EventAt {
    fn of(event: &EventEnvelope) -> Self {
        Self {
            id: event.id.as_uuid(),
            event_type: event.event_type.to_string(),
            schema_version: event.version.get(),
            stream_version: event.stream_version.get(),
            position: event.position.get(),
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
        }
    }
}

/// Why there is no state to show.
#[derive(Debug, thiserror::Error)]
pub enum StateAtError {
    /// No aggregate type for this domain.
    #[error("no domain {0:?} has aggregates here; the domains are {domains}", domains = domain_names())]
    UnknownDomain(String),
    /// The id cannot name a stream.
    #[error("{0}")]
    InvalidStream(String),
    /// The stream has no events at all.
    #[error("{stream} of tenant {tenant} has no events")]
    NoStream { stream: String, tenant: String },
    /// The stream's first event came after the moment.
    #[error(
        "{stream} of tenant {tenant} had no events yet at {at}: its first is at position \
         {first_position}, recorded at {first_recorded_at}",
        first_recorded_at = herald_events::chain::canonical_time(first_recorded_at)
    )]
    NotYet {
        stream: String,
        tenant: String,
        at: Moment,
        first_position: u64,
        first_recorded_at: DateTime<Utc>,
    },
    /// A stored event is not one of the aggregate's (a bug or a foreign event).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug: the state cannot be shown as JSON.
    #[error("{0}")]
    Internal(String),
}

/// The domains that have aggregates, for messages.
pub fn domain_names() -> String {
    super::openapi::DOMAINS
        .iter()
        .map(|(domain, _)| *domain)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state of `domain/id` of `tenant` at `at`, with the events that made
/// it (only the last `max_listed` of them when given).
pub async fn state_at(
    store: &dyn EventStore,
    tenant: &TenantId,
    domain: &str,
    id: &str,
    at: Moment,
    max_listed: Option<usize>,
) -> Result<StateAt, StateAtError> {
    match domain {
        Ticket::DOMAIN => fold::<Ticket>(store, tenant, id, at, max_listed).await,
        Edge::DOMAIN => fold::<Edge>(store, tenant, id, at, max_listed).await,
        Draft::DOMAIN => fold::<Draft>(store, tenant, id, at, max_listed).await,
        Timer::DOMAIN => fold::<Timer>(store, tenant, id, at, max_listed).await,
        other => Err(StateAtError::UnknownDomain(
            other.chars().take(64).collect(),
        )),
    }
}

/// Folds the stream's events up to the moment with `A::apply`, as the actor
/// runtime's rehydration does.
async fn fold<A: Aggregate>(
    store: &dyn EventStore,
    tenant: &TenantId,
    id: &str,
    at: Moment,
    max_listed: Option<usize>,
) -> Result<StateAt, StateAtError> {
    let stream = StreamId::parse_parts(A::DOMAIN, id)
        .map_err(|e| StateAtError::InvalidStream(e.to_string()))?;
    let mut state = A::default();
    let mut listed: VecDeque<EventAt> = VecDeque::new();
    let mut last: Option<EventAt> = None;
    let mut next = StreamVersion(1);
    'pages: loop {
        let page = store.read_stream(tenant, &stream, next, READ_PAGE).await?;
        let full = page.len() == READ_PAGE;
        for envelope in &page {
            if !at.includes(envelope) {
                if last.is_none() {
                    return Err(StateAtError::NotYet {
                        stream: stream.to_string(),
                        tenant: tenant.to_string(),
                        at,
                        first_position: envelope.position.get(),
                        first_recorded_at: envelope.recorded_at,
                    });
                }
                break 'pages;
            }
            let event = A::Event::from_envelope(envelope)?;
            state.apply(&event);
            let shown = EventAt::of(envelope);
            if max_listed.is_none_or(|max| max > 0) {
                if max_listed.is_some_and(|max| listed.len() >= max) {
                    listed.pop_front();
                }
                listed.push_back(shown.clone());
            }
            last = Some(shown);
            next = envelope.stream_version.next();
        }
        if !full {
            break;
        }
    }
    let Some(last) = last else {
        return Err(StateAtError::NoStream {
            stream: stream.to_string(),
            tenant: tenant.to_string(),
        });
    };
    let state = serde_json::to_value(&state).map_err(|e| {
        StateAtError::Internal(format!(
            "the {} state cannot be shown as JSON: {e}",
            A::DOMAIN
        ))
    })?;
    Ok(StateAt {
        domain: A::DOMAIN.to_owned(),
        id: stream.id().to_owned(),
        tenant: tenant.to_string(),
        at,
        version: last.stream_version,
        position: last.position,
        recorded_at: last.recorded_at,
        state,
        events: listed.into(),
    })
}

impl From<StateAtError> for Problem {
    fn from(e: StateAtError) -> Self {
        match e {
            StateAtError::UnknownDomain(_) => Problem::new(ProblemKind::NotFound, e.to_string()),
            StateAtError::InvalidStream(why) => Problem::new(ProblemKind::InvalidStreamId, why),
            StateAtError::NoStream { .. } | StateAtError::NotYet { .. } => {
                Problem::new(ProblemKind::AggregateNotFound, e.to_string())
            }
            StateAtError::Store(store) => Problem::from(store),
            StateAtError::Decode(_) | StateAtError::Internal(_) => {
                tracing::error!(error = %e, "A stored event cannot be folded into its aggregate.");
                Problem::new(
                    ProblemKind::Internal,
                    "a stored event cannot be folded into its aggregate; the error is logged",
                )
            }
        }
    }
}

/// `GET /v1/streams/{domain}/{id}?at=`
#[utoipa::path(
    get,
    path = "/v1/streams/{domain}/{id}",
    tag = "audit",
    operation_id = "aggregate_state_at",
    summary = "An aggregate's state at a moment",
    description = "The state of the aggregate `{domain}/{id}` as it was at `at`: its stream's \
        events folded from the first one with the domain's own rules (what an actor does when it \
        rehydrates), up to the last event at or before the log position `at`, or recorded at or \
        before the instant `at`. Answers with the state, the stream version and position it is \
        at, and the events that made it (type, stream version, position, `occurred_at`, \
        `recorded_at`; the last `limit` of them). The state of each domain is described in the \
        README, \"Domains and commands\"; `herald replay state` answers the same from the \
        command line. Needs the `admin` scope; acts in the caller's tenant.",
    params(
        ("domain" = crate::api::openapi::CommandDomain, Path, description = "A domain with aggregates (README, \"Domains and commands\")"),
        ("id" = String, Path, description = "The aggregate's id (its stream's id): not `.` or `..`", pattern = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$"),
        ("at" = String, Query, description = "A log position (a whole number: the state after the events at or before it) or an RFC 3339 instant (after the events recorded at or before it)", example = "2026-11-30T12:00:00Z"),
        ("tenant" = Option<String>, Query, description = "The caller's own tenant (any other is refused)"),
        ("limit" = Option<usize>, Query, description = "How many of the last events that made the state to list, 0 to 1000 (default 100)", minimum = 0, maximum = 1000),
    ),
    responses(
        (status = 200, description = "The state at that moment", body = StateAt),
        (status = 400, description = "`invalid-query` (`at` missing or malformed, an unknown parameter, a bad `limit`) or `invalid-stream-id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: not an admin key, or another tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` (no such domain) or `aggregate-not-found` (no events at or before `at`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, response = crate::api::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["at", "tenant", "limit"])?;
    if !identity.is_admin() {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "an aggregate's past states are for auditors: this needs the admin scope (admin:*)",
        ));
    }
    identity.require_tenant(params.get("tenant"))?;
    let at = match params.get("at") {
        Some(text) => {
            Moment::parse(text).map_err(|e| Problem::new(ProblemKind::InvalidQuery, e))?
        }
        None => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                "at is required: a log position or an RFC 3339 instant",
            ))
        }
    };
    let limit = match params.number("limit")? {
        None => DEFAULT_LISTED,
        Some(n) if n as usize <= MAX_LISTED => n as usize,
        Some(_) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                format!("limit must be a whole number from 0 to {MAX_LISTED}"),
            ))
        }
    };
    let (domain, id) = path.into_inner();
    let answer = state_at(
        &*state.store,
        &identity.tenant,
        &domain,
        &id,
        at,
        Some(limit),
    )
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}
