//! The engine's own user-facing API against the real `vitalcore-server`: checks on real
//! recordings flow through the engine's outbox to the server exactly once, consent withdrawal
//! and deletion reach the server even after the device was offline and restarted, the export
//! holds everything, the Wi-Fi / charging policies hold uploads, and outcome labels reach the
//! training export with their checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::*;
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::{Store, StoreConfig};
use vitalcore::sync::{ModelPoll, SyncError};
use vitalcore::{
    CheckKind, Config, DataExport, EngineError, Label, PredictionOutcome, SampleBatch,
    ServerErasure, SyncOptions, Vitalcore,
};
use vitalcore_protocol::{ConsentPurpose, FeatureRecord};

/// Start of the first check: deliberately not on an hour or day boundary, so the exact time
/// (which must never leave the device) is distinguishable from the coarsened one.
const T0_MS: i64 = 1_764_001_234_567;
const ROOT_KEY: [u8; 32] = [42; 32];

fn cache_dir() -> PathBuf {
    std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"))
}

fn recording(name: &str) -> Vec<f64> {
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

/// Real recordings cut into checks: (kind, channel, rate, samples). heartpy data1 (24.8 s
/// PPG), four 60 s pieces of heartpy data3 (PPG, analysed at 100 Hz) and five 60 s pieces of
/// the MIT-BIH record (ECG, 360 Hz).
fn recordings() -> Vec<(CheckKind, &'static str, f64, Vec<f64>)> {
    let mut out = vec![(
        CheckKind::PpgRhythm,
        "ppg",
        100.0,
        recording("heartpy_data1"),
    )];
    let long = recording("heartpy_data3");
    out.extend(
        long.chunks_exact(6000)
            .take(4)
            .map(|c| (CheckKind::PpgRhythm, "ppg", 100.0, c.to_vec())),
    );
    let ecg = recording("scipy_mitdb_ecg");
    out.extend(
        ecg.chunks_exact(21_600)
            .take(5)
            .map(|c| (CheckKind::EcgRhythm, "ecg", 360.0, c.to_vec())),
    );
    assert_eq!(out.len(), 10, "recordings shorter than expected");
    out
}

fn canary_subject(n: usize) -> String {
    format!("canary.engine.{n}@mail.example")
}

fn fast() -> SyncOptions {
    SyncOptions::new()
        .enrollment_token(ENROLL_TOKEN)
        .max_records(4)
        .max_attempts(4)
        .backoff(Duration::from_millis(10), Duration::from_millis(300))
        .timeout(Duration::from_secs(5))
}

fn engine_config(dir: &Path, n: usize, endpoint: &str) -> Config {
    Config::new(dir)
        .subject(canary_subject(n))
        .sync_endpoint(endpoint)
        .sync_region("eu")
        .raw_retention(Some(Duration::from_secs(86_400)))
}

fn open_engine(dir: &Path, n: usize, endpoint: &str, options: SyncOptions) -> Vitalcore {
    open_engine_with(engine_config(dir, n, endpoint), options)
}

fn open_engine_with(config: Config, options: SyncOptions) -> Vitalcore {
    let engine = Vitalcore::open(config, &InMemoryKeyProvider::new(ROOT_KEY)).expect("open engine");
    engine.set_sync_options(options);
    engine
}

/// Runs `recs` as health checks `i` hours apart; returns their ids.
fn run_checks(
    engine: &Vitalcore,
    recs: &[(CheckKind, &'static str, f64, Vec<f64>)],
    first_hour: i64,
) -> Vec<String> {
    recs.iter()
        .enumerate()
        .map(|(i, (kind, channel, rate, x))| {
            let start_s = (T0_MS + (first_hour + i as i64) * 3_600_000) as f64 / 1000.0;
            let s = engine.start_check(*kind).expect("start");
            s.push_samples(channel, SampleBatch::uniform(start_s, *rate, x.clone()))
                .expect("push");
            s.finish().expect("finish").check.id
        })
        .collect()
}

/// The engine's store file, opened alongside the engine (multi-connection safe).
fn store(dir: &Path) -> Store {
    Store::open(
        StoreConfig::new(dir.join(vitalcore::config::STORE_FILE)),
        &InMemoryKeyProvider::new(ROOT_KEY),
    )
    .expect("open store")
}

/// An address where nothing listens: the device is offline.
async fn dead_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Syncs until a run completes without error (faults may end runs early), bounded.
async fn sync_until_done(engine: &Vitalcore) -> vitalcore::SyncOutcome {
    let mut total = vitalcore::SyncOutcome::default();
    for _ in 0..60 {
        match engine.sync_now().await {
            Ok(o) => {
                total.uploads.records_acked += o.uploads.records_acked;
                total.uploads.labels_acked += o.uploads.labels_acked;
                total.uploads.batches_acked += o.uploads.batches_acked;
                total.uploads.records_quarantined += o.uploads.records_quarantined;
                total.erasures_delivered += o.erasures_delivered;
                total.erasures_pending = o.erasures_pending;
                return total;
            }
            Err(EngineError::Sync(SyncError::Unavailable { .. } | SyncError::Network(_))) => {}
            Err(e) => panic!("sync failed: {e}"),
        }
    }
    panic!("sync never completed");
}

/// The allow-listed features a check's upload must carry.
fn allowed(features: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let names: Vec<&str> = vitalcore::signal::FEATURES_V1
        .iter()
        .map(|f| f.name)
        .collect();
    features
        .iter()
        .filter(|(k, v)| names.contains(&k.as_str()) && v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn scan_for_canaries(captured: &[Captured], canaries: &[String]) {
    assert!(
        captured.iter().any(|c| c.path == "/v1/batches"),
        "the scan saw no batch body at all"
    );
    for c in captured {
        let text = String::from_utf8_lossy(&c.body);
        for canary in canaries {
            assert!(
                !text.contains(canary.as_str()),
                "a request body to {} carries an identifier or exact time",
                c.path
            );
        }
    }
}

async fn engine_checks_reach_the_server_exactly_once(db: Db) {
    let server = Server::start(db, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cycle(&[
        Fault::Pass,
        Fault::CutAfterCommit,
        Fault::Status500,
        Fault::CutDuringAnswer,
        Fault::TooMany(1),
        Fault::Reset,
        Fault::Drop,
    ]);
    let dir = tempfile::tempdir().unwrap();
    // The server's key is pinned: the region statement is verified before anything is sent.
    let engine = open_engine_with(
        engine_config(dir.path(), 0, &proxy.url())
            .sync_region_keys(vec![server.region_key_hex.clone()]),
        fast(),
    );
    let recs = recordings();
    let ids = run_checks(&engine, &recs, 0);

    // No consent yet: nothing goes out.
    let o = sync_until_done(&engine).await;
    assert_eq!(o.uploads.records_acked, 0);
    assert_eq!(server.counts().await.records, 0);

    engine.grant_consent("research", "v1").unwrap();
    let o = sync_until_done(&engine).await;
    assert_eq!(o.uploads.records_quarantined, 0);
    assert_eq!(store(dir.path()).outbox_counts().unwrap(), (0, 0));

    let on_server = server.records(ConsentPurpose::Research).await;
    assert_eq!(on_server.len(), ids.len(), "lost or duplicated records");
    let pseudonyms: std::collections::HashSet<&str> =
        on_server.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(
        pseudonyms.len(),
        1,
        "one subject, one pseudonym per purpose"
    );
    let record_ids: std::collections::HashSet<&str> =
        on_server.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(record_ids.len(), ids.len());
    for id in &ids {
        let local = engine.check(id).unwrap().unwrap();
        let want = allowed(&local.features);
        let matching: Vec<&FeatureRecord> = on_server
            .iter()
            .filter(|r| r.features == want && r.kind == local.kind.name())
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "check {id} not on the server exactly once"
        );
        let r = matching[0];
        assert_eq!(r.quality, local.quality.sqi);
        assert_eq!(r.study, "default");
        assert_eq!(r.feature_set, "v1");
        // Generalized time: the day of the check, never the exact time.
        assert_eq!(
            r.captured_hour,
            local.started_at_ms.div_euclid(86_400_000) * 86_400
        );
    }
    let cap = proxy.captured();
    let faults: std::collections::HashSet<Fault> = cap.iter().map(|c| c.fault).collect();
    assert!(faults.contains(&Fault::CutAfterCommit) && faults.contains(&Fault::CutDuringAnswer));
    let first = |prefix: &str| cap.iter().position(|c| c.path.starts_with(prefix)).unwrap();
    assert!(first("/v1/region?nonce=") < first("/v1/enroll"));
    assert!(first("/v1/enroll") < first("/v1/batches"));
    let mut canaries = vec![
        canary_subject(0),
        T0_MS.to_string(),
        (T0_MS / 1000).to_string(),
    ];
    canaries.extend(ids.iter().cloned());
    scan_for_canaries(&cap, &canaries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_checks_reach_the_server_exactly_once_sqlite() {
    engine_checks_reach_the_server_exactly_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_checks_reach_the_server_exactly_once_postgres() {
    engine_checks_reach_the_server_exactly_once(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_without_endpoint_or_enrollment_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Vitalcore::open(Config::new(dir.path()), &InMemoryKeyProvider::new(ROOT_KEY)).unwrap();
    assert!(matches!(
        engine.sync_now().await,
        Err(EngineError::Sync(SyncError::NoEndpoint))
    ));
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), 1, &server.url(), SyncOptions::new());
    assert!(matches!(
        engine.sync_now().await,
        Err(EngineError::Sync(SyncError::NotEnrolled))
    ));
    assert!(matches!(
        engine.grant_consent("marketing", "v1"),
        Err(EngineError::Privacy(_))
    ));
    assert!(matches!(
        engine.grant_consent("Research!", "v1"),
        Err(EngineError::Privacy(_))
    ));
}

/// Withdrawal while offline: local at once, erasure request kept across an app restart and
/// delivered by the first sync that reaches the server, before the uploads made after a new
/// grant (which must survive it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_offline_is_delivered_after_reopen_before_new_uploads() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let recs = recordings();
    {
        let engine = open_engine(dir.path(), 2, &server.url(), fast());
        engine.grant_consent("research", "v1").unwrap();
        run_checks(&engine, &recs[..3], 0);
        let o = engine.sync_now().await.unwrap();
        assert!(o.enrolled);
        assert_eq!(o.uploads.records_acked, 3);
    }
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 3);

    let offline = dead_endpoint().await;
    {
        let engine = open_engine(dir.path(), 2, &offline, fast());
        run_checks(&engine, &recs[3..5], 10);
        assert_eq!(store(dir.path()).outbox_counts().unwrap(), (2, 0));
        let c = engine.revoke_consent("research").unwrap();
        assert!(!c.granted);
        assert_eq!(c.policy_version, "v1");
        assert_eq!(
            store(dir.path()).outbox_counts().unwrap(),
            (0, 0),
            "queued records of the purpose dropped"
        );
        assert_eq!(engine.pending_erasures().unwrap(), 1);
        assert!(matches!(
            engine.sync_now().await,
            Err(EngineError::Sync(SyncError::Network(_)))
        ));
        assert_eq!(engine.pending_erasures().unwrap(), 1);
        // Granted again while still offline: new checks queue under the same pseudonym.
        engine.grant_consent("research", "v2").unwrap();
        run_checks(&engine, &recs[5..7], 20);
        let consents = engine.consents().unwrap();
        assert_eq!(
            consents
                .history
                .iter()
                .map(|c| (c.granted, c.policy_version.as_str()))
                .collect::<Vec<_>>(),
            vec![(true, "v1"), (false, "v1"), (true, "v2")]
        );
        assert_eq!(consents.current.len(), 1);
        assert!(consents.current[0].granted);
    }
    // The data from before the withdrawal is still on the server: the request waits.
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 3);

    let engine = open_engine(dir.path(), 2, &server.url(), fast());
    assert_eq!(engine.pending_erasures().unwrap(), 1, "kept across reopen");
    let o = engine.sync_now().await.unwrap();
    assert_eq!(o.erasures_delivered, 1);
    assert_eq!(o.erasures_pending, 0);
    assert_eq!(o.uploads.records_acked, 2);
    let left = server.records(ConsentPurpose::Research).await;
    assert_eq!(
        left.len(),
        2,
        "only the records made after the new grant remain"
    );
    assert_eq!(server.counts().await.records, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_my_data_online_erases_both_sides_and_rotates_the_pseudonym() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let recs = recordings();
    let engine = open_engine(dir.path(), 3, &server.url(), fast());
    engine.grant_consent("research", "v1").unwrap();
    engine.grant_consent("model_training", "v1").unwrap();
    let ids = run_checks(&engine, &recs[..3], 0);
    engine
        .add_label(
            &ids[0],
            Label {
                name: "afib".into(),
                value: 0.0,
                source: "clinician".into(),
                recorded_at_ms: T0_MS,
            },
        )
        .unwrap();
    assert_eq!(engine.labels(&ids[0]).unwrap().len(), 1);
    engine.sync_now().await.unwrap();
    let before = server.records(ConsentPurpose::Research).await;
    assert_eq!(before.len(), 3);

    let report = engine.delete_my_data().await.unwrap();
    // Two purposes were ever granted: two pseudonyms to erase.
    assert_eq!(report.server, ServerErasure::Confirmed { requests: 2 });
    assert!(report.keys_destroyed >= 2, "care key and pseudonym secret");
    assert_eq!(server.counts().await.records, 0);
    assert!(engine.checks(i64::MIN, i64::MAX, None).unwrap().is_empty());
    // Erased, not unreadable: the labels are gone, and asking for them is not an error.
    assert_eq!(
        engine.labels(&ids[0]).expect("labels after erasure"),
        vec![]
    );
    assert!(engine.raw_samples(&ids[0]).unwrap().is_empty());
    let export: DataExport = serde_json::from_str(&engine.export_my_data().unwrap()).unwrap();
    assert!(export.checks.is_empty());
    assert_eq!(export.consents.len(), 2, "consent history is the record");

    // Consent still stands: new checks go out under a new, unlinkable pseudonym.
    run_checks(&engine, &recs[3..4], 30);
    engine.sync_now().await.unwrap();
    let after = server.records(ConsentPurpose::Research).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].subject, before[0].subject);
}

/// A server that accepts connections and never answers.
async fn blackhole() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            held.push(c);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_my_data_offline_is_local_at_once_and_the_server_request_waits() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let recs = recordings();
    {
        let engine = open_engine(dir.path(), 4, &server.url(), fast());
        engine.grant_consent("research", "v1").unwrap();
        run_checks(&engine, &recs[..2], 0);
        engine.sync_now().await.unwrap();
    }
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 2);

    // A network that hangs: the local deletion is complete while the request is stuck.
    let (hang, task) = blackhole().await;
    {
        let engine = open_engine(
            dir.path(),
            4,
            &hang,
            fast().timeout(Duration::from_secs(600)),
        );
        run_checks(&engine, &recs[2..3], 10);
        let delete = engine.delete_my_data();
        tokio::pin!(delete);
        let st = store(dir.path());
        let local_gone = async {
            loop {
                let (pending, _) = st.outbox_counts().unwrap();
                if pending == 0 && engine.checks(i64::MIN, i64::MAX, None).unwrap().is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = &mut delete => panic!("delete finished against a silent server: {r:?}"),
            () = local_gone => {}
        }
        assert_eq!(st.pending_erasures().unwrap().len(), 1);
    }
    task.abort();

    // Unreachable (refused): the report says the request waits.
    let offline = dead_endpoint().await;
    {
        let engine = open_engine(dir.path(), 4, &offline, fast());
        let r = engine.delete_my_data().await.unwrap();
        assert_eq!(r.server, ServerErasure::Pending { requests: 1 });
        assert_eq!(r.rows_deleted, 0, "nothing left locally");
    }
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 2);

    let engine = open_engine(dir.path(), 4, &server.url(), fast());
    let o = engine.sync_now().await.unwrap();
    assert_eq!(o.erasures_delivered, 1);
    assert_eq!(server.counts().await.records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_my_data_of_a_never_enrolled_device_needs_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), 5, &dead_endpoint().await, fast());
    engine.grant_consent("research", "v1").unwrap();
    run_checks(&engine, &recordings()[..1], 0);
    let r = engine.delete_my_data().await.unwrap();
    assert_eq!(r.server, ServerErasure::NotNeeded);
    assert!(r.rows_deleted >= 1);
    assert_eq!(store(dir.path()).outbox_counts().unwrap(), (0, 0));
    assert!(engine.checks(i64::MIN, i64::MAX, None).unwrap().is_empty());
    assert_eq!(engine.pending_erasures().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_every_record_of_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), 6, &dead_endpoint().await, fast());
    engine.grant_consent("research_sleep", "v3").unwrap();
    engine.revoke_consent("research_sleep").unwrap();
    let recs = recordings();
    let mut results = Vec::new();
    for (i, (kind, channel, rate, x)) in recs.iter().enumerate().take(3) {
        let s = engine.start_check(*kind).unwrap();
        let start_s = (T0_MS + i as i64 * 3_600_000) as f64 / 1000.0;
        s.push_samples(channel, SampleBatch::uniform(start_s, *rate, x.clone()))
            .unwrap();
        results.push((s.finish().unwrap(), x.clone()));
    }
    let label = Label {
        name: "stress_self_report".into(),
        value: 3.0,
        source: "self_report".into(),
        recorded_at_ms: T0_MS + 5,
    };
    engine
        .add_label(&results[1].0.check.id, label.clone())
        .unwrap();
    // One background-capture window.
    let long = recording("heartpy_data3");
    let cap = engine
        .start_capture(vitalcore::CaptureConfig::new(CheckKind::PpgRhythm).window_s(60.0))
        .unwrap();
    cap.push_samples(
        "ppg",
        SampleBatch::uniform(
            T0_MS as f64 / 1000.0 + 86_400.0,
            100.0,
            long[..6000].to_vec(),
        ),
    )
    .unwrap();
    let stats = cap.close();
    assert_eq!(stats.windows_stored, 1);

    let json = engine.export_my_data().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format"], "vitalcore-export");
    assert_eq!(v["version"], 1);
    assert_eq!(v["subject"], canary_subject(6));
    let export: DataExport = serde_json::from_str(&json).unwrap();
    assert!(
        serde_json::to_string_pretty(&export).unwrap() == json,
        "parse and re-serialize is not the identity"
    );
    assert_eq!(export.checks.len(), 3);
    assert_eq!(export.windows.len(), 1);
    for (e, (r, x)) in export.checks.iter().zip(&results) {
        assert_eq!(e.id, r.check.id);
        assert_eq!(e.kind, r.check.kind.name());
        assert_eq!(e.started_at_ms, r.check.started_at_ms);
        assert_eq!(e.ended_at_ms, r.check.ended_at_ms);
        assert_eq!(e.features, r.check.features);
        assert_eq!(e.quality.sqi, r.check.quality.sqi);
        assert_eq!(e.quality.threshold, Some(r.check.quality.threshold));
        assert_eq!(e.feature_set, "v1");
        // Raw retention is on: the samples come back as pushed (f32 storage).
        assert_eq!(e.raw.len(), 1);
        let want: Vec<f32> = x.iter().map(|&s| s as f32).collect();
        assert_eq!(e.raw[0].values, want);
    }
    assert!(export.checks[0].labels.is_empty());
    assert_eq!(export.checks[1].labels.len(), 1);
    let l = &export.checks[1].labels[0];
    assert_eq!(
        (
            l.name.as_str(),
            l.value,
            l.source.as_str(),
            l.recorded_at_ms
        ),
        ("stress_self_report", 3.0, "self_report", T0_MS + 5)
    );
    let w = &export.windows[0];
    assert_eq!(w.started_at_ms, T0_MS + 86_400_000);
    assert_eq!(w.kind, "ppg");
    assert_eq!(
        export
            .consents
            .iter()
            .map(|c| (c.purpose.as_str(), c.granted, c.policy_version.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("research_sleep", true, "v3"),
            ("research_sleep", false, "v3")
        ]
    );
}

