//! `vitalcore-signal`: pure DSP and feature extraction.
//!
//! Plain slices in, plain structs out: no I/O, no async. The SDK, the CLI, the Python
//! package and the trainer all compute features through this one implementation.
#![warn(missing_docs)]

pub mod feature_set;

pub use feature_set::{feature_def, FeatureDef, FEATURES_V1, FEATURE_SET_VERSION};
