//! Backpressure and database faults: 429/503 with `Retry-After`, never a hang, nothing stored,
//! and recovery without a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use vitalcore_server::archive::Archive;
use vitalcore_server::storage::Store;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_ingest_answers_429_with_retry_after_then_recovers() {
    let app = TestApp::with_config(Backend::Sqlite, |c| {
        c.max_inflight_batches = 1;
        c.ingest_queue_ms = 50;
    })
    .await;
    let dev = app.enroll().await;
    // Occupy the only write slot, as a long batch would.
    let slot = app.state.ingest_gate.clone().acquire_owned().await.unwrap();
    let b = sample_batch("key-sat-00000000001", "s", 5);
    let started = Instant::now();
    let (status, headers, body) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(headers.get("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused promptly, not queued forever"
    );
    assert_eq!(app.counts().await.batches, 0);
    drop(slot);
    let (status, _, _) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same key goes through once there is room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_store_with(&pg_url(), 1, Duration::from_millis(300)).await;
    let held = pg.pool().clone();
    let store: Arc<dyn Store> = Arc::new(pg);
    let archive = Archive::local(&dir.path().join("archive")).unwrap();
    let app = TestApp::from_parts(dir, store, archive, |_| {});
    let dev = app.enroll().await;
    let conn = held.acquire().await.unwrap();
    let started = Instant::now();
    let b = sample_batch("key-pool-0000000001", "s", 5);
    let (status, headers, _) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the acquire timeout"
    );
    drop(conn);
    let (status, _, _) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A TCP relay in front of the real PostgreSQL that can cut every connection, which is how a
/// database failover or network partition looks to the server.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user:pw@host:port/db` -> (`host:port`, URL with host:port replaced).
fn via(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let at = url.rfind('@').expect("URL with credentials");
    let rest = &url[at + 1..];
    let slash = rest.find('/').expect("URL with a database");
    let target = rest[..slash].to_owned();
    (target, format!("{}@{}{}", &url[..at], addr, &rest[slash..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_answers_503_and_recovers_without_restart() {
    let url = pg_url();
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (target, _) = via(&url, probe.local_addr().unwrap());
    drop(probe);
    let relay = Relay::start(target).await;
    let (_, relayed) = via(&url, relay.addr);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(pg_store_with(&relayed, 4, Duration::from_millis(500)).await);
    let archive = Archive::local(&dir.path().join("archive")).unwrap();
    let app = TestApp::from_parts(dir, store, archive, |_| {});
    let dev = app.enroll().await;
    let ok = sample_batch("key-down-0000000001", "s", 5);
    assert_eq!(
        app.post_batch(&dev.credential, "gzip", gzip(&body_json(&ok)))
            .await
            .0,
        StatusCode::OK
    );

    relay.cut();
    let during = sample_batch("key-down-0000000002", "s2", 5);
    let started = Instant::now();
    let (status, headers, body) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&during)))
        .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(headers.get("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no hang while the database is down"
    );
    let (status, headers, _) = app.send(get("/readyz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get("retry-after").is_some());
    let (status, _, _) = app.send(get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK, "alive even when not ready");

    relay.restore();
    let mut recovered = false;
    for _ in 0..50 {
        let (status, _, _) = app
            .post_batch(&dev.credential, "gzip", gzip(&body_json(&during)))
            .await;
        if status == StatusCode::OK {
            recovered = true;
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "same server instance serves again once the database is back"
    );
    assert_eq!(app.send(get("/readyz", None)).await.0, StatusCode::OK);
    let c = app.counts().await;
    assert_eq!(
        (c.batches, c.records),
        (2, 10),
        "the refused attempt stored nothing"
    );
}
