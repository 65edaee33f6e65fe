//! Why a model bundle was refused. Each check has its own variant so an app (and a test) can
//! tell them apart; none carries key material or feature values.

use vitalcore_protocol::manifest::ModelVersion;

use crate::inference::InferenceError;

/// A refused bundle or a trust-store failure. The previously active model keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The envelope is not valid JSON/base64, or the payload is not a manifest.
    #[error("malformed signed manifest: {0}")]
    Malformed(String),
    /// No signature is by a pinned publisher key.
    #[error("manifest is not signed by a pinned publisher key")]
    UntrustedKey,
    /// A signature by a pinned key does not verify: the payload was altered.
    #[error("manifest signature does not verify")]
    BadSignature,
    /// The artifact does not have the length the manifest pins.
    #[error("artifact is {got} bytes, the manifest pins {expected}")]
    ArtifactLength {
        /// Length in the manifest.
        expected: u64,
        /// Length received.
        got: u64,
    },
    /// The artifact's sha256 differs from the manifest's.
    #[error("artifact sha256 does not match the manifest")]
    ArtifactHash,
    /// The offered version is not strictly greater than the trusted one.
    #[error("model version {offered} is not newer than trusted version {trusted}")]
    Rollback {
        /// Version offered.
        offered: ModelVersion,
        /// Version trusted on this device.
        trusted: ModelVersion,
    },
    /// The manifest's expiry has passed (a frozen or replayed manifest).
    #[error("manifest expired")]
    Expired,
    /// The manifest format version is not one this SDK reads.
    #[error("manifest schema {0} is not supported")]
    UnsupportedSchema(u32),
    /// The model needs a newer SDK.
    #[error("model needs SDK {required} or newer")]
    SdkTooOld {
        /// Minimum SDK version the manifest names.
        required: ModelVersion,
    },
    /// The manifest's inputs do not fit the feature set this SDK computes (unknown set,
    /// unknown feature, unit mismatch, bad normalization).
    #[error("manifest is incompatible with this SDK's features: {0}")]
    IncompatibleInputs(InferenceError),
    /// The artifact passed every check but tract cannot load it.
    #[error("model could not be loaded: {0}")]
    Unloadable(InferenceError),
    /// The model loaded but does not reproduce its embedded known answer.
    #[error("model failed its self-test")]
    SelfTestFailed,
    /// Reading or writing the trusted state failed; nothing was activated.
    #[error("trust store: {0}")]
    TrustStore(String),
    /// No model is active.
    #[error("no model is active")]
    NoActiveModel,
    /// A prediction on the active model failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
}
