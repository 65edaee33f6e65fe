//! History: stored checks and capture windows by time range, decrypted on the fly, and the
//! outcome labels apps attach to checks.

use std::collections::BTreeMap;

use crate::engine::Vitalcore;
use crate::error::{EngineError, Result};
use crate::kind::CheckKind;
use crate::prediction::{PredictionOutcome, QualityReport};
use crate::store::{CheckRecord, HistoryQuery, OutboxDraft, OutcomeLabel, RecordId, StoreError};

/// Step timings of a check, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Feature extraction (including quality).
    pub features_us: u64,
    /// Quality gate and model inference.
    pub inference_us: u64,
    /// Encrypted commit (0 when read back from history: it is measured after the write).
    pub commit_us: u64,
    /// From the call to `finish` to the result.
    pub total_us: u64,
}

/// A check or capture window as stored.
#[derive(Clone, PartialEq)]
pub struct StoredCheck {
    /// Record id, 32 hexadecimal digits.
    pub id: String,
    /// Kind of check.
    pub kind: CheckKind,
    /// True for a background-capture window, false for a health check.
    pub is_window: bool,
    /// Time of the first sample, Unix milliseconds.
    pub started_at_ms: i64,
    /// End of the analysed signal, Unix milliseconds.
    pub ended_at_ms: i64,
    /// Signal quality and the threshold applied.
    pub quality: QualityReport,
    /// Feature set version (`v1`).
    pub feature_set: String,
    /// Features that could be computed, by feature set name.
    pub features: BTreeMap<String, f64>,
    /// Prediction, or why there is none.
    pub prediction: PredictionOutcome,
    /// Step timings.
    pub timings: Timings,
}

impl std::fmt::Debug for StoredCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCheck")
            .field("kind", &self.kind)
            .field("is_window", &self.is_window)
            .field("features", &self.features.len())
            .field("prediction", &self.prediction)
            .finish_non_exhaustive()
    }
}

/// An outcome label for a check (a diagnosis, a self-report), used for training.
#[derive(Clone, PartialEq)]
pub struct Label {
    /// Label name (`afib`, `stress_self_report`...): 1..=64 characters.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Where it came from (`self_report`, `clinician`...): 1..=64 characters.
    pub source: String,
    /// When it was recorded, Unix milliseconds.
    pub recorded_at_ms: i64,
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Label(<redacted>)")
    }
}

/// Raw samples of one channel kept with a check (only when raw retention is on).
#[derive(Clone, PartialEq)]
pub struct RawSamples {
    /// Channel name.
    pub channel: String,
    /// Time of the first sample, Unix milliseconds.
    pub start_ms: i64,
    /// Rate, Hz.
    pub rate_hz: f64,
    /// Samples on the uniform grid the analysis used.
    pub values: Vec<f32>,
}

