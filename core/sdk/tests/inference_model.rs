//! Manifest-driven input building, typed errors at the edge, and what real exporters produce.

mod support;

use support::{excess, model_bytes, OrtRef, Rng, Tolerance};
use vitalcore::inference::{inspect, FeatureVector, InferenceError, Model, OnnxModel};
use vitalcore_protocol::manifest::{
    ArtifactRef, FeatureInput, InputSpec, ModelManifest, ModelVersion, OutputSpec, Task,
    MANIFEST_SCHEMA,
};

fn feature_inputs() -> Vec<FeatureInput> {
    vitalcore::signal::FEATURES_V1
        .iter()
        .take(16)
        .enumerate()
        .map(|(i, f)| FeatureInput {
            name: f.name.into(),
            unit: f.unit.into(),
            mean: i as f64 * 3.0,
            scale: 1.0 + i as f64,
        })
        .collect()
}

fn manifest(input: InputSpec, output: &str, labels: usize) -> ModelManifest {
    ModelManifest {
        schema: MANIFEST_SCHEMA,
        name: "m".into(),
        version: ModelVersion::new(3, 1, 4),
        task: Task::Classification,
        input,
        outputs: OutputSpec {
            output_name: output.into(),
            labels: (0..labels).map(|i| format!("class{i}")).collect(),
            threshold: None,
        },
        min_sdk_version: ModelVersion::new(0, 1, 0),
        artifact: ArtifactRef {
            sha256: String::new(),
            length: 0,
        },
        published_at: 0,
        expires_at: i64::MAX,
        self_test: None,
    }
}

fn features_manifest() -> ModelManifest {
    manifest(
        InputSpec::Features {
            feature_set: "v1".into(),
            features: feature_inputs(),
        },
        "probabilities",
        2,
    )
}

fn full_vector(rng: &mut Rng) -> FeatureVector {
    let mut v = FeatureVector::current();
    for f in feature_inputs() {
        v.insert(f.name, f64::from(rng.normal(10.0)));
    }
    v
}

/// The tensor is built by name with `(x - mean) / scale`, checked against ONNX Runtime fed
/// a tensor normalized here by hand.
#[test]
fn features_are_placed_by_name_and_normalized() {
    let bytes = model_bytes("mlp16");
    let model = Model::new(features_manifest(), &bytes).expect("loads");
    let mut ort = OrtRef::new(&bytes);
    // Normalized here and in the SDK with the same f64 arithmetic, so the f32 inputs agree to
    // the rounding of the cast: one more rounding.
    let mut tolerance = Tolerance::new(&bytes, &[1, 16], "probabilities").input_roundings(2.0);
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        let v = full_vector(&mut rng);
        let by_hand: Vec<f32> = feature_inputs()
            .iter()
            .map(|f| ((v.get(&f.name).expect("present") - f.mean) / f.scale) as f32)
            .collect();
        let p = model.predict(&v).expect("predicts");
        let reference = ort.run(&[1, 16], &by_hand, "probabilities");
        let bound = tolerance.bound(&[1, 16], &by_hand, &p.values, &reference);
        assert!(
            excess(&p.values, &reference, &bound) <= 1.0,
            "{:?} vs {reference:?}, bound {bound:?}",
            p.values
        );
        assert_eq!(p.model_name, "m");
        assert_eq!(p.model_version, ModelVersion::new(3, 1, 4));
        let best = if reference[1] > reference[0] {
            "class1"
        } else {
            "class0"
        };
        assert_eq!(p.label.as_deref(), Some(best));
    }
}

#[test]
fn insertion_order_does_not_matter() {
    let bytes = model_bytes("mlp16");
    let model = Model::new(features_manifest(), &bytes).expect("loads");
    let mut rng = Rng::new(2);
    let v = full_vector(&mut rng);
    let mut reversed = FeatureVector::current();
    for f in feature_inputs().iter().rev() {
        reversed.insert(f.name.clone(), v.get(&f.name).expect("present"));
    }
    assert_eq!(
        model.predict(&v).expect("ok"),
        model.predict(&reversed).expect("ok")
    );
}

