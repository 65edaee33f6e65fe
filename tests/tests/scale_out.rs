//! Scale-out: three `vitalcore-server` processes behind HAProxy (Debian's package, installed by
//! `scripts/services.sh`) on one PostgreSQL and one S3-protocol server (s3s-fs). Devices (the
//! SDK's sync client, as in the other e2e tests) upload through the balancer while one node is
//! SIGKILLed and restarted: every record is stored exactly once. A batch whose answer was lost
//! and that is retried against another node is stored once and gets the first answer.
//!
//! Needs `VITALCORE_TEST_PG_URL` and `VITALCORE_S3_SERVER_BIN` (exported by `make`), HAProxy
//! (`VITALCORE_HAPROXY_BIN`, default `/usr/sbin/haproxy`) and the `vitalcore-server` binary
//! built beside this test (`cargo test --workspace` builds it; `VITALCORE_SERVER_BIN`
//! overrides). Everything listens on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{enroll_at, fast, open, training, ENROLL_TOKEN};
use vitalcore::store::{ConsentDecision, OutboxDraft, Store, SubjectId};
use vitalcore::sync::SyncClient;
use vitalcore_protocol::{ConsentPurpose, FeatureRecord, SyncBatch};
use vitalcore_server::storage::{PostgresStore, Store as _};

const BUCKET: &str = "vitalcore-archive";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_port(port: u16, what: &str) {
    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VITALCORE_SERVER_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/scale_out-<hash> -> target/<profile>/vitalcore-server
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("vitalcore-server");
    assert!(
        p.is_file(),
        "{} missing: build it (cargo build -p vitalcore-server) or set VITALCORE_SERVER_BIN",
        p.display()
    );
    p
}

/// Child processes killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    _tmp: tempfile::TempDir,
    s3_root: PathBuf,
    _s3: Proc,
    s3_port: u16,
    db_url: String,
    schema: String,
    nodes: Vec<(u16, Option<Proc>)>,
    _lb: Proc,
    lb_port: u16,
}

impl Cluster {
    async fn start(nodes: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // S3
        let s3_bin = std::env::var("VITALCORE_S3_SERVER_BIN")
            .expect("VITALCORE_S3_SERVER_BIN is not set: run `make services` (make test does)");
        let s3_root = tmp.path().join("s3");
        std::fs::create_dir_all(s3_root.join(BUCKET)).unwrap();
        let s3_port = free_port();
        let s3 = Proc(
            Command::new(s3_bin)
                .args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
                .args(["--access-key", "AKTEST", "--secret-key", "SKTEST"])
                .arg(&s3_root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(s3_port, "s3s-fs").await;
        // One schema of its own on the shared test database.
        let base = std::env::var("VITALCORE_TEST_PG_URL")
            .expect("VITALCORE_TEST_PG_URL is not set: run `make services` (make test does)");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let schema = format!(
            "scale_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let sep = if base.contains('?') { '&' } else { '?' };
        let db_url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let mut c = Self {
            _tmp: tmp,
            s3_root,
            _s3: s3,
            s3_port,
            db_url,
            schema,
            nodes: Vec::new(),
            _lb: Proc(Command::new("true").spawn().unwrap()),
            lb_port: 0,
        };
        PostgresStore::connect_in_schema(&base, &c.schema, 1, Duration::from_secs(5))
            .await
            .expect("PostgreSQL at VITALCORE_TEST_PG_URL must accept connections");
        for _ in 0..nodes {
            let port = free_port();
            c.nodes.push((port, None));
        }
        for i in 0..nodes {
            c.start_node(i).await;
        }
        c.start_balancer().await;
        c
    }

    async fn start_node(&mut self, i: usize) {
        let port = self.nodes[i].0;
        let dir = self._tmp.path().join(format!("node{i}"));
        let log = std::fs::File::create(self._tmp.path().join(format!("node{i}.log"))).unwrap();
        let child = Command::new(server_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(&dir)
            .env("VITALCORE_DATABASE_URL", &self.db_url)
            .env("VITALCORE_DB_MAX_CONNECTIONS", "4")
            .env("VITALCORE_ENROLLMENT_TOKENS", ENROLL_TOKEN)
            .env("VITALCORE_S3_BUCKET", BUCKET)
            .env(
                "VITALCORE_S3_ENDPOINT",
                format!("http://127.0.0.1:{}", self.s3_port),
            )
            .env("VITALCORE_S3_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKTEST")
            .env("AWS_SECRET_ACCESS_KEY", "SKTEST")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].1 = Some(Proc(child));
        wait_port(port, "vitalcore-server").await;
    }

    fn kill_node(&mut self, i: usize) {
        // SIGKILL: no graceful shutdown, in-flight requests die with the process.
        self.nodes[i].1 = None;
    }

    async fn start_balancer(&mut self) {
        let bin =
            std::env::var("VITALCORE_HAPROXY_BIN").unwrap_or_else(|_| "/usr/sbin/haproxy".into());
        assert!(
            Path::new(&bin).is_file(),
            "{bin} missing: run `make services` (installs Debian's haproxy)"
        );
        self.lb_port = free_port();
        let servers: String = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (p, _))| format!("  server n{i} 127.0.0.1:{p} check\n"))
            .collect();
        let cfg = format!(
            "global\n  maxconn 1024\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 3\n  option redispatch 1\n  \
             retry-on conn-failure empty-response response-timeout 502 503\n\
             frontend api\n  bind 127.0.0.1:{}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n  option httpchk GET /readyz\n  \
             default-server inter 200ms fall 1 rise 2\n{servers}",
            self.lb_port
        );
        let path = self._tmp.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        self._lb = Proc(
            Command::new(&bin)
                .arg("-db")
                .arg("-f")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(self.lb_port, "haproxy").await;
    }

    /// Whether the S3 server is still running (a test that stalls says so).
    fn s3_state(&mut self) -> String {
        match self._s3.0.try_wait() {
            Ok(None) => "running".into(),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(e) => format!("unknown: {e}"),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.lb_port)
    }

    fn node_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].0)
    }

    async fn store(&self) -> PostgresStore {
        let base = std::env::var("VITALCORE_TEST_PG_URL").unwrap();
        PostgresStore::connect_in_schema(&base, &self.schema, 2, Duration::from_secs(5))
            .await
            .unwrap()
    }

    fn archived_objects(&self) -> usize {
        fn walk(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let p = e.path();
                            if p.is_dir() {
                                walk(&p)
                            } else {
                                usize::from(p.extension().is_some_and(|x| x == "zst"))
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.s3_root.join(BUCKET))
    }
}

