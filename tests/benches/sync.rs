//! Device-side sync cost against the real `vitalcore-server` on loopback: bytes on the wire per
//! check record, records per second one device syncs, and device CPU time per record.
//!
//! The server runs on its own runtime threads; the device (encrypted store, anonymization,
//! gzip, HTTP) runs on one current-thread runtime on one OS thread, whose CPU time is read
//! from `/proc/thread-self/schedstat`, so server work is not counted as device work.
//!
//! Baseline, in the same run: what an app would otherwise write, one `POST` per record of the
//! same anonymized record as a one-record batch, gzipped (the server takes compressed bodies
//! only). The records are anonymized beforehand, so the baseline does not even pay for
//! reading the encrypted store or anonymizing; it pays for JSON, gzip and HTTP.
//!
//! Records are the engine's own outbox payloads of real checks (heartpy PPG, MIT-BIH ECG from
//! `.cache/recordings`), each copy with its feature values perturbed so that compression sees
//! distinct numbers, as it would across a user's checks.
//!
//! `VITALCORE_BENCH_QUICK=1`: fewer records. With `VITALCORE_TEST_PG_URL` set (as `make bench`
//! does), PostgreSQL is measured too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::*;
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::Purpose;
use vitalcore::sync::SyncConfig;
use vitalcore::{CheckKind, Config, SampleBatch, Vitalcore};
use vitalcore_protocol::{ConsentPurpose, SyncBatch, BATCH_SCHEMA};

fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"))
}

fn recording(name: &str) -> Vec<f64> {
    let path = cache_dir().join("recordings").join(format!("{name}.csv"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): run `make data` first", path.display()))
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect()
}

/// The engine's outbox payloads for a 60 s PPG and a 60 s ECG check on real recordings.
fn engine_payloads() -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let keys = InMemoryKeyProvider::new([3; 32]);
    let engine = Vitalcore::open(
        Config::new(dir.path()).outbox_purpose("model_training"),
        &keys,
    )
    .unwrap();
    let ppg = recording("heartpy_data3");
    let ecg = recording("scipy_mitdb_ecg");
    for (kind, ch, rate, x) in [
        (CheckKind::PpgRhythm, "ppg", 100.0, &ppg[..6000]),
        (CheckKind::EcgRhythm, "ecg", 360.0, &ecg[..21_600]),
    ] {
        let s = engine.start_check(kind).unwrap();
        s.push_samples(ch, SampleBatch::uniform(1_764_000_000.0, rate, x.to_vec()))
            .unwrap();
        s.finish().unwrap();
    }
    engine.shutdown().unwrap();
    drop(engine);
    let store = vitalcore::store::Store::open(
        vitalcore::store::StoreConfig::new(dir.path().join(vitalcore::config::STORE_FILE)),
        &keys,
    )
    .unwrap();
    store
        .outbox_due(&[training()], i64::MAX, 10)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

fn perturbed(templates: &[serde_json::Value], i: usize) -> Vec<u8> {
    let mut v = templates[i % templates.len()].clone();
    if let Some(f) = v.get_mut("features").and_then(|f| f.as_object_mut()) {
        for (k, x) in f.iter_mut() {
            if let Some(n) = x.as_f64() {
                let jitter = 1.0 + ((i * 7919 + k.len() * 104_729) % 10_007) as f64 * 1e-5;
                *x = serde_json::json!(n * jitter);
            }
        }
    }
    v["day"] = serde_json::json!(20_000 + (i / 50) as i64);
    serde_json::to_vec(&v).unwrap()
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux) is needed to attribute CPU time")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("schedstat format")
}

fn tune(c: SyncConfig) -> SyncConfig {
    c.max_records(500).timeout(Duration::from_secs(60))
}

struct Figures {
    records: usize,
    wall: Duration,
    cpu_ns: u64,
    body_bytes: u64,
}

impl Figures {
    fn per_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }
    fn cpu_us(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.records as f64
    }
    fn bytes(&self) -> f64 {
        self.body_bytes as f64 / self.records as f64
    }
}

