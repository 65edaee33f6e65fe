//! Errors of the inference module. tract's `anyhow` errors stop here: callers see a variant
//! they can act on, never a tract type.

/// Why a model could not be loaded or run, or an input could not be built.
///
/// Messages carry names, counts and shapes, never feature values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    /// The bytes are not an ONNX protobuf.
    #[error("model bytes are not a valid ONNX model")]
    Decode,
    /// The graph uses operators the engine does not implement.
    #[error("model uses operators this engine does not implement: {}", .0.join(", "))]
    UnsupportedOperators(Vec<String>),
    /// The model needs the general ONNX evaluator (tract), which this build leaves out (the
    /// mobile builds): the native evaluators implement none of `operators`, or not this form of
    /// them (then `operators` lists the whole graph's).
    #[error(
        "model needs the general ONNX evaluator, which this build does not include (operators: {})",
        .operators.join(", ")
    )]
    NeedsTract {
        /// Operator types (with domain when not the default) the build cannot run.
        operators: Vec<String>,
    },
    /// The graph parsed but could not be typed, optimized or planned (for example a shape
    /// that contradicts the pinned input facts).
    #[error("model could not be prepared for inference: {0}")]
    Load(String),
    /// A tree ensemble's attributes are inconsistent (arrays of different lengths, a child or
    /// a class vote that names no node, a cycle, a feature beyond the input): the reason, with
    /// ids and counts only.
    #[error("tree ensemble is malformed: {0}")]
    MalformedTreeEnsemble(String),
    /// The model does not have exactly one input.
    #[error("model has {0} inputs; exactly one is supported")]
    InputCount(usize),
    /// The requested input shape does not match what the model accepts.
    #[error("input shape {got:?} does not fit the model's input {expected}")]
    InputShape {
        /// Shape the model declares (dynamic dims as symbols).
        expected: String,
        /// Shape that was asked for.
        got: Vec<usize>,
    },
    /// A tensor of the wrong length was passed in.
    #[error("input has {got} values, the pinned input shape needs {expected}")]
    InputLength {
        /// Values the pinned shape needs.
        expected: usize,
        /// Values passed.
        got: usize,
    },
    /// The manifest names an output the graph does not have.
    #[error("model has no output named `{0}`")]
    UnknownOutput(String),
    /// The output is not a float tensor.
    #[error("output `{0}` is not a float tensor")]
    OutputType(String),
    /// The model produced a different number of values than the manifest's labels.
    #[error("output has {got} values, the manifest lists {expected} labels")]
    OutputArity {
        /// Labels in the manifest.
        expected: usize,
        /// Values produced for one input.
        got: usize,
    },
    /// Running the plan failed.
    #[error("inference failed: {0}")]
    Run(String),
    /// The manifest refers to a feature set this SDK does not know.
    #[error("unknown feature set version `{0}`")]
    UnknownFeatureSet(String),
    /// The manifest names a feature that is not in its feature set.
    #[error("feature `{0}` is not part of the declared feature set")]
    UnknownFeature(String),
    /// The manifest's unit for a feature differs from the feature set's unit.
    #[error("feature `{name}` is in `{feature_set_unit}`, the manifest says `{manifest_unit}`")]
    UnitMismatch {
        /// Feature name.
        name: String,
        /// Unit in the manifest.
        manifest_unit: String,
        /// Unit in the feature set.
        feature_set_unit: String,
    },
    /// A normalization constant is not finite, or the scale is zero.
    #[error("feature `{0}` has a non-finite mean or a zero/non-finite scale")]
    BadNormalization(String),
    /// The manifest lists a feature twice.
    #[error("feature `{0}` is listed twice in the manifest")]
    DuplicateFeature(String),
    /// The feature vector lacks a feature the model needs.
    #[error("feature `{0}` is missing from the feature vector")]
    MissingFeature(String),
    /// A feature value is NaN or infinite.
    #[error("feature `{0}` is not a finite number")]
    NonFiniteFeature(String),
    /// The feature vector was computed for another feature set version.
    #[error("feature vector is of set `{got}`, the model expects `{expected}`")]
    FeatureSetMismatch {
        /// Feature set of the model.
        expected: String,
        /// Feature set of the vector.
        got: String,
    },
    /// The model takes named features but was given a raw window, or the reverse.
    #[error("the model takes {expected} input")]
    WrongInputKind {
        /// `"feature"` or `"raw window"`.
        expected: &'static str,
    },
    /// A raw window does not match the manifest's channel, rate or length.
    #[error("raw window mismatch: {0}")]
    WindowMismatch(String),
}

#[cfg(feature = "tract")]
impl InferenceError {
    /// Keeps the outermost message of a tract error: enough to act on, no backtrace or chain of
    /// internal contexts.
    pub(crate) fn load(e: impl std::fmt::Display) -> Self {
        InferenceError::Load(e.to_string())
    }

    pub(crate) fn run(e: impl std::fmt::Display) -> Self {
        InferenceError::Run(e.to_string())
    }
}
