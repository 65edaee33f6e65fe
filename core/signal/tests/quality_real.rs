//! The beat-level quality gate on real recordings and on stress cases built from them
//! (`make data`: `scripts/quality_data.py` writes `.cache/quality`; a missing cache fails
//! with "run `make data`").
//!
//! * Real recordings (MIT-BIH 208 with frequent premature ventricular beats, heartpy data1-3):
//!   per 60 s window, our verdict agrees with NeuroKit2's (`zhao2018` fuzzy for ECG,
//!   `templatematch` >= 0.86 for PPG) on at least 90 % of windows; MIT-BIH 208 and
//!   heartpy_data3 are acceptable in every window; heartpy_data2 is unacceptable only in
//!   the window holding the stretch HeartPy rejects.
//! * Rhythm is not quality: AF-like sequences (RR coefficient of variation 0.15-0.30) and
//!   regular rhythms at 40-180 bpm, built from the real beats of MIT-BIH 208 and
//!   heartpy_data3, are acceptable, with their beats found.
//! * Noise from NeuroKit2's `signal_distort` (mains, broadband EMG-like, motion artefacts,
//!   baseline wander at 20, 10, 5, 0 dB): quality does not rise as any of them grows; mains
//!   interference makes every recording unacceptable at 0 dB; the beats found in clean
//!   stretches at 20 dB are the clean recording's beats. (At 0 dB the EMG-like, motion and
//!   baseline noise leave most PPG checks acceptable here, as they do for NeuroKit2's own
//!   templatematch: the band-pass removes the wander and NeuroKit2's motion bursts are short.)

mod common;

use std::path::Path;

use common::{cache_dir, f1};
use serde_json::Value;
use vitalcore_signal::{analyze_ecg, analyze_ppg, CardiacAnalysis};

const REAL: [&str; 4] = [
    "heartpy_data1",
    "heartpy_data2",
    "heartpy_data3",
    "scipy_mitdb_ecg",
];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the quality data is missing, run `make data` first",
            path.display()
        )
    })
}

/// The last column of each row (a value, or `time,value`).
fn values(path: &Path) -> Vec<f64> {
    read(path)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.rsplit(',')
                .next()
                .and_then(|v| v.trim().parse().ok())
                .expect("the data scripts write numbers")
        })
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).expect("the data scripts write JSON")
}

fn analyse(signal: &str, x: &[f64], fs: f64) -> CardiacAnalysis {
    match signal {
        "ecg" => analyze_ecg(x, fs),
        _ => analyze_ppg(x, fs),
    }
    .expect("recording analyses")
}

fn real(name: &str) -> (String, f64, Vec<f64>) {
    let meta = json(&cache_dir().join(format!("recordings/{name}.json")));
    let signal = meta["signal"].as_str().expect("signal").to_owned();
    let fs = meta["rate_hz"].as_f64().expect("rate");
    (
        signal,
        fs,
        values(&cache_dir().join(format!("recordings/{name}.csv"))),
    )
}

#[test]
fn real_recordings_agree_with_neurokit2_per_window() {
    let refs = json(&cache_dir().join("quality/reference.json"));
    let (mut agree, mut total) = (0, 0);
    for name in REAL {
        let (signal, fs, x) = real(name);
        let a = analyse(&signal, &x, fs);
        let theirs = refs[name]["windows"].as_array().expect("windows");
        assert_eq!(theirs.len(), a.windows.len(), "{name}: same windows");
        let mut line = String::new();
        for (w, r) in a.windows.iter().zip(theirs) {
            let start = r["start_s"].as_f64().expect("start");
            assert!(
                (w.start_s - start).abs() < 0.05,
                "{name}: window at {start}"
            );
            let want = r["acceptable"].as_bool().expect("verdict");
            total += 1;
            agree += usize::from(w.acceptable == want);
            line += &format!(
                " {:.0}s:{:.2}{}/{}",
                w.start_s, w.sqi, w.acceptable as u8, want as u8
            );
        }
        eprintln!("{name}:{line}");
        match name {
            "scipy_mitdb_ecg" | "heartpy_data3" | "heartpy_data1" => {
                assert!(a.windows.iter().all(|w| w.acceptable), "{name}: {line}");
                assert!(a.quality.acceptable, "{name}");
            }
            _ => {
                // heartpy_data2: HeartPy rejects beats between 15 and 46 s, the motion
                // stretch at 15-27 s; only the window holding it is unusable.
                let hp: Vec<f64> = refs[name]["heartpy_rejected_s"]
                    .as_array()
                    .expect("rejected beats")
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                assert!(hp.iter().filter(|t| (15.0..27.0).contains(*t)).count() >= 10);
                assert!(!a.windows[0].acceptable, "{line}");
                assert!(a.windows[1..].iter().all(|w| w.acceptable), "{line}");
            }
        }
    }
    let share = agree as f64 / total as f64;
    eprintln!("agreement with NeuroKit2: {agree}/{total} windows");
    assert!(share >= 0.9, "agreement {share:.3}");
}

