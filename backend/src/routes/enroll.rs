//! `POST /v1/enroll`: an app enrollment token buys a per-device credential; the server keeps
//! only the credential's hash. Rate-limited per client IP (the token ships in every app, so
//! it is no secret against a determined client); the credential expires after
//! `device_credential_ttl_secs` and can be revoked through the admin API.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use vitalcore_protocol::{EnrollRequest, EnrollResponse};

use crate::auth::{matches_any, random_hex, random_token, sha256_hex};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn enroll(
    State(state): State<AppState>,
    parts: Parts,
    body: Result<Json<EnrollRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    // Before anything else, so guessing tokens is limited too.
    state.limits.check_enroll(state.limits.client_ip(&parts))?;
    let Json(req) = body.map_err(ApiError::from)?;
    if !matches_any(&req.enrollment_token, &state.enrollment_hashes) {
        return Err(ApiError::Unauthorized);
    }
    let device_id = random_hex(16)?;
    let credential = format!("vcd_{}", random_token(32)?);
    let now = crate::now_secs();
    let ttl = i64::try_from(state.config.device_credential_ttl_secs).unwrap_or(i64::MAX);
    state
        .store
        .insert_device(
            &device_id,
            &sha256_hex(credential.as_bytes()),
            now,
            now.saturating_add(ttl),
        )
        .await?;
    tracing::info!("device enrolled");
    state.housekeeping_tick();
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            device_id,
            credential,
        }),
    ))
}
