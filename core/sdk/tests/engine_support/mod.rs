//! Shared helpers of the engine tests: real recordings from the cache `make data` fills, an
//! engine on a fresh temporary directory, and a way to look into the store file it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::{Purpose, Store, StoreConfig};
use vitalcore::{Config, Vitalcore};

/// Start of the recordings in the tests: 2025-11-24 16:00 UTC, in seconds.
pub const T0_S: f64 = 1_764_000_000.0;

/// `$VITALCORE_CACHE`, or `<repo>/.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

/// One-column recording (`recordings/<name>.csv`) written by `scripts/fetch_data.py`.
pub fn recording(name: &str) -> Vec<f64> {
    let path = cache_dir().join("recordings").join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the recordings are missing, run `make data` first",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect()
}

/// heartpy data1: 24.8 s of fingertip PPG at 100 Hz.
pub fn ppg_100hz() -> Vec<f64> {
    recording("heartpy_data1")
}

/// MIT-BIH record (first 300 s) at 360 Hz as extracted from the scipy wheel.
pub fn mitdb_ecg() -> Vec<f64> {
    recording("scipy_mitdb_ecg")
}

/// 60 s of fingertip PPG, from heartpy data3 (100.4 Hz, analysed as 100 Hz).
pub fn ppg_60s() -> Vec<f64> {
    let mut x = recording("heartpy_data3");
    x.truncate(6000);
    assert_eq!(x.len(), 6000, "heartpy_data3 shorter than 60 s");
    x
}

pub fn keys() -> InMemoryKeyProvider {
    InMemoryKeyProvider::new([7; 32])
}

pub fn open(dir: &Path) -> Vitalcore {
    Vitalcore::open(Config::new(dir), &keys()).expect("open engine")
}

/// The store file the engine in `dir` wrote, opened directly (after the engine is gone or
/// alongside it: the store is multi-connection safe).
pub fn store(dir: &Path) -> Store {
    Store::open(
        StoreConfig::new(dir.join(vitalcore::config::STORE_FILE))
            .raw_retention(Some(std::time::Duration::from_secs(86_400))),
        &keys(),
    )
    .expect("open store")
}

/// Pending outbox records for `research` (the engine's default purpose).
pub fn outbox(store: &Store) -> Vec<vitalcore::store::OutboxRecord> {
    store
        .outbox_due(
            &[Purpose::new("research").expect("purpose")],
            i64::MAX,
            100_000,
        )
        .expect("outbox")
}
