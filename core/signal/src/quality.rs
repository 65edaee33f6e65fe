//! Beat-level signal quality: which beats are clean, which stretches are artefacts, and
//! whether enough clean signal remains for an answer.
//!
//! Rhythm is not quality. An irregular rhythm (atrial fibrillation, premature beats with
//! their pauses) is exactly what a rhythm check exists to see, so nothing here looks at how
//! regular the RR intervals are. Quality is decided from the signal's shape:
//!
//! 1. **Artefact segments** (2 s segments of the recording):
//!    * [`ArtefactKind::Flat`]: the band-passed signal's range is under 2 % of the
//!      recording's median segment range, or the raw signal does not move at all;
//!    * [`ArtefactKind::Clipping`]: a run of at least [`CLIP_RUN_S`] of identical samples at
//!      the recording's extreme values (a saturated sensor or ADC; a systolic peak whose
//!      tip is clipped for less than that still times the beat);
//!    * [`ArtefactKind::Noise`]: less than [`MIN_IN_BAND_SHARE`] of the segment's power
//!      (mean removed) lies in the analysis band: interference (mains, muscle noise,
//!      baseline wander and jumps) at least as strong as the signal, the local form of
//!      Zhao & Zhang's pSQI / basSQI (Zhao & Zhang 2018, *SQI quality evaluation mechanism
//!      of single-lead ECG signal based on simple heuristic fusion and fuzzy comprehensive
//!      evaluation*, Front Physiol 9:727);
//!    * [`ArtefactKind::Amplitude`]: the segment's band-passed range is over
//!      [`MAX_AMPLITUDE_RATIO`] times the recording's median (motion, a lead being touched).
//! 2. **Beat quality**: each beat is cut from the band-passed signal around its peak
//!    (ECG: -100..+200 ms, the QRS complex and early ST; PPG: -20 %..+25 % of the
//!    recording's median RR, the upstroke and the systolic peak: an irregular rhythm's next
//!    pulse does not reach into it), centred and normalised.
//!    * PPG: its score is the correlation with the mean of the [`PPG_TEMPLATE_BEATS`] beats on
//!      each side (NeuroKit2's `templatematch`, Orphanidou et al. 2015, with a local template
//!      so a slow change of pulse shape over minutes is not noise), provided its amplitude is
//!      within [`PPG_AMPLITUDE_RANGE`] of the median of those beats. Smooth noise bumps look
//!      alike, so a PPG beat must match the recording's pulse, not merely another bump.
//!    * ECG: its score is the correlation with the second-best matching beat among its
//!      [`NEIGHBOURS`] neighbours on each side whose amplitude is within a factor of 2 of its
//!      own, or, if higher, its correlation with the mean template of its morphology (beats
//!      are grouped greedily, in time order, into at most [`MAX_MORPHOLOGIES`] shapes; a
//!      shape counts once it has 3 beats): premature ventricular beats, in runs or isolated,
//!      match their own kind instead of failing against the sinus template, while noise,
//!      which does not repeat, matches nothing.
//!
//!    A beat is clean when its score is at least the modality's threshold
//!    ([`ECG_BEAT_THRESHOLD`], [`PPG_BEAT_THRESHOLD`]) and no artefact segment overlaps it.
//! 3. **Clean signal**: an RR interval is clean when both its beats are and it lies in
//!    the physiological range (300-2500 ms). The usable fraction of a window is the time
//!    covered by clean intervals over the window's length; the longest clean stretch is
//!    the longest run of consecutive clean intervals. Features are computed on clean
//!    intervals only: NN intervals are never bridged across an unclean one.
//! 4. **Acceptance** ([`QualityPolicy`], configurable per check kind in the SDK): usable
//!    fraction, clean beats and longest clean stretch each at least the policy's minimum.
//!    The window's `sqi` is its usable fraction.

use serde::Serialize;

use crate::beats::Modality;
use crate::rr::{MAX_RR_MS, MIN_RR_MS};

