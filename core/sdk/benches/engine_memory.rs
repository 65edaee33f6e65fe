//! Steady-state memory of a 24-hour background PPG capture at 100 Hz, simulated as fast as
//! the engine processes it (1 s batches, 60 s windows overlapping by 30 s, every window's
//! features stored encrypted). Resident memory is sampled from `/proc/self/status` every
//! simulated hour. The signal is a real recording (heartpy data3, 11 min) played in a loop.
//!
//! Run: `cargo bench --locked -p vitalcore --bench engine_memory` (or `make bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::{CaptureConfig, CheckKind, Config, EngineError, SampleBatch, Vitalcore};

fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn main() {
    let path = cache_dir().join("recordings/heartpy_data3.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `make data` first",
            path.display()
        )
    });
    let x: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let rss_start = rss_kib();
    let dir = tempfile::tempdir().expect("tmp");
    let keys = InMemoryKeyProvider::new([5; 32]);
    let engine = Vitalcore::open(Config::new(dir.path()), &keys).expect("open");
    let rss_open = rss_kib();
    let cap = engine
        .start_capture(CaptureConfig::new(CheckKind::PpgRhythm))
        .expect("capture");
    let rate = 100.0;
    // `VITALCORE_BENCH_HOURS` runs longer streams (default 24).
    let hours: usize = std::env::var("VITALCORE_BENCH_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    let t0 = 1_764_000_000.0;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut pushed_back = 0u64;
    let mut pos = 0usize;
    for second in 0..hours * 3600 {
        let batch: Vec<f64> = (0..100).map(|k| x[(pos + k) % x.len()]).collect();
        pos = (pos + 100) % x.len();
        loop {
            let b = SampleBatch::uniform(t0 + second as f64, rate, batch.clone());
            match cap.push_samples("ppg", b) {
                Ok(()) => break,
                Err(EngineError::Backpressure { .. }) => {
                    pushed_back += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("push: {e}"),
            }
        }
        if (second + 1) % 3600 == 0 {
            samples.push(rss_kib());
        }
    }
    let stats = cap.close();
    let wall = started.elapsed();
    let rss_end = rss_kib();
    println!("{hours} h simulated PPG capture at 100 Hz, 60 s windows / 30 s overlap");
    println!(
        "windows stored {}, failed {}, pushes refused with backpressure {}, wall time {:.1} s ({:.0}x real time)",
        stats.windows_stored,
        stats.windows_failed,
        pushed_back,
        wall.as_secs_f64(),
        (hours * 3600) as f64 / wall.as_secs_f64()
    );
    println!(
        "RSS before open {:.1} MiB, after open {:.1} MiB",
        rss_start as f64 / 1024.0,
        rss_open as f64 / 1024.0
    );
    let line: Vec<String> = samples
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    println!("RSS per simulated hour (MiB): {}", line.join(" "));
    let first = samples[0] as f64 / 1024.0;
    let max = samples.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
    let last = samples[samples.len() - 1] as f64 / 1024.0;
    println!(
        "hour 1 {first:.1} MiB, hour {hours} {last:.1} MiB, max {max:.1} MiB, growth hour 1 -> {hours} {:+.1} MiB; engine share (max - before open) {:.1} MiB; after close {:.1} MiB",
        last - first,
        max - rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
    engine.shutdown().expect("shutdown");
}
