//! Tri-axial accelerometer analysis: ENMO, steps and cadence, dominant frequency,
//! intensity class. Input in units of g.
//!
//! * ENMO: mean of `max(0, |a| - 1 g)`, reported in mg (van Hees et al. 2013).
//! * Steps: `|a|` band-passed 0.5-3 Hz (Butterworth order 2, zero-phase); a step is a local
//!   maximum above [`STEP_THRESHOLD_G`] at least [`STEP_REFRACTORY_S`] after the previous
//!   one. Only steps inside walking bouts count: at least [`MIN_BOUT_STEPS`] steps, each
//!   within [`MAX_STEP_INTERVAL_S`] of the previous, so isolated jolts are not steps.
//! * Cadence: counted steps per minute of bout time (first to last step of each bout plus
//!   one mean step interval).
//! * Dominant frequency: largest Welch-free periodogram peak (Hann window, zero-padded) of
//!   `|a|` minus its mean in 0.5-5 Hz (capped below Nyquist).
//! * Intensity class from ENMO (wrist cut-points of Hildebrand et al. 2014, Med Sci Sports
//!   Exerc 46:1816, and 2017, Scand J Med Sci Sports 27:1814): 0 sedentary < 44.8 mg <=
//!   1 light < 100.6 mg <= 2 moderate < 428.8 mg <= 3 vigorous.
//! * SQI: share of one-second epochs that are neither frozen (all three axes exactly
//!   constant, a stuck sensor) nor clipped (`|a| >= 7.9 g`, the usual +/-8 g range);
//!   acceptable at >= [`ACCEL_SQI_THRESHOLD`].

use serde::Serialize;

use crate::error::{Result, SignalError};
use crate::feature_set::Source;
use crate::features::{FeatureVector, Unavailable};
use crate::filter::Sos;
use crate::series::{check_rate, check_samples};
use crate::spectrum::fft;

/// Lowest accelerometer rate accepted, Hz.
pub const ACCEL_MIN_RATE_HZ: f64 = 10.0;
/// Shortest accelerometer recording accepted, s.
pub const MIN_ACCEL_S: f64 = 4.0;
/// Band-passed `|a|` must exceed this to be a step, g.
pub const STEP_THRESHOLD_G: f64 = 0.05;
/// Minimum time between steps, s (4 steps/s).
pub const STEP_REFRACTORY_S: f64 = 0.25;
/// Steps needed for a walking bout.
pub const MIN_BOUT_STEPS: usize = 4;
/// Longest step interval inside a bout, s.
pub const MAX_STEP_INTERVAL_S: f64 = 2.0;
/// ENMO cut-points, mg: light, moderate, vigorous.
pub const INTENSITY_CUTPOINTS_MG: [f64; 3] = [44.8, 100.6, 428.8];
/// Minimum acceptable accelerometer SQI.
pub const ACCEL_SQI_THRESHOLD: f64 = 0.9;
/// Window length for per-window accelerometer results, s.
pub const ACCEL_WINDOW_S: f64 = 60.0;

/// Result of [`analyze_accel`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccelAnalysis {
    /// Sample rate, Hz.
    pub rate_hz: f64,
    /// Samples analysed.
    pub samples: usize,
    /// Step instants, sample indices into the input.
    pub peaks: Vec<usize>,
    /// SQI of the recording.
    pub sqi: f64,
    /// `sqi >= ACCEL_SQI_THRESHOLD`.
    pub acceptable: bool,
    /// Recording-level features (accelerometer + quality features of set v1).
    pub features: FeatureVector,
    /// Features left `null` and why.
    pub unavailable: Vec<Unavailable>,
    /// Consecutive [`ACCEL_WINDOW_S`] windows (the last may be shorter; a recording shorter
    /// than one window is one window).
    pub windows: Vec<AccelWindow>,
}

/// One accelerometer window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccelWindow {
    /// Start, s.
    pub start_s: f64,
    /// End (exclusive), s.
    pub end_s: f64,
    /// Features of the window.
    pub features: FeatureVector,
}

