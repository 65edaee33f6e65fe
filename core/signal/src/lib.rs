//! `vitalcore-signal`: pure DSP and feature extraction.
//!
//! Plain slices in, plain structs out: no I/O, no async. The SDK, the CLI, the Python
//! package and the trainer all compute features through this one implementation.
//!
//! ```
//! use vitalcore_signal::analyze_ppg;
//! // 30 s of a 1.25 Hz pulse-like wave at 100 Hz: 75 bpm.
//! let x: Vec<f64> = (0..3000)
//!     .map(|i| {
//!         let ph = (i as f64 / 100.0 * 1.25).fract();
//!         (-((ph - 0.2) / 0.08).powi(2)).exp()
//!     })
//!     .collect();
//! let a = analyze_ppg(&x, 100.0)?;
//! let hr = a.features.get("hr_mean").expect("enough beats");
//! assert!((hr - 75.0).abs() < 0.5);
//! # Ok::<(), vitalcore_signal::SignalError>(())
//! ```
#![warn(missing_docs)]

pub mod accel;
pub mod beats;
pub mod cardiac;
pub mod error;
pub mod feature_set;
pub mod features;
pub mod filter;
pub mod hrv;
pub mod quality;
pub mod rr;
pub mod series;
mod spectrum;

pub use accel::{analyze_accel, AccelAnalysis, AccelWindow};
pub use beats::{detect_beats, BeatDetector, Modality};
pub use cardiac::{
    analyze_ecg, analyze_ppg, CardiacAnalysis, CardiacAnalyzer, Quality, WindowResult,
};
pub use error::SignalError;
pub use feature_set::{feature_def, FeatureDef, FEATURES_V1, FEATURE_SET_VERSION};
pub use features::{FeatureVector, Unavailable};
pub use rr::{ArtifactCounts, RrFlag, RrSeries};
pub use series::{Gap, Resampled, Series};
