//! `/v1/views/streams`: the streams read model over HTTP. A page of the
//! tenant's streams of every domain — built-in or registered at run time —
//! the caller may read, filtered by domain, id prefix and the time of the
//! latest event, sorted and paged. Needs `read` on each domain listed.

use actix_web::{web, HttpRequest, HttpResponse};
use herald_events::Domain;
use herald_projections::read_models::streams::{
    self, StreamQuery, StreamSort, StreamView, MAX_DOMAINS,
};
use herald_projections::read_models::{Page, SortOrder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::{backend, invalid, problem, Params};
use crate::api::problem::{ApiResult, Problem, ProblemKind};
use crate::api::AppState;
use crate::auth::{Action, Identity, TypePattern};

/// The OpenAPI paths of this module.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list_streams),
    components(schemas(Page<StreamView>, StreamView, StreamSortParam))
)]
pub struct Api;

/// This view's registration ([`crate::domains::builtin`]).
pub const VIEWS: crate::domains::Views = crate::domains::Views {
    routes,
    openapi: <Api as OpenApi>::openapi,
};

/// Registers this module's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/streams")
            .route(web::get().to(list_streams))
            .default_service(web::to(crate::api::method_not_allowed)),
    );
}

/// `sort` of the streams view (the values the handler takes, so the two
/// cannot drift).
#[derive(Debug)]
pub struct StreamSortParam;

impl PartialSchema for StreamSortParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("What streams are ordered by"))
            .enum_values(Some(StreamSort::NAMES.iter().copied()))
            .into()
    }
}

impl ToSchema for StreamSortParam {}

const LIST_PARAMS: &[&str] = &[
    "domain",
    "prefix",
    "updated_after",
    "updated_before",
    "sort",
    "order",
    "limit",
    "cursor",
];

/// The `domain` filter of a query string (repeatable, each a comma list),
/// each domain once in the order first named, and the query string without
/// it (for [`Params`], which takes each parameter once). `None`: no filter.
fn split_domains(query: &str) -> ApiResult<(Option<Vec<String>>, String)> {
    let mut domains: Option<Vec<String>> = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "domain" {
            rest.append_pair(&key, &value);
            continue;
        }
        let named = domains.get_or_insert_with(Vec::new);
        for name in value.split(',') {
            let domain = Domain::new(name).map_err(|e| {
                invalid(format!(
                    "domain names one domain or several, comma-separated \
                     (domain=tickets,edges); {e}"
                ))
                .with("parameter", "domain")
            })?;
            if !named.iter().any(|d| d == domain.as_str()) {
                named.push(domain.as_str().to_owned());
            }
        }
        if named.len() > MAX_DOMAINS {
            return Err(invalid(format!(
                "domain names {} domains or more; at most {MAX_DOMAINS} may be asked at once",
                named.len()
            ))
            .with("parameter", "domain"));
        }
    }
    Ok((domains, rest.finish()))
}

/// The domains a caller may list streams of, as [`Identity::allows_domain`]
/// decides for `read`; `None` when it may read every domain (a `read:*` or
/// `admin:*` scope), so that domains registered later are listed too.
fn readable_domains(identity: &Identity) -> Option<Vec<String>> {
    let mut domains: Vec<String> = Vec::new();
    for scope in &identity.scopes {
        if !matches!(scope.action, Action::Read | Action::Admin) {
            continue;
        }
        let pattern = scope.pattern.as_str();
        if pattern == TypePattern::ANY {
            return None;
        }
        // Only `domain.*` covers a whole domain; a scope of some types of
        // a domain does not let the caller see all of its streams.
        if let Some(domain) = pattern.strip_suffix(".*") {
            if Domain::new(domain).is_ok()
                && identity.allows_domain(Action::Read, domain)
                && !domains.iter().any(|d| d == domain)
            {
                domains.push(domain.to_owned());
            }
        }
    }
    Some(domains)
}

/// The domains a request lists: those it names, each of which the caller
/// must be able to read (403 otherwise), or else every domain it can read
/// (403 when none).
fn domains_to_list(
    identity: &Identity,
    named: Option<Vec<String>>,
) -> ApiResult<Option<Vec<String>>> {
    match named {
        Some(named) => {
            for domain in &named {
                identity.require_domain(Action::Read, domain)?;
            }
            Ok(Some(named))
        }
        None => match readable_domains(identity) {
            Some(domains) if domains.is_empty() => Err(Problem::new(
                ProblemKind::Forbidden,
                "these credentials may read no whole domain, so no stream can be listed; \
                 a read scope of a domain (read:tickets) or of every one (read:*) is needed",
            )),
            readable => Ok(readable),
        },
    }
}

