//! Shared helpers of the validation tests: the cache `make data` fills, and beat matching.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `$VITALCORE_CACHE`, or `<repo>/.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the validation data is missing, run `make data` first",
            path.display()
        )
    })
}

/// A recording written by `scripts/fetch_data.py`.
#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    pub signal: String,
    pub rate_hz: f64,
    pub times_s: Option<Vec<f64>>,
    pub values: Vec<f64>,
    pub meta: Value,
    pub reference: Value,
}

pub fn load(dir: &str, name: &str) -> Recording {
    let base = cache_dir();
    let meta: Value = serde_json::from_str(&read(&base.join(dir).join(format!("{name}.json"))))
        .expect("sidecar written by fetch_data.py is JSON");
    let csv = read(&base.join(dir).join(format!("{name}.csv")));
    let (mut times, mut values) = (Vec::new(), Vec::new());
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<f64> = line
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<f64>()
                    .expect("fetch_data.py writes numbers")
            })
            .collect();
        match cols.as_slice() {
            [v] => values.push(*v),
            [t, v] => {
                times.push(*t);
                values.push(*v);
            }
            _ => panic!("unexpected row in {name}.csv"),
        }
    }
    let reference: Value =
        serde_json::from_str(&read(&base.join("reference").join(format!("{name}.json"))))
            .expect("reference written by fetch_data.py is JSON");
    Recording {
        name: name.to_string(),
        signal: meta["signal"]
            .as_str()
            .expect("signal in sidecar")
            .to_string(),
        rate_hz: meta["rate_hz"].as_f64().expect("rate in sidecar"),
        times_s: (!times.is_empty()).then_some(times),
        values,
        meta,
        reference,
    }
}

pub fn peaks_of(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("peaks array")
        .iter()
        .map(|p| p.as_u64().expect("peak index") as usize)
        .collect()
}

/// F1 of `found` against `truth` (both sorted sample indices) with a tolerance in samples;
/// one-to-one greedy matching in time order.
pub fn f1(found: &[usize], truth: &[usize], tol: usize) -> f64 {
    let (mut i, mut j, mut tp) = (0, 0, 0usize);
    while i < found.len() && j < truth.len() {
        let (a, b) = (found[i], truth[j]);
        if a.abs_diff(b) <= tol {
            tp += 1;
            i += 1;
            j += 1;
        } else if a < b {
            i += 1;
        } else {
            j += 1;
        }
    }
    if found.is_empty() && truth.is_empty() {
        return 1.0;
    }
    2.0 * tp as f64 / (found.len() + truth.len()) as f64
}

pub fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}
