//! Zero-phase Butterworth filtering in second-order sections, detrending and smoothing.
//!
//! A band-pass here is a Butterworth high-pass cascaded with a Butterworth low-pass of the
//! same order, each designed section by section (analog Butterworth poles, bilinear
//! transform with pre-warping). For the wide bands used on ECG and PPG this has the same
//! pass band and roll-off as a band-pass transformed prototype and keeps every section a
//! plain biquad. Filtering is forward-backward (`sosfiltfilt`): odd extension of
//! `3 * (2 * sections + 1)` samples at both ends and steady-state initial conditions, the
//! edge handling of SciPy's `sosfiltfilt`, so the ends of a recording do not ring.

use crate::error::{Result, SignalError};

/// Most sections a cascade may hold (two order-8 filters).
pub const MAX_SECTIONS: usize = 16;

/// One second-order section, `a0` normalised to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    /// Numerator `b0, b1, b2`.
    pub b: [f64; 3],
    /// Denominator `a1, a2` (`a0 = 1`).
    pub a: [f64; 2],
}

impl Biquad {
    /// Transposed direct form II state after a unit step has settled (SciPy `lfilter_zi`).
    fn step_state(&self) -> [f64; 2] {
        let g = self.dc_gain();
        let z2 = self.b[2] - self.a[1] * g;
        let z1 = self.b[1] - self.a[0] * g + z2;
        [z1, z2]
    }

    fn dc_gain(&self) -> f64 {
        (self.b[0] + self.b[1] + self.b[2]) / (1.0 + self.a[0] + self.a[1])
    }

    fn is_first_order(&self) -> bool {
        self.b[2] == 0.0 && self.a[1] == 0.0
    }
}

/// A cascade of second-order sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Sos {
    sections: Vec<Biquad>,
}

/// Kind of Butterworth response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Low,
    High,
}

fn butter(kind: Kind, order: usize, cutoff_hz: f64, rate_hz: f64) -> Result<Vec<Biquad>> {
    if order == 0 || order > 8 {
        return Err(SignalError::InvalidFilter("order must be 1..=8"));
    }
    if !(cutoff_hz.is_finite() && cutoff_hz > 0.0 && cutoff_hz < rate_hz / 2.0) {
        return Err(SignalError::InvalidFilter(
            "cutoff must lie strictly between 0 and the Nyquist frequency",
        ));
    }
    let k = (std::f64::consts::PI * cutoff_hz / rate_hz).tan();
    let mut out = Vec::with_capacity(order.div_ceil(2));
    for i in 0..order / 2 {
        // Angle of the pole pair from the negative real axis.
        let phi = std::f64::consts::PI * (order - 1 - 2 * i) as f64 / (2 * order) as f64;
        let q = 1.0 / (2.0 * phi.cos());
        let norm = 1.0 / (1.0 + k / q + k * k);
        let a = [2.0 * (k * k - 1.0) * norm, (1.0 - k / q + k * k) * norm];
        let b = match kind {
            Kind::Low => {
                let b0 = k * k * norm;
                [b0, 2.0 * b0, b0]
            }
            Kind::High => [norm, -2.0 * norm, norm],
        };
        out.push(Biquad { b, a });
    }
    if order % 2 == 1 {
        let norm = 1.0 / (1.0 + k);
        let a = [(k - 1.0) * norm, 0.0];
        let b = match kind {
            Kind::Low => [k * norm, k * norm, 0.0],
            Kind::High => [norm, -norm, 0.0],
        };
        out.push(Biquad { b, a });
    }
    Ok(out)
}

impl Sos {
    /// Butterworth low-pass of `order` at `cutoff_hz`.
    pub fn lowpass(order: usize, cutoff_hz: f64, rate_hz: f64) -> Result<Self> {
        Ok(Self {
            sections: butter(Kind::Low, order, cutoff_hz, rate_hz)?,
        })
    }

    /// Butterworth high-pass of `order` at `cutoff_hz`.
    pub fn highpass(order: usize, cutoff_hz: f64, rate_hz: f64) -> Result<Self> {
        Ok(Self {
            sections: butter(Kind::High, order, cutoff_hz, rate_hz)?,
        })
    }

    /// Butterworth band-pass: high-pass at `low_hz` cascaded with low-pass at `high_hz`.
    pub fn bandpass(order: usize, low_hz: f64, high_hz: f64, rate_hz: f64) -> Result<Self> {
        if low_hz >= high_hz {
            return Err(SignalError::InvalidFilter("band edges must increase"));
        }
        let mut sections = butter(Kind::High, order, low_hz, rate_hz)?;
        sections.extend(butter(Kind::Low, order, high_hz, rate_hz)?);
        Ok(Self { sections })
    }