async fn policy_holds_until_the_condition_is_true(wifi_only: bool) {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let options = fast().wifi_only(wifi_only).charging_only(!wifi_only);
    let engine = open_engine(dir.path(), 7, &proxy.url(), options);
    engine.grant_consent("research", "v1").unwrap();
    run_checks(&engine, &recordings()[..2], 0);
    // The condition the policy needs is false, the other one true.
    engine.set_device_conditions(!wifi_only, wifi_only);
    for _ in 0..3 {
        let o = engine.sync_now().await.unwrap();
        assert!(o.uploads.held_by_policy);
        assert_eq!(o.uploads.records_acked, 0);
    }
    assert!(proxy.captured().is_empty(), "nothing at all was sent");
    assert_eq!(store(dir.path()).outbox_counts().unwrap(), (2, 0));

    engine.set_device_conditions(true, true);
    let o = engine.sync_now().await.unwrap();
    assert!(!o.uploads.held_by_policy);
    assert_eq!(o.uploads.records_acked, 2);
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wifi_only_sends_nothing_until_on_wifi() {
    policy_holds_until_the_condition_is_true(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charging_only_sends_nothing_until_charging() {
    policy_holds_until_the_condition_is_true(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), 8, &dead_endpoint().await, fast());
    send(&engine.sync_now());
    send(&engine.delete_my_data());
    send(&engine.poll_model("m", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_poll_uses_etag_and_downloads_the_artifact() {
    use base64::Engine as _;
    let server = Server::start_opts(Db::Sqlite, "eu", true).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), 9, &server.url(), fast());
    assert!(matches!(
        engine.poll_model("rhythm-ppg", None).await,
        Err(EngineError::Sync(SyncError::ModelNotFound))
    ));
    let publish = |version: &str, artifact: &[u8]| {
        use vitalcore_protocol::*;
        let manifest = ModelManifest {
            schema: MANIFEST_SCHEMA,
            name: "rhythm-ppg".into(),
            version: version.parse().unwrap(),
            task: Task::Classification,
            input: InputSpec::Features {
                feature_set: "v1".into(),
                features: vec![FeatureInput {
                    name: "rmssd".into(),
                    unit: "ms".into(),
                    mean: 40.0,
                    scale: 20.0,
                }],
            },
            outputs: OutputSpec {
                output_name: "probabilities".into(),
                labels: vec!["regular".into(), "irregular".into()],
                threshold: Some(0.5),
            },
            min_sdk_version: "0.1.0".parse().unwrap(),
            artifact: ArtifactRef {
                sha256: String::new(),
                length: 0,
            },
            published_at: 1_790_000_000,
            expires_at: 1_900_000_000,
            self_test: None,
        };
        let body = serde_json::json!({
            "manifest": manifest,
            "artifact_base64": base64::engine::general_purpose::STANDARD.encode(artifact),
        });
        let url = format!("{}/v1/admin/models", server.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "model upload refused");
        }
    };
    let v1 = b"\x08\x07onnx bytes of version one".to_vec();
    publish("1.0.0", &v1).await;
    let (envelope, etag) = match engine.poll_model("rhythm-ppg", None).await.unwrap() {
        ModelPoll::Available {
            envelope,
            artifact,
            etag,
        } => {
            assert_eq!(artifact, v1);
            (envelope, etag)
        }
        other => panic!("expected a model, got {other:?}"),
    };
    let signed: vitalcore_protocol::SignedManifest = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(signed.signatures.len(), 1);
    assert_eq!(
        engine
            .poll_model("rhythm-ppg", Some(etag.clone()))
            .await
            .unwrap(),
        ModelPoll::NotModified
    );
    let v2 = b"\x08\x07onnx bytes of version two, longer".to_vec();
    publish("1.1.0", &v2).await;
    match engine
        .poll_model("rhythm-ppg", Some(etag.clone()))
        .await
        .unwrap()
    {
        ModelPoll::Available {
            artifact,
            etag: etag2,
            ..
        } => {
            assert_eq!(artifact, v2);
            assert_ne!(etag2, etag);
        }
        other => panic!("expected the new version, got {other:?}"),
    }
    assert!(matches!(
        engine.poll_model("../admin", None).await,
        Err(EngineError::Sync(SyncError::Config(_)))
    ));
}

/// Laplace noise on a chosen feature, an epsilon budget spent once per uploaded record (not
/// per attempt: the batch is cut after the server committed it and re-sent byte-identical),
/// a typed refusal when spent, and the spent budget kept across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dp_budget_is_spent_once_per_record_and_survives_reopen() {
    use vitalcore::privacy::{LocalDp, PrivacyError};
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    proxy.plan(&[Fault::CutAfterCommit]);
    let dir = tempfile::tempdir().unwrap();
    // Each record spends 1.0 of 2.5: two records fit.
    let dp = LocalDp::new(2.5)
        .unwrap()
        .feature("hr_mean", 30.0, 230.0, 1.0)
        .unwrap();
    let options = fast().local_dp(dp);
    let recs = recordings();
    let ids = {
        let engine = open_engine(dir.path(), 10, &proxy.url(), options.clone());
        engine.grant_consent("research", "v1").unwrap();
        let ids = run_checks(&engine, &recs[..3], 0);
        assert!(matches!(
            engine.sync_now().await,
            Err(EngineError::Sync(SyncError::Privacy(
                PrivacyError::BudgetExhausted
            )))
        ));
        ids
    };
    let on_server = server.records(ConsentPurpose::Research).await;
    assert_eq!(on_server.len(), 2, "two records fit the budget");
    assert_eq!(
        server.counts().await.batches,
        1,
        "the cut batch was replayed, not re-stored"
    );
    let st = store(dir.path());
    assert_eq!(
        st.outbox_counts().unwrap(),
        (1, 0),
        "the third waits on the device"
    );
    let subject = vitalcore::store::SubjectId::new(canary_subject(10)).unwrap();
    let research = vitalcore::store::Purpose::new("research").unwrap();
    assert_eq!(st.epsilon_spent(&subject, &research).unwrap(), 2.0);

    let engine = open_engine(dir.path(), 10, &proxy.url(), options);
    for id in &ids[..2] {
        let local = engine.check(id).unwrap().unwrap();
        let r = on_server
            .iter()
            .find(|r| r.features.get("rmssd") == local.features.get("rmssd"))
            .expect("record on the server");
        assert_ne!(r.features["hr_mean"], local.features["hr_mean"], "noised");
        let mut others = r.features.clone();
        others.remove("hr_mean");
        let mut want = allowed(&local.features);
        want.remove("hr_mean");
        assert_eq!(others, want, "only the chosen feature is noised");
    }
    assert!(matches!(
        engine.sync_now().await,
        Err(EngineError::Sync(SyncError::Privacy(
            PrivacyError::BudgetExhausted
        )))
    ));
    assert_eq!(server.records(ConsentPurpose::Research).await.len(), 2);
    assert_eq!(st.epsilon_spent(&subject, &research).unwrap(), 2.0);
}

/// The closed loop's last step on a device: the server publishes a new version of the default
/// model, signed with its own key; the device polls, downloads, verifies (key pinned in its
/// config) and uses it for the next check; an unchanged model costs one conditional request;
/// a bundle failing its self-test is refused and the installed update keeps serving, also
/// after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_update_from_the_server_is_verified_installed_and_used() {
    use base64::Engine as _;
    let server = Server::start_opts(Db::Sqlite, "eu", true).await;
    let key = server.model_key_hex.clone().expect("server signs models");
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let engine = Vitalcore::open(
            Config::new(dir.path())
                .sync_endpoint(server.url())
                .sync_region("eu")
                .model_public_keys(vec![key.clone()]),
            &InMemoryKeyProvider::new(ROOT_KEY),
        )
        .expect("open engine");
        // Model polls are authenticated: without a credential the first poll would fail with
        // NotEnrolled before the server could answer that nothing is published.
        engine.set_sync_options(fast());
        engine
    };
    let engine = open();
    let served_by = |engine: &Vitalcore| {
        let x: Vec<f64> = recording("heartpy_data3")[..6000].to_vec();
        let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
        s.push_samples("ppg", SampleBatch::uniform(T0_MS as f64 / 1000.0, 100.0, x))
            .expect("push");
        match s.finish().expect("finish").check.prediction {
            PredictionOutcome::Predicted { model_version, .. } => model_version,
            other => panic!("expected a prediction, got {other:?}"),
        }
    };
    assert_eq!(
        served_by(&engine),
        "1.0.0",
        "the bundled default serves first"
    );
    assert!(matches!(
        engine.update_model("rhythm-ppg").await,
        Err(EngineError::Sync(SyncError::ModelNotFound))
    ));

    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let artifact = std::fs::read(models.join("rhythm-ppg.onnx")).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("rhythm-ppg.manifest.json")).unwrap())
            .unwrap();
    let publish = |version: &str, break_self_test: bool| {
        let mut manifest = shipped.clone();
        manifest["version"] = version.into();
        if break_self_test {
            manifest["self_test"]["expected"][0] = 0.5.into();
            manifest["self_test"]["expected"][1] = 0.5.into();
        }
        let body = serde_json::json!({
            "manifest": manifest,
            "artifact_base64": base64::engine::general_purpose::STANDARD.encode(&artifact),
        });
        let url = format!("{}/v1/admin/models", server.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "model upload refused");
        }
    };
    publish("2.0.0", false).await;
    let installed = engine.update_model("rhythm-ppg").await.expect("update");
    assert_eq!(installed.map(|i| i.version), Some("2.0.0".to_string()));
    assert_eq!(served_by(&engine), "2.0.0");
    assert_eq!(engine.update_model("rhythm-ppg").await.expect("poll"), None);

    publish("2.1.0", true).await;
    assert!(matches!(
        engine.update_model("rhythm-ppg").await,
        Err(EngineError::Model(
            vitalcore::models::ModelError::SelfTestFailed
        ))
    ));
    assert_eq!(served_by(&engine), "2.0.0");
    drop(engine);
    let engine = open();
    assert_eq!(served_by(&engine), "2.0.0", "the update survives a restart");
}

