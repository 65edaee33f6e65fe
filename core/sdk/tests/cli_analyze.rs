//! `vitalcore analyze` run as a built binary: output shape, timestamped and accelerometer
//! input, a real recording, and one clear stderr line with a non-zero exit on bad input.
#![cfg(feature = "cli")]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_analyze");
    std::fs::create_dir_all(&dir).expect("create test dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test input");
    path
}

fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitalcore"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run the vitalcore binary")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// PPG-like pulses at exactly 72 bpm: 60 s at 100 Hz, systolic peaks at known rows.
fn pulses(rate: f64, seconds: f64) -> (Vec<f64>, Vec<usize>) {
    let n = (rate * seconds) as usize;
    let period = 60.0 / 72.0 * rate;
    let beats: Vec<usize> = (0..)
        .map(|k| (0.5 * rate + k as f64 * period).round() as usize)
        .take_while(|b| *b + (0.5 * rate) as usize <= n)
        .collect();
    let mut x = vec![0.0; n];
    for &b in &beats {
        for (i, v) in x.iter_mut().enumerate() {
            let z = (i as f64 - b as f64) / (0.07 * rate);
            *v += (-0.5 * z * z).exp();
        }
    }
    (x, beats)
}

#[test]
fn json_has_peaks_features_quality_and_windows() {
    let (x, beats) = pulses(100.0, 150.0);
    let csv: String = x.iter().map(|v| format!("{v}\n")).collect();
    let path = tmp("ppg.csv", &format!("ppg\n{csv}"));
    let v = json(&analyze(&[
        "--signal",
        "ppg",
        "--rate",
        "100",
        "--input",
        path.to_str().expect("utf-8 path"),
    ]));
    let peaks: Vec<usize> = v["peaks"]
        .as_array()
        .expect("peaks")
        .iter()
        .map(|p| p.as_u64().expect("index") as usize)
        .collect();
    assert_eq!(peaks, beats);
    let hr = v["features"]["hr_mean"].as_f64().expect("hr_mean");
    assert!((hr - 72.0).abs() < 0.1, "hr {hr}");
    assert_eq!(v["feature_set"], "v1");
    for name in ["sdnn", "rmssd", "lf_power", "sd1", "sqi", "beat_count"] {
        assert!(v["features"].get(name).is_some(), "feature {name} missing");
    }
    assert_eq!(v["quality"]["acceptable"], true);
    // 150 s with 60 s windows every 30 s: 0, 30, 60, 90.
    assert_eq!(v["windows"].as_array().expect("windows").len(), 4);
}

#[test]
fn timestamped_rows_map_peaks_back_to_input_rows() {
    // Irregular stamps (jitter +-2 ms around 10 ms) on the same pulse train.
    let (x, beats) = pulses(100.0, 60.0);
    let csv: String = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.4},{v}\n",
                i as f64 / 100.0 + 0.002 * ((i % 3) as f64 - 1.0)
            )
        })
        .collect();
    let path = tmp("ppg_t.csv", &format!("t,value\n{csv}"));
    let v = json(&analyze(&[
        "--signal",
        "ppg",
        "--rate",
        "100",
        "--input",
        path.to_str().expect("utf-8 path"),
    ]));
    let peaks = v["peaks"].as_array().expect("peaks");
    assert_eq!(peaks.len(), beats.len());
    for (p, b) in peaks.iter().zip(&beats) {
        assert!(p.as_u64().expect("index").abs_diff(*b as u64) <= 1);
    }
    assert!(v["gaps"].as_array().expect("gaps").is_empty());
}

