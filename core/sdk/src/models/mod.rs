//! Signed model bundles: verification, the device's trusted state, and atomic activation.
//!
//! A bundle is a [`SignedManifest`](vitalcore_protocol::manifest::SignedManifest) plus the ONNX
//! artifact it pins. [`ModelRegistry::install`] checks, in order: a signature by a pinned
//! publisher key, the artifact's length then sha256 (before any ONNX parsing), a version
//! strictly greater than the trusted one, the expiry, and compatibility (manifest schema,
//! minimum SDK version, feature set); then loads the model, runs its embedded self-test,
//! persists the new trusted state and only then swaps it in. Every refusal is its own
//! [`ModelError`] variant and leaves the previous model serving.

mod error;
mod registry;
mod trust;
mod verify;

pub use error::ModelError;
pub use registry::ModelRegistry;
pub use trust::{FileTrustStore, TrustStore, TrustedModel, TrustedState};
pub use verify::{
    key_id, sha256_hex, sign_manifest, verify_artifact, verify_envelope, verify_policy,
    PublisherKey, VerifiedManifest, SDK_VERSION,
};
