//! The records the store holds, as the engine reads and writes them.
//!
//! `Debug` of every record carrying health data prints only its shape (ids, counts), never
//! values, so a stray `{:?}` in a log cannot leak them.

use std::collections::BTreeMap;
use std::fmt;

use super::codec::{DecodeError, Reader, Writer};
use super::error::StoreError;

/// Random 128-bit identifier of a stored row. Carries no information about its content, which is
/// why it may be stored and printed in plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub [u8; 16]);

impl RecordId {
    /// A fresh id from the OS secure random source.
    pub fn random() -> Result<Self, StoreError> {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| StoreError::Random)?;
        Ok(Self(b))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn from_slice(b: &[u8]) -> Result<Self, StoreError> {
        b.try_into().map(Self).map_err(|_| StoreError::Layout)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({self})")
    }
}

/// The person a record belongs to (a local profile id). Personal: stored only as a keyed hash,
/// never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectId(String);

impl SubjectId {
    /// Wraps a non-empty subject id.
    pub fn new(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        if id.is_empty() || id.len() > 256 {
            return Err(StoreError::InvalidInput("subject id must be 1..=256 bytes"));
        }
        Ok(Self(id))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

/// A data-use purpose (`care` for the local health record, `research`, `model_training`, ...):
/// lowercase ASCII letters, digits and `_`, 1 to 32 characters. Purposes are a fixed vocabulary,
/// not personal data, so they are stored in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Purpose(String);

impl Purpose {
    /// The purpose of the local health record (checks, raw windows, labels).
    pub fn care() -> Self {
        Self("care".to_owned())
    }

    /// Validates a purpose name.
    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(name))
        } else {
            Err(StoreError::InvalidInput(
                "purpose must be 1..=32 chars of [a-z0-9_]",
            ))
        }
    }

    /// The purpose name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Kind of a check (`ppg`, `ecg`, `accel`, ...): same vocabulary rules as [`Purpose`]; stored in
/// plaintext because history is filtered by it.
pub type CheckKind = Purpose;

/// Signal quality of a check.
#[derive(Clone, PartialEq)]
pub struct SignalQuality {
    /// Overall quality score in `[0, 1]`.
    pub score: f64,
    /// Whether the signal was good enough to compute features.
    pub usable: bool,
}

/// The model output stored with a check.
#[derive(Clone, PartialEq)]
pub struct Prediction {
    /// Model name from its manifest.
    pub model_name: String,
    /// Model version from its manifest.
    pub model_version: String,
    /// Named outputs (probabilities, scores).
    pub outputs: BTreeMap<String, f64>,
}

impl fmt::Debug for SignalQuality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignalQuality(<redacted>)")
    }
}

impl fmt::Debug for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prediction")
            .field("model_name", &self.model_name)
            .field("model_version", &self.model_version)
            .finish_non_exhaustive()
    }
}

/// How long each step of a check took, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Feature extraction.
    pub features_us: u64,
    /// Model inference.
    pub inference_us: u64,
    /// Whole check from finish to result.
    pub total_us: u64,
}

/// One health check as persisted.
#[derive(Clone, PartialEq)]
pub struct CheckRecord {
    /// Row id (random).
    pub id: RecordId,
    /// Whose check it is.
    pub subject: SubjectId,
    /// Kind of check.
    pub kind: CheckKind,
    /// Start of capture, Unix milliseconds.
    pub started_at_ms: i64,
    /// End of capture, Unix milliseconds.
    pub ended_at_ms: i64,
    /// Session metadata (device model, sensor, app version...).
    pub session: BTreeMap<String, String>,
    /// Feature vector by feature name (feature set v1 names).
    pub features: BTreeMap<String, f64>,
    /// Signal quality.
    pub quality: SignalQuality,
    /// Prediction, absent when no model ran.
    pub prediction: Option<Prediction>,
    /// Step timings.
    pub timings: Timings,
}

impl fmt::Debug for CheckRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("features", &self.features.len())
            .field("has_prediction", &self.prediction.is_some())
            .finish_non_exhaustive()
    }
}

const TAG_FEATURES: u8 = 1;
const TAG_DETAIL: u8 = 2;
const TAG_RAW: u8 = 3;
const TAG_LABEL: u8 = 4;
const TAG_CONSENT: u8 = 5;

