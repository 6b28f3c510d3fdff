//! The HTTP API: shared state, the route table, and request metrics. One
//! module per resource: `streams` (append and read a stream), `events` (the
//! global log), `admin` (health, readiness, metrics); `openapi` serves the
//! OpenAPI document of them all at `/openapi.json`.

pub(crate) mod admin;
pub mod audit;
mod audit_runs;
pub mod automations;
pub mod body;
pub(crate) mod commands;
pub mod connections;
pub mod countdowns;
mod event_page;
mod events;
pub mod idempotency;
pub mod item;
mod keys;
pub mod openapi;
pub mod personal;
pub mod problem;
mod publish;
pub mod request_log;
pub mod schemas;
mod search;
pub mod state_at;
mod streams;
pub mod text;
pub mod views;

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use herald_brokers::Broker;
use herald_events::EventRegistry;
use herald_store::EventStore;
use metrics_exporter_prometheus::PrometheusHandle;

use problem::{Problem, ProblemKind};

use crate::domains::DomainList;

/// HTTP requests answered, by method, route pattern and status.
pub const HTTP_REQUESTS_TOTAL: &str = "herald_http_requests_total";
/// Time to answer an HTTP request, by method and route pattern.
pub const HTTP_REQUEST_SECONDS: &str = "herald_http_request_duration_seconds";

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events_per_append: usize,
    /// Most time a request's whole body may take to arrive (408 past it).
    pub body_timeout: std::time::Duration,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<crate::auth::Authenticator>,
    pub hub: crate::ws::Hub,
    /// Every domain's actor group, by domain name.
    pub domains: herald_actors::Domains,
    /// Sends each command to the process that owns its aggregate.
    pub placement: crate::placement::Placement,
    pub store: Arc<dyn EventStore>,
    pub broker: Arc<dyn Broker>,
    pub registry: EventRegistry,
    /// Registers runtime event types and keeps them current.
    pub schemas: Arc<crate::runtime_schemas::RuntimeSchemas>,
    pub automations: Arc<crate::automations::Automations>,
    /// Seals personal fields on append, reveals them to those allowed,
    /// forgets subjects.
    pub privacy: Arc<herald_privacy::Privacy>,
    pub limits: Limits,
    pub metrics: PrometheusHandle,
    /// The read models and their runner, on the store's backend (`None`
    /// when this Herald runs no read models: views and projection routes
    /// answer 503).
    pub read_side: Option<herald_projections::ReadSide>,
    /// Countdown GIFs, rendered once per countdown per second.
    pub countdown_images: Arc<herald_countdown::ImageCache>,
    /// Whether the process's workers (relay, ingest, reactions) move;
    /// readiness reports those stalled.
    pub progress: herald_brokers::progress::Progress,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("broker", &self.broker.backend())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Every (method, path template) [`routes`] serves with the built-in
/// domains, in its order. The OpenAPI document lists exactly these, and
/// `tests/openapi_covers_every_endpoint.rs` probes the app to show that
/// `routes` serves each of them and nothing else. The views' routes come
/// from each domain's registration ([`crate::domains`]); the others are
/// [`BEFORE_VIEWS`] and [`AFTER_VIEWS`].
pub static ROUTES: LazyLock<Vec<(&'static str, &'static str)>> =
    LazyLock::new(|| crate::domains::shared_builtin().routes().to_vec());

/// The routes registered before the views, in order.
const BEFORE_VIEWS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/streams/{domain}/{id}/events"),
    ("GET", "/v1/streams/{domain}/{id}/events"),
    ("GET", "/v1/streams/{domain}/{id}"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/subscribe"),
    ("GET", "/v1/events/search"),
    ("GET", "/v1/events/export"),
    ("GET", "/v1/events/{event_id}"),
    ("GET", "/v1/events"),
    ("POST", "/v1/events"),
    ("POST", "/v1/schemas"),
    ("GET", "/v1/schemas"),
    ("POST", "/v1/schemas/check"),
    ("PUT", "/v1/schemas/{type}/compatibility"),
    ("GET", "/v1/schemas/{type}/{version}"),
    ("POST", "/v1/schemas/{type}/{version}/deprecate"),
    ("POST", "/v1/automations"),
    ("GET", "/v1/automations"),
    ("GET", "/v1/automations/schema"),
    ("POST", "/v1/automations/dry-run"),
    ("GET", "/v1/automations/{name}"),
    ("DELETE", "/v1/automations/{name}"),
    ("POST", "/v1/automations/{name}/enable"),
    ("POST", "/v1/automations/{name}/disable"),
    ("GET", "/v1/automations/{name}/deliveries"),
    ("POST", "/v1/automations/{name}/deliveries/{delivery}/retry"),
    ("POST", "/v1/subjects/{subject}/forget"),
    ("GET", "/v1/subjects/{subject}/events"),
    ("POST", "/v1/personal/reveal"),
    ("POST", "/v1/console/session"),
    ("GET", "/v1/console/session"),
    ("DELETE", "/v1/console/session"),
    ("GET", "/v1/console/overview"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("POST", "/v1/keys/{key_id}/revoke"),
    ("GET", "/v1/countdowns/{image}.gif"),
    ("POST", "/v1/countdowns/{id}/image_url"),
    ("DELETE", "/v1/countdowns/{id}/image_url"),
    ("POST", "/v1/audit/verify/runs"),
    ("GET", "/v1/audit/verify/runs/{run}"),
    ("GET", "/v1/audit/anchor"),
    ("GET", "/v1/projections"),
    ("GET", "/v1/projections/{name}"),
    ("POST", "/v1/projections/{name}/rebuild"),
    ("POST", "/v1/projections/{name}/parked/{position}/retry"),
];

/// The routes registered after the views, in order.
const AFTER_VIEWS: &[(&str, &str)] = &[
    ("GET", "/v1/audit/verify"),
    ("POST", "/v1/{domain}/{id}/{command}"),
    ("GET", "/v1/{domain}/{id}"),
];

/// Every (method, path template) served with `domains`: the views' from
/// their OpenAPI paths (each view documents every route it serves).
pub fn route_list(domains: &DomainList) -> Vec<(&'static str, &'static str)> {
    let mut routes = BEFORE_VIEWS.to_vec();
    for views in domains.views() {
        for (path, item) in (views.openapi)().paths.paths {
            // Once per domain list, which lives as long as the process.
            let path: &'static str = Box::leak(path.into_boxed_str());
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            routes.extend(
                methods
                    .into_iter()
                    .filter(|(_, served)| *served)
                    .map(|(method, _)| (method, path)),
            );
        }
    }
    routes.extend_from_slice(AFTER_VIEWS);
    routes
}

/// Registers every route of the built-in domains (listed in [`ROUTES`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes_for(crate::domains::shared_builtin())(cfg);
}

