//! Beat detection: ECG R-peaks and PPG systolic peaks, as sample indices.
//!
//! Both detectors are the published ones NeuroKit2 uses by default, re-implemented so the
//! same recording gives the same beats on a phone as in the reference tool:
//!
//! * ECG: the `neurokit` QRS detector (Makowski et al. 2021, *NeuroKit2: A Python toolbox
//!   for neurophysiological signal processing*, Behav Res Methods 53:1689): the smoothed
//!   absolute gradient is compared with its own slower moving average (weight 1.5); each
//!   supra-threshold run at least 0.4 x the mean run length is a QRS complex and its R-peak
//!   is the most prominent local maximum of the filtered ECG inside it.
//! * PPG: Elgendi et al. 2013, *Systolic peak detection in acceleration photoplethysmograms
//!   measured from emergency responders in tropical conditions*, PLoS ONE 8:e76585: the
//!   clipped, squared band-passed PPG is averaged over a peak window (111 ms) and a beat
//!   window (667 ms); blocks where the first exceeds the second plus 2 % of the mean energy,
//!   and are at least one peak window long, contain one systolic peak each.
//!
//! Refractory logic for both: a peak closer than 300 ms to the previous accepted peak
//! (200 bpm) is discarded.
//!
//! Pre-filtering: ECG is band-passed 0.5-40 Hz (Butterworth order 5 high-pass, order 4
//! low-pass; the low edge drops to `0.45 x rate` below 89 Hz), PPG 0.5-8 Hz (order 3), both
//! zero-phase.

use crate::error::{Result, SignalError};
use crate::filter::{boxcar_smooth_into, most_prominent_peak, Sos};
use crate::series::{check_rate, check_samples};

/// Refractory period between two beats, s.
pub const REFRACTORY_S: f64 = 0.3;
/// Lowest sample rate the ECG detector accepts, Hz.
pub const ECG_MIN_RATE_HZ: f64 = 50.0;
/// Lowest sample rate the PPG detector accepts, Hz.
pub const PPG_MIN_RATE_HZ: f64 = 20.0;

/// Which detector to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Electrocardiogram: R-peaks.
    Ecg,
    /// Photoplethysmogram: systolic peaks.
    Ppg,
}

/// A beat detector for one modality and rate, owning its scratch buffers so repeated
/// calls (streaming windows) do not allocate once warmed up.
#[derive(Debug, Clone)]
pub struct BeatDetector {
    modality: Modality,
    rate_hz: f64,
    filter: Sos,
    filtered: Vec<f64>,
    work: Vec<f64>,
    fast: Vec<f64>,
    slow: Vec<f64>,
}

impl BeatDetector {
    /// Builds a detector; errors if the rate is unsupported for the modality.
    pub fn new(modality: Modality, rate_hz: f64) -> Result<Self> {
        check_rate(rate_hz)?;
        let (min_hz, analysis) = match modality {
            Modality::Ecg => (ECG_MIN_RATE_HZ, "ECG beat detection"),
            Modality::Ppg => (PPG_MIN_RATE_HZ, "PPG beat detection"),
        };
        if rate_hz < min_hz {
            return Err(SignalError::RateTooLow {
                analysis,
                min_hz,
                rate_hz,
            });
        }
        let filter = match modality {
            Modality::Ecg => Sos::highpass(5, 0.5, rate_hz)?.then(Sos::lowpass(
                4,
                (0.45 * rate_hz).min(40.0),
                rate_hz,
            )?)?,
            Modality::Ppg => Sos::bandpass(3, 0.5, 8.0, rate_hz)?,
        };
        Ok(Self {
            modality,
            rate_hz,
            filter,
            filtered: Vec::new(),
            work: Vec::new(),
            fast: Vec::new(),
            slow: Vec::new(),
        })
    }

    /// The modality.
    pub fn modality(&self) -> Modality {
        self.modality
    }

    /// The filtered signal of the last [`detect`](Self::detect) call (what peaks were
    /// located on; quality templates are cut from it).
    pub fn filtered(&self) -> &[f64] {
        &self.filtered
    }

