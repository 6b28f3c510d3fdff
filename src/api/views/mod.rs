//! The query side over HTTP: one module per domain's read model
//! (`/v1/views/...`, each registered in its domain's line of
//! [`crate::domains::builtin`]), and `projections` for the runner's status, parked
//! events and rebuilds (`/v1/projections`). Shared here: reaching the read
//! models, turning projection errors into problems, and the query
//! parameters every list takes (`limit`, `cursor`, `sort`, `order`).
//!
//! The read models live in Postgres with a `postgres://` store and in SQLite
//! beside the embedded store; [`backend`] says which, and each handler asks
//! the same query of either.

pub mod drafts;
pub mod edges;
pub mod projections;
pub mod statistics;
pub mod streams;
pub mod tickets;
pub mod timers;

use std::collections::BTreeMap;

use actix_web::web;
use chrono::{DateTime, Utc};
use herald_projections::read_models::{Cursor, SortOrder, MAX_PAGE_SIZE};
use herald_projections::{ProjectionError, Serving};
use utoipa::OpenApi;

use super::problem::{ApiResult, Problem, ProblemKind};
use super::AppState;
use crate::domains::DomainList;

/// Registers the projection routes and every domain's views.
pub fn routes(cfg: &mut web::ServiceConfig, domains: &DomainList) {
    cfg.service(web::scope("/v1/projections").configure(projections::routes));
    let mut scope = web::scope("/v1/views");
    for views in domains.views() {
        scope = scope.configure(views.routes);
    }
    cfg.service(scope);
}

/// The OpenAPI paths and schemas of the projection routes and every
/// domain's views.
pub fn openapi(domains: &DomainList) -> utoipa::openapi::OpenApi {
    let mut doc = projections::Api::openapi();
    for views in domains.views() {
        doc.merge((views.openapi)());
    }
    doc
}

/// Where this Herald's read models are: Postgres (with a `postgres://`
/// store) or SQLite beside the embedded store; or 503 when this Herald
/// runs none.
pub(crate) fn backend(state: &AppState) -> ApiResult<Serving<'_>> {
    state
        .read_side
        .as_ref()
        .map(|side| side.serving())
        .ok_or_else(|| {
            Problem::new(
                ProblemKind::ReadModelUnavailable,
                "this Herald runs no read models",
            )
        })
}

/// The HTTP face of a projection or read-model error.
pub(crate) fn problem(e: ProjectionError) -> Problem {
    match e {
        ProjectionError::NotServing(name) => Problem::new(
            ProblemKind::ReadModelUnavailable,
            format!("the read model {name} is not being served yet; retry shortly"),
        )
        .retry_after(1),
        ProjectionError::UnknownProjection(name) => Problem::new(
            ProblemKind::ProjectionNotFound,
            format!(
                "no projection named {:?}",
                name.chars().take(64).collect::<String>()
            ),
        ),
        ProjectionError::NotParked { name, position } => Problem::new(
            ProblemKind::NotParked,
            format!("projection {name} has no parked event at position {position}"),
        ),
        ProjectionError::Store(store) => Problem::from(store),
        ProjectionError::Query(fault) => Problem::new(ProblemKind::InvalidQuery, fault.to_string()),
        // The read models live in the store's database (or beside the
        // embedded store's file): when that database cannot serve, the
        // client sees what every other read and write answers then.
        e if e.is_transient() => {
            tracing::warn!(error = %e, "Read-model database unavailable.");
            Problem::new(
                ProblemKind::StoreUnavailable,
                "the read models' database cannot be reached; retry later",
            )
            .retry_after(1)
        }
        other => {
            tracing::error!(error = %other, "Read-model query failed.");
            Problem::new(
                ProblemKind::Internal,
                "the read-model query failed; the error is logged",
            )
        }
    }
}

/// The query parameters of one request, each given at most once and each
/// one the endpoint knows (anything else is a 400 naming what it takes).
#[derive(Debug)]
pub(crate) struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    pub fn parse(query: &str, known: &[&str]) -> ApiResult<Self> {
        let mut values = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if !known.contains(&key.as_ref()) {
                return Err(Problem::new(
                    ProblemKind::InvalidQuery,
                    format!(
                        "unknown query parameter {:?}; this endpoint takes {}",
                        key.chars().take(64).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                return Err(invalid(format!("{key} is given twice")));
            }
        }
        Ok(Self { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `limit` (default 50, at most [`MAX_PAGE_SIZE`]).
    pub fn limit(&self) -> ApiResult<usize> {
        match self.get("limit") {
            None => Ok(50),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
                _ => Err(invalid(format!(
                    "limit must be a whole number from 1 to {MAX_PAGE_SIZE}"
                ))),
            },
        }
    }

    /// `order`: `asc` or `desc`, default `default`.
    pub fn order(&self, default: SortOrder) -> ApiResult<SortOrder> {
        match self.get("order") {
            None => Ok(default),
            Some(text) => {
                SortOrder::parse(text).ok_or_else(|| invalid("order must be asc or desc"))
            }
        }
    }

    /// `sort`: one of `allowed`, default the first.
    pub fn sort<'a>(&self, allowed: &[&'a str]) -> ApiResult<&'a str> {
        match self.get("sort") {
            None => Ok(allowed[0]),
            Some(text) => allowed
                .iter()
                .copied()
                .find(|s| *s == text)
                .ok_or_else(|| invalid(format!("sort must be one of {}", allowed.join(", ")))),
        }
    }

    /// `cursor`, checked to belong to `sort`.
    pub fn cursor(&self, sort: &str) -> ApiResult<Option<Cursor>> {
        match self.get("cursor") {
            None => Ok(None),
            Some(text) => Cursor::decode(text, sort).map(Some).ok_or_else(|| {
                invalid(
                    "cursor is malformed or belongs to another sort; pass the next_cursor \
                     of an earlier answer, with the same sort, unchanged",
                )
            }),
        }
    }

    /// An RFC 3339 instant.
    pub fn time(&self, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| {
                    invalid(format!(
                        "{name} must be an RFC 3339 instant (2026-11-30T12:00:00Z)"
                    ))
                }),
        }
    }

    /// A whole number.
    pub fn number(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse::<u64>()
                .map(Some)
                .map_err(|_| invalid(format!("{name} must be a whole number"))),
        }
    }
}

/// A 400 `invalid-query`.
pub(crate) fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::InvalidQuery, detail.into())
}
