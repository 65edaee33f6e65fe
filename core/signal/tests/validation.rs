//! Validation against NeuroKit2 and HeartPy on real and simulated recordings (fetched and
//! computed by `make data`; a missing cache fails with "run `make data`").
//!
//! Metrics (issue acceptance): beat positions F1 >= 0.98 within 50 ms of NeuroKit2's;
//! mean HR within 1 bpm; SDNN and RMSSD within 10 % where the reference is plausible.
//!
//! **Which NeuroKit2 output is the reference.** Beats: NeuroKit2's raw peaks (`ecg_peaks` /
//! `ppg_findpeaks`), detector against detector. NN features (HR, SDNN, RMSSD) are defined
//! after ectopic correction, so their reference is NeuroKit2's corrected peaks
//! (`signal_fixpeaks`, method "Kubios" = Lipponen & Tarvainen 2019). Where NeuroKit2's raw
//! peaks have an interval over 2.5 s (signal loss: the MIT-BIH excerpt has two clipped,
//! saturated stretches of 2.6 s and 4.2 s), NeuroKit2 invents beats inside the hole at
//! arbitrary places while this crate drops the hole; the reference mean HR is therefore
//! taken over NeuroKit2's corrected intervals outside those holes.
//!
//! **Plausibility rule for a reference SDNN/RMSSD.** The reference RR series (corrected, holes
//! excluded) is plausible when every interval lies in 300..=2000 ms and at most 1 % of
//! intervals differ by more than 20 % from the median of their 5 neighbours on each side
//! (checked here, independently of the crate's own correction). A series failing it still
//! has ectopic or missed beats after correction, and its SDNN/RMSSD measure those, not
//! heart rate variability.
//!
//! **heartpy_data2's first 30 s** are motion-corrupted (RR intervals of 8.6 s, 5.2 s and
//! 0.33 s in a row): no beat sequence there can be called right, and NeuroKit2's corrector,
//! HeartPy's rejection and this crate's correction give 64.2, 62.4 and 67.2 bpm over the
//! whole recording. Beats are compared on the whole recording; the NN features on the
//! recording from 30 s on, analysed as its own excerpt. Even there NeuroKit2's corrected
//! series is not a valid reference: where a spurious beat splits one ~1000 ms interval into
//! 385 + 573 ms, its "Kubios" correction turns the pair into 479 + 479 ms (two beats)
//! instead of merging it, and leaves a 479 + 556 ms pair untouched, which inflates its mean
//! HR by about 2.5 bpm. HeartPy rejects those beats; its accepted intervals after 30 s are
//! the HR reference for this recording, and the test asserts NeuroKit2's corrected series
//! still holds such sub-600 ms intervals (if a NeuroKit2 update fixes it, the test says so).
//!
//! Which recordings pass the plausibility rule is asserted, so a change is noticed:
//! heartpy_data1, heartpy_data3 and both simulated HRV recordings pass; MIT-BIH (frequent premature
//! ventricular beats, bigeminy runs) and heartpy_data2 (motion-corrupted first 30 s, an
//! 8.6 s dropout) do not.

mod common;

use common::{f1, load, peaks_of, rel_err, Recording};
use vitalcore_signal::{analyze_ecg, analyze_ppg, CardiacAnalysis, Series};

const SIGNAL_LOSS_MS: f64 = 2500.0;

fn analyse(rec: &Recording) -> (CardiacAnalysis, Vec<usize>) {
    let run = |x: &[f64]| match rec.signal.as_str() {
        "ecg" => analyze_ecg(x, rec.rate_hz),
        _ => analyze_ppg(x, rec.rate_hz),
    };
    match &rec.times_s {
        None => {
            let a = run(&rec.values).expect("recording analyses");
            let peaks = a.peaks.clone();
            (a, peaks)
        }
        Some(t) => {
            let r = Series::from_timestamps(t, &rec.values, rec.rate_hz).expect("valid stamps");
            assert!(
                r.gaps.is_empty(),
                "{}: unexpected gaps {:?}",
                rec.name,
                r.gaps
            );
            let seg = r.longest().expect("one segment");
            let a = run(seg.values()).expect("recording analyses");
            // Map grid peaks back to input rows, the indices NeuroKit2 saw.
            let peaks = a
                .peaks
                .iter()
                .map(|&p| vitalcore_signal::series::nearest_sample(t, seg.time_of(p)))
                .collect();
            (a, peaks)
        }
    }
}

/// RR intervals (ms) of `peaks`, without those inside a signal-loss hole of `raw`.
fn rr_outside_holes(peaks: &[usize], raw: &[usize], rate: f64) -> Vec<f64> {
    let holes: Vec<(usize, usize)> = raw
        .windows(2)
        .filter(|w| (w[1] - w[0]) as f64 * 1000.0 / rate > SIGNAL_LOSS_MS)
        .map(|w| (w[0], w[1]))
        .collect();
    peaks
        .windows(2)
        .filter(|w| !holes.iter().any(|(a, b)| w[0] >= *a && w[1] <= *b))
        .map(|w| (w[1] - w[0]) as f64 * 1000.0 / rate)
        .collect()
}

