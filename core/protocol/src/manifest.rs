//! Model manifests and signed model bundles.
//!
//! A bundle is an ONNX artifact plus a [`ModelManifest`] describing it. The publisher signs the
//! manifest's exact JSON bytes (not a re-serialization, so no canonical-JSON pitfalls) with
//! Ed25519; the [`SignedManifest`] envelope carries those bytes base64-encoded with one or more
//! signatures. The manifest pins the artifact by sha256 and length, so verifying the envelope
//! and then the artifact's hash authenticates the whole bundle before any ONNX parsing happens.

use serde::{Deserialize, Serialize};

/// Version of the manifest format itself (not of the model).
pub const MANIFEST_SCHEMA: u32 = 1;

/// A model version: semantic versioning, compared by precedence.
pub type ModelVersion = semver::Version;

/// What a model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Class probabilities over [`OutputSpec::labels`].
    Classification,
    /// One or more real-valued outputs.
    Regression,
}

/// One named feature the model consumes, with the normalization the SDK applies before
/// building the tensor: `(value - mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureInput {
    /// Feature name from the declared feature set (for example `"rmssd"`).
    pub name: String,
    /// Unit the model was trained with; must equal the feature set's unit for that name.
    pub unit: String,
    /// Subtracted before scaling (0 when the model normalizes internally).
    #[serde(default)]
    pub mean: f64,
    /// Divisor after centring (1 when the model normalizes internally); never 0.
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

/// How the SDK builds the model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// A `[batch, features.len()]` f32 tensor, columns in the order listed, filled by name.
    Features {
        /// Feature set version the names refer to (for example `"v1"`).
        feature_set: String,
        /// Features in tensor column order.
        features: Vec<FeatureInput>,
    },
    /// A `[batch, 1, length]` f32 tensor of one resampled, standardized raw channel.
    RawWindow {
        /// Channel name (`"ppg"`, `"ecg"`, `"accel_magnitude"`).
        channel: String,
        /// Sample rate the window is resampled to, in Hz.
        rate_hz: f64,
        /// Samples per window.
        length: usize,
    },
}

/// What the model's outputs mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Name of the ONNX output to read (for scikit-learn classifiers, the probabilities).
    pub output_name: String,
    /// Class labels in output column order (classification), or output names (regression).
    pub labels: Vec<String>,
    /// Decision threshold on the positive class probability, for binary classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// The artifact a manifest pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Lower-case hex sha256 of the ONNX bytes.
    pub sha256: String,
    /// Length of the ONNX bytes; checked before hashing so a huge download is refused early.
    pub length: u64,
}

/// A known input and the output the model must produce for it, checked before activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// Input tensor, row-major, shape as built from [`InputSpec`] with batch 1.
    pub input: Vec<f32>,
    /// Expected values of the output named in [`OutputSpec::output_name`].
    pub expected: Vec<f32>,
    /// Maximum absolute difference allowed per element.
    pub tolerance: f32,
}

/// Everything a device needs to decide whether to trust and how to run a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Manifest format version, [`MANIFEST_SCHEMA`] for this crate.
    pub schema: u32,
    /// Model name, stable across versions (for example `"rhythm-ppg"`).
    pub name: String,
    /// Model version; a device only ever moves to a strictly greater one.
    pub version: ModelVersion,
    /// What the model computes.
    pub task: Task,
    /// How to build the input tensor.
    pub input: InputSpec,
    /// What the outputs mean.
    pub outputs: OutputSpec,
    /// Oldest SDK version that can run this model.
    pub min_sdk_version: ModelVersion,
    /// The ONNX artifact this manifest pins.
    pub artifact: ArtifactRef,
    /// Publication time, seconds since the Unix epoch (UTC).
    pub published_at: i64,
    /// After this time (seconds since the Unix epoch) devices refuse the manifest.
    pub expires_at: i64,
    /// Optional known-answer test run before activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test: Option<SelfTest>,
}

/// One signature over a [`SignedManifest`]'s payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// Identifies the publisher key (lower-case hex of the first 8 bytes of sha256(public key)).
    pub key_id: String,
    /// Ed25519 signature of the payload bytes, standard base64.
    pub sig: String,
}

/// The signed envelope devices download: the manifest's exact JSON bytes plus signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// Standard base64 of the manifest's JSON bytes; signatures are over the decoded bytes.
    pub payload: String,
    /// At least one signature by a pinned publisher key.
    pub signatures: Vec<ManifestSignature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelManifest {
        ModelManifest {
            schema: MANIFEST_SCHEMA,
            name: "rhythm-ppg".into(),
            version: ModelVersion::new(1, 2, 0),
            task: Task::Classification,
            input: InputSpec::Features {
                feature_set: "v1".into(),
                features: vec![FeatureInput {
                    name: "rmssd".into(),
                    unit: "ms".into(),
                    mean: 40.0,
                    scale: 20.0,
                }],
            },
            outputs: OutputSpec {
                output_name: "probabilities".into(),
                labels: vec!["regular".into(), "irregular".into()],
                threshold: Some(0.5),
            },
            min_sdk_version: ModelVersion::new(0, 1, 0),
            artifact: ArtifactRef {
                sha256: "00".repeat(32),
                length: 1234,
            },
            published_at: 1_790_000_000,
            expires_at: 1_800_000_000,
            self_test: None,
        }
    }

    /// Wire snapshot: a change here breaks every device in the field.
    #[test]
    fn manifest_wire_format_is_frozen() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"schema":1,"name":"rhythm-ppg","version":"1.2.0","task":"classification","#,
                r#""input":{"kind":"features","feature_set":"v1","features":[{"name":"rmssd","unit":"ms","mean":40.0,"scale":20.0}]},"#,
                r#""outputs":{"output_name":"probabilities","labels":["regular","irregular"],"threshold":0.5},"#,
                r#""min_sdk_version":"0.1.0","artifact":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","length":1234},"#,
                r#""published_at":1790000000,"expires_at":1800000000}"#
            )
        );
        let back: ModelManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn versions_compare_by_precedence() {
        let v = |s: &str| s.parse::<ModelVersion>().unwrap();
        assert!(v("1.10.0") > v("1.9.3"));
        assert!(v("2.0.0-rc.1") < v("2.0.0"));
    }

    #[test]
    fn scale_defaults_to_one_when_absent() {
        let f: FeatureInput = serde_json::from_str(r#"{"name":"sdnn","unit":"ms"}"#).unwrap();
        assert_eq!((f.mean, f.scale), (0.0, 1.0));
    }
}
