//! `vitalcore-ffi`: the one crate that speaks uniffi.
//!
//! Kotlin, Swift and Python see exactly what this crate exports: shared records, the coarse
//! [`VitalcoreError`], the host-implemented [`KeyProvider`], and (as the engine lands) thin
//! objects that delegate one line per method to `vitalcore`. Nothing here computes anything
//! the Rust crates do not already compute; this layer only converts.
//!
//! Panics never cross into the host: the release profiles unwind, and every exported call is
//! wrapped by uniffi, which turns a panic into the host language's internal-error exception.
#![warn(missing_docs)]

uniffi::setup_scaffolding!();

mod analysis;
mod catalogue;
mod engine;
mod error;
mod inference;
mod keys;
mod models;
mod offload;
mod records;
mod samples;
#[cfg(feature = "testing")]
mod testing;
mod user;

pub use analysis::{
    analyze_accel, analyze_cardiac, analyze_cardiac_async, analyze_cardiac_f64le, Analysis,
    CardiacSignal, FeatureValue, UnavailableFeature,
};
pub use catalogue::{
    feature_count, feature_info, features_v1, version_info, FeatureInfo, FeatureSource, VersionInfo,
};
pub use engine::{open_engine_async, Capture, Durability, Engine, EngineConfig, Session};
pub use error::{ModelRejection, VitalcoreError};
pub use inference::{inspect_onnx, OnnxInspection, OnnxModel, TensorInfo};
pub use keys::{key_fingerprint, key_fingerprint_async, KeyProvider, ROOT_KEY_LEN};
pub use models::ModelInfo;
pub use records::{
    CaptureStats, CheckKind, CheckResult, Label, PredictionOutcome, QualityReport, RawSamples,
    StoredCheck, Timings,
};
pub use samples::{validate_batch, validate_batch_f64le, BatchSummary};
pub use user::{
    Consent, Consents, DeletionReport, ServerErasure, SyncOptions, SyncOutcome, SyncReport,
};