    /// This filter followed by `next` (at most [`MAX_SECTIONS`] sections in all).
    pub fn then(mut self, next: Sos) -> Result<Self> {
        if self.sections.len() + next.sections.len() > MAX_SECTIONS {
            return Err(SignalError::InvalidFilter("too many sections"));
        }
        self.sections.extend(next.sections);
        Ok(self)
    }

    /// The sections.
    pub fn sections(&self) -> &[Biquad] {
        &self.sections
    }

    /// Magnitude response at `freq_hz`.
    pub fn gain_at(&self, freq_hz: f64, rate_hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq_hz / rate_hz;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        self.sections.iter().fold(1.0, |acc, s| {
            let nr = s.b[0] + s.b[1] * c1 + s.b[2] * c2;
            let ni = -(s.b[1] * s1 + s.b[2] * s2);
            let dr = 1.0 + s.a[0] * c1 + s.a[1] * c2;
            let di = -(s.a[0] * s1 + s.a[1] * s2);
            acc * ((nr * nr + ni * ni) / (dr * dr + di * di)).sqrt()
        })
    }

    fn pad_len(&self) -> usize {
        let first_order = self.sections.iter().filter(|s| s.is_first_order()).count();
        3 * (2 * self.sections.len() + 1 - first_order)
    }

    /// Zero-phase filtering of `x` into `out` (reused; no other allocation).
    ///
    /// `x` must be non-empty and finite (callers validate). Inputs shorter than the
    /// padding get a proportionally shorter extension.
    pub fn filtfilt_into(&self, x: &[f64], out: &mut Vec<f64>) {
        out.clear();
        let n = x.len();
        if n == 0 {
            return;
        }
        let p = self.pad_len().min(n - 1);
        out.reserve(n + 2 * p);
        let (x0, xn) = (x[0], x[n - 1]);
        out.extend((1..=p).rev().map(|i| 2.0 * x0 - x[i]));
        out.extend_from_slice(x);
        out.extend((1..=p).map(|i| 2.0 * xn - x[n - 1 - i]));

        self.run(out, false);
        self.run(out, true);
        out.copy_within(p..p + n, 0);
        out.truncate(n);
    }

    /// Zero-phase filtering returning a new vector.
    pub fn filtfilt(&self, x: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        self.filtfilt_into(x, &mut out);
        out
    }

    /// Filters `buf` in place (backwards if `reverse`), starting from the steady state for
    /// its first sample in that direction.
    fn run(&self, buf: &mut [f64], reverse: bool) {
        let Some(&first) = (if reverse { buf.last() } else { buf.first() }) else {
            return;
        };
        // All sections advance together, sample by sample: the sections' dependency chains
        // then overlap in the CPU instead of running one after the other.
        let n = self.sections.len().min(MAX_SECTIONS);
        let mut state = [[0.0f64; 2]; MAX_SECTIONS];
        let mut scale = first;
        for (st, s) in state.iter_mut().zip(&self.sections) {
            let zi = s.step_state();
            *st = [zi[0] * scale, zi[1] * scale];
            scale *= s.dc_gain();
        }
        let sections = &self.sections[..n];
        let state = &mut state[..n];
        let step = |v: &mut f64| {
            let mut x = *v;
            for (s, st) in sections.iter().zip(state.iter_mut()) {
                let y = s.b[0] * x + st[0];
                st[0] = s.b[1] * x - s.a[0] * y + st[1];
                st[1] = s.b[2] * x - s.a[1] * y;
                x = y;
            }
            *v = x;
        };
        if reverse {
            buf.iter_mut().rev().for_each(step);
        } else {
            buf.iter_mut().for_each(step);
        }
    }
}

/// Removes the least-squares straight line from `x` in place.
pub fn detrend_linear(x: &mut [f64]) {
    let n = x.len();
    if n < 2 {
        if let Some(v) = x.first_mut() {
            *v = 0.0;
        }
        return;
    }
    let nf = n as f64;
    let tm = (nf - 1.0) / 2.0;
    let xm = x.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        let dt = i as f64 - tm;
        sxy += dt * (v - xm);
        sxx += dt * dt;
    }
    let slope = sxy / sxx;
    for (i, v) in x.iter_mut().enumerate() {
        *v -= xm + slope * (i as f64 - tm);
    }
}

/// Centred moving average of width `size`, ends padded with the edge values (the boxcar
/// smoothing NeuroKit2's detectors are published with). Writes into `out`.
pub fn boxcar_smooth_into(x: &[f64], size: usize, out: &mut Vec<f64>) {
    out.clear();
    let n = x.len();
    if n == 0 {
        return;
    }
    let size = size.max(1);
    let (left, right) = (size / 2, (size - 1) / 2);
    let at = |j: isize| -> f64 { x[j.clamp(0, n as isize - 1) as usize] };
    let mut sum: f64 = (-(left as isize)..=right as isize).map(at).sum();
    out.reserve(n);
    for i in 0..n as isize {
        out.push(sum / size as f64);
        sum += at(i + right as isize + 1) - at(i - left as isize);
    }
}

