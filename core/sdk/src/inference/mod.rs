//! Offline inference: the only module that touches tract.
//!
//! [`OnnxModel`] wraps the native tree-ensemble evaluator or a tract plan (load from bytes,
//! pinned input fact, optimized once, shared across threads); tract only in builds with the
//! `tract` feature (default), the others refuse what the native evaluators do not cover. [`Model`] binds one to a [`ModelManifest`](vitalcore_protocol::manifest::ModelManifest):
//! it builds the input tensor by feature name with the manifest's normalization, so a model is
//! never fed the wrong features silently, and its [`Prediction`]s carry the model's name and
//! version.

mod engine;
mod error;
#[cfg(feature = "tract")]
mod fixup;
mod graph;
mod pb;
mod trees;

pub use engine::{inspect, Backend, OnnxInspection, OnnxModel, TensorInfo};
pub use error::InferenceError;
mod input;
mod model;

pub use input::FeatureVector;
pub use model::{Model, Prediction};

/// Checks a manifest's input spec against the feature set this SDK computes, without loading
/// any model: known feature set version, known names, same units, usable normalization.
pub fn check_input_spec(
    spec: &vitalcore_protocol::manifest::InputSpec,
) -> Result<(), InferenceError> {
    input::InputPlan::from_spec(spec).map(|_| ())
}
