//! [`Config`]: how [`crate::Vitalcore::open`] sets the engine up. Every default is written on
//! the builder method that changes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::signal::accel::ACCEL_SQI_THRESHOLD;
use crate::signal::quality::QualityPolicy;
use crate::store::Durability;

/// File name of the encrypted store inside the data directory.
pub const STORE_FILE: &str = "vitalcore.db";

/// Engine configuration, built with [`Config::new`] and the builder methods:
///
/// ```
/// use std::time::Duration;
/// let config = vitalcore::Config::new("/data/app/vitalcore")
///     .sync_endpoint("https://sync.example.org")
///     .sync_region("eu")
///     .raw_retention(Some(Duration::from_secs(7 * 86_400)));
/// assert_eq!(config.get_cardiac_sqi_threshold(), 0.6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    data_dir: PathBuf,
    sync_endpoint: Option<String>,
    sync_region: Option<String>,
    model_public_keys: Vec<String>,
    region_public_keys: Vec<String>,
    raw_retention: Option<Duration>,
    cardiac_quality: QualityPolicy,
    accel_sqi_threshold: f64,
    subject: String,
    outbox_purpose: String,
    capture_queue: usize,
    builtin_model: bool,
    durability: Durability,
}

impl Config {
    /// Engine data in `data_dir` (created at open if missing): the encrypted store
    /// [`STORE_FILE`] and, later, cached model bundles.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            sync_endpoint: None,
            sync_region: None,
            model_public_keys: Vec::new(),
            region_public_keys: Vec::new(),
            raw_retention: None,
            cardiac_quality: QualityPolicy::default(),
            accel_sqi_threshold: ACCEL_SQI_THRESHOLD,
            subject: "local".to_owned(),
            outbox_purpose: "research".to_owned(),
            capture_queue: 4,
            builtin_model: true,
            durability: Durability::AppCrash,
        }
    }

    /// Base URL of the sync backend. Default: none (nothing is ever uploaded). Opening never
    /// contacts it; only an explicit sync does.
    pub fn sync_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sync_endpoint = Some(url.into());
        self
    }

    /// Data region the backend must serve (`eu`, `us`, ...). Default: none.
    pub fn sync_region(mut self, region: impl Into<String>) -> Self {
        self.sync_region = Some(region.into());
        self
    }

    /// Ed25519 public keys (hex) a model bundle must be signed with. Default: none, so no
    /// downloaded bundle is trusted.
    pub fn model_public_keys(mut self, keys_hex: Vec<String>) -> Self {
        self.model_public_keys = keys_hex;
        self
    }

    /// Ed25519 public keys (hex) of the sync servers. With any, a sync first asks the endpoint
    /// for its region statement (`GET /v1/region`) signed by one of them over a fresh nonce,
    /// and refuses to send anything (uploads and erasure requests alike) unless it verifies and
    /// names [`Config::sync_region`]. Default: none: the region the endpoint states in the
    /// unsigned `GET /readyz` is checked, which only TLS authenticates.
    pub fn sync_region_keys(mut self, keys_hex: Vec<String>) -> Self {
        self.region_public_keys = keys_hex;
        self
    }

    /// How long raw sample windows of checks are kept, encrypted. Default: `None`: raw samples
    /// are never written to disk, only features and results.
    pub fn raw_retention(mut self, keep: Option<Duration>) -> Self {
        self.raw_retention = keep;
        self
    }

    /// Minimum signal quality index (`0..=1`) of ECG and PPG checks for a prediction: the
    /// share of the check covered by clean beats (see `vitalcore_signal::quality`). Sets
    /// the policy's `min_usable_fraction`; default 0.6 ([`QualityPolicy::default`]).
    pub fn cardiac_sqi_threshold(mut self, sqi: f64) -> Self {
        self.cardiac_quality.min_usable_fraction = sqi;
        self
    }

    /// The whole acceptance rule of ECG and PPG checks: least usable fraction, clean beats
    /// and longest clean stretch. Default: [`QualityPolicy::default`] (0.6, 10 beats, 8 s).
    pub fn cardiac_quality_policy(mut self, policy: QualityPolicy) -> Self {
        self.cardiac_quality = policy;
        self
    }

    /// Minimum signal quality (`0..=1`) of activity checks for a prediction. Default:
    /// `vitalcore_signal::accel::ACCEL_SQI_THRESHOLD` (0.9).
    pub fn accel_sqi_threshold(mut self, sqi: f64) -> Self {
        self.accel_sqi_threshold = sqi;
        self
    }

    /// Local profile the checks belong to (stored only as a keyed hash). Default: `"local"`.
    pub fn subject(mut self, id: impl Into<String>) -> Self {
        self.subject = id.into();
        self
    }

    /// Purpose of the outbox record written with each check; sync uploads it only under the
    /// user's consent for this purpose. A named study is `research:<study>` (stored as
    /// `research_<study>`). Default: `"research"`.
    pub fn outbox_purpose(mut self, purpose: impl Into<String>) -> Self {
        self.outbox_purpose = purpose.into();
        self
    }

    /// Windows a background capture may have waiting for processing before pushes are refused
    /// with [`EngineError::Backpressure`]. Default: 4. At least 1.
    pub fn capture_queue(mut self, windows: usize) -> Self {
        self.capture_queue = windows.max(1);
        self
    }

    /// Whether the default model bundled with the SDK (`rhythm-ppg`, see `models/rhythm-ppg.md`)
    /// serves rhythm checks until a newer signed update is installed. Default: `true`. With
    /// `false`, checks report no model until [`crate::Vitalcore::install_model`] succeeds.
    pub fn builtin_model(mut self, on: bool) -> Self {
        self.builtin_model = on;
        self
    }

    /// What a finished check survives once `finish()` returns. Default:
    /// [`Durability::AppCrash`]: the result and its outbox record are committed to the
    /// store's write-ahead log in one transaction before `finish()` returns, so killing or
    /// crashing the app at any later point loses nothing; the log is flushed to stable storage
    /// by the OS and at checkpoints, so only an OS crash or power loss within that window can
    /// roll back the latest checks (never half of one). [`Durability::PowerLoss`] makes every
    /// `finish()` wait for a flush instead (one fsync, milliseconds; see `BENCHMARKS.md`).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// See [`Config::durability`].
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// See [`Config::builtin_model`].
    pub fn get_builtin_model(&self) -> bool {
        self.builtin_model
    }

    /// Data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the encrypted store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }

    /// Sync endpoint, if any.
    pub fn get_sync_endpoint(&self) -> Option<&str> {
        self.sync_endpoint.as_deref()
    }

    /// Sync region, if any.
    pub fn get_sync_region(&self) -> Option<&str> {
        self.sync_region.as_deref()
    }

    /// Pinned model public keys (hex).
    pub fn get_model_public_keys(&self) -> &[String] {
        &self.model_public_keys
    }

    /// Pinned sync server keys (hex), see [`Config::sync_region_keys`].
    pub fn get_sync_region_keys(&self) -> &[String] {
        &self.region_public_keys
    }

    /// [`Config::sync_region_keys`] as raw keys.
    pub(crate) fn region_keys(&self) -> Result<Vec<[u8; 32]>> {
        self.region_public_keys
            .iter()
            .map(|k| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(k.trim(), &mut out).map_err(|_| {
                    EngineError::InvalidConfig(
                        "sync region keys must be 32-byte Ed25519 keys in hex",
                    )
                })?;
                Ok(out)
            })
            .collect()
    }

    /// Raw-window retention.
    pub fn get_raw_retention(&self) -> Option<Duration> {
        self.raw_retention
    }

    /// Cardiac quality threshold.
    pub fn get_cardiac_sqi_threshold(&self) -> f64 {
        self.cardiac_quality.min_usable_fraction
    }

    /// Cardiac acceptance rule.
    pub fn get_cardiac_quality_policy(&self) -> QualityPolicy {
        self.cardiac_quality
    }

    /// Activity quality threshold.
    pub fn get_accel_sqi_threshold(&self) -> f64 {
        self.accel_sqi_threshold
    }

    pub(crate) fn subject_id(&self) -> &str {
        &self.subject
    }

    pub(crate) fn purpose_name(&self) -> &str {
        &self.outbox_purpose
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.capture_queue
    }

    /// Checks the settings that open would otherwise trip over later.
    pub(crate) fn validate(&self) -> Result<()> {
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !self.cardiac_quality.is_valid() || !unit(self.accel_sqi_threshold) {
            return Err(EngineError::InvalidConfig(
                "quality thresholds must be within 0..=1",
            ));
        }
        if let Some(url) = &self.sync_endpoint {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(EngineError::InvalidConfig(
                    "sync endpoint must be an http(s) URL",
                ));
            }
        }
        for k in &self.model_public_keys {
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EngineError::InvalidConfig(
                    "model public keys must be 32-byte Ed25519 keys in hex",
                ));
            }
        }
        self.region_keys()?;
        Ok(())
    }
}
