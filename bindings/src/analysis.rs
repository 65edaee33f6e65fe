//! One-shot analysis of a recording: the exact on-device feature extraction, from any host.
//!
//! Delegates to `vitalcore_signal::{analyze_ecg, analyze_ppg, analyze_accel}`; this file only
//! turns their results into records uniffi can carry (core types hold `&'static str` and
//! `usize`). Per-window results stay in Rust for now; the whole-recording features, peaks,
//! NN intervals and quality cross.

use std::sync::Arc;

use vitalcore_signal::{AccelAnalysis, CardiacAnalysis, FeatureVector, Unavailable};

use crate::offload::offload;
use crate::VitalcoreError;

/// Which cardiac signal the samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CardiacSignal {
    /// Electrocardiogram (R-peaks are detected).
    Ecg,
    /// Photoplethysmogram (systolic peaks are detected).
    Ppg,
}

/// One feature value; `None` when it could not be computed (see `unavailable`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FeatureValue {
    /// Feature set v1 name.
    pub name: String,
    /// Value in the feature's unit.
    pub value: Option<f64>,
}

/// A feature that could not be computed, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UnavailableFeature {
    /// Feature set v1 name.
    pub name: String,
    /// Why (too short, undefined, ...).
    pub reason: String,
}

/// Result of one analysis over a whole recording.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Analysis {
    /// Sample rate analysed, Hz.
    pub rate_hz: f64,
    /// Number of input samples.
    pub samples: u64,
    /// Sample indices of detected beats (cardiac) or steps (accel).
    pub peaks: Vec<u64>,
    /// Corrected NN intervals in ms (empty for accelerometer analyses).
    pub nn_ms: Vec<f64>,
    /// Signal quality index in [0, 1].
    pub sqi: f64,
    /// Whether the quality is good enough for the features to be trusted.
    pub acceptable: bool,
    /// Number of analysis windows.
    pub windows: u64,
    /// Feature values, in canonical feature set v1 order.
    pub features: Vec<FeatureValue>,
    /// Features that could not be computed, with reasons.
    pub unavailable: Vec<UnavailableFeature>,
}

fn features(v: &FeatureVector) -> Vec<FeatureValue> {
    v.iter()
        .map(|(name, value)| FeatureValue {
            name: name.to_owned(),
            value,
        })
        .collect()
}

fn unavailable(u: &[Unavailable]) -> Vec<UnavailableFeature> {
    u.iter()
        .map(|u| UnavailableFeature {
            name: u.feature.to_owned(),
            reason: u.reason.clone(),
        })
        .collect()
}

fn indices(p: &[usize]) -> Vec<u64> {
    p.iter().map(|&i| i as u64).collect()
}

impl From<CardiacAnalysis> for Analysis {
    fn from(a: CardiacAnalysis) -> Self {
        Self {
            rate_hz: a.rate_hz,
            samples: a.samples as u64,
            peaks: indices(&a.peaks),
            nn_ms: a.rr.nn_ms.clone(),
            sqi: a.quality.sqi,
            acceptable: a.quality.acceptable,
            windows: a.windows.len() as u64,
            features: features(&a.features),
            unavailable: unavailable(&a.unavailable),
        }
    }
}

impl From<AccelAnalysis> for Analysis {
    fn from(a: AccelAnalysis) -> Self {
        Self {
            rate_hz: a.rate_hz,
            samples: a.samples as u64,
            peaks: indices(&a.peaks),
            nn_ms: Vec::new(),
            sqi: a.sqi,
            acceptable: a.acceptable,
            windows: a.windows.len() as u64,
            features: features(&a.features),
            unavailable: unavailable(&a.unavailable),
        }
    }
}

fn cardiac(
    signal: CardiacSignal,
    samples: &[f64],
    rate_hz: f64,
) -> Result<Analysis, VitalcoreError> {
    let a = match signal {
        CardiacSignal::Ecg => vitalcore_signal::analyze_ecg(samples, rate_hz)?,
        CardiacSignal::Ppg => vitalcore_signal::analyze_ppg(samples, rate_hz)?,
    };
    Ok(a.into())
}

/// Beats, NN intervals, features and quality of an ECG or PPG recording sampled at
/// `rate_hz` (at least 10 s). `InvalidInput` on unusable input.
#[uniffi::export]
pub fn analyze_cardiac(
    signal: CardiacSignal,
    samples: Vec<f64>,
    rate_hz: f64,
) -> Result<Analysis, VitalcoreError> {
    cardiac(signal, &samples, rate_hz)
}

/// [`analyze_cardiac`] with the samples packed as little-endian f64 bytes (see
/// `validate_batch_f64le`): the fast path for long recordings from Python and Kotlin.
#[uniffi::export]
pub fn analyze_cardiac_f64le(
    signal: CardiacSignal,
    samples_f64le: Vec<u8>,
    rate_hz: f64,
) -> Result<Analysis, VitalcoreError> {
    cardiac(
        signal,
        &crate::samples::unpack_f64le(&samples_f64le)?,
        rate_hz,
    )
}

/// [`analyze_cardiac`] on a worker thread: `suspend` in Kotlin, `async` in Swift and Python.
#[uniffi::export]
pub async fn analyze_cardiac_async(
    signal: CardiacSignal,
    samples: Vec<f64>,
    rate_hz: f64,
) -> Result<Analysis, VitalcoreError> {
    let samples = Arc::new(samples);
    offload(move || cardiac(signal, &samples, rate_hz)).await?
}

/// Steps, activity features and quality of a tri-axial accelerometer recording (axes in g,
/// equal lengths) sampled at `rate_hz`. `InvalidInput` on unusable input.
#[uniffi::export]
pub fn analyze_accel(
    x: Vec<f64>,
    y: Vec<f64>,
    z: Vec<f64>,
    rate_hz: f64,
) -> Result<Analysis, VitalcoreError> {
    Ok(vitalcore_signal::analyze_accel(&x, &y, &z, rate_hz)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffi_result_carries_exactly_the_core_result() {
        let x: Vec<f64> = (0..3000)
            .map(|i| {
                let ph = (i as f64 / 100.0 * 1.25).fract();
                (-((ph - 0.2) / 0.08).powi(2)).exp()
            })
            .collect();
        let core = vitalcore_signal::analyze_ppg(&x, 100.0).unwrap();
        let ffi = analyze_cardiac(CardiacSignal::Ppg, x, 100.0).unwrap();
        assert_eq!(ffi.peaks, indices(&core.peaks));
        assert_eq!(ffi.nn_ms, core.rr.nn_ms);
        for (f, (name, v)) in ffi.features.iter().zip(core.features.iter()) {
            assert_eq!((f.name.as_str(), f.value), (name, v));
        }
        assert_eq!(ffi.features.len(), core.features.len());
    }

    #[test]
    fn signal_errors_become_invalid_input() {
        let err = analyze_cardiac(CardiacSignal::Ecg, vec![0.0; 10], 0.5).unwrap_err();
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
        let err = analyze_accel(vec![0.0; 3], vec![0.0; 2], vec![0.0; 3], 50.0).unwrap_err();
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
    }
}