/// Length of an artefact segment, s.
pub const SEGMENT_S: f64 = 2.0;
/// ECG: neighbouring beats on each side a beat is compared with.
pub const NEIGHBOURS: usize = 8;
/// Minimum shape score of a clean ECG beat.
pub const ECG_BEAT_THRESHOLD: f64 = 0.80;
/// Minimum correlation of a clean PPG beat with its local template (the Orphanidou
/// threshold).
pub const PPG_BEAT_THRESHOLD: f64 = 0.86;
/// Shortest run of identical extreme samples that is clipping, s.
pub const CLIP_RUN_S: f64 = 0.2;
/// Most beat shapes (morphologies) told apart in one recording.
pub const MAX_MORPHOLOGIES: usize = 8;
/// PPG: beats on each side that make a beat's local template.
pub const PPG_TEMPLATE_BEATS: usize = 16;
/// PPG: a beat's amplitude over the median of the beats around it, least and most.
pub const PPG_AMPLITUDE_RANGE: (f64, f64) = (0.4, 2.5);
/// Least number of beats of a morphology before its template vouches for a beat.
const MIN_MORPHOLOGY_BEATS: usize = 3;
/// Least share of a segment's power inside the analysis band.
pub const MIN_IN_BAND_SHARE: f64 = 0.5;
/// Largest segment range, as a multiple of the recording's median segment range.
pub const MAX_AMPLITUDE_RATIO: f64 = 5.0;

/// When a check (or window) has enough clean signal to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityPolicy {
    /// Least share of the duration covered by clean RR intervals, `0..=1`.
    pub min_usable_fraction: f64,
    /// Least number of clean beats.
    pub min_clean_beats: usize,
    /// Least length of the longest run of consecutive clean intervals, s.
    pub min_clean_stretch_s: f64,
}

impl Default for QualityPolicy {
    /// 60 % usable, 10 clean beats, an uninterrupted clean stretch of 8 s: on a 30 s check
    /// that leaves at least 18 s of clean beats for the features.
    fn default() -> Self {
        Self {
            min_usable_fraction: 0.6,
            min_clean_beats: 10,
            min_clean_stretch_s: 8.0,
        }
    }
}

impl QualityPolicy {
    /// Whether the policy's numbers are usable (finite, fraction within `0..=1`).
    pub fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.min_usable_fraction)
            && self.min_clean_stretch_s.is_finite()
            && self.min_clean_stretch_s >= 0.0
    }

    /// Whether `q` meets the policy.
    pub fn accepts(&self, q: &QualitySummary) -> bool {
        q.usable_fraction >= self.min_usable_fraction
            && q.clean_beats >= self.min_clean_beats
            && q.longest_clean_s >= self.min_clean_stretch_s
    }
}

/// What made a stretch of signal unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtefactKind {
    /// No signal: the sensor lost contact or the stream froze.
    Flat,
    /// Saturated: samples stuck at the range's end.
    Clipping,
    /// Interference at least as strong as the signal.
    Noise,
    /// Amplitude far beyond the recording's own (motion).
    Amplitude,
}

/// One stretch of artefact, s from the first sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Artefact {
    /// What it is.
    pub kind: ArtefactKind,
    /// Start, s.
    pub start_s: f64,
    /// End (exclusive), s.
    pub end_s: f64,
}

/// Quality of a stretch of recording (a window or the whole check).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualitySummary {
    /// Share of the duration covered by clean RR intervals, `0..=1`.
    pub usable_fraction: f64,
    /// Beats inside the stretch.
    pub beats: usize,
    /// Clean beats inside the stretch.
    pub clean_beats: usize,
    /// Longest run of consecutive clean intervals, s.
    pub longest_clean_s: f64,
    /// Time covered by artefact segments, s.
    pub artefact_s: f64,
}

