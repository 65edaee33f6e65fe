//! The archive against a real S3-protocol server process (s3s-fs from crates.io, installed by
//! `scripts/services.sh`), started here on a free port with its own root folder.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use object_store::aws::AmazonS3Builder;
use vitalcore_protocol::SyncBatch;
use vitalcore_server::archive::Archive;

use crate::common::*;

const BUCKET: &str = "vitalcore-archive";

struct S3Server {
    child: tokio::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl S3Server {
    async fn start() -> Self {
        let bin = std::env::var("VITALCORE_S3_SERVER_BIN").expect(
            "VITALCORE_S3_SERVER_BIN is not set: run `make services` (or `make test`), which \
             installs s3s-fs into .services/bin and exports it",
        );
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} missing: run `make services`"
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                "AKTEST",
                "--secret-key",
                "SKTEST",
            ])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _root: root,
        }
    }

    fn archive(&self) -> Archive {
        Archive::from_s3_builder(
            AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("AKTEST")
                .with_secret_access_key("SKTEST")
                .with_virtual_hosted_style_request(false),
        )
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_roundtrip_on_a_real_s3_server() {
    let s3 = S3Server::start().await;
    let a = s3.archive();
    a.put("raw/abc/1.json.zst", bytes::Bytes::from_static(b"one"))
        .await
        .unwrap();
    a.put("raw/abc/2.json.zst", bytes::Bytes::from_static(b"two"))
        .await
        .unwrap();
    a.put("raw/def/3.json.zst", bytes::Bytes::from_static(b"three"))
        .await
        .unwrap();
    assert_eq!(&a.get("raw/abc/2.json.zst").await.unwrap()[..], b"two");
    let mut keys = a.list("raw/abc/").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["raw/abc/1.json.zst", "raw/abc/2.json.zst"]);
    assert_eq!(a.delete_prefix("raw/abc/").await.unwrap(), 2);
    assert!(a.list("raw/abc/").await.unwrap().is_empty());
    assert_eq!(a.list("raw/").await.unwrap(), vec!["raw/def/3.json.zst"]);
    a.delete("raw/missing").await.unwrap();
    assert!(matches!(
        a.get("raw/abc/1.json.zst").await,
        Err(vitalcore_server::archive::ArchiveError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_archived_to_s3_and_erased_from_it() {
    let s3 = S3Server::start().await;
    let (store, dir) = sqlite_store().await;
    let app = TestApp::from_parts(dir, store, s3.archive(), |_| {});
    let dev = app.enroll().await;
    let b = sample_batch("key-s3-000000000001", "subject-s3", 20);
    assert_eq!(
        app.post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
            .await
            .0,
        StatusCode::OK
    );
    let digest = vitalcore_server::auth::sha256_hex(b"subject-s3");
    let keys = s3.archive().list(&format!("raw/{digest}/")).await.unwrap();
    assert_eq!(keys.len(), 1);
    let object = s3.archive().get(&keys[0]).await.unwrap();
    let slice: SyncBatch = serde_json::from_slice(&zstd::decode_all(&object[..]).unwrap()).unwrap();
    assert_eq!(
        slice.records, b.records,
        "the archived object holds the subject's raw records"
    );
    assert_eq!(slice.labels, b.labels);

    let (s, _, _) = app
        .send(json_post(
            "/v1/erasure",
            Some(&dev.credential),
            &erasure_body("subject-s3"),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(s3.archive().list("raw/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_down_refuses_the_batch_and_stores_no_rows() {
    let mut s3 = S3Server::start().await;
    let (store, dir) = sqlite_store().await;
    let store: Arc<dyn vitalcore_server::storage::Store> = store;
    let app = TestApp::from_parts(dir, store, s3.archive(), |_| {});
    let dev = app.enroll().await;
    s3.child.kill().await.unwrap();
    let b = sample_batch("key-s3-down-0000001", "s", 3);
    let (status, headers, _) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get("retry-after").is_some());
    let c = app.counts().await;
    assert_eq!(
        (c.batches, c.records, c.idempotency, c.archive_refs),
        (0, 0, 0, 0),
        "no row without its object"
    );
}
