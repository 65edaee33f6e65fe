//! `POST /v1/batches`: the ingest path.
//!
//! Every check runs before anything is written, in this order: credential (rate-limited per
//! credential, revoked and expired ones refused), encoding, body size; then, inside the ingest
//! limit (one of the device's `max_inflight_per_device` slots and one of the process's
//! `max_inflight_batches`, 429 with `Retry-After` instead of an unbounded queue) and off the
//! async workers: decompressed size (compression bombs), schema version, shape, content rules
//! (feature names and value ranges of the record's feature set, kind, study, age band, label
//! vocabularies, one possession proof per subject), region. Then: idempotency fast path (a
//! replay costs one indexed read), subject ownership (a subject bound to another proof: 403,
//! nothing written, audited), archive objects, and finally one database transaction holding
//! bindings + rows + idempotency record + archive references (see `archive.rs` for why
//! objects go first).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use vitalcore_protocol::{
    feature_set, is_valid_age_band, is_valid_kind, is_valid_label, is_valid_study,
    is_valid_subject_proof, BatchAck, OutcomeLabel, SyncBatch, BATCH_SCHEMA,
};

use crate::auth::{random_hex, sha256_hex, Device};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{
    purpose_bits, ArchiveRef, BatchWrite, CommitOutcome, RefusalEntry, StoreError, StoredAnswer,
    SubjectProof,
};

const MAX_TEXT: usize = 128;
const MAX_FEATURES: usize = 64;

/// Header set on an answer replayed from the idempotency record.
pub const REPLAY_HEADER: &str = "idempotent-replayed";

#[derive(Deserialize)]
struct SchemaProbe {
    schema: u32,
}

/// A decompressed, parsed and validated batch.
struct Prepared {
    batch: SyncBatch,
    request_digest: String,
    subjects: Vec<SubjectProof>,
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

    // Inside the ingest limit from here on: one of this device's slots (no device takes every
    // slot), then a slot of the process, before any decompression or parsing.
    let retry_after = state.config.retry_after_secs;
    let _slot = state.limits.device_slot(&device.device_id, retry_after)?;
    let _permit = tokio::time::timeout(
        state.config.ingest_queue(),
        state.ingest_gate.clone().acquire_owned(),
    )
    .await
    .map_err(|_| ApiError::Saturated { retry_after })?
    .map_err(|_| ApiError::Unavailable { retry_after })?;
    let _inflight = crate::metrics::inflight();

    // Decompression, JSON parsing and validation are CPU work proportional to the body: off
    // the async workers.
    let st = state.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&st, encoding, &compressed))
        .await
        .map_err(|_| ApiError::Internal)??;
    let Prepared {
        batch,
        request_digest,
        subjects,
    } = prepared;

    if let Some(stored) = state
        .store
        .idempotent_answer(&device.device_id, &batch.idempotency_key)
        .await?
    {
        return replay(stored, &request_digest);
    }
    // Early, before archive objects are written; commit_batch decides atomically.
    if state.store.proof_mismatch(&subjects).await? {
        return Err(refused(&state, &device, "batch").await);
    }

    // Random: the id names no device, so records -> batch leads to no device.
    let batch_id = random_hex(16)?;
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
        subjects,
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
    let result = state.store.commit_batch(&write, &answer).await;
    state.housekeeping_tick();
    match result {
        Ok(CommitOutcome::Committed(a)) => {
            let stored: u64 = serde_json::from_slice::<BatchAck>(&a.body)
                .map(|ack| u64::from(ack.records_stored))
                .unwrap_or(0);
            crate::metrics::batch_accepted(stored, started.elapsed());
            tracing::info!(records = write.records.len(), stored, "batch accepted");
            Ok(json_answer(a.status, a.body, false))
        }
        Ok(CommitOutcome::Existing(a)) => {
            // Lost a race with a concurrent upload of the same key: nothing references our
            // objects (their keys hold our random batch id).
            for r in &write.archive {
                let _ = state.archive.delete(&r.object_key).await;
            }
            replay(a, &request_digest)
        }
        Err(e) => {
            for r in &write.archive {
                let _ = state.archive.delete(&r.object_key).await;
            }
            match e {
                StoreError::Forbidden => Err(refused(&state, &device, "batch").await),
                e => Err(e.into()),
            }
        }
    }
}

/// 403 for a request naming a subject bound to another proof; the attempt is audited with the
/// device and the action, never the subject.
pub(crate) async fn refused(state: &AppState, device: &Device, action: &str) -> ApiError {
    crate::metrics::count_error("subject_not_owned");
    tracing::warn!(action, "refused: a subject bound to another proof");
    let entry = RefusalEntry {
        audit_id: random_hex(16).unwrap_or_default(),
        at: crate::now_secs(),
        device_id: device.device_id.clone(),
        action: action.to_owned(),
    };
    if let Err(e) = state.store.insert_refusal(&entry).await {
        tracing::warn!(error = %e, "refusal audit entry not written");
    }
    ApiError::Forbidden
}

