//! The OpenAPI 3.1 document of every HTTP endpoint, served at
//! `GET /openapi.json` (no credentials, like `/healthz`). Each handler
//! carries its own `#[utoipa::path]`; this module gathers them, adds the
//! bearer scheme and the schemas of answers built as ad-hoc JSON or by
//! other crates, and states the domains of the running list
//! ([`crate::domains`]): their views' paths and their commands.
//! `tests/openapi_covers_every_endpoint.rs` keeps the document equal to
//! [`super::ROUTES`] and `ROUTES` equal to what `routes()` serves.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};
use uuid::Uuid;

use super::item::PublishItem;
use super::problem::{ApiResult, Problem, ProblemKind};
use crate::domains::DomainList;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

const DESCRIPTION: &str = "\
Herald is an event-sourced actor system on a message broker: producers append \
events to streams (checked against their JSON schemas, answered after commit), \
read streams, the global log and searches, subscribe live over a websocket or \
server-sent events, and send commands to the aggregates of each domain.

Every `/v1` request names its caller with `Authorization: Bearer <credential>`: \
an API key `hk_<id>_<secret>` or a JWT (the websocket sends it in its first \
frame instead). Scopes are `action:pattern` (`publish`, `subscribe`, `read`, \
`admin`); each credential belongs to one tenant and acts only in it. See the \
README's \"Authentication and tenants\".

Errors are `application/problem+json` (the `Problem` schema) with a stable \
`type` URI to branch on. Any path outside the routes below answers 404 \
`not-found`, and a method a route does not take answers 405 \
`method-not-allowed` with `Allow` naming the methods it takes. Every route may \
answer 429 `too-many-connections` (`Retry-After` given, the connection closed) \
to a client address that already holds `max_connections_per_client` connections. \
A request with a JSON body needs `Content-Type: application/json` (415 \
otherwise) and must send its whole body within `body_timeout` (408 \
`request-timeout` otherwise, the connection closed).";

/// Every path and schema of the HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Herald", version = env!("CARGO_PKG_VERSION"), description = DESCRIPTION),
    paths(
        super::admin::healthz,
        super::admin::readyz,
        super::admin::metrics,
        serve,
        super::streams::append,
        super::streams::read,
        super::events::read_all,
        super::publish::publish,
        super::search::search,
        crate::ws::sse::stream,
        crate::ws::session::subscribe,
        super::commands::execute,
        super::commands::state,
    ),
    components(
        schemas(
            Problem,
            EventEnvelope,
            CommandDomain,
            CommandName,
            CommandBody,
            CommandAnswer,
            CommandEvent,
            AggregateState,
            PublishBody,
            PublishBatch,
            PublishResponse,
            PublishedEvent,
            PublishAnswer,
            PublishResult,
            Health,
            Readiness,
            SortOrderParam,
            TicketSortParam,
            TicketKindParam,
            EdgeStateParam,
            EdgeSortParam,
            DraftSortParam,
            TimerSortParam,
            CountdownSortParam,
            GroupByParam,
            DomainName,
            StreamName,
            AnchorHash,
        ),
        responses(Unauthorized, RateLimited, InternalError, StoreUnavailable),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "streams", description = "Append to a stream and read it back."),
        (name = "events", description = "The global log, and publishing events to any stream."),
        (name = "search", description = "Search the tenant's events."),
        (name = "schemas", description = "The schema registry: producers register their own event types and versions, checked for compatibility, kept as events of the tenant's stream `registry/schemas` (README \"Your own events\")."),
        (name = "automations", description = "Automations: rules written as data (a trigger on events, on the absence of an event or on a schedule; a CEL condition; commands, events and timers as actions), kept as events of the tenant's stream `automations/definitions`, run exactly once in effect, tried on history before they go live (README \"Automations\")."),
        (name = "personal data", description = "Personal fields, sealed per subject: forget a subject (its keys are destroyed; the chain still verifies), gather what is held about one, decrypt sealed values copied out of Herald (README \"Personal data\")."),
        (name = "subscriptions", description = "Live events: the `herald.v1` websocket and server-sent events (docs/websocket.md)."),
        (name = "commands", description = "Commands and aggregate states of each domain (README \"Domains and commands\")."),
        (name = "views", description = "Read models: tickets, edges, timers and countdowns, drafts, statistics and the streams of every domain, projected from the log into Postgres, with filters, sorting and cursor pagination (README \"Read models\")."),
        (name = "projections", description = "The projection runner: lag, parked events, retries and blue-green rebuilds; admin scope."),
        (name = "audit", description = "Tamper evidence and history: the hash chain's verification and an aggregate's state at a moment; admin scope."),
        (name = "admin", description = "Liveness, readiness, metrics and this document; no credentials."),
        (name = "keys", description = "API keys: list, create with scopes, revoke; admin scope."),
        (name = "countdowns", description = "Countdown images for emails: a public, unguessable, revocable GIF URL per countdown; each fetch counts a view (README \"Countdown images\")."),
        (name = "console", description = "The browser console's session (sign-in into an HttpOnly cookie, CSRF token) and its overview (README \"Console\")."),
    ),
)]
#[derive(Clone, Copy)]
pub struct ApiDoc;

