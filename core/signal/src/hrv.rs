//! Heart rate and HRV features from an NN series: time domain, frequency domain, nonlinear.
//!
//! Minimum amounts (a shorter window is a [`SignalError::TooShort`] naming the feature):
//! time domain needs [`MIN_NN_TIME`] NN intervals, the frequency domain
//! [`MIN_SPAN_FREQ_S`] seconds of NN series, sample entropy [`MIN_NN_ENTROPY`] intervals.

use serde::Serialize;

use crate::error::{Result, SignalError};
use crate::spectrum::{band_power, spline_resample, welch};

/// NN intervals needed for time-domain and Poincare features.
pub const MIN_NN_TIME: usize = 3;
/// Seconds of NN series needed for LF/HF: two periods of the 0.04 Hz lower LF edge.
pub const MIN_SPAN_FREQ_S: f64 = 50.0;
/// NN intervals needed for sample entropy.
pub const MIN_NN_ENTROPY: usize = 20;
/// Rate the NN series is resampled to before Welch, Hz.
pub const RESAMPLE_HZ: f64 = 4.0;
/// Welch segment length at [`RESAMPLE_HZ`] (64 s), shortened to the series when shorter.
pub const WELCH_SEGMENT: usize = 256;
/// LF band, Hz (Task Force 1996).
pub const LF_BAND: (f64, f64) = (0.04, 0.15);
/// HF band, Hz (Task Force 1996).
pub const HF_BAND: (f64, f64) = (0.15, 0.40);

/// Time-domain features (feature set v1 names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimeDomain {
    /// bpm
    pub hr_mean: f64,
    /// bpm
    pub hr_min: f64,
    /// bpm
    pub hr_max: f64,
    /// ms
    pub mean_nn: f64,
    /// ms
    pub sdnn: f64,
    /// ms
    pub rmssd: f64,
    /// ms
    pub sdsd: f64,
    /// %
    pub pnn20: f64,
    /// %
    pub pnn50: f64,
    /// ms
    pub sd1: f64,
    /// ms
    pub sd2: f64,
}

/// Time-domain and Poincare features of an NN series (ms); `breaks` are indices where a
/// new run starts after signal loss (no successive difference is taken across them).
pub fn time_domain(nn: &[f64], breaks: &[usize]) -> Result<TimeDomain> {
    if nn.len() < MIN_NN_TIME {
        return Err(SignalError::TooShort {
            feature: "sdnn",
            needed: MIN_NN_TIME as f64,
            got: nn.len() as f64,
            unit: "NN intervals",
        });
    }
    let n = nn.len() as f64;
    let mean = nn.iter().sum::<f64>() / n;
    let sdnn = (nn.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let (mut s, mut s2, mut c20, mut c50, mut nd) = (0.0, 0.0, 0usize, 0usize, 0.0);
    for i in 1..nn.len() {
        if breaks.contains(&i) {
            continue;
        }
        nd += 1.0;
        let d = nn[i] - nn[i - 1];
        s += d;
        s2 += d * d;
        c20 += usize::from(d.abs() > 20.0);
        c50 += usize::from(d.abs() > 50.0);
    }
    if nd < 2.0 {
        return Err(SignalError::TooShort {
            feature: "rmssd",
            needed: 2.0,
            got: nd,
            unit: "successive NN differences",
        });
    }
    let dmean = s / nd;
    let rmssd = (s2 / nd).sqrt();
    let sdsd = ((s2 - nd * dmean * dmean) / (nd - 1.0)).max(0.0).sqrt();
    let (min_nn, max_nn) = nn
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    Ok(TimeDomain {
        hr_mean: 60_000.0 / mean,
        hr_min: 60_000.0 / max_nn,
        hr_max: 60_000.0 / min_nn,
        mean_nn: mean,
        sdnn,
        rmssd,
        sdsd,
        pnn20: 100.0 * c20 as f64 / nd,
        pnn50: 100.0 * c50 as f64 / nd,
        sd1: (0.5f64).sqrt() * sdsd,
        sd2: (2.0 * sdnn * sdnn - 0.5 * sdsd * sdsd).max(0.0).sqrt(),
    })
}

/// Frequency-domain features.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrequencyDomain {
    /// ms²
    pub lf_power: f64,
    /// ms²
    pub hf_power: f64,
    /// 1; `None` when HF power is zero.
    pub lf_hf_ratio: Option<f64>,
}

