//! HTTP routes, one file per concern. Every route is listed in the OpenAPI document
//! (`openapi.rs`); a test reads this file to keep the two in step.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod batches;
pub mod enroll;
pub mod erasure;
pub mod health;
pub mod models;
pub mod partner;
pub mod region;

/// Largest admin model upload (base64 JSON).
const MAX_MODEL_UPLOAD: usize = 256 << 20;

/// The public API router: device, partner and health routes, never an admin route. Test it
/// with `tower::ServiceExt::oneshot`, serve it with [`crate::serve`].
pub fn router(state: AppState) -> Router {
    finish(public_routes(), state)
}

/// The admin plane: the `/v1/admin/*` routes plus the public ones (tools such as the trainer
/// act as admin and as a device through one address). Served only on `admin_listen`
/// (loopback by default), never on the public listener.
pub fn admin_router(state: AppState) -> Router {
    finish(public_routes().merge(admin_routes()), state)
}

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .route("/v1/region", get(region::region))
        .route("/v1/enroll", post(enroll::enroll))
        .route(
            "/v1/batches",
            post(batches::post_batch).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/erasure", post(erasure::erase))
        .route("/v1/models/{name}/manifest", get(models::latest_manifest))
        .route(
            "/v1/models/{name}/versions/{version}/artifact",
            get(models::artifact),
        )
        .route("/v1/partner/records", get(partner::records))
        .route("/v1/partner/aggregates", get(partner::aggregates))
}

fn admin_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/models",
            post(models::upload).layer(DefaultBodyLimit::max(MAX_MODEL_UPLOAD)),
        )
        .route(
            "/v1/admin/models/{name}/versions/{version}/rollout",
            post(models::set_rollout),
        )
        .route("/v1/admin/export", get(admin::export))
        .route("/v1/admin/partner-keys", post(admin::create_partner_key))
        .route(
            "/v1/admin/partner-keys/{key_id}/revoke",
            post(admin::revoke_partner_key),
        )
        .route(
            "/v1/admin/devices/{device_id}/revoke",
            post(admin::revoke_device),
        )
        .route("/v1/admin/erasure-audit", get(admin::erasure_audit))
        .route("/v1/admin/refusal-audit", get(admin::refusal_audit))
}

fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    routes
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(access_log))
        .layer(middleware::from_fn_with_state(timeout, deadline))
        .with_state(state)
}

/// Bounds every request: a stuck dependency yields 503 + `Retry-After`, never a hang.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Unavailable { retry_after: 1 }.into_response(),
    }
}

/// One structured line per request: route template (never the concrete path, which may hold
/// ids), method, status, latency. No headers, no bodies.
async fn access_log(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        %method,
        route,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}
