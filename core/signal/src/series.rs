//! Input validation and the uniform grid every analysis runs on.
//!
//! Samples arrive either uniform (values + rate) or with timestamps. Timestamped input is
//! resampled onto a uniform grid by linear interpolation, but only across short holes:
//! an interval longer than [`max_interpolation_gap_s`] is a *gap*, reported in
//! [`Resampled::gaps`], and the recording is split there into separate segments. Nothing is
//! ever bridged silently.

use serde::Serialize;

use crate::error::{Result, SignalError};

/// Lowest accepted sample rate, Hz.
pub const MIN_RATE_HZ: f64 = 1.0;
/// Highest accepted sample rate, Hz.
pub const MAX_RATE_HZ: f64 = 2000.0;
/// Longest hole, in seconds, that resampling interpolates across at high sample rates.
///
/// 100 ms is a third of the shortest physiologic RR interval (300 ms at 200 bpm): a linear
/// ramp across it cannot create or erase a beat. At low rates the limit grows to three
/// nominal sample periods (see [`max_interpolation_gap_s`]), so that a single dropped
/// sample is never called a gap.
pub const MAX_INTERPOLATION_GAP_S: f64 = 0.1;

/// The interpolation limit in seconds for a given grid rate:
/// `max(MAX_INTERPOLATION_GAP_S, 3 / rate_hz)`.
pub fn max_interpolation_gap_s(rate_hz: f64) -> f64 {
    MAX_INTERPOLATION_GAP_S.max(3.0 / rate_hz)
}

/// Checks a sample rate against `1..=2000` Hz.
pub fn check_rate(rate_hz: f64) -> Result<()> {
    if rate_hz.is_finite() && (MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
        Ok(())
    } else {
        Err(SignalError::RateOutOfRange { rate_hz })
    }
}

/// Checks that a slice is non-empty and every value finite.
pub fn check_finite(values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(SignalError::Empty);
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(SignalError::NonFinite { index }),
        None => Ok(()),
    }
}

/// Largest accepted sample magnitude (any unit: mV, ADC counts, g).
pub const MAX_ABS_SAMPLE: f64 = 1e12;

/// Checks samples: non-empty, finite, magnitude at most [`MAX_ABS_SAMPLE`].
pub fn check_samples(values: &[f64]) -> Result<()> {
    check_finite(values)?;
    match values.iter().position(|v| v.abs() > MAX_ABS_SAMPLE) {
        Some(index) => Err(SignalError::ValueOutOfRange { index }),
        None => Ok(()),
    }
}

/// Checks timestamps: finite and strictly increasing.
pub fn check_timestamps(times_s: &[f64]) -> Result<()> {
    check_finite(times_s)?;
    for i in 1..times_s.len() {
        if times_s[i] == times_s[i - 1] {
            return Err(SignalError::DuplicateTimestamp { index: i });
        }
        if times_s[i] < times_s[i - 1] {
            return Err(SignalError::NonMonotonicTimestamps { index: i });
        }
    }
    Ok(())
}

/// A uniformly sampled, validated signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    values: Vec<f64>,
    rate_hz: f64,
    start_s: f64,
}

impl Series {
    /// Validates uniform samples: non-empty, finite, rate in `1..=2000` Hz.
    pub fn new(values: Vec<f64>, rate_hz: f64) -> Result<Self> {
        check_rate(rate_hz)?;
        check_samples(&values)?;
        Ok(Self {
            values,
            rate_hz,
            start_s: 0.0,
        })
    }

    /// Resamples timestamped samples onto a uniform grid at `rate_hz`, splitting at gaps.
    ///
    /// `times_s` must be finite and strictly increasing. Each segment's grid starts at its
    /// first timestamp. Segments shorter than two samples are dropped (and show up as gaps).
    pub fn from_timestamps(times_s: &[f64], values: &[f64], rate_hz: f64) -> Result<Resampled> {
        check_rate(rate_hz)?;
        if times_s.len() != values.len() {
            return Err(SignalError::LengthMismatch {
                left: times_s.len(),
                right: values.len(),
            });
        }
        check_timestamps(times_s)?;
        check_samples(values)?;
        let limit = max_interpolation_gap_s(rate_hz);
        let mut segments = Vec::new();
        let mut gaps = Vec::new();
        let mut seg_start = 0usize;
        for i in 1..=times_s.len() {
            let split = i == times_s.len() || times_s[i] - times_s[i - 1] > limit;
            if !split {
                continue;
            }
            if i < times_s.len() {
                gaps.push(Gap {
                    start_s: times_s[i - 1],
                    end_s: times_s[i],
                    after_index: i - 1,
                });
            }
            let (t, v) = (&times_s[seg_start..i], &values[seg_start..i]);
            if t.len() >= 2 {
                segments.push(Series {
                    values: resample_linear(t, v, rate_hz),
                    rate_hz,
                    start_s: t[0],
                });
            }
            seg_start = i;
        }
        Ok(Resampled { segments, gaps })
    }