fn run(db: Db, n: usize, templates: &[serde_json::Value]) -> (Figures, Figures) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt.block_on(Server::start(db, "eu"));
    let device_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let purpose: Purpose = training();

    // vitalcore: batches of 500, gzip, idempotency keys, ack-then-delete.
    let ours = device_rt.block_on(async {
        let d = Device::new(0, &server, server.url(), tune).await;
        d.consent(&purpose, true);
        for i in 0..n {
            d.enqueue_raw(&purpose, perturbed(templates, i));
        }
        // Counted from here: the run includes the one region check (`GET /readyz`).
        let cpu0 = thread_cpu_ns();
        let t0 = Instant::now();
        let report = d.client.sync_now().await.unwrap();
        let wall = t0.elapsed();
        let cpu = thread_cpu_ns() - cpu0;
        assert_eq!(report.records_acked, n, "not everything was acknowledged");
        Figures {
            records: n,
            wall,
            cpu_ns: cpu,
            body_bytes: report.bytes_sent,
        }
    });
    let stored = server_rt.block_on(server.records(ConsentPurpose::ModelTraining));
    assert_eq!(stored.len(), n);

    // Baseline: one plain-JSON POST per (already anonymized) record.
    let base = device_rt.block_on(async {
        let d = Device::new(1, &server, server.url(), tune).await;
        let a = d.anonymizer();
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let rec = a
                    .anonymize(
                        &d.subject,
                        &purpose,
                        &(i as u64).to_be_bytes(),
                        &perturbed(templates, i),
                    )
                    .unwrap();
                let proof = a.subject_proof(&rec.subject);
                serde_json::to_vec(&SyncBatch {
                    schema: BATCH_SCHEMA,
                    idempotency_key: format!("baseline-{i:012}"),
                    region: "eu".into(),
                    consent: vec![ConsentPurpose::ModelTraining],
                    subject_proofs: [(rec.subject.clone(), proof)].into_iter().collect(),
                    records: vec![rec],
                    labels: Vec::new(),
                })
                .unwrap()
            })
            .collect();
        let http = reqwest::Client::new();
        let url = format!("{}/v1/batches", server.url());
        let cpu0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut bytes = 0u64;
        for b in bodies {
            // The server takes gzip or zstd bodies only; gzip at the same level as the SDK.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&b).unwrap();
            let b = gz.finish().unwrap();
            bytes += b.len() as u64;
            let r = http
                .post(&url)
                .header("authorization", format!("Bearer {}", d.credential))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(b)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "baseline upload refused: {}",
                r.status()
            );
            r.bytes().await.unwrap();
        }
        Figures {
            records: n,
            wall: t0.elapsed(),
            cpu_ns: thread_cpu_ns() - cpu0,
            body_bytes: bytes,
        }
    });
    let stored = server_rt.block_on(server.records(ConsentPurpose::ModelTraining));
    assert_eq!(stored.len(), 2 * n);
    drop(server);
    (ours, base)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let quick = std::env::var_os("VITALCORE_BENCH_QUICK").is_some();
    let n = if quick { 1000 } else { 5000 };
    let templates = engine_payloads();
    assert_eq!(
        templates.len(),
        2,
        "expected a PPG and an ECG outbox record"
    );
    let mut dbs = vec![("sqlite", Db::Sqlite)];
    if std::env::var_os("VITALCORE_TEST_PG_URL").is_some() {
        dbs.push(("postgres", Db::Postgres));
    }
    println!("sync bench: {n} check records per run, one device, loopback server");
    println!("| server db | client | body bytes / record | records / s | device CPU / record |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, db) in dbs {
        let (ours, base) = run(db, n, &templates);
        println!(
            "| {name} | vitalcore (batch 500, gzip) | {:.0} | {:.0} | {:.1} us |",
            ours.bytes(),
            ours.per_s(),
            ours.cpu_us()
        );
        println!(
            "| {name} | one gzip JSON POST per record | {:.0} | {:.0} | {:.1} us |",
            base.bytes(),
            base.per_s(),
            base.cpu_us()
        );
        println!(
            "| {name} | ratio | {:.1}x fewer | {:.1}x | {:.1}x less |",
            base.bytes() / ours.bytes(),
            ours.per_s() / base.per_s(),
            base.cpu_us() / ours.cpu_us()
        );
    }
}
