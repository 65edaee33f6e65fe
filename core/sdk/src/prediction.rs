//! From features to a prediction outcome: the quality gate, then the active model.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::kind::CheckKind;

/// Signal quality of a check or window. `Debug` shows only whether it was acceptable.
#[derive(Clone, Copy, PartialEq)]
pub struct QualityReport {
    /// Signal quality index, `0..=1`.
    pub sqi: f64,
    /// Threshold in force (from [`crate::Config`]).
    pub threshold: f64,
    /// `sqi >= threshold`: good enough to predict on.
    pub acceptable: bool,
}

impl fmt::Debug for QualityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QualityReport")
            .field("acceptable", &self.acceptable)
            .finish_non_exhaustive()
    }
}

/// What became of the prediction step.
#[derive(Clone, PartialEq)]
pub enum PredictionOutcome {
    /// The active model ran on the features.
    Predicted {
        /// Model name from its manifest.
        model_name: String,
        /// Model version from its manifest.
        model_version: String,
        /// Named outputs (probabilities, scores).
        outputs: BTreeMap<String, f64>,
    },
    /// The signal quality is below the threshold: features are stored, no model was run,
    /// because a prediction on a bad signal would be misleading.
    QualityTooLow {
        /// Quality measured.
        sqi: f64,
        /// Threshold it missed.
        threshold: f64,
    },
    /// The active model takes features this recording did not yield (for example a
    /// frequency-domain HRV feature of a recording too short for it): no prediction.
    FeaturesUnavailable {
        /// Names of the missing features.
        missing: Vec<String>,
    },
    /// No model is installed for this kind of check.
    NoModel,
}

impl fmt::Debug for PredictionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Predicted {
                model_name,
                model_version,
                ..
            } => f
                .debug_struct("Predicted")
                .field("model_name", model_name)
                .field("model_version", model_version)
                .finish_non_exhaustive(),
            Self::QualityTooLow { .. } => f.write_str("QualityTooLow"),
            Self::FeaturesUnavailable { missing } => f
                .debug_struct("FeaturesUnavailable")
                .field("missing", missing)
                .finish(),
            Self::NoModel => f.write_str("NoModel"),
        }
    }
}

impl PredictionOutcome {
    /// Stable tag stored with the check.
    pub(crate) fn tag(&self) -> &'static str {
        match self {
            Self::Predicted { .. } => "predicted",
            Self::QualityTooLow { .. } => "quality_too_low",
            Self::FeaturesUnavailable { .. } => "features_unavailable",
            Self::NoModel => "no_model",
        }
    }
}

/// A model output with its provenance, as a [`Predictor`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelOutput {
    pub model_name: String,
    pub model_version: String,
    pub outputs: BTreeMap<String, f64>,
}

/// What a [`Predictor`] made of one check.
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // Built by the predictor adapters.
pub(crate) enum Answer {
    /// No model serves this kind.
    NoModel,
    /// The serving model needs features the check lacks.
    Missing(Vec<String>),
    /// The model ran.
    Output(ModelOutput),
}

/// The seam between the engine and the inference module: the model serving a kind of check,
/// run on features keyed by feature set v1 names.
pub(crate) trait Predictor: Send + Sync + fmt::Debug {
    fn predict(&self, kind: CheckKind, features: &BTreeMap<String, f64>) -> Result<Answer>;
}

/// Runs the quality gate, then `predictor`.
pub(crate) fn predict(
    predictor: Option<&dyn Predictor>,
    kind: CheckKind,
    quality: &QualityReport,
    features: &BTreeMap<String, f64>,
) -> Result<PredictionOutcome> {
    if !quality.acceptable {
        return Ok(PredictionOutcome::QualityTooLow {
            sqi: quality.sqi,
            threshold: quality.threshold,
        });
    }
    let Some(p) = predictor else {
        return Ok(PredictionOutcome::NoModel);
    };
    Ok(match p.predict(kind, features)? {
        Answer::Output(o) => PredictionOutcome::Predicted {
            model_name: o.model_name,
            model_version: o.model_version,
            outputs: o.outputs,
        },
        Answer::Missing(missing) => PredictionOutcome::FeaturesUnavailable { missing },
        Answer::NoModel => PredictionOutcome::NoModel,
    })
}
