//! The engine's models: the default model bundled with the SDK, signed bundles installed by
//! updates (cached in the data directory so they survive a restart), and the adapter that runs
//! the active one on a finished check.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vitalcore_protocol::manifest::{InputSpec, SignedManifest};

use crate::config::Config;
use crate::engine::Vitalcore;
use crate::error::{EngineError, Result};
use crate::inference::FeatureVector;
use crate::kind::CheckKind;
use crate::models::{FileTrustStore, ModelError, ModelRegistry, PublisherKey};
use crate::prediction::{Answer, ModelOutput, Predictor};

/// The default model's signed envelope, ONNX artifact and publisher key, compiled in (see
/// `models/rhythm-ppg.md` for what it was trained on and what it is not for).
const BUNDLED_ENVELOPE: &[u8] = include_bytes!("../../../models/rhythm-ppg.signed.json");
const BUNDLED_ARTIFACT: &[u8] = include_bytes!("../../../models/rhythm-ppg.onnx");
const BUNDLED_PUBLISHER: &str = include_str!("../../../models/dev-publisher-key.hex");

/// Which model serves checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model name from its manifest.
    pub name: String,
    /// Semantic version from its manifest.
    pub version: String,
}

impl ModelInfo {
    fn of(model: &crate::inference::Model) -> Self {
        let m = model.manifest();
        ModelInfo {
            name: m.name.clone(),
            version: m.version.to_string(),
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn cache_error(what: &str, e: &std::io::Error) -> EngineError {
    EngineError::Model(ModelError::TrustStore(format!(
        "model cache {what}: {}",
        e.kind()
    )))
}

/// Paths of one cached bundle (`slot` is `active` or `pending`).
fn slot(dir: &Path, slot: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{slot}.signed.json")),
        dir.join(format!("{slot}.onnx")),
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_slot(dir: &Path, name: &str) -> Option<(SignedManifest, Vec<u8>)> {
    let (envelope, artifact) = slot(dir, name);
    let envelope = serde_json::from_slice(&std::fs::read(envelope).ok()?).ok()?;
    Some((envelope, std::fs::read(artifact).ok()?))
}

/// Builds the registry at open: pinned keys from the config, trusted state and cached bundles
/// in `<data_dir>/models`, then the bundled default unless a newer install is cached. Reads
/// local files only.
pub(crate) fn open_registry(config: &Config) -> Result<Arc<ModelRegistry>> {
    let keys = config
        .get_model_public_keys()
        .iter()
        .map(|hex| PublisherKey::from_hex(hex))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            EngineError::InvalidConfig("model_public_keys: each must be a 64-hex-digit Ed25519 key")
        })?;
    let dir = config.data_dir().join("models");
    std::fs::create_dir_all(&dir).map_err(|e| cache_error("create", &e))?;
    let registry = Arc::new(ModelRegistry::new(
        keys,
        Box::new(FileTrustStore::in_dir(&dir)),
    ));
    // A crash between the trusted-state write and the promotion of `pending` leaves the newer
    // bundle in `pending`: try it when `active` no longer passes (refused as a rollback).
    for name in ["active", "pending"] {
        if let Some((envelope, artifact)) = read_slot(&dir, name) {
            if registry.restore(&envelope, &artifact, now_unix()).is_ok() {
                break;
            }
        }
    }
    if config.get_builtin_model() {
        let envelope: SignedManifest = serde_json::from_slice(BUNDLED_ENVELOPE)
            .map_err(|_| EngineError::Model(ModelError::Malformed("bundled envelope".into())))?;
        let publisher = PublisherKey::from_hex(BUNDLED_PUBLISHER.trim())?;
        registry.activate_bundled(&envelope, BUNDLED_ARTIFACT, &publisher)?;
    }
    Ok(registry)
}

/// Runs the active model on a check's features.
#[derive(Debug)]
pub(crate) struct RegistryPredictor {
    pub registry: Arc<ModelRegistry>,
}

impl Predictor for RegistryPredictor {
    fn predict(&self, kind: CheckKind, features: &BTreeMap<String, f64>) -> Result<Answer> {
        // The models this SDK serves read heart-rhythm features; activity checks have none.
        if kind == CheckKind::Activity {
            return Ok(Answer::NoModel);
        }
        let Some(model) = self.registry.active() else {
            return Ok(Answer::NoModel);
        };
        let InputSpec::Features {
            features: inputs, ..
        } = &model.manifest().input
        else {
            // Raw-window models are run by the capture path, not on a check's features.
            return Ok(Answer::NoModel);
        };
        let mut vector = FeatureVector::current();
        let mut missing = Vec::new();
        for input in inputs {
            match features.get(&input.name) {
                Some(v) if v.is_finite() => vector.insert(input.name.clone(), *v),
                _ => missing.push(input.name.clone()),
            }
        }
        if !missing.is_empty() {
            return Ok(Answer::Missing(missing));
        }
        let p = model
            .predict(&vector)
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        Ok(Answer::Output(ModelOutput {
            model_name: p.model_name,
            model_version: p.model_version.to_string(),
            outputs: p
                .labels
                .iter()
                .zip(&p.values)
                .map(|(l, v)| (l.clone(), f64::from(*v)))
                .collect(),
        }))
    }
}

impl Vitalcore {
    /// Verifies and activates a signed model bundle (an update): `envelope_json` is the signed
    /// manifest as the backend serves it, `artifact` the ONNX bytes it pins.
    ///
    /// Checks, in order: signature by a key pinned in [`Config::model_public_keys`], artifact
    /// length and sha256 (before any parsing of the ONNX), version strictly newer than the
    /// trusted one, not expired, compatible with this SDK and feature set, loadable, and its
    /// embedded self-test. Any failure is an [`EngineError::Model`] naming the check, and the
    /// previous model keeps serving. On success the bundle is cached in the data directory and
    /// restored at the next open; checks already running finish on the model they started with.
    pub fn install_model(&self, envelope_json: &[u8], artifact: &[u8]) -> Result<ModelInfo> {
        let _op = self.inner.begin()?;
        let envelope: SignedManifest = serde_json::from_slice(envelope_json).map_err(|_| {
            EngineError::Model(ModelError::Malformed(
                "the envelope is not a signed manifest".into(),
            ))
        })?;
        let dir = self.inner.config.data_dir().join("models");
        let (pending_env, pending_art) = slot(&dir, "pending");
        let staged = write_synced(&pending_env, envelope_json)
            .and_then(|()| write_synced(&pending_art, artifact));
        if let Err(e) = staged {
            let _ = std::fs::remove_file(&pending_env);
            let _ = std::fs::remove_file(&pending_art);
            return Err(cache_error("write", &e));
        }
        let model = match self.inner.models.install(&envelope, artifact, now_unix()) {
            Ok(model) => model,
            Err(e) => {
                let _ = std::fs::remove_file(&pending_env);
                let _ = std::fs::remove_file(&pending_art);
                return Err(e.into());
            }
        };
        let (active_env, active_art) = slot(&dir, "active");
        // Artifact first: until the envelope is renamed, `active` still names the old pair,
        // whose sha256 check fails on the new artifact, and open falls back to `pending`.
        std::fs::rename(&pending_art, &active_art)
            .and_then(|()| std::fs::rename(&pending_env, &active_env))
            .map_err(|e| cache_error("promote", &e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(ModelInfo::of(&model))
    }

    /// The model serving rhythm checks, if any.
    pub fn active_model(&self) -> Option<ModelInfo> {
        self.inner.models.active().map(|m| ModelInfo::of(&m))
    }
}