/// Per-beat and per-segment quality of one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityAssessment {
    /// Shape score of each beat (see the module docs), `-1..=1`; -1 where it could not be
    /// scored (too near the ends, zero amplitude, implausible amplitude for PPG).
    pub beat_scores: Vec<f64>,
    /// Whether each beat is clean.
    pub clean_beats: Vec<bool>,
    /// Whether each RR interval (between beat `i` and `i + 1`) is clean.
    pub clean_intervals: Vec<bool>,
    /// Artefact stretches, in time order, adjacent segments of one kind merged (clipping
    /// runs are exact sample ranges, the others whole segments).
    pub artefacts: Vec<Artefact>,
    rate_hz: f64,
}

/// Scratch buffers for [`assess`], kept by a streaming analyser between calls.
#[derive(Debug, Clone, Default)]
pub struct QualityScratch {
    shapes: Vec<f64>,
    amplitudes: Vec<f64>,
    segment_range: Vec<f64>,
    segment_flags: Vec<Option<ArtefactKind>>,
    clip_runs: Vec<(usize, usize)>,
}

/// Assesses `raw` (the samples as recorded), `filtered` (the detector's band-passed
/// signal, same length) and its beats `peaks` (increasing sample indices).
pub fn assess(
    raw: &[f64],
    filtered: &[f64],
    peaks: &[usize],
    rate_hz: f64,
    modality: Modality,
    scratch: &mut QualityScratch,
) -> QualityAssessment {
    let n = raw.len().min(filtered.len());
    let seg = ((SEGMENT_S * rate_hz).round() as usize).max(1);
    segment_flags(&raw[..n], &filtered[..n], seg, rate_hz, scratch);
    let artefacts = merge_segments(&scratch.segment_flags, &scratch.clip_runs, seg, n, rate_hz);

    let (pre, post, threshold) = beat_window(peaks, rate_hz, modality);
    let width = pre + post + 1;
    let shapes = &mut scratch.shapes;
    shapes.clear();
    shapes.resize(peaks.len() * width, 0.0);
    let amplitudes = &mut scratch.amplitudes;
    amplitudes.clear();
    let mut inside = Vec::with_capacity(peaks.len());
    for (k, &p) in peaks.iter().enumerate() {
        let ok = p >= pre && p + post < n;
        inside.push(ok);
        if !ok {
            amplitudes.push(0.0);
            continue;
        }
        let src = &filtered[p - pre..=p + post];
        let dst = &mut shapes[k * width..(k + 1) * width];
        let mean = src.iter().sum::<f64>() / width as f64;
        let (mut lo, mut hi, mut ss) = (src[0], src[0], 0.0);
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s - mean;
            ss += *d * *d;
            if s < lo {
                lo = s;
            }
            if s > hi {
                hi = s;
            }
        }
        let norm = ss.sqrt();
        if norm > 0.0 {
            dst.iter_mut().for_each(|d| *d /= norm);
        }
        amplitudes.push(hi - lo);
    }

    let (members, templates) = match modality {
        Modality::Ecg => morphologies(shapes, &inside, amplitudes, width, threshold),
        Modality::Ppg => (Vec::new(), Vec::new()),
    };
    // PPG: the local mean template of the beats around (NeuroKit2's templatematch, local).
    let mut local = vec![0.0; width];
    let mut local_amp: Vec<f64> = Vec::with_capacity(2 * PPG_TEMPLATE_BEATS + 1);
    let mut added = 0usize;
    let mut removed = 0usize;
    let mut beat_scores = vec![-1.0; peaks.len()];
    let mut clean_beats = vec![false; peaks.len()];
    for k in 0..peaks.len() {
        if modality == Modality::Ppg {
            let (want_hi, want_lo) = (
                (k + PPG_TEMPLATE_BEATS + 1).min(peaks.len()),
                k.saturating_sub(PPG_TEMPLATE_BEATS),
            );
            while added < want_hi {
                if inside[added] {
                    let b = &shapes[added * width..(added + 1) * width];
                    local.iter_mut().zip(b).for_each(|(t, v)| *t += v);
                }
                added += 1;
            }
            while removed < want_lo {
                if inside[removed] {
                    let b = &shapes[removed * width..(removed + 1) * width];
                    local.iter_mut().zip(b).for_each(|(t, v)| *t -= v);
                }
                removed += 1;
            }
        }
        if !inside[k] || amplitudes[k] <= 0.0 {
            continue;
        }
        let a = &shapes[k * width..(k + 1) * width];
        let (lo, hi) = match modality {
            Modality::Ecg => (
                k.saturating_sub(NEIGHBOURS),
                (k + NEIGHBOURS + 1).min(peaks.len()),
            ),
            Modality::Ppg => (
                k.saturating_sub(PPG_TEMPLATE_BEATS),
                (k + PPG_TEMPLATE_BEATS + 1).min(peaks.len()),
            ),
        };
        let mut second = -1.0f64;
        if modality == Modality::Ppg {
            local_amp.clear();
            local_amp.extend((lo..hi).filter(|&j| inside[j]).map(|j| amplitudes[j]));
            let typical = crate::rr::median_in_place(&mut local_amp);
            let norm = dot(&local, &local).sqrt();
            let ratio = amplitudes[k] / typical;
            if norm > 0.0 && (PPG_AMPLITUDE_RANGE.0..=PPG_AMPLITUDE_RANGE.1).contains(&ratio) {
                second = dot(a, &local) / norm;
            }
        } else {
            let mut best = -1.0f64;
            for j in (lo..hi).filter(|&j| j != k && inside[j]) {
                let ratio = amplitudes[j] / amplitudes[k];
                if !(0.5..=2.0).contains(&ratio) {
                    continue;
                }
                let b = &shapes[j * width..(j + 1) * width];
                let r = dot(a, b);
                if r > best {
                    second = best;
                    best = r;
                } else if r > second {
                    second = r;
                }
            }
            if let Some(m) = members[k] {
                let t = &templates[m];
                if t.count >= MIN_MORPHOLOGY_BEATS {
                    let r = dot(a, &t.shape) / t.norm;
                    second = second.max(r);
                }
            }
        }
        beat_scores[k] = second;
        let p = peaks[k];
        let (b0, b1) = (p - pre, p + post);
        let overlaps = (b0 / seg..=b1 / seg).any(|i| scratch.segment_flags[i].is_some())
            || scratch
                .clip_runs
                .iter()
                .any(|&(c0, c1)| c0 <= b1 && b0 < c1);
        clean_beats[k] = second >= threshold && !overlaps;
    }
    let clean_intervals = peaks
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            let rr_ms = (w[1] - w[0]) as f64 * 1000.0 / rate_hz;
            clean_beats[k] && clean_beats[k + 1] && (MIN_RR_MS..=MAX_RR_MS).contains(&rr_ms)
        })
        .collect();
    QualityAssessment {
        beat_scores,
        clean_beats,
        clean_intervals,
        artefacts,
        rate_hz,
    }
}

