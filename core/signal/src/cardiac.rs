//! ECG/PPG analysis: beats, RR/NN, quality and feature set v1 for a recording and for each
//! window of it.
//!
//! Windows are [`WINDOW_S`] long with a [`WINDOW_STEP_S`] step (a recording shorter than
//! one window is a single window); each carries its own SQI and the full cardiac feature
//! vector computed from the beats inside it. Recording-level features use every beat.

use serde::Serialize;

use crate::beats::{BeatDetector, Modality};
use crate::error::{Result, SignalError};
use crate::feature_set::Source;
use crate::features::{FeatureVector, Unavailable};
use crate::hrv::{frequency_domain, sample_entropy, time_domain};
use crate::quality::{template_sqi, SQI_THRESHOLD};
use crate::rr::{rr_from_peaks, ArtifactCounts, RrSeries};
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
    /// Raw RR and corrected NN intervals with artifact flags.
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    /// Mean SQI over windows.
    pub sqi: f64,
    /// Threshold below which a window is not used for prediction.
    pub threshold: f64,
    /// `sqi >= threshold`.
    pub acceptable: bool,
    /// Number of windows.
    pub windows: usize,
    /// Windows with SQI below the threshold.
    pub windows_below_threshold: usize,
}

/// One analysis window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowResult {
    /// Start, s from the first sample.
    pub start_s: f64,
    /// End (exclusive), s.
    pub end_s: f64,
    /// SQI of the window.
    pub sqi: f64,
    /// `sqi >= threshold`.
    pub acceptable: bool,
    /// Features of the window.
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
}

impl CardiacAnalyzer {
    /// An analyser for one modality and rate.
    pub fn new(modality: Modality, rate_hz: f64) -> Result<Self> {
        check_rate(rate_hz)?;
        Ok(Self {
            detector: BeatDetector::new(modality, rate_hz)?,
            rate_hz,
        })
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

        let mut windows = Vec::new();
        let win = (WINDOW_S * fs).round() as usize;
        let step = (WINDOW_STEP_S * fs).round() as usize;
        let mut start = 0usize;
        loop {
            let end = (start + win).min(x.len());
            let lo = peaks.partition_point(|&p| p < start);
            let hi = peaks.partition_point(|&p| p < end);
            let wpeaks = &peaks[lo..hi];
            let sqi = template_sqi(filtered, wpeaks, fs);
            let (features, _) = cardiac_features(wpeaks, sqi, &rr_from_peaks(wpeaks, fs));
            windows.push(WindowResult {
                start_s: start as f64 / fs,
                end_s: end as f64 / fs,
                sqi,
                acceptable: sqi >= SQI_THRESHOLD,
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
        let sqi = windows.iter().map(|w| w.sqi).sum::<f64>() / windows.len() as f64;
        let quality = Quality {
            sqi,
            threshold: SQI_THRESHOLD,
            acceptable: sqi >= SQI_THRESHOLD,
            windows: windows.len(),
            windows_below_threshold: windows.iter().filter(|w| !w.acceptable).count(),
        };
        let rr = rr_from_peaks(&peaks, fs);
        let (features, unavailable) = cardiac_features(&peaks, sqi, &rr);
        Ok(CardiacAnalysis {
            signal: self.detector.modality(),
            rate_hz: fs,
            samples: x.len(),
            artifacts: rr.counts,
            peaks,
            rr,
            quality,
            features,
            unavailable,
            windows,
        })
    }
}

/// Feature set v1 (cardiac + quality) from beats and their RR series.
fn cardiac_features(peaks: &[usize], sqi: f64, rr: &RrSeries) -> (FeatureVector, Vec<Unavailable>) {
    let mut fv = FeatureVector::for_sources(&[Source::Cardiac, Source::Quality]);
    let mut missing = Vec::new();
    fv.set("sqi", Some(sqi));
    fv.set("beat_count", Some(peaks.len() as f64));
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
