//! ECG/PPG analysis: beats, RR/NN, quality and feature set v1 for a recording and for each
//! window of it.
//!
//! Windows are [`WINDOW_S`] long with a [`WINDOW_STEP_S`] step (a recording shorter than
//! one window is a single window); each carries its own quality and the full cardiac
//! feature vector computed from the clean beats inside it. Recording-level features use
//! every clean beat. Quality is beat-level (see [`crate::quality`]): artefacts lower it,
//! an irregular rhythm does not.

use serde::Serialize;

use crate::beats::{BeatDetector, Modality};
use crate::error::{Result, SignalError};
use crate::feature_set::Source;
use crate::features::{FeatureVector, Unavailable};
use crate::hrv::{frequency_domain, sample_entropy, time_domain};
use crate::quality::{assess, Artefact, QualityPolicy, QualityScratch, QualitySummary};
use crate::rr::{rr_from_clean_peaks, ArtifactCounts, RrSeries};
use crate::series::{check_rate, check_samples};

/// Length of an analysis window, s.
pub const WINDOW_S: f64 = 60.0;
/// Step between window starts, s.
pub const WINDOW_STEP_S: f64 = 30.0;
/// Shortest recording a cardiac analysis accepts, s (three beats at 30 bpm plus margin).
pub const MIN_CARDIAC_S: f64 = 10.0;

/// Result of [`analyze_ecg`] / [`analyze_ppg`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardiacAnalysis {
    /// ECG or PPG.
    pub signal: Modality,
    /// Sample rate, Hz.
    pub rate_hz: f64,
    /// Samples analysed.
    pub samples: usize,
    /// Detected beats, sample indices into the input.
    pub peaks: Vec<usize>,
    /// Whether each beat of `peaks` is clean (features use clean beats only).
    pub clean_beats: Vec<bool>,
    /// Raw RR and corrected NN intervals with artifact flags; intervals that are not
    /// clean are dropped from the NN series (flagged [`crate::RrFlag::Unclean`]), never
    /// bridged.
    pub rr: RrSeries,
    /// Artifact counts (also inside `rr`, repeated for readers of the summary).
    pub artifacts: ArtifactCounts,
    /// Quality summary.
    pub quality: Quality,
    /// Recording-level feature vector (cardiac + quality features of set v1).
    pub features: FeatureVector,
    /// Features left `null` and why.
    pub unavailable: Vec<Unavailable>,
    /// Per-window results.
    pub windows: Vec<WindowResult>,
}

/// Quality summary of a recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Signal quality index of the whole recording: its usable fraction, `0..=1`.
    pub sqi: f64,
    /// The policy's least usable fraction.
    pub threshold: f64,
    /// Whether the whole recording meets the policy: predictions are made on it.
    pub acceptable: bool,
    /// Clean signal of the whole recording.
    pub summary: QualitySummary,
    /// The acceptance rule applied.
    pub policy: QualityPolicy,
    /// Artefact stretches found.
    pub artefacts: Vec<Artefact>,
    /// Number of windows.
    pub windows: usize,
    /// Windows that do not meet the policy.
    pub windows_below_threshold: usize,
}

/// One analysis window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowResult {
    /// Start, s from the first sample.
    pub start_s: f64,
    /// End (exclusive), s.
    pub end_s: f64,
    /// SQI of the window: its usable fraction.
    pub sqi: f64,
    /// Whether the window meets the policy.
    pub acceptable: bool,
    /// Clean signal of the window.
    pub summary: QualitySummary,
    /// Features of the window, from its clean beats.
    pub features: FeatureVector,
}

/// Analyses an ECG sampled at `rate_hz` (any amplitude unit).
pub fn analyze_ecg(x: &[f64], rate_hz: f64) -> Result<CardiacAnalysis> {
    CardiacAnalyzer::new(Modality::Ecg, rate_hz)?.analyze(x)
}

/// Analyses a PPG sampled at `rate_hz` (any amplitude unit, systolic peaks upwards).
pub fn analyze_ppg(x: &[f64], rate_hz: f64) -> Result<CardiacAnalysis> {
    CardiacAnalyzer::new(Modality::Ppg, rate_hz)?.analyze(x)
}

/// Reusable analyser: keeps the detector's buffers between calls (streaming windows).
#[derive(Debug, Clone)]
pub struct CardiacAnalyzer {
    detector: BeatDetector,
    rate_hz: f64,
    policy: QualityPolicy,
    scratch: QualityScratch,
}

impl CardiacAnalyzer {
    /// An analyser for one modality and rate.
    pub fn new(modality: Modality, rate_hz: f64) -> Result<Self> {
        check_rate(rate_hz)?;
        Ok(Self {
            detector: BeatDetector::new(modality, rate_hz)?,
            rate_hz,
            policy: QualityPolicy::default(),
            scratch: QualityScratch::default(),
        })
    }

    /// The same analyser deciding acceptability with `policy` (default:
    /// [`QualityPolicy::default`]). Errors if the policy's numbers are out of range.
    pub fn with_policy(mut self, policy: QualityPolicy) -> Result<Self> {
        if !policy.is_valid() {
            return Err(SignalError::InvalidParameter(
                "quality policy: usable fraction must be within 0..=1 and the stretch a finite, non-negative number of seconds",
            ));
        }
        self.policy = policy;
        Ok(self)
    }

