//! The kinds of health check and capture: which channels each needs, at which rates, for how
//! long, and the one analysis that turns their samples into feature set v1.

use std::collections::BTreeMap;

use crate::batch::Limits;
use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::prediction::QualityReport;
use crate::signal::accel::{ACCEL_MIN_RATE_HZ, MIN_ACCEL_S};
use crate::signal::beats::{ECG_MIN_RATE_HZ, PPG_MIN_RATE_HZ};
use crate::signal::cardiac::MIN_CARDIAC_S;
use crate::signal::series::MAX_RATE_HZ;
use crate::signal::{analyze_accel, CardiacAnalyzer, FeatureVector, Modality};

/// What a health check (or a background capture) measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// Heart rhythm from a PPG (fingertip camera, watch): channel `ppg`.
    PpgRhythm,
    /// Heart rhythm from a single-lead ECG: channel `ecg`.
    EcgRhythm,
    /// Activity from a 3-axis accelerometer in g: channels `accel_x`, `accel_y`, `accel_z`.
    Activity,
}

/// What a kind requires of its input; the same for checks and captures.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSpec {
    /// Channels the kind needs, all of them, at one common rate.
    pub channels: Vec<String>,
    /// Lowest accepted rate, Hz.
    pub min_rate_hz: f64,
    /// Highest accepted rate, Hz.
    pub max_rate_hz: f64,
    /// Shortest recording the analysis accepts, seconds.
    pub min_duration_s: f64,
    /// Longest recording a check holds, seconds (bounds a session's memory).
    pub max_duration_s: f64,
}

/// Longest health check: 10 minutes.
pub const MAX_CHECK_S: f64 = 600.0;

impl CheckKind {
    /// Every kind.
    pub const ALL: [CheckKind; 3] = [Self::PpgRhythm, Self::EcgRhythm, Self::Activity];

    /// Stable name, stored in plaintext with each check (`ppg`, `ecg`, `accel`).
    pub fn name(self) -> &'static str {
        match self {
            Self::PpgRhythm => "ppg",
            Self::EcgRhythm => "ecg",
            Self::Activity => "accel",
        }
    }

    /// Name under which capture windows of this kind are stored.
    pub fn window_name(self) -> &'static str {
        match self {
            Self::PpgRhythm => "ppg_window",
            Self::EcgRhythm => "ecg_window",
            Self::Activity => "accel_window",
        }
    }

    /// The kind with this stored name (check or window), and whether it is a window.
    pub fn from_stored(name: &str) -> Option<(Self, bool)> {
        Self::ALL.into_iter().find_map(|k| {
            if k.name() == name {
                Some((k, false))
            } else if k.window_name() == name {
                Some((k, true))
            } else {
                None
            }
        })
    }

    /// Channel names, in the order [`KindSpec::channels`] lists them.
    pub fn channel_names(self) -> &'static [&'static str] {
        match self {
            Self::PpgRhythm => &["ppg"],
            Self::EcgRhythm => &["ecg"],
            Self::Activity => &["accel_x", "accel_y", "accel_z"],
        }
    }

    /// Channels, rates and durations this kind needs; the rate floors are those of the signal
    /// crate's detectors.
    pub fn spec(self) -> KindSpec {
        let (min_rate_hz, min_duration_s) = match self {
            Self::PpgRhythm => (PPG_MIN_RATE_HZ, MIN_CARDIAC_S),
            Self::EcgRhythm => (ECG_MIN_RATE_HZ, MIN_CARDIAC_S),
            Self::Activity => (ACCEL_MIN_RATE_HZ, MIN_ACCEL_S),
        };
        KindSpec {
            channels: self.channel_names().iter().map(|c| c.to_string()).collect(),
            min_rate_hz,
            max_rate_hz: MAX_RATE_HZ,
            min_duration_s,
            max_duration_s: MAX_CHECK_S,
        }
    }

    pub(crate) fn limits(self, max_s: f64) -> Limits {
        let s = self.spec();
        Limits {
            min_hz: s.min_rate_hz,
            max_hz: s.max_rate_hz,
            max_s,
        }
    }

    /// Index of `channel` among the kind's channels.
    pub(crate) fn channel_index(self, channel: &str) -> Option<usize> {
        self.channel_names().iter().position(|c| *c == channel)
    }

    pub(crate) fn channel(self, i: usize) -> &'static str {
        self.channel_names()[i]
    }
}

/// What the analysis of one recording or window produced.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    /// Feature set v1 values that could be computed.
    pub features: BTreeMap<String, f64>,
    /// Signal quality index, `0..=1`.
    pub sqi: f64,
    /// Whether the quality meets the configured rule of the kind.
    pub acceptable: bool,
    /// Beat (or step) sample indices.
    pub peaks: Vec<u64>,
}

/// Reusable analysis state (the cardiac detector keeps its buffers between windows).
#[derive(Debug)]
pub(crate) enum Analyzer {
    Cardiac(Box<CardiacAnalyzer>),
    /// Rate, Hz, and the least acceptable SQI.
    Accel(f64, f64),
}

impl Analyzer {
    pub fn new(kind: CheckKind, rate_hz: f64, config: &Config) -> Result<Self> {
        let cardiac = |m| -> Result<Self> {
            let policy = config.get_cardiac_quality_policy();
            let analyzer = CardiacAnalyzer::new(m, rate_hz)?.with_policy(policy)?;
            Ok(Self::Cardiac(Box::new(analyzer)))
        };
        match kind {
            CheckKind::PpgRhythm => cardiac(Modality::Ppg),
            CheckKind::EcgRhythm => cardiac(Modality::Ecg),
            CheckKind::Activity => Ok(Self::Accel(rate_hz, config.get_accel_sqi_threshold())),
        }
    }

    /// The quality gate's verdict on `a`, for the prediction and the stored check.
    pub fn report(&self, a: &Analysis) -> QualityReport {
        let threshold = match self {
            Self::Cardiac(c) => c.policy().min_usable_fraction,
            Self::Accel(_, t) => *t,
        };
        QualityReport {
            sqi: a.sqi,
            threshold,
            acceptable: a.acceptable,
        }
    }

    /// Analyses one recording: one slice per channel of the kind, equal lengths.
    pub fn analyze(&mut self, channels: &[Vec<f64>]) -> Result<Analysis> {
        match self {
            Self::Cardiac(a) => {
                let x = channels
                    .first()
                    .ok_or(EngineError::InvalidConfig("a cardiac kind has one channel"))?;
                let r = a.analyze(x)?;
                Ok(Analysis {
                    features: to_map(&r.features),
                    sqi: r.quality.sqi,
                    acceptable: r.quality.acceptable,
                    peaks: r.peaks.iter().map(|&p| p as u64).collect(),
                })
            }
            Self::Accel(rate, threshold) => {
                let [x, y, z] = channels else {
                    return Err(EngineError::InvalidConfig("activity has three channels"));
                };
                let r = analyze_accel(x, y, z, *rate)?;
                Ok(Analysis {
                    features: to_map(&r.features),
                    sqi: r.sqi,
                    acceptable: r.sqi >= *threshold,
                    peaks: r.peaks.iter().map(|&p| p as u64).collect(),
                })
            }
        }
    }
}

/// The computed features of a v1 vector (absent ones are left out, never NaN).
pub(crate) fn to_map(v: &FeatureVector) -> BTreeMap<String, f64> {
    v.iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}
