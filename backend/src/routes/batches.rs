//! `POST /v1/batches`: the ingest path.
//!
//! Every check runs before anything is written, in this order: credential, encoding, body size,
//! decompressed size (compression bombs), schema version, shape, content rules, region. Then:
//! idempotency fast path (a replay costs one indexed read), a write slot (bounded: 429 with
//! `Retry-After` instead of an unbounded queue), archive objects, and finally one database
//! transaction holding rows + idempotency record + archive references (see `archive.rs` for
//! why objects go first).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use vitalcore_protocol::{BatchAck, OutcomeLabel, SyncBatch, BATCH_SCHEMA};

use crate::auth::{sha256_hex, Device};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{purpose_bits, ArchiveRef, BatchWrite, CommitOutcome, StoredAnswer};

const MAX_TEXT: usize = 128;
const MAX_FEATURES: usize = 64;

/// Header set on an answer replayed from the idempotency record.
pub const REPLAY_HEADER: &str = "idempotent-replayed";

#[derive(Deserialize)]
struct SchemaProbe {
    schema: u32,
}

pub(crate) async fn post_batch(
    State(state): State<AppState>,
    device: Device,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let encoding = Encoding::from_headers(&headers)?;
    let compressed = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let raw = decompress(encoding, &compressed, state.config.max_batch_bytes)?;
    let probe: SchemaProbe = serde_json::from_slice(&raw).map_err(|_| ApiError::Malformed)?;
    if probe.schema != BATCH_SCHEMA {
        return Err(ApiError::UnsupportedSchema);
    }
    let batch: SyncBatch = serde_json::from_slice(&raw).map_err(|_| ApiError::Malformed)?;
    validate(&state, &batch)?;

    let request_digest = sha256_hex(&raw);
    if let Some(stored) = state
        .store
        .idempotent_answer(&device.device_id, &batch.idempotency_key)
        .await?
    {
        return replay(stored, &request_digest);
    }

    let _permit = tokio::time::timeout(
        state.config.ingest_queue(),
        state.ingest_gate.clone().acquire_owned(),
    )
    .await
    .map_err(|_| ApiError::Saturated {
        retry_after: state.config.retry_after_secs,
    })?
    .map_err(|_| ApiError::Unavailable {
        retry_after: state.config.retry_after_secs,
    })?;
    let _inflight = crate::metrics::inflight();

    let batch_id =
        sha256_hex(format!("{}\0{}", device.device_id, batch.idempotency_key).as_bytes())[..32]
            .to_owned();
    let archive = archive_slices(&state, &batch, &batch_id, &request_digest).await?;
    let write = BatchWrite {
        batch_id: batch_id.clone(),
        device_id: device.device_id.clone(),
        idempotency_key: batch.idempotency_key.clone(),
        request_digest: request_digest.clone(),
        region: batch.region.clone(),
        purposes: purpose_bits(&batch.consent),
        received_at: crate::now_secs(),
        records: batch.records,
        labels: batch.labels,
        archive,
    };
    let answer = |c: crate::storage::InsertCounts| {
        let ack = BatchAck {
            batch_id: batch_id.clone(),
            records_stored: c.records_stored,
            records_duplicate: c.records_duplicate,
            labels_stored: c.labels_stored,
        };
        // A struct of strings and integers always serializes.
        (200u16, serde_json::to_vec(&ack).unwrap_or_default())
    };
    match state.store.commit_batch(&write, &answer).await {
        Ok(CommitOutcome::Committed(a)) => {
            let stored: u64 = serde_json::from_slice::<BatchAck>(&a.body)
                .map(|ack| u64::from(ack.records_stored))
                .unwrap_or(0);
            crate::metrics::batch_accepted(stored, started.elapsed());
            tracing::info!(records = write.records.len(), stored, "batch accepted");
            Ok(json_answer(a.status, a.body, false))
        }
        Ok(CommitOutcome::Existing(a)) => {
            // Lost a race with a concurrent upload of the same key. Our objects are keyed by
            // our request digest; when it differs from the winner's, nothing references them.
            if a.request_digest != request_digest {
                for r in &write.archive {
                    let _ = state.archive.delete(&r.object_key).await;
                }
            }
            replay(a, &request_digest)
        }
        Err(e) => {
            for r in &write.archive {
                let _ = state.archive.delete(&r.object_key).await;
            }
            Err(e.into())
        }
    }
}

fn replay(stored: StoredAnswer, request_digest: &str) -> Result<Response, ApiError> {
    if stored.request_digest != request_digest {
        return Err(ApiError::KeyReuse);
    }
    crate::metrics::batch_replayed();
    Ok(json_answer(stored.status, stored.body, true))
}

fn json_answer(status: u16, body: Vec<u8>, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        resp.headers_mut()
            .insert(REPLAY_HEADER, HeaderValue::from_static("true"));
    }
    resp
}

/// Content encodings a batch may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 1952 gzip.
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Encoding {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        match headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if v.eq_ignore_ascii_case("gzip") => Ok(Self::Gzip),
            Some(v) if v.eq_ignore_ascii_case("zstd") => Ok(Self::Zstd),
            _ => Err(ApiError::UnsupportedEncoding),
        }
    }
}