/// The document of a Herald running `domains`, as JSON (made once per
/// list: [`DomainList::document`]).
pub fn document(domains: &DomainList) -> Result<String, String> {
    let mut doc = ApiDoc::openapi();
    // The read-model endpoints keep their paths beside their handlers.
    let mut views = super::views::openapi(domains);
    views.merge(super::audit::Api::openapi());
    views.merge(super::schemas::Api::openapi());
    views.merge(super::automations::Api::openapi());
    views.merge(super::personal::Api::openapi());
    views.merge(super::state_at::Api::openapi());
    views.merge(super::event_page::Api::openapi());
    views.merge(super::keys::Api::openapi());
    views.merge(super::countdowns::Api::openapi());
    views.merge(super::audit_runs::Api::openapi());
    views.merge(crate::console::Api::openapi());
    doc.paths.paths.extend(views.paths.paths);
    if let (Some(components), Some(more)) = (doc.components.as_mut(), views.components) {
        components.schemas.extend(more.schemas);
        components.responses.extend(more.responses);
    }
    // The command routes' domains and commands are the list's.
    if let Some(components) = doc.components.as_mut() {
        let commands = domains.commands();
        components.schemas.insert(
            CommandDomain::name().into_owned(),
            command_domain(&commands),
        );
        components
            .schemas
            .insert(CommandName::name().into_owned(), command_name(&commands));
    }
    super::request_log::document_request_ids(&mut doc);
    doc.to_json().map_err(|e| e.to_string())
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "admin",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 document of every endpoint. Needs no credentials.",
    responses(
        (status = 200, description = "The document", body = Object, content_type = "application/json"),
        (status = 500, response = InternalError),
    ),
)]
pub async fn serve(domains: web::Data<DomainList>) -> ApiResult<HttpResponse> {
    match domains.document() {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone())),
        Err(e) => Err(Problem::new(
            ProblemKind::Internal,
            format!("the OpenAPI document cannot be written: {e}"),
        )),
    }
}

/// Adds the bearer scheme the operations name.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("hk_<id>_<secret> API key, or JWT")
                        .description(Some(
                            "An API key made with `herald keys create`, or a JWT (HS256 or \
                             RS256) with a `tenant` claim when `HERALD_JWT_*` is set. With no \
                             credentials configured, a loopback Herald serves anonymously.",
                        ))
                        .build(),
                ),
            );
    }
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        Content::new(Some(Ref::from_schema_name(Problem::name()))),
    )
}

