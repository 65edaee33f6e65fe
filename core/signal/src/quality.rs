//! Signal quality index (SQI) per window.
//!
//! Template matching after Orphanidou et al. 2015, *Signal-quality indices for the
//! electrocardiogram and photoplethysmogram: derivation and applications to wireless
//! monitoring*, IEEE J Biomed Health Inform 19:832-838:
//!
//! 1. Feasibility: heart rate 40-180 bpm, no RR interval over 3 s, longest/shortest RR
//!    ratio at most 2.2. A window failing any rule, or with fewer than 3 beats, has SQI 0.
//! 2. Each beat is cut from the filtered signal centred on its peak, one median RR wide;
//!    the template is their mean; SQI is the mean Pearson correlation of the beats with the
//!    template, clamped to `[0, 1]`.
//!
//! A window is acceptable when `SQI >= SQI_THRESHOLD` ([`SQI_THRESHOLD`] = 0.86, the
//! threshold Orphanidou et al. derived for both ECG and PPG). Features of windows below the
//! threshold are still reported, flagged, but the SDK does not predict on them.

use crate::rr::median_in_place;

/// Minimum acceptable SQI.
pub const SQI_THRESHOLD: f64 = 0.86;

/// SQI of one window of `filtered` whose beats are `peaks` (indices into `filtered`).
pub fn template_sqi(filtered: &[f64], peaks: &[usize], rate_hz: f64) -> f64 {
    if peaks.len() < 3 {
        return 0.0;
    }
    let mut rr: Vec<f64> = peaks
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / rate_hz)
        .collect();
    let (min_rr, max_rr) = rr
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    let hr = 60.0 * rr.len() as f64 / rr.iter().sum::<f64>();
    if !(40.0..=180.0).contains(&hr) || max_rr > 3.0 || max_rr / min_rr > 2.2 {
        return 0.0;
    }
    let half = ((median_in_place(&mut rr) * rate_hz) / 2.0).round() as usize;
    if half == 0 {
        return 0.0;
    }
    let width = 2 * half + 1;
    let beats: Vec<&[f64]> = peaks
        .iter()
        .filter(|&&p| p >= half && p + half < filtered.len())
        .map(|&p| &filtered[p - half..=p + half])
        .collect();
    if beats.len() < 3 {
        return 0.0;
    }
    let mut template = vec![0.0; width];
    for b in &beats {
        for (t, v) in template.iter_mut().zip(b.iter()) {
            *t += v / beats.len() as f64;
        }
    }
    let mean_corr = beats.iter().map(|b| pearson(b, &template)).sum::<f64>() / beats.len() as f64;
    mean_corr.clamp(0.0, 1.0)
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}