    /// Detects beats in `x`, writing sample indices (increasing) into `peaks`.
    pub fn detect(&mut self, x: &[f64], peaks: &mut Vec<usize>) -> Result<()> {
        check_samples(x)?;
        peaks.clear();
        self.filter.filtfilt_into(x, &mut self.filtered);
        let fs = self.rate_hz;
        let k = |s: f64| ((s * fs).round() as usize).max(1);
        match self.modality {
            Modality::Ecg => {
                gradient_abs_into(&self.filtered, &mut self.work);
                boxcar_smooth_into(&self.work, k(0.1), &mut self.fast);
                boxcar_smooth_into(&self.fast, k(0.75), &mut self.slow);
                for s in self.slow.iter_mut() {
                    *s *= 1.5;
                }
                // Minimum block length: 0.4 x the mean block length.
                blocks_to_peaks(
                    &self.filtered,
                    &self.fast,
                    &self.slow,
                    MinLen::MeanFraction(0.4),
                    k(REFRACTORY_S),
                    peaks,
                );
            }
            Modality::Ppg => {
                self.work.clear();
                self.work.extend(
                    self.filtered
                        .iter()
                        .map(|v| if *v > 0.0 { v * v } else { 0.0 }),
                );
                let offset = 0.02 * self.work.iter().sum::<f64>() / self.work.len() as f64;
                boxcar_smooth_into(&self.work, k(0.111), &mut self.fast);
                boxcar_smooth_into(&self.work, k(0.667), &mut self.slow);
                for s in self.slow.iter_mut() {
                    *s += offset;
                }
                blocks_to_peaks(
                    &self.filtered,
                    &self.fast,
                    &self.slow,
                    MinLen::Samples(k(0.111)),
                    k(REFRACTORY_S),
                    peaks,
                );
            }
        }
        Ok(())
    }
}

enum MinLen {
    MeanFraction(f64),
    Samples(usize),
}

/// Runs where `fast > slow` are candidate blocks; the most prominent maximum of `signal`
/// in each long-enough block is a beat, subject to the refractory period.
fn blocks_to_peaks(
    signal: &[f64],
    fast: &[f64],
    slow: &[f64],
    min_len: MinLen,
    refractory: usize,
    peaks: &mut Vec<usize>,
) {
    let above = |i: usize| fast[i] > slow[i];
    let n = signal.len();
    // Blocks start at the last sample below threshold and end at the last sample above it,
    // as in the reference implementation; a block still open at the end is dropped.
    let blocks = || {
        let mut start: Option<usize> = None;
        (0..n.saturating_sub(1)).filter_map(move |i| {
            let (a, b) = (above(i), above(i + 1));
            if !a && b {
                start = Some(i);
                None
            } else if a && !b {
                start.take().map(|s| (s, i))
            } else {
                None
            }
        })
    };
    let min_len = match min_len {
        MinLen::Samples(s) => s as f64,
        MinLen::MeanFraction(f) => {
            let (count, total) =
                blocks().fold((0usize, 0usize), |(c, t), (s, e)| (c + 1, t + e - s));
            if count == 0 {
                return;
            }
            f * total as f64 / count as f64
        }
    };
    let mut last: Option<usize> = None;
    for (beg, end) in blocks() {
        if ((end - beg) as f64) < min_len {
            continue;
        }
        if let Some(p) = most_prominent_peak(&signal[beg..end]) {
            let peak = beg + p;
            if last.is_none_or(|l| peak - l > refractory) {
                peaks.push(peak);
                last = Some(peak);
            }
        }
    }
}

/// `|np.gradient(x)|`: central differences inside, one-sided at the ends.
fn gradient_abs_into(x: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let n = x.len();
    if n < 2 {
        out.resize(n, 0.0);
        return;
    }
    out.push((x[1] - x[0]).abs());
    out.extend((1..n - 1).map(|i| ((x[i + 1] - x[i - 1]) / 2.0).abs()));
    out.push((x[n - 1] - x[n - 2]).abs());
}

/// Convenience: detect beats in one call (allocates a detector).
pub fn detect_beats(x: &[f64], rate_hz: f64, modality: Modality) -> Result<Vec<usize>> {
    let mut det = BeatDetector::new(modality, rate_hz)?;
    let mut peaks = Vec::new();
    det.detect(x, &mut peaks)?;
    Ok(peaks)
}