fn prepare(state: &AppState, encoding: Encoding, compressed: &[u8]) -> Result<Prepared, ApiError> {
    let raw = decompress(encoding, compressed, state.config.max_batch_bytes)?;
    let probe: SchemaProbe = serde_json::from_slice(&raw).map_err(|_| ApiError::Malformed)?;
    if probe.schema != BATCH_SCHEMA {
        return Err(ApiError::UnsupportedSchema);
    }
    let batch: SyncBatch = serde_json::from_slice(&raw).map_err(|_| ApiError::Malformed)?;
    validate(state, &batch)?;
    let subjects = batch
        .subject_proofs
        .iter()
        .map(|(subject, proof)| SubjectProof {
            subject_digest: sha256_hex(subject.as_bytes()),
            proof_hash: sha256_hex(proof.as_bytes()),
        })
        .collect();
    Ok(Prepared {
        request_digest: sha256_hex(&raw),
        batch,
        subjects,
    })
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

fn bad(field: &'static str, rule: &'static str) -> ApiError {
    ApiError::InvalidField { field, rule }
}

/// Latest accepted capture hour: 2100-01-01 (a later one is not a capture time).
const LAST_HOUR: i64 = 4_102_444_800;

/// Every rule a batch must meet before anything is written. A refusal names the field and
/// the rule, never the value (values may be personal data).
fn validate(state: &AppState, b: &SyncBatch) -> Result<(), ApiError> {
    let cfg = &state.config;
    let key = &b.idempotency_key;
    if key.len() < 16
        || key.len() > 128
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(bad(
            "idempotency_key",
            "must be 16-128 characters of [A-Za-z0-9_-]",
        ));
    }
    if b.records.len() > cfg.max_records_per_batch || b.labels.len() > cfg.max_records_per_batch {
        return Err(ApiError::TooLarge);
    }
    if b.records.is_empty() && b.labels.is_empty() {
        return Err(bad("records", "a batch holds at least one record or label"));
    }
    if b.consent.is_empty() {
        return Err(bad("consent", "purposes must be declared"));
    }
    if b.consent.iter().collect::<HashSet<_>>().len() != b.consent.len() {
        return Err(bad("consent", "purposes repeated"));
    }
    if !cfg.allowed_regions.iter().any(|r| r == &b.region) {
        return Err(bad("region", "unknown region"));
    }
    if b.region != cfg.region {
        return Err(ApiError::WrongRegion);
    }
    let mut seen = HashSet::with_capacity(b.records.len());
    let mut subjects: HashSet<&str> = HashSet::new();
    for r in &b.records {
        if !text_ok(&r.record_id) {
            return Err(bad(
                "records[].record_id",
                "must be 1-128 printable characters",
            ));
        }
        if !text_ok(&r.subject) {
            return Err(bad(
                "records[].subject",
                "must be 1-128 printable characters",
            ));
        }
        if !is_valid_study(&r.study) {
            return Err(bad("records[].study", "must be 1-64 of [a-z0-9_-]"));
        }
        if !is_valid_kind(&r.kind) {
            return Err(bad("records[].kind", "must be one of ppg, ecg, accel"));
        }
        let Some(set) = feature_set(&r.feature_set) else {
            return Err(bad(
                "records[].feature_set",
                "must name a known feature set",
            ));
        };
        if r.age_band.as_deref().is_some_and(|a| !is_valid_age_band(a)) {
            return Err(bad(
                "records[].age_band",
                "must be a five- or ten-year band or 90+",
            ));
        }
        if !(0..=LAST_HOUR).contains(&r.captured_hour) {
            return Err(bad(
                "records[].captured_hour",
                "must be between 1970 and 2100",
            ));
        }
        if !(0.0..=1.0).contains(&r.quality) {
            return Err(bad("records[].quality", "must be within [0, 1]"));
        }
        if r.features.is_empty() || r.features.len() > MAX_FEATURES {
            return Err(bad("records[].features", "a record has 1-64 features"));
        }
        for (name, v) in &r.features {
            let Some(def) = set.iter().find(|f| f.name == name.as_str()) else {
                return Err(bad(
                    "records[].features",
                    "names must belong to the record's feature set",
                ));
            };
            if !def.accepts(*v) {
                return Err(bad(
                    "records[].features",
                    "values must be finite and within the feature's accepted range",
                ));
            }
        }
        if !seen.insert((&r.subject, &r.record_id)) {
            return Err(bad("records", "record repeated within the batch"));
        }
        subjects.insert(&r.subject);
    }
    let mut labelled = HashSet::with_capacity(b.labels.len());
    for l in &b.labels {
        if !text_ok(&l.subject) {
            return Err(bad(
                "labels[].subject",
                "must be 1-128 printable characters",
            ));
        }
        if !text_ok(&l.record_id) {
            return Err(bad(
                "labels[].record_id",
                "must be 1-128 printable characters",
            ));
        }
        if !is_valid_label(&l.label) {
            return Err(bad("labels[].label", "must be 1-32 of [a-z0-9_-]"));
        }
        if !labelled.insert((&l.subject, &l.record_id)) {
            return Err(bad("labels", "label repeated within the batch"));
        }
        subjects.insert(&l.subject);
    }
    if b.subject_proofs.len() != subjects.len()
        || !subjects.iter().all(|s| b.subject_proofs.contains_key(*s))
    {
        return Err(bad(
            "subject_proofs",
            "must hold one proof for each subject the batch names, and no other",
        ));
    }
    if !b.subject_proofs.values().all(|p| is_valid_subject_proof(p)) {
        return Err(bad(
            "subject_proofs",
            "proofs must be 64 lower-case hex digits",
        ));
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
        // The slice carries no proof: the archive keeps what the subject uploaded, not what
        // would let someone else act as its owner.
        let slice = SyncBatch {
            schema: b.schema,
            idempotency_key: b.idempotency_key.clone(),
            region: b.region.clone(),
            consent: b.consent.clone(),
            records,
            labels,
            subject_proofs: BTreeMap::new(),
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
