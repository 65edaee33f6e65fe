//! `POST /v1/erasure`: deletes a pseudonymous subject's rows and archived objects and leaves an
//! audit entry with counts only. Database first, objects after (see `archive.rs`), and the
//! subject's whole archive prefix is swept, so a retry after a partial failure finishes the job.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::Json;
use vitalcore_protocol::{ErasureReceipt, ErasureRequest};

use crate::auth::{random_hex, sha256_hex, Device};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn erase(
    State(state): State<AppState>,
    _device: Device,
    body: Result<Json<ErasureRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ErasureReceipt>, ApiError> {
    let Json(req) = body.map_err(ApiError::from)?;
    if req.subject.is_empty() || req.subject.len() > 128 {
        return Err(ApiError::Invalid("subject must be 1-128 characters"));
    }
    let digest = sha256_hex(req.subject.as_bytes());
    let audit_id = random_hex(16)?;
    let counts = state
        .store
        .erase_subject(&req.subject, &digest, &audit_id, crate::now_secs())
        .await?;
    let mut gone: BTreeSet<String> = counts.object_keys.into_iter().collect();
    let retry = ApiError::Unavailable {
        retry_after: state.config.retry_after_secs,
    };
    let leftovers = state
        .archive
        .list(&format!("raw/{digest}/"))
        .await
        .map_err(|_| {
            tracing::warn!("erasure: archive listing failed; client should retry");
            ApiError::Unavailable {
                retry_after: state.config.retry_after_secs,
            }
        })?;
    gone.extend(leftovers);
    for key in &gone {
        if state.archive.delete(key).await.is_err() {
            tracing::warn!("erasure: archive delete failed; client should retry");
            return Err(retry);
        }
    }
    tracing::info!(
        records = counts.records,
        objects = gone.len(),
        "subject erased"
    );
    Ok(Json(ErasureReceipt {
        audit_id,
        records_deleted: counts.records,
        labels_deleted: counts.labels,
        objects_deleted: gone.len() as u64,
    }))
}
