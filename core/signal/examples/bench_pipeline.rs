//! Times the full feature pipeline (`analyze_ecg` / `analyze_ppg`: filtering, beat
//! detection, RR correction, HRV, quality, windows) on one recording and prints JSON.
//!
//! Usage: `cargo run --release -p vitalcore-signal --example bench_pipeline -- \
//!         ecg|ppg RATE_HZ FILE.csv [ITERATIONS]` (one value per line).
//! Driven by `scripts/bench_signal.py`, which times NeuroKit2 on the same file.

use std::time::Instant;

use vitalcore_signal::{analyze_ecg, analyze_ppg, CardiacAnalysis, SignalError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: bench_pipeline ecg|ppg RATE_HZ FILE.csv [ITERATIONS]".into());
    }
    let rate: f64 = args[2].parse()?;
    let text = std::fs::read_to_string(&args[3])?;
    let x = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse::<f64>())
        .collect::<Result<Vec<f64>, _>>()?;
    let iterations: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let run = |x: &[f64]| -> Result<CardiacAnalysis, SignalError> {
        match args[1].as_str() {
            "ecg" => analyze_ecg(x, rate),
            _ => analyze_ppg(x, rate),
        }
    };
    // Warm-up, and the result reported for the output comparison.
    let result = run(&x)?;
    let mut times_us = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let a = run(std::hint::black_box(&x))?;
        times_us.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(a);
    }
    times_us.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "samples": x.len(),
        "rate_hz": rate,
        "iterations": iterations,
        "median_us": times_us[times_us.len() / 2],
        "min_us": times_us[0],
        "peaks": result.peaks,
        "features": result.features,
    });
    println!("{out}");
    Ok(())
}
