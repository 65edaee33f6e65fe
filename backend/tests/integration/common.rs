//! Shared test helpers: real SQLite files, a real PostgreSQL (one schema per test), real
//! compression, requests through `oneshot`.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;
use vitalcore_protocol::{ConsentPurpose, EnrollResponse, FeatureRecord, OutcomeLabel, SyncBatch};
use vitalcore_server::archive::Archive;
use vitalcore_server::storage::{PostgresStore, SqliteStore, Store, StoreCounts};
use vitalcore_server::{AppState, Config};

pub const ENROLL_TOKEN: &str = "test-enrollment-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn pg_url() -> String {
    std::env::var("VITALCORE_TEST_PG_URL").expect(
        "VITALCORE_TEST_PG_URL is not set: run `make services` (or `make test`), which starts \
         PostgreSQL and exports it",
    )
}

/// A fresh SQLite store in a temp dir (kept alive by the returned guard).
pub async fn sqlite_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = SqliteStore::connect(&url, Duration::from_secs(2))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

pub fn unique_schema() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A fresh PostgreSQL store in its own schema.
pub async fn pg_store_with(url: &str, max_connections: u32, acquire: Duration) -> PostgresStore {
    let store = PostgresStore::connect_in_schema(url, &unique_schema(), max_connections, acquire)
        .await
        .expect("PostgreSQL at VITALCORE_TEST_PG_URL must accept connections (make services)");
    store.migrate().await.unwrap();
    store
}

pub async fn pg_store() -> Arc<dyn Store> {
    Arc::new(pg_store_with(&pg_url(), 8, Duration::from_secs(5)).await)
}

/// Test configuration: the abuse limits are raised so tests that are about something else
/// never meet them (the tests of the limits set their own).
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        enrollment_tokens: vec![ENROLL_TOKEN.into()],
        admin_token: Some(ADMIN_TOKEN.into()),
        enroll_burst: 10_000,
        device_burst: 100_000,
        device_per_minute: 10_000,
        max_inflight_per_device: 64,
        ..Config::default()
    }
}

pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test server: state + the public router + the admin router + the temp dir holding its
/// files. [`TestApp::send`] gives `/v1/admin/*` to the admin router (as an operator reaches
/// the admin listener) and everything else to the public one.
pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub admin: Router,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        Self::with_config(backend, |_| {}).await
    }

    pub async fn with_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                let s = SqliteStore::connect(&url, Duration::from_secs(2))
                    .await
                    .unwrap();
                s.migrate().await.unwrap();
                Arc::new(s)
            }
            Backend::Postgres => pg_store().await,
        };
        let archive = Archive::local(&dir.path().join("archive")).unwrap();
        Self::from_parts(dir, store, archive, tweak)
    }

    pub fn from_parts(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        archive: Archive,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        let signer =
            vitalcore_server::signing::Signer::load_or_create_dev(&dir.path().join("k.pk8"))
                .unwrap()
                .0;
        let state = AppState::new(cfg, store, archive, Some(signer));
        let router = vitalcore_server::router(state.clone());
        let admin = vitalcore_server::admin_router(state.clone());
        Self {
            state,
            router,
            admin,
            dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let r = if req.uri().path().starts_with("/v1/admin/") {
            &self.admin
        } else {
            &self.router
        };
        send_to(r, req).await
    }

    /// Sends to the public router only (what the internet reaches).
    pub async fn send_public(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        send_to(&self.router, req).await
    }
}

pub async fn send_to(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

impl TestApp {
    pub async fn enroll(&self) -> EnrollResponse {
        let (status, _, body) = self
            .send(json_post(
                "/v1/enroll",
                None,
                &serde_json::json!({ "enrollment_token": ENROLL_TOKEN }),
            ))
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn counts(&self) -> StoreCounts {
        self.state.store.counts().await.unwrap()
    }

    pub async fn post_batch(
        &self,
        credential: &str,
        encoding: &str,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.send(batch_request(credential, encoding, body)).await
    }
}

pub fn json_post(uri: &str, bearer: Option<&str>, body: &serde_json::Value) -> Request<Body> {
    let mut b = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

pub fn get(uri: &str, bearer: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

pub fn batch_request(credential: &str, encoding: &str, body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/batches")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, encoding)
        .header(header::AUTHORIZATION, format!("Bearer {credential}"))
        .body(Body::from(body))
        .unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 3).unwrap()
}

pub fn record(subject: &str, id: &str, study: &str, hr: f64) -> FeatureRecord {
    FeatureRecord {
        record_id: id.into(),
        subject: subject.into(),
        study: study.into(),
        kind: "ppg".into(),
        feature_set: "v1".into(),
        captured_hour: 1_790_000_000,
        age_band: Some("40-49".into()),
        quality: 0.9,
        features: [("hr_mean".to_string(), hr), ("rmssd".to_string(), 40.0)]
            .into_iter()
            .collect(),
    }
}

/// A valid batch of `n` records for `subject`, each labelled.
pub fn sample_batch(key: &str, subject: &str, n: usize) -> SyncBatch {
    let records: Vec<_> = (0..n)
        .map(|i| record(subject, &format!("r{i}"), "rhythm", 60.0 + i as f64))
        .collect();
    let labels = records
        .iter()
        .map(|r| OutcomeLabel {
            subject: r.subject.clone(),
            record_id: r.record_id.clone(),
            label: "regular".into(),
        })
        .collect();
    SyncBatch {
        schema: 1,
        idempotency_key: key.into(),
        region: "eu".into(),
        consent: vec![
            ConsentPurpose::Research,
            ConsentPurpose::ModelTraining,
            ConsentPurpose::PartnerSharing,
        ],
        records,
        labels,
        subject_proofs: Default::default(),
    }
}

/// The possession proof the owner of `subject` has in these tests (a device's SDK derives
/// it from its pseudonym key; any 64 lower-case hex digits do here).
pub fn proof(subject: &str) -> String {
    vitalcore_server::auth::sha256_hex(format!("test-owner-of/{subject}").as_bytes())
}

/// Fills in the owner's proof of every subject the batch names that has none yet.
pub fn with_proofs(mut b: SyncBatch) -> SyncBatch {
    let subjects: Vec<String> = b
        .records
        .iter()
        .map(|r| r.subject.clone())
        .chain(b.labels.iter().map(|l| l.subject.clone()))
        .collect();
    for s in subjects {
        b.subject_proofs
            .entry(s.clone())
            .or_insert_with(|| proof(&s));
    }
    b
}

/// The batch as JSON, with the owner's proofs filled in ([`with_proofs`]).
pub fn body_json(b: &SyncBatch) -> Vec<u8> {
    serde_json::to_vec(&with_proofs(b.clone())).unwrap()
}

/// An erasure request for `subject` with its owner's proof.
pub fn erasure_body(subject: &str) -> serde_json::Value {
    serde_json::json!({ "subject": subject, "proof": proof(subject) })
}