    /// The acceptance rule in force.
    pub fn policy(&self) -> QualityPolicy {
        self.policy
    }

    /// Runs the full analysis on one recording.
    pub fn analyze(&mut self, x: &[f64]) -> Result<CardiacAnalysis> {
        check_samples(x)?;
        let fs = self.rate_hz;
        let duration = x.len() as f64 / fs;
        if duration < MIN_CARDIAC_S {
            return Err(SignalError::TooShort {
                feature: "hr_mean",
                needed: MIN_CARDIAC_S,
                got: duration,
                unit: "s",
            });
        }
        let mut peaks = Vec::new();
        self.detector.detect(x, &mut peaks)?;
        let filtered = self.detector.filtered();
        let modality = self.detector.modality();
        let qa = assess(x, filtered, &peaks, fs, modality, &mut self.scratch);
        let policy = self.policy;

        let mut windows = Vec::new();
        let win = (WINDOW_S * fs).round() as usize;
        let step = (WINDOW_STEP_S * fs).round() as usize;
        let mut start = 0usize;
        loop {
            let end = (start + win).min(x.len());
            let lo = peaks.partition_point(|&p| p < start);
            let hi = peaks.partition_point(|&p| p < end);
            let summary = qa.summary(&peaks, lo, hi, start, end);
            // The intervals between the window's beats (none when it holds fewer than two).
            let clean = qa
                .clean_intervals
                .get(lo..hi.saturating_sub(1))
                .unwrap_or(&[]);
            let rr = rr_from_clean_peaks(&peaks[lo..hi], clean, fs);
            let (features, _) = cardiac_features(&summary, &rr);
            windows.push(WindowResult {
                start_s: start as f64 / fs,
                end_s: end as f64 / fs,
                sqi: summary.usable_fraction,
                acceptable: policy.accepts(&summary),
                summary,
                features,
            });
            if start + win >= x.len() {
                break;
            }
            start += step;
            if start + win > x.len() {
                // The last window ends at the recording's end.
                start = x.len().saturating_sub(win);
            }
        }
        let summary = qa.summary(&peaks, 0, peaks.len(), 0, x.len());
        let quality = Quality {
            sqi: summary.usable_fraction,
            threshold: policy.min_usable_fraction,
            acceptable: policy.accepts(&summary),
            summary,
            policy,
            artefacts: qa.artefacts.clone(),
            windows: windows.len(),
            windows_below_threshold: windows.iter().filter(|w| !w.acceptable).count(),
        };
        let rr = rr_from_clean_peaks(&peaks, &qa.clean_intervals, fs);
        let (features, unavailable) = cardiac_features(&summary, &rr);
        Ok(CardiacAnalysis {
            signal: modality,
            rate_hz: fs,
            samples: x.len(),
            artifacts: rr.counts,
            peaks,
            clean_beats: qa.clean_beats,
            rr,
            quality,
            features,
            unavailable,
            windows,
        })
    }
}

/// Feature set v1 (cardiac + quality) from beats and their RR series.
fn cardiac_features(q: &QualitySummary, rr: &RrSeries) -> (FeatureVector, Vec<Unavailable>) {
    let mut fv = FeatureVector::for_sources(&[Source::Cardiac, Source::Quality]);
    let mut missing = Vec::new();
    fv.set("sqi", Some(q.usable_fraction));
    fv.set("beat_count", Some(q.beats as f64));
    fv.set("ectopic_fraction", Some(rr.ectopic_fraction()));
    let nn = &rr.nn_ms;
    match time_domain(nn, &rr.nn_breaks) {
        Ok(t) => {
            for (name, v) in [
                ("hr_mean", t.hr_mean),
                ("hr_min", t.hr_min),
                ("hr_max", t.hr_max),
                ("mean_nn", t.mean_nn),
                ("sdnn", t.sdnn),
                ("rmssd", t.rmssd),
                ("sdsd", t.sdsd),
                ("pnn20", t.pnn20),
                ("pnn50", t.pnn50),
                ("sd1", t.sd1),
                ("sd2", t.sd2),
            ] {
                fv.set(name, Some(v));
            }
        }
        Err(e) => {
            for name in [
                "hr_mean", "hr_min", "hr_max", "mean_nn", "sdnn", "rmssd", "sdsd", "pnn20",
                "pnn50", "sd1", "sd2",
            ] {
                missing.push(Unavailable::new(name, &e));
            }
        }
    }
    match frequency_domain(nn, &rr.nn_end_s) {
        Ok(f) => {
            fv.set("lf_power", Some(f.lf_power));
            fv.set("hf_power", Some(f.hf_power));
            match f.lf_hf_ratio {
                Some(r) => {
                    fv.set("lf_hf_ratio", Some(r));
                }
                None => missing.push(Unavailable::new(
                    "lf_hf_ratio",
                    &SignalError::Undefined {
                        feature: "lf_hf_ratio",
                        reason: "HF power is zero",
                    },
                )),
            }
        }
        Err(e) => {
            for name in ["lf_power", "hf_power", "lf_hf_ratio"] {
                missing.push(Unavailable::new(name, &e));
            }
        }
    }
    match sample_entropy(nn) {
        Ok(v) => {
            fv.set("sample_entropy", Some(v));
        }
        Err(e) => missing.push(Unavailable::new("sample_entropy", &e)),
    }
    (fv, missing)
}