/// 401 `unauthorized`, as any authenticated route answers it.
#[derive(Debug)]
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "Unauthorized",
            problem_response(
                "`unauthorized`: no credentials, or a malformed, unknown, revoked or expired one, \
                 or a JWT without a configured `iss` or `aud` or before its `nbf` (the member \
                 `claim` names the JWT claim at fault)",
            )
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer realm=\"herald\"`"))
                    .build(),
            )
            .build()
            .into(),
        )
    }
}

/// 429 `rate-limited`, as any authenticated route answers it.
#[derive(Debug)]
pub struct RateLimited;

impl<'r> ToResponse<'r> for RateLimited {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "RateLimited",
            problem_response(
                "`rate-limited`: over the key's or the subject's rate; or \
                 `too-many-connections`: the client's address already holds \
                 `max_connections_per_client` connections (this one is closed)",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait"))
                    .build(),
            )
            .build()
            .into(),
        )
    }
}

/// 503 `store-unavailable` or `shutting-down`, as any route that reads or
/// writes the store answers it.
#[derive(Debug)]
pub struct StoreUnavailable;

impl<'r> ToResponse<'r> for StoreUnavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "StoreUnavailable",
            problem_response("`store-unavailable` or `shutting-down` (`Retry-After` given)")
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait"))
                        .build(),
                )
                .build()
                .into(),
        )
    }
}

/// 500 `internal`.
#[derive(Debug)]
pub struct InternalError;

impl<'r> ToResponse<'r> for InternalError {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "InternalError",
            problem_response("`internal`: a bug or a corrupt row; the error is logged")
                .build()
                .into(),
        )
    }
}

/// The pattern of a domain.
pub const DOMAIN_PATTERN: &str = "^[a-z][a-z0-9_]{0,31}$";

/// The pattern of a stream id: `[A-Za-z0-9._:@~-]{1,128}`, but not `.` or
/// `..` (written without lookahead, which JSON Schema's dialect lacks).
pub const STREAM_ID_PATTERN: &str = "^([A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,127}|\\.[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,126}|\\.\\.[A-Za-z0-9._:@~-]{1,126})$";

