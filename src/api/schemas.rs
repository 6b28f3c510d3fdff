//! The schema registry over HTTP: `POST /v1/schemas` registers a version of
//! a runtime event type (checked for compatibility first),
//! `POST /v1/schemas/check` answers whether it would be accepted without
//! registering it, `GET /v1/schemas` lists the types (built-in and
//! registered) the caller may read, `GET /v1/schemas/{type}/{version}` shows
//! one version, `POST /v1/schemas/{type}/{version}/deprecate` stops a
//! version from being published, and `PUT /v1/schemas/{type}/compatibility`
//! sets the rule the type's next version is checked by. Writing needs the `schemas:write` scope
//! covering the type; everything acts in the caller's tenant only.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::compat::Compatibility;
use herald_events::declarative::UpcasterSpec;
use herald_events::registry::decide::{Accepted, Refused, Registration};
use herald_events::{EventType, SchemaVersion};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use super::body::read_json;
use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::auth::{Action, Identity};
use crate::runtime_schemas::RegisterError;

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(register, check, list, show, deprecate, set_compatibility),
    components(schemas(
        SchemaRequest,
        Registered,
        CheckAnswer,
        SchemaList,
        TypeEntry,
        VersionEntry,
        SchemaVersionDoc,
        DeprecateRequest,
        Deprecated,
        CompatibilityRequest,
        CompatibilityAnswer,
        CompatibilityDoc,
        IncompatibilityDoc,
    ))
)]
pub struct Api;

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/schemas")
            .service(
                web::resource("")
                    .route(web::post().to(register))
                    .route(web::get().to(list))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/check")
                    .route(web::post().to(check))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{type}/compatibility")
                    .route(web::put().to(set_compatibility))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{type}/{version}")
                    .route(web::get().to(show))
                    .default_service(web::to(super::method_not_allowed)),
            )
            .service(
                web::resource("/{type}/{version}/deprecate")
                    .route(web::post().to(deprecate))
                    .default_service(web::to(super::method_not_allowed)),
            ),
    );
}

/// A version to register (or to check).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    /// The event type, `domain.name`, outside the built-in domains.
    #[serde(rename = "type")]
    #[schema(example = "orders.order_placed")]
    pub event_type: String,
    /// The version meant; when given it must be the next one (1 for a new
    /// type), so a producer's deploy never registers out of order.
    pub version: Option<u32>,
    /// A JSON Schema (2020-12) object: at most 64 KiB and 32 levels deep,
    /// references only within itself, patterns in the linear-time `regex`
    /// dialect (no look-around or back-references).
    #[schema(value_type = Object)]
    pub schema: Value,
    /// Sets the type's rule before this version is checked; a new type
    /// starts `backward`.
    pub compatibility: Option<CompatibilityDoc>,
    /// Bridges from the previous version instead of compatibility: applied
    /// when older events are read.
    #[schema(value_type = Option<Object>)]
    pub upcaster: Option<UpcasterSpec>,
}

/// A compatibility rule: `backward` (the new version accepts every
/// instance of the previous one: old events read as new), `forward` (the
/// previous version accepts every instance of the new one: old readers read
/// new events), `full` (both) or `none`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Compatibility)]
pub enum CompatibilityDoc {
    Backward,
    Forward,
    Full,
    None,
}

impl From<CompatibilityDoc> for Compatibility {
    fn from(doc: CompatibilityDoc) -> Self {
        match doc {
            CompatibilityDoc::Backward => Compatibility::Backward,
            CompatibilityDoc::Forward => Compatibility::Forward,
            CompatibilityDoc::Full => Compatibility::Full,
            CompatibilityDoc::None => Compatibility::None,
        }
    }
}

/// One difference that breaks a compatibility rule.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Incompatibility)]
pub struct IncompatibilityDoc {
    /// JSON pointer into the schemas where the difference is.
    pub path: String,
    pub reason: String,
}

/// The answer to a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// False when this version was already registered as sent.
    pub registered: bool,
    /// Events of the previous version read as this one unchanged.
    pub reads_previous: bool,
    /// The registration's event in the log (absent when nothing changed).
    pub position: Option<u64>,
}

/// Whether a version would be accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckAnswer {
    pub accepted: bool,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version it would be registered as.
    pub version: u32,
    /// False when it is already the latest version, as sent.
    pub new_version: bool,
    pub reads_previous: bool,
}

/// The types the caller may read.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaList {
    pub types: Vec<TypeEntry>,
}