struct Phone {
    _tmp: tempfile::TempDir,
    store: Arc<Store>,
    client: Arc<SyncClient>,
}

async fn phone(n: usize, url: &str, records: usize) -> Phone {
    let tmp = tempfile::tempdir().unwrap();
    let key = [n as u8 + 1; 32];
    let secret = [n as u8 + 101; 32];
    let subject = SubjectId::new(format!("scale-user-{n}")).unwrap();
    let credential = enroll_at(url).await;
    let (store, client) = open(
        tmp.path(),
        key,
        secret,
        &subject,
        &credential,
        url,
        "eu",
        fast,
    );
    store
        .record_consent(
            &subject,
            &ConsentDecision {
                purpose: training(),
                granted: true,
                at_ms: 1,
                policy_version: "v1".into(),
            },
        )
        .unwrap();
    for i in 0..records {
        let payload = serde_json::json!({
            "kind": "ppg", "feature_set": "v1", "started_at_ms": 1_790_000_000_000i64 + i as i64 * 3_600_000,
            "features": {"hr_mean": 55.0 + i as f64 * 0.25, "rmssd": 30.0}, "sqi": 0.8,
        });
        let draft = OutboxDraft {
            purpose: training(),
            check_id: None,
            payload: serde_json::to_vec(&payload).unwrap(),
        };
        store
            .write(|tx| tx.enqueue_outbox(&subject, &draft))
            .unwrap();
    }
    Phone {
        _tmp: tmp,
        store,
        client: Arc::new(client),
    }
}

