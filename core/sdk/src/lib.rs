//! `vitalcore`: the engine app developers embed.
//!
//! Modules arrive with their capabilities: `store` (encrypted SQLite), `inference` (tract),
//! `models` (signed bundles), then the engine, privacy and sync.
#![warn(missing_docs)]

pub mod inference;
pub mod models;

pub use vitalcore_signal as signal;

pub mod keys;
pub mod privacy;
pub mod store;

mod batch;
pub mod capture;
pub mod config;
mod engine;
pub mod error;
pub mod history;
mod kind;
mod models_engine;
mod prediction;
pub mod session;
mod user;

pub use batch::{SampleBatch, Timing};
pub use capture::{Capture, CaptureConfig, CaptureStats};
pub use config::Config;
pub use engine::Vitalcore;
pub use error::{BatchError, EngineError};
pub use history::{Label, RawSamples, StoredCheck, Timings};
pub use kind::{CheckKind, KindSpec};
pub use models_engine::ModelInfo;
pub use prediction::{PredictionOutcome, QualityReport};
pub use session::{CheckResult, CheckSession};
pub use store::Durability;
pub use user::{
    Consent, Consents, DataExport, DeletionReport, ExportedCheck, ExportedLabel,
    ExportedPrediction, ExportedQuality, ExportedRaw, ServerErasure, SyncOptions, SyncOutcome,
    EXPORT_FORMAT, EXPORT_VERSION,
};

/// The README example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub mod sync;
