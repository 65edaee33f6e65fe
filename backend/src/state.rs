//! Shared per-process state: configuration, store, archive, signer and the ingest gate.
//! Nothing per request lives here, so any number of copies can run side by side.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::archive::{Archive, ArchiveError};
use crate::auth::sha256;
use crate::config::{Config, ConfigError, Mode};
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
        Self(Arc::new(Inner {
            config,
            store,
            archive,
            signer,
            ingest_gate,
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
