//! Shared helpers of the store tests: realistic records and raw-file scanning.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::{
    CheckKind, CheckRecord, Prediction, RecordId, SignalQuality, Store, StoreConfig, SubjectId,
    Timings,
};

pub const KEY: [u8; 32] = [0x42; 32];

pub fn provider() -> InMemoryKeyProvider {
    InMemoryKeyProvider::new(KEY)
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("vitalcore.db")
}

pub fn open(dir: &Path) -> Store {
    Store::open(StoreConfig::new(db_path(dir)), &provider()).expect("open store")
}

pub fn subject(s: &str) -> SubjectId {
    SubjectId::new(s).expect("valid subject")
}

/// About 40 features: the v1 feature set's names, padded with extra band powers.
pub fn feature_names() -> Vec<String> {
    let mut names: Vec<String> = vitalcore::signal::feature_set::FEATURES_V1
        .iter()
        .map(|f| f.name.to_owned())
        .collect();
    let mut i = 0;
    while names.len() < 40 {
        names.push(format!("band_power_{i}"));
        i += 1;
    }
    names
}

/// A realistic check whose values derive from `seed`.
pub fn check(subject: &SubjectId, started_at_ms: i64, seed: u64) -> CheckRecord {
    let features: BTreeMap<String, f64> = feature_names()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, (seed as f64) * 1.5 + i as f64 * 0.25 + 60.0))
        .collect();
    let mut session = BTreeMap::new();
    session.insert("device".to_owned(), "Pixel 8".to_owned());
    session.insert("sensor".to_owned(), "camera_ppg".to_owned());
    session.insert("app_version".to_owned(), "1.4.2".to_owned());
    let mut outputs = BTreeMap::new();
    outputs.insert("p_afib".to_owned(), (seed % 100) as f64 / 100.0);
    CheckRecord {
        id: RecordId::random().expect("random id"),
        subject: subject.clone(),
        kind: CheckKind::new("ppg").expect("valid kind"),
        started_at_ms,
        ended_at_ms: started_at_ms + 60_000,
        session,
        features,
        quality: SignalQuality {
            score: 0.93,
            usable: true,
        },
        prediction: Some(Prediction {
            model_name: "afib".to_owned(),
            model_version: "1.2.0".to_owned(),
            outputs,
        }),
        timings: Timings {
            features_us: 1200,
            inference_us: 300,
            total_us: 1700,
        },
    }
}

/// Every file of the store: main file, WAL, shared memory.
pub fn store_files(dir: &Path) -> Vec<PathBuf> {
    let db = db_path(dir);
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .collect()
}

pub fn read_all(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    store_files(dir)
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
