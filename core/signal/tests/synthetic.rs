//! Exact ground truth: ECG and PPG generated from Gaussian waves at known beat times, with
//! noise, baseline wander, missing beats and ectopic beats. The truth (beat samples, mean
//! HR, SDNN, RMSSD) is computed here from the generator's beat list, never from the crate.

use std::f64::consts::PI;

use vitalcore_signal::{analyze_ecg, analyze_ppg, CardiacAnalysis, RrFlag};

/// Deterministic uniform noise in [-1, 1] (xorshift), so failures reproduce.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Beat times (samples) with respiratory-like modulation: RR = 850 + 60 sin(2 pi 0.25 t) +
/// 30 sin(2 pi 0.08 t) ms, rounded to the sample grid.
fn beat_samples(rate: f64, seconds: f64) -> Vec<usize> {
    let mut out = Vec::new();
    let mut t = 0.7;
    while t < seconds - 0.7 {
        out.push((t * rate).round() as usize);
        let rr = 0.850 + 0.060 * (2.0 * PI * 0.25 * t).sin() + 0.030 * (2.0 * PI * 0.08 * t).sin();
        t += rr;
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Ecg,
    Ppg,
}

struct Distortion {
    noise: f64,
    wander: f64,
}

fn synth(kind: Kind, beats: &[usize], rate: f64, n: usize, d: &Distortion) -> Vec<f64> {
    let mut x = vec![0.0; n];
    let mut add = |centre: f64, width_s: f64, amp: f64| {
        let lo = (centre - 5.0 * width_s * rate).max(0.0) as usize;
        let hi = ((centre + 5.0 * width_s * rate) as usize).min(n - 1);
        for (i, v) in x.iter_mut().enumerate().take(hi + 1).skip(lo) {
            let z = (i as f64 - centre) / (width_s * rate);
            *v += amp * (-0.5 * z * z).exp();
        }
    };
    for &b in beats {
        let c = b as f64;
        match kind {
            Kind::Ecg => {
                add(c - 0.16 * rate, 0.025, 0.15); // P
                add(c - 0.025 * rate, 0.008, -0.15); // Q
                add(c, 0.010, 1.2); // R, exactly at the beat sample
                add(c + 0.025 * rate, 0.008, -0.25); // S
                add(c + 0.26 * rate, 0.045, 0.3); // T
            }
            Kind::Ppg => {
                add(c, 0.07, 1.0); // systolic peak at the beat sample
                add(c + 0.32 * rate, 0.09, 0.35); // diastolic wave
            }
        }
    }
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f64 / rate;
        *v += d.noise * noise.next() + d.wander * (2.0 * PI * 0.15 * t).sin();
    }
    x
}

fn rr_ms(beats: &[usize], rate: f64) -> Vec<f64> {
    beats
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 * 1000.0 / rate)
        .collect()
}

