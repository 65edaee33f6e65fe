//! `POST /v1/erasure`: deletes a pseudonymous subject's rows, the batch and idempotency
//! metadata left empty by that, and its archived objects, and leaves an audit entry with
//! counts only. A subject the server has bound (its first accepted upload) is erased only
//! with its possession proof: the proof comes from the user's pseudonym key, not from the
//! device credential, so another enrolled device cannot erase it and the owner can after a
//! reinstall (403 otherwise, nothing deleted, the refusal audited without the subject).
//! Database first, objects after (see `archive.rs`), and the subject's whole archive prefix is
//! swept, so a retry after a partial failure finishes the job.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::Json;
use vitalcore_protocol::{is_valid_subject_proof, ErasureReceipt, ErasureRequest};

use crate::auth::{random_hex, sha256_hex, Device};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{ErasureWrite, StoreError};

pub(crate) async fn erase(
    State(state): State<AppState>,
    device: Device,
    body: Result<Json<ErasureRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ErasureReceipt>, ApiError> {
    let Json(req) = body.map_err(ApiError::from)?;
    if req.subject.is_empty() || req.subject.len() > 128 {
        return Err(ApiError::InvalidField {
            field: "subject",
            rule: "must be 1-128 characters",
        });
    }
    if req
        .proof
        .as_deref()
        .is_some_and(|p| !is_valid_subject_proof(p))
    {
        return Err(ApiError::InvalidField {
            field: "proof",
            rule: "must be 64 lower-case hex digits",
        });
    }
    let digest = sha256_hex(req.subject.as_bytes());
    let proof_hash = req.proof.as_deref().map(|p| sha256_hex(p.as_bytes()));
    let audit_id = random_hex(16)?;
    let counts = match state
        .store
        .erase_subject(&ErasureWrite {
            subject: &req.subject,
            subject_digest: &digest,
            proof_hash: proof_hash.as_deref(),
            audit_id: &audit_id,
            at: crate::now_secs(),
        })
        .await
    {
        Ok(c) => c,
        Err(StoreError::Forbidden) => {
            return Err(crate::routes::batches::refused(&state, &device, "erasure").await)
        }
        Err(e) => return Err(e.into()),
    };
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
        batches = counts.batches,
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