impl QualityAssessment {
    /// Quality of the samples `start..end` whose beats are `peaks[lo..hi]` (the beats with
    /// `start <= peak < end`).
    pub fn summary(
        &self,
        peaks: &[usize],
        lo: usize,
        hi: usize,
        start: usize,
        end: usize,
    ) -> QualitySummary {
        let fs = self.rate_hz;
        let span = end.saturating_sub(start) as f64 / fs;
        let (mut usable, mut run, mut longest) = (0.0, 0.0, 0.0f64);
        // Intervals with both ends inside the stretch.
        for k in lo..hi.saturating_sub(1) {
            let d = (peaks[k + 1] - peaks[k]) as f64 / fs;
            if self.clean_intervals[k] {
                usable += d;
                run += d;
                longest = longest.max(run);
            } else {
                run = 0.0;
            }
        }
        let (t0, t1) = (start as f64 / fs, end as f64 / fs);
        let artefact_s = self
            .artefacts
            .iter()
            .map(|a| (a.end_s.min(t1) - a.start_s.max(t0)).max(0.0))
            .sum();
        QualitySummary {
            usable_fraction: if span > 0.0 {
                (usable / span).min(1.0)
            } else {
                0.0
            },
            beats: hi - lo,
            clean_beats: self.clean_beats[lo..hi].iter().filter(|c| **c).count(),
            longest_clean_s: longest,
            artefact_s,
        }
    }
}

