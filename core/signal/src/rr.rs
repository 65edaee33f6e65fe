//! RR intervals to NN intervals: artifact and ectopic beats flagged, corrected, counted.
//!
//! Rule (threshold-based correction of Kubios HRV, Tarvainen et al. 2014, *Kubios HRV -
//! Heart rate variability analysis software*, Comput Methods Programs Biomed 113:210-220,
//! with the beat classes of Lipponen & Tarvainen 2019, *A robust algorithm for heart rate
//! variability time series artefact correction using novel beat classification*,
//! J Med Eng Technol 43:173-181):
//!
//! 1. Each RR interval is compared with the median of its [`LOCAL_NEIGHBOURS`] neighbours on
//!    each side (itself excluded). It is normal when it differs by at most
//!    [`THRESHOLD_FRACTION`] of that local median (Kubios' "medium" threshold, 0.25 s at
//!    60 bpm, scaled with the local RR) and lies in [`MIN_RR_MS`]..=[`MAX_RR_MS`].
//! 2. An interval longer than [`MAX_RR_MS`] is signal loss: dropped (flagged artifact) and
//!    the NN series breaks there; beats are never invented across it.
//! 3. Any other abnormal interval is classified, first match wins:
//!    * **missed** beat: close (same threshold) to 2 or 3 local medians: split into 2 or 3
//!      equal intervals (the undetected beats are put back);
//!    * **extra** beat: short, and summed with the next interval close to the local
//!      median: the two are merged (the spurious beat is removed);
//!    * **ectopic** beat: a short interval next to a long one whose sum is within twice the
//!      threshold of two local medians (a premature beat and its compensatory pause, the short one possibly
//!      still inside the threshold): both replaced by half their sum, moving the beat to
//!      the midpoint and keeping the pair's duration;
//!    * otherwise an **artifact**: a long interval of at least two local medians (signal
//!      loss) is split into `round(rr / median)` equal intervals, keeping its duration; any
//!      other is replaced by the local median.
//!
//!    ("At least two local medians" means `rr >= 1.75 x median`.)
//! 4. NN intervals are the corrected series; counts of each class are reported and
//!    `ectopic_fraction` is the share of RR intervals that were not normal.

use serde::Serialize;

/// Neighbours on each side used for the local median.
pub const LOCAL_NEIGHBOURS: usize = 5;
/// Maximum relative deviation from the local median for a normal interval.
pub const THRESHOLD_FRACTION: f64 = 0.25;
/// Shortest physiologic RR interval, ms (200 bpm; the detectors' refractory period).
pub const MIN_RR_MS: f64 = 300.0;
/// Longest physiologic RR interval, ms (24 bpm).
pub const MAX_RR_MS: f64 = 2500.0;

/// Class of an RR interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RrFlag {
    /// Within threshold of the local median.
    Normal,
    /// Covers undetected beats; split.
    Missed,
    /// Ends on (or starts from) a spurious beat; merged with the next.
    Extra,
    /// Premature beat or its compensatory pause; replaced.
    Ectopic,
    /// Any other abnormal interval; replaced.
    Artifact,
    /// Not clean signal (the quality gate): dropped, the NN series breaks. Not counted as
    /// an abnormal rhythm.
    Unclean,
}

/// How many RR intervals fell in each abnormal class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ArtifactCounts {
    /// Intervals split because beats were missed.
    pub missed: usize,
    /// Intervals merged because of an extra beat.
    pub extra: usize,
    /// Intervals replaced as ectopic.
    pub ectopic: usize,
    /// Intervals replaced as artifacts.
    pub artifact: usize,
    /// Intervals dropped because their signal was not clean (not in [`Self::total`]).
    pub unclean: usize,
}

impl ArtifactCounts {
    /// All abnormal intervals.
    pub fn total(&self) -> usize {
        self.missed + self.extra + self.ectopic + self.artifact
    }
}

