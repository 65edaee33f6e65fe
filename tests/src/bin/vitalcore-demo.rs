//! `make demo`: the closed loop on embedded defaults.
//!
//! Starts `vitalcore-server` in-process (SQLite or `--postgres URL`, a local archive folder and
//! a generated development signing key, all under `--out`), publishes the bundled default model
//! `rhythm-ppg` 1.0.0 through the admin API so the trainer has an active model to beat, runs a
//! fleet of devices (each its own data dir, root key and pseudonym) doing PPG rhythm checks on
//! simulated recordings with known labels and on the real heartpy recordings; each device
//! grants `model_training` consent, records the known outcome labels with `add_label` and
//! syncs (the SDK uploads records and labels). Then the trainer (`python -m trainer train`)
//! trains on the server's export over HTTP and publishes v2; every device updates
//! (`update_model`: poll, download, verify against the server's pinned key, install) and, with
//! the server stopped, runs its checks again offline on v2. Writes `summary.json`,
//! `report-data.json` and (through `scripts/demo/report.py`) `report.html` in `--out`, and
//! prints a short summary with the time of each phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::{CheckKind, Config, Label, PredictionOutcome, SampleBatch, SyncOptions, Vitalcore};
use vitalcore_protocol::ModelManifest;
use vitalcore_server::archive::Archive;
use vitalcore_server::signing::Signer;
use vitalcore_server::storage::{PostgresStore, SqliteStore, Store as ServerStore};
use vitalcore_server::AppState;

const MODEL: &str = "rhythm-ppg";
const CLASSES: [&str; 2] = ["regular", "irregular"];
const POSITIVE: &str = "irregular";
/// Features shown in the report's distributions.
const SHOWN: [&str; 4] = ["hr_mean", "sdnn", "rmssd", "ectopic_fraction"];
/// `device` of the panel's evaluation device in errors.
const PANEL: usize = usize::MAX;

/// Why the demo stopped. Messages name the step, never a value of a user.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Server(String),
    #[error("device {device}: {what}")]
    Device { device: usize, what: String },
    #[error("panel device: {0}")]
    Panel(String),
    #[error("trainer: {0}")]
    Trainer(String),
    #[error("report: {0}")]
    Report(String),
}

type Result<T> = std::result::Result<T, DemoError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

fn dev(device: usize) -> impl Fn(vitalcore::EngineError) -> DemoError {
    move |e| match device {
        PANEL => DemoError::Panel(e.to_string()),
        _ => DemoError::Device {
            device,
            what: e.to_string(),
        },
    }
}

struct Args {
    devices: usize,
    checks_per_device: usize,
    out: PathBuf,
    repo: PathBuf,
    cache: PathBuf,
    python: PathBuf,
    postgres: Option<String>,
    /// `None`: the trainer publishes only a model better than the active one (the paired
    /// AUROC difference's interval above 0); `Some(t)`: one not worse by more than `t`.
    tolerance: Option<f64>,
    /// Passed to the trainer when given (small fleets need a bigger held-out share).
    held_out: Option<f64>,
    min_rows_per_class: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let repo = std::env::current_dir().map_err(io("current directory"))?;
    let mut a = Args {
        devices: 96,
        checks_per_device: 8,
        out: repo.join("demo-out"),
        cache: std::env::var_os("VITALCORE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".cache")),
        python: std::env::var_os("VITALCORE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".venv/bin/python")),
        repo,
        postgres: None,
        tolerance: None,
        held_out: None,
        min_rows_per_class: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| DemoError::Usage(format!("{flag} needs a value")))
        };
        let num = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| DemoError::Usage(format!("{flag} takes a positive integer")))
        };
        match flag.as_str() {
            "--devices" => a.devices = num(value()?)?,
            "--checks-per-device" => a.checks_per_device = num(value()?)?,
            "--out" => a.out = PathBuf::from(value()?),
            "--repo" => a.repo = PathBuf::from(value()?),
            "--cache" => a.cache = PathBuf::from(value()?),
            "--python" => a.python = PathBuf::from(value()?),
            "--postgres" => a.postgres = Some(value()?),
            "--min-rows-per-class" => a.min_rows_per_class = Some(num(value()?)?),
            "--held-out" => {
                a.held_out = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|f: &f64| *f > 0.0 && *f < 1.0)
                        .ok_or_else(|| {
                            DemoError::Usage("--held-out takes a share in (0, 1)".into())
                        })?,
                )
            }
            "--tolerance" => {
                a.tolerance = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| {
                            DemoError::Usage("--tolerance takes a number >= 0".into())
                        })?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "vitalcore-demo [--devices N] [--checks-per-device K] [--out DIR] \
                     [--postgres URL] [--cache DIR] [--python PATH] [--repo DIR] [--tolerance AUROC] \
                     [--held-out SHARE] [--min-rows-per-class N]"
                );
                std::process::exit(0);
            }
            other => return Err(DemoError::Usage(format!("unknown option {other}"))),
        }
    }
    Ok(a)
}

