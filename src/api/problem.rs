//! HTTP errors as RFC 9457 `application/problem+json`. Every kind of problem
//! has a stable `type` URI (`urn:herald:problem:<slug>`), a title and a
//! status; clients branch on `type`, never on the wording of `detail`.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use herald_events::ValidationError;
use herald_store::StoreError;
use serde_json::{json, Map, Value};

/// Every kind of problem Herald answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    InvalidJson,
    InvalidUtf8,
    InvalidRequest,
    InvalidStreamId,
    InvalidQuery,
    UnsupportedMediaType,
    BodyTooLarge,
    TooManyEvents,
    UnknownEventType,
    UnknownSchemaVersion,
    PayloadNotObject,
    SchemaViolation,
    InvalidAppend,
    WrongExpectedVersion,
    DuplicateEventId,
    Unauthorized,
    Forbidden,
    RateLimited,
    NotFound,
    StreamNotFound,
    MethodNotAllowed,
    StoreUnavailable,
    BrokerUnavailable,
    Stalled,
    ShuttingDown,
    Internal,
    CommandRefused,
    InvalidCommand,
    UnknownCommand,
    AggregateNotFound,
    Contended,
    Busy,
    ReadModelUnavailable,
    ProjectionNotFound,
    NotParked,
    ParkedEventFailed,
    IdempotencyKeyReused,
    RequestTimeout,
    TooManyConnections,
    SubprotocolRequired,
    UpgradeRequired,
    InvalidSchema,
    IncompatibleSchema,
    SchemaVersionConflict,
    ReservedEventType,
    SchemaLimitReached,
    DeprecatedSchemaVersion,
    InvalidAutomation,
    AutomationVersionConflict,
    AutomationLimitReached,
    NotDeadLettered,
    CsrfTokenInvalid,
}