impl std::fmt::Debug for RawSamples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSamples")
            .field("channel", &self.channel)
            .field("samples", &self.values.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse_id(id: &str) -> Result<RecordId> {
    if id.len() != 32 {
        return Err(EngineError::InvalidId);
    }
    let mut b = [0u8; 16];
    for (i, out) in b.iter_mut().enumerate() {
        let hex = id.get(2 * i..2 * i + 2).ok_or(EngineError::InvalidId)?;
        *out = u8::from_str_radix(hex, 16).map_err(|_| EngineError::InvalidId)?;
    }
    Ok(RecordId(b))
}

fn from_record(c: CheckRecord) -> Result<StoredCheck> {
    let (kind, is_window) = CheckKind::from_stored(c.kind.as_str()).ok_or(StoreError::Layout)?;
    let threshold = c
        .session
        .get("sqi_threshold")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let quality = QualityReport {
        sqi: c.quality.score,
        threshold,
        acceptable: c.quality.usable,
    };
    let prediction = match (c.prediction, c.session.get("outcome").map(String::as_str)) {
        (Some(p), _) => PredictionOutcome::Predicted {
            model_name: p.model_name,
            model_version: p.model_version,
            outputs: p.outputs,
        },
        (None, Some("quality_too_low")) => PredictionOutcome::QualityTooLow {
            sqi: quality.sqi,
            threshold,
        },
        (None, Some("features_unavailable")) => PredictionOutcome::FeaturesUnavailable {
            missing: c
                .session
                .get("missing_features")
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        },
        (None, _) => PredictionOutcome::NoModel,
    };
    Ok(StoredCheck {
        id: c.id.to_string(),
        kind,
        is_window,
        started_at_ms: c.started_at_ms,
        ended_at_ms: c.ended_at_ms,
        quality,
        feature_set: c.session.get("feature_set").cloned().unwrap_or_default(),
        features: c.features,
        prediction,
        timings: Timings {
            features_us: c.timings.features_us,
            inference_us: c.timings.inference_us,
            commit_us: 0,
            total_us: c.timings.total_us,
        },
    })
}

fn check_label(l: &Label) -> Result<()> {
    let ok = |s: &str| (1..=64).contains(&s.len());
    if !ok(&l.name) {
        return Err(EngineError::InvalidLabel("name must be 1..=64 bytes"));
    }
    if !ok(&l.source) {
        return Err(EngineError::InvalidLabel("source must be 1..=64 bytes"));
    }
    if !l.value.is_finite() {
        return Err(EngineError::InvalidLabel("value must be finite"));
    }
    Ok(())
}

impl Vitalcore {
    fn query(&self, from_ms: i64, to_ms: i64, names: &[&'static str]) -> Result<Vec<StoredCheck>> {
        let _op = self.inner.begin()?;
        if to_ms <= from_ms {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for name in names {
            let q = HistoryQuery::new(self.inner.subject.clone(), from_ms, to_ms)
                .kind(crate::store::CheckKind::new(*name)?);
            for c in self.inner.store.history(&q)? {
                out.push(from_record(c)?);
            }
        }
        out.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        Ok(out)
    }

    /// Health checks that started in `[from_ms, to_ms)` (Unix ms), oldest first; only `kind`
    /// if given.
    pub fn checks(
        &self,
        from_ms: i64,
        to_ms: i64,
        kind: Option<CheckKind>,
    ) -> Result<Vec<StoredCheck>> {
        let names: Vec<_> = match kind {
            Some(k) => vec![k.name()],
            None => CheckKind::ALL.iter().map(|k| k.name()).collect(),
        };
        self.query(from_ms, to_ms, &names)
    }

    /// Background-capture windows that started in `[from_ms, to_ms)`, oldest first.
    pub fn windows(
        &self,
        from_ms: i64,
        to_ms: i64,
        kind: Option<CheckKind>,
    ) -> Result<Vec<StoredCheck>> {
        let names: Vec<_> = match kind {
            Some(k) => vec![k.window_name()],
            None => CheckKind::ALL.iter().map(|k| k.window_name()).collect(),
        };
        self.query(from_ms, to_ms, &names)
    }

    /// One check or window by id.
    pub fn check(&self, id: &str) -> Result<Option<StoredCheck>> {
        let id = parse_id(id)?;
        let _op = self.inner.begin()?;
        self.inner.store.check(&id)?.map(from_record).transpose()
    }

    /// Raw samples kept with a check (empty unless raw retention was on when it was stored).
    pub fn raw_samples(&self, id: &str) -> Result<Vec<RawSamples>> {
        let id = parse_id(id)?;
        let _op = self.inner.begin()?;
        Ok(self
            .inner
            .store
            .raw_windows(&id)?
            .into_iter()
            .map(|w| RawSamples {
                channel: w.channel,
                start_ms: w.start_ms,
                rate_hz: w.rate_hz,
                values: w.values,
            })
            .collect())
    }

    /// Records an outcome label for a check. When [`crate::SyncOptions::upload_labels`] lists
    /// its name and its value is 1, its upload is queued in the same transaction (sent by
    /// [`Vitalcore::sync_now`] under the check's purpose and consent). Errors:
    /// [`EngineError::NotFound`] if there is no such check, [`EngineError::InvalidLabel`].
    pub fn add_label(&self, check_id: &str, label: Label) -> Result<()> {
        let id = parse_id(check_id)?;
        check_label(&label)?;
        let _op = self.inner.begin()?;
        let l = OutcomeLabel {
            name: label.name,
            value: label.value,
            source: label.source,
            recorded_at_ms: label.recorded_at_ms,
        };
        let upload = self
            .label_upload(&l.name, l.value)
            .map(|payload| OutboxDraft {
                purpose: self.inner.purpose.clone(),
                check_id: Some(id),
                payload,
            });
        // Label and its upload in one transaction: a label is never sent without being kept,
        // nor kept without its upload queued.
        let res = self.inner.store.write(|tx| {
            tx.insert_label(&id, &l)?;
            if let Some(d) = &upload {
                tx.enqueue_outbox(&self.inner.subject, d)?;
            }
            Ok(())
        });
        match res {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => Err(EngineError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// The labels of a check, in the order they were recorded.
    pub fn labels(&self, check_id: &str) -> Result<Vec<Label>> {
        let id = parse_id(check_id)?;
        let _op = self.inner.begin()?;
        Ok(self
            .inner
            .store
            .labels(&id)?
            .into_iter()
            .map(|l| Label {
                name: l.name,
                value: l.value,
                source: l.source,
                recorded_at_ms: l.recorded_at_ms,
            })
            .collect())
    }

    /// Deletes a check (or window) with its labels, raw samples and pending upload. Returns
    /// whether it existed.
    pub fn delete_check(&self, id: &str) -> Result<bool> {
        let id = parse_id(id)?;
        let _op = self.inner.begin()?;
        Ok(self.inner.store.delete_check(&id)?)
    }
}
