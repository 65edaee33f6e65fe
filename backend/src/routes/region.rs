//! `GET /v1/region?nonce=<hex>`: the region this node serves, signed with the server key over
//! the device's nonce, so a device that pins the key can refuse an endpoint of another region
//! before it uploads anything, also where no TLS certificate vouches for the host.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use vitalcore_protocol::{is_valid_region_nonce, RegionStatement};

use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /v1/region`.
#[derive(Debug, Deserialize)]
pub(crate) struct RegionQuery {
    nonce: String,
}

pub(crate) async fn region(
    State(state): State<AppState>,
    query: Result<Query<RegionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RegionStatement>, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::Invalid("nonce is required"))?;
    if !is_valid_region_nonce(&q.nonce) {
        return Err(ApiError::Invalid(
            "nonce must be 32 to 128 lower-case hex digits",
        ));
    }
    let signer = state
        .signer
        .as_ref()
        .ok_or(ApiError::NotConfigured("no signing key"))?;
    Ok(Json(signer.sign_region(&state.config.region, &q.nonce)))
}
