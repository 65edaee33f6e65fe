//! The real server in-process, devices with their own encrypted stores, and a small HTTP proxy
//! that injects faults and captures every request body.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::privacy::{AnonymizationPolicy, Anonymizer};
use vitalcore::store::{
    ConsentDecision, OutboxDraft, Purpose, RecordId, Store, StoreConfig, SubjectId,
};
use vitalcore::sync::{SyncClient, SyncConfig};
use vitalcore_protocol::{ConsentPurpose, EnrollRequest, EnrollResponse, FeatureRecord};
use vitalcore_server::archive::Archive;
use vitalcore_server::storage::{
    PostgresStore, RecordQuery, SqliteStore, Store as ServerStore, StoreCounts, StoredRecord,
};
use vitalcore_server::{AppState, Config};
use zeroize::Zeroizing;

pub const ENROLL_TOKEN: &str = "e2e-enrollment-token";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running `vitalcore-server` on 127.0.0.1:0.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<dyn ServerStore>,
    /// Hex of the model-signing public key (servers started with `models`), for devices to pin.
    pub model_key_hex: Option<String>,
    /// Hex of the server's Ed25519 key, which signs its region statements (every server has
    /// one), for devices that pin it with `region_keys`.
    pub region_key_hex: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

pub const ADMIN_TOKEN: &str = "e2e-admin-token";

impl Server {
    pub async fn start(db: Db, region: &str) -> Self {
        Self::start_opts(db, region, false).await
    }