/// Dot product with four independent sums, so the adds pipeline instead of waiting on one
/// another (the shapes are 30-110 samples; one chain made the quality step latency-bound).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0; 4];
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// A beat shape: the sum of its members' normalised shapes.
struct Morphology {
    shape: Vec<f64>,
    norm: f64,
    count: usize,
    amplitude: f64,
}

/// Groups beats greedily, in time order, by shape: a beat joins the first morphology whose
/// template it correlates with at `threshold` or more and whose mean amplitude is within a
/// factor of 2 of its own, else starts a new one while there are fewer than
/// [`MAX_MORPHOLOGIES`].
fn morphologies(
    shapes: &[f64],
    inside: &[bool],
    amplitudes: &[f64],
    width: usize,
    threshold: f64,
) -> (Vec<Option<usize>>, Vec<Morphology>) {
    let mut out: Vec<Morphology> = Vec::new();
    let mut members = vec![None; inside.len()];
    for (k, member) in members.iter_mut().enumerate() {
        if !inside[k] || amplitudes[k] <= 0.0 {
            continue;
        }
        let a = &shapes[k * width..(k + 1) * width];
        let found = out.iter().position(|m| {
            let ratio = m.amplitude / m.count as f64 / amplitudes[k];
            (0.5..=2.0).contains(&ratio) && dot(a, &m.shape) / m.norm >= threshold
        });
        let idx = match found {
            Some(i) => i,
            None if out.len() < MAX_MORPHOLOGIES => {
                out.push(Morphology {
                    shape: vec![0.0; width],
                    norm: 1.0,
                    count: 0,
                    amplitude: 0.0,
                });
                out.len() - 1
            }
            None => continue,
        };
        let m = &mut out[idx];
        m.shape.iter_mut().zip(a).for_each(|(t, v)| *t += v);
        m.norm = m
            .shape
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        m.count += 1;
        m.amplitude += amplitudes[k];
        *member = Some(idx);
    }
    (members, out)
}

/// Samples before and after a peak in a beat's shape window, and the clean threshold.
fn beat_window(peaks: &[usize], fs: f64, modality: Modality) -> (usize, usize, f64) {
    let at = |s: f64| ((s * fs).round() as usize).max(1);
    match modality {
        Modality::Ecg => (at(0.1), at(0.2), ECG_BEAT_THRESHOLD),
        Modality::Ppg => {
            let mut rr: Vec<f64> = peaks
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64 / fs)
                .filter(|r| (0.3..=2.5).contains(r))
                .collect();
            let median = if rr.is_empty() {
                0.8
            } else {
                crate::rr::median_in_place(&mut rr)
            };
            let median = median.clamp(0.3, 1.5);
            (at(0.2 * median), at(0.25 * median), PPG_BEAT_THRESHOLD)
        }
    }
}