/// One event type and its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeEntry {
    #[serde(rename = "type")]
    pub event_type: String,
    /// `builtin` (compiled into Herald) or `registered` (by the tenant).
    pub origin: &'static str,
    /// The rule the next version is checked by (registered types only).
    pub compatibility: Option<CompatibilityDoc>,
    pub versions: Vec<VersionEntry>,
}

/// One version, in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionEntry {
    pub version: u32,
    pub deprecated: bool,
    /// Has a declarative upcaster from the version before.
    pub upcaster: bool,
    pub reads_previous: bool,
}

/// One version, whole.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SchemaVersion)]
pub struct SchemaVersionDoc {
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub origin: &'static str,
    #[schema(value_type = Object)]
    pub schema: Value,
    pub compatibility: Option<CompatibilityDoc>,
    pub deprecated: bool,
    pub deprecation_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub upcaster: Option<UpcasterSpec>,
    pub reads_previous: bool,
    /// The latest version of the type.
    pub latest: u32,
}

/// Why a version is deprecated.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecateRequest {
    pub reason: Option<String>,
}

/// The answer to a deprecation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deprecated {
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub deprecated: bool,
    /// False when it was deprecated already.
    pub changed: bool,
}

/// A type's rule to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatibilityRequest {
    pub compatibility: CompatibilityDoc,
}

/// The answer to setting a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatibilityAnswer {
    #[serde(rename = "type")]
    pub event_type: String,
    pub compatibility: CompatibilityDoc,
    /// False when it was the type's rule already.
    pub changed: bool,
}

fn doc(c: Compatibility) -> CompatibilityDoc {
    match c {
        Compatibility::Backward => CompatibilityDoc::Backward,
        Compatibility::Forward => CompatibilityDoc::Forward,
        Compatibility::Full => CompatibilityDoc::Full,
        Compatibility::None => CompatibilityDoc::None,
    }
}

fn parse_type(text: &str) -> ApiResult<EventType> {
    text.parse::<EventType>().map_err(|e| {
        Problem::new(
            ProblemKind::InvalidRequest,
            format!("type {:?}: {e}", text.chars().take(140).collect::<String>()),
        )
        .with("pointer", "/type")
    })
}

fn require_write(identity: &Identity, event_type: &EventType) -> ApiResult<()> {
    if identity.allows(Action::RegisterSchemas, event_type) {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::Forbidden,
            format!("registering schemas of {event_type} needs the schemas:write scope"),
        ))
    }
}

fn registration(request: SchemaRequest, identity: &Identity) -> ApiResult<Registration> {
    let event_type = parse_type(&request.event_type)?;
    require_write(identity, &event_type)?;
    super::text::check_body(&request.schema, ProblemKind::InvalidSchema)?;
    Ok(Registration {
        event_type,
        version: request.version,
        schema: request.schema,
        compatibility: request.compatibility.map(Into::into),
        upcaster: request.upcaster,
    })
}

/// The problem a refusal is answered with.
fn refused(refusal: Refused) -> Problem {
    let detail = refusal.to_string();
    match refusal {
        Refused::BuiltinDomain { domain, .. } => {
            Problem::new(ProblemKind::ReservedEventType, detail).with("domain", domain)
        }
        Refused::InvalidSchema { .. } | Refused::SchemaTooLarge { .. } => {
            Problem::new(ProblemKind::InvalidSchema, detail).with("pointer", "/schema")
        }
        Refused::SchemaTooDeep { pointer, .. } | Refused::SchemaNotAllowed { pointer, .. } => {
            Problem::new(ProblemKind::InvalidSchema, detail)
                .with("pointer", format!("/schema{pointer}"))
        }
        Refused::TooManyTypes { .. } | Refused::TooManyVersions { .. } => {
            Problem::new(ProblemKind::SchemaLimitReached, detail)
        }
        Refused::WrongVersion { next, .. } => {
            Problem::new(ProblemKind::SchemaVersionConflict, detail).with("next_version", next)
        }
        Refused::Incompatible {
            mode,
            previous,
            incompatibilities,
            ..
        } => Problem::new(ProblemKind::IncompatibleSchema, detail)
            .with("compatibility", mode.as_str())
            .with("previous_version", previous)
            .with("incompatibilities", json!(incompatibilities)),
        Refused::InvalidUpcaster { .. } | Refused::UpcasterWithoutPrevious { .. } => {
            Problem::new(ProblemKind::InvalidRequest, detail).with("pointer", "/upcaster")
        }
        Refused::UnknownType { .. } | Refused::UnknownVersion { .. } => {
            Problem::new(ProblemKind::NotFound, detail)
        }
    }
}