/// LF and HF power of an NN series (ms) with end times `t_s`: natural cubic spline at
/// 4 Hz, linear detrend, Welch (Hann, 64 s segments, 50 % overlap, zero-padded to 256).
pub fn frequency_domain(nn: &[f64], t_s: &[f64]) -> Result<FrequencyDomain> {
    let span = match (t_s.first(), t_s.last()) {
        (Some(a), Some(b)) if nn.len() == t_s.len() => b - a,
        _ => 0.0,
    };
    if span < MIN_SPAN_FREQ_S || nn.len() < 4 {
        return Err(SignalError::TooShort {
            feature: "lf_power",
            needed: MIN_SPAN_FREQ_S,
            got: span,
            unit: "s of NN series",
        });
    }
    let mut x = spline_resample(t_s, nn, RESAMPLE_HZ);
    crate::filter::detrend_linear(&mut x);
    let nperseg = WELCH_SEGMENT.min(x.len());
    let nfft = nperseg.next_power_of_two().max(WELCH_SEGMENT);
    let (df, psd) = welch(&x, RESAMPLE_HZ, nperseg, nfft);
    let lf = band_power(df, &psd, LF_BAND.0, LF_BAND.1);
    let hf = band_power(df, &psd, HF_BAND.0, HF_BAND.1);
    Ok(FrequencyDomain {
        lf_power: lf,
        hf_power: hf,
        lf_hf_ratio: (hf > 0.0).then(|| lf / hf),
    })
}

/// Sample entropy (Richman & Moorman 2000) of an NN series, m = 2, r = 0.2 x SDNN,
/// Chebyshev distance, matches `<= r`, self-matches excluded, `N - m` templates of both
/// lengths.
pub fn sample_entropy(nn: &[f64]) -> Result<f64> {
    const M: usize = 2;
    let n = nn.len();
    if n < MIN_NN_ENTROPY {
        return Err(SignalError::TooShort {
            feature: "sample_entropy",
            needed: MIN_NN_ENTROPY as f64,
            got: n as f64,
            unit: "NN intervals",
        });
    }
    let mean = nn.iter().sum::<f64>() / n as f64;
    let sd = (nn.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt();
    let r = 0.2 * sd;
    let templates = n - M;
    let (mut b, mut a) = (0u64, 0u64);
    for i in 0..templates {
        for j in i + 1..templates {
            if (0..M).all(|k| (nn[i + k] - nn[j + k]).abs() <= r) {
                b += 1;
                if (nn[i + M] - nn[j + M]).abs() <= r {
                    a += 1;
                }
            }
        }
    }
    if a == 0 || b == 0 {
        return Err(SignalError::Undefined {
            feature: "sample_entropy",
            reason: "no template matches of length m + 1",
        });
    }
    Ok(-(a as f64 / b as f64).ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_domain_by_hand() {
        // Diffs: +100, -100, +50 -> rmssd = sqrt((1e4 + 1e4 + 2500) / 3).
        let nn = [800.0, 900.0, 800.0, 850.0];
        let t = time_domain(&nn, &[]).expect("enough intervals");
        assert!((t.mean_nn - 837.5).abs() < 1e-12);
        assert!((t.rmssd - (22_500.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!((t.hr_max - 75.0).abs() < 1e-12);
        assert!((t.pnn50 - 100.0 * 2.0 / 3.0).abs() < 1e-12);
        assert!((t.pnn20 - 100.0).abs() < 1e-12);
        let var: f64 = [800.0f64, 900.0, 800.0, 850.0]
            .iter()
            .map(|v| (v - 837.5).powi(2))
            .sum::<f64>()
            / 3.0;
        assert!((t.sdnn - var.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn too_short_names_the_feature() {
        assert!(matches!(
            time_domain(&[800.0], &[]),
            Err(SignalError::TooShort {
                feature: "sdnn",
                ..
            })
        ));
        assert!(matches!(
            sample_entropy(&[800.0; 5]),
            Err(SignalError::TooShort {
                feature: "sample_entropy",
                ..
            })
        ));
    }

    #[test]
    fn sample_entropy_of_a_periodic_series_is_zero() {
        let nn: Vec<f64> = (0..60).map(|i| [800.0, 900.0, 850.0][i % 3]).collect();
        assert!(sample_entropy(&nn).expect("defined").abs() < 1e-12);
    }

    #[test]
    fn lf_and_hf_power_of_known_modulation() {
        // NN modulated at 0.1 Hz (amplitude 30 ms) and 0.25 Hz (20 ms): LF = 450, HF = 200.
        let (mut t, mut nn, mut ts) = (0.0, Vec::new(), Vec::new());
        while t < 300.0 {
            let v = 900.0
                + 30.0 * (2.0 * std::f64::consts::PI * 0.1 * t).sin()
                + 20.0 * (2.0 * std::f64::consts::PI * 0.25 * t).sin();
            t += v / 1000.0;
            nn.push(v);
            ts.push(t);
        }
        let f = frequency_domain(&nn, &ts).expect("long enough");
        assert!(
            (f.lf_power - 450.0).abs() / 450.0 < 0.08,
            "lf {}",
            f.lf_power
        );
        assert!(
            (f.hf_power - 200.0).abs() / 200.0 < 0.08,
            "hf {}",
            f.hf_power
        );
    }
}
