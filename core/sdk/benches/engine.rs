//! `finish()` latency of a 60 s PPG check at 100 Hz: features, quality gate, prediction and
//! the encrypted commit (check + outbox record in one transaction), on a real recording.
//! Compared in the same run with the bare one-shot analysis (`vitalcore_signal::analyze_ppg`),
//! which is what an app would call without the engine, to show what the engine adds.
//!
//! Run: `cargo bench --locked -p vitalcore --bench engine` (or `make bench`).

use std::path::PathBuf;
use std::time::Instant;

use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::signal::analyze_ppg;
use vitalcore::{CheckKind, Config, Durability, PredictionOutcome, SampleBatch, Vitalcore};

fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

fn ppg_60s() -> Vec<f64> {
    let path = cache_dir().join("recordings/heartpy_data3.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `make data` first",
            path.display()
        )
    });
    let mut x: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    x.truncate(6000);
    assert_eq!(x.len(), 6000, "recording shorter than 60 s");
    x
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&us, 0.50), percentile(&us, 0.99));
    println!(
        "{name:<44} n={:<5} p50 {p50:>8.0} us   p99 {p99:>8.0} us   p99.9 {:>8.0} us   max {:>8.0} us",
        us.len(),
        percentile(&us, 0.999),
        us[us.len() - 1]
    );
    (p50, p99)
}

/// `finish()` latencies (total and commit, us) of `iterations` checks in a store under `dir`.
fn run_finish(
    dir: &std::path::Path,
    durability: Durability,
    x: &[f64],
    iterations: usize,
) -> (Vec<f64>, Vec<f64>, String) {
    let warmup = 20;
    let keys = InMemoryKeyProvider::new([3; 32]);
    let engine = Vitalcore::open(Config::new(dir).durability(durability), &keys).expect("open");
    let mut finish = Vec::with_capacity(iterations);
    let mut commit = Vec::with_capacity(iterations);
    let mut outcome = None;
    for i in 0..iterations + warmup {
        let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
        let start = 1_764_000_000.0 + i as f64 * 60.0;
        s.push_samples("ppg", SampleBatch::uniform(start, 100.0, x.to_vec()))
            .expect("push");
        let t = Instant::now();
        let r = s.finish().expect("finish");
        let us = t.elapsed().as_secs_f64() * 1e6;
        if i >= warmup {
            finish.push(us);
            commit.push(r.check.timings.commit_us as f64);
        }
        outcome = Some(r.check.prediction);
    }
    engine.shutdown().expect("shutdown");
    let model = match outcome {
        Some(PredictionOutcome::Predicted {
            model_name,
            model_version,
            ..
        }) => format!("model {model_name} {model_version}"),
        Some(o) => format!("no model ran ({o:?})"),
        None => "no result".into(),
    };
    (finish, commit, model)
}

fn main() {
    let x = ppg_60s();
    let iterations = 500;
    let warmup = 20;

    let mut baseline = Vec::with_capacity(iterations);
    for i in 0..iterations + warmup {
        let t = Instant::now();
        let a = analyze_ppg(&x, 100.0).expect("analysis");
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert!(!a.peaks.is_empty());
        if i >= warmup {
            baseline.push(us);
        }
    }
    // The shipped default (AppCrash: the commit reaches the WAL file, flushed at checkpoints)
    // and PowerLoss (every commit waits for an fsync), both on disk, then the default on tmpfs
    // where a flush costs nothing: what the engine itself costs.
    // The default runs long enough for its WAL to pass the checkpoint threshold (1000 pages)
    // several times, so checkpoints are inside the measured tail.
    let dir = tempfile::tempdir().expect("tmp");
    let (finish, commit, model) = run_finish(dir.path(), Durability::AppCrash, &x, 4 * iterations);
    println!("60 s PPG at 100 Hz (heartpy data3), {model}");
    let (b50, b99) = summary("analyze_ppg (one-shot, no storage)", baseline);
    let (f50, f99) = summary("finish, default durability (AppCrash), disk", finish);
    summary("  of which encrypted commit", commit);
    println!(
        "ratio finish / analyze_ppg: p50 {:.2}x, p99 {:.2}x; target p99 < 5000 us: {}",
        f50 / b50,
        f99 / b99,
        if f99 < 5000.0 { "met" } else { "NOT met" }
    );
    let dir = tempfile::tempdir().expect("tmp");
    let (finish, commit, _) = run_finish(dir.path(), Durability::PowerLoss, &x, iterations);
    summary("finish, Durability::PowerLoss, disk", finish);
    summary("  of which encrypted commit + fsync", commit);
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).expect("tmpfs dir");
        let (finish, commit, _) = run_finish(dir.path(), Durability::AppCrash, &x, iterations);
        summary("finish, store on tmpfs (no flush cost)", finish);
        summary("  of which encrypted commit", commit);
    }
}
