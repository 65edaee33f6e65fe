//! Records and enums of the engine API as uniffi carries them.
//!
//! They mirror `vitalcore` types field for field, because the core types hold `BTreeMap`,
//! `usize` and `&'static str`, which uniffi cannot carry, and the core crate does not depend
//! on uniffi. Conversions are plain moves. `Debug` shows shape only, never health values, as
//! the core types do.

use std::collections::HashMap;
use std::fmt;

/// Kind of health check (and of background capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum CheckKind {
    /// Pulse rhythm from a PPG channel `ppg` (camera or watch).
    PpgRhythm,
    /// Heart rhythm from an ECG channel `ecg`.
    EcgRhythm,
    /// Activity from channels `accel_x`, `accel_y`, `accel_z`.
    Activity,
}

impl From<CheckKind> for vitalcore::CheckKind {
    fn from(k: CheckKind) -> Self {
        match k {
            CheckKind::PpgRhythm => Self::PpgRhythm,
            CheckKind::EcgRhythm => Self::EcgRhythm,
            CheckKind::Activity => Self::Activity,
        }
    }
}

impl From<vitalcore::CheckKind> for CheckKind {
    fn from(k: vitalcore::CheckKind) -> Self {
        match k {
            vitalcore::CheckKind::PpgRhythm => Self::PpgRhythm,
            vitalcore::CheckKind::EcgRhythm => Self::EcgRhythm,
            vitalcore::CheckKind::Activity => Self::Activity,
        }
    }
}

/// Signal quality of a check and the threshold applied.
#[derive(Clone, Copy, PartialEq, uniffi::Record)]
pub struct QualityReport {
    /// Signal quality index, `0..=1`.
    pub sqi: f64,
    /// Threshold in force.
    pub threshold: f64,
    /// `sqi >= threshold`: good enough to predict on.
    pub acceptable: bool,
}

/// What became of the prediction step.
#[derive(Clone, PartialEq, uniffi::Enum)]
pub enum PredictionOutcome {
    /// The active model ran on the features.
    Predicted {
        /// Model name.
        model_name: String,
        /// Model version.
        model_version: String,
        /// Named outputs (probabilities, scores).
        outputs: HashMap<String, f64>,
    },
    /// Quality below the threshold: features stored, no model run.
    QualityTooLow {
        /// Quality measured.
        sqi: f64,
        /// Threshold it missed.
        threshold: f64,
    },
    /// The model needs features this recording did not yield.
    FeaturesUnavailable {
        /// Names of the missing features.
        missing: Vec<String>,
    },
    /// No model is installed for this kind of check.
    NoModel,
}

/// Step timings of a check, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Timings {
    /// Feature extraction (including quality).
    pub features_us: u64,
    /// Quality gate and model inference.
    pub inference_us: u64,
    /// Encrypted commit (0 when read back from history).
    pub commit_us: u64,
    /// From the call to `finish` to the result.
    pub total_us: u64,
}

/// A check or capture window as stored.
#[derive(Clone, PartialEq, uniffi::Record)]
pub struct StoredCheck {
    /// Record id, 32 hexadecimal digits.
    pub id: String,
    /// Kind of check.
    pub kind: CheckKind,
    /// True for a background-capture window.
    pub is_window: bool,
    /// Time of the first sample, Unix ms.
    pub started_at_ms: i64,
    /// End of the analysed signal, Unix ms.
    pub ended_at_ms: i64,
    /// Signal quality and threshold.
    pub quality: QualityReport,
    /// Feature set version (`v1`).
    pub feature_set: String,
    /// Features that could be computed, by feature set name.
    pub features: HashMap<String, f64>,
    /// Prediction, or why there is none.
    pub prediction: PredictionOutcome,
    /// Step timings.
    pub timings: Timings,
}

/// What `finish` returns: the stored check and the beats (or steps) it found.
#[derive(Clone, PartialEq, uniffi::Record)]
pub struct CheckResult {
    /// The check as stored (what history returns for it later).
    pub check: StoredCheck,
    /// Beat or step positions, as sample indices of the first channel. Not stored.
    pub peaks: Vec<u64>,
}

