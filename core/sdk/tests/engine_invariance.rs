//! Batch-size invariance: a real recording pushed into a session in random batch sizes (one
//! sample up to the whole recording) with jittered batch start times gives the same peaks and
//! features as the one-shot analysis of the recording (the library call and the CLI).

mod engine_support;

use std::collections::BTreeMap;

use engine_support::*;
use proptest::prelude::*;
use vitalcore::signal::{analyze_ecg, analyze_ppg, CardiacAnalysis};
use vitalcore::{CheckKind, CheckResult, SampleBatch, Vitalcore};

fn features(a: &CardiacAnalysis) -> BTreeMap<String, f64> {
    a.features
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}

/// How a recording is cut: explicit cut points, or one fixed batch size throughout.
#[derive(Debug, Clone)]
enum Cuts {
    Points(Vec<usize>),
    Every(usize),
}

fn batches(len: usize, cuts: &Cuts) -> Vec<(usize, usize)> {
    let mut bounds: Vec<usize> = match cuts {
        Cuts::Points(p) => p.iter().map(|&c| c % len).collect(),
        Cuts::Every(n) => (0..len).step_by(*n).collect(),
    };
    bounds.push(0);
    bounds.push(len);
    bounds.sort_unstable();
    bounds.dedup();
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

fn cuts(len: usize) -> impl Strategy<Value = Cuts> {
    prop_oneof![
        prop::collection::vec(0..len, 0..40).prop_map(Cuts::Points),
        (1usize..=16).prop_map(Cuts::Every),
        Just(Cuts::Every(len)),
    ]
}

/// Pushes `x` in the given batches, each stamped with a jitter of under half a sample.
fn run(
    engine: &Vitalcore,
    kind: CheckKind,
    channel: &str,
    x: &[f64],
    rate: f64,
    cuts: &Cuts,
    jitter: &[f64],
) -> CheckResult {
    let s = engine.start_check(kind).expect("start");
    for (i, (a, b)) in batches(x.len(), cuts).into_iter().enumerate() {
        let j = jitter[i % jitter.len()] / rate;
        let start = T0_S + a as f64 / rate + j;
        s.push_samples(channel, SampleBatch::uniform(start, rate, x[a..b].to_vec()))
            .expect("push");
    }
    s.finish().expect("finish")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ppg_session_equals_one_shot_in_any_batching(
        c in cuts(2483),
        jitter in prop::collection::vec(-0.45f64..0.45, 1..16),
    ) {
        let x = ppg_100hz();
        prop_assert_eq!(x.len(), 2483);
        let want = analyze_ppg(&x, 100.0).expect("one-shot");
        let dir = tempfile::tempdir().expect("tmp");
        let r = run(&open(dir.path()), CheckKind::PpgRhythm, "ppg", &x, 100.0, &c, &jitter);
        let peaks: Vec<u64> = want.peaks.iter().map(|&p| p as u64).collect();
        prop_assert_eq!(r.peaks, peaks);
        prop_assert_eq!(r.check.features, features(&want));
        prop_assert_eq!(r.check.quality.sqi, want.quality.sqi);
    }
}

proptest! {
    // Five minutes of MIT-BIH at 360 Hz per case: fewer cases.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn mitdb_ecg_session_equals_one_shot_in_any_batching(
        c in cuts(108_000),
        jitter in prop::collection::vec(-0.45f64..0.45, 1..16),
    ) {
        let x = mitdb_ecg();
        prop_assert_eq!(x.len(), 108_000);
        let want = analyze_ecg(&x, 360.0).expect("one-shot");
        let dir = tempfile::tempdir().expect("tmp");
        let r = run(&open(dir.path()), CheckKind::EcgRhythm, "ecg", &x, 360.0, &c, &jitter);
        let peaks: Vec<u64> = want.peaks.iter().map(|&p| p as u64).collect();
        prop_assert!(peaks.len() > 300, "{} beats", peaks.len());
        prop_assert_eq!(r.peaks, peaks);
        prop_assert_eq!(r.check.features, features(&want));
    }
}

/// The same recording through the `vitalcore analyze` CLI, one sample per batch.
#[cfg(feature = "cli")]
#[test]
fn session_matches_cli_analysis() {
    let path = cache_dir().join("recordings/heartpy_data1.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalcore"))
        .args(["analyze", "--signal", "ppg", "--rate", "100", "--input"])
        .arg(&path)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    let x = ppg_100hz();
    let dir = tempfile::tempdir().expect("tmp");
    let r = run(
        &open(dir.path()),
        CheckKind::PpgRhythm,
        "ppg",
        &x,
        100.0,
        &Cuts::Every(1),
        &[0.0],
    );
    let cli_peaks: Vec<u64> = cli["peaks"]
        .as_array()
        .expect("peaks")
        .iter()
        .map(|p| p.as_u64().expect("index"))
        .collect();
    assert_eq!(r.peaks, cli_peaks);
    let cli_features: BTreeMap<String, f64> = cli["features"]
        .as_object()
        .expect("features")
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
        .collect();
    assert_eq!(r.check.features.len(), cli_features.len());
    for (k, v) in &cli_features {
        let ours = r.check.features[k];
        // serde_json's default float parser is not correctly rounded: allow its last ulp.
        assert!(
            (ours - v).abs() <= 4.0 * f64::EPSILON * v.abs(),
            "{k}: {ours} vs {v}"
        );
    }
}
