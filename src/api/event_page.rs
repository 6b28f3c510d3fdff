//! One event as an auditor looks at it, `GET /v1/events/{event_id}`: the
//! event, its neighbours' positions and hashes in the chain, and the events
//! that led to it along causation up to the one a command or publish wrote
//! first; and the caller's events exported over HTTP, `GET
//! /v1/events/export`, as JSON lines or CSV with the search's filters.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::{EventEnvelope, Position};
use herald_store::search::MAX_SEARCH_LIMIT;
use herald_store::SearchQuery;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::problem::{ApiResult, Problem, ProblemKind};
use super::search::{parse, search_page, SearchParams};
use super::views::Params;
use super::AppState;
use crate::auth::Identity;
use crate::cli::audit::export::{csv_fields, CSV_COLUMNS};

/// Most steps walked up a causation chain.
const MAX_CAUSES: usize = 50;

/// The endpoints' OpenAPI paths.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(show, export),
    components(schemas(EventPage, ChainLink, ExportFormat))
)]
pub struct Api;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/events/export")
            .route(web::get().to(export))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// Registered after the other `/v1/events/…` routes, which it would shadow.
pub fn show_route(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/events/{event_id}")
            .route(web::get().to(show))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// A neighbour in the hash chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainLink {
    pub position: u64,
    /// Its chain hash (64 hex digits).
    pub hash: String,
}

/// The form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One event per line, as stored, with its hash.
    Jsonl,
    /// A header, then one row per event (the columns of `herald audit export`).
    Csv,
}

/// One event and what surrounds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = super::openapi::EventEnvelope)]
    pub event: EventEnvelope,
    /// The event before it in the log (any tenant's; only its position and
    /// hash, which this event's hash covers); `null` for the first.
    pub previous: Option<ChainLink>,
    /// The event after it; `null` at the head.
    pub next: Option<ChainLink>,
    /// Its cause, its cause's cause, … up to the first event a command,
    /// publish or timer wrote (whose causation is itself), as far as the
    /// caller may read them.
    #[schema(value_type = Vec<super::openapi::EventEnvelope>)]
    pub caused_by: Vec<EventEnvelope>,
}

/// The caller's event with this id, if it may read it.
async fn find(
    identity: &Identity,
    state: &AppState,
    id: uuid::Uuid,
    as_stored: bool,
) -> ApiResult<Option<EventEnvelope>> {
    let mut query = SearchQuery::new(identity.tenant.clone());
    query.event_id = Some(id);
    query.limit = 1;
    let (mut events, _) = search_page(identity, state, query, as_stored).await?;
    Ok(events.pop())
}

/// `GET /v1/events/{event_id}`
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "events",
    operation_id = "show_event",
    summary = "One event, its chain neighbours and its causes",
    description = "The caller's event with this id (upcast unless `as_stored=true`), the \
        positions and hashes of the events before and after it in the hash chain, and the \
        chain of events that caused it: its `causation_id`'s event, that one's, and so on to \
        the first event a command, publish or timer wrote (at most 50). The rest of what one \
        command or automation caused is `GET /v1/events/search?correlation=<its \
        correlation_id>`. Needs `read` on the event's type.",
    params(
        ("event_id" = uuid::Uuid, Path, description = "The event's id"),
        ("as_stored" = Option<bool>, Query, description = "Events exactly as stored instead of upcast"),
    ),
    responses(
        (status = 200, description = "The event", body = EventPage),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: credentials that may read no event type", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such event the caller may read", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    identity: Identity,
    req: HttpRequest,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let params = Params::parse(req.query_string(), &["as_stored"])?;
    let as_stored = match params.get("as_stored") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                format!("as_stored must be true or false, not {other:?}"),
            ))
        }
    };
    let not_found = || {
        Problem::new(
            ProblemKind::NotFound,
            format!(
                "no event {:?} that these credentials may read",
                event_id.as_str()
            ),
        )
    };
    let id: uuid::Uuid = event_id.parse().map_err(|_| not_found())?;
    let event = find(&identity, &state, id, as_stored)
        .await?
        .ok_or_else(not_found)?;
    let position = event.position.get();
    let around = state
        .store
        .read_all(Position(position.saturating_sub(1).max(1)), 3)
        .await?;
    let link = |p: u64| {
        around
            .iter()
            .find(|e| e.position.get() == p)
            .map(|e| ChainLink {
                position: p,
                hash: e.hash.to_hex(),
            })
    };
    let previous = (position > 1).then(|| link(position - 1)).flatten();
    let next = link(position + 1);
    let mut caused_by: Vec<EventEnvelope> = Vec::new();
    let mut current = (event.id.as_uuid(), event.causation_id);
    while current.1 != current.0 && caused_by.len() < MAX_CAUSES {
        let Some(cause) = find(&identity, &state, current.1, as_stored).await? else {
            break;
        };
        current = (cause.id.as_uuid(), cause.causation_id);
        caused_by.push(cause);
    }
    Ok(HttpResponse::Ok().json(EventPage {
        event,
        previous,
        next,
        caused_by,
    }))
}