/// Devices upload through the balancer; node 1 is SIGKILLed once a quarter of the records are
/// stored and restarted a moment later. Every device's outbox drains, every record is stored
/// exactly once, every stored batch is archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_upload_loses_nothing_and_stores_nothing_twice() {
    const DEVICES: usize = 12;
    const RECORDS: usize = 100; // 10 batches of 10 per device (harness::fast)
    let mut cluster = Cluster::start(3).await;
    let url = cluster.url();
    let mut phones = Vec::new();
    for n in 0..DEVICES {
        phones.push(phone(n, &url, RECORDS).await);
    }
    let store = cluster.store().await;
    let total = DEVICES * RECORDS;
    let started = Instant::now();
    let uploads: Vec<_> = phones
        .iter()
        .map(|p| {
            let client = p.client.clone();
            tokio::spawn(async move {
                let mut acked = 0;
                // The SDK retries within a run (backoff, same idempotency key); a run that
                // gives up is started again, as the app's scheduler would.
                for _ in 0..20 {
                    match client.sync_now().await {
                        Ok(r) => {
                            // A batch whose answer died with the node may come back, on a
                            // later run, as records the server already held.
                            acked += r.records_acked + r.records_duplicate;
                            if acked >= RECORDS {
                                break;
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                acked
            })
        })
        .collect();
    // Kill node 1 while uploads are running.
    let mut stored_at_kill = 0;
    while started.elapsed() < Duration::from_secs(60) {
        stored_at_kill = store.counts().await.unwrap().records as usize;
        if stored_at_kill >= total / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill_node(1);
    assert!(
        stored_at_kill < total,
        "the uploads finished before the kill ({stored_at_kill} of {total} stored): not a mid-upload kill"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.start_node(1).await;
    // Bounded: a run that cannot finish (a service died) fails here instead of retrying on.
    let mut acked = 0;
    for u in uploads {
        match tokio::time::timeout(Duration::from_secs(90), u).await {
            Ok(n) => acked += n.unwrap(),
            Err(_) => panic!(
                "uploads did not finish within 90 s of the restart (s3s-fs {}, {} of {total} stored)",
                cluster.s3_state(),
                store.counts().await.map(|c| c.records).unwrap_or(-1)
            ),
        }
    }
    let elapsed = started.elapsed();
    for (n, p) in phones.iter().enumerate() {
        let pending = p.store.outbox_counts().unwrap();
        assert_eq!(
            pending,
            (0, 0),
            "device {n} still holds records (queued, in flight)"
        );
    }
    let c = store.counts().await.unwrap();
    assert_eq!(c.records as usize, total, "every record stored, none twice");
    assert!(
        acked >= total,
        "devices saw {acked} of {total} records acknowledged or already held"
    );
    let objects = cluster.archived_objects();
    assert!(
        objects >= c.batches as usize && objects <= c.batches as usize + DEVICES,
        "every stored batch archived ({objects} objects for {} batches; at most one orphan per \
         request in flight on the killed node)",
        c.batches
    );
    eprintln!(
        "scale_out: {total} records through 3 nodes, node 1 killed at {stored_at_kill} stored, \
         {} batches, {objects} objects, {:.1} s",
        c.batches,
        elapsed.as_secs_f64()
    );
}

/// A batch whose answer was lost on node 0 and that the device retries on node 2 (same
/// idempotency key, same body): stored once, and node 2 answers what node 0 answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_retried_on_another_node_is_stored_once() {
    let cluster = Cluster::start(3).await;
    let credential = enroll_at(&cluster.url()).await;
    let records: Vec<FeatureRecord> = (0..25)
        .map(|i| FeatureRecord {
            record_id: format!("retry-r{i}"),
            subject: "retry-subject".into(),
            study: "default".into(),
            kind: "ppg".into(),
            feature_set: "v1".into(),
            captured_hour: 1_790_000_000 + i * 3600,
            age_band: None,
            quality: 0.9,
            features: [("hr_mean".to_string(), 60.0 + i as f64)]
                .into_iter()
                .collect(),
        })
        .collect();
    let batch = SyncBatch {
        schema: 1,
        idempotency_key: "retry-on-another-node-0001".into(),
        region: "eu".into(),
        consent: vec![ConsentPurpose::ModelTraining],
        records,
        labels: Vec::new(),
        // The subject's possession proof (any 64 hex digits bind a fresh subject).
        subject_proofs: [("retry-subject".to_owned(), "5e".repeat(32))]
            .into_iter()
            .collect(),
    };
    let body = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&serde_json::to_vec(&batch).unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let http = reqwest::Client::new();
    let post = |url: String| {
        http.post(format!("{url}/v1/batches"))
            .header("authorization", format!("Bearer {credential}"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body.clone())
            .send()
    };
    let first = post(cluster.node_url(0)).await.unwrap();
    assert!(first.status().is_success(), "node 0: {}", first.status());
    let first: serde_json::Value = serde_json::from_slice(&first.bytes().await.unwrap()).unwrap();
    let again = post(cluster.node_url(2)).await.unwrap();
    assert!(again.status().is_success(), "node 2: {}", again.status());
    let again: serde_json::Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(first, again, "the retry gets the first answer");
    let c = cluster.store().await.counts().await.unwrap();
    assert_eq!((c.batches, c.records), (1, 25));
    assert_eq!(cluster.archived_objects(), 1);
}