#[test]
fn timestamp_gap_is_reported() {
    let (x, _) = pulses(100.0, 60.0);
    // Two seconds of rows missing in the middle.
    let csv: String = x
        .iter()
        .enumerate()
        .filter(|(i, _)| !(3000..3200).contains(i))
        .map(|(i, v)| format!("{},{v}\n", i as f64 / 100.0))
        .collect();
    let path = tmp("ppg_gap.csv", &csv);
    let v = json(&analyze(&[
        "--signal",
        "ppg",
        "--rate",
        "100",
        "--input",
        path.to_str().expect("utf-8 path"),
    ]));
    let gaps = v["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1);
    assert!((gaps[0]["start_s"].as_f64().expect("start") - 29.99).abs() < 1e-9);
    assert!((gaps[0]["end_s"].as_f64().expect("end") - 32.0).abs() < 1e-9);
}

#[test]
fn accel_walk_in_table_format() {
    let rate = 50.0;
    let csv: String = (0..(rate as usize * 90))
        .map(|i| {
            let t = i as f64 / rate;
            let z = 1.0 + 0.3 * (2.0 * std::f64::consts::PI * 1.8 * t).sin();
            format!("{},{},{z}\n", 0.01 * (i as f64).sin(), 0.0)
        })
        .collect();
    let path = tmp("accel.csv", &csv);
    let p = path.to_str().expect("utf-8 path");
    let out = analyze(&[
        "--signal", "accel", "--rate", "50", "--input", p, "--format", "table",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("step_count"), "{text}");
    let v = json(&analyze(&[
        "--signal", "accel", "--rate", "50", "--input", p,
    ]));
    let steps = v["features"]["step_count"].as_f64().expect("steps");
    assert!((steps - 162.0).abs() <= 2.0, "steps {steps}");
    assert!((v["features"]["cadence"].as_f64().expect("cadence") - 108.0).abs() < 2.0);
}

#[test]
fn real_recording_matches_neurokit2_beat_count() {
    let cache = std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"));
    let input = cache.join("recordings/scipy_mitdb_ecg.csv");
    let reference = cache.join("reference/scipy_mitdb_ecg.json");
    assert!(
        input.exists() && reference.exists(),
        "{} missing: run `make data` first",
        input.display()
    );
    let v = json(&analyze(&[
        "--signal",
        "ecg",
        "--rate",
        "360",
        "--input",
        input.to_str().expect("utf-8 path"),
    ]));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(reference).expect("read reference"))
            .expect("reference JSON");
    let ours = v["peaks"].as_array().expect("peaks").len() as f64;
    let theirs = r["neurokit2"]["peaks"].as_array().expect("peaks").len() as f64;
    assert!((ours - theirs).abs() / theirs <= 0.02, "{ours} vs {theirs}");
    assert_eq!(v["windows"].as_array().expect("windows").len(), 9);
}

/// Bad input: exit non-zero, exactly one line on stderr that names the problem.
fn fails_with(args: &[&str], needle: &str) {
    let out = analyze(args);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

#[test]
fn unreadable_input_fails_with_one_clear_line() {
    let missing = tmp("x", "").with_file_name("does-not-exist.csv");
    let m = missing.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ecg", "--rate", "360", "--input", m],
        "cannot read",
    );
    let garbage = tmp("garbage.csv", "1.0\n2.0\nthree\n");
    let g = garbage.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ecg", "--rate", "360", "--input", g],
        "line 3: not a number",
    );
    let empty = tmp("empty.csv", "\n\n");
    let e = empty.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ppg", "--rate", "100", "--input", e],
        "no data rows",
    );
    let cols = tmp("cols.csv", "1,2,3\n");
    let c = cols.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ppg", "--rate", "100", "--input", c],
        "expected 1 or 2 columns",
    );
    let nan = tmp("nan.csv", &"0.1\n".repeat(2000).replacen("0.1", "NaN", 1));
    let n = nan.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ppg", "--rate", "100", "--input", n],
        "non-finite value",
    );
    let dup = tmp("dup.csv", "0.0,1\n0.01,2\n0.01,3\n");
    let d = dup.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ppg", "--rate", "100", "--input", d],
        "duplicate timestamp",
    );
    let short = tmp("short.csv", &"0.1\n".repeat(300));
    let s = short.to_str().expect("utf-8 path");
    fails_with(
        &["--signal", "ppg", "--rate", "100", "--input", s],
        "hr_mean needs at least 10 s",
    );
    fails_with(
        &["--signal", "ppg", "--rate", "5000", "--input", s],
        "outside the supported range",
    );
}
