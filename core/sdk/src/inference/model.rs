//! [`Model`]: an [`OnnxModel`] bound to its manifest.

use std::sync::Arc;

use vitalcore_protocol::manifest::{ModelManifest, ModelVersion, Task};

use super::engine::OnnxModel;
use super::error::InferenceError;
use super::input::{FeatureVector, InputPlan};

/// The output of one prediction, tagged with the model that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Name of the model ([`ModelManifest::name`]).
    pub model_name: String,
    /// Version of the model ([`ModelManifest::version`]).
    pub model_version: ModelVersion,
    /// Raw output values (class probabilities, or regression outputs), one per label.
    pub values: Vec<f32>,
    /// Output labels in value order, from the manifest.
    pub labels: Vec<String>,
    /// For classification, the decided class: the positive (second) label when a binary
    /// threshold is set and reached, else the most probable label. `None` for regression.
    pub label: Option<String>,
}

/// A model ready to predict: a prepared plan plus the manifest that says how to feed it.
#[derive(Debug)]
pub struct Model {
    manifest: Arc<ModelManifest>,
    onnx: OnnxModel,
    input: InputPlan,
}

impl Model {
    /// Prepares `onnx_bytes` as `manifest` describes it: validates the input spec against the
    /// feature set this SDK computes, pins the input shape (batch 1), keeps only the manifest's
    /// output, optimizes once.
    ///
    /// This does not verify signatures or hashes: the `models` module does that before calling
    /// it.
    pub fn new(manifest: ModelManifest, onnx_bytes: &[u8]) -> Result<Self, InferenceError> {
        let input = InputPlan::from_spec(&manifest.input)?;
        let output = manifest.outputs.output_name.as_str();
        let onnx = OnnxModel::load(onnx_bytes, &input.shape(), Some(&[output]))?;
        let model = Model {
            manifest: Arc::new(manifest),
            onnx,
            input,
        };
        Ok(model)
    }

    /// The manifest the model was loaded with.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The underlying plan (input/output facts).
    pub fn onnx(&self) -> &OnnxModel {
        &self.onnx
    }

    /// Predicts from named features.
    pub fn predict(&self, features: &FeatureVector) -> Result<Prediction, InferenceError> {
        let mut input = Vec::new();
        self.input.build_features(features, &mut input)?;
        self.finish(&input)
    }

    /// Predicts from one raw window already resampled to the manifest's rate; the SDK
    /// standardizes it.
    pub fn predict_window(
        &self,
        channel: &str,
        rate_hz: f64,
        samples: &[f32],
    ) -> Result<Prediction, InferenceError> {
        let mut input = Vec::new();
        self.input
            .build_window(channel, rate_hz, samples, &mut input)?;
        self.finish(&input)
    }

    /// Runs an already-built input tensor (row-major, batch 1) and returns the manifest's output.
    pub fn run_tensor(&self, input: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let mut out = Vec::new();
        self.onnx.run_into(input, 0, &mut out)?;
        Ok(out)
    }

    fn finish(&self, input: &[f32]) -> Result<Prediction, InferenceError> {
        let values = self.run_tensor(input)?;
        let labels = &self.manifest.outputs.labels;
        if values.len() != labels.len() {
            return Err(InferenceError::OutputArity {
                expected: labels.len(),
                got: values.len(),
            });
        }
        let label = match self.manifest.task {
            Task::Regression => None,
            Task::Classification => {
                let decided = match self.manifest.outputs.threshold {
                    Some(t) if values.len() == 2 => usize::from(f64::from(values[1]) >= t),
                    _ => {
                        values
                            .iter()
                            .enumerate()
                            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                                if v > best.1 {
                                    (i, v)
                                } else {
                                    best
                                }
                            })
                            .0
                    }
                };
                labels.get(decided).cloned()
            }
        };
        Ok(Prediction {
            model_name: self.manifest.name.clone(),
            model_version: self.manifest.version.clone(),
            values,
            labels: labels.clone(),
            label,
        })
    }
}