impl ProblemKind {
    pub const ALL: &'static [ProblemKind] = &[
        ProblemKind::InvalidJson,
        ProblemKind::InvalidUtf8,
        ProblemKind::InvalidRequest,
        ProblemKind::InvalidStreamId,
        ProblemKind::InvalidQuery,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::BodyTooLarge,
        ProblemKind::TooManyEvents,
        ProblemKind::UnknownEventType,
        ProblemKind::UnknownSchemaVersion,
        ProblemKind::PayloadNotObject,
        ProblemKind::SchemaViolation,
        ProblemKind::InvalidAppend,
        ProblemKind::WrongExpectedVersion,
        ProblemKind::DuplicateEventId,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::RateLimited,
        ProblemKind::NotFound,
        ProblemKind::StreamNotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::StoreUnavailable,
        ProblemKind::BrokerUnavailable,
        ProblemKind::Stalled,
        ProblemKind::ShuttingDown,
        ProblemKind::Internal,
        ProblemKind::CommandRefused,
        ProblemKind::InvalidCommand,
        ProblemKind::UnknownCommand,
        ProblemKind::AggregateNotFound,
        ProblemKind::Contended,
        ProblemKind::Busy,
        ProblemKind::ReadModelUnavailable,
        ProblemKind::ProjectionNotFound,
        ProblemKind::NotParked,
        ProblemKind::ParkedEventFailed,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::RequestTimeout,
        ProblemKind::TooManyConnections,
        ProblemKind::SubprotocolRequired,
        ProblemKind::UpgradeRequired,
        ProblemKind::InvalidSchema,
        ProblemKind::IncompatibleSchema,
        ProblemKind::SchemaVersionConflict,
        ProblemKind::ReservedEventType,
        ProblemKind::SchemaLimitReached,
        ProblemKind::DeprecatedSchemaVersion,
        ProblemKind::InvalidAutomation,
        ProblemKind::AutomationVersionConflict,
        ProblemKind::AutomationLimitReached,
        ProblemKind::NotDeadLettered,
        ProblemKind::CsrfTokenInvalid,
    ];

    /// (slug, title, status)
    fn spec(self) -> (&'static str, &'static str, StatusCode) {
        use ProblemKind::*;
        match self {
            InvalidJson => (
                "invalid-json",
                "The body is not valid JSON",
                StatusCode::BAD_REQUEST,
            ),
            InvalidUtf8 => (
                "invalid-utf8",
                "The body is not valid UTF-8",
                StatusCode::BAD_REQUEST,
            ),
            InvalidRequest => (
                "invalid-request",
                "The request does not have the expected shape",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            InvalidStreamId => (
                "invalid-stream-id",
                "The stream id is malformed",
                StatusCode::BAD_REQUEST,
            ),
            InvalidQuery => (
                "invalid-query",
                "A query parameter is malformed",
                StatusCode::BAD_REQUEST,
            ),
            UnsupportedMediaType => (
                "unsupported-media-type",
                "The body must be application/json",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            BodyTooLarge => (
                "body-too-large",
                "The body is larger than allowed",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            TooManyEvents => (
                "too-many-events",
                "The request carries more events than allowed",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            UnknownEventType => (
                "unknown-event-type",
                "The event type is not registered",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            UnknownSchemaVersion => (
                "unknown-schema-version",
                "The event type has no such schema version",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            PayloadNotObject => (
                "payload-not-object",
                "The payload must be a JSON object",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            SchemaViolation => (
                "schema-violation",
                "The payload breaks its schema",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            InvalidAppend => (
                "invalid-append",
                "The append is malformed",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            WrongExpectedVersion => (
                "wrong-expected-version",
                "The stream is not at the expected version",
                StatusCode::CONFLICT,
            ),
            DuplicateEventId => (
                "duplicate-event-id",
                "An event id is already stored elsewhere",
                StatusCode::CONFLICT,
            ),
            Unauthorized => (
                "unauthorized",
                "The request is not authenticated",
                StatusCode::UNAUTHORIZED,
            ),
            Forbidden => (
                "forbidden",
                "The credentials do not allow this",
                StatusCode::FORBIDDEN,
            ),
            RateLimited => (
                "rate-limited",
                "Too many requests",
                StatusCode::TOO_MANY_REQUESTS,
            ),
            NotFound => ("not-found", "No such resource", StatusCode::NOT_FOUND),
            StreamNotFound => (
                "stream-not-found",
                "The stream has no events",
                StatusCode::NOT_FOUND,
            ),
            MethodNotAllowed => (
                "method-not-allowed",
                "The method is not allowed on this resource",
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            ReadModelUnavailable => (
                "read-model-unavailable",
                "The read model is not available",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            ProjectionNotFound => (
                "projection-not-found",
                "No projection has this name",
                StatusCode::NOT_FOUND,
            ),
            ParkedEventFailed => (
                "parked-event-failed",
                "The parked event failed again and stays parked",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            IdempotencyKeyReused => (
                "idempotency-key-reused",
                "The idempotency key was used for another request",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            NotParked => (
                "not-parked",
                "The projection has no parked event at this position",
                StatusCode::NOT_FOUND,
            ),
            StoreUnavailable => (
                "store-unavailable",
                "The event store is unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            BrokerUnavailable => (
                "broker-unavailable",
                "The message broker is unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            Stalled => (
                "stalled",
                "A component makes no progress while work waits",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            ShuttingDown => (
                "shutting-down",
                "Herald is shutting down",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            Internal => (
                "internal",
                "Internal error",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            CommandRefused => (
                "command-refused",
                "The aggregate's current state forbids the command",
                StatusCode::CONFLICT,
            ),
            InvalidCommand => (
                "invalid-command",
                "The command is invalid",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            UnknownCommand => (
                "unknown-command",
                "The domain has no such command",
                StatusCode::NOT_FOUND,
            ),
            AggregateNotFound => (
                "aggregate-not-found",
                "No such aggregate",
                StatusCode::NOT_FOUND,
            ),
            Contended => (
                "contended",
                "Other writers kept changing the aggregate",
                StatusCode::CONFLICT,
            ),
            Busy => (
                "busy",
                "The aggregate has too many commands waiting",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            RequestTimeout => (
                "request-timeout",
                "The request body did not arrive in time",
                StatusCode::REQUEST_TIMEOUT,
            ),
            TooManyConnections => (
                "too-many-connections",
                "Too many connections from this address",
                StatusCode::TOO_MANY_REQUESTS,
            ),
            SubprotocolRequired => (
                "subprotocol-required",
                "The websocket must be opened with the herald.v1 subprotocol",
                StatusCode::BAD_REQUEST,
            ),
            UpgradeRequired => (
                "upgrade-required",
                "This resource is a websocket: upgrade the connection",
                StatusCode::UPGRADE_REQUIRED,
            ),
            InvalidSchema => (
                "invalid-schema",
                "The schema is not an acceptable JSON Schema",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            IncompatibleSchema => (
                "incompatible-schema",
                "The new version breaks the type's compatibility rule",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            SchemaVersionConflict => (
                "schema-version-conflict",
                "That version cannot be registered next",
                StatusCode::CONFLICT,
            ),
            ReservedEventType => (
                "reserved-event-type",
                "The event type belongs to a built-in domain",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            SchemaLimitReached => (
                "schema-limit-reached",
                "The tenant's registry holds as many types or versions as allowed",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            DeprecatedSchemaVersion => (
                "deprecated-schema-version",
                "The schema version is deprecated",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            InvalidAutomation => (
                "invalid-automation",
                "The automation is not valid",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            AutomationVersionConflict => (
                "automation-version-conflict",
                "The automation is not at the version expected",
                StatusCode::CONFLICT,
            ),
            AutomationLimitReached => (
                "automation-limit-reached",
                "The tenant has as many automations as allowed",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            NotDeadLettered => (
                "not-dead-lettered",
                "Only a dead-lettered delivery is retried",
                StatusCode::CONFLICT,
            ),
            CsrfTokenInvalid => (
                "csrf-token-invalid",
                "The console request lacks its session's CSRF token",
                StatusCode::FORBIDDEN,
            ),
        }
    }

    pub fn slug(self) -> &'static str {
        self.spec().0
    }

    pub fn title(self) -> &'static str {
        self.spec().1
    }

    pub fn status(self) -> StatusCode {
        self.spec().2
    }

    pub fn type_uri(self) -> String {
        format!("urn:herald:problem:{}", self.slug())
    }
}

/// One problem answer.
#[derive(Debug)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    pub extensions: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer` (401 answers).
    pub challenge: bool,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after_secs: None,
            challenge: false,
        }
    }

    /// Adds a member beside the standard ones.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// The same problem as another kind.
    pub fn kind(mut self, kind: ProblemKind) -> Self {
        self.kind = kind;
        self
    }

    /// Asks the client to authenticate (`WWW-Authenticate: Bearer`).
    pub fn challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The problem for an event the registry refused, naming its index.
    pub fn from_validation(index: usize, e: &ValidationError) -> Self {
        let kind = match e {
            ValidationError::UnknownType { .. } => ProblemKind::UnknownEventType,
            ValidationError::UnknownVersion { .. } => ProblemKind::UnknownSchemaVersion,
            ValidationError::NotAnObject { .. } => ProblemKind::PayloadNotObject,
            ValidationError::Deprecated { .. } => ProblemKind::DeprecatedSchemaVersion,
            ValidationError::Uncompilable { .. } => ProblemKind::InvalidSchema,
            _ => ProblemKind::SchemaViolation,
        };
        let mut problem =
            Problem::new(kind, format!("events[{index}]: {e}")).with("event_index", index);
        if let ValidationError::SchemaViolation { violations, .. } = e {
            problem = problem.with("violations", json!(violations));
        }
        problem
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

impl Problem {
    /// The problem document, as sent.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), self.kind.type_uri().into());
        body.insert("title".into(), self.kind.title().into());
        body.insert("status".into(), self.kind.status().as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        for (k, v) in &self.extensions {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = self.body();
        // The id the client can quote to find this request's log lines.
        if let (Some(id), Value::Object(members)) = (super::request_log::answering(self), &mut body)
        {
            members.insert("request_id".into(), Value::from(&*id));
        }
        let mut response = HttpResponse::build(self.kind.status());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.challenge {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"herald\""));
        }
        response.body(body.to_string())
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::WrongExpectedVersion {
                stream,
                expected,
                actual,
                ..
            } => Problem::new(ProblemKind::WrongExpectedVersion, e.to_string())
                .with("stream", stream.as_str())
                .with("expected_version", json!(expected.as_option()))
                .with("actual_version", actual.get()),
            StoreError::DuplicateEventId {
                id,
                stream,
                position,
            } => Problem::new(ProblemKind::DuplicateEventId, e.to_string())
                .with("event_id", id.to_string())
                .with("stored_in_stream", stream.as_str())
                .with("stored_at_position", position.get()),
            StoreError::InvalidAppend { .. } => {
                Problem::new(ProblemKind::InvalidAppend, e.to_string())
            }
            StoreError::InvalidQuery { .. } => {
                Problem::new(ProblemKind::InvalidQuery, e.to_string())
            }
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "Event store unavailable.");
                Problem::new(
                    ProblemKind::StoreUnavailable,
                    "the event store cannot be reached; retry later",
                )
                .retry_after(1)
            }
            StoreError::Closed => Problem::new(
                ProblemKind::ShuttingDown,
                "Herald is shutting down; retry on another instance or later",
            )
            .retry_after(1),
            _ => {
                tracing::error!(error = %e, kind = e.kind(), "Event store failed.");
                Problem::new(
                    ProblemKind::Internal,
                    "the event store failed; the error is logged",
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, Problem>;

/// The OpenAPI schema of a problem document as [`Problem::body`] writes it,
/// its `type` one of every kind's URI (from [`ProblemKind::ALL`], so it
/// cannot drift from what Herald sends).
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use super::request_log::MAX_REQUEST_ID_LEN;
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaFormat, Type};
        let kinds: String = ProblemKind::ALL
            .iter()
            .map(|k| {
                format!(
                    "\n- `{}` ({}): {}",
                    k.slug(),
                    k.status().as_u16(),
                    k.title()
                )
            })
            .collect();
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let example = Problem::new(
            ProblemKind::StreamNotFound,
            "stream tickets/T-1 has no events",
        )
        .with("stream", "tickets/T-1")
        .body();
        ObjectBuilder::new()
            .description(Some(
                "An RFC 9457 problem document, sent as `application/problem+json`. \
                 Clients branch on `type`, never on the wording of `detail`. Members \
                 beside the four standard ones name what went wrong where useful \
                 (`event_index`, `violations`, `expected_version`, `actual_version`, \
                 `limit`, `errors`, …).",
            ))
            .property(
                "type",
                string(&format!(
                    "`urn:herald:problem:<slug>`, one per kind of problem:{kinds}"
                ))
                .format(Some(SchemaFormat::Custom("uri".into())))
                .enum_values(Some(ProblemKind::ALL.iter().map(|k| k.type_uri()))),
            )
            .required("type")
            .property("title", string("The kind's fixed title."))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("The HTTP status, repeated."))
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", string("What is wrong with this request."))
            .required("detail")
            .property(
                "request_id",
                string(
                    "The request's id, also answered in `X-Request-Id`: the caller's own \
                     `X-Request-Id` when it is 1 to 128 visible ASCII characters, else one \
                     Herald made (a UUID v7). Quote it to find the request's log lines.",
                )
                .max_length(Some(MAX_REQUEST_ID_LEN)),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .examples([example])
            .into()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Problem")
    }
}
