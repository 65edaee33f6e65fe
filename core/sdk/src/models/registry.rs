//! [`ModelRegistry`]: the active model and how it is replaced.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use vitalcore_protocol::manifest::SignedManifest;

use super::error::ModelError;
use super::trust::{TrustStore, TrustedModel};
use super::verify::{verify_artifact, verify_envelope, verify_policy, PublisherKey};
use crate::inference::{FeatureVector, Model, Prediction};

/// Holds the active model and installs signed bundles.
///
/// Reads are lock-free: [`ModelRegistry::active`] hands out an `Arc` of the current model, so
/// a prediction already running finishes on the model it started with while an install swaps
/// in the next. Installs are serialized and all-or-nothing: a bundle that fails any check,
/// fails to load, or fails its self-test leaves both the active model and the trusted state
/// untouched.
#[derive(Debug)]
pub struct ModelRegistry {
    keys: Vec<PublisherKey>,
    store: Box<dyn TrustStore>,
    active: ArcSwapOption<Model>,
    install_lock: Mutex<()>,
}

impl ModelRegistry {
    /// A registry trusting `keys` (the publisher keys pinned in the app's configuration), with
    /// its trusted state in `store`. No model is active until one is installed or restored.
    pub fn new(keys: Vec<PublisherKey>, store: Box<dyn TrustStore>) -> Self {
        ModelRegistry {
            keys,
            store,
            active: ArcSwapOption::const_empty(),
            install_lock: Mutex::new(()),
        }
    }

    /// The active model, if any.
    pub fn active(&self) -> Option<Arc<Model>> {
        self.active.load_full()
    }

    /// Predicts with the active model.
    pub fn predict(&self, features: &FeatureVector) -> Result<Prediction, ModelError> {
        let model = self.active().ok_or(ModelError::NoActiveModel)?;
        Ok(model.predict(features)?)
    }

    /// Verifies, loads, self-tests and activates a newer bundle; persists the new trusted
    /// version before activating it. `now_unix` is the current time (seconds since the epoch).
    pub fn install(
        &self,
        envelope: &SignedManifest,
        artifact: &[u8],
        now_unix: i64,
    ) -> Result<Arc<Model>, ModelError> {
        self.admit(envelope, artifact, now_unix, false)
    }

    /// Re-opens the bundle the trusted state already names (after an app restart): same checks
    /// as [`ModelRegistry::install`], but the trusted version itself is accepted when its
    /// signed payload is byte-identical to the one trusted.
    pub fn restore(
        &self,
        envelope: &SignedManifest,
        artifact: &[u8],
        now_unix: i64,
    ) -> Result<Arc<Model>, ModelError> {
        self.admit(envelope, artifact, now_unix, true)
    }

    /// Activates a bundle compiled into the app (the SDK's default model): its signature is
    /// checked against `publisher`, the key it was built with, and its artifact, compatibility
    /// and self-test as for any bundle; it replaces the active model only when none is active
    /// or it is a newer version of the same model. It is not an update, so neither the trusted state nor
    /// the version and expiry rules apply: it is exactly as trusted as the library it ships in,
    /// and must keep serving offline however old the app gets.
    pub fn activate_bundled(
        &self,
        envelope: &SignedManifest,
        artifact: &[u8],
        publisher: &PublisherKey,
    ) -> Result<Arc<Model>, ModelError> {
        let verified = verify_envelope(envelope, std::slice::from_ref(publisher))?;
        verify_artifact(&verified.manifest, artifact)?;
        let at_publication = verified.manifest.published_at;
        verify_policy(&verified, None, at_publication, false)?;
        if let Some(current) = self.active() {
            let m = current.manifest();
            // An update already installed stays unless this is a newer release of the same
            // model (an app upgrade shipping a better default).
            if m.name != verified.manifest.name || m.version >= verified.manifest.version {
                return Ok(current);
            }
        }
        let model = Arc::new(load_self_tested(&verified, artifact)?);
        self.active.store(Some(Arc::clone(&model)));
        Ok(model)
    }

    fn admit(
        &self,
        envelope: &SignedManifest,
        artifact: &[u8],
        now_unix: i64,
        allow_same: bool,
    ) -> Result<Arc<Model>, ModelError> {
        // One install at a time: two racing installs must not both pass the version check.
        let _guard = self
            .install_lock
            .lock()
            .map_err(|_| ModelError::TrustStore("install lock poisoned".into()))?;
        let verified = verify_envelope(envelope, &self.keys)?;
        verify_artifact(&verified.manifest, artifact)?;
        let mut state = self.store.load()?;
        let name = verified.manifest.name.clone();
        verify_policy(&verified, state.models.get(&name), now_unix, allow_same)?;

        // The active model may be the bundled default, which the trusted state does not
        // record: an update must be newer than it too.
        if let Some(current) = self.active() {
            let m = current.manifest();
            if !allow_same && m.name == name && verified.manifest.version <= m.version {
                return Err(ModelError::Rollback {
                    offered: verified.manifest.version.clone(),
                    trusted: m.version.clone(),
                });
            }
        }
        let model = load_self_tested(&verified, artifact)?;

        state.models.insert(
            name,
            TrustedModel {
                version: verified.manifest.version.clone(),
                manifest_sha256: verified.payload_sha256,
                expires_at: verified.manifest.expires_at,
            },
        );
        self.store.save(&state)?;
        let model = Arc::new(model);
        self.active.store(Some(Arc::clone(&model)));
        Ok(model)
    }
}

/// Loads the model and runs its embedded known-answer test.
fn load_self_tested(
    verified: &super::verify::VerifiedManifest,
    artifact: &[u8],
) -> Result<Model, ModelError> {
    let self_test = verified.manifest.self_test.clone();
    let model = Model::new(verified.manifest.clone(), artifact).map_err(ModelError::Unloadable)?;
    if let Some(t) = self_test {
        let out = model
            .run_tensor(&t.input)
            .map_err(|_| ModelError::SelfTestFailed)?;
        let tolerance = if t.tolerance.is_finite() {
            t.tolerance
        } else {
            0.0
        };
        let passes = out.len() == t.expected.len()
            && out
                .iter()
                .zip(&t.expected)
                .all(|(a, b)| (a - b).abs() <= tolerance);
        if !passes {
            return Err(ModelError::SelfTestFailed);
        }
    }
    Ok(model)
}