/// Flags each segment of `seg` samples with the artefact found in it, if any.
fn segment_flags(raw: &[f64], filtered: &[f64], seg: usize, fs: f64, s: &mut QualityScratch) {
    let n = raw.len();
    let count = n.div_ceil(seg);
    s.segment_range.clear();
    s.segment_flags.clear();
    s.segment_flags.resize(count, None);
    s.clip_runs.clear();
    if n == 0 {
        return;
    }
    // Samples are finite (checked at the crate's entry points): plain comparisons, and one
    // pass per segment with four independent sums, keep this step off the critical path.
    let (mut rmin, mut rmax) = (raw[0], raw[0]);
    for &v in raw {
        if v < rmin {
            rmin = v;
        }
        if v > rmax {
            rmax = v;
        }
    }
    let tol = 0.005 * (rmax - rmin);
    let clip_run = ((CLIP_RUN_S * fs).round() as usize).max(3);
    for (i, flag) in s.segment_flags.iter_mut().enumerate() {
        let (a, b) = (i * seg, ((i + 1) * seg).min(n));
        let (x, f) = (&raw[a..b], &filtered[a..b]);
        // Shifted by the segment's first sample so the sums of squares do not cancel.
        let (x0, f0) = (x[0], f[0]);
        let (mut lo, mut hi) = (f0, f0);
        let (mut sx, mut sxx, mut sf, mut sff) = (0.0, 0.0, 0.0, 0.0);
        for (&xv, &fv) in x.iter().zip(f) {
            if fv < lo {
                lo = fv;
            }
            if fv > hi {
                hi = fv;
            }
            let (dx, df) = (xv - x0, fv - f0);
            sx += dx;
            sxx += dx * dx;
            sf += df;
            sff += df * df;
        }
        s.segment_range.push(hi - lo);
        let len = x.len() as f64;
        let total = (sxx - sx * sx / len).max(0.0);
        let in_band = (sff - sf * sf / len).max(0.0);
        if total <= 0.0 {
            *flag = Some(ArtefactKind::Flat);
        } else if in_band < MIN_IN_BAND_SHARE * total {
            *flag = Some(ArtefactKind::Noise);
        }
    }
    clip_runs(raw, rmin, rmax, tol, clip_run, &mut s.clip_runs);
    let mut ranges: Vec<f64> = s.segment_range.clone();
    let median = crate::rr::median_in_place(&mut ranges);
    for (flag, &r) in s.segment_flags.iter_mut().zip(&s.segment_range) {
        if flag.is_some() {
            continue;
        }
        if r < 0.02 * median || r <= 0.0 {
            *flag = Some(ArtefactKind::Flat);
        } else if r > MAX_AMPLITUDE_RATIO * median {
            *flag = Some(ArtefactKind::Amplitude);
        }
    }
}

/// Runs (sample ranges) of at least `run` identical samples within `tol` of the
/// recording's extremes.
fn clip_runs(x: &[f64], rmin: f64, rmax: f64, tol: f64, run: usize, out: &mut Vec<(usize, usize)>) {
    let (top, bottom) = (rmax - tol, rmin + tol);
    let mut i = 0;
    while i < x.len() {
        let v = x[i];
        if v < top && v > bottom {
            i += 1;
            continue;
        }
        let start = i;
        while i < x.len() && x[i] == v {
            i += 1;
        }
        if i - start >= run {
            out.push((start, i));
        }
        i = i.max(start + 1);
    }
}

fn merge_segments(
    flags: &[Option<ArtefactKind>],
    clips: &[(usize, usize)],
    seg: usize,
    n: usize,
    fs: f64,
) -> Vec<Artefact> {
    let mut out: Vec<Artefact> = Vec::new();
    for (i, flag) in flags.iter().enumerate() {
        let Some(kind) = *flag else { continue };
        let (start_s, end_s) = ((i * seg) as f64 / fs, (((i + 1) * seg).min(n)) as f64 / fs);
        match out.last_mut() {
            Some(last) if last.kind == kind && (last.end_s - start_s).abs() < 1e-9 => {
                last.end_s = end_s;
            }
            _ => out.push(Artefact {
                kind,
                start_s,
                end_s,
            }),
        }
    }
    out.extend(clips.iter().map(|&(a, b)| Artefact {
        kind: ArtefactKind::Clipping,
        start_s: a as f64 / fs,
        end_s: b as f64 / fs,
    }));
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    out
}
