//! The device's trusted state: which model version it last accepted, persisted only after a
//! bundle passed every check, so a restart cannot be talked into an older model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use vitalcore_protocol::manifest::ModelVersion;

use super::error::ModelError;

/// What the device trusts for one model name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustedModel {
    /// Highest version accepted; only strictly greater ones are installed.
    pub version: ModelVersion,
    /// Lower-case hex sha256 of the accepted manifest payload (restores check it).
    pub manifest_sha256: String,
    /// Expiry of the accepted manifest (seconds since the Unix epoch).
    pub expires_at: i64,
}

/// All trusted model entries, by model name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustedState {
    /// Entries by model name.
    pub models: BTreeMap<String, TrustedModel>,
}

/// Where the trusted state lives. Implementations must make [`TrustStore::save`] atomic: after a
/// crash, `load` returns either the old or the new state, never a mix.
pub trait TrustStore: Send + Sync + std::fmt::Debug {
    /// The persisted state (empty on first use).
    fn load(&self) -> Result<TrustedState, ModelError>;
    /// Replaces the persisted state.
    fn save(&self, state: &TrustedState) -> Result<(), ModelError>;
}

/// A JSON file in the app's data directory, replaced atomically (write a temporary file in
/// the same directory, fsync, rename over, fsync the directory).
#[derive(Debug, Clone)]
pub struct FileTrustStore {
    path: PathBuf,
}

impl FileTrustStore {
    /// The store at `dir/model-trust.json`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        FileTrustStore {
            path: dir.as_ref().join("model-trust.json"),
        }
    }

    /// Path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io(what: &str, e: std::io::Error) -> ModelError {
    ModelError::TrustStore(format!("{what}: {}", e.kind()))
}

impl TrustStore for FileTrustStore {
    fn load(&self) -> Result<TrustedState, ModelError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|_| ModelError::TrustStore("trusted state is corrupt".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustedState::default()),
            Err(e) => Err(io("read", e)),
        }
    }

    fn save(&self, state: &TrustedState) -> Result<(), ModelError> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| ModelError::TrustStore("state path has no directory".into()))?;
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|_| ModelError::TrustStore("cannot serialize state".into()))?;
        let tmp = dir.join(".model-trust.json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
            f.write_all(&bytes).map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("fsync", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(|e| io("fsync dir", e))?;
        }
        Ok(())
    }
}
