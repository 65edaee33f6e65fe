//! Building a model's input tensor from named features, as its manifest declares.

use std::collections::BTreeMap;

use vitalcore_protocol::manifest::InputSpec;
use vitalcore_signal::{feature_def, FEATURE_SET_VERSION};

use super::error::InferenceError;

/// Named feature values of one feature set version, as the signal crate computes them.
///
/// `Debug` prints the feature names only: the values are personal health data.
#[derive(Clone, Default, PartialEq)]
pub struct FeatureVector {
    feature_set: String,
    values: BTreeMap<String, f64>,
}

impl std::fmt::Debug for FeatureVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureVector")
            .field("feature_set", &self.feature_set)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FeatureVector {
    /// An empty vector of feature set `feature_set` (for example `"v1"`).
    pub fn new(feature_set: impl Into<String>) -> Self {
        FeatureVector {
            feature_set: feature_set.into(),
            values: BTreeMap::new(),
        }
    }

    /// An empty vector of the feature set this SDK computes ([`FEATURE_SET_VERSION`]).
    pub fn current() -> Self {
        Self::new(FEATURE_SET_VERSION)
    }

    /// Adds or replaces one value.
    pub fn insert(&mut self, name: impl Into<String>, value: f64) {
        self.values.insert(name.into(), value);
    }

    /// Builder form of [`FeatureVector::insert`].
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// The feature set version the values belong to.
    pub fn feature_set(&self) -> &str {
        &self.feature_set
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    name: String,
    mean: f64,
    scale: f64,
}

/// The validated recipe for one model's input tensor.
#[derive(Debug, Clone)]
pub(crate) enum InputPlan {
    Features {
        feature_set: String,
        columns: Vec<Column>,
    },
    Window {
        channel: String,
        rate_hz: f64,
        length: usize,
    },
}

impl InputPlan {
    /// Checks the manifest's input spec against the feature set this SDK knows: known version,
    /// known names, same units, usable normalization, no duplicates.
    pub(crate) fn from_spec(spec: &InputSpec) -> Result<Self, InferenceError> {
        match spec {
            InputSpec::Features {
                feature_set,
                features,
            } => {
                if feature_set != FEATURE_SET_VERSION {
                    return Err(InferenceError::UnknownFeatureSet(feature_set.clone()));
                }
                let mut columns: Vec<Column> = Vec::with_capacity(features.len());
                for f in features {
                    let def = feature_def(&f.name)
                        .ok_or_else(|| InferenceError::UnknownFeature(f.name.clone()))?;
                    if def.unit != f.unit {
                        return Err(InferenceError::UnitMismatch {
                            name: f.name.clone(),
                            manifest_unit: f.unit.clone(),
                            feature_set_unit: def.unit.to_owned(),
                        });
                    }
                    if !f.mean.is_finite() || !f.scale.is_finite() || f.scale == 0.0 {
                        return Err(InferenceError::BadNormalization(f.name.clone()));
                    }
                    if columns.iter().any(|c| c.name == f.name) {
                        return Err(InferenceError::DuplicateFeature(f.name.clone()));
                    }
                    columns.push(Column {
                        name: f.name.clone(),
                        mean: f.mean,
                        scale: f.scale,
                    });
                }
                if columns.is_empty() {
                    return Err(InferenceError::InputLength {
                        expected: 1,
                        got: 0,
                    });
                }
                Ok(InputPlan::Features {
                    feature_set: feature_set.clone(),
                    columns,
                })
            }
            InputSpec::RawWindow {
                channel,
                rate_hz,
                length,
            } => {
                if !(rate_hz.is_finite() && *rate_hz > 0.0) || *length == 0 {
                    return Err(InferenceError::WindowMismatch(
                        "manifest rate must be positive and length non-zero".into(),
                    ));
                }
                Ok(InputPlan::Window {
                    channel: channel.clone(),
                    rate_hz: *rate_hz,
                    length: *length,
                })
            }
        }
    }

    /// Shape of the tensor for one prediction.
    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            InputPlan::Features { columns, .. } => vec![1, columns.len()],
            InputPlan::Window { length, .. } => vec![1, 1, *length],
        }
    }

    /// Fills `out` with the normalized features in column order.
    pub(crate) fn build_features(
        &self,
        v: &FeatureVector,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let InputPlan::Features {
            feature_set,
            columns,
        } = self
        else {
            return Err(InferenceError::WrongInputKind {
                expected: "a raw window",
            });
        };
        if v.feature_set() != feature_set {
            return Err(InferenceError::FeatureSetMismatch {
                expected: feature_set.clone(),
                got: v.feature_set().to_owned(),
            });
        }
        out.clear();
        for c in columns {
            let x = v
                .get(&c.name)
                .ok_or_else(|| InferenceError::MissingFeature(c.name.clone()))?;
            if !x.is_finite() {
                return Err(InferenceError::NonFiniteFeature(c.name.clone()));
            }
            let z = ((x - c.mean) / c.scale) as f32;
            if !z.is_finite() {
                return Err(InferenceError::NonFiniteFeature(c.name.clone()));
            }
            out.push(z);
        }
        Ok(())
    }

    /// Fills `out` with the standardized window (zero mean, unit standard deviation).
    pub(crate) fn build_window(
        &self,
        channel: &str,
        rate_hz: f64,
        samples: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let InputPlan::Window {
            channel: want_channel,
            rate_hz: want_rate,
            length,
        } = self
        else {
            return Err(InferenceError::WrongInputKind {
                expected: "named feature",
            });
        };
        if channel != want_channel {
            return Err(InferenceError::WindowMismatch(format!(
                "channel `{channel}`, the model reads `{want_channel}`"
            )));
        }
        if (rate_hz - want_rate).abs() > 1e-9 * want_rate {
            return Err(InferenceError::WindowMismatch(format!(
                "rate {rate_hz} Hz, the model expects {want_rate} Hz"
            )));
        }
        if samples.len() != *length {
            return Err(InferenceError::WindowMismatch(format!(
                "{} samples, the model expects {length}",
                samples.len()
            )));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(InferenceError::WindowMismatch("non-finite sample".into()));
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let var = samples
            .iter()
            .map(|&s| (f64::from(s) - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        if sd <= f64::EPSILON {
            return Err(InferenceError::WindowMismatch("flat signal".into()));
        }
        out.clear();
        out.extend(samples.iter().map(|&s| ((f64::from(s) - mean) / sd) as f32));
        Ok(())
    }
}