/// `GET /v1/views/streams`
#[utoipa::path(
    get,
    path = "/v1/views/streams",
    tag = "views",
    operation_id = "list_streams",
    summary = "A page of the tenant's streams, of every domain",
    description = "One row per stream of the tenant, whatever its domain (built-in or \
        registered at run time): its domain and id, the version and type of its latest event, \
        when the store recorded its first and its latest event, and how many events it holds. \
        Only domains the credential may read as a whole are listed (`read:*`, or \
        `read:<domain>` per domain); naming one it may not read in `domain` is a 403. Filters \
        (all optional, combined with and): `domain` (repeatable, or comma-separated, at most \
        20 in all), `prefix` (the stream's id within its domain starts with it) and \
        `updated_after` / `updated_before` on the time of the latest event. Ordered by `stream` \
        (`domain/id`, the default) or `last_event_at` (`order=desc` for the most recently \
        changed first), ties by stream, ascending unless `order=desc`. Pages hold `limit` \
        streams (default 50, at most 500); pass `next_cursor` as `cursor` (with the same \
        `sort`) for the next one. The read model follows the log shortly after each commit.",
    params(
        ("domain" = Option<Vec<crate::api::openapi::DomainName>>, Query, style = Form, explode, max_items = 20, description = "Only streams of these domains; repeatable or comma-separated (`domain=tickets,edges`), at most 20; each must be readable by the credential (403 otherwise). Without it: every domain the credential may read"),
        ("prefix" = Option<String>, Query, description = "Only streams whose id within their domain (the part after `domain/`) starts with this text (case-sensitive)"),
        ("updated_after" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Only streams whose latest event was recorded at or after this RFC 3339 instant"),
        ("updated_before" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Only streams whose latest event was recorded strictly before this RFC 3339 instant"),
        ("sort" = Option<StreamSortParam>, Query, description = "`stream` (default) or `last_event_at`; ties are ordered by stream"),
        ("order" = Option<crate::api::openapi::SortOrderParam>, Query, description = "`asc` (default) or `desc`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Streams per page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page, with the same sort"),
    ),
    responses(
        (status = 200, description = "A page of streams", body = Page<StreamView>),
        (status = 400, description = "`invalid-query`: an unknown or malformed parameter (a domain that is no domain name, more than 20 domains), or a cursor of another sort", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::api::openapi::Unauthorized),
        (status = 403, description = "`forbidden`: `domain` names a domain the credential may not read, or it may read no whole domain", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::api::openapi::RateLimited),
        (status = 500, response = crate::api::openapi::InternalError),
        (status = 503, description = "`store-unavailable`: the database is down (`Retry-After` given); `read-model-unavailable`: the read model is not served yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_streams(
    identity: Identity,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (named, rest) = split_domains(req.query_string())?;
    let params = Params::parse(&rest, LIST_PARAMS)?;
    let domains = domains_to_list(&identity, named)?;
    let sort = params.sort(StreamSort::NAMES)?;
    let query = StreamQuery {
        domains,
        prefix: params.get("prefix").map(str::to_owned),
        updated_after: params.time("updated_after")?,
        updated_before: params.time("updated_before")?,
        sort: StreamSort::parse(sort).unwrap_or_default(),
        order: params.order(SortOrder::Asc)?,
        limit: params.limit()?,
        cursor: params.cursor(sort)?,
    };
    let page = streams::list(backend(&state)?, identity.tenant.as_str(), &query)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn identity(scopes: &[&str]) -> Identity {
        let mut identity = Identity::anonymous();
        identity.scopes = scopes.iter().map(|s| s.parse::<Scope>().unwrap()).collect();
        identity
    }

    #[test]
    fn domains_are_repeatable_comma_separated_once_each_and_at_most_twenty() {
        let (domains, rest) =
            split_domains("domain=tickets,edges&limit=5&domain=widgets&domain=tickets").unwrap();
        assert_eq!(
            domains.unwrap(),
            ["tickets", "edges", "widgets"].map(String::from)
        );
        assert_eq!(rest, "limit=5");
        assert_eq!(
            split_domains("sort=stream").unwrap(),
            (None, "sort=stream".into())
        );
        for bad in ["domain=", "domain=a,,b", "domain=Tickets", "domain=a%2Fb"] {
            assert!(split_domains(bad).is_err(), "{bad}");
        }
        let twenty: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let query = format!("domain={}", twenty.join(","));
        assert_eq!(split_domains(&query).unwrap().0.unwrap(), twenty);
        assert!(split_domains(&format!("{query}&domain=d20")).is_err());
    }

    #[test]
    fn only_wholly_readable_domains_are_listed() {
        assert_eq!(readable_domains(&identity(&["read:*"])), None);
        assert_eq!(readable_domains(&identity(&["admin"])), None);
        assert_eq!(
            readable_domains(&identity(&[
                "read:tickets",
                "read:widgets.*",
                "read:edges.edge_registered",
                "publish:drafts",
                "read:tickets",
            ])),
            Some(vec!["tickets".to_owned(), "widgets".to_owned()])
        );
        assert!(domains_to_list(&identity(&["publish:*"]), None).is_err());
        assert!(domains_to_list(&identity(&["read:tickets"]), Some(vec!["edges".into()])).is_err());
        assert_eq!(
            domains_to_list(&identity(&["read:tickets"]), Some(vec!["tickets".into()])).unwrap(),
            Some(vec!["tickets".to_owned()])
        );
    }
}