/// Analyses a tri-axial accelerometer recording (g) at `rate_hz`.
pub fn analyze_accel(x: &[f64], y: &[f64], z: &[f64], rate_hz: f64) -> Result<AccelAnalysis> {
    check_rate(rate_hz)?;
    if x.len() != y.len() || x.len() != z.len() {
        return Err(SignalError::LengthMismatch {
            left: x.len(),
            right: if x.len() != y.len() { y.len() } else { z.len() },
        });
    }
    check_samples(x)?;
    check_samples(y)?;
    check_samples(z)?;
    if rate_hz < ACCEL_MIN_RATE_HZ {
        return Err(SignalError::RateTooLow {
            analysis: "accelerometer analysis",
            min_hz: ACCEL_MIN_RATE_HZ,
            rate_hz,
        });
    }
    let duration = x.len() as f64 / rate_hz;
    if duration < MIN_ACCEL_S {
        return Err(SignalError::TooShort {
            feature: "dominant_freq",
            needed: MIN_ACCEL_S,
            got: duration,
            unit: "s",
        });
    }
    let mag: Vec<f64> = (0..x.len())
        .map(|i| (x[i] * x[i] + y[i] * y[i] + z[i] * z[i]).sqrt())
        .collect();
    let band = Sos::bandpass(2, 0.5, 3.0, rate_hz)?.filtfilt(&mag);
    let candidates = step_candidates(&band, rate_hz);
    let steps = bout_steps(&candidates, rate_hz);
    let sqi = accel_sqi(x, y, z, &mag, rate_hz);
    let (features, unavailable) = accel_features(&mag, &steps, 0, mag.len(), rate_hz, sqi);

    let win = (ACCEL_WINDOW_S * rate_hz).round() as usize;
    let mut windows = Vec::new();
    let mut start = 0;
    while start < mag.len() {
        let end = (start + win).min(mag.len());
        let (xs, ys, zs, ms) = (
            &x[start..end],
            &y[start..end],
            &z[start..end],
            &mag[start..end],
        );
        let wsqi = accel_sqi(xs, ys, zs, ms, rate_hz);
        let (features, _) = accel_features(&mag, &steps, start, end, rate_hz, wsqi);
        windows.push(AccelWindow {
            start_s: start as f64 / rate_hz,
            end_s: end as f64 / rate_hz,
            features,
        });
        start = end;
    }
    Ok(AccelAnalysis {
        rate_hz,
        samples: x.len(),
        peaks: steps,
        sqi,
        acceptable: sqi >= ACCEL_SQI_THRESHOLD,
        features,
        unavailable,
        windows,
    })
}

fn step_candidates(band: &[f64], rate_hz: f64) -> Vec<usize> {
    let refractory = (STEP_REFRACTORY_S * rate_hz).round() as usize;
    let mut out: Vec<usize> = Vec::new();
    for i in 1..band.len().saturating_sub(1) {
        let v = band[i];
        if v > STEP_THRESHOLD_G && v > band[i - 1] && v >= band[i + 1] {
            match out.last_mut() {
                Some(last) if i - *last <= refractory => {
                    if v > band[*last] {
                        *last = i;
                    }
                }
                _ => out.push(i),
            }
        }
    }
    out
}

fn bout_steps(candidates: &[usize], rate_hz: f64) -> Vec<usize> {
    let max_gap = (MAX_STEP_INTERVAL_S * rate_hz).round() as usize;
    let mut out = Vec::with_capacity(candidates.len());
    let mut bout_start = 0;
    for i in 1..=candidates.len() {
        let ends = i == candidates.len() || candidates[i] - candidates[i - 1] > max_gap;
        if ends {
            if i - bout_start >= MIN_BOUT_STEPS {
                out.extend_from_slice(&candidates[bout_start..i]);
            }
            bout_start = i;
        }
    }
    out
}

fn accel_sqi(x: &[f64], y: &[f64], z: &[f64], mag: &[f64], rate_hz: f64) -> f64 {
    let epoch = (rate_hz.round() as usize).max(1);
    let (mut good, mut total) = (0usize, 0usize);
    for start in (0..mag.len()).step_by(epoch) {
        let end = (start + epoch).min(mag.len());
        let frozen = end - start > 1
            && [x, y, z]
                .iter()
                .all(|a| a[start..end].iter().all(|v| *v == a[start]));
        let clipped = mag[start..end].iter().any(|m| *m >= 7.9);
        total += 1;
        good += usize::from(!frozen && !clipped);
    }
    good as f64 / total.max(1) as f64
}

fn accel_features(
    mag: &[f64],
    steps: &[usize],
    start: usize,
    end: usize,
    rate_hz: f64,
    sqi: f64,
) -> (FeatureVector, Vec<Unavailable>) {
    let mut fv = FeatureVector::for_sources(&[Source::Accel, Source::Quality]);
    let mut missing = Vec::new();
    let seg = &mag[start..end];
    let enmo = 1000.0 * seg.iter().map(|m| (m - 1.0).max(0.0)).sum::<f64>() / seg.len() as f64;
    fv.set("enmo_mean", Some(enmo));
    let class = INTENSITY_CUTPOINTS_MG
        .iter()
        .filter(|c| enmo >= **c)
        .count();
    fv.set("intensity_class", Some(class as f64));
    fv.set("sqi", Some(sqi));
    let lo = steps.partition_point(|&s| s < start);
    let hi = steps.partition_point(|&s| s < end);
    let wsteps = &steps[lo..hi];
    fv.set("step_count", Some(wsteps.len() as f64));
    match cadence(wsteps, rate_hz) {
        Some(c) => {
            fv.set("cadence", Some(c));
        }
        None => missing.push(Unavailable::new(
            "cadence",
            &SignalError::Undefined {
                feature: "cadence",
                reason: "no walking bout in the window",
            },
        )),
    }
    match dominant_freq(seg, rate_hz) {
        Ok(f) => {
            fv.set("dominant_freq", Some(f));
        }
        Err(e) => missing.push(Unavailable::new("dominant_freq", &e)),
    }
    (fv, missing)
}

