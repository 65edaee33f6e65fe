//! Devices against the real `vitalcore-server` (SQLite and PostgreSQL) through a fault proxy:
//! nothing lost, nothing twice, nothing unconsented, no identifier on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::HashMap;
use std::time::Duration;

use harness::*;
use vitalcore::sync::{SyncConfig, SyncError};
use vitalcore_protocol::{ConsentPurpose, SyncBatch};

/// Syncs until the device's outbox holds nothing but quarantined records (bounded rounds).
async fn drain(d: &Device) {
    for _ in 0..40 {
        let _ = d.client.sync_now().await;
        let (pending, _) = d.store.outbox_counts().unwrap();
        if pending == d.unconsented_pending() {
            return;
        }
    }
    panic!("outbox did not drain");
}

trait Pending {
    fn unconsented_pending(&self) -> u64;
}
impl Pending for Device {
    fn unconsented_pending(&self) -> u64 {
        // Research records are queued without consent in these tests and must stay queued.
        self.store
            .outbox_due(&[research()], i64::MAX, 100_000)
            .unwrap()
            .len() as u64
    }
}

fn exactly_once(
    server_records: &[vitalcore_protocol::FeatureRecord],
    expected: &[(String, String)],
) {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for r in server_records {
        *seen
            .entry((r.subject.clone(), r.record_id.clone()))
            .or_default() += 1;
    }
    for k in expected {
        assert_eq!(
            seen.get(k).copied().unwrap_or(0),
            1,
            "record lost or duplicated"
        );
    }
    assert_eq!(
        server_records.len(),
        expected.len(),
        "unexpected records on the server"
    );
}