impl CheckRecord {
    pub(crate) fn encode_features(&self) -> Vec<u8> {
        let mut w = Writer::with_tag(TAG_FEATURES, self.features.len() * 32);
        w.str_f64_map(self.features.iter());
        w.0
    }

    pub(crate) fn encode_detail(&self) -> Vec<u8> {
        let mut w = Writer::with_tag(TAG_DETAIL, 256);
        // The subject travels sealed too, so a row whose plaintext subject tag was swapped to
        // move it into another person's history is caught on read.
        w.str(self.subject.as_str())
            .i64(self.started_at_ms)
            .i64(self.ended_at_ms)
            .str_str_map(&self.session)
            .f64(self.quality.score)
            .u8(self.quality.usable as u8);
        match &self.prediction {
            Some(p) => {
                w.u8(1)
                    .str(&p.model_name)
                    .str(&p.model_version)
                    .str_f64_map(p.outputs.iter());
            }
            None => {
                w.u8(0);
            }
        }
        w.u64(self.timings.features_us)
            .u64(self.timings.inference_us)
            .u64(self.timings.total_us);
        w.0
    }

    pub(crate) fn decode(
        id: RecordId,
        kind: CheckKind,
        features: &[u8],
        detail: &[u8],
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::with_tag(features, TAG_FEATURES)?;
        let feats = r.str_f64_map()?;
        r.finish()?;
        let mut r = Reader::with_tag(detail, TAG_DETAIL)?;
        let subject = SubjectId(r.string()?);
        let started_at_ms = r.i64()?;
        let ended_at_ms = r.i64()?;
        let session = r.str_str_map()?;
        let quality = SignalQuality {
            score: r.f64()?,
            usable: r.bool()?,
        };
        let prediction = if r.bool()? {
            Some(Prediction {
                model_name: r.string()?,
                model_version: r.string()?,
                outputs: r.str_f64_map()?,
            })
        } else {
            None
        };
        let timings = Timings {
            features_us: r.u64()?,
            inference_us: r.u64()?,
            total_us: r.u64()?,
        };
        r.finish()?;
        Ok(Self {
            id,
            subject,
            kind,
            started_at_ms,
            ended_at_ms,
            session,
            features: feats,
            quality,
            prediction,
            timings,
        })
    }
}

/// A window of raw samples from one channel (for example 60 s of PPG at 100 Hz).
#[derive(Clone, PartialEq)]
pub struct RawWindow {
    /// Channel name (`ppg_green`, `accel_x`, ...).
    pub channel: String,
    /// Time of the first sample, Unix milliseconds.
    pub start_ms: i64,
    /// Sampling rate in Hz.
    pub rate_hz: f64,
    /// Samples.
    pub values: Vec<f32>,
}

impl fmt::Debug for RawWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawWindow")
            .field("samples", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl RawWindow {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_tag(TAG_RAW, 32 + self.channel.len() + self.values.len() * 4);
        w.str(&self.channel)
            .i64(self.start_ms)
            .f64(self.rate_hz)
            .f32s(&self.values);
        w.0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::with_tag(b, TAG_RAW)?;
        let w = Self {
            channel: r.string()?,
            start_ms: r.i64()?,
            rate_hz: r.f64()?,
            values: r.f32s()?,
        };
        r.finish()?;
        Ok(w)
    }
}

/// An outcome label attached to a check (for example a clinician's diagnosis or the user's
/// self-report), used for training.
#[derive(Clone, PartialEq)]
pub struct OutcomeLabel {
    /// Label name (`afib`, `stress_self_report`, ...).
    pub name: String,
    /// Numeric value.
    pub value: f64,
    /// Where the label came from (`self_report`, `clinician`, ...).
    pub source: String,
    /// When it was recorded, Unix milliseconds.
    pub recorded_at_ms: i64,
}

impl fmt::Debug for OutcomeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutcomeLabel(<redacted>)")
    }
}

impl OutcomeLabel {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_tag(TAG_LABEL, 64);
        w.str(&self.name)
            .f64(self.value)
            .str(&self.source)
            .i64(self.recorded_at_ms);
        w.0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::with_tag(b, TAG_LABEL)?;
        let l = Self {
            name: r.string()?,
            value: r.f64()?,
            source: r.string()?,
            recorded_at_ms: r.i64()?,
        };
        r.finish()?;
        Ok(l)
    }
}

