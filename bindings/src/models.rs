//! Model updates across the FFI: install a signed bundle the app obtained itself, poll the
//! sync endpoint for a newer one, and ask which model serves checks. Each method delegates
//! to `vitalcore::Vitalcore`; every refusal arrives as `ModelRejected` with a
//! [`crate::ModelRejection`] kind, and the model already serving keeps serving.

use std::sync::Arc;

use crate::engine::Engine;
use crate::offload::offload;
use crate::user::on_network;
use crate::VitalcoreError;

type Result<T, E = VitalcoreError> = std::result::Result<T, E>;

/// Which model serves checks.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ModelInfo {
    /// Model name from its signed manifest.
    pub name: String,
    /// Semantic version from its signed manifest (what a check's prediction names).
    pub version: String,
}

impl From<vitalcore::ModelInfo> for ModelInfo {
    fn from(m: vitalcore::ModelInfo) -> Self {
        Self {
            name: m.name,
            version: m.version,
        }
    }
}

#[uniffi::export]
impl Engine {
    /// Verifies and activates a signed model bundle: `envelope_json` is the signed manifest
    /// as the backend serves it, `artifact` the ONNX bytes it pins. Checked in order:
    /// signature by a pinned key, artifact length and sha256, version newer than the trusted
    /// one, expiry, compatibility with this SDK, loadability and the model's self-test. A
    /// refusal is `ModelRejected` with its kind; on success the bundle is cached and survives
    /// a restart. Blocking (loads the model): see [`Engine::install_model_async`].
    pub fn install_model(&self, envelope_json: Vec<u8>, artifact: Vec<u8>) -> Result<ModelInfo> {
        Ok(self.core().install_model(&envelope_json, &artifact)?.into())
    }

    /// [`Engine::install_model`] on a worker thread: `suspend` in Kotlin, `async` in Swift
    /// and Python.
    pub async fn install_model_async(
        self: Arc<Self>,
        envelope_json: Vec<u8>,
        artifact: Vec<u8>,
    ) -> Result<ModelInfo> {
        offload(move || self.install_model(envelope_json, artifact)).await?
    }

    /// Asks the sync endpoint for a newer version of model `name` (one small request when
    /// nothing changed, thanks to the stored ETag), downloads and verifies it, and installs
    /// it. `None`: no new model. Errors: `NotConfigured` / `Network` / `Unauthorized` /
    /// `NotFound` (no such model on the server) as for `sync_now`, `ModelRejected` with its
    /// kind when the bundle is refused (fetched again at the next call). `suspend` in Kotlin,
    /// `async` in Swift and Python; cancelling the caller does not stop a download in
    /// progress.
    pub async fn update_model(self: Arc<Self>, name: String) -> Result<Option<ModelInfo>> {
        on_network(
            move || async move { Ok(self.core().update_model(&name).await?.map(Into::into)) },
        )
        .await
    }

    /// The model serving rhythm checks, if any (the SDK's bundled default until an update
    /// is installed, unless the config turned it off).
    pub fn active_model(&self) -> Option<ModelInfo> {
        self.core().active_model().map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelRejection as K;
    use vitalcore::models::ModelError as M;

    struct Key;
    impl crate::KeyProvider for Key {
        fn root_key(&self) -> Result<Vec<u8>, VitalcoreError> {
            Ok(vec![3; 32])
        }
    }

    fn repo_file(name: &str) -> Vec<u8> {
        let path = format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path} is in the repository: {e}"))
    }

    fn kind_of(e: VitalcoreError) -> Option<K> {
        match e {
            VitalcoreError::ModelRejected { kind, .. } => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn every_refusal_has_the_kind_that_says_what_to_do() {
        let v = |s: &str| s.parse().expect("version");
        let kind = |e: M| kind_of(e.into());
        assert_eq!(kind(M::BadSignature), Some(K::Tampered));
        assert_eq!(kind(M::ArtifactHash), Some(K::Tampered));
        let length = M::ArtifactLength {
            expected: 10,
            got: 9,
        };
        assert_eq!(kind(length), Some(K::Tampered));
        assert_eq!(kind(M::Malformed("x".into())), Some(K::Tampered));
        assert_eq!(kind(M::UntrustedKey), Some(K::UntrustedPublisher));
        let rollback = M::Rollback {
            offered: v("1.0.0"),
            trusted: v("2.0.0"),
        };
        assert_eq!(kind(rollback), Some(K::NotNewer));
        assert_eq!(kind(M::Expired), Some(K::Expired));
        assert_eq!(kind(M::UnsupportedSchema(9)), Some(K::Incompatible));
        let old = M::SdkTooOld {
            required: v("99.0.0"),
        };
        assert_eq!(kind(old), Some(K::Incompatible));
        assert_eq!(kind(M::SelfTestFailed), Some(K::Unusable));
        assert!(matches!(
            VitalcoreError::from(M::TrustStore("x".into())),
            VitalcoreError::Storage { .. }
        ));
        assert!(matches!(
            VitalcoreError::from(M::NoActiveModel),
            VitalcoreError::NotFound { .. }
        ));
    }

    #[test]
    fn a_refused_bundle_leaves_the_default_model_serving() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(
            crate::EngineConfig::new(dir.path().to_string_lossy().into_owned()),
            Arc::new(Key),
        )
        .expect("open");
        let before = engine.active_model().expect("the bundled default serves");
        let envelope = repo_file("rhythm-ppg.signed.json");
        let artifact = repo_file("rhythm-ppg.onnx");
        // The bundled bundle is signed by the SDK's own key, which an app does not pin.
        let err = engine
            .install_model(envelope.clone(), artifact.clone())
            .expect_err("publisher not pinned");
        assert_eq!(kind_of(err.clone()), Some(K::UntrustedPublisher), "{err:?}");
        let mut cut = artifact;
        cut.pop();
        let err = engine.install_model(b"{}".to_vec(), cut).expect_err("junk");
        assert_eq!(kind_of(err.clone()), Some(K::Tampered), "{err:?}");
        assert_eq!(engine.active_model(), Some(before));
    }
}