    /// The samples.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Sample rate, Hz.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// Time of the first sample, s (0 for uniform input).
    pub fn start_s(&self) -> f64 {
        self.start_s
    }

    /// Duration covered by the samples, s.
    pub fn duration_s(&self) -> f64 {
        self.values.len() as f64 / self.rate_hz
    }

    /// Time of sample `i`, s.
    pub fn time_of(&self, i: usize) -> f64 {
        self.start_s + i as f64 / self.rate_hz
    }
}

/// Timestamped input after resampling: the contiguous segments and the gaps between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resampled {
    /// Uniform segments in time order.
    pub segments: Vec<Series>,
    /// Holes longer than the interpolation limit, where the input was split.
    pub gaps: Vec<Gap>,
}

impl Resampled {
    /// The longest segment, the one a single-window analysis should use.
    pub fn longest(&self) -> Option<&Series> {
        self.segments.iter().max_by_key(|s| s.values.len())
    }
}

/// A hole in timestamped input longer than the interpolation limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gap {
    /// Timestamp of the last sample before the hole, s.
    pub start_s: f64,
    /// Timestamp of the first sample after the hole, s.
    pub end_s: f64,
    /// Input index of the last sample before the hole.
    pub after_index: usize,
}

/// Linear interpolation of `(t, v)` (validated, increasing) onto `t[0] + k / rate`.
fn resample_linear(t: &[f64], v: &[f64], rate_hz: f64) -> Vec<f64> {
    let span = t[t.len() - 1] - t[0];
    // `+ 1e-9` keeps the last sample when the span is an exact multiple of the period.
    let n = (span * rate_hz + 1e-9).floor() as usize + 1;
    let mut out = Vec::with_capacity(n);
    let mut j = 0usize;
    for k in 0..n {
        let tk = t[0] + k as f64 / rate_hz;
        while j + 2 < t.len() && t[j + 1] < tk {
            j += 1;
        }
        let (t0, t1) = (t[j], t[j + 1]);
        let f = ((tk - t0) / (t1 - t0)).clamp(0.0, 1.0);
        out.push(v[j] + f * (v[j + 1] - v[j]));
    }
    out
}

/// Index of the input sample whose timestamp is nearest to `t` (`times_s` increasing,
/// non-empty). Maps peaks found on a resampled grid back to input rows.
pub fn nearest_sample(times_s: &[f64], t: f64) -> usize {
    let i = times_s.partition_point(|&x| x < t);
    if i == 0 {
        0
    } else if i >= times_s.len() {
        times_s.len() - 1
    } else if (times_s[i] - t) < (t - times_s[i - 1]) {
        i
    } else {
        i - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_rates_and_values() {
        assert_eq!(
            Series::new(vec![1.0], 0.5),
            Err(SignalError::RateOutOfRange { rate_hz: 0.5 })
        );
        assert!(matches!(
            Series::new(vec![1.0], 2000.5),
            Err(SignalError::RateOutOfRange { .. })
        ));
        assert_eq!(Series::new(vec![], 100.0), Err(SignalError::Empty));
        assert_eq!(
            Series::new(vec![0.0, f64::NAN], 100.0),
            Err(SignalError::NonFinite { index: 1 })
        );
    }

    #[test]
    fn timestamps_must_increase() {
        let v = [0.0; 3];
        assert_eq!(
            Series::from_timestamps(&[0.0, 0.01, 0.01], &v, 100.0),
            Err(SignalError::DuplicateTimestamp { index: 2 })
        );
        assert_eq!(
            Series::from_timestamps(&[0.0, 0.02, 0.01], &v, 100.0),
            Err(SignalError::NonMonotonicTimestamps { index: 2 })
        );
    }

    #[test]
    fn resamples_a_ramp_exactly_and_splits_at_gaps() {
        // Irregular stamps on a ramp v = 2t: linear resampling must reproduce the ramp.
        let t = [0.0, 0.013, 0.02, 0.031, 0.05, 0.9, 0.91, 0.93];
        let v: Vec<f64> = t.iter().map(|x| 2.0 * x).collect();
        let r = Series::from_timestamps(&t, &v, 100.0).expect("valid input");
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.gaps[0].after_index, 4);
        assert_eq!(r.segments.len(), 2);
        let s0 = &r.segments[0];
        assert_eq!(s0.values().len(), 6);
        for (k, x) in s0.values().iter().enumerate() {
            assert!((x - 2.0 * k as f64 / 100.0).abs() < 1e-12);
        }
        assert!((r.segments[1].start_s() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn nearest_sample_maps_back() {
        let t = [0.0, 0.1, 0.25, 0.4];
        assert_eq!(nearest_sample(&t, -1.0), 0);
        assert_eq!(nearest_sample(&t, 0.2), 2);
        assert_eq!(nearest_sample(&t, 0.16), 1);
        assert_eq!(nearest_sample(&t, 9.0), 3);
    }
}