/// RR intervals of a beat sequence and their corrected NN series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RrSeries {
    /// Raw intervals between consecutive beats, ms.
    pub rr_ms: Vec<f64>,
    /// One flag per raw interval.
    pub flags: Vec<RrFlag>,
    /// Corrected NN intervals, ms.
    pub nn_ms: Vec<f64>,
    /// End time of each NN interval, s from sample 0.
    pub nn_end_s: Vec<f64>,
    /// Indices into `nn_ms` where a new run starts after signal loss (an interval longer
    /// than [`MAX_RR_MS`], dropped): successive differences are not taken across them.
    pub nn_breaks: Vec<usize>,
    /// Counts per class.
    pub counts: ArtifactCounts,
}

impl RrSeries {
    /// Share of the clean raw intervals that were not normal (0 when there are none).
    pub fn ectopic_fraction(&self) -> f64 {
        let clean = self.rr_ms.len() - self.counts.unclean;
        if clean == 0 {
            0.0
        } else {
            self.counts.total() as f64 / clean as f64
        }
    }
}

/// Builds RR and NN series from beat sample indices (increasing) at `rate_hz`.
pub fn rr_from_peaks(peaks: &[usize], rate_hz: f64) -> RrSeries {
    let rr: Vec<f64> = peaks
        .windows(2)
        .map(|w| (w[1] as f64 - w[0] as f64) * 1000.0 / rate_hz)
        .collect();
    let start_s = peaks.first().map_or(0.0, |p| *p as f64 / rate_hz);
    correct(rr, start_s)
}

/// Like [`rr_from_peaks`], with the intervals whose `usable` entry is false (one per
/// interval, from the quality assessment) treated as signal loss: dropped, flagged
/// artifact, and the NN series breaks there, so no NN interval bridges an artefact.
pub fn rr_from_clean_peaks(peaks: &[usize], usable: &[bool], rate_hz: f64) -> RrSeries {
    let rr: Vec<f64> = peaks
        .windows(2)
        .map(|w| (w[1] as f64 - w[0] as f64) * 1000.0 / rate_hz)
        .collect();
    let start_s = peaks.first().map_or(0.0, |p| *p as f64 / rate_hz);
    correct_masked(rr, Some(usable), start_s)
}

/// Flags and corrects a raw RR series (ms); `start_s` is the time of the first beat.
pub fn correct(rr_ms: Vec<f64>, start_s: f64) -> RrSeries {
    correct_masked(rr_ms, None, start_s)
}