/// The plausibility rule of the module docs.
fn plausible(rr: &[f64]) -> bool {
    if rr.iter().any(|v| !(300.0..=2000.0).contains(v)) {
        return false;
    }
    let outliers = (0..rr.len())
        .filter(|&i| {
            let mut nb: Vec<f64> = rr[i.saturating_sub(5)..i]
                .iter()
                .chain(&rr[i + 1..(i + 6).min(rr.len())])
                .copied()
                .collect();
            nb.sort_by(f64::total_cmp);
            let med = nb[nb.len() / 2];
            (rr[i] - med).abs() > 0.2 * med
        })
        .count();
    outliers as f64 <= 0.01 * rr.len() as f64
}

fn check(dir: &str, name: &str, expect_plausible: bool) -> (Recording, CardiacAnalysis) {
    let rec = load(dir, name);
    let (a, peaks) = analyse(&rec);
    let nk = &rec.reference["neurokit2"];
    let raw = peaks_of(&nk["peaks"]);
    let tol = (0.05 * rec.rate_hz).floor() as usize;
    let score = f1(&peaks, &raw, tol);
    eprintln!(
        "{name}: {} beats vs NeuroKit2 {}, F1 {score:.4}",
        peaks.len(),
        raw.len()
    );
    assert!(score >= 0.98, "{name}: beat F1 {score:.4} < 0.98");

    let corrected = peaks_of(&nk["peaks_corrected"]);
    let rr = rr_outside_holes(&corrected, &raw, rec.rate_hz);
    let ref_hr = 60_000.0 * rr.len() as f64 / rr.iter().sum::<f64>();
    let hr = a.features.get("hr_mean").expect("hr_mean computed");
    eprintln!("{name}: hr_mean {hr:.2} vs NeuroKit2 {ref_hr:.2}");
    assert!((hr - ref_hr).abs() <= 1.0, "{name}: mean HR off by > 1 bpm");

    let is_plausible = plausible(&rr);
    assert_eq!(
        is_plausible, expect_plausible,
        "{name}: reference plausibility changed"
    );
    for (ours, theirs) in [("sdnn", "HRV_SDNN"), ("rmssd", "HRV_RMSSD")] {
        let v = a.features.get(ours).expect("computed");
        let r = nk["hrv_corrected"][theirs]
            .as_f64()
            .expect("reference value");
        eprintln!(
            "{name}: {ours} {v:.2} vs NeuroKit2 {r:.2} ({:+.1} %){}",
            100.0 * (v - r) / r,
            if is_plausible {
                ""
            } else {
                " [reference implausible: not compared]"
            }
        );
        if is_plausible {
            assert!(rel_err(v, r) <= 0.10, "{name}: {ours} differs > 10 %");
        }
    }
    // Poincare and entropy, beyond the acceptance metrics: same rule and tolerance, against
    // NeuroKit2's `hrv_nonlinear` on its corrected peaks, where it computed them (it leaves
    // sample entropy undefined on short recordings, as we do). SD1 is RMSSD / sqrt(2), so it
    // inherits RMSSD's tolerance.
    if is_plausible {
        for (ours, theirs) in [
            ("sd1", "HRV_SD1"),
            ("sd2", "HRV_SD2"),
            ("sample_entropy", "HRV_SampEn"),
        ] {
            let (v, r) = (a.features.get(ours), nk["hrv_corrected"][theirs].as_f64());
            eprintln!("{name}: {ours} {v:?} vs NeuroKit2 {r:?}");
            assert_eq!(
                v.is_some(),
                r.is_some(),
                "{name}: {ours} defined on one side only"
            );
            if let (Some(v), Some(r)) = (v, r) {
                assert!(rel_err(v, r) <= 0.10, "{name}: {ours} differs > 10 %");
            }
        }
    }
    (rec, a)
}

#[test]
fn heartpy_data1_ppg_matches_neurokit2_and_heartpy() {
    let (rec, a) = check("recordings", "heartpy_data1", true);
    // HeartPy on the same samples: same beats and the same mean HR.
    let hp = &rec.reference["heartpy"];
    let score = f1(&a.peaks, &peaks_of(&hp["peaks"]), 5);
    assert!(score >= 0.98, "F1 against HeartPy {score:.4}");
    let bpm = hp["measures"]["bpm"].as_f64().expect("HeartPy bpm");
    assert!((a.features.get("hr_mean").expect("computed") - bpm).abs() <= 1.0);
}