#[test]
fn missing_or_non_finite_feature_or_other_set_is_a_typed_error() {
    let model = Model::new(features_manifest(), &model_bytes("mlp16")).expect("loads");
    let mut rng = Rng::new(3);
    let full = full_vector(&mut rng);

    let mut missing = FeatureVector::current();
    for f in feature_inputs().iter().skip(1) {
        missing.insert(f.name.clone(), 1.0);
    }
    assert_eq!(
        model.predict(&missing),
        Err(InferenceError::MissingFeature(
            feature_inputs()[0].name.clone()
        ))
    );
    let nan = full.clone().with("sdnn", f64::NAN);
    assert_eq!(
        model.predict(&nan),
        Err(InferenceError::NonFiniteFeature("sdnn".into()))
    );
    let mut other = FeatureVector::new("v0");
    for f in feature_inputs() {
        other.insert(f.name, 1.0);
    }
    assert!(matches!(
        model.predict(&other),
        Err(InferenceError::FeatureSetMismatch { .. })
    ));
    assert!(matches!(
        model.predict_window("ppg", 64.0, &[0.0; 16]),
        Err(InferenceError::WrongInputKind { .. })
    ));
}

#[test]
fn manifest_inputs_are_checked_against_the_feature_set() {
    let bytes = model_bytes("mlp16");
    let with = |edit: &dyn Fn(&mut Vec<FeatureInput>)| {
        let mut features = feature_inputs();
        edit(&mut features);
        let m = manifest(
            InputSpec::Features {
                feature_set: "v1".into(),
                features,
            },
            "probabilities",
            2,
        );
        Model::new(m, &bytes).map(|_| ())
    };
    assert_eq!(
        with(&|f| f[0].name = "heart_vibes".into()),
        Err(InferenceError::UnknownFeature("heart_vibes".into()))
    );
    assert!(matches!(
        with(&|f| f[4].unit = "s".into()),
        Err(InferenceError::UnitMismatch { .. })
    ));
    assert_eq!(
        with(&|f| f[2].scale = 0.0),
        Err(InferenceError::BadNormalization(f_name(2)))
    );
    assert_eq!(
        with(&|f| f[3] = f[2].clone()),
        Err(InferenceError::DuplicateFeature(f_name(2)))
    );
    // 15 named features for a 16-column model: the shape check catches it at load.
    assert!(matches!(
        with(&|f| {
            f.pop();
        }),
        Err(InferenceError::InputShape { .. })
    ));
    let wrong_set = manifest(
        InputSpec::Features {
            feature_set: "v9".into(),
            features: feature_inputs(),
        },
        "probabilities",
        2,
    );
    assert_eq!(
        Model::new(wrong_set, &bytes).map(|_| ()),
        Err(InferenceError::UnknownFeatureSet("v9".into()))
    );
    let wrong_output = manifest(
        InputSpec::Features {
            feature_set: "v1".into(),
            features: feature_inputs(),
        },
        "probs",
        2,
    );
    assert_eq!(
        Model::new(wrong_output, &bytes).map(|_| ()),
        Err(InferenceError::UnknownOutput("probs".into()))
    );
}

fn f_name(i: usize) -> String {
    feature_inputs()[i].name.clone()
}