fn from_register_error(e: RegisterError) -> Problem {
    match e {
        RegisterError::Refused(refusal) => refused(refusal),
        RegisterError::Store(e) => e.into(),
        RegisterError::Contended { .. } => Problem::new(ProblemKind::Contended, e.to_string()),
        RegisterError::Topic { .. } => {
            Problem::new(ProblemKind::BrokerUnavailable, e.to_string()).retry_after(5)
        }
    }
}

const REFUSALS: &str = "`invalid-schema` (not a JSON Schema, over the bounds, a reference \
    leaving the schema, a pattern the linear-time dialect cannot compile; `pointer` given), \
    `incompatible-schema` (`incompatibilities` lists each difference with its `path` in the \
    schemas), `reserved-event-type` (a built-in domain), `schema-limit-reached`, or \
    `invalid-request` (a malformed type or upcaster)";

/// `POST /v1/schemas`
#[utoipa::path(
    post,
    path = "/v1/schemas",
    tag = "schemas",
    operation_id = "register_schema",
    summary = "Register a version of an event type",
    description = "Registers version N of the runtime event type `domain.name` in the caller's \
        tenant: 1 for a new type, then one more each time. A new version is accepted when it is \
        compatible with the latest under the type's rule (`backward` by default), decided \
        structurally, or when it comes with an `upcaster` from the latest (renames, removals, \
        defaults and JSON Patch operations, applied when older events are read). The \
        registration is an event of the tenant's stream `registry/schemas`, hash-chained like \
        every other; every process sharing the store applies it within a second. Registering \
        the latest version again as sent answers 200 and appends nothing. Needs the \
        `schemas:write` scope.",
    request_body = SchemaRequest,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 200, description = "Already the latest version, as sent: nothing changed", body = Registered),
        (status = 400, description = "`invalid-json` (line and column given), `invalid-utf8`, or `invalid-query` (a path segment holding U+0000)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `schemas:write` scope covering the type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`schema-version-conflict` (`next_version` given) or `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = REFUSALS, body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, description = "`store-unavailable`, or `broker-unavailable` when the topic of a new domain cannot be made ready (`Retry-After` given); nothing registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn register(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let request: SchemaRequest = read_json(&req, payload, &state.limits).await?;
    let registration = registration(request, &identity)?;
    let event_type = registration.event_type.to_string();
    let (accepted, position) = state
        .schemas
        .register(&identity.tenant, registration)
        .await
        .map_err(from_register_error)?;
    let changed = !accepted.changes.is_empty();
    let answer = Registered {
        event_type,
        version: accepted.version,
        registered: changed,
        reads_previous: accepted.reads_previous,
        position: position.map(|p| p.get()),
    };
    Ok(if changed {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}

/// `POST /v1/schemas/check`
#[utoipa::path(
    post,
    path = "/v1/schemas/check",
    tag = "schemas",
    operation_id = "check_schema",
    summary = "Would a version be accepted?",
    description = "Decides a registration exactly as `POST /v1/schemas` would, against the \
        registry as it is now, and registers nothing: a producer's CI asks it before a deploy \
        (`herald schemas check FILE`). 200 when it would be accepted; the same problems as a \
        registration when not. Needs the `schemas:write` scope.",
    request_body = SchemaRequest,
    responses(
        (status = 200, description = "It would be accepted", body = CheckAnswer),
        (status = 400, description = "`invalid-json` (line and column given), `invalid-utf8`, or `invalid-query` (a path segment holding U+0000)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `schemas:write` scope covering the type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`schema-version-conflict` (`next_version` given)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = REFUSALS, body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn check(
    req: HttpRequest,
    identity: Identity,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let request: SchemaRequest = read_json(&req, payload, &state.limits).await?;
    let registration = registration(request, &identity)?;
    let event_type = registration.event_type.to_string();
    let Accepted {
        version,
        changes,
        reads_previous,
    } = state
        .schemas
        .check(&identity.tenant, registration)
        .await
        .map_err(from_register_error)?;
    Ok(HttpResponse::Ok().json(CheckAnswer {
        accepted: true,
        event_type,
        version,
        new_version: !changes.is_empty(),
        reads_previous,
    }))
}

/// `GET /v1/schemas`
#[utoipa::path(
    get,
    path = "/v1/schemas",
    tag = "schemas",
    operation_id = "list_schemas",
    summary = "The event types and their versions",
    description = "Every event type the caller may read (`read` scopes): the built-in ones and \
        those its tenant registered, with their versions; `domain` keeps one domain's.",
    params(("domain" = Option<String>, Query, description = "Only this domain's types")),
    responses(
        (status = 200, description = "The types", body = SchemaList),
        (status = 400, description = "`invalid-query`: an unknown parameter, or one holding U+0000", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
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
    let params = super::views::Params::parse(req.query_string(), &["domain"])?;
    let domain = params.get("domain");
    let wanted =
        |t: &EventType| domain.is_none_or(|d| t.domain() == d) && identity.allows(Action::Read, t);
    let registry = &state.registry;
    let mut types: Vec<TypeEntry> = registry
        .types()
        .filter(|(t, _)| wanted(t))
        .map(|(t, versions)| TypeEntry {
            event_type: t.to_string(),
            origin: "builtin",
            compatibility: None,
            versions: versions
                .into_iter()
                .map(|v| VersionEntry {
                    version: v.get(),
                    deprecated: false,
                    upcaster: false,
                    reads_previous: false,
                })
                .collect(),
        })
        .collect();
    if let Some(tenant_types) = registry.runtime().tenant(&identity.tenant) {
        for (name, registered) in &tenant_types.registered().types {
            let Ok(event_type) = name.parse::<EventType>() else {
                continue;
            };
            if !wanted(&event_type) {
                continue;
            }
            types.push(TypeEntry {
                event_type: name.clone(),
                origin: "registered",
                compatibility: Some(doc(registered.compatibility)),
                versions: registered
                    .versions
                    .iter()
                    .map(|(v, r)| VersionEntry {
                        version: *v,
                        deprecated: r.deprecated,
                        upcaster: r.upcaster.is_some(),
                        reads_previous: r.reads_previous,
                    })
                    .collect(),
            });
        }
    }
    types.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    Ok(HttpResponse::Ok().json(SchemaList { types }))
}

/// `GET /v1/schemas/{type}/{version}`
#[utoipa::path(
    get,
    path = "/v1/schemas/{type}/{version}",
    tag = "schemas",
    operation_id = "show_schema",
    summary = "One version of an event type",
    description = "The schema of one version (`latest` for the newest), built-in or registered \
        by the caller's tenant, with its rule, upcaster and deprecation. Needs `read` on the type.",
    params(
        ("type" = String, Path, description = "The event type, `domain.name`"),
        ("version" = String, Path, description = "A version number, or `latest`"),
    ),
    responses(
        (status = 200, description = "The version", body = SchemaVersionDoc),
        (status = 400, description = "`invalid-query`: an unknown query parameter, or a path segment or parameter holding U+0000", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `read` scope covering the type", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such type or version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`: a malformed type or version", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (type_text, version_text) = path.into_inner();
    let event_type = parse_type(&type_text)?;
    identity.require(Action::Read, &event_type)?;
    let not_found = || {
        Problem::new(
            ProblemKind::NotFound,
            format!("{event_type} has no version {version_text}"),
        )
    };
    let wanted = if version_text == "latest" {
        None
    } else {
        Some(version_text.parse::<u32>().map_err(|_| {
            Problem::new(
                ProblemKind::InvalidRequest,
                format!("version {version_text:?} is not a whole number or latest"),
            )
        })?)
    };
    let registry = &state.registry;
    if registry.is_builtin(&event_type) {
        let latest = registry.latest_version(&event_type).ok_or_else(not_found)?;
        let version = match wanted {
            Some(v) => SchemaVersion::new(v).map_err(|_| not_found())?,
            None => latest,
        };
        let schema = registry
            .schema(&event_type, version)
            .ok_or_else(not_found)?;
        return Ok(HttpResponse::Ok().json(SchemaVersionDoc {
            event_type: event_type.to_string(),
            version: version.get(),
            origin: "builtin",
            schema: schema.clone(),
            compatibility: None,
            deprecated: false,
            deprecation_reason: None,
            upcaster: None,
            reads_previous: false,
            latest: latest.get(),
        }));
    }
    state.schemas.catch_up(&identity.tenant).await?;
    let tenant_types = registry
        .runtime()
        .tenant(&identity.tenant)
        .ok_or_else(not_found)?;
    let registered = tenant_types
        .registered()
        .types
        .get(event_type.as_str())
        .ok_or_else(not_found)?;
    let (latest, _) = registered.latest().ok_or_else(not_found)?;
    let version = wanted.unwrap_or(latest);
    let found = registered.versions.get(&version).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(SchemaVersionDoc {
        event_type: event_type.to_string(),
        version,
        origin: "registered",
        schema: found.schema.clone(),
        compatibility: Some(doc(registered.compatibility)),
        deprecated: found.deprecated,
        deprecation_reason: found.deprecation_reason.clone(),
        upcaster: found.upcaster.clone(),
        reads_previous: found.reads_previous,
        latest,
    }))
}

/// `POST /v1/schemas/{type}/{version}/deprecate`
#[utoipa::path(
    post,
    path = "/v1/schemas/{type}/{version}/deprecate",
    tag = "schemas",
    operation_id = "deprecate_schema",
    summary = "Deprecate a version",
    description = "Stops a registered version from being published (422 \
        `deprecated-schema-version` names the latest); stored events of it still read, upcast \
        as before. Deprecating it again changes nothing. A JSON body with a `reason` is \
        optional. Needs the `schemas:write` scope.",
    params(
        ("type" = String, Path, description = "The event type, `domain.name`"),
        ("version" = u32, Path, description = "The version"),
    ),
    request_body(content = Option<DeprecateRequest>),
    responses(
        (status = 200, description = "Deprecated", body = Deprecated),
        (status = 400, description = "`invalid-json` (line and column given), `invalid-utf8`, or `invalid-query` (a path segment holding U+0000)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: a body without a JSON `Content-Type`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `schemas:write` scope covering the type", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such registered type or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn deprecate(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (type_text, version_text) = path.into_inner();
    let event_type = parse_type(&type_text)?;
    require_write(&identity, &event_type)?;
    let version: u32 = version_text.parse().map_err(|_| {
        Problem::new(
            ProblemKind::InvalidRequest,
            format!("version {version_text:?} is not a whole number"),
        )
    })?;
    use actix_web::http::header;
    // The body is optional: none at all is a deprecation without a reason.
    let has_body = req.headers().contains_key(header::CONTENT_TYPE)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let request: DeprecateRequest = if has_body {
        read_json(&req, payload, &state.limits).await?
    } else {
        DeprecateRequest::default()
    };
    if let Some(reason) = &request.reason {
        if reason.is_empty() || reason.len() > 1000 || !herald_store::storable::is_storable(reason)
        {
            return Err(Problem::new(
                ProblemKind::InvalidRequest,
                "reason must be 1 to 1000 bytes of text without U+0000",
            )
            .with("pointer", "/reason"));
        }
    }
    let changed = state
        .schemas
        .deprecate(&identity.tenant, &event_type, version, request.reason)
        .await
        .map_err(from_register_error)?;
    Ok(HttpResponse::Ok().json(Deprecated {
        event_type: event_type.to_string(),
        version,
        deprecated: true,
        changed,
    }))
}

/// `PUT /v1/schemas/{type}/compatibility`
#[utoipa::path(
    put,
    path = "/v1/schemas/{type}/compatibility",
    tag = "schemas",
    operation_id = "set_schema_compatibility",
    summary = "Set a type's compatibility rule",
    description = "Sets the rule the type's next version is checked by (`backward`, `forward`, \
        `full` or `none`); versions already registered stay as they are. Recorded as a \
        `registry.compatibility_set` event. Setting the rule the type has changes nothing. \
        Needs the `schemas:write` scope.",
    params(("type" = String, Path, description = "The event type, `domain.name`")),
    request_body = CompatibilityRequest,
    responses(
        (status = 200, description = "The type's rule", body = CompatibilityAnswer),
        (status = 400, description = "`invalid-json` (line and column given), `invalid-utf8`, or `invalid-query` (a path segment holding U+0000)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: no `schemas:write` scope covering the type", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such registered type", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request-timeout`: the whole body did not arrive within `body_timeout`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-request`: a malformed type or rule", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn set_compatibility(
    req: HttpRequest,
    identity: Identity,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let event_type = parse_type(&path.into_inner())?;
    require_write(&identity, &event_type)?;
    let request: CompatibilityRequest = read_json(&req, payload, &state.limits).await?;
    let changed = state
        .schemas
        .set_compatibility(&identity.tenant, &event_type, request.compatibility.into())
        .await
        .map_err(from_register_error)?;
    Ok(HttpResponse::Ok().json(CompatibilityAnswer {
        event_type: event_type.to_string(),
        compatibility: request.compatibility,
        changed,
    }))
}