/// Declares a string schema for a query parameter whose value is one of a
/// list the handler checks (the same list, so the two cannot drift).
macro_rules! one_of {
    ($(#[$doc:meta])* $name:ident, $description:expr, $values:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description)
                    .enum_values(Some($values.iter().map(|v| v.to_string())))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

/// Declares a string schema with a pattern.
macro_rules! matching {
    ($(#[$doc:meta])* $name:ident, $description:expr, $pattern:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description).pattern(Some($pattern)).into()
            }
        }

        impl ToSchema for $name {}
    };
}

one_of!(
    /// `order` of the views.
    SortOrderParam,
    "Ascending or descending",
    ["asc", "desc"]
);
one_of!(
    /// `sort` of the tickets view.
    TicketSortParam,
    "What tickets are ordered by",
    herald_projections::read_models::tickets::TicketSort::NAMES
);
one_of!(
    /// `kind` of the tickets view.
    TicketKindParam,
    "A ticket's kind",
    herald_projections::read_models::tickets::KINDS.map(herald_projections::read_models::tickets::kind_name)
);
one_of!(
    /// `state` of the edges view.
    EdgeStateParam,
    "An edge's state",
    herald_projections::read_models::edges::STATES.map(herald_projections::read_models::edges::state_name)
);
one_of!(
    /// `sort` of the edges view.
    EdgeSortParam,
    "What edges are ordered by",
    herald_projections::read_models::edges::EdgeSort::NAMES
);
one_of!(
    /// `sort` of the drafts view.
    DraftSortParam,
    "What drafts are ordered by",
    herald_projections::read_models::drafts::DraftSort::NAMES
);
one_of!(
    /// `sort` of the timers view.
    TimerSortParam,
    "What timers are ordered by",
    herald_projections::read_models::timers::TimerSort::NAMES
);
one_of!(
    /// `sort` of the countdowns view.
    CountdownSortParam,
    "What countdowns are ordered by",
    herald_projections::read_models::timers::CountdownSort::NAMES
);
one_of!(
    /// `group_by` of the statistics view: each dimension at most once, in
    /// any order, comma-separated; empty for one total row.
    GroupByParam,
    "Comma-separated dimensions, each at most once, in any order; empty for one total row",
    group_by_values()
);
matching!(
    /// A domain in a filter.
    DomainName,
    "A domain",
    DOMAIN_PATTERN
);
matching!(
    /// A stream, `domain/id`, in a filter.
    StreamName,
    "A stream, `domain/id`",
    stream_name_pattern()
);
matching!(
    /// `anchor_hash` of the audit: a SHA-256 in hex.
    AnchorHash,
    "64 hex digits",
    "^[0-9a-fA-F]{64}$"
);

/// Every value `group_by` takes: each ordered choice of distinct
/// dimensions, and none.
fn group_by_values() -> Vec<String> {
    let names = herald_projections::read_models::statistics::GroupBy::NAMES;
    let mut values = vec![String::new()];
    let mut frontier: Vec<Vec<&str>> = vec![Vec::new()];
    for _ in 0..names.len() {
        let mut next = Vec::new();
        for chosen in &frontier {
            for name in names {
                if !chosen.contains(&name) {
                    let mut longer = chosen.clone();
                    longer.push(name);
                    values.push(longer.join(","));
                    next.push(longer);
                }
            }
        }
        frontier = next;
    }
    values
}

/// `domain/id`, anchored, from the two patterns.
fn stream_name_pattern() -> String {
    let domain = DOMAIN_PATTERN.trim_start_matches('^').trim_end_matches('$');
    let id = STREAM_ID_PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$');
    format!("^{domain}/{id}$")
}

/// `{domain}` of the command routes: a domain Herald runs (the document
/// states the running list's, [`command_domain`]).
#[derive(Debug)]
pub struct CommandDomain;

impl PartialSchema for CommandDomain {
    fn schema() -> RefOr<Schema> {
        command_domain(&crate::domains::shared_builtin().commands())
    }
}

impl ToSchema for CommandDomain {}

/// [`CommandDomain`] of these `(domain, commands)`.
fn command_domain(commands: &[(&str, &[&str])]) -> RefOr<Schema> {
    string(
        "A domain Herald runs. Each domain's commands and their bodies are in the \
         README, \"Domains and commands\".",
    )
    .enum_values(Some(commands.iter().map(|(domain, _)| *domain)))
    .into()
}

/// `{command}` of `/v1/{domain}/{id}/{command}` (the document states the
/// running list's, [`command_name`]).
#[derive(Debug)]
pub struct CommandName;

impl PartialSchema for CommandName {
    fn schema() -> RefOr<Schema> {
        command_name(&crate::domains::shared_builtin().commands())
    }
}

impl ToSchema for CommandName {}

/// [`CommandName`] of these `(domain, commands)`.
fn command_name(commands: &[(&str, &[&str])]) -> RefOr<Schema> {
    let per_domain: String = commands
        .iter()
        .map(|(domain, commands)| format!("\n- `{domain}`: {}", commands.join(", ")))
        .collect();
    let mut all: Vec<&str> = commands
        .iter()
        .flat_map(|(_, commands)| commands.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    string(&format!(
        "A command of the domain (another answers 404 `unknown-command`); the body \
         of each is in the README, \"Domains and commands\":{per_domain}"
    ))
    .enum_values(Some(all))
    .into()
}

/// The body of a command.
#[derive(Debug)]
pub struct CommandBody;

impl PartialSchema for CommandBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The command's fields, which depend on the domain and the command: see the \
                 README, \"Domains and commands\" (e.g. tickets `open`: `{\"kind\": \"outage\", \
                 \"customer\": \"acme\", \"edge\": \"E-17\", \"description\": \"edge offline\"}`). \
                 A field that breaks a rule answers 422 `invalid-command`; a body of the wrong \
                 shape 422 `invalid-request`.",
            ))
            .examples([serde_json::json!({
                "kind": "outage",
                "customer": "acme",
                "edge": "E-17",
                "description": "edge offline"
            })])
            .into()
    }
}

