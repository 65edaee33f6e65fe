//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers; otherwise 503 with `Retry-After` so the load balancer
/// routes around this node until the database is back.
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable {
            retry_after: state.config.retry_after_secs,
        })?;
    Ok((
        StatusCode::OK,
        Json(json!({ "status": "ready", "region": state.config.region })),
    ))
}