/// `GET /v1/events/export`
#[utoipa::path(
    get,
    path = "/v1/events/export",
    tag = "events",
    operation_id = "export_events",
    summary = "Export the tenant's events",
    description = "Every event of the caller's tenant that the search's filters match (the \
        parameters of `search_events`, without `cursor` and `limit`: the whole result, written \
        as it is read, page by page), exactly as stored (personal fields sealed, so every hash \
        can be checked), as a download: `format=jsonl` (default; one event per line, with its \
        hash) or `format=csv` (the columns of `herald audit export`). Needs `read` on the types \
        exported.",
    params(
        ("format" = Option<ExportFormat>, Query, description = "`jsonl` (default) or `csv`"),
        ("type" = Option<Vec<String>>, Query, style = Form, explode, description = "Event-type pattern; repeatable, OR-ed"),
        ("domain" = Option<Vec<crate::api::openapi::DomainName>>, Query, style = Form, explode, description = "Domain; repeatable, OR-ed"),
        ("stream" = Option<Vec<crate::api::openapi::StreamName>>, Query, style = Form, explode, description = "Stream, `domain/id`; repeatable, OR-ed"),
        ("from" = Option<String>, Query, format = DateTime, description = "Recorded at or after (RFC 3339, inclusive)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Recorded before (RFC 3339, exclusive)"),
        ("correlation" = Option<uuid::Uuid>, Query, description = "Only the events of this correlation id"),
    ),
    responses(
        (status = 200, description = "The events, streamed", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query`: a malformed or unknown parameter, named", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: credentials that may read no event type", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = super::openapi::RateLimited),
        (status = 500, response = super::openapi::InternalError),
        (status = 503, response = super::openapi::StoreUnavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn export(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let SearchParams {
        mut query,
        tenant,
        format,
        ..
    } = parse(req.query_string(), true)?;
    identity.require_tenant(tenant.as_deref())?;
    let format = match format.as_deref() {
        None | Some("jsonl") => ExportFormat::Jsonl,
        Some("csv") => ExportFormat::Csv,
        Some(other) => {
            return Err(Problem::new(
                ProblemKind::InvalidQuery,
                format!("format must be jsonl or csv, not {other:?}"),
            ))
        }
    };
    let csv = format == ExportFormat::Csv;
    if query.after != Position::START {
        return Err(Problem::new(
            ProblemKind::InvalidQuery,
            "an export is the whole result: it takes no cursor",
        ));
    }
    query.limit = MAX_SEARCH_LIMIT;
    // The first page is read before answering, so a refused search is a
    // problem answer rather than a broken download.
    let first = search_page(&identity, &state, query.clone(), true).await?;
    let header = csv.then(|| csv_bytes(&[CSV_COLUMNS.map(str::to_owned)]));
    let pages = futures::stream::try_unfold(
        (Some(first), query, identity, state),
        move |(page, mut query, identity, state)| async move {
            let (events, last) = match page {
                Some(page) => page,
                None => {
                    let Some(after) = Some(query.after).filter(|p| *p != Position::START) else {
                        return Ok(None);
                    };
                    query.after = after;
                    search_page(&identity, &state, query.clone(), true).await?
                }
            };
            let bytes = if csv {
                csv_bytes(&events.iter().map(csv_fields).collect::<Vec<_>>())
            } else {
                let mut out = Vec::with_capacity(events.len() * 600);
                for event in &events {
                    serde_json::to_writer(&mut out, event).map_err(|e| {
                        Problem::new(ProblemKind::Internal, format!("writing JSON: {e}"))
                    })?;
                    out.push(b'\n');
                }
                out
            };
            let Some(last) = last else {
                // The end: nothing more to read after this page.
                query.after = Position::START;
                return Ok(Some((
                    web::Bytes::from(bytes),
                    (None, query, identity, state),
                )));
            };
            query.after = last;
            Ok::<_, Problem>(Some((
                web::Bytes::from(bytes),
                (None, query, identity, state),
            )))
        },
    );
    // A failure after the answer began can only cut the download short
    // (and is logged); the problem's text goes with it as the error.
    let pages = futures::TryStreamExt::map_err(pages, |problem: Problem| {
        tracing::warn!(problem = ?problem, "An export stopped early.");
        std::io::Error::other(problem.to_string())
    });
    let body = futures::StreamExt::chain(
        futures::stream::iter(header.map(|h| Ok::<_, std::io::Error>(web::Bytes::from(h)))),
        pages,
    );
    let (content_type, extension) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"herald-events.{extension}\""),
        ))
        .streaming(body))
}

fn csv_bytes(rows: &[[String; 14]]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(rows.len() * 600));
    for row in rows {
        // Writing to memory fails only on an allocation failure.
        let _ = writer.write_record(row);
    }
    writer.into_inner().unwrap_or_default()
}