/// One consent decision for a purpose. The history of decisions is kept; the latest is the state.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentDecision {
    /// Purpose the decision is about.
    pub purpose: Purpose,
    /// Granted (`true`) or refused/withdrawn (`false`).
    pub granted: bool,
    /// When it was given, Unix milliseconds.
    pub at_ms: i64,
    /// Version of the consent text shown.
    pub policy_version: String,
}

impl ConsentDecision {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_tag(TAG_CONSENT, 32);
        w.u8(self.granted as u8)
            .i64(self.at_ms)
            .str(&self.policy_version);
        w.0
    }

    pub(crate) fn decode(purpose: Purpose, b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::with_tag(b, TAG_CONSENT)?;
        let c = Self {
            purpose,
            granted: r.bool()?,
            at_ms: r.i64()?,
            policy_version: r.string()?,
        };
        r.finish()?;
        Ok(c)
    }
}

/// A record to upload, as handed to [`super::WriteTx::enqueue_outbox`]. The payload is the
/// already anonymized, serialized sync record; the store only seals it.
#[derive(Clone, PartialEq)]
pub struct OutboxDraft {
    /// Purpose the upload serves; sync sends it only under consent for this purpose.
    pub purpose: Purpose,
    /// Check the record derives from, so erasing the check removes the pending upload.
    pub check_id: Option<RecordId>,
    /// Serialized record.
    pub payload: Vec<u8>,
}

impl fmt::Debug for OutboxDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxDraft")
            .field("purpose", &self.purpose)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A pending upload with its bookkeeping.
#[derive(Clone, PartialEq)]
pub struct OutboxRecord {
    /// Row id.
    pub id: RecordId,
    /// Purpose.
    pub purpose: Purpose,
    /// Originating check.
    pub check_id: Option<RecordId>,
    /// Random key the server deduplicates on; stable across retries.
    pub idempotency_key: [u8; 16],
    /// Batch the record is in flight with, if any.
    pub batch_id: Option<RecordId>,
    /// Failed upload attempts so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, Unix milliseconds.
    pub next_attempt_at_ms: i64,
    /// Poison record set aside: never retried automatically.
    pub quarantined: bool,
    /// Serialized record.
    pub payload: Vec<u8>,
}

impl fmt::Debug for OutboxRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRecord")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("attempts", &self.attempts)
            .field("quarantined", &self.quarantined)
            .finish_non_exhaustive()
    }
}

/// What happened to a batch whose upload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchFailure {
    /// Records released for a later retry.
    pub retrying: usize,
    /// Records that reached the attempt limit and were quarantined.
    pub quarantined: usize,
}

/// A cached model bundle: the signed manifest and the artifact, as downloaded. Verification
/// belongs to the `models` module; the store keeps the bytes tamper-evident at rest.
#[derive(Clone, PartialEq)]
pub struct ModelBundle {
    /// Model name.
    pub model: String,
    /// Bundle version.
    pub version: String,
    /// Signed manifest bytes.
    pub manifest: Vec<u8>,
    /// Model artifact bytes (ONNX).
    pub artifact: Vec<u8>,
}

impl fmt::Debug for ModelBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelBundle")
            .field("model", &self.model)
            .field("version", &self.version)
            .field("artifact_len", &self.artifact.len())
            .finish_non_exhaustive()
    }
}

/// Action recorded in the local audit log. The log holds no personal data: actions, table or
/// purpose names and row counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Health data was read (history, raw windows, labels, export).
    Read,
    /// Records were deleted on request.
    Delete,
    /// A subject or purpose was erased and its keys destroyed.
    Erase,
    /// Retention purge of raw windows.
    Purge,
}

impl AuditAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Delete => "delete",
            Self::Erase => "erase",
            Self::Purge => "purge",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "delete" => Self::Delete,
            "erase" => Self::Erase,
            "purge" => Self::Purge,
            _ => return None,
        })
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log.
    pub seq: i64,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What.
    pub action: AuditAction,
    /// Which table or purpose (fixed vocabulary).
    pub scope: String,
    /// How many rows.
    pub rows: u64,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErasureReport {
    /// Data keys destroyed.
    pub keys_destroyed: usize,
    /// Rows deleted across tables.
    pub rows_deleted: usize,
    /// Whether the WAL was checkpointed and truncated right away, so no copy of the erased
    /// pages remains in the `-wal` file. `false` when a reader held an old snapshot; the next
    /// [`super::Store::checkpoint`] completes it.
    pub wal_truncated: bool,
}
