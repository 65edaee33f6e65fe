//! `POST /v1/enroll`: an app enrollment token buys a per-device credential; the server keeps
//! only the credential's hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use vitalcore_protocol::{EnrollRequest, EnrollResponse};

use crate::auth::{matches_any, random_hex, random_token, sha256_hex};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn enroll(
    State(state): State<AppState>,
    body: Result<Json<EnrollRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let Json(req) = body.map_err(ApiError::from)?;
    if !matches_any(&req.enrollment_token, &state.enrollment_hashes) {
        return Err(ApiError::Unauthorized);
    }
    let device_id = random_hex(16)?;
    let credential = format!("vcd_{}", random_token(32)?);
    state
        .store
        .insert_device(
            &device_id,
            &sha256_hex(credential.as_bytes()),
            crate::now_secs(),
        )
        .await?;
    tracing::info!("device enrolled");
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            device_id,
            credential,
        }),
    ))
}