/// Steps per minute of bout time; `None` without at least two steps.
fn cadence(steps: &[usize], rate_hz: f64) -> Option<f64> {
    if steps.len() < 2 {
        return None;
    }
    let max_gap = (MAX_STEP_INTERVAL_S * rate_hz).round() as usize;
    let (mut intervals, mut bout_samples) = (0usize, 0usize);
    for w in steps.windows(2) {
        let d = w[1] - w[0];
        if d <= max_gap {
            intervals += 1;
            bout_samples += d;
        }
    }
    if intervals == 0 {
        return None;
    }
    let bouts = steps.len() - intervals;
    // Each bout spans its intervals plus one mean interval for its first step.
    let mean = bout_samples as f64 / intervals as f64;
    let minutes = (bout_samples as f64 + bouts as f64 * mean) / rate_hz / 60.0;
    Some(steps.len() as f64 / minutes)
}

fn dominant_freq(seg: &[f64], rate_hz: f64) -> Result<f64> {
    let n = seg.len();
    let nfft = n.next_power_of_two().max(1024);
    let mean = seg.iter().sum::<f64>() / n as f64;
    let mut re = vec![0.0; nfft];
    let mut im = vec![0.0; nfft];
    for (i, v) in seg.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
        re[i] = (v - mean) * w;
    }
    fft(&mut re, &mut im);
    let df = rate_hz / nfft as f64;
    let hi = 5.0f64.min(0.49 * rate_hz);
    let (mut best_k, mut best_p) = (None, 0.0);
    for k in 0..=nfft / 2 {
        let f = k as f64 * df;
        if f < 0.5 || f > hi {
            continue;
        }
        let p = re[k] * re[k] + im[k] * im[k];
        if p > best_p {
            best_p = p;
            best_k = Some(k);
        }
    }
    best_k.map(|k| k as f64 * df).ok_or(SignalError::Undefined {
        feature: "dominant_freq",
        reason: "no power in 0.5-5 Hz",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(rate: f64, seconds: f64, step_hz: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = (rate * seconds) as usize;
        let x = (0..n).map(|i| 0.02 * (i as f64 * 0.7).sin()).collect();
        let y = vec![0.0; n];
        let z = (0..n)
            .map(|i| 1.0 + 0.3 * (2.0 * std::f64::consts::PI * step_hz * i as f64 / rate).sin())
            .collect();
        (x, y, z)
    }

    #[test]
    fn walking_at_two_steps_per_second() {
        let (x, y, z) = walk(50.0, 120.0, 2.0);
        let a = analyze_accel(&x, &y, &z, 50.0).expect("valid recording");
        let steps = a.features.get("step_count").expect("set");
        assert!((steps - 240.0).abs() <= 2.0, "steps {steps}");
        let cad = a.features.get("cadence").expect("walking");
        assert!((cad - 120.0).abs() < 2.0, "cadence {cad}");
        let f = a.features.get("dominant_freq").expect("power in band");
        assert!((f - 2.0).abs() < 0.05, "freq {f}");
        // ENMO of 1 + 0.3 sin: mean of max(0, 0.3 sin) = 0.3 / pi g = 95.5 mg -> light.
        let enmo = a.features.get("enmo_mean").expect("set");
        assert!((enmo - 95.5).abs() < 2.0, "enmo {enmo}");
        assert_eq!(a.features.get("intensity_class"), Some(1.0));
        assert_eq!(a.windows.len(), 2);
        assert!(a.acceptable);
    }

    #[test]
    fn still_device_has_no_steps_and_is_sedentary() {
        let n = 1000;
        let x: Vec<f64> = (0..n).map(|i| 0.001 * ((i * 7919) % 13) as f64).collect();
        let a = analyze_accel(&x, &vec![0.0; n], &vec![1.0; n], 50.0).expect("valid");
        assert_eq!(a.features.get("step_count"), Some(0.0));
        assert_eq!(a.features.get("cadence"), None);
        assert_eq!(a.features.get("intensity_class"), Some(0.0));
        assert_eq!(a.windows.len(), 1);
    }

    #[test]
    fn frozen_sensor_has_zero_quality() {
        let n = 500;
        let a = analyze_accel(&vec![0.1; n], &vec![0.2; n], &vec![0.9; n], 50.0).expect("valid");
        assert_eq!(a.sqi, 0.0);
        assert!(!a.acceptable);
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            analyze_accel(&[0.0; 10], &[0.0; 9], &[0.0; 10], 50.0),
            Err(SignalError::LengthMismatch { .. })
        ));
        assert!(matches!(
            analyze_accel(&[0.0; 100], &[0.0; 100], &[0.0; 100], 50.0),
            Err(SignalError::TooShort {
                feature: "dominant_freq",
                ..
            })
        ));
        assert!(matches!(
            analyze_accel(&[0.0; 100], &[0.0; 100], &[0.0; 100], 5.0),
            Err(SignalError::RateTooLow { .. })
        ));
    }
}