#[test]
fn irregular_and_regular_rhythms_from_real_beats_are_acceptable() {
    let dir = cache_dir().join("quality/rhythm");
    let index = json(&dir.join("index.json"));
    let built = index.as_array().expect("index of built rhythms");
    let irregular = built.iter().filter(|b| b["rhythm"] == "irregular").count();
    assert_eq!(
        (built.len(), irregular),
        (16, 6),
        "8 rhythms from each of two recordings"
    );
    for b in built {
        let name = b["name"].as_str().expect("name");
        let meta = json(&dir.join(format!("{name}.json")));
        let fs = meta["rate_hz"].as_f64().expect("rate");
        let x = values(&dir.join(format!("{name}.csv")));
        let a = analyse(meta["signal"].as_str().expect("signal"), &x, fs);
        let truth: Vec<usize> = meta["peaks"]
            .as_array()
            .expect("peaks")
            .iter()
            .filter_map(Value::as_u64)
            .map(|p| p as usize)
            .collect();
        let cv = meta["rr_cv"].as_f64().expect("cv");
        if b["rhythm"] == "irregular" {
            assert!((0.15..=0.30).contains(&cv), "{name}: cv {cv}");
        }
        let score = f1(&a.peaks, &truth, (0.05 * fs) as usize);
        eprintln!(
            "{name}: cv {cv:.2} usable {:.2} clean {}/{} F1 {score:.3}",
            a.quality.sqi, a.quality.summary.clean_beats, a.quality.summary.beats
        );
        assert!(a.quality.acceptable, "{name}: {:?}", a.quality.summary);
        assert!(a.windows.iter().all(|w| w.acceptable), "{name}");
        // The ECG detector must find the built rhythms (complexes cut or padded with
        // flat line: measured F1 0.92 at 180 bpm, 0.97 at 40 bpm). The PPG detector's F1
        // is reported only: Elgendi's 667 ms beat window merges pulses at 140-180 bpm
        // (measured F1 0.88 and 0.74), a limit of the detector that this gate does not
        // see (a missed pulse leaves a plausible interval), noted for the detector's
        // own work.
        if meta["signal"] == "ecg" {
            assert!(score >= 0.9, "{name}: beat F1 {score}");
        }
    }
}

#[test]
fn mains_interference_lowers_quality_monotonically_and_0_db_is_unacceptable() {
    let dir = cache_dir().join("quality/noisy");
    for name in REAL {
        let (signal, fs, clean) = real(name);
        let mut last = analyse(&signal, &clean, fs).quality.sqi;
        for snr in [20, 10, 5, 0] {
            let x = values(&dir.join(format!("{name}__powerline__{snr}db.csv")));
            let q = analyse(&signal, &x, fs).quality;
            eprintln!("{name} powerline {snr} dB: usable {:.3}", q.sqi);
            // Equal up to the few beats whose clean/unclean call flips at a threshold.
            assert!(
                q.sqi <= last + 0.02,
                "{name} {snr} dB: {} after {last}",
                q.sqi
            );
            last = q.sqi;
            if snr == 0 {
                assert!(!q.acceptable, "{name} at 0 dB: {:?}", q.summary);
            }
        }
    }
}

/// Every kind of noise: quality does not rise as the noise grows. The slack is one beat's
/// share of the shortest recording (heartpy_data1: 24 beats), where a single beat's call
/// flipping moves the usable fraction by about 0.04.
#[test]
fn quality_does_not_rise_as_any_noise_grows() {
    let dir = cache_dir().join("quality/noisy");
    for name in REAL {
        let (signal, fs, clean) = real(name);
        let base = analyse(&signal, &clean, fs).quality.sqi;
        for noise in ["powerline", "emg", "motion", "baseline"] {
            let mut last = base;
            let mut line = format!("{name} {noise}: clean {base:.2}");
            for snr in [20, 10, 5, 0] {
                let x = values(&dir.join(format!("{name}__{noise}__{snr}db.csv")));
                let q = analyse(&signal, &x, fs).quality;
                line += &format!(
                    " {snr}dB {:.2}{}",
                    q.sqi,
                    if q.acceptable { "" } else { "x" }
                );
                assert!(q.sqi <= last + 0.05, "{line}");
                last = q.sqi;
            }
            eprintln!("{line}");
        }
    }
}

#[test]
fn beats_in_clean_stretches_do_not_move_under_noise() {
    let dir = cache_dir().join("quality/noisy");
    for name in REAL {
        let (signal, fs, clean) = real(name);
        let reference = analyse(&signal, &clean, fs);
        for noise in ["powerline", "emg", "motion", "baseline"] {
            let x = values(&dir.join(format!("{name}__{noise}__20db.csv")));
            let a = analyse(&signal, &x, fs);
            // Beats the noisy analysis calls clean, inside stretches the clean recording's
            // analysis calls clean, must be beats of the clean recording.
            let clean_stretch = |p: usize| {
                let k = reference.peaks.partition_point(|r| *r <= p);
                k > 0
                    && reference
                        .rr
                        .flags
                        .get(k - 1)
                        .is_some_and(|f| *f != vitalcore_signal::RrFlag::Unclean)
                    && k < reference.peaks.len()
            };
            let clean_found: Vec<usize> = a
                .peaks
                .iter()
                .zip(&a.clean_beats)
                .filter(|(p, c)| **c && clean_stretch(**p))
                .map(|(p, _)| *p)
                .collect();
            let tol = (0.05 * fs) as usize;
            let moved = clean_found
                .iter()
                .filter(|p| {
                    let i = reference.peaks.partition_point(|r| r + tol < **p);
                    reference.peaks.get(i).is_none_or(|r| r.abs_diff(**p) > tol)
                })
                .count();
            eprintln!(
                "{name} {noise} 20 dB: {moved} of {} clean beats moved",
                clean_found.len()
            );
            assert!(
                moved * 100 <= clean_found.len(),
                "{name} {noise}: {moved} moved"
            );
        }
    }
}
