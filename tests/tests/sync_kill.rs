//! A device process SIGKILLed in the middle of an upload. Run by its own `main` (no libtest
//! harness) because the binary re-executes itself as the device: `VITALCORE_SYNC_ROLE=device`
//! switches it into that role.
//!
//! The parent runs the real server and a proxy that holds the batch request at one step
//! (before the server sees it, after the server committed it, half way through the answer);
//! once the proxy reports the request held, the parent SIGKILLs the device process, opens the
//! device's store itself and syncs again: the retry must carry the batch's original
//! idempotency key and the server must hold every record exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use vitalcore::store::SubjectId;
use vitalcore::sync::SyncConfig;
use vitalcore_protocol::{ConsentPurpose, SyncBatch};

const ROLE: &str = "VITALCORE_SYNC_ROLE";

fn patient(c: SyncConfig) -> SyncConfig {
    // Longer than the parent ever waits: the kill, not a timeout, ends the upload.
    fast(c).timeout(Duration::from_secs(120)).max_attempts(1)
}

/// The device: opens the store the parent prepared and syncs until killed.
fn device() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let hex32 = |k: &str| -> [u8; 32] { hex::decode(env(k)).unwrap().try_into().unwrap() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_store, client) = open(
            &PathBuf::from(env("DEV_DIR")),
            hex32("DEV_KEY"),
            hex32("DEV_SECRET"),
            &SubjectId::new(env("DEV_SUBJECT")).unwrap(),
            &env("DEV_CREDENTIAL"),
            &env("DEV_ENDPOINT"),
            "eu",
            patient,
        );
        let _ = client.sync_now().await;
    });
    // Reaching this point means the upload was not held: the parent reports that.
    std::process::exit(3);
}

async fn kill_at(fault: Fault) {
    let server = Server::start(Db::Sqlite, "eu").await;
    let proxy = Proxy::start(server.addr).await;
    let mut d = Device::new(0, &server, proxy.url(), fast).await;
    d.consent(&training(), true);
    let ids = d.enqueue(&training(), 7);
    proxy.plan(&[fault]);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "device")
        .env("DEV_DIR", &d.dir)
        .env("DEV_KEY", hex::encode(d.key))
        .env("DEV_SECRET", hex::encode(d.secret))
        .env("DEV_SUBJECT", &d.canaries.subject)
        .env("DEV_CREDENTIAL", &d.credential)
        .env("DEV_ENDPOINT", proxy.url())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stalled() == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{fault:?}: the device exited ({status}) before its upload was held");
        }
        assert!(
            Instant::now() < deadline,
            "{fault:?}: the upload never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let committed_before_kill = server.counts().await.batches;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        committed_before_kill,
        i64::from(fault != Fault::StallBeforeForward),
        "{fault:?}: the server state at the kill is not the one the step names"
    );

    d.reopen();
    assert_eq!(
        d.store.outbox_counts().unwrap(),
        (7, 0),
        "{fault:?}: rows left before ack"
    );
    let report = d.client.sync_now().await.unwrap();
    assert_eq!(report.records_acked, 7, "{fault:?}");
    let pseud = d.pseudonym(&training());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for r in server.records(ConsentPurpose::ModelTraining).await {
        *seen.entry((r.subject, r.record_id)).or_default() += 1;
    }
    assert_eq!(seen.len(), 7, "{fault:?}: unexpected records on the server");
    for id in ids {
        assert_eq!(seen.get(&(pseud.clone(), id)), Some(&1), "{fault:?}");
    }
    let keys: HashSet<String> = proxy
        .captured()
        .iter()
        .filter(|c| c.path == "/v1/batches")
        .map(|c| {
            serde_json::from_slice::<SyncBatch>(&c.body)
                .unwrap()
                .idempotency_key
        })
        .collect();
    assert_eq!(keys.len(), 1, "{fault:?}: the retry got a new key");
    assert_eq!(server.counts().await.batches, 1, "{fault:?}");
    assert_eq!(d.store.outbox_counts().unwrap(), (0, 0));
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        device();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for fault in [
        Fault::StallBeforeForward,
        Fault::StallAfterCommit,
        Fault::StallDuringAnswer,
    ] {
        rt.block_on(kill_at(fault));
        println!("sync_kill: SIGKILL at {fault:?}: retried under the same key, stored once");
    }
}