/// The local maximum of `x` with the largest topographic prominence (SciPy `find_peaks`
/// semantics: strict maxima, plateaus resolved to their middle, edges excluded).
pub fn most_prominent_peak(x: &[f64]) -> Option<usize> {
    let n = x.len();
    let mut best: Option<(usize, f64)> = None;
    let mut i = 1;
    while i + 1 < n {
        if x[i - 1] < x[i] {
            let mut ahead = i + 1;
            while ahead + 1 < n && x[ahead] == x[i] {
                ahead += 1;
            }
            if x[ahead] < x[i] {
                let peak = (i + ahead - 1) / 2;
                let prom = prominence(x, peak);
                if best.is_none_or(|(_, p)| prom > p) {
                    best = Some((peak, prom));
                }
                i = ahead;
                continue;
            }
        }
        i += 1;
    }
    best.map(|(i, _)| i)
}

fn prominence(x: &[f64], peak: usize) -> f64 {
    let h = x[peak];
    let mut left_min = h;
    for &v in x[..peak].iter().rev() {
        if v > h {
            break;
        }
        left_min = left_min.min(v);
    }
    let mut right_min = h;
    for &v in &x[peak + 1..] {
        if v > h {
            break;
        }
        right_min = right_min.min(v);
    }
    h - left_min.max(right_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn butterworth_gain_is_half_power_at_cutoff_and_flat_in_band() {
        for order in 1..=6 {
            let lp = Sos::lowpass(order, 10.0, 200.0).expect("valid design");
            assert!((lp.gain_at(10.0, 200.0) - 0.5f64.sqrt()).abs() < 1e-9);
            assert!((lp.gain_at(0.0, 200.0) - 1.0).abs() < 1e-12);
            let hp = Sos::highpass(order, 0.5, 200.0).expect("valid design");
            assert!((hp.gain_at(0.5, 200.0) - 0.5f64.sqrt()).abs() < 1e-9);
            assert!(hp.gain_at(0.0, 200.0).abs() < 1e-12);
        }
        let bp = Sos::bandpass(3, 0.5, 8.0, 100.0).expect("valid design");
        assert!((bp.gain_at(2.0, 100.0) - 1.0).abs() < 0.01);
        assert!(bp.gain_at(30.0, 100.0) < 0.01);
    }

    #[test]
    fn rejects_impossible_designs() {
        assert!(Sos::lowpass(2, 60.0, 100.0).is_err());
        assert!(Sos::bandpass(2, 5.0, 1.0, 100.0).is_err());
        assert!(Sos::highpass(0, 1.0, 100.0).is_err());
    }

    #[test]
    fn filtfilt_has_zero_phase_and_keeps_in_band_sine() {
        let rate = 100.0;
        let x: Vec<f64> = (0..2000)
            .map(|i| (2.0 * std::f64::consts::PI * 1.5 * i as f64 / rate).sin() + 3.0)
            .collect();
        let y = Sos::bandpass(3, 0.5, 8.0, rate)
            .expect("valid design")
            .filtfilt(&x);
        // Away from the ends the DC offset is gone and the sine is untouched in phase.
        for i in 300..1700 {
            assert!((y[i] - (x[i] - 3.0)).abs() < 0.02, "sample {i}");
        }
    }

    #[test]
    fn detrend_removes_lines_exactly() {
        let mut x: Vec<f64> = (0..50).map(|i| 3.0 - 0.2 * i as f64).collect();
        detrend_linear(&mut x);
        assert!(x.iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn smoothing_matches_hand_computed_window() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mut out = Vec::new();
        boxcar_smooth_into(&x, 3, &mut out);
        assert_eq!(out, vec![4.0 / 3.0, 2.0, 3.0, 4.0, 14.0 / 3.0]);
        boxcar_smooth_into(&x, 2, &mut out);
        // Even width: window [i - 1, i].
        assert_eq!(out, vec![1.0, 1.5, 2.5, 3.5, 4.5]);
    }

    #[test]
    fn prominence_prefers_the_tall_peak_over_the_sharp_one() {
        let x = [0.0, 1.0, 0.9, 5.0, 0.0, 2.0, 2.0, 2.0, 0.0];
        assert_eq!(most_prominent_peak(&x), Some(3));
        assert_eq!(most_prominent_peak(&[1.0, 1.0, 1.0]), None);
        assert_eq!(most_prominent_peak(&[0.0, 2.0, 2.0, 2.0, 0.0]), Some(2));
    }
}