fn truth_stats(rr: &[f64]) -> (f64, f64, f64) {
    let n = rr.len() as f64;
    let mean = rr.iter().sum::<f64>() / n;
    let sdnn = (rr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let rmssd = (rr.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (60_000.0 / mean, sdnn, rmssd)
}

fn max_offset(found: &[usize], truth: &[usize]) -> usize {
    assert_eq!(found.len(), truth.len(), "beat count");
    found
        .iter()
        .zip(truth)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0)
}

fn run(kind: Kind, x: &[f64], rate: f64) -> CardiacAnalysis {
    match kind {
        Kind::Ecg => analyze_ecg(x, rate),
        Kind::Ppg => analyze_ppg(x, rate),
    }
    .expect("synthetic recording analyses")
}

fn clean_case(kind: Kind, rate: f64, tol_samples: usize) {
    let secs = 180.0;
    let n = (secs * rate) as usize;
    let beats = beat_samples(rate, secs);
    let x = synth(
        kind,
        &beats,
        rate,
        n,
        &Distortion {
            noise: 0.0,
            wander: 0.0,
        },
    );
    let a = run(kind, &x, rate);
    assert!(max_offset(&a.peaks, &beats) <= tol_samples);
    let (hr, sdnn, rmssd) = truth_stats(&rr_ms(&beats, rate));
    let f = |k| a.features.get(k).expect("computed");
    assert!(
        (f("hr_mean") - hr).abs() < 0.05,
        "hr {} vs {hr}",
        f("hr_mean")
    );
    assert!(
        (f("sdnn") - sdnn).abs() / sdnn < 0.02,
        "sdnn {} vs {sdnn}",
        f("sdnn")
    );
    assert!(
        (f("rmssd") - rmssd).abs() / rmssd < 0.05,
        "rmssd {} vs {rmssd}",
        f("rmssd")
    );
    assert_eq!(a.artifacts.total(), 0);
    assert!(
        a.quality.acceptable,
        "clean signal below SQI threshold: {}",
        a.quality.sqi
    );
    // The generator's HF modulation (0.25 Hz, 60 ms) dominates its LF one (0.08 Hz, 30 ms).
    assert!(f("lf_hf_ratio") < 1.0, "lf/hf {}", f("lf_hf_ratio"));
}

#[test]
fn clean_ecg_beats_are_exact() {
    clean_case(Kind::Ecg, 360.0, 1);
    clean_case(Kind::Ecg, 125.0, 1);
}

#[test]
fn clean_ppg_beats_are_exact() {
    clean_case(Kind::Ppg, 100.0, 1);
    clean_case(Kind::Ppg, 25.0, 1);
}

fn noisy_case(kind: Kind, rate: f64, noise: f64, wander: f64) {
    let secs = 120.0;
    let n = (secs * rate) as usize;
    let beats = beat_samples(rate, secs);
    let x = synth(kind, &beats, rate, n, &Distortion { noise, wander });
    let a = run(kind, &x, rate);
    // Every beat within 50 ms, none extra.
    assert!(max_offset(&a.peaks, &beats) as f64 <= 0.05 * rate);
    let (hr, _, _) = truth_stats(&rr_ms(&beats, rate));
    let got = a.features.get("hr_mean").expect("computed");
    assert!((got - hr).abs() < 0.5, "hr {got} vs {hr}");
}

#[test]
fn noise_and_baseline_wander_do_not_move_beats() {
    noisy_case(Kind::Ecg, 250.0, 0.15, 0.4);
    noisy_case(Kind::Ppg, 100.0, 0.1, 0.3);
}

/// Wander with more power than the pulse itself: the beats are still found exactly (the
/// band-pass removes it), but the quality gate calls the stretches noise and answers
/// nothing from them (Zhao & Zhang's basSQI rule, per segment).
#[test]
fn wander_stronger_than_the_pulse_is_unusable_but_beats_stay_exact() {
    let (rate, secs) = (100.0, 120.0);
    let beats = beat_samples(rate, secs);
    let n = (secs * rate) as usize;
    let d = Distortion {
        noise: 0.0,
        wander: 0.8,
    };
    let a = run(Kind::Ppg, &synth(Kind::Ppg, &beats, rate, n, &d), rate);
    assert!(max_offset(&a.peaks, &beats) as f64 <= 0.05 * rate);
    assert!(!a.quality.acceptable, "usable {}", a.quality.sqi);
    assert!(a
        .quality
        .artefacts
        .iter()
        .any(|x| x.kind == vitalcore_signal::quality::ArtefactKind::Noise));
}

#[test]
fn missing_beats_are_flagged_and_restored() {
    let rate = 100.0;
    let secs = 120.0;
    let beats = beat_samples(rate, secs);
    // Pulses 30 and 80 never reach the sensor.
    let shown: Vec<usize> = beats
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 30 && *i != 80)
        .map(|(_, b)| *b)
        .collect();
    let x = synth(
        Kind::Ppg,
        &shown,
        rate,
        (secs * rate) as usize,
        &Distortion {
            noise: 0.02,
            wander: 0.0,
        },
    );
    let a = run(Kind::Ppg, &x, rate);
    assert!(max_offset(&a.peaks, &shown) <= 1);
    assert_eq!(a.artifacts.missed, 2, "{:?}", a.artifacts);
    assert_eq!(
        a.rr.nn_ms.len(),
        beats.len() - 1,
        "missed beats restored in NN"
    );
    let (hr, _, _) = truth_stats(&rr_ms(&beats, rate));
    let got = a.features.get("hr_mean").expect("computed");
    assert!((got - hr).abs() < 0.2, "hr {got} vs {hr}");
}

#[test]
fn ectopic_beats_are_flagged_and_corrected() {
    let rate = 360.0;
    let secs = 120.0;
    let mut beats = beat_samples(rate, secs);
    let truth = beats.clone();
    // Premature beats: 35 % of the interval early, the next beat on schedule (full
    // compensatory pause).
    for i in [40usize, 90] {
        let rr = beats[i] - beats[i - 1];
        beats[i] -= (0.35 * rr as f64) as usize;
    }
    let x = synth(
        Kind::Ecg,
        &beats,
        rate,
        (secs * rate) as usize,
        &Distortion {
            noise: 0.02,
            wander: 0.2,
        },
    );
    let a = run(Kind::Ecg, &x, rate);
    assert!(
        max_offset(&a.peaks, &beats) <= 1,
        "premature beats are still detected"
    );
    assert_eq!(a.artifacts.ectopic, 4, "{:?}", a.artifacts);
    for i in [39usize, 40, 89, 90] {
        assert_eq!(a.rr.flags[i], RrFlag::Ectopic, "interval {i}");
    }
    let (hr, sdnn, _) = truth_stats(&rr_ms(&truth, rate));
    let f = |k| a.features.get(k).expect("computed");
    assert!((f("hr_mean") - hr).abs() < 0.1);
    // Uncorrected, the premature beats inflate SDNN; corrected, they barely move it.
    let (_, raw_sdnn, _) = truth_stats(&rr_ms(&beats, rate));
    assert!(raw_sdnn > 1.2 * sdnn, "raw {raw_sdnn} vs true {sdnn}");
    assert!(
        (f("sdnn") - sdnn).abs() / sdnn < 0.05,
        "sdnn {} vs {sdnn}",
        f("sdnn")
    );
    assert!((f("ectopic_fraction") - 4.0 / a.rr.rr_ms.len() as f64).abs() < 1e-12);
}