#[test]
fn raw_window_model_standardizes_and_checks_the_window() {
    let bytes = model_bytes("cnn1d");
    let m = manifest(
        InputSpec::RawWindow {
            channel: "ppg".into(),
            rate_hz: 64.0,
            length: 1920,
        },
        "probabilities",
        2,
    );
    let model = Model::new(m, &bytes).expect("loads");
    let mut rng = Rng::new(4);
    let raw: Vec<f32> = rng.vec(1920, 3.0).iter().map(|x| x + 100.0).collect();
    let mean = raw.iter().map(|&x| f64::from(x)).sum::<f64>() / 1920.0;
    let sd = (raw
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / 1920.0)
        .sqrt();
    let by_hand: Vec<f32> = raw
        .iter()
        .map(|&x| ((f64::from(x) - mean) / sd) as f32)
        .collect();
    let p = model.predict_window("ppg", 64.0, &raw).expect("predicts");
    let reference = OrtRef::new(&bytes).run(&[1, 1, 1920], &by_hand, "probabilities");
    // Standardized here and in the SDK in f64: the f32 inputs agree to the cast's rounding.
    let bound = Tolerance::new(&bytes, &[1, 1, 1920], "probabilities")
        .input_roundings(2.0)
        .bound(&[1, 1, 1920], &by_hand, &p.values, &reference);
    assert!(
        excess(&p.values, &reference, &bound) <= 1.0,
        "{:?} vs {reference:?}, bound {bound:?}",
        p.values
    );
    for bad in [
        model.predict_window("ecg", 64.0, &raw),
        model.predict_window("ppg", 50.0, &raw),
        model.predict_window("ppg", 64.0, &raw[..1000]),
        model.predict_window("ppg", 64.0, &[1.0; 1920]),
    ] {
        assert!(
            matches!(bad, Err(InferenceError::WindowMismatch(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn unsupported_operators_are_named() {
    let zipmap = OnnxModel::load(&model_bytes("zipmap"), &[1, 16], None).unwrap_err();
    assert_eq!(
        zipmap,
        InferenceError::UnsupportedOperators(vec!["ai.onnx.ml:ZipMap".into()])
    );
    // Only the requested ZipMap is refused: the label output of the same file loads.
    let label = OnnxModel::load(&model_bytes("zipmap"), &[1, 16], Some(&["output_label"]))
        .expect("the label output loads");
    assert_eq!(label.outputs()[0].datum_type, "I64");
    let facts = inspect(&model_bytes("zipmap")).expect("inspectable");
    assert_eq!(
        facts.unsupported_operators,
        vec!["ai.onnx.ml:ZipMap".to_string()]
    );
    assert_eq!(facts.inputs[0].name, "X");
}

#[test]
fn dynamic_batch_dimension_is_reported_and_pinned() {
    let bytes = model_bytes("mlp16");
    let facts = inspect(&bytes).expect("inspectable");
    assert_eq!(facts.inputs.len(), 1);
    assert_eq!(facts.inputs[0].shape.len(), 2);
    assert_eq!(facts.inputs[0].shape[1], "16");
    assert!(
        facts.inputs[0].shape[0].parse::<usize>().is_err(),
        "batch dim is symbolic"
    );
    let model = OnnxModel::load(&bytes, &[1, 16], None).expect("loads");
    assert_eq!(model.input().shape, vec!["1", "16"]);
    assert!(matches!(
        OnnxModel::load(&bytes, &[1, 15], None),
        Err(InferenceError::InputShape { .. })
    ));
    assert!(matches!(
        model.run_all(&[0.0; 15]),
        Err(InferenceError::InputLength {
            expected: 16,
            got: 15
        })
    ));
}

#[test]
fn garbage_bytes_are_a_decode_error() {
    assert_eq!(
        OnnxModel::load(b"\xff\xff\xff\xff not onnx", &[1, 16], None).unwrap_err(),
        InferenceError::Decode
    );
}

/// One model shared by threads gives each the same answer as a single caller.
#[test]
fn shared_model_is_consistent_across_threads() {
    let model = std::sync::Arc::new(
        OnnxModel::load(
            &model_bytes("gbdt200_binary"),
            &[1, 16],
            Some(&["probabilities"]),
        )
        .expect("loads"),
    );
    let inputs: Vec<Vec<f32>> = {
        let mut rng = Rng::new(5);
        (0..64).map(|_| rng.vec(16, 1.5)).collect()
    };
    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| model.run_all(x).expect("runs")[0].clone())
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..4 {
                    for (x, want) in inputs.iter().zip(&expected) {
                        assert_eq!(&model.run_all(x).expect("runs")[0], want);
                    }
                }
            });
        }
    });
}
