//! Real listeners on 127.0.0.1: health, metrics on their own port, graceful shutdown that
//! finishes an in-flight batch, and the binary on embedded defaults.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_on_separate_listeners() {
    let app = TestApp::new(Backend::Sqlite).await;
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, metrics_addr) = (api.local_addr().unwrap(), metrics.local_addr().unwrap());
    tokio::spawn(vitalcore_server::serve(
        api,
        app.router.clone(),
        std::future::pending(),
    ));
    tokio::spawn(vitalcore_server::serve(
        metrics,
        vitalcore_server::metrics::router(),
        std::future::pending(),
    ));

    let dev = app.enroll().await;
    let b = sample_batch("key-metrics-0000001", "s", 7);
    assert_eq!(
        app.post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
            .await
            .0,
        axum::http::StatusCode::OK
    );

    assert_eq!(http_get(api_addr, "/healthz").await.0, 200);
    let (s, body) = http_get(api_addr, "/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        http_get(api_addr, "/metrics").await.0,
        404,
        "metrics are not on the API port"
    );
    let (s, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(s, 200);
    let accepted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vitalcore_batches_accepted_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(accepted >= 1);
    assert!(text.contains("vitalcore_batch_duration_seconds_bucket{le=\"0.1\"}"));
    assert!(!text.contains(&dev.device_id), "no ids in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_in_flight_batch() {
    let app = TestApp::new(Backend::Sqlite).await;
    let dev = app.enroll().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vitalcore_server::serve(
        listener,
        app.router.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));

    let body = gzip(&body_json(&sample_batch("key-shutdown-000001", "s", 50)));
    let (first, rest) = body.split_at(body.len() / 2);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        dev.credential,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Shutdown while the batch is half uploaded.
    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the in-flight request"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown began"
    );

    conn.write_all(rest).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let c = app.counts().await;
    assert_eq!(
        (c.batches, c.records),
        (1, 50),
        "the batch was written, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_starts_on_embedded_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let free = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (api, metrics) = (free(()), free(()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vitalcore-server"))
        .args([
            "serve",
            "--listen",
            &api.to_string(),
            "--metrics-listen",
            &metrics.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("VITALCORE_DATABASE_URL")
        .env_remove("VITALCORE_S3_BUCKET")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if TcpStream::connect(api).await.is_ok() && http_get(api, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server did not become ready");
    assert!(
        dir.path().join("vitalcore.db").exists(),
        "embedded SQLite under the data dir"
    );
    assert!(
        dir.path().join("archive").is_dir(),
        "local archive under the data dir"
    );
    assert_eq!(http_get(metrics, "/metrics").await.0, 200);
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(
        out.contains("\"level\":\"INFO\""),
        "structured JSON logs: {out}"
    );
    assert!(
        out.contains("no signing key configured"),
        "production mode says model upload is off"
    );
}