fn correct_masked(rr_ms: Vec<f64>, usable: Option<&[bool]>, start_s: f64) -> RrSeries {
    let n = rr_ms.len();
    let mut flags = vec![RrFlag::Normal; n];
    let mut out = NnBuilder {
        nn: Vec::with_capacity(n + 4),
        end_s: Vec::with_capacity(n + 4),
        breaks: Vec::new(),
        t_s: start_s,
    };
    let mut counts = ArtifactCounts::default();
    let mut scratch = Vec::with_capacity(2 * LOCAL_NEIGHBOURS);
    let mut i = 0;
    while i < n {
        let rr = rr_ms[i];
        if usable.is_some_and(|u| !u.get(i).copied().unwrap_or(false)) {
            flags[i] = RrFlag::Unclean;
            counts.unclean += 1;
            out.gap(rr);
            i += 1;
            continue;
        }
        if rr > MAX_RR_MS {
            // Longer than any physiologic interval: signal loss, not beats. Dropped, and
            // the NN series breaks here instead of inventing beats across the hole.
            flags[i] = RrFlag::Artifact;
            counts.artifact += 1;
            out.gap(rr);
            i += 1;
            continue;
        }
        let local = local_median(&rr_ms, i, &mut scratch);
        let thr = THRESHOLD_FRACTION * local;
        if rr >= MIN_RR_MS && (rr - local).abs() <= thr {
            out.emit(&[rr], rr);
            i += 1;
            continue;
        }
        let k = (rr / local).round();
        let next_usable = usable.is_none_or(|u| u.get(i + 1).copied().unwrap_or(false));
        let next = rr_ms
            .get(i + 1)
            .copied()
            .filter(|nx| *nx <= MAX_RR_MS && next_usable);
        let prev_normal = i > 0 && flags[i - 1] == RrFlag::Normal && !out.nn.is_empty();
        if (2.0..=3.0).contains(&k) && (rr - k * local).abs() <= thr {
            flags[i] = RrFlag::Missed;
            counts.missed += 1;
            out.split(rr, k as usize);
        } else if let Some(nx) = next.filter(|nx| rr < local && (rr + nx - local).abs() <= thr) {
            flags[i] = RrFlag::Extra;
            flags[i + 1] = RrFlag::Extra;
            counts.extra += 2;
            out.emit(&[rr + nx], rr + nx);
            i += 1;
        } else if let Some(nx) = next.filter(|nx| {
            rr < local - thr && *nx > local && (rr + nx - 2.0 * local).abs() <= 2.0 * thr
        }) {
            // Premature beat then compensatory pause: the beat moves to the pair's midpoint,
            // which keeps the pair's duration (and so mean HR) unchanged.
            flags[i] = RrFlag::Ectopic;
            flags[i + 1] = RrFlag::Ectopic;
            counts.ectopic += 2;
            let mid = 0.5 * (rr + nx);
            out.emit(&[mid, mid], rr + nx);
            i += 1;
        } else if prev_normal
            && rr > local + thr
            && rr_ms[i - 1] < local
            && (rr + rr_ms[i - 1] - 2.0 * local).abs() <= 2.0 * thr
        {
            // The same pattern when the premature interval stayed inside the threshold and
            // was accepted one step earlier: take it back.
            flags[i - 1] = RrFlag::Ectopic;
            flags[i] = RrFlag::Ectopic;
            counts.ectopic += 2;
            let prev = rr_ms[i - 1];
            out.retract(prev);
            let mid = 0.5 * (rr + prev);
            out.emit(&[mid, mid], rr + prev);
        } else if rr >= 1.75 * local {
            // Undetected beats over several intervals: split so the duration is kept.
            flags[i] = RrFlag::Artifact;
            counts.artifact += 1;
            out.split(rr, k as usize);
        } else {
            flags[i] = RrFlag::Artifact;
            counts.artifact += 1;
            out.emit(&[local], rr);
        }
        i += 1;
    }
    RrSeries {
        rr_ms,
        flags,
        nn_ms: out.nn,
        nn_end_s: out.end_s,
        nn_breaks: out.breaks,
        counts,
    }
}

struct NnBuilder {
    nn: Vec<f64>,
    end_s: Vec<f64>,
    breaks: Vec<usize>,
    t_s: f64,
}

impl NnBuilder {
    /// Appends corrected intervals standing for `raw_ms` of recording; their end times are
    /// spread over that span so the series stays aligned with the beats.
    fn emit(&mut self, values: &[f64], raw_ms: f64) {
        let total: f64 = values.iter().sum();
        let start = self.t_s;
        let mut acc = 0.0;
        for v in values {
            acc += v;
            self.nn.push(*v);
            self.end_s.push(start + raw_ms / 1000.0 * acc / total);
        }
        self.t_s = start + raw_ms / 1000.0;
    }

    fn split(&mut self, rr: f64, k: usize) {
        let part = rr / k as f64;
        for _ in 0..k {
            self.emit(&[part], part);
        }
    }

    fn retract(&mut self, raw_ms: f64) {
        self.nn.pop();
        self.end_s.pop();
        self.t_s -= raw_ms / 1000.0;
    }

    fn gap(&mut self, raw_ms: f64) {
        self.t_s += raw_ms / 1000.0;
        if !self.nn.is_empty() && self.breaks.last() != Some(&self.nn.len()) {
            self.breaks.push(self.nn.len());
        }
    }
}

