//! Configuration, layered: built-in defaults, then a TOML file, then `VITALCORE_*` environment
//! variables, then command-line flags (applied by the binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Whether the server may invent missing secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Never generates keys; model upload is disabled until a signing key is configured.
    Production,
    /// May generate a signing key under the data dir, and says so in the log.
    Dev,
}

/// Where raw batches are archived.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchiveConfig {
    /// A local folder (`<data_dir>/archive` when `path` is absent).
    Local {
        /// Folder; created if missing.
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// An S3 bucket (credentials from the usual `AWS_*` environment variables or the role).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Custom endpoint (an S3-compatible server); AWS when absent.
        #[serde(default)]
        endpoint: Option<String>,
        /// AWS region of the bucket.
        #[serde(default)]
        region: Option<String>,
    },
}

/// Server configuration. Every field has a default, documented on the field.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// API listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listener, separate from the API. Default `127.0.0.1:9090`.
    pub metrics_listen: SocketAddr,
    /// Admin listener: the `/v1/admin/*` routes (and, for tools such as the trainer that act
    /// as admin and as a device, the public routes too). The public listener never serves
    /// admin routes. Bound only when `admin_token` is set. Default `127.0.0.1:9091` (loopback:
    /// reach it through an SSH tunnel, a bastion or a private network, never a public port).
    pub admin_listen: SocketAddr,
    /// Folder for the embedded database and archive. Default `./vitalcore-data`.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite file `<data_dir>/vitalcore.db`.
    pub database_url: Option<String>,
    /// Archive location. Default: local folder `<data_dir>/archive`.
    pub archive: ArchiveConfig,
    /// Region this node serves; batches for another region are refused. Default `"eu"`.
    pub region: String,
    /// Regions this deployment knows; `region` must be one of them. Default `["eu", "us"]`.
    pub allowed_regions: Vec<String>,
    /// `production` (default) or `dev`.
    pub mode: Mode,
    /// App enrollment tokens accepted by `POST /v1/enroll`. Default: none (enrollment closed).
    pub enrollment_tokens: Vec<String>,
    /// Bearer token for `/v1/admin/*`. Default: none (admin API closed).
    pub admin_token: Option<String>,
    /// Ed25519 signing key file (PKCS#8 DER, raw or base64). Default: none.
    pub signing_key_file: Option<PathBuf>,
    /// Ed25519 signing key as base64 PKCS#8 (for secret stores that inject env). Default: none.
    pub signing_key_pkcs8_base64: Option<String>,
    /// Largest compressed request body, bytes. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Largest decompressed batch, bytes (stops compression bombs). Default 16 MiB.
    pub max_batch_bytes: usize,
    /// Most records (and most labels) in one batch. Default 5000.
    pub max_records_per_batch: usize,
    /// Batches written concurrently; beyond it requests wait `ingest_queue_ms` then get 503.
    /// Default 32.
    pub max_inflight_batches: usize,
    /// How long a batch may wait for a write slot, ms. Default 200.
    pub ingest_queue_ms: u64,
    /// Database pool size. Default 16.
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before 503, ms. Default 2000.
    pub db_acquire_timeout_ms: u64,
    /// Whole-request timeout, ms. Default 30000.
    pub request_timeout_ms: u64,
    /// Smallest group the partner API reports an aggregate for. Default 10.
    pub min_group_size: usize,
    /// Seconds suggested in `Retry-After` when saturated or the database is down. Default 2.
    pub retry_after_secs: u64,
    /// Lifetime of a device credential, seconds; an expired device gets 401 and enrolls again
    /// (the SDK does so by itself). Default 31536000 (365 days).
    pub device_credential_ttl_secs: u64,
    /// Default lifetime of a partner API key, seconds (the admin may choose a shorter one per
    /// key). Default 7776000 (90 days).
    pub partner_key_ttl_secs: u64,
    /// Enrollments one client IP may make in a burst. Default 10.
    pub enroll_burst: u32,
    /// Enrollments one client IP may make per minute once its burst is spent. Default 10.
    pub enroll_per_minute: u32,
    /// Requests one device credential may make in a burst on device routes (batches, erasure,
    /// models). Default 60.
    pub device_burst: u32,
    /// Requests one device credential may make per minute once its burst is spent. Default 120.
    pub device_per_minute: u32,
    /// Batch writes one device may have in flight at once (of `max_inflight_batches`), so no
    /// device can take every ingest slot. Default 2.
    pub max_inflight_per_device: usize,
    /// Take the client IP for the enrollment limit from the last `X-Forwarded-For` entry (the
    /// one your load balancer or API Gateway appended) instead of the TCP peer. Only behind a
    /// proxy that sets it: a client reaching the server directly could choose its own. Default
    /// false.
    pub trust_forwarded_for: bool,
    /// How long an idempotency record (which names the uploading device) is kept, seconds: a
    /// retry within it gets the stored answer; after it the record is purged and nothing
    /// stored ties the batch to the device (a later retry is still stored once: records are
    /// unique per subject and record id). Default 604800 (7 days).
    pub idempotency_window_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and the database URL (which may hold a password) stay out of logs.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("admin_listen", &self.admin_listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database",
                &if self.is_postgres() {
                    "postgres"
                } else {
                    "sqlite"
                },
            )
            .field("archive", &self.archive)
            .field("region", &self.region)
            .field("allowed_regions", &self.allowed_regions)
            .field("mode", &self.mode)
            .field("enrollment_tokens", &self.enrollment_tokens.len())
            .field("admin_token", &self.admin_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            data_dir: PathBuf::from("vitalcore-data"),
            database_url: None,
            archive: ArchiveConfig::Local { path: None },
            region: "eu".into(),
            allowed_regions: vec!["eu".into(), "us".into()],
            mode: Mode::Production,
            enrollment_tokens: Vec::new(),
            admin_token: None,
            signing_key_file: None,
            signing_key_pkcs8_base64: None,
            max_body_bytes: 4 << 20,
            max_batch_bytes: 16 << 20,
            max_records_per_batch: 5000,
            max_inflight_batches: 32,
            ingest_queue_ms: 200,
            db_max_connections: 16,
            db_acquire_timeout_ms: 2000,
            request_timeout_ms: 30_000,
            min_group_size: 10,
            retry_after_secs: 2,
            device_credential_ttl_secs: 365 * 86_400,
            partner_key_ttl_secs: 90 * 86_400,
            enroll_burst: 10,
            enroll_per_minute: 10,
            device_burst: 60,
            device_per_minute: 120,
            max_inflight_per_device: 2,
            trust_forwarded_for: false,
            idempotency_window_secs: 7 * 86_400,
        }
    }
}

/// Configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message (no values).
        message: String,
    },
    /// An environment variable has a value of the wrong type.
    #[error("invalid value in environment variable {0}")]
    Env(&'static str),
    /// The configuration contradicts itself.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults overlaid with the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Defaults overlaid with a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    /// Overlays `VITALCORE_*` variables read through `get` (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(v: String, name: &'static str) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError::Env(name))
        }
        if let Some(v) = get("VITALCORE_LISTEN") {
            self.listen = parse(v, "VITALCORE_LISTEN")?;
        }
        if let Some(v) = get("VITALCORE_METRICS_LISTEN") {
            self.metrics_listen = parse(v, "VITALCORE_METRICS_LISTEN")?;
        }
        if let Some(v) = get("VITALCORE_ADMIN_LISTEN") {
            self.admin_listen = parse(v, "VITALCORE_ADMIN_LISTEN")?;
        }
        if let Some(v) = get("VITALCORE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("VITALCORE_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("VITALCORE_REGION") {
            self.region = v;
        }
        if let Some(v) = get("VITALCORE_ALLOWED_REGIONS") {
            self.allowed_regions = split_list(&v);
        }
        if let Some(v) = get("VITALCORE_MODE") {
            self.mode = match v.as_str() {
                "production" => Mode::Production,
                "dev" => Mode::Dev,
                _ => return Err(ConfigError::Env("VITALCORE_MODE")),
            };
        }
        if let Some(v) = get("VITALCORE_ENROLLMENT_TOKENS") {
            self.enrollment_tokens = split_list(&v);
        }
        if let Some(v) = get("VITALCORE_ADMIN_TOKEN") {
            self.admin_token = Some(v);
        }
        if let Some(v) = get("VITALCORE_SIGNING_KEY_FILE") {
            self.signing_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("VITALCORE_SIGNING_KEY") {
            self.signing_key_pkcs8_base64 = Some(v);
        }
        if let Some(bucket) = get("VITALCORE_S3_BUCKET") {
            self.archive = ArchiveConfig::S3 {
                bucket,
                endpoint: get("VITALCORE_S3_ENDPOINT"),
                region: get("VITALCORE_S3_REGION"),
            };
        }
        if let Some(v) = get("VITALCORE_DB_MAX_CONNECTIONS") {
            self.db_max_connections = parse(v, "VITALCORE_DB_MAX_CONNECTIONS")?;
        }
        if let Some(v) = get("VITALCORE_MAX_INFLIGHT_BATCHES") {
            self.max_inflight_batches = parse(v, "VITALCORE_MAX_INFLIGHT_BATCHES")?;
        }
        if let Some(v) = get("VITALCORE_MAX_INFLIGHT_PER_DEVICE") {
            self.max_inflight_per_device = parse(v, "VITALCORE_MAX_INFLIGHT_PER_DEVICE")?;
        }
        if let Some(v) = get("VITALCORE_ENROLL_BURST") {
            self.enroll_burst = parse(v, "VITALCORE_ENROLL_BURST")?;
        }
        if let Some(v) = get("VITALCORE_ENROLL_PER_MINUTE") {
            self.enroll_per_minute = parse(v, "VITALCORE_ENROLL_PER_MINUTE")?;
        }
        if let Some(v) = get("VITALCORE_DEVICE_BURST") {
            self.device_burst = parse(v, "VITALCORE_DEVICE_BURST")?;
        }
        if let Some(v) = get("VITALCORE_DEVICE_PER_MINUTE") {
            self.device_per_minute = parse(v, "VITALCORE_DEVICE_PER_MINUTE")?;
        }
        if let Some(v) = get("VITALCORE_TRUST_FORWARDED_FOR") {
            self.trust_forwarded_for = parse(v, "VITALCORE_TRUST_FORWARDED_FOR")?;
        }
        if let Some(v) = get("VITALCORE_DEVICE_CREDENTIAL_TTL_SECS") {
            self.device_credential_ttl_secs = parse(v, "VITALCORE_DEVICE_CREDENTIAL_TTL_SECS")?;
        }
        if let Some(v) = get("VITALCORE_IDEMPOTENCY_WINDOW_SECS") {
            self.idempotency_window_secs = parse(v, "VITALCORE_IDEMPOTENCY_WINDOW_SECS")?;
        }
        Ok(())
    }

    /// Checks the invariants the server relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.allowed_regions.iter().any(|r| r == &self.region) {
            return Err(ConfigError::Invalid(format!(
                "region {:?} is not in allowed_regions",
                self.region
            )));
        }
        if self.max_inflight_batches == 0 || self.db_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_inflight_batches and db_max_connections must be positive".into(),
            ));
        }
        if self.max_batch_bytes < 1024 || self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid("body limits below 1 KiB".into()));
        }
        if [
            self.enroll_burst,
            self.enroll_per_minute,
            self.device_burst,
            self.device_per_minute,
        ]
        .contains(&0)
            || self.max_inflight_per_device == 0
        {
            return Err(ConfigError::Invalid(
                "rate limits and max_inflight_per_device must be positive".into(),
            ));
        }
        if self.device_credential_ttl_secs == 0
            || self.partner_key_ttl_secs == 0
            || self.idempotency_window_secs == 0
        {
            return Err(ConfigError::Invalid(
                "credential lifetimes and the idempotency window must be positive".into(),
            ));
        }
        if self.admin_token.is_some()
            && (self.admin_listen == self.listen || self.admin_listen == self.metrics_listen)
            && self.admin_listen.port() != 0
        {
            return Err(ConfigError::Invalid(
                "admin_listen must differ from listen and metrics_listen".into(),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to the embedded SQLite file under the data dir.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("vitalcore.db").display()
            )
        })
    }

    /// Whether the configured database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    /// Time a batch may wait for a write slot.
    pub fn ingest_queue(&self) -> Duration {
        Duration::from_millis(self.ingest_queue_ms)
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_defaults_file_env() {
        let mut c = Config::from_toml(
            "region = \"us\"\nmin_group_size = 5\n[archive]\nkind = \"s3\"\nbucket = \"b\"\n",
        )
        .unwrap();
        assert_eq!(c.region, "us");
        assert_eq!(c.min_group_size, 5);
        assert_eq!(
            c.max_records_per_batch, 5000,
            "untouched fields keep defaults"
        );
        c.apply_env(|k| (k == "VITALCORE_REGION").then(|| "eu".to_string()))
            .unwrap();
        assert_eq!(c.region, "eu", "env overrides the file");
        assert_eq!(c.min_group_size, 5);
        assert!(matches!(c.archive, ArchiveConfig::S3 { .. }));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_regions_are_refused() {
        assert!(Config::from_toml("regoin = \"eu\"").is_err());
        let c = Config {
            region: "mars".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "VITALCORE_MODE").then(|| "yolo".to_string()))
            .is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config {
            admin_token: Some("admin-secret".into()),
            enrollment_tokens: vec!["enroll-secret".into()],
            database_url: Some("postgres://u:pw-secret@h/db".into()),
            ..Config::default()
        };
        let d = format!("{c:?}");
        for s in ["admin-secret", "enroll-secret", "pw-secret"] {
            assert!(!d.contains(s), "{s} leaked");
        }
    }
}
