//! Prometheus metrics, hand-rolled (a few atomics; no registry crate needed), served on their
//! own listener so the API port never exposes them. Labels carry error codes and statuses only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Metrics {
    batches_accepted: AtomicU64,
    batches_replayed: AtomicU64,
    records_stored: AtomicU64,
    inflight: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

static METRICS: Metrics = Metrics {
    batches_accepted: AtomicU64::new(0),
    batches_replayed: AtomicU64::new(0),
    records_stored: AtomicU64::new(0),
    inflight: AtomicU64::new(0),
    latency_buckets: [ZERO; BUCKETS.len()],
    latency_count: AtomicU64::new(0),
    latency_sum_us: AtomicU64::new(0),
    errors: Mutex::new(BTreeMap::new()),
};

/// Counts an error answer by its code.
pub fn count_error(code: &'static str) {
    if let Ok(mut m) = METRICS.errors.lock() {
        *m.entry(code).or_default() += 1;
    }
}

/// Counts an accepted batch, its stored records and its latency.
pub fn batch_accepted(records_stored: u64, elapsed: Duration) {
    METRICS.batches_accepted.fetch_add(1, Ordering::Relaxed);
    METRICS
        .records_stored
        .fetch_add(records_stored, Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    for (i, b) in BUCKETS.iter().enumerate() {
        if secs <= *b {
            METRICS.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    METRICS.latency_count.fetch_add(1, Ordering::Relaxed);
    METRICS.latency_sum_us.fetch_add(
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// Counts a replayed (duplicate-key) batch.
pub fn batch_replayed() {
    METRICS.batches_replayed.fetch_add(1, Ordering::Relaxed);
}

/// Marks a batch write in flight until the guard drops.
pub fn inflight() -> InflightGuard {
    METRICS.inflight.fetch_add(1, Ordering::Relaxed);
    InflightGuard(())
}

/// Decrements the in-flight gauge on drop.
#[derive(Debug)]
pub struct InflightGuard(());

impl Drop for InflightGuard {
    fn drop(&mut self) {
        METRICS.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The Prometheus text exposition.
pub fn render() -> String {
    let m = &METRICS;
    let mut out = String::new();
    let c = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    c(
        &mut out,
        "vitalcore_batches_accepted_total",
        "Batches written.",
        "counter",
        m.batches_accepted.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "vitalcore_batches_replayed_total",
        "Batches answered from the idempotency record.",
        "counter",
        m.batches_replayed.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "vitalcore_records_stored_total",
        "Feature records stored.",
        "counter",
        m.records_stored.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "vitalcore_batches_inflight",
        "Batch writes in progress.",
        "gauge",
        m.inflight.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP vitalcore_batch_duration_seconds Accepted batch latency.\n# TYPE vitalcore_batch_duration_seconds histogram");
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "vitalcore_batch_duration_seconds_bucket{{le=\"{b}\"}} {}",
            m.latency_buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = m.latency_count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "vitalcore_batch_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "vitalcore_batch_duration_seconds_sum {}",
        m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "vitalcore_batch_duration_seconds_count {count}");
    let _ = writeln!(out, "# HELP vitalcore_errors_total Error answers by code.\n# TYPE vitalcore_errors_total counter");
    if let Ok(errors) = m.errors.lock() {
        for (code, n) in errors.iter() {
            let _ = writeln!(out, "vitalcore_errors_total{{code=\"{code}\"}} {n}");
        }
    }
    out
}

/// The router of the metrics listener.
pub fn router() -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                render(),
            )
        }),
    )
}