/// One recording a device analyses: samples, rate, and the known label if simulated.
#[derive(Clone)]
struct Recording {
    source: String,
    rate_hz: f64,
    samples: Vec<f64>,
    label: Option<String>,
    /// Subgroup of the simulated population (`models/scripts/population.py`).
    cohort: Option<String>,
    /// Whose recording: the fleet device or the panel person (within its cohort).
    owner: usize,
}

fn read_samples(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).map_err(io(format!(
        "reading {} (run `make data` first)",
        path.display()
    )))?;
    // One value per line, or `seconds,value` for recordings with timestamps (heartpy data2),
    // which the demo analyses at their mean rate.
    Ok(text
        .lines()
        .filter_map(|l| l.rsplit(',').next()?.trim().parse::<f64>().ok())
        .collect())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| DemoError::Io {
        what: format!("parsing {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// What `scripts/demo/simulate.py` wrote: the fleet's recordings by device, the held-out
/// panel's, and the cohorts' descriptions.
struct Simulated {
    fleet: Vec<Vec<Recording>>,
    panel: Vec<Recording>,
    cohorts: serde_json::Value,
}

fn sim_entry(dir: &Path, r: &serde_json::Value, owner_key: &str) -> Result<Recording> {
    let (Some(file), Some(label), Some(rate), Some(cohort), Some(owner)) = (
        r["file"].as_str(),
        r["label"].as_str(),
        r["rate_hz"].as_f64(),
        r["cohort"].as_str(),
        r[owner_key].as_u64(),
    ) else {
        return Err(DemoError::Usage(format!(
            "{} is malformed: rerun scripts/demo/simulate.py",
            dir.join("index.json").display()
        )));
    };
    Ok(Recording {
        source: "simulated".into(),
        rate_hz: rate,
        samples: read_samples(&dir.join(file))?,
        label: Some(label.to_owned()),
        cohort: Some(cohort.to_owned()),
        owner: owner as usize,
    })
}

/// Simulated recordings (known labels and subgroups, `scripts/demo/simulate.py`) for
/// `devices` x `checks` fleet checks and the panel.
fn simulated(cache: &Path, devices: usize, checks: usize) -> Result<Simulated> {
    let dir = cache.join("demo/sim");
    let index = read_json(&dir.join("index.json"))?;
    let key = &index["key"];
    if key["devices"].as_u64() != Some(devices as u64)
        || key["checks_per_device"].as_u64() != Some(checks as u64)
    {
        return Err(DemoError::Usage(format!(
            "the simulated recordings in {} are for another fleet: run scripts/demo/simulate.py \
             --devices {devices} --checks-per-device {checks}",
            dir.display()
        )));
    }
    let mut fleet: Vec<Vec<Recording>> = vec![Vec::new(); devices];
    for r in index["fleet"].as_array().into_iter().flatten() {
        let rec = sim_entry(&dir, r, "device")?;
        if let Some(d) = fleet.get_mut(rec.owner) {
            d.push(rec);
        }
    }
    let panel = index["panel"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| sim_entry(&dir, r, "person"))
        .collect::<Result<Vec<_>>>()?;
    Ok(Simulated {
        fleet,
        panel,
        cohorts: index["cohorts"].clone(),
    })
}

/// The real heartpy PPG recordings cut into 60 s pieces (no label: nobody annotated their
/// rhythm).
fn real_recordings(cache: &Path) -> Result<Vec<Recording>> {
    let mut real = Vec::new();
    for name in ["heartpy_data1", "heartpy_data2", "heartpy_data3"] {
        let meta = read_json(&cache.join(format!("recordings/{name}.json")))?;
        let rate = meta["rate_hz"].as_f64().unwrap_or(100.0);
        let x = read_samples(&cache.join(format!("recordings/{name}.csv")))?;
        let piece = (rate * 60.0) as usize;
        let rec = |samples: Vec<f64>| Recording {
            source: name.into(),
            rate_hz: rate,
            samples,
            label: None,
            cohort: None,
            owner: 0,
        };
        if x.len() < piece {
            real.push(rec(x));
        } else {
            real.extend(x.chunks_exact(piece).map(|c| rec(c.to_vec())));
        }
    }
    Ok(real)
}

/// The in-process server and what the demo needs of it.
struct Server {
    url: String,
    store: Arc<dyn ServerStore>,
    public_key_hex: String,
    admin_token: String,
    enroll_token: String,
    archive_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn token(kind: &str) -> String {
    // Development tokens for this run only; they leave the process only to the trainer.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("demo-{kind}-{}-{nanos:x}", std::process::id())
}

async fn start_server(dir: &Path, postgres: Option<&str>) -> Result<Server> {
    std::fs::create_dir_all(dir).map_err(io("creating the server dir"))?;
    let store: Arc<dyn ServerStore> = match postgres {
        None => {
            let url = format!("sqlite://{}?mode=rwc", dir.join("server.db").display());
            let s = SqliteStore::connect(&url, Duration::from_secs(5))
                .await
                .map_err(|e| DemoError::Server(format!("opening SQLite: {e}")))?;
            s.migrate()
                .await
                .map_err(|e| DemoError::Server(format!("migrating SQLite: {e}")))?;
            Arc::new(s)
        }
        Some(url) => {
            // A schema of its own per run: the database may hold other data.
            let schema = format!("demo_{}", token("s").replace('-', "_"));
            let s = PostgresStore::connect_in_schema(url, &schema, 8, Duration::from_secs(5))
                .await
                .map_err(|e| DemoError::Server(format!("connecting to PostgreSQL: {e}")))?;
            s.migrate()
                .await
                .map_err(|e| DemoError::Server(format!("migrating PostgreSQL: {e}")))?;
            Arc::new(s)
        }
    };
    let archive_dir = dir.join("archive");
    let archive = Archive::local(&archive_dir)
        .map_err(|e| DemoError::Server(format!("archive folder: {e}")))?;
    let (signer, _created) = Signer::load_or_create_dev(&dir.join("signing.key"))
        .map_err(|e| DemoError::Server(format!("development signing key: {e}")))?;
    let public_key_hex = hex::encode(signer.public_key());
    let admin_token = token("admin");
    let enroll_token = token("enroll");
    let config = vitalcore_server::Config {
        data_dir: dir.to_owned(),
        enrollment_tokens: vec![enroll_token.clone()],
        region: "eu".into(),
        admin_token: Some(admin_token.clone()),
        // The whole fleet enrolls from loopback in a burst.
        enroll_burst: 10_000,
        device_burst: 100_000,
        device_per_minute: 10_000,
        ..vitalcore_server::Config::default()
    };
    let state = AppState::new(config, store.clone(), archive, Some(signer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("binding 127.0.0.1"))?;
    let addr = listener.local_addr().map_err(io("listener address"))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vitalcore_server::serve(
        listener,
        // In-process demo on loopback: the admin plane (public routes plus /v1/admin/*) on
        // one listener, so the trainer publishes through the same address it reads from.
        vitalcore_server::admin_router(state),
        async move {
            let _ = rx.await;
        },
    ));
    Ok(Server {
        url: format!("http://{addr}"),
        store,
        public_key_hex,
        admin_token,
        enroll_token,
        archive_dir,
        stop: Some(tx),
        task,
    })
}

impl Server {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

async fn http_ok(req: reqwest::RequestBuilder, what: &str) -> Result<serde_json::Value> {
    let r = req
        .send()
        .await
        .map_err(|e| DemoError::Server(format!("{what}: {e}")))?;
    let status = r.status();
    let body = r
        .bytes()
        .await
        .map_err(|e| DemoError::Server(format!("{what}: {e}")))?;
    if !status.is_success() {
        return Err(DemoError::Server(format!(
            "{what}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )));
    }
    Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// Publishes the bundled default model so the trainer compares against it on the same
/// held-out people (the server signs it with its own key).
async fn publish_default(http: &reqwest::Client, server: &Server, repo: &Path) -> Result<()> {
    let manifest_path = repo.join("models/rhythm-ppg.manifest.json");
    let mut manifest: ModelManifest =
        serde_json::from_value(read_json(&manifest_path)?).map_err(|e| DemoError::Io {
            what: format!("parsing {}", manifest_path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
    let now = vitalcore_server::now_secs();
    manifest.published_at = now;
    manifest.expires_at = now + 365 * 86_400;
    let artifact_path = repo.join("models/rhythm-ppg.onnx");
    let artifact = std::fs::read(&artifact_path).map_err(io("reading the default model"))?;
    let body = json!({
        "manifest": manifest,
        "artifact_base64": base64::engine::general_purpose::STANDARD.encode(artifact),
    });
    http_ok(
        http.post(format!("{}/v1/admin/models", server.url))
            .header("authorization", format!("Bearer {}", server.admin_token))
            .header("content-type", "application/json")
            .body(body.to_string()),
        "publishing the default model",
    )
    .await?;
    Ok(())
}

/// What one check produced, for the summary and the report.
struct CheckStat {
    phase: &'static str,
    source: String,
    micros: u64,
    model: Option<String>,
    p_irregular: Option<f64>,
    label: Option<String>,
    features: BTreeMap<String, f64>,
    /// Share of the check covered by clean beats, and the quality gate's verdict.
    usable: f64,
    acceptable: bool,
    outcome: &'static str,
    cohort: Option<String>,
    owner: usize,
}

/// Runs one PPG check; returns its id, its stats and the beats found.
fn run_check(
    engine: &Vitalcore,
    device: usize,
    rec: &Recording,
    start_s: f64,
    phase: &'static str,
) -> Result<(String, CheckStat, Vec<u64>)> {
    let t = Instant::now();
    let s = engine
        .start_check(CheckKind::PpgRhythm)
        .map_err(dev(device))?;
    s.push_samples(
        "ppg",
        SampleBatch::uniform(start_s, rec.rate_hz, rec.samples.clone()),
    )
    .map_err(dev(device))?;
    let r = s.finish().map_err(dev(device))?;
    let micros = t.elapsed().as_micros() as u64;
    let outcome = match &r.check.prediction {
        PredictionOutcome::Predicted { .. } => "predicted",
        PredictionOutcome::QualityTooLow { .. } => "quality_too_low",
        PredictionOutcome::FeaturesUnavailable { .. } => "features_unavailable",
        PredictionOutcome::NoModel => "no_model",
    };
    let (model, p) = match &r.check.prediction {
        PredictionOutcome::Predicted {
            model_name,
            model_version,
            outputs,
        } => (
            Some(format!("{model_name} {model_version}")),
            outputs.get(POSITIVE).copied(),
        ),
        _ => (None, None),
    };
    let features = SHOWN
        .iter()
        .filter_map(|n| Some(((*n).to_owned(), *r.check.features.get(*n)?)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    Ok((
        r.check.id,
        CheckStat {
            phase,
            source: rec.source.clone(),
            micros,
            model,
            p_irregular: p,
            label: rec.label.clone(),
            features,
            usable: r.check.quality.sqi,
            acceptable: r.check.quality.acceptable,
            outcome,
            cohort: rec.cohort.clone(),
            owner: rec.owner,
        },
        r.peaks,
    ))
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn phase_stats(stats: &[CheckStat], phase: &str) -> serde_json::Value {
    let of: Vec<&CheckStat> = stats.iter().filter(|s| s.phase == phase).collect();
    let mut lat: Vec<u64> = of.iter().map(|s| s.micros).collect();
    lat.sort_unstable();
    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    for s in &of {
        *models
            .entry(s.model.clone().unwrap_or_else(|| "no prediction".into()))
            .or_default() += 1;
    }
    let scored: Vec<(bool, bool)> = of
        .iter()
        .filter_map(|s| Some((s.p_irregular? >= 0.5, s.label.as_deref()? == POSITIVE)))
        .collect();
    let correct = scored.iter().filter(|(p, y)| p == y).count();
    let accuracy = if scored.is_empty() {
        serde_json::Value::Null
    } else {
        json!(correct as f64 / scored.len() as f64)
    };
    json!({
        "checks": of.len(),
        "latency_ms_p50": percentile(&lat, 0.5),
        "latency_ms_p99": percentile(&lat, 0.99),
        "models": models,
        "labelled_predictions": scored.len(),
        "on_device_accuracy": accuracy,
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A device's root key: random per run (the platform keystore's job on a phone).
fn root_key() -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
        .map_err(|_| DemoError::Server("the system random generator failed".into()))?;
    Ok(k)
}

/// What a device is configured with: the endpoint, the pinned server key (models and region
/// statements), the enrollment token.
#[derive(Clone)]
struct DeviceConfig {
    url: String,
    public_key_hex: String,
    enroll_token: String,
}

fn open_device(a: &Args, server: &DeviceConfig, d: usize, key: &[u8; 32]) -> Result<Vitalcore> {
    let engine = Vitalcore::open(
        Config::new(a.out.join(format!("devices/{d:04}")))
            .subject(format!("demo-user-{d}"))
            .sync_endpoint(server.url.clone())
            .sync_region("eu")
            .outbox_purpose("model_training")
            .model_public_keys(vec![server.public_key_hex.clone()])
            // The server signs its region statement with the same key: a device verifies the
            // endpoint serves its region before it enrolls or sends anything.
            .sync_region_keys(vec![server.public_key_hex.clone()]),
        &InMemoryKeyProvider::new(*key),
    )
    .map_err(dev(d))?;
    engine.set_sync_options(
        SyncOptions::new()
            .enrollment_token(server.enroll_token.clone())
            .upload_labels(CLASSES),
    );
    Ok(engine)
}

/// The panel's evaluation device: no sync endpoint (nothing of it leaves), the server's key
/// pinned to verify the update installed on it.
fn open_panel(a: &Args, server_key_hex: &str) -> Result<Vitalcore> {
    let key = [7u8; 32];
    Vitalcore::open(
        Config::new(a.out.join("panel"))
            .subject("panel")
            .model_public_keys(vec![server_key_hex.to_owned()]),
        &InMemoryKeyProvider::new(key),
    )
    .map_err(dev(PANEL))
}

/// The trainer's parity runner: the SDK's own inference through the `vitalcore` Python module
/// when the trainer can run it, else the onnx package's reference evaluator.
async fn parity_runner(a: &Args) -> &'static str {
    // As many inputs as the bundled model reads (its manifest says).
    let probe = "import json, numpy as np, pathlib\n\
                 from trainer.parity import sdk_predict\n\
                 m = pathlib.Path('rhythm-ppg.onnx').read_bytes()\n\
                 n = len(json.loads(pathlib.Path('rhythm-ppg.manifest.json').read_text())['input']['features'])\n\
                 sdk_predict(m, np.zeros((1, n), dtype=np.float32))\n";
    let ok = tokio::process::Command::new(&a.python)
        .args(["-c", probe])
        .current_dir(a.repo.join("models"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        "sdk"
    } else {
        "onnx-reference"
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // rustls is built without a default provider; the SDK installs ring the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = run(parse_args()).await {
        eprintln!("vitalcore-demo: {e}");
        std::process::exit(if matches!(e, DemoError::Usage(_)) {
            2
        } else {
            1
        });
    }
}

/// Wall time of each phase, in order.
struct Phases {
    lap: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Phases {
    fn mark(&mut self, name: &'static str) {
        let s = self.lap.elapsed().as_secs_f64();
        eprintln!("vitalcore-demo: {name}: {s:.1} s");
        self.done.push((name, s));
        self.lap = Instant::now();
    }
    fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.done
                .iter()
                .map(|(n, s)| json!({"phase": n, "seconds": s}))
                .collect(),
        )
    }
}

async fn run(args: Result<Args>) -> Result<()> {
    let a = args?;
    let wall = Instant::now();
    let mut phases = Phases {
        lap: Instant::now(),
        done: Vec::new(),
    };
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out).map_err(io("clearing the output dir"))?;
    }
    std::fs::create_dir_all(&a.out).map_err(io("creating the output dir"))?;
    let sim = simulated(&a.cache, a.devices, a.checks_per_device)?;
    if let Some(d) = sim
        .fleet
        .iter()
        .position(|r| r.len() != a.checks_per_device)
    {
        return Err(DemoError::Usage(format!(
            "device {d} has {} simulated recordings, not {}: rerun scripts/demo/simulate.py",
            sim.fleet[d].len(),
            a.checks_per_device
        )));
    }
    let real = real_recordings(&a.cache)?;
    phases.mark("load recordings");
    let server = start_server(&a.out.join("server"), a.postgres.as_deref()).await?;
    let http = reqwest::Client::new();
    publish_default(&http, &server, &a.repo).await?;
    let device_config = DeviceConfig {
        url: server.url.clone(),
        public_key_hex: server.public_key_hex.clone(),
        enroll_token: server.enroll_token.clone(),
    };
    phases.mark("server start + publish v1");

    // Phase 1: every device consents, runs its checks on the bundled model, labels the
    // simulated ones with their known class, and syncs records and labels.
    let mut stats = Vec::new();
    let mut examples = Vec::new();
    let mut seen: Vec<Option<String>> = Vec::new();
    let mut keys = Vec::with_capacity(a.devices);
    let (mut records_synced, mut labels_synced, mut labels_recorded, mut bytes_sent) =
        (0usize, 0usize, 0usize, 0u64);
    let t0_s = 1_790_000_000.0;
    for d in 0..a.devices {
        let key = root_key()?;
        let engine = open_device(&a, &device_config, d, &key)?;
        keys.push(key);
        engine
            .grant_consent("model_training", "v1")
            .map_err(dev(d))?;
        let mut recs: Vec<&Recording> = sim.fleet[d].iter().collect();
        if let Some(r) = real.get(d % real.len().max(1)) {
            recs.push(r);
        }
        for (i, rec) in recs.iter().enumerate() {
            let start_s = t0_s + (d * 100 + i) as f64 * 3600.0;
            let (id, stat, peaks) = run_check(&engine, d, rec, start_s, "v1")?;
            // One example signal per class and one real recording, for the report.
            if !seen.contains(&rec.label) {
                seen.push(rec.label.clone());
                let n = ((rec.rate_hz * 12.0) as usize).min(rec.samples.len());
                let beats: Vec<u64> = peaks.into_iter().filter(|p| (*p as usize) < n).collect();
                examples.push(json!({
                    "source": rec.source, "label": rec.label, "rate_hz": rec.rate_hz,
                    "samples": &rec.samples[..n], "beats": beats,
                }));
            }
            stats.push(stat);
            if let Some(label) = &rec.label {
                engine
                    .add_label(
                        &id,
                        Label {
                            name: label.clone(),
                            value: 1.0,
                            source: "simulation".into(),
                            recorded_at_ms: (start_s * 1000.0) as i64 + 60_000,
                        },
                    )
                    .map_err(dev(d))?;
                labels_recorded += 1;
            }
        }
        let o = engine.sync_now().await.map_err(dev(d))?;
        records_synced += o.uploads.records_acked;
        labels_synced += o.uploads.labels_acked;
        bytes_sent += o.uploads.bytes_sent;
        engine.shutdown().map_err(dev(d))?;
    }
    phases.mark("devices: checks, labels, sync (v1)");

    // The panel: people of every subgroup whom neither model saw (never synced), scored
    // on-device by the bundled model now and by v2 after the update.
    let panel = open_panel(&a, &server.public_key_hex)?;
    let mut panel_stats = Vec::with_capacity(2 * sim.panel.len());
    for (i, rec) in sim.panel.iter().enumerate() {
        let start_s = t0_s + i as f64 * 600.0;
        panel_stats.push(run_check(&panel, PANEL, rec, start_s, "v1")?.1);
    }
    panel.shutdown().map_err(dev(PANEL))?;
    phases.mark("panel: held-out people scored by v1");
    let on_server = server
        .store
        .counts()
        .await
        .map_err(|e| DemoError::Server(format!("counting: {e}")))?;

    // Phase 2: train and publish v2 through the HTTP API only.
    let runner = parity_runner(&a).await;
    let trainer_out = a.out.join("trainer");
    let mut trainer = tokio::process::Command::new(&a.python);
    trainer.args(["-m", "trainer", "train", "--server", &server.url]);
    if let Some(f) = a.held_out {
        trainer.arg("--held-out").arg(f.to_string());
    }
    if let Some(n) = a.min_rows_per_class {
        trainer.arg("--min-rows-per-class").arg(n.to_string());
    }
    match a.tolerance {
        Some(t) => trainer.arg("--tolerance").arg(t.to_string()),
        None => trainer.arg("--require-improvement"),
    };
    let status = trainer
        .args(["--parity-runner", runner, "--no-progress"])
        .arg("--out")
        .arg(&trainer_out)
        .current_dir(a.repo.join("models"))
        .env("VITALCORE_ADMIN_TOKEN", &server.admin_token)
        .env("VITALCORE_ENROLLMENT_TOKEN", &server.enroll_token)
        .status()
        .await
        .map_err(io(format!("starting {}", a.python.display())))?;
    if !status.success() {
        return Err(DemoError::Trainer(format!(
            "exited with {status} (3 = refused: not better than the active model, or parity failed)"
        )));
    }
    phases.mark("trainer: export, fit, evaluate, parity, publish v2");

    // Phase 3: every device updates: poll, download, verify the signature, install.
    let mut installed = BTreeMap::<String, usize>::new();
    for (d, key) in keys.iter().enumerate() {
        let engine = open_device(&a, &device_config, d, key)?;
        let info = engine.update_model(MODEL).await.map_err(dev(d))?;
        let Some(info) = info else {
            return Err(DemoError::Device {
                device: d,
                what: "the server offered no new model".into(),
            });
        };
        *installed
            .entry(format!("{} {}", info.name, info.version))
            .or_default() += 1;
        engine.shutdown().map_err(dev(d))?;
    }
    let archived = dir_bytes(&server.archive_dir);
    let server_key = server.public_key_hex.clone();
    server.stop().await;
    phases.mark("devices: update to v2 (poll, verify, install)");

    // Phase 4: offline (the server is gone): each device reopens (the installed bundle is
    // verified again from its cache) and runs the same recordings on v2.
    let mut active_after = BTreeMap::<String, usize>::new();
    for (d, key) in keys.iter().enumerate() {
        let engine = open_device(&a, &device_config, d, key)?;
        let active = engine
            .active_model()
            .map(|m| format!("{} {}", m.name, m.version))
            .unwrap_or_else(|| "none".into());
        *active_after.entry(active).or_default() += 1;
        for (i, rec) in sim.fleet[d].iter().enumerate() {
            let start_s = t0_s + (d * 100 + 50 + i) as f64 * 3600.0;
            let (_, stat, _) = run_check(&engine, d, rec, start_s, "v2")?;
            stats.push(stat);
        }
        engine.shutdown().map_err(dev(d))?;
    }
    phases.mark("devices: offline checks (v2)");

    let bundle = std::fs::read_dir(&trainer_out)
        .map_err(io("listing the trainer output"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("signed.json").is_file())
        .ok_or_else(|| DemoError::Trainer("no published bundle in its output".into()))?;

    // The panel again, on v2: the published bundle installed from the trainer's output
    // (verified against the server's key like any update), the same recordings.
    let panel = open_panel(&a, &server_key)?;
    let envelope = std::fs::read(bundle.join("signed.json")).map_err(io("reading signed.json"))?;
    let artifact = std::fs::read(bundle.join("model.onnx")).map_err(io("reading model.onnx"))?;
    panel
        .install_model(&envelope, &artifact)
        .map_err(dev(PANEL))?;
    for (i, rec) in sim.panel.iter().enumerate() {
        let start_s = t0_s + (sim.panel.len() + i) as f64 * 600.0;
        panel_stats.push(run_check(&panel, PANEL, rec, start_s, "v2")?.1);
    }
    panel.shutdown().map_err(dev(PANEL))?;
    let panel_rows: Vec<serde_json::Value> = panel_stats
        .iter()
        .map(|s| {
            json!({
                "phase": s.phase, "cohort": s.cohort, "person": s.owner, "label": s.label,
                "model": s.model, "p_irregular": s.p_irregular, "outcome": s.outcome,
            })
        })
        .collect();
    std::fs::write(
        a.out.join("panel.json"),
        serde_json::to_vec(&json!({"cohorts": sim.cohorts, "checks": panel_rows}))
            .map_err(|e| DemoError::Server(e.to_string()))?,
    )
    .map_err(io("writing panel.json"))?;
    let status = tokio::process::Command::new(&a.python)
        .arg(a.repo.join("scripts/demo/evaluate.py"))
        .arg(&a.out)
        .status()
        .await
        .map_err(io(format!("starting {}", a.python.display())))?;
    if !status.success() {
        return Err(DemoError::Report(format!(
            "evaluate.py exited with {status}"
        )));
    }
    let subgroups = read_json(&a.out.join("evaluation.json"))?;
    phases.mark("panel: v2 on the same people, metrics per subgroup");
    let metrics = read_json(&bundle.join("metrics.json"))?;
    let published = read_json(&bundle.join("manifest.json"))?["version"].clone();
    let mut summary = json!({
        "wall_s": 0.0,
        "devices": a.devices,
        "checks_per_device": a.checks_per_device,
        "database": if a.postgres.is_some() { "postgresql" } else { "sqlite" },
        "checks": stats.len(),
        "records_synced": records_synced,
        "labels_recorded": labels_recorded,
        "labels_synced": labels_synced,
        "server": {"records": on_server.records, "labels": on_server.labels, "devices": on_server.devices},
        "bytes_sent_by_devices": bytes_sent,
        "server_archive_bytes": archived,
        "parity_runner": runner,
        "published_version": published,
        "installed": installed,
        "active_after_reopen": active_after,
        "before": phase_stats(&stats, "v1"),
        "after": phase_stats(&stats, "v2"),
        "trainer_bundle": bundle,
        "held_out": {
            // Both versions on the same held-out rows (those carrying the active model's
            // features), so before and after compare like with like.
            "candidate": metrics["comparison"]["candidate"],
            "active": metrics["comparison"]["active_metrics"],
            "rows": metrics["comparison"]["rows"],
            "active_model": metrics["comparison"]["active"],
            "counts": metrics["counts"],
        },
        "gate": match a.tolerance {
            Some(t) => json!({"rule": "not worse", "tolerance": t}),
            None => json!({"rule": "better (paired AUROC difference CI above 0)"}),
        },
        "subgroups": subgroups,
        // The real recordings (no label: nobody annotated them) beside the simulated fleet:
        // what the quality gate said of each and what the model answered.
        "real_recordings": stats
            .iter()
            .filter(|s| s.label.is_none())
            .map(|s| json!({
                "phase": s.phase, "source": s.source, "usable": s.usable,
                "acceptable": s.acceptable, "outcome": s.outcome, "model": s.model,
                "p_irregular": s.p_irregular,
            }))
            .collect::<Vec<_>>(),
    });
    let checks: Vec<serde_json::Value> = stats
        .iter()
        .map(|s| {
            json!({
                "phase": s.phase, "source": s.source, "label": s.label, "model": s.model,
                "p_irregular": s.p_irregular, "features": s.features, "cohort": s.cohort,
            })
        })
        .collect();
    let report_data = json!({
        "examples": examples,
        "checks": checks,
    });
    std::fs::write(
        a.out.join("report-data.json"),
        serde_json::to_vec(&report_data).map_err(|e| DemoError::Server(e.to_string()))?,
    )
    .map_err(io("writing report-data.json"))?;
    write_summary(&a.out, &mut summary, &phases, wall)?;
    let status = tokio::process::Command::new(&a.python)
        .arg(a.repo.join("scripts/demo/report.py"))
        .arg(&a.out)
        .status()
        .await
        .map_err(io(format!("starting {}", a.python.display())))?;
    if !status.success() {
        return Err(DemoError::Report(format!("report.py exited with {status}")));
    }
    phases.mark("report (HTML, plots)");
    write_summary(&a.out, &mut summary, &phases, wall)?;
    print_summary(&summary);
    println!("report: {}", a.out.join("report.html").display());
    Ok(())
}

fn write_summary(
    out: &Path,
    summary: &mut serde_json::Value,
    phases: &Phases,
    wall: Instant,
) -> Result<()> {
    summary["phases"] = phases.json();
    summary["wall_s"] = json!(wall.elapsed().as_secs_f64());
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(summary).map_err(|e| DemoError::Server(e.to_string()))?,
    )
    .map_err(io("writing summary.json"))
}

fn print_summary(s: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.3}"));
    println!("\n== vitalcore demo: the closed loop ==");
    println!(
        "devices {}  checks {}  ({})",
        s["devices"],
        s["checks"],
        s["database"].as_str().unwrap_or("-")
    );
    println!(
        "synced by devices: {} records, {} labels, {} bytes  |  on the server: {} records, {} labels",
        s["records_synced"],
        s["labels_synced"],
        s["bytes_sent_by_devices"],
        s["server"]["records"],
        s["server"]["labels"]
    );
    for (phase, key) in [
        ("before (bundled model)", "before"),
        ("after (update, offline)", "after"),
    ] {
        let p = &s[key];
        println!(
            "{phase}: models {}  latency p50 {} ms p99 {} ms  on-device accuracy {}",
            p["models"],
            f(&p["latency_ms_p50"]),
            f(&p["latency_ms_p99"]),
            f(&p["on_device_accuracy"])
        );
    }
    println!("real recordings (quality verdict, answer; each piece once):");
    let mut shown = std::collections::BTreeSet::new();
    for r in s["real_recordings"].as_array().into_iter().flatten() {
        if !shown.insert(r.to_string()) {
            continue;
        }
        println!(
            "  {} {:<14} usable {}  {}  {}  p(irregular) {}",
            r["phase"].as_str().unwrap_or("-"),
            r["source"].as_str().unwrap_or("-"),
            f(&r["usable"]),
            if r["acceptable"].as_bool() == Some(true) {
                "acceptable"
            } else {
                "unacceptable"
            },
            r["outcome"].as_str().unwrap_or("-"),
            f(&r["p_irregular"])
        );
    }
    println!(
        "held-out panel (people neither model saw, scored on-device), AUROC [95% CI] per subgroup:"
    );
    for g in s["subgroups"]["subgroups"].as_array().into_iter().flatten() {
        let (o, n) = (&g["v1"]["auroc"], &g["v2"]["auroc"]);
        println!(
            "  {:<10} {:>4} checks  v1 {} [{}, {}]  v2 {} [{}, {}]  {}",
            g["cohort"].as_str().unwrap_or("-"),
            g["checks"],
            f(&o["value"]),
            f(&o["ci_low"]),
            f(&o["ci_high"]),
            f(&n["value"]),
            f(&n["ci_low"]),
            f(&n["ci_high"]),
            g["verdict"].as_str().unwrap_or("-")
        );
    }
    let h = &s["held_out"];
    println!(
        "trainer's held-out split (fleet subjects it did not fit on), {} -> {}:",
        h["active_model"].as_str().unwrap_or("-"),
        s["published_version"].as_str().unwrap_or("-")
    );
    for m in ["auroc", "accuracy", "f1"] {
        let (o, n) = (&h["active"][m], &h["candidate"][m]);
        println!(
            "  {m:<8} before {} [{}, {}]  after {} [{}, {}]",
            f(&o["value"]),
            f(&o["ci_low"]),
            f(&o["ci_high"]),
            f(&n["value"]),
            f(&n["ci_low"]),
            f(&n["ci_high"])
        );
    }
    println!(
        "installed: {}  active after reopening offline: {}  parity runner: {}",
        s["installed"], s["active_after_reopen"], s["parity_runner"]
    );
    println!("time per phase:");
    for p in s["phases"].as_array().into_iter().flatten() {
        println!(
            "  {:<52} {:>8.1} s",
            p["phase"].as_str().unwrap_or("-"),
            p["seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "  {:<52} {:>8.1} s",
        "total",
        s["wall_s"].as_f64().unwrap_or(f64::NAN)
    );
}
