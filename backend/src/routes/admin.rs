//! Admin API (served on the admin listener only): training export (Arrow IPC stream), partner
//! keys (creation with an expiry, revocation), device revocation, erasure and refusal audits.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vitalcore_protocol::ConsentPurpose;

use crate::auth::{random_hex, random_token, sha256_hex, Admin};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{
    AuditEntry, PartnerKey, PartnerScopes, RecordQuery, RefusalEntry, StoredRecord,
};

/// Media type of the export.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

const PAGE: i64 = 5000;

/// Query of the export.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// Only this study (all when absent).
    pub study: Option<String>,
}

/// Every record whose consent includes model training, with its label, as an Arrow IPC stream:
/// fixed columns, then one nullable float64 column per feature name (sorted). pyarrow and
/// pandas read it directly (`pyarrow.ipc.open_stream`).
pub(crate) async fn export(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let mut rows: Vec<StoredRecord> = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = state
            .store
            .records(&RecordQuery {
                study: q.study.clone(),
                purpose: ConsentPurpose::ModelTraining,
                after_seq,
                limit: PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        let full = page.len() as i64 == PAGE;
        rows.extend(page);
        if !full {
            break;
        }
    }
    let bytes = to_arrow(&rows).map_err(|_| ApiError::Internal)?;
    tracing::info!(rows = rows.len(), "training export");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM))],
        bytes,
    )
        .into_response())
}

fn to_arrow(rows: &[StoredRecord]) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let names: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.record.features.keys().map(String::as_str))
        .collect();
    let text = |f: &dyn Fn(&StoredRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let mut fields = vec![
        Field::new("record_id", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("study", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("feature_set", DataType::Utf8, false),
        Field::new("captured_hour", DataType::Int64, false),
        Field::new("age_band", DataType::Utf8, true),
        Field::new("quality", DataType::Float64, false),
        Field::new("label", DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        text(&|r| r.record.record_id.as_str()),
        text(&|r| r.record.subject.as_str()),
        text(&|r| r.record.study.as_str()),
        text(&|r| r.record.kind.as_str()),
        text(&|r| r.record.feature_set.as_str()),
        Arc::new(Int64Array::from(
            rows.iter()
                .map(|r| r.record.captured_hour)
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.record.age_band.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.record.quality).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.label.as_deref()).collect::<Vec<_>>(),
        )),
    ];
    for name in names {
        fields.push(Field::new(format!("f_{name}"), DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from(
            rows.iter()
                .map(|r| r.record.features.get(name).copied())
                .collect::<Vec<_>>(),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &schema)?;
        w.write(&batch)?;
        w.finish()?;
    }
    Ok(buf)
}

/// Answer to a partner key creation: the key is shown once.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewPartnerKey {
    /// Public id.
    pub key_id: String,
    /// The secret (`Authorization: Bearer <api_key>`).
    pub api_key: String,
    /// Its scopes.
    pub scopes: PartnerScopes,
    /// After this time (seconds since the epoch) the key is refused.
    pub expires_at: i64,
}

/// Body of a partner key creation: its scopes and, optionally, a lifetime shorter than the
/// configured `partner_key_ttl_secs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartnerKeyRequest {
    /// What the key may read.
    #[serde(flatten)]
    pub scopes: PartnerScopes,
    /// Lifetime in seconds (at most `partner_key_ttl_secs`, which is also the default).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

pub(crate) async fn create_partner_key(
    State(state): State<AppState>,
    _admin: Admin,
    body: Result<Json<PartnerKeyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NewPartnerKey>), ApiError> {
    let Json(req) = body.map_err(ApiError::from)?;
    let scopes = req.scopes;
    if scopes.studies.is_empty() || scopes.features.is_empty() {
        return Err(ApiError::Invalid(
            "a partner key needs at least one study and one feature",
        ));
    }
    let max = state.config.partner_key_ttl_secs;
    let ttl = req.expires_in_secs.unwrap_or(max);
    if ttl == 0 || ttl > max {
        return Err(ApiError::InvalidField {
            field: "expires_in_secs",
            rule: "must be within 1..=partner_key_ttl_secs",
        });
    }
    let now = crate::now_secs();
    let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let key_id = random_hex(8)?;
    let api_key = format!("vcp_{}", random_token(32)?);
    let key = PartnerKey {
        key_id: key_id.clone(),
        scopes: scopes.clone(),
        expires_at,
    };
    state
        .store
        .insert_partner_key(&key, &sha256_hex(api_key.as_bytes()), now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewPartnerKey {
            key_id,
            api_key,
            scopes,
            expires_at,
        }),
    ))
}

fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Revokes a partner key: refused from the next request on, on every node.
pub(crate) async fn revoke_partner_key(
    State(state): State<AppState>,
    _admin: Admin,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !id_ok(&key_id) {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .revoke_partner_key(&key_id, crate::now_secs())
        .await?;
    tracing::info!("partner key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a device credential: refused from the next request on, on every node. The
/// device's subjects stay its own (the binding is to the subject's proof, not the device), so
/// a device that enrolls again can still erase them.
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    _admin: Admin,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !id_ok(&device_id) {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .revoke_device(&device_id, crate::now_secs())
        .await?;
    tracing::info!("device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Attempts refused because they named a subject bound to another proof: time, device and
/// action, never the subject.
pub(crate) async fn refusal_audit(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<RefusalEntry>>, ApiError> {
    Ok(Json(state.store.refusals().await?))
}

pub(crate) async fn erasure_audit(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(state.store.audit_entries().await?))
}