/// Median of up to [`LOCAL_NEIGHBOURS`] intervals on each side of `i` (itself excluded;
/// the interval itself when it has no neighbours), clamped to the physiologic range.
fn local_median(rr: &[f64], i: usize, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    let lo = i.saturating_sub(LOCAL_NEIGHBOURS);
    let hi = (i + LOCAL_NEIGHBOURS + 1).min(rr.len());
    scratch.extend(rr[lo..i].iter().chain(&rr[i + 1..hi]).copied());
    if scratch.is_empty() {
        scratch.push(rr[i]);
    }
    median_in_place(scratch).clamp(MIN_RR_MS, MAX_RR_MS)
}

/// Median of a non-empty slice (reorders it).
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    v.sort_unstable_by(f64::total_cmp);
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beats(rr: &[f64]) -> RrSeries {
        correct(rr.to_vec(), 0.0)
    }

    #[test]
    fn clean_series_is_untouched() {
        let rr = [800.0, 810.0, 790.0, 805.0, 795.0, 800.0, 812.0];
        let s = beats(&rr);
        assert_eq!(s.nn_ms, rr);
        assert_eq!(s.counts.total(), 0);
        assert!((s.nn_end_s[6] - rr.iter().sum::<f64>() / 1000.0).abs() < 1e-12);
    }

    #[test]
    fn missed_beat_is_split() {
        let s = beats(&[800.0, 800.0, 800.0, 1600.0, 800.0, 800.0, 800.0]);
        assert_eq!(s.flags[3], RrFlag::Missed);
        assert_eq!(s.nn_ms, vec![800.0; 8]);
        assert_eq!(s.counts.missed, 1);
    }

    #[test]
    fn extra_beat_is_merged() {
        let s = beats(&[800.0, 800.0, 800.0, 300.0, 500.0, 800.0, 800.0]);
        assert_eq!(s.flags[3], RrFlag::Extra);
        assert_eq!(s.nn_ms, vec![800.0; 6]);
        assert_eq!(s.counts.extra, 2);
    }

    #[test]
    fn premature_beat_and_pause_are_ectopic() {
        let s = beats(&[800.0, 800.0, 800.0, 500.0, 1100.0, 800.0, 800.0]);
        assert_eq!(&s.flags[3..5], &[RrFlag::Ectopic, RrFlag::Ectopic]);
        assert_eq!(s.nn_ms, vec![800.0; 7]);
        // Premature interval inside the threshold, pause outside: still one ectopic pair.
        let s = beats(&[800.0, 800.0, 800.0, 700.0, 1100.0, 800.0, 800.0]);
        assert_eq!(&s.flags[3..5], &[RrFlag::Ectopic, RrFlag::Ectopic]);
        assert_eq!(
            s.nn_ms,
            vec![800.0, 800.0, 800.0, 900.0, 900.0, 800.0, 800.0]
        );
        let s = beats(&[800.0, 800.0, 800.0, 500.0, 1100.0, 800.0, 800.0]);
        assert!((s.ectopic_fraction() - 2.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn lone_long_interval_is_an_artifact() {
        let s = beats(&[800.0, 800.0, 800.0, 1200.0, 800.0, 800.0, 800.0]);
        assert_eq!(s.flags[3], RrFlag::Artifact);
        assert_eq!(s.nn_ms, vec![800.0; 7]);
        // Two undetected beats: split, duration kept.
        let s = beats(&[800.0, 800.0, 800.0, 2400.0, 1200.0, 800.0, 800.0]);
        assert_eq!(s.flags[3], RrFlag::Missed);
        assert_eq!(s.nn_ms.len(), 9);
        // Signal loss: dropped, the series breaks, time stays aligned.
        let s = beats(&[800.0, 800.0, 800.0, 4000.0, 800.0, 800.0, 800.0]);
        assert_eq!(s.flags[3], RrFlag::Artifact);
        assert_eq!(s.nn_ms, vec![800.0; 6]);
        assert_eq!(s.nn_breaks, vec![3]);
        assert!((s.nn_end_s[3] - 7.2).abs() < 1e-12);
    }
}
