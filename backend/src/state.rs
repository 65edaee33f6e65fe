//! Shared per-process state: configuration, store, archive, signer and the ingest gate.
//! Nothing per request lives here, so any number of copies can run side by side.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::archive::{Archive, ArchiveError};
use crate::auth::sha256;
use crate::config::{Config, ConfigError, Mode};
use crate::limits::Limits;
use crate::signing::{Signer, SigningError};
use crate::storage::{self, Store, StoreError};

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The archive could not be set up.
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
    /// The signing key could not be loaded.
    #[error("signing key: {0}")]
    Signing(#[from] SigningError),
    /// The data dir could not be created.
    #[error("data dir: {0}")]
    DataDir(std::io::ErrorKind),
}

/// Cheap to clone; handlers get it through axum's `State`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Effective configuration.
    pub config: Config,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Raw batch archive and model artifacts.
    pub archive: Archive,
    /// Publisher key, when configured.
    pub signer: Option<Signer>,
    /// Bounds concurrent batch writes (backpressure instead of an unbounded queue).
    pub ingest_gate: Arc<Semaphore>,
    /// Rate limits and per-device ingest slots.
    pub limits: Limits,
    /// When housekeeping (idempotency purge, limiter pruning) last ran, seconds.
    pub(crate) last_housekeeping: AtomicI64,
    pub(crate) enrollment_hashes: Vec<[u8; 32]>,
    pub(crate) admin_hash: Option<[u8; 32]>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Assembles state from parts (tests inject their own store and archive).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        archive: Archive,
        signer: Option<Signer>,
    ) -> Self {
        let enrollment_hashes = config
            .enrollment_tokens
            .iter()
            .map(|t| sha256(t.as_bytes()))
            .collect();
        let admin_hash = config.admin_token.as_ref().map(|t| sha256(t.as_bytes()));
        let ingest_gate = Arc::new(Semaphore::new(config.max_inflight_batches));
        let limits = Limits::new(&config);
        Self(Arc::new(Inner {
            config,
            store,
            archive,
            signer,
            ingest_gate,
            limits,
            last_housekeeping: AtomicI64::new(0),
            enrollment_hashes,
            admin_hash,
        }))
    }

    /// Opens everything the configuration names: database (migrated), archive, signing key.
    pub async fn open(config: Config) -> Result<Self, StartupError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StartupError::DataDir(e.kind()))?;
        let store = storage::open(
            &config.effective_database_url(),
            config.db_max_connections,
            Duration::from_millis(config.db_acquire_timeout_ms),
        )
        .await?;
        let archive = Archive::from_config(&config.archive, &config.data_dir)?;
        let signer = load_signer(&config)?;
        Ok(Self::new(config, store, archive, signer))
    }
}

/// Seconds between two housekeeping runs of one process.
const HOUSEKEEPING_SECS: i64 = 60;

impl AppState {
    /// At most once a minute per process (and in the background): purges idempotency records
    /// older than the idempotency window and prunes the rate limiters. Called from requests, so
    /// it also runs where no timer lives (Lambda).
    pub fn housekeeping_tick(&self) {
        let now = crate::now_secs();
        let last = self.last_housekeeping.load(Ordering::Relaxed);
        if now - last < HOUSEKEEPING_SECS
            || self
                .last_housekeeping
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.limits.housekeeping();
        let state = self.clone();
        let before = now - i64::try_from(self.config.idempotency_window_secs).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            match state.store.purge_idempotency(before).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "idempotency records past the window"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed; retried later"),
            }
        });
    }
}

fn load_signer(config: &Config) -> Result<Option<Signer>, SigningError> {
    if let Some(b64) = &config.signing_key_pkcs8_base64 {
        return Signer::from_pkcs8(b64.as_bytes()).map(Some);
    }
    if let Some(path) = &config.signing_key_file {
        return Signer::from_file(path).map(Some);
    }
    match config.mode {
        Mode::Production => {
            tracing::warn!("no signing key configured: model upload is disabled (production mode never generates one)");
            Ok(None)
        }
        Mode::Dev => {
            let path = config.data_dir.join("dev-signing-key.pk8");
            let (signer, created) = Signer::load_or_create_dev(&path)?;
            tracing::warn!(
                key_id = signer.key_id(),
                created,
                "DEV MODE: using a development signing key from the data dir; never use it in production"
            );
            Ok(Some(signer))
        }
    }
}