/// An outcome label for a check (a diagnosis, a self-report).
#[derive(Clone, PartialEq, uniffi::Record)]
pub struct Label {
    /// Label name (`afib`, `stress_self_report`...), 1..=64 characters.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Where it came from (`self_report`, `clinician`...), 1..=64 characters.
    pub source: String,
    /// When it was recorded, Unix ms.
    pub recorded_at_ms: i64,
}

/// Raw samples of one channel kept with a check.
#[derive(Clone, PartialEq, uniffi::Record)]
pub struct RawSamples {
    /// Channel name.
    pub channel: String,
    /// Time of the first sample, Unix ms.
    pub start_ms: i64,
    /// Rate, Hz.
    pub rate_hz: f64,
    /// Samples on the uniform grid the analysis used.
    pub values: Vec<f32>,
}

/// Counters of a background capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct CaptureStats {
    /// Windows analysed and stored.
    pub windows_stored: u64,
    /// Windows whose analysis or storage failed.
    pub windows_failed: u64,
    /// Windows waiting in the queue.
    pub pending: u64,
    /// Samples held in the channel buffers.
    pub buffered_samples: u64,
}

macro_rules! shape_only_debug {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    )*};
}
shape_only_debug!(
    QualityReport,
    PredictionOutcome,
    StoredCheck,
    CheckResult,
    Label,
    RawSamples
);

impl From<vitalcore::QualityReport> for QualityReport {
    fn from(q: vitalcore::QualityReport) -> Self {
        Self {
            sqi: q.sqi,
            threshold: q.threshold,
            acceptable: q.acceptable,
        }
    }
}

impl From<vitalcore::PredictionOutcome> for PredictionOutcome {
    fn from(p: vitalcore::PredictionOutcome) -> Self {
        match p {
            vitalcore::PredictionOutcome::Predicted {
                model_name,
                model_version,
                outputs,
            } => Self::Predicted {
                model_name,
                model_version,
                outputs: outputs.into_iter().collect(),
            },
            vitalcore::PredictionOutcome::QualityTooLow { sqi, threshold } => {
                Self::QualityTooLow { sqi, threshold }
            }
            vitalcore::PredictionOutcome::FeaturesUnavailable { missing } => {
                Self::FeaturesUnavailable { missing }
            }
            vitalcore::PredictionOutcome::NoModel => Self::NoModel,
        }
    }
}

impl From<vitalcore::Timings> for Timings {
    fn from(t: vitalcore::Timings) -> Self {
        Self {
            features_us: t.features_us,
            inference_us: t.inference_us,
            commit_us: t.commit_us,
            total_us: t.total_us,
        }
    }
}

impl From<vitalcore::StoredCheck> for StoredCheck {
    fn from(c: vitalcore::StoredCheck) -> Self {
        Self {
            id: c.id,
            kind: c.kind.into(),
            is_window: c.is_window,
            started_at_ms: c.started_at_ms,
            ended_at_ms: c.ended_at_ms,
            quality: c.quality.into(),
            feature_set: c.feature_set,
            features: c.features.into_iter().collect(),
            prediction: c.prediction.into(),
            timings: c.timings.into(),
        }
    }
}

impl From<vitalcore::CheckResult> for CheckResult {
    fn from(r: vitalcore::CheckResult) -> Self {
        Self {
            check: r.check.into(),
            peaks: r.peaks,
        }
    }
}

impl From<Label> for vitalcore::Label {
    fn from(l: Label) -> Self {
        Self {
            name: l.name,
            value: l.value,
            source: l.source,
            recorded_at_ms: l.recorded_at_ms,
        }
    }
}

impl From<vitalcore::Label> for Label {
    fn from(l: vitalcore::Label) -> Self {
        Self {
            name: l.name,
            value: l.value,
            source: l.source,
            recorded_at_ms: l.recorded_at_ms,
        }
    }
}

impl From<vitalcore::RawSamples> for RawSamples {
    fn from(r: vitalcore::RawSamples) -> Self {
        Self {
            channel: r.channel,
            start_ms: r.start_ms,
            rate_hz: r.rate_hz,
            values: r.values,
        }
    }
}

impl From<vitalcore::CaptureStats> for CaptureStats {
    fn from(s: vitalcore::CaptureStats) -> Self {
        Self {
            windows_stored: s.windows_stored,
            windows_failed: s.windows_failed,
            pending: s.pending,
            buffered_samples: s.buffered_samples,
        }
    }
}
