//! The model registry: admin upload (the server signs), devices fetch the manifest their
//! rollout bucket entitles them to (with ETag / If-None-Match) and the artifact by version.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use vitalcore_protocol::{
    ArtifactRef, ModelManifest, ModelVersion, SignedManifest, MANIFEST_SCHEMA,
};

use crate::auth::{sha256, sha256_hex, Admin, Device};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{ModelRow, StoreError};

/// Body of `POST /v1/admin/models`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelUpload {
    /// The manifest; `artifact` is filled in (or checked, when given) by the server.
    pub manifest: ModelManifest,
    /// The ONNX bytes, standard base64.
    pub artifact_base64: String,
    /// Share of devices (0..=100) that get this version at first; default 100.
    #[serde(default = "hundred")]
    pub rollout_percent: i64,
}

fn hundred() -> i64 {
    100
}

/// Body of the rollout change.
#[derive(Debug, Serialize, Deserialize)]
pub struct Rollout {
    /// New share of devices, 0..=100.
    pub percent: i64,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

pub(crate) async fn upload(
    State(state): State<AppState>,
    _admin: Admin,
    body: Result<Json<ModelUpload>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SignedManifest>), ApiError> {
    let Json(up) = body.map_err(ApiError::from)?;
    let signer = state
        .signer
        .as_ref()
        .ok_or(ApiError::NotConfigured("no signing key"))?;
    let mut manifest = up.manifest;
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(ApiError::UnsupportedSchema);
    }
    if !valid_name(&manifest.name) {
        return Err(ApiError::Invalid(
            "model name must be 1-64 characters of [A-Za-z0-9_-]",
        ));
    }
    if !(0..=100).contains(&up.rollout_percent) {
        return Err(ApiError::Invalid("rollout_percent must be within 0..=100"));
    }
    let artifact = B64
        .decode(up.artifact_base64.as_bytes())
        .map_err(|_| ApiError::Malformed)?;
    if artifact.is_empty() {
        return Err(ApiError::Invalid("artifact is empty"));
    }
    let pinned = ArtifactRef {
        sha256: sha256_hex(&artifact),
        length: artifact.len() as u64,
    };
    if !manifest.artifact.sha256.is_empty() && manifest.artifact != pinned {
        return Err(ApiError::Invalid(
            "artifact does not match the manifest's sha256/length",
        ));
    }
    manifest.artifact = pinned;
    let existing = state.store.models(&manifest.name).await?;
    if let Some(newest) = existing
        .iter()
        .filter_map(|m| m.version.parse::<ModelVersion>().ok())
        .max()
    {
        if manifest.version <= newest {
            return Err(ApiError::Conflict);
        }
    }
    let signed = signer.sign(&manifest).map_err(|_| ApiError::Internal)?;
    let signed_json = serde_json::to_string(&signed).map_err(|_| ApiError::Internal)?;
    let version = manifest.version.to_string();
    let artifact_key = format!("models/{}/{}.onnx", manifest.name, version);
    state
        .archive
        .put(&artifact_key, Bytes::from(artifact))
        .await
        .map_err(|_| ApiError::Unavailable {
            retry_after: state.config.retry_after_secs,
        })?;
    state
        .store
        .insert_model(&ModelRow {
            name: manifest.name.clone(),
            version,
            signed_manifest: signed_json,
            artifact_key,
            rollout_percent: up.rollout_percent,
            created_at: crate::now_secs(),
        })
        .await?;
    tracing::info!(key_id = signer.key_id(), "model published");
    Ok((StatusCode::CREATED, Json(signed)))
}

pub(crate) async fn set_rollout(
    State(state): State<AppState>,
    _admin: Admin,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<Rollout>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(r) = body.map_err(ApiError::from)?;
    if !(0..=100).contains(&r.percent) {
        return Err(ApiError::Invalid("percent must be within 0..=100"));
    }
    state.store.set_rollout(&name, &version, r.percent).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deterministic bucket 0..100 of a pseudonymous id for one model version: the same device
/// always lands in the same bucket, and raising the percentage only adds devices.
pub fn rollout_bucket(name: &str, version: &str, pseudonym: &str) -> u64 {
    let d = sha256(format!("rollout\0{name}\0{version}\0{pseudonym}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % 100
}

fn etag_of(signed_manifest: &str) -> String {
    format!("\"{}\"", &sha256_hex(signed_manifest.as_bytes())[..32])
}

pub(crate) async fn latest_manifest(
    State(state): State<AppState>,
    device: Device,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut rows = state.store.models(&name).await?;
    rows.sort_by_cached_key(|m| std::cmp::Reverse(m.version.parse::<ModelVersion>().ok()));
    let chosen = rows
        .into_iter()
        .find(|m| {
            m.rollout_percent >= 100
                || rollout_bucket(&m.name, &m.version, &device.device_id)
                    < m.rollout_percent.max(0) as u64
        })
        .ok_or(ApiError::NotFound)?;
    let etag = etag_of(&chosen.signed_manifest);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::Internal)?;
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (header::ETAG, etag_value),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        chosen.signed_manifest,
    )
        .into_response())
}

pub(crate) async fn artifact(
    State(state): State<AppState>,
    _device: Device,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let row = state
        .store
        .models(&name)
        .await?
        .into_iter()
        .find(|m| m.version == version)
        .ok_or(ApiError::from(StoreError::NotFound))?;
    let bytes = state
        .archive
        .get(&row.artifact_key)
        .await
        .map_err(|_| ApiError::Unavailable {
            retry_after: state.config.retry_after_secs,
        })?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}