async fn fleet(db: Db) {
    let server = Server::start(db, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cycle(&[
        Fault::Pass,
        Fault::Drop,
        Fault::Status500,
        Fault::CutAfterCommit,
        Fault::TooMany(1),
        Fault::Reset,
        Fault::CutDuringAnswer,
        Fault::Delay(150),
    ]);
    let mut devices = Vec::new();
    for n in 0..6 {
        devices.push(Device::new(n, &server, proxy.url(), fast).await);
    }
    let mut expected = Vec::new();
    for d in &devices {
        d.consent(&training(), true);
        let ids = d.enqueue(&training(), 25);
        let pseud = d.pseudonym(&training());
        expected.extend(ids.into_iter().map(|id| (pseud.clone(), id)));
        // Never consented: must stay on the device.
        d.enqueue(&research(), 3);
        // One poison record per device: quarantined, never blocking the rest.
        d.enqueue_raw(&training(), br#"{"kind":"ppg"}"#.to_vec());
    }
    let runs: Vec<_> = devices.iter().map(drain).collect();
    for r in runs {
        r.await;
    }
    exactly_once(
        &server.records(ConsentPurpose::ModelTraining).await,
        &expected,
    );
    assert!(server.records(ConsentPurpose::Research).await.is_empty());
    for d in &devices {
        assert_eq!(d.store.outbox_counts().unwrap(), (3, 1));
    }
    let cap = proxy.captured();
    let faults: std::collections::HashSet<_> = cap.iter().map(|c| c.fault).collect();
    assert!(faults.contains(&Fault::CutAfterCommit) && faults.contains(&Fault::CutDuringAnswer));
    let refs: Vec<&Device> = devices.iter().collect();
    assert_no_canary(&cap, &refs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_through_faults_exactly_once_sqlite() {
    fleet(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_through_faults_exactly_once_postgres() {
    fleet(Db::Postgres).await;
}

fn one_shot(c: SyncConfig) -> SyncConfig {
    fast(c).max_attempts(1)
}

/// A connection fault at each step of an upload ends the run (no process is killed here: the
/// device's store and client are closed and reopened from its data dir in the same process;
/// `sync_kill.rs` SIGKILLs a real device process); the retry re-sends the same batch under the
/// same key and the server stores it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_at_every_step_then_reopen_keeps_the_key_and_stores_once() {
    for fault in [
        Fault::Drop,
        Fault::Reset,
        Fault::CutAfterCommit,
        Fault::CutDuringAnswer,
    ] {
        let server = Server::start(Db::Sqlite, "eu").await;
        let proxy = Proxy::start(server.addr).await;
        let mut d = Device::new(0, &server, proxy.url(), one_shot).await;
        d.consent(&training(), true);
        let ids = d.enqueue(&training(), 7);
        proxy.plan(&[fault]);
        let err = d.client.sync_now().await;
        assert!(
            matches!(err, Err(SyncError::Unavailable { .. })),
            "{fault:?}"
        );
        assert_eq!(
            d.store.outbox_counts().unwrap(),
            (7, 0),
            "rows left before ack"
        );
        d.reopen();
        let report = d.client.sync_now().await.unwrap();
        assert_eq!(report.records_acked, 7);
        let pseud = d.pseudonym(&training());
        let expected: Vec<_> = ids.into_iter().map(|i| (pseud.clone(), i)).collect();
        exactly_once(
            &server.records(ConsentPurpose::ModelTraining).await,
            &expected,
        );
        let keys: std::collections::HashSet<String> = proxy
            .captured()
            .iter()
            .filter(|c| c.path == "/v1/batches")
            .map(|c| {
                serde_json::from_slice::<SyncBatch>(&c.body)
                    .unwrap()
                    .idempotency_key
            })
            .collect();
        assert_eq!(keys.len(), 1, "{fault:?}: a retry got a new key");
        assert_eq!(server.counts().await.batches, 1, "{fault:?}");
        assert_eq!(d.store.outbox_counts().unwrap(), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let d = Device::new(1, &server, proxy.url(), fast).await;
    d.consent(&training(), true);
    d.enqueue(&training(), 2);
    proxy.plan(&[Fault::TooMany(1)]);
    d.client.sync_now().await.unwrap();
    let posts: Vec<_> = proxy
        .captured()
        .into_iter()
        .filter(|c| c.path == "/v1/batches")
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts[1].at - posts[0].at >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_stops_uploads_drops_queue_and_erases_on_server() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let d = Device::new(2, &server, proxy.url(), fast).await;
    d.consent(&training(), true);
    d.enqueue(&training(), 4);
    d.client.sync_now().await.unwrap();
    assert_eq!(server.records(ConsentPurpose::ModelTraining).await.len(), 4);
    d.enqueue(&training(), 3);
    let receipt = d.client.revoke(&training(), "v1").await.unwrap().unwrap();
    assert_eq!(receipt.records_deleted, 4);
    assert_eq!(
        d.store.outbox_counts().unwrap(),
        (0, 0),
        "queued records dropped"
    );
    d.enqueue(&training(), 2);
    d.client.sync_now().await.unwrap();
    assert!(server
        .records(ConsentPurpose::ModelTraining)
        .await
        .is_empty());
    assert_eq!(d.store.outbox_counts().unwrap(), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_of_another_region_is_refused_before_any_upload() {
    let server = Server::start(Db::Sqlite, "us").await;
    let proxy = Proxy::start(server.addr).await;
    let d = Device::new(3, &server, proxy.url(), fast).await;
    d.consent(&training(), true);
    d.enqueue(&training(), 2);
    let err = d.client.sync_now().await;
    assert!(matches!(err, Err(SyncError::WrongRegion { .. })));
    assert!(proxy.captured().iter().all(|c| c.path != "/v1/batches"));
    assert_eq!(server.counts().await.records, 0);
}

/// With the server's key pinned, the signed region statement is asked for over a fresh nonce
/// and every record still arrives exactly once through the faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_region_key_verifies_the_statement_and_uploads_exactly_once() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    proxy.cycle(&[
        Fault::Pass,
        Fault::CutAfterCommit,
        Fault::Status500,
        Fault::CutDuringAnswer,
    ]);
    let d = Device::new(4, &server, proxy.url(), fast).await;
    let client = d.pinned_client(&proxy.url(), vec![server.region_key()]);
    d.consent(&training(), true);
    let ids = d.enqueue(&training(), 12);
    let mut done = false;
    for _ in 0..20 {
        if client.sync_now().await.is_ok() && d.store.outbox_counts().unwrap() == (0, 0) {
            done = true;
            break;
        }
    }
    assert!(done, "the outbox did not drain");
    let pseud = d.pseudonym(&training());
    let expected: Vec<(String, String)> = ids.into_iter().map(|id| (pseud.clone(), id)).collect();
    exactly_once(
        &server.records(ConsentPurpose::ModelTraining).await,
        &expected,
    );
    let cap = proxy.captured();
    let questions: Vec<&Captured> = cap
        .iter()
        .filter(|c| c.path.starts_with("/v1/region?nonce="))
        .collect();
    assert_eq!(
        questions.len(),
        1,
        "asked once per client, before the first upload"
    );
    let first_batch = cap.iter().position(|c| c.path == "/v1/batches").unwrap();
    let first_question = cap
        .iter()
        .position(|c| c.path.starts_with("/v1/region"))
        .unwrap();
    assert!(first_question < first_batch);
    assert_no_canary(&cap, &[&d]);
}

/// A device pinning the EU server's key refuses, before any upload or erasure request:
/// a server of another region (its own key, or even a pinned key that honestly says `us`),
/// a forger claiming `eu` under a key the device did not pin, a forger replaying a genuine EU
/// statement made for another nonce, and a forger naming the pinned key's id with another
/// key's signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_statement_not_signed_by_a_pinned_key_is_refused_before_anything_is_sent() {
    use vitalcore::sync::UNVERIFIED_REGION;
    let eu = Server::start(Db::Sqlite, "eu").await;
    let us = Server::start(Db::Sqlite, "us").await;
    let keys_dir = tempfile::tempdir().unwrap();
    let rogue = vitalcore_server::signing::Signer::load_or_create_dev(&keys_dir.path().join("r"))
        .unwrap()
        .0;

    let refused = |r: Result<vitalcore::sync::SyncReport, SyncError>, actual: &str| match r {
        Err(SyncError::WrongRegion {
            expected,
            actual: a,
        }) => {
            assert_eq!(expected, "eu");
            assert_eq!(a, actual);
        }
        other => panic!("expected a region refusal, got {other:?}"),
    };

    // Another region's server, with its own key: its statement does not verify.
    let proxy = Proxy::start(us.addr).await;
    let d = Device::new(5, &eu, proxy.url(), fast).await;
    d.consent(&training(), true);
    d.enqueue(&training(), 3);
    let client = d.pinned_client(&proxy.url(), vec![eu.region_key()]);
    refused(client.sync_now().await, UNVERIFIED_REGION);
    assert!(matches!(
        client.send_erasure(&d.pseudonym(&training())).await,
        Err(SyncError::WrongRegion { .. })
    ));
    // The same server with its key pinned too: verified, and it says `us`.
    let client = d.pinned_client(&proxy.url(), vec![eu.region_key(), us.region_key()]);
    refused(client.sync_now().await, "us");
    assert!(proxy
        .captured()
        .iter()
        .all(|c| c.path.starts_with("/v1/region?nonce=")));
    assert_eq!(us.counts().await.records, 0);

    // Forgers claiming `eu`.
    let rogue_key = hex::encode(rogue.public_key());
    let genuine_old = {
        // What the real EU server said to someone else's nonce.
        let r = reqwest::get(format!("{}/v1/region?nonce={}", eu.url(), "ab".repeat(16)))
            .await
            .unwrap();
        serde_json::from_slice::<vitalcore_protocol::RegionStatement>(&r.bytes().await.unwrap())
            .unwrap()
    };
    assert_eq!(genuine_old.region, "eu");
    let pinned_id = vitalcore::models::key_id(&eu.region_key());
    let forgeries: Vec<(&str, Box<Forge>)> = vec![
        ("own key", {
            let s = vitalcore_server::signing::Signer::from_pkcs8(&rogue_pkcs8(&keys_dir)).unwrap();
            Box::new(move |n: &str| s.sign_region("eu", n))
        }),
        ("replayed", {
            let old = genuine_old.clone();
            Box::new(move |_: &str| old.clone())
        }),
        ("pinned key id, other signature", {
            let s = vitalcore_server::signing::Signer::from_pkcs8(&rogue_pkcs8(&keys_dir)).unwrap();
            let id = pinned_id.clone();
            Box::new(move |n: &str| vitalcore_protocol::RegionStatement {
                key_id: id.clone(),
                ..s.sign_region("eu", n)
            })
        }),
    ];
    assert_ne!(rogue_key, eu.region_key_hex);
    for (what, forge) in forgeries {
        let forger = RegionForger::start("eu", forge).await;
        let client = d.pinned_client(&forger.url(), vec![eu.region_key()]);
        match client.sync_now().await {
            Err(SyncError::WrongRegion { actual, .. }) => {
                assert_eq!(actual, UNVERIFIED_REGION, "{what}")
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        assert!(client
            .send_erasure(&d.pseudonym(&training()))
            .await
            .is_err());
        forger.assert_only_region_questions();
        // Without pinned keys only the unsigned /readyz speaks, which the forger fakes: that
        // is why the keys matter over plain HTTP.
        let t = Duration::from_secs(5);
        vitalcore::sync::verify_region(&forger.url(), "eu", &[], t)
            .await
            .unwrap();
        assert!(
            vitalcore::sync::verify_region(&forger.url(), "eu", &[eu.region_key()], t)
                .await
                .is_err()
        );
    }
    // Nothing left the device: everything is still queued.
    assert_eq!(d.store.outbox_counts().unwrap(), (3, 0));
    assert_eq!(eu.counts().await.records, 0);
}

/// Makes the region statement a forger answers to a nonce.
type Forge = dyn Fn(&str) -> vitalcore_protocol::RegionStatement + Send + Sync;

fn rogue_pkcs8(dir: &tempfile::TempDir) -> Vec<u8> {
    std::fs::read(dir.path().join("r")).unwrap()
}

fn four_per_batch(c: SyncConfig) -> SyncConfig {
    fast(c).max_records(4)
}

fn six_hundred_bytes_per_batch(c: SyncConfig) -> SyncConfig {
    fast(c).max_bytes(600)
}

/// Syncs 23 records with `tune`; checks they arrive exactly once in gzip bodies smaller than
/// their JSON; returns (records, uncompressed record bytes, smallest record) per batch.
async fn batch_shapes(n: usize, tune: fn(SyncConfig) -> SyncConfig) -> Vec<(usize, usize, usize)> {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let d = Device::new(n, &server, proxy.url(), tune).await;
    d.consent(&training(), true);
    let ids = d.enqueue(&training(), 23);
    let report = d.client.sync_now().await.unwrap();
    assert_eq!(report.records_acked, 23);
    let pseud = d.pseudonym(&training());
    let expected: Vec<(String, String)> = ids.into_iter().map(|id| (pseud.clone(), id)).collect();
    exactly_once(
        &server.records(ConsentPurpose::ModelTraining).await,
        &expected,
    );
    let cap = proxy.captured();
    let batches: Vec<&Captured> = cap.iter().filter(|c| c.path == "/v1/batches").collect();
    assert_eq!(batches.len(), report.batches_acked);
    let plain: usize = batches.iter().map(|c| c.body.len()).sum();
    assert!(
        (report.bytes_sent as usize) < plain,
        "compressed bodies ({} B) are not smaller than the JSON ({plain} B)",
        report.bytes_sent
    );
    batches
        .iter()
        .map(|c| {
            assert!(c
                .head
                .to_ascii_lowercase()
                .contains("content-encoding: gzip"));
            let b: SyncBatch = serde_json::from_slice(&c.body).unwrap();
            let sizes: Vec<usize> = b
                .records
                .iter()
                .map(|r| serde_json::to_vec(r).unwrap().len())
                .collect();
            (
                b.records.len(),
                sizes.iter().sum(),
                sizes.iter().copied().min().unwrap_or(0),
            )
        })
        .collect()
}

/// Batches are cut by record count and by uncompressed bytes, go out gzip-compressed, and
/// together carry every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_cut_by_count_and_bytes_and_compressed() {
    let by_count = batch_shapes(6, four_per_batch).await;
    let counts: Vec<usize> = by_count.iter().map(|b| b.0).collect();
    assert_eq!(counts, [4, 4, 4, 4, 4, 3], "{by_count:?}");

    let by_bytes = batch_shapes(7, six_hundred_bytes_per_batch).await;
    let smallest = by_bytes.iter().map(|b| b.2).min().unwrap();
    assert!(
        smallest * 2 <= 600,
        "records too large for this test: {by_bytes:?}"
    );
    for &(n, bytes, _) in &by_bytes {
        assert!(n >= 1 && (bytes <= 600 || n == 1), "{by_bytes:?}");
    }
    // Every batch but the last was full: one more record would have crossed the limit.
    for &(_, bytes, _) in &by_bytes[..by_bytes.len() - 1] {
        assert!(bytes + smallest > 600, "{by_bytes:?}");
    }
    assert_eq!(by_bytes.iter().map(|b| b.0).sum::<usize>(), 23);
}

/// Withdrawal stops uploads at once, also of a batch already formed and in flight (its key
/// persisted, the app killed before the answer): after the restart it is not re-sent; the
/// rows wait on the device and go out, once, only under a new grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_stops_a_batch_already_in_flight() {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let mut d = Device::new(8, &server, proxy.url(), one_shot).await;
    d.consent(&training(), true);
    let ids = d.enqueue(&training(), 5);
    proxy.plan(&[Fault::Drop]);
    assert!(matches!(
        d.client.sync_now().await,
        Err(SyncError::Unavailable { .. })
    ));
    assert_eq!(d.store.outbox_in_flight_of(&d.subject).unwrap().len(), 1);

    d.consent(&training(), false);
    d.reopen();
    let report = d.client.sync_now().await.unwrap();
    assert_eq!(report.records_acked, 0);
    let posts = || {
        proxy
            .captured()
            .iter()
            .filter(|c| c.path == "/v1/batches")
            .count()
    };
    assert_eq!(
        posts(),
        1,
        "the in-flight batch was re-sent after withdrawal"
    );
    assert_eq!(server.counts().await.records, 0);
    assert_eq!(d.store.outbox_counts().unwrap(), (5, 0));
    assert!(d.store.outbox_in_flight_of(&d.subject).unwrap().is_empty());

    d.consent(&training(), true);
    let report = d.client.sync_now().await.unwrap();
    assert_eq!(report.records_acked, 5);
    let pseud = d.pseudonym(&training());
    let expected: Vec<_> = ids.into_iter().map(|i| (pseud.clone(), i)).collect();
    exactly_once(
        &server.records(ConsentPurpose::ModelTraining).await,
        &expected,
    );
}