#[test]
fn heartpy_data2_timestamped_ppg_matches_neurokit2_beats_and_heartpy_hr() {
    let rec = load("recordings", "heartpy_data2");
    let (whole, peaks) = analyse(&rec);
    let nk = &rec.reference["neurokit2"];
    let score = f1(
        &peaks,
        &peaks_of(&nk["peaks"]),
        (0.05 * rec.rate_hz) as usize,
    );
    eprintln!("heartpy_data2: beat F1 vs NeuroKit2 {score:.4}");
    assert!(score >= 0.98, "beat F1 {score:.4}");
    // The motion-corrupted first 30 s: the first window is unusable, the later ones are
    // not, and the artefacts found lie where HeartPy rejects beats (15-27 s).
    let verdicts: Vec<bool> = whole.windows.iter().map(|w| w.acceptable).collect();
    assert!(!verdicts[0], "first window: {:?}", whole.windows[0].summary);
    assert!(verdicts[1..].iter().all(|v| *v), "{verdicts:?}");
    assert!(whole
        .quality
        .artefacts
        .iter()
        .all(|a| a.start_s >= 10.0 && a.end_s <= 30.0));

    let from = (30.0 * rec.rate_hz).round() as usize;
    let mut excerpt = rec.clone();
    excerpt.values.drain(..from);
    if let Some(t) = excerpt.times_s.as_mut() {
        t.drain(..from);
    }
    let (a, _) = analyse(&excerpt);
    let hr = a.features.get("hr_mean").expect("computed");
    let rr: Vec<f64> = rec.reference["heartpy"]["rr_accepted"]
        .as_array()
        .expect("HeartPy RR")
        .iter()
        .filter(|p| p[0].as_u64().expect("index") as usize >= from)
        .map(|p| p[1].as_f64().expect("ms"))
        .collect();
    let hp_hr = 60_000.0 * rr.len() as f64 / rr.iter().sum::<f64>();
    eprintln!("heartpy_data2 from 30 s: hr_mean {hr:.2} vs HeartPy {hp_hr:.2}");
    assert!((hr - hp_hr).abs() <= 1.0, "mean HR off by > 1 bpm");
    // The documented reason NeuroKit2 is not the reference here still holds.
    let nk_fixed = peaks_of(&nk["peaks_corrected"]);
    let short = nk_fixed
        .windows(2)
        .filter(|w| w[0] >= from && ((w[1] - w[0]) as f64 * 1000.0 / rec.rate_hz) < 600.0)
        .count();
    assert!(
        short >= 3,
        "NeuroKit2's corrected series changed: re-check the reference"
    );
}

#[test]
fn mitdb_ecg_matches_neurokit2() {
    let (_, a) = check("recordings", "scipy_mitdb_ecg", false);
    // Frequent premature beats: the correction must have been busy, and said so.
    assert!(a.artifacts.ectopic >= 20, "{:?}", a.artifacts);
}

#[test]
fn simulated_ecg_with_hrv_matches_neurokit2() {
    check("synthetic", "nk_ecg_hrv", true);
}

#[test]
fn simulated_ppg_with_hrv_matches_neurokit2() {
    check("synthetic", "nk_ppg_hrv", true);
}

/// NeuroKit2's simulators at a fixed rate: the true mean HR is the simulator's setting.
fn check_truth(name: &str) {
    let rec = load("synthetic", name);
    let (a, peaks) = analyse(&rec);
    let truth = rec.meta["true_hr_bpm"]
        .as_f64()
        .expect("true HR in sidecar");
    let hr = a.features.get("hr_mean").expect("computed");
    eprintln!("{name}: hr_mean {hr:.3}, true {truth}");
    assert!((hr - truth).abs() <= 0.5, "{name}: HR {hr} vs true {truth}");
    let raw = peaks_of(&rec.reference["neurokit2"]["peaks"]);
    let score = f1(&peaks, &raw, (0.05 * rec.rate_hz) as usize);
    assert!(score >= 0.98, "{name}: F1 {score}");
    assert_eq!(
        a.artifacts.total(),
        0,
        "{name}: artifacts on a clean rhythm"
    );
}

#[test]
fn simulated_noisy_ecg_with_baseline_wander_has_the_true_rate() {
    check_truth("nk_ecg_72bpm_noisy");
}

#[test]
fn simulated_ppg_with_drift_has_the_true_rate() {
    check_truth("nk_ppg_65bpm_drift");
}

#[test]
fn heartpy_data3_long_ppg_matches_neurokit2() {
    let (_, a) = check("recordings", "heartpy_data3", true);
    // Eleven minutes: 60 s windows every 30 s.
    assert_eq!(a.windows.len(), 22);
}

#[test]
fn heartpy_data3_quantised_stamps_are_a_typed_error() {
    // The wall-clock stamps repeat (15-16 ms OS tick): the third row repeats the second.
    let path = common::cache_dir().join("stamped/heartpy_data3_stamped.csv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): run `make data` first", path.display()));
    let (t, v): (Vec<f64>, Vec<f64>) = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(',').expect("t,value rows");
            (
                a.parse::<f64>().expect("number"),
                b.parse::<f64>().expect("number"),
            )
        })
        .unzip();
    assert_eq!(
        Series::from_timestamps(&t, &v, 100.0),
        Err(vitalcore_signal::SignalError::DuplicateTimestamp { index: 2 })
    );
}