/// Two profiles in one data directory: consent is per subject, so one subject's sync must
/// leave the other's queue alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subjects_sync_never_uploads_another_subjects_queue() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let recs = recordings();
    {
        let alice = open_engine(dir.path(), 11, &server.url(), fast());
        run_checks(&alice, &recs[..2], 0);
    }
    let bob = open_engine(dir.path(), 12, &server.url(), fast());
    bob.grant_consent("research", "v1").unwrap();
    let mine = run_checks(&bob, &recs[2..3], 5);
    let o = bob.sync_now().await.unwrap();
    assert_eq!(o.uploads.records_acked, 1);
    let on_server = server.records(ConsentPurpose::Research).await;
    assert_eq!(
        on_server.len(),
        1,
        "another subject's unconsented records went out"
    );
    let local = bob.check(&mine[0]).unwrap().unwrap();
    assert_eq!(on_server[0].features, allowed(&local.features));
    assert_eq!(store(dir.path()).outbox_counts().unwrap(), (2, 0));
}

fn label(name: &str, value: f64) -> Label {
    Label {
        name: name.into(),
        value,
        // Source and time stay on the device: both are canaries of the scan below.
        source: "canary-clinic-source".into(),
        recorded_at_ms: T0_MS + 77,
    }
}

/// Outcome labels recorded with `add_label` travel with the engine's own sync, through a
/// faulty network: exactly once, under the check's pseudonym and record id, consent-gated,
/// allow-listed class names only, also when the check itself was synced before the label.
async fn labels_reach_the_training_export_exactly_once(db: Db) {
    let server = Server::start(db, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cycle(&[
        Fault::Pass,
        Fault::CutAfterCommit,
        Fault::Status500,
        Fault::CutDuringAnswer,
        Fault::Reset,
    ]);
    let open = |dir: &Path, n: usize| {
        let engine = Vitalcore::open(
            Config::new(dir)
                .subject(canary_subject(n))
                .sync_endpoint(proxy.url())
                .sync_region("eu")
                .outbox_purpose("model_training"),
            &InMemoryKeyProvider::new(ROOT_KEY),
        )
        .expect("open engine");
        engine.set_sync_options(fast().upload_labels(["regular", "irregular"]));
        engine
    };
    let recs: Vec<_> = recordings()
        .into_iter()
        .filter(|r| r.0 == CheckKind::PpgRhythm)
        .take(4)
        .collect();
    assert_eq!(recs.len(), 4);

    // Device A consents; device B never does.
    let dir_a = tempfile::tempdir().unwrap();
    let a = open(dir_a.path(), 10);
    a.grant_consent("model_training", "v1").unwrap();
    let ids = run_checks(&a, &recs, 0);
    a.add_label(&ids[0], label("irregular", 1.0)).unwrap();
    a.add_label(&ids[1], label("regular", 1.0)).unwrap();
    // Not an allow-listed class, and a negative finding: both stay on the device.
    a.add_label(&ids[2], label("afib", 1.0)).unwrap();
    a.add_label(&ids[3], label("irregular", 0.0)).unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let b = open(dir_b.path(), 11);
    let ids_b = run_checks(&b, &recs[..2], 40);
    for id in &ids_b {
        b.add_label(id, label("irregular", 1.0)).unwrap();
    }

    let o = sync_until_done(&a).await;
    assert_eq!(o.uploads.records_quarantined, 0);
    let o_b = sync_until_done(&b).await;
    assert_eq!(
        (o_b.uploads.records_acked, o_b.uploads.labels_acked),
        (0, 0)
    );
    // Labelled after its check was synced: must still arrive, once.
    a.add_label(&ids[3], label("regular", 1.0)).unwrap();
    // A second class for an already labelled check: the server keeps the first.
    a.add_label(&ids[0], label("regular", 1.0)).unwrap();
    let o2 = sync_until_done(&a).await;
    assert_eq!(o2.uploads.records_acked, 0, "labels are not records");
    assert_eq!(store(dir_a.path()).outbox_counts().unwrap(), (0, 0));

    let export = server.training_export().await;
    assert_eq!(export.len(), ids.len(), "only A's records, each once");
    let want = [Some("irregular"), Some("regular"), None, Some("regular")];
    for (id, want) in ids.iter().zip(want) {
        let local = a.check(id).unwrap().unwrap();
        let features = allowed(&local.features);
        let rows: Vec<_> = export
            .iter()
            .filter(|(r, _)| r.features == features)
            .collect();
        assert_eq!(rows.len(), 1, "check {id} not exported exactly once");
        assert_eq!(rows[0].1.as_deref(), want, "label of check {id}");
    }
    let c = server.counts().await;
    assert_eq!(
        (c.records, c.labels),
        (4, 3),
        "B's labels and records stay on B; A's labels stored once"
    );
    // B keeps its labels and queue locally, untouched.
    assert_eq!(b.labels(&ids_b[0]).unwrap().len(), 1);
    assert_eq!(store(dir_b.path()).outbox_counts().unwrap().0, 4);

    let cap = proxy.captured();
    let faults: std::collections::HashSet<Fault> = cap.iter().map(|c| c.fault).collect();
    assert!(faults.contains(&Fault::CutAfterCommit) && faults.contains(&Fault::CutDuringAnswer));
    assert!(
        cap.iter()
            .any(|c| String::from_utf8_lossy(&c.body).contains("\"labels\":[{")),
        "no label went through the proxy"
    );
    let mut canaries = vec![
        canary_subject(10),
        canary_subject(11),
        T0_MS.to_string(),
        (T0_MS + 77).to_string(),
        (T0_MS / 1000).to_string(),
        "canary-clinic-source".into(),
        "afib".into(),
    ];
    canaries.extend(ids.iter().chain(&ids_b).cloned());
    scan_for_canaries(&cap, &canaries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_the_training_export_exactly_once_sqlite() {
    labels_reach_the_training_export_exactly_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_the_training_export_exactly_once_postgres() {
    labels_reach_the_training_export_exactly_once(Db::Postgres).await;
}

/// A forger that claims the device's region but cannot sign for a pinned key gets the region
/// question and nothing else: not the enrollment token, not an upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_refuses_an_endpoint_whose_region_statement_does_not_verify() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let keys = tempfile::tempdir().unwrap();
    let rogue = vitalcore_server::signing::Signer::load_or_create_dev(&keys.path().join("k"))
        .unwrap()
        .0;
    let forger = RegionForger::start("eu", move |nonce| rogue.sign_region("eu", nonce)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine_with(
        engine_config(dir.path(), 7, &forger.url())
            .sync_region_keys(vec![server.region_key_hex.clone()]),
        fast(),
    );
    engine.grant_consent("research", "v1").unwrap();
    run_checks(&engine, &recordings()[..1], 0);
    match engine.sync_now().await {
        Err(EngineError::Sync(SyncError::WrongRegion { expected, actual })) => {
            assert_eq!(expected, "eu");
            assert_eq!(actual, vitalcore::sync::UNVERIFIED_REGION);
        }
        other => panic!("expected a region refusal, got {other:?}"),
    }
    forger.assert_only_region_questions();
    assert_eq!(store(dir.path()).outbox_counts().unwrap(), (1, 0));

    // A malformed pinned key is a configuration error at open, not a silent fallback.
    let bad = Vitalcore::open(
        engine_config(dir.path(), 7, &forger.url()).sync_region_keys(vec!["abcd".into()]),
        &InMemoryKeyProvider::new(ROOT_KEY),
    );
    assert!(matches!(bad, Err(EngineError::InvalidConfig(_))));
}

/// A named study is consented to and queued as `research:<study>`, the spelling; its
/// checks reach the server filed under that study, and withdrawal under the same name erases
/// them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_study_purpose_is_named_research_colon_study() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine_with(
        engine_config(dir.path(), 8, &server.url()).outbox_purpose("research:sleep"),
        fast(),
    );
    let ids = run_checks(&engine, &recordings(), 0);
    let c = engine.grant_consent("research:sleep", "v2").unwrap();
    assert!(c.granted);
    assert_eq!(
        c.purpose, "research_sleep",
        "read back in the stored spelling"
    );
    sync_until_done(&engine).await;
    let on_server = server.records(ConsentPurpose::Research).await;
    assert_eq!(on_server.len(), ids.len());
    assert!(on_server.iter().all(|r| r.study == "sleep"));
    // Both spellings name one purpose.
    engine.grant_consent("research_sleep", "v2").unwrap();
    assert_eq!(engine.consents().unwrap().current.len(), 1);

    assert!(!engine.revoke_consent("research:sleep").unwrap().granted);
    let o = sync_until_done(&engine).await;
    assert_eq!(o.erasures_delivered, 1);
    assert!(server.records(ConsentPurpose::Research).await.is_empty());
    for bad in ["research:", "research:Sleep", "research:a:b"] {
        assert!(
            matches!(
                engine.grant_consent(bad, "v1"),
                Err(EngineError::Privacy(_))
            ),
            "{bad}"
        );
    }
}
