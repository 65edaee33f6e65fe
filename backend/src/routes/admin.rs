//! Admin API: training export (Arrow IPC stream), partner keys, erasure audit.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vitalcore_protocol::ConsentPurpose;

use crate::auth::{random_hex, random_token, sha256_hex, Admin};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{AuditEntry, PartnerKey, PartnerScopes, RecordQuery, StoredRecord};

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
}

pub(crate) async fn create_partner_key(
    State(state): State<AppState>,
    _admin: Admin,
    body: Result<Json<PartnerScopes>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NewPartnerKey>), ApiError> {
    let Json(scopes) = body.map_err(ApiError::from)?;
    if scopes.studies.is_empty() || scopes.features.is_empty() {
        return Err(ApiError::Invalid(
            "a partner key needs at least one study and one feature",
        ));
    }
    let key_id = random_hex(8)?;
    let api_key = format!("vcp_{}", random_token(32)?);
    let key = PartnerKey {
        key_id: key_id.clone(),
        scopes: scopes.clone(),
    };
    state
        .store
        .insert_partner_key(&key, &sha256_hex(api_key.as_bytes()), crate::now_secs())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewPartnerKey {
            key_id,
            api_key,
            scopes,
        }),
    ))
}

pub(crate) async fn erasure_audit(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(state.store.audit_entries().await?))
}