impl ToSchema for CommandBody {}

/// A committed event as reads, searches and subscriptions answer it.
#[derive(Debug, ToSchema)]
pub struct EventEnvelope {
    /// The event's id, a UUID (v7 when Herald made it).
    pub id: Uuid,
    /// The tenant the event belongs to.
    pub tenant: String,
    /// `domain/id`.
    #[schema(example = "tickets/T-1001")]
    pub stream: String,
    /// The event's version within its stream, from 1.
    pub stream_version: u64,
    /// The event's position in the global log, from 1.
    pub position: u64,
    /// `domain.name`.
    #[serde(rename = "type")]
    #[schema(example = "tickets.ticket_opened")]
    pub event_type: String,
    /// The schema version of `payload`: the latest, unless read with
    /// `as_stored=true`.
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    /// Who sent the event.
    pub producer: String,
    /// The event's data, valid against its type's schema at `version`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The audit chain's hash, 64 hex digits (docs/hash-chain.md).
    pub hash: String,
}

/// What a command answers.
#[derive(Debug, ToSchema)]
pub struct CommandAnswer {
    /// `domain/id`.
    pub stream: String,
    /// The stream's version after the command.
    pub stream_version: u64,
    /// True when the command's events were already stored (a repeat).
    pub duplicate: bool,
    /// The events the command caused; none when it changed nothing.
    pub events: Vec<CommandEvent>,
}

/// One event a command caused.
#[derive(Debug, ToSchema)]
pub struct CommandEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub position: u64,
    pub stream_version: u64,
}

/// An aggregate's current state.
#[derive(Debug, ToSchema)]
pub struct AggregateState {
    pub domain: String,
    pub id: String,
    /// The aggregate's stream version.
    pub version: u64,
    /// The state, as the domain defines it.
    #[schema(value_type = Object)]
    pub state: Value,
}

/// `POST /v1/events`: one event, or a batch.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum PublishBody {
    One(Box<PublishItem>),
    Batch(PublishBatch),
}

/// A batch of published events.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    /// 1 to `max_events_per_append` events.
    pub events: Vec<PublishItem>,
    /// All or nothing: when one event fails, none is appended.
    #[serde(default)]
    pub atomic: bool,
}

/// The answer to `POST /v1/events`: one event's, or a batch's.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum PublishResponse {
    One(PublishedEvent),
    Batch(PublishAnswer),
}

/// One appended event.
#[derive(Debug, ToSchema)]
pub struct PublishedEvent {
    pub id: Uuid,
    /// `domain/id`.
    pub stream: String,
    pub position: u64,
    pub stream_version: u64,
    /// True when this repeated an earlier idempotency key or event id:
    /// nothing new was written.
    pub duplicate: bool,
}

/// A batch's answer: one result per event, in order.
#[derive(Debug, ToSchema)]
pub struct PublishAnswer {
    pub atomic: bool,
    pub results: Vec<PublishResult>,
}

/// One event's result in a batch: the appended event's fields, or a
/// `problem`.
#[derive(Debug, ToSchema)]
pub struct PublishResult {
    /// The event's index in `events`.
    pub index: usize,
    /// 201 appended, 200 a repeat, else the problem's status.
    pub status: u16,
    pub id: Option<Uuid>,
    pub stream: Option<String>,
    pub position: Option<u64>,
    pub stream_version: Option<u64>,
    pub duplicate: Option<bool>,
    pub problem: Option<Problem>,
}

/// `GET /healthz`.
#[derive(Debug, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /readyz` when the store and the broker answer.
#[derive(Debug, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: String,
    /// The store's backend.
    #[schema(example = "postgres")]
    pub store: String,
    /// The broker's backend.
    #[schema(example = "kafka")]
    pub broker: String,
}