/// Registers every route of `domains`' Herald ([`DomainList::routes`]);
/// the handlers reach the list as app data.
pub fn routes_for(domains: Arc<DomainList>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg| {
        cfg.app_data(web::Data::from(Arc::clone(&domains)));
        cfg.service(get_only("/healthz").route(web::get().to(admin::healthz)))
            .service(get_only("/readyz").route(web::get().to(admin::readyz)))
            .service(get_only("/metrics").route(web::get().to(admin::metrics)))
            // Outside /v1, and before the generic domain routes all the same.
            .service(get_only("/openapi.json").route(web::get().to(openapi::serve)))
            // Scopes with a static prefix keep a command's request from
            // trying every pattern of the routes before it: a prefix is a
            // string comparison, a pattern a regular expression.
            .service(
                web::scope("/v1/streams")
                    .service(
                        web::resource("/{domain}/{id}/events")
                            .route(web::post().to(streams::append))
                            .route(web::get().to(streams::read))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .configure(state_at::routes),
            )
            .service(
                web::resource("/v1/events/stream")
                    .route(web::get().to(crate::ws::sse::stream))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/subscribe")
                    .route(web::get().to(crate::ws::session::subscribe))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/events/search")
                    .route(web::get().to(search::search))
                    .default_service(web::to(method_not_allowed)),
            )
            .configure(event_page::routes)
            .configure(event_page::show_route)
            .service(
                web::resource("/v1/events")
                    .route(web::get().to(events::read_all))
                    .route(web::post().to(publish::publish))
                    .default_service(web::to(method_not_allowed)),
            )
            .configure(schemas::routes)
            .configure(automations::routes)
            .configure(personal::routes)
            .configure(crate::console::api_routes)
            .configure(keys::routes)
            .configure(countdowns::routes)
            .configure(audit_runs::routes);
        views::routes(cfg, &domains);
        cfg.configure(audit::routes)
            // Last: the generic domain routes must not shadow the ones above.
            .service(
                web::resource("/v1/{domain}/{id}/{command}")
                    .route(web::post().to(commands::execute))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/{domain}/{id}")
                    .route(web::get().to(commands::state))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found));
    }
}

async fn not_found(req: actix_web::HttpRequest) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!("no resource at {}", req.path()),
    )
}

/// A resource whose other methods get 405 `method-not-allowed` (a bare
/// `route` would leave them to the catch-all 404).
fn get_only(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// The methods [`ROUTES`] serves on a route pattern, for `Allow`.
pub fn allowed_methods(pattern: &str) -> Vec<&'static str> {
    methods_of(&ROUTES, pattern)
}

fn methods_of(routes: &[(&'static str, &'static str)], pattern: &str) -> Vec<&'static str> {
    routes
        .iter()
        .filter(|(_, path)| *path == pattern)
        .map(|(method, _)| *method)
        .collect()
}

/// 405 `method-not-allowed`, with `Allow` naming the methods the resource
/// serves (RFC 9110 §15.5.6) and `allow` repeating them in the problem.
pub(crate) async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let methods = match (req.match_pattern(), req.app_data::<web::Data<DomainList>>()) {
        (Some(pattern), Some(domains)) => methods_of(domains.routes(), &pattern),
        (Some(pattern), None) => allowed_methods(&pattern),
        (None, _) => Vec::new(),
    };
    let allowed = methods.join(", ");
    let problem = Problem::new(
        ProblemKind::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; allowed: {allowed}",
            req.method(),
            req.path()
        ),
    )
    .with("allow", methods);
    let mut response = actix_web::ResponseError::error_response(&problem);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

impl actix_web::Responder for Problem {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// Counts and times every request by its route pattern (never its raw path,
/// which would put ids into labels).
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    tracing::debug!(%method, %route, status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "Answered request.");
    let status = status.to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}
