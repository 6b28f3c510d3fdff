//! `/v1/views/counters/{id}`: a counter's total from the read model.

use actix_web::{web, HttpResponse};
use herald::api::AppState;
use herald::auth::Identity;
use herald::domains::Views;
use serde_json::json;
use utoipa::OpenApi;

use super::read_model;

/// The OpenAPI paths of this view.
#[derive(Debug, OpenApi)]
#[openapi(paths(show))]
pub struct Api;

pub const VIEWS: Views = Views {
    routes,
    openapi: <Api as OpenApi>::openapi,
};

/// Registered inside the `/v1/views` scope, so relative to it.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/counters/{id}").route(web::get().to(show)));
}

/// `GET /v1/views/counters/{id}`
#[utoipa::path(
    get,
    path = "/v1/views/counters/{id}",
    tag = "views",
    operation_id = "show_counter",
    summary = "A counter's total",
    params(("id" = String, Path, description = "The counter's id")),
    responses(
        (status = 200, description = "The counter", body = Object),
        (status = 404, description = "No such counter"),
        (status = 503, description = "The read model is not served yet"),
    ),
)]
pub async fn show(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    // This test domain's read model is written for SQLite alone.
    let Some(herald_projections::Serving::Sqlite(read_models)) =
        state.read_side.as_ref().map(|side| side.serving())
    else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    match read_model::total(read_models, identity.tenant.to_string(), id.clone()).await {
        Ok(Some(total)) => HttpResponse::Ok().json(json!({ "id": id, "total": total })),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}