/// Decompresses at most `cap` bytes; more means a bomb (or an oversized batch): 413.
pub fn decompress(encoding: Encoding, bytes: &[u8], cap: usize) -> Result<Vec<u8>, ApiError> {
    let reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(bytes).map_err(|_| ApiError::CorruptCompression)?,
        ),
    };
    let mut out = Vec::new();
    // Read one byte past the cap to tell "exactly cap" from "more than cap".
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::CorruptCompression)?;
    if out.len() > cap {
        return Err(ApiError::TooLarge);
    }
    Ok(out)
}

fn text_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

fn validate(state: &AppState, b: &SyncBatch) -> Result<(), ApiError> {
    let cfg = &state.config;
    let key = &b.idempotency_key;
    if key.len() < 16
        || key.len() > 128
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(ApiError::Invalid(
            "idempotency_key must be 16-128 characters of [A-Za-z0-9_-]",
        ));
    }
    if b.records.len() > cfg.max_records_per_batch || b.labels.len() > cfg.max_records_per_batch {
        return Err(ApiError::TooLarge);
    }
    if b.records.is_empty() && b.labels.is_empty() {
        return Err(ApiError::Invalid("batch is empty"));
    }
    if b.consent.is_empty() {
        return Err(ApiError::Invalid("consent purposes must be declared"));
    }
    if b.consent.iter().collect::<HashSet<_>>().len() != b.consent.len() {
        return Err(ApiError::Invalid("consent purposes repeated"));
    }
    if !cfg.allowed_regions.iter().any(|r| r == &b.region) {
        return Err(ApiError::Invalid("unknown region"));
    }
    if b.region != cfg.region {
        return Err(ApiError::WrongRegion);
    }
    let mut seen = HashSet::with_capacity(b.records.len());
    for r in &b.records {
        if ![&r.record_id, &r.subject, &r.study, &r.kind, &r.feature_set]
            .iter()
            .all(|s| text_ok(s))
            || r.age_band.as_deref().is_some_and(|a| !text_ok(a))
        {
            return Err(ApiError::Invalid(
                "record text fields must be 1-128 printable characters",
            ));
        }
        if !(0.0..=1.0).contains(&r.quality) {
            return Err(ApiError::Invalid("quality must be within [0, 1]"));
        }
        if r.features.is_empty() || r.features.len() > MAX_FEATURES {
            return Err(ApiError::Invalid("a record has 1-64 features"));
        }
        if r.features
            .iter()
            .any(|(k, v)| !text_ok(k) || !v.is_finite())
        {
            return Err(ApiError::Invalid(
                "feature names must be printable and values finite",
            ));
        }
        if !seen.insert((&r.subject, &r.record_id)) {
            return Err(ApiError::Invalid("record repeated within the batch"));
        }
    }
    let mut labelled = HashSet::with_capacity(b.labels.len());
    for l in &b.labels {
        if ![&l.subject, &l.record_id, &l.label]
            .iter()
            .all(|s| text_ok(s))
        {
            return Err(ApiError::Invalid(
                "label text fields must be 1-128 printable characters",
            ));
        }
        if !labelled.insert((&l.subject, &l.record_id)) {
            return Err(ApiError::Invalid("label repeated within the batch"));
        }
    }
    Ok(())
}

/// Archives one object per subject (so erasure deletes exactly one subject's raw data), keyed
/// `raw/<sha256(subject)>/<batch id>-<request digest prefix>.json.zst`.
async fn archive_slices(
    state: &AppState,
    b: &SyncBatch,
    batch_id: &str,
    request_digest: &str,
) -> Result<Vec<ArchiveRef>, ApiError> {
    let mut by_subject: BTreeMap<&str, (Vec<_>, Vec<OutcomeLabel>)> = BTreeMap::new();
    for r in &b.records {
        by_subject.entry(&r.subject).or_default().0.push(r.clone());
    }
    for l in &b.labels {
        by_subject.entry(&l.subject).or_default().1.push(l.clone());
    }
    let mut refs = Vec::with_capacity(by_subject.len());
    let mut objects = Vec::with_capacity(by_subject.len());
    for (subject, (records, labels)) in by_subject {
        let slice = SyncBatch {
            schema: b.schema,
            idempotency_key: b.idempotency_key.clone(),
            region: b.region.clone(),
            consent: b.consent.clone(),
            records,
            labels,
        };
        let json = serde_json::to_vec(&slice).map_err(|_| ApiError::Internal)?;
        let packed = zstd::bulk::compress(&json, 3).map_err(|_| ApiError::Internal)?;
        let subject_digest = sha256_hex(subject.as_bytes());
        let object_key = format!(
            "raw/{subject_digest}/{batch_id}-{}.json.zst",
            &request_digest[..16]
        );
        objects.push(Bytes::from(packed));
        refs.push(ArchiveRef {
            subject_digest,
            object_key,
        });
    }
    let puts = refs
        .iter()
        .zip(objects)
        .map(|(r, bytes)| state.archive.put(&r.object_key, bytes));
    let results = futures::future::join_all(puts).await;
    if results.iter().any(Result::is_err) {
        for r in &refs {
            let _ = state.archive.delete(&r.object_key).await;
        }
        tracing::warn!("archive write failed; batch refused with 503");
        return Err(ApiError::Unavailable {
            retry_after: state.config.retry_after_secs,
        });
    }
    Ok(refs)
}