    /// With `models`, the server has an admin token and a signing key, so models can be
    /// published through `POST /v1/admin/models`.
    pub async fn start_opts(db: Db, region: &str, models: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ServerStore> = match db {
            Db::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
                let s = SqliteStore::connect(&url, Duration::from_secs(5))
                    .await
                    .unwrap();
                s.migrate().await.unwrap();
                Arc::new(s)
            }
            Db::Postgres => {
                let url = std::env::var("VITALCORE_TEST_PG_URL").expect(
                    "VITALCORE_TEST_PG_URL is not set: run `make services` (or `make test`), \
                     which starts PostgreSQL and exports it",
                );
                let schema = format!(
                    "e2e_{}_{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                );
                let s = PostgresStore::connect_in_schema(&url, &schema, 8, Duration::from_secs(5))
                    .await
                    .expect("PostgreSQL at VITALCORE_TEST_PG_URL must accept connections");
                s.migrate().await.unwrap();
                Arc::new(s)
            }
        };
        let archive = Archive::local(&dir.path().join("archive")).unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            enrollment_tokens: vec![ENROLL_TOKEN.into()],
            region: region.into(),
            admin_token: models.then(|| ADMIN_TOKEN.to_owned()),
            // A fleet enrolls from one loopback address and syncs as fast as the faults let
            // it: the abuse limits are not what these tests are about.
            enroll_burst: 10_000,
            device_burst: 100_000,
            device_per_minute: 10_000,
            max_inflight_per_device: 64,
            ..Config::default()
        };
        let signer =
            vitalcore_server::signing::Signer::load_or_create_dev(&dir.path().join("signing.key"))
                .unwrap()
                .0;
        let region_key_hex = hex::encode(signer.public_key());
        let model_key_hex = models.then(|| region_key_hex.clone());
        let state = AppState::new(config, store.clone(), archive, Some(signer));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The admin router (public routes plus /v1/admin/*) on one loopback listener, as an
        // operator's tools see the admin plane: the tests publish models through it.
        tokio::spawn(vitalcore_server::serve(
            listener,
            vitalcore_server::admin_router(state),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            store,
            model_key_hex,
            region_key_hex,
            stop: Some(tx),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The raw key devices pin to verify this server's region statements.
    pub fn region_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        hex::decode_to_slice(&self.region_key_hex, &mut k).unwrap();
        k
    }

    pub async fn enroll(&self) -> String {
        enroll_at(&self.url()).await
    }

    /// Every stored record consented for `purpose`.
    pub async fn records(&self, purpose: ConsentPurpose) -> Vec<FeatureRecord> {
        self.all_records(purpose)
            .await
            .into_iter()
            .map(|r| r.record)
            .collect()
    }

    /// What the training export holds: every record consented for model training with its
    /// outcome label (the query `GET /v1/admin/export` serves).
    pub async fn training_export(&self) -> Vec<(FeatureRecord, Option<String>)> {
        self.all_records(ConsentPurpose::ModelTraining)
            .await
            .into_iter()
            .map(|r| (r.record, r.label))
            .collect()
    }

    /// Every stored record consented for `purpose`, page by page.
    async fn all_records(&self, purpose: ConsentPurpose) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .records(&RecordQuery {
                    study: None,
                    purpose,
                    after_seq: after,
                    limit: 1000,
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            out.extend(page);
        }
        out
    }

    pub async fn counts(&self) -> StoreCounts {
        self.store.counts().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// What the proxy does with one `POST /v1/batches` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    Pass,
    /// Close the connection before forwarding (the server never sees the request).
    Drop,
    /// TCP reset before forwarding.
    Reset,
    /// Wait, then forward.
    Delay(u64),
    /// Answer 500 without forwarding.
    Status500,
    /// Answer 429 with `Retry-After: n` without forwarding.
    TooMany(u64),
    /// Forward, let the server commit, then close without answering.
    CutAfterCommit,
    /// Forward, then send only the first part of the answer.
    CutDuringAnswer,
    /// Hold the connection open without forwarding (the client waits; for kill tests).
    StallBeforeForward,
    /// Forward, let the server commit, then hold the connection without answering.
    StallAfterCommit,
    /// Forward, send the first part of the answer, then hold the connection.
    StallDuringAnswer,
}

/// A captured request.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub head: String,
    /// Decompressed body.
    pub body: Vec<u8>,
    pub at: Instant,
    pub fault: Fault,
}

#[derive(Default)]
struct ProxyState {
    plan: VecDeque<Fault>,
    cycle: Vec<Fault>,
    n: usize,
    captured: Vec<Captured>,
    stalled: usize,
}

/// HTTP/1.1 proxy, one request per connection (it answers with `connection: close`).
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, upstream, st).await;
                });
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next batch requests meet these faults, in order, then `Pass` (or the cycle).
    pub fn plan(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .plan
            .extend(faults.iter().copied());
    }

    /// After the plan is used up, batch requests meet these faults round-robin.
    pub fn cycle(&self, faults: &[Fault]) {
        self.state.lock().unwrap().cycle = faults.to_vec();
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.state.lock().unwrap().captured.clone()
    }

    /// Connections held at their stall point so far.
    pub fn stalled(&self) -> usize {
        self.state.lock().unwrap().stalled
    }
}

/// Marks the connection as held at its stall point and keeps it open until the peer is gone.
async fn stall(mut conn: TcpStream, st: &Arc<Mutex<ProxyState>>) -> std::io::Result<()> {
    st.lock().unwrap().stalled += 1;
    let mut sink = [0u8; 64];
    // Returns when the client closes or dies (a killed process's sockets are closed by the OS).
    while conn.read(&mut sink).await? > 0 {}
    Ok(())
}

async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos + 4]).into_owned();
            return Ok(Some((head, buf[pos + 4..].to_vec())));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

async fn handle(
    mut conn: TcpStream,
    upstream: SocketAddr,
    st: Arc<Mutex<ProxyState>>,
) -> std::io::Result<()> {
    let Some((head, mut body)) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let len = content_length(&head);
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let is_batch = head.starts_with("POST /v1/batches");
    let gz = head.to_ascii_lowercase().contains("content-encoding: gzip");
    let plain = if gz {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.clone()
    };
    let fault = {
        let mut s = st.lock().unwrap();
        let f = if is_batch {
            match s.plan.pop_front() {
                Some(f) => f,
                None if !s.cycle.is_empty() => {
                    let f = s.cycle[s.n % s.cycle.len()];
                    s.n += 1;
                    f
                }
                None => Fault::Pass,
            }
        } else {
            Fault::Pass
        };
        s.captured.push(Captured {
            path,
            head: head.clone(),
            body: plain,
            at: Instant::now(),
            fault: f,
        });
        f
    };
    match fault {
        Fault::Drop => return Ok(()),
        Fault::Reset => {
            #[allow(deprecated)]
            conn.set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        Fault::Status500 => {
            conn.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
            return conn.shutdown().await;
        }
        Fault::TooMany(s) => {
            conn.write_all(
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\nretry-after: {s}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
            return conn.shutdown().await;
        }
        Fault::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::StallBeforeForward => return stall(conn, &st).await,
        Fault::Pass
        | Fault::CutAfterCommit
        | Fault::CutDuringAnswer
        | Fault::StallAfterCommit
        | Fault::StallDuringAnswer => {}
    }
    let mut up = TcpStream::connect(upstream).await?;
    let head_close = head.trim_end_matches("\r\n\r\n").to_owned() + "\r\nconnection: close\r\n\r\n";
    up.write_all(head_close.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    let cut = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4 + 5)
        .unwrap_or(resp.len() / 2)
        .min(resp.len().saturating_sub(1));
    match fault {
        Fault::CutAfterCommit => Ok(()),
        Fault::StallAfterCommit => stall(conn, &st).await,
        Fault::CutDuringAnswer => {
            conn.write_all(&resp[..cut]).await?;
            #[allow(deprecated)]
            conn.set_linger(Some(Duration::ZERO))?;
            Ok(())
        }
        Fault::StallDuringAnswer => {
            conn.write_all(&resp[..cut]).await?;
            conn.flush().await?;
            stall(conn, &st).await
        }
        _ => {
            conn.write_all(&resp).await?;
            conn.shutdown().await
        }
    }
}

/// Canary values a device holds that must never appear in a request body.
pub struct Canaries {
    pub subject: String,
    pub device_id: String,
    pub note: String,
    pub ip: String,
    pub raw_ms: i64,
}

impl Canaries {
    pub fn for_device(n: usize) -> Self {
        Self {
            subject: format!("canary.subject.{n}@mail.example"),
            device_id: format!("CANARYDEV{n:04}IMEI356938"),
            note: format!("canary free text {n}: chest pain after stairs"),
            ip: format!("10.66.{n}.77"),
            raw_ms: 1_790_001_234_567 + n as i64 * 7,
        }
    }

    pub fn all(&self) -> Vec<String> {
        vec![
            self.subject.clone(),
            self.device_id.clone(),
            self.note.clone(),
            self.ip.clone(),
            self.raw_ms.to_string(),
            (self.raw_ms / 1000).to_string(),
        ]
    }
}

/// One phone: its own data dir, root key, pseudonym secret and enrollment credential.
pub struct Device {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub key: [u8; 32],
    pub secret: [u8; 32],
    pub subject: SubjectId,
    pub canaries: Canaries,
    pub credential: String,
    pub store: Arc<Store>,
    pub client: SyncClient,
    pub endpoint: String,
    pub region: String,
    pub tune: fn(SyncConfig) -> SyncConfig,
}

pub fn training() -> Purpose {
    Purpose::new("model_training").unwrap()
}

pub fn research() -> Purpose {
    Purpose::new("research_sleep").unwrap()
}

pub fn fast(c: SyncConfig) -> SyncConfig {
    c.max_records(10)
        .backoff(Duration::from_millis(10), Duration::from_millis(1500))
        .max_attempts(30)
        .timeout(Duration::from_secs(5))
}

impl Device {
    pub async fn new(
        n: usize,
        server: &Server,
        endpoint: String,
        tune: fn(SyncConfig) -> SyncConfig,
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut key = [0u8; 32];
        let mut secret = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (n * 31 + i * 7 + 1) as u8;
        }
        for (i, b) in secret.iter_mut().enumerate() {
            *b = (n * 17 + i * 13 + 5) as u8;
        }
        let canaries = Canaries::for_device(n);
        let subject = SubjectId::new(canaries.subject.clone()).unwrap();
        let credential = server.enroll().await;
        let dir = tmp.path().to_owned();
        let (store, client) = open(
            &dir,
            key,
            secret,
            &subject,
            &credential,
            &endpoint,
            "eu",
            tune,
        );
        Self {
            dir,
            _tmp: Some(tmp),
            key,
            secret,
            subject,
            canaries,
            credential,
            store,
            client,
            endpoint,
            region: "eu".into(),
            tune,
        }
    }

    /// Simulates an app kill: drops the client and store, reopens from the same data dir.
    pub fn reopen(&mut self) {
        let (store, client) = open(
            &self.dir,
            self.key,
            self.secret,
            &self.subject,
            &self.credential,
            &self.endpoint,
            &self.region,
            self.tune,
        );
        // Old objects are dropped first (assignment order): the store closes, then reopens.
        self.client = client;
        self.store = store;
    }

    pub fn anonymizer(&self) -> Anonymizer {
        Anonymizer::new(
            Zeroizing::new(self.secret),
            AnonymizationPolicy::new("default"),
        )
    }

    pub fn consent(&self, p: &Purpose, granted: bool) {
        self.store
            .record_consent(
                &self.subject,
                &ConsentDecision {
                    purpose: p.clone(),
                    granted,
                    at_ms: 1,
                    policy_version: "v1".into(),
                },
            )
            .unwrap();
    }

    /// Queues `n` records with canary-laden payloads; returns the wire record ids expected.
    pub fn enqueue(&self, p: &Purpose, n: usize) -> Vec<String> {
        let a = self.anonymizer();
        (0..n)
            .map(|i| {
                let payload = serde_json::json!({
                    "kind": "ppg", "feature_set": "v1",
                    "started_at_ms": self.canaries.raw_ms,
                    "features": {"hr": 55.0 + i as f64 * 0.25, "rmssd": 30.0, "not_allowed": 1.0},
                    "sqi": 0.8, "age_years": 47,
                    "device_id": self.canaries.device_id, "note": self.canaries.note,
                    "ip": self.canaries.ip, "subject": self.canaries.subject,
                });
                let id = self.enqueue_raw(p, serde_json::to_vec(&payload).unwrap());
                a.anonymize(
                    &self.subject,
                    p,
                    id.as_bytes(),
                    &serde_json::to_vec(&payload).unwrap(),
                )
                .unwrap()
                .record_id
            })
            .collect()
    }

    pub fn enqueue_raw(&self, p: &Purpose, payload: Vec<u8>) -> RecordId {
        let draft = OutboxDraft {
            purpose: p.clone(),
            check_id: None,
            payload,
        };
        self.store
            .write(|tx| tx.enqueue_outbox(&self.subject, &draft))
            .unwrap()
    }

    pub fn pseudonym(&self, p: &Purpose) -> String {
        self.anonymizer().pseudonym(&self.subject, p)
    }

    /// A client like `self.client` (same store, secret, credential and tuning) that also pins
    /// `keys` for the endpoint's signed region statement.
    pub fn pinned_client(&self, endpoint: &str, keys: Vec<[u8; 32]>) -> SyncClient {
        let cfg = (self.tune)(SyncConfig::new(
            endpoint,
            &self.region,
            &self.credential,
            vec![training(), research()],
        ))
        .region_keys(keys);
        SyncClient::new(
            self.store.clone(),
            self.subject.clone(),
            self.anonymizer(),
            cfg,
        )
        .unwrap()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn open(
    dir: &std::path::Path,
    key: [u8; 32],
    secret: [u8; 32],
    subject: &SubjectId,
    credential: &str,
    endpoint: &str,
    region: &str,
    tune: fn(SyncConfig) -> SyncConfig,
) -> (Arc<Store>, SyncClient) {
    let store = Arc::new(
        Store::open(
            StoreConfig::new(dir.join("device.db")),
            &InMemoryKeyProvider::new(key),
        )
        .unwrap(),
    );
    let cfg = tune(SyncConfig::new(
        endpoint,
        region,
        credential,
        vec![training(), research()],
    ));
    let client = SyncClient::new(
        store.clone(),
        subject.clone(),
        Anonymizer::new(Zeroizing::new(secret), AnonymizationPolicy::new("default")),
        cfg,
    )
    .unwrap();
    (store, client)
}

/// Asserts no canary of any device appears in any captured body.
pub fn assert_no_canary(captured: &[Captured], devices: &[&Device]) {
    let mut bodies = 0;
    for c in captured {
        let text = String::from_utf8_lossy(&c.body);
        for d in devices {
            for canary in d.canaries.all() {
                assert!(
                    !text.contains(&canary),
                    "a request body to {} carries a device identifier/raw value",
                    c.path
                );
            }
        }
        if c.path == "/v1/batches" {
            bodies += 1;
            assert!(
                !text.contains("not_allowed"),
                "non-allow-listed feature sent"
            );
            assert!(!text.contains("device_id") && !text.contains("\"note\""));
        }
    }
    assert!(bodies > 0, "the scan saw no batch body at all");
}

/// An endpoint that is not the device's region server but claims to be: it answers
/// `GET /v1/region` with whatever `forge` makes of the request's nonce and `GET /readyz` with
/// the claimed region, and answers every other request 500 after recording its request line,
/// so a test can show that nothing else reached it.
pub struct RegionForger {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

type Forge = dyn Fn(&str) -> vitalcore_protocol::RegionStatement + Send + Sync;

impl RegionForger {
    pub async fn start(
        claimed_region: &str,
        forge: impl Fn(&str) -> vitalcore_protocol::RegionStatement + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let forge: Arc<Forge> = Arc::new(forge);
        let ready = serde_json::json!({"status": "ready", "region": claimed_region}).to_string();
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (forge, seen, ready) = (forge.clone(), seen.clone(), ready.clone());
                tokio::spawn(async move {
                    let Ok(Some((head, _))) = read_head(&mut conn).await else {
                        return;
                    };
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(line.clone());
                    let target = line.split_whitespace().nth(1).unwrap_or_default();
                    let (status, body) = if let Some(q) = target.strip_prefix("/v1/region?nonce=") {
                        ("200 OK", serde_json::to_string(&forge(q)).unwrap())
                    } else if line.starts_with("GET /readyz") {
                        ("200 OK", ready)
                    } else {
                        ("500 Internal Server Error", String::new())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request lines received (`GET /v1/region?nonce=... HTTP/1.1`, ...).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Asserts that only region questions reached this endpoint.
    pub fn assert_only_region_questions(&self) {
        let r = self.requests();
        assert!(!r.is_empty(), "the device never asked the forger anything");
        for line in &r {
            assert!(
                line.starts_with("GET /v1/region?nonce="),
                "the device sent more than a region question to an unverified endpoint: {line}"
            );
        }
    }
}

/// Enrolls a device at `url` (a server, or a balancer in front of several) with the app's
/// token and returns its credential.
pub async fn enroll_at(url: &str) -> String {
    // rustls is built without a default provider; the SDK installs ring the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/enroll"))
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&EnrollRequest {
                enrollment_token: ENROLL_TOKEN.into(),
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "enroll: {}", r.status());
    let e: EnrollResponse = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    e.credential
}
