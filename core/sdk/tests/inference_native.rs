//! What a build without tract (`--no-default-features`, the Android and iOS configuration)
//! serves and refuses, checked in that build by `make test-no-tract` and in the default build
//! by `cargo test --all-features`, each asserting its own side:
//!
//! * every tree ensemble the trainer exports (classifiers and regressors) loads on the native
//!   tree evaluator in both builds and matches ONNX Runtime, and so do the 1-D CNN, the MLPs and
//!   scikit-learn's linear models (with a `StandardScaler` too) on the native graph evaluator,
//!   every output of skl2onnx's export (labels too) at batch sizes 1 and 8;
//! * skl2onnx's default `ZipMap` output is refused by operator name in both builds, its label
//!   output of the same file served natively;
//! * any other model goes to tract with it, and without it is refused at load with
//!   `InferenceError::NeedsTract` naming the operators (expected lists read off the files with
//!   the `onnx` package), which `inspect` reports too;
//! * an engine whose update needs tract keeps serving the old model;
//! * arbitrary or damaged bytes are a typed error, never a panic.

mod engine_support;
mod support;

use std::collections::BTreeSet;

use engine_support::{keys, ppg_60s, T0_S};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use support::{excess, model_bytes, models_dir, OrtRef, Rng, Tolerance};
use vitalcore::inference::{inspect, Backend, InferenceError, OnnxModel};
use vitalcore::models::{sha256_hex, sign_manifest, ModelError};
use vitalcore::{
    CheckKind, Config, EngineError, ModelInfo, PredictionOutcome, SampleBatch, Vitalcore,
};

const TRACT: bool = cfg!(feature = "tract");

/// Which evaluator serves a test model when it is loaded for the output `index.json` names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Serves {
    /// The native tree evaluator, in both builds.
    Trees,
    /// The native graph evaluator, in both builds.
    Graph,
    /// Refused in both builds for its index output, by operator (a `ZipMap`'s sequence of
    /// maps).
    Refused,
    /// tract only: without it, refused naming these operators.
    Tract(&'static [&'static str]),
}

/// Every test model (`models/scripts/make_test_models.py`), classified. The operator lists are
/// the graph's operators no native evaluator implements (read off the files with `onnx`).
const MODELS: &[(&str, Serves)] = &[
    ("gbdt200_binary", Serves::Trees),
    ("gbdt6_binary", Serves::Trees),
    ("gbdt_multi", Serves::Trees),
    ("rf_binary", Serves::Trees),
    ("trees_modes_softmax_zero", Serves::Trees),
    ("trees_modes_logistic", Serves::Trees),
    ("trees_modes_none", Serves::Trees),
    ("gbdt_regressor", Serves::Trees),
    ("rf_regressor", Serves::Trees),
    ("mlp16", Serves::Graph),
    ("mlp_multi", Serves::Graph),
    ("logreg", Serves::Graph),
    ("logreg_multi", Serves::Graph),
    ("scaler_logreg", Serves::Graph),
    ("cnn1d", Serves::Graph),
    ("dense_clip", Serves::Tract(&["Clip"])),
    ("zipmap", Serves::Refused),
];

struct Entry {
    name: String,
    input_shape: Vec<usize>,
    output: String,
}

fn index() -> Vec<Entry> {
    let text = std::fs::read(models_dir().join("index.json")).expect("index.json readable");
    let json: serde_json::Value = serde_json::from_slice(&text).expect("index.json is JSON");
    json.as_array()
        .expect("index.json is a list")
        .iter()
        .map(|m| Entry {
            name: m["name"].as_str().expect("name").to_owned(),
            input_shape: m["input_shape"]
                .as_array()
                .expect("input_shape")
                .iter()
                .map(|d| d.as_u64().expect("dimension") as usize)
                .collect(),
            output: m["output"].as_str().expect("output").to_owned(),
        })
        .collect()
}

fn serves(name: &str) -> Serves {
    let (_, serves) = MODELS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| {
        panic!("test model `{name}` is not classified in MODELS: say which evaluator serves it")
    });
    *serves
}

fn expected_operators(name: &str) -> Option<BTreeSet<String>> {
    match serves(name) {
        Serves::Tract(ops) => Some(ops.iter().map(|s| (*s).to_owned()).collect()),
        Serves::Trees | Serves::Graph | Serves::Refused => None,
    }
}

#[test]
fn every_test_model_is_classified() {
    let names: BTreeSet<String> = index().into_iter().map(|e| e.name).collect();
    let classified: BTreeSet<String> = MODELS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(names, classified);
}

#[test]
fn tree_ensembles_run_natively_and_match_onnx_runtime() {
    assert_eq!(
        native_models_match_onnx_runtime(Serves::Trees),
        9,
        "the seven tree classifiers and the two regressors"
    );
}

#[test]
fn cnn_mlps_and_linear_models_run_natively_and_match_onnx_runtime() {
    assert_eq!(
        native_models_match_onnx_runtime(Serves::Graph),
        6,
        "cnn1d, the two MLPs, the three logistic regressions"
    );
}

/// What the issue names, as skl2onnx exports it (`label` + `probabilities`, or a regressor's
/// `variable`), with every output requested: native in both builds, at batch 1 and 8.
#[test]
fn default_scikit_learn_exports_run_natively_with_their_labels() {
    for (name, backend) in [
        ("mlp16", Backend::NativeGraph),
        ("logreg", Backend::NativeGraph),
        ("scaler_logreg", Backend::NativeGraph),
        ("gbdt_regressor", Backend::NativeTrees),
        ("rf_regressor", Backend::NativeTrees),
    ] {
        for batch in [1, 8] {
            let model = OnnxModel::load(&model_bytes(name), &[batch, 16], None)
                .unwrap_or_else(|e| panic!("{name} at batch {batch}: {e}"));
            assert_eq!(model.backend(), backend, "{name} at batch {batch}");
        }
    }
    let mlp = OnnxModel::load(&model_bytes("mlp16"), &[1, 16], None).expect("loads");
    let outputs: Vec<(&str, &str)> = mlp
        .outputs()
        .iter()
        .map(|o| (o.name.as_str(), o.datum_type.as_str()))
        .collect();
    assert_eq!(outputs, [("label", "I64"), ("probabilities", "F32")]);
}

/// Rows of random inputs for a test model: standard normal times `scale`, or, after a
/// `Scaler`, around the training data's mean at its spread (the scaler's own constants), so
/// that the classes are all reached.
fn inputs(bytes: &[u8], rng: &mut Rng, len: usize, scale: f32) -> Vec<f32> {
    let offset = support::float_attribute(bytes, "Scaler", "offset");
    let spread = support::float_attribute(bytes, "Scaler", "scale");
    if offset.is_empty() {
        return rng.vec(len, scale);
    }
    (0..len)
        .map(|i| offset[i % offset.len()] + rng.normal(scale) / spread[i % spread.len()])
        .collect()
}

/// Loads every test model `kind` serves, at batch 1 and 8, for its index output and with every
/// output, checks it runs there and matches ONNX Runtime on random inputs, labels included
/// (see [`labels_match`]); returns how many models it checked.
fn native_models_match_onnx_runtime(kind: Serves) -> usize {
    let backend = match kind {
        Serves::Trees => Backend::NativeTrees,
        Serves::Graph => Backend::NativeGraph,
        Serves::Tract(_) | Serves::Refused => unreachable!("only native kinds are checked here"),
    };
    let mut checked = 0;
    for e in index() {
        if serves(&e.name) != kind {
            continue;
        }
        let bytes = model_bytes(&e.name);
        // With every output (labels too) the native evaluator still serves it.
        let facts = inspect(&bytes).expect("inspects");
        assert!(facts.unsupported_operators.is_empty(), "{}", e.name);
        let mut ort = OrtRef::new(&bytes);
        for batch in [1, 8] {
            let mut shape = e.input_shape.clone();
            shape[0] = batch;
            let single = OnnxModel::load(&bytes, &shape, Some(&[e.output.as_str()]))
                .unwrap_or_else(|err| panic!("{} loads: {err}", e.name));
            let all = OnnxModel::load(&bytes, &shape, None)
                .unwrap_or_else(|err| panic!("{} loads with every output: {err}", e.name));
            for model in [&single, &all] {
                assert_eq!(model.backend(), backend, "{} at batch {batch}", e.name);
            }
            let out = all.output_index(&e.output).expect("index output");
            let label = all.output_index("label");
            let mut tolerance = Tolerance::new(&bytes, &shape, &e.output);
            let mut rng = Rng::new(0x7ee5 ^ e.name.len() as u64);
            let len: usize = shape.iter().product();
            let (mut ours, mut again) = (Vec::new(), Vec::new());
            let (mut compared, mut classes) = (0, BTreeSet::new());
            for _ in 0..50 {
                let input = inputs(&bytes, &mut rng, len, 2.0);
                single.run_into(&input, 0, &mut ours).expect("runs");
                all.run_into(&input, out, &mut again).expect("runs");
                assert_eq!(
                    ours, again,
                    "{}: one output or all, the same values",
                    e.name
                );
                let reference = ort.run(&shape, &input, &e.output);
                assert_eq!(ours.len(), reference.len(), "{}", e.name);
                let bound = tolerance.bound(&shape, &input, &ours, &reference);
                assert!(
                    excess(&ours, &reference, &bound) <= 1.0,
                    "{} at batch {batch}: {ours:?} vs {reference:?}, bound {bound:?}",
                    e.name
                );
                if let Some(label) = label {
                    let got = all.run_labels(&input, label).expect("labels run");
                    let want = ort.run_labels(&shape, &input, "label");
                    compared += labels_match(&e.name, &got, &want, &reference, &bound);
                    classes.extend(want);
                }
            }
            if label.is_some() {
                // Most rows are decided clearly, and more than one class is reached: a test
                // that compares nothing, or one constant label, would pass anything.
                assert!(
                    compared >= 45 * batch,
                    "{}: {compared} rows compared",
                    e.name
                );
                assert!(classes.len() >= 2, "{}: classes {classes:?}", e.name);
            }
        }
        checked += 1;
    }
    checked
}

/// Our labels against ONNX Runtime's, row by row, where its two largest scores are further
/// apart than the two bounds on their difference from ours (nearer, float32 rounding may
/// order them either way in either runtime); returns the rows compared.
fn labels_match(name: &str, ours: &[i64], theirs: &[i64], scores: &[f32], bound: &[f64]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "{name}: one label per row");
    let cols = scores.len() / theirs.len();
    let mut compared = 0;
    for (row, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let s = &scores[row * cols..(row + 1) * cols];
        let t = &bound[row * cols..(row + 1) * cols];
        let mut order: Vec<usize> = (0..cols).collect();
        order.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
        let (first, second) = (order[0], order[1]);
        if f64::from(s[first] - s[second]) > t[first] + t[second] {
            assert_eq!(a, b, "{name}: row {row}, scores {s:?}");
            compared += 1;
        }
    }
    compared
}

/// The seeded zoo (`models/scripts/make_zoo.py`, built by `make data`): 1-D CNNs of random
/// kernels, strides, channels and pools, MLPs of 2-4 layers, boosted and forest ensembles of
/// 10-500 trees, scaler + logistic regression pipelines, every output of their export (labels
/// too): each on a native evaluator in both builds, at parity with ONNX Runtime. For deep
/// random CNNs the derived bound is loose (the absolute-value network does not cancel what the
/// real one does), so with tract the outputs are also held to tract's own precision.
#[test]
fn zoo_models_run_natively_and_match_onnx_runtime() {
    let dir = models_dir().join("../zoo");
    let text = std::fs::read(dir.join("index.json"))
        .expect("the zoo is missing: `make data` builds it (models/scripts/make_zoo.py)");
    let index: serde_json::Value = serde_json::from_slice(&text).expect("index.json is JSON");
    let mut kinds = BTreeSet::new();
    for m in index.as_array().expect("a list") {
        let name = m["name"].as_str().expect("name");
        let bytes = std::fs::read(dir.join(m["file"].as_str().expect("file"))).expect("model");
        let shape: Vec<usize> = m["input_shape"]
            .as_array()
            .expect("input shape")
            .iter()
            .map(|d| d.as_u64().expect("dimension") as usize)
            .collect();
        let model = OnnxModel::load(&bytes, &shape, None)
            .unwrap_or_else(|e| panic!("zoo {name} loads: {e}"));
        assert_ne!(model.backend(), Backend::Tract, "zoo {name}");
        kinds.insert(model.backend().as_str());
        let out = model.output_index("probabilities").expect("probabilities");
        let label = model.output_index("label");
        let mut ort = OrtRef::new(&bytes);
        let mut tolerance = Tolerance::new(&bytes, &shape, "probabilities");
        #[cfg(feature = "tract")]
        let tract = OnnxModel::load_tract(&bytes, &shape, Some(&["probabilities"])).ok();
        let mut rng = Rng::new(0x200 ^ name.len() as u64);
        let len: usize = shape.iter().product();
        let mut ours = Vec::new();
        // The CNNs are slow in a debug build: fewer inputs.
        let runs = if shape.len() == 3 { 3 } else { 20 };
        for _ in 0..runs {
            let input = inputs(&bytes, &mut rng, len, 1.5);
            model.run_into(&input, out, &mut ours).expect("runs");
            let reference = ort.run(&shape, &input, "probabilities");
            let bound = tolerance.bound(&shape, &input, &ours, &reference);
            assert!(
                excess(&ours, &reference, &bound) <= 1.0,
                "zoo {name}: {ours:?} vs {reference:?}, bound {bound:?}"
            );
            #[cfg(feature = "tract")]
            if let Some(tract) = &tract {
                let mut theirs = Vec::new();
                tract.run_into(&input, 0, &mut theirs).expect("tract runs");
                assert!(
                    support::tract_close(&ours, &theirs),
                    "zoo {name}: ours {ours:?}, tract {theirs:?}"
                );
            }
            if let Some(label) = label {
                let got = model.run_labels(&input, label).expect("labels run");
                let want = ort.run_labels(&shape, &input, "label");
                labels_match(name, &got, &want, &reference, &bound);
            }
        }
    }
    assert_eq!(kinds.len(), 2, "both native evaluators: {kinds:?}");
}

/// skl2onnx's default export keeps its `ZipMap`: asked for, it is refused by operator name in
/// both builds; its label output loads natively and gives ONNX Runtime's labels.
#[test]
fn a_zipmap_output_is_refused_by_name_and_the_label_output_served() {
    let bytes = model_bytes("zipmap");
    for outputs in [None, Some(&["output_probability"][..])] {
        assert_eq!(
            OnnxModel::load(&bytes, &[1, 16], outputs).unwrap_err(),
            InferenceError::UnsupportedOperators(vec!["ai.onnx.ml:ZipMap".into()])
        );
    }
    let facts = inspect(&bytes).expect("inspects");
    assert_eq!(facts.unsupported_operators, ["ai.onnx.ml:ZipMap"]);
    let model = OnnxModel::load(&bytes, &[4, 16], Some(&["output_label"])).expect("loads");
    assert_eq!(model.backend(), Backend::NativeGraph);
    // `logreg` is the same fitted model exported without the ZipMap: its probabilities say
    // which rows are decided clearly, and its labels are computed the same way.
    let plain_bytes = model_bytes("logreg");
    let plain = OnnxModel::load(&plain_bytes, &[4, 16], None).expect("loads");
    let plain_label = plain.output_index("label").expect("label output");
    let mut tolerance = Tolerance::new(&plain_bytes, &[4, 16], "probabilities");
    let (mut ort, mut ort_plain) = (OrtRef::new(&bytes), OrtRef::new(&plain_bytes));
    let mut rng = Rng::new(5);
    let (mut compared, mut classes) = (0, BTreeSet::new());
    for _ in 0..50 {
        let input = rng.vec(64, 2.0);
        let want = ort.run_labels(&[4, 16], &input, "output_label");
        let probabilities = ort_plain.run(&[4, 16], &input, "probabilities");
        let bound = tolerance.bound(&[4, 16], &input, &probabilities, &probabilities);
        let got = model.run_labels(&input, 0).expect("runs");
        compared += labels_match("zipmap", &got, &want, &probabilities, &bound);
        assert_eq!(plain.run_labels(&input, plain_label).expect("runs"), got);
        classes.extend(want);
    }
    assert!(compared >= 180, "{compared} rows compared");
    assert!(classes.len() >= 2, "{classes:?}");
}

#[test]
fn the_bundled_default_model_runs_natively() {
    let bytes = std::fs::read(support::workspace().join("models/rhythm-ppg.onnx"))
        .expect("bundled model file");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(support::workspace().join("models/rhythm-ppg.manifest.json"))
            .expect("bundled manifest"),
    )
    .expect("json");
    let inputs = manifest["input"]["features"]
        .as_array()
        .expect("features")
        .len();
    let model = OnnxModel::load(&bytes, &[1, inputs], Some(&["probabilities"])).expect("loads");
    assert_eq!(model.backend(), Backend::NativeTrees);
}

#[test]
fn other_models_need_tract_and_are_refused_by_name_without_it() {
    for e in index() {
        let Some(expected) = expected_operators(&e.name) else {
            continue;
        };
        let bytes = model_bytes(&e.name);
        let loaded = OnnxModel::load(&bytes, &e.input_shape, Some(&[e.output.as_str()]));
        let facts = inspect(&bytes).expect("inspects");
        if TRACT {
            // tract serves it, or refuses it with its own operator list (ZipMap), never with
            // NeedsTract.
            match loaded {
                Ok(model) => {
                    assert_eq!(model.backend(), Backend::Tract, "{}", e.name);
                    assert!(facts.unsupported_operators.is_empty(), "{}", e.name);
                }
                Err(InferenceError::UnsupportedOperators(ops)) => {
                    assert_eq!(facts.unsupported_operators, ops, "{}", e.name);
                }
                Err(other) => panic!("{}: {other:?}", e.name),
            }
            continue;
        }
        match loaded {
            Err(InferenceError::NeedsTract { operators }) => {
                let got: BTreeSet<String> = operators.iter().cloned().collect();
                assert_eq!(got, expected, "{}", e.name);
                assert_eq!(got.len(), operators.len(), "{}: no repeats", e.name);
                let message = InferenceError::NeedsTract { operators }.to_string();
                assert!(message.contains("does not include"), "{message}");
            }
            other => panic!("{}: expected NeedsTract, got {other:?}", e.name),
        }
        let reported: BTreeSet<String> = facts.unsupported_operators.into_iter().collect();
        assert_eq!(reported, expected, "{}: inspect", e.name);
        assert!(
            facts.rewrites.is_empty(),
            "{}: rewrites are tract's",
            e.name
        );
    }
}

/// The engine's model update path: a signed, valid bundle whose model needs tract (a dense
/// layer with `Clip`). Without
/// tract it is refused at load and the bundled default keeps serving checks; with tract it
/// installs.
#[test]
fn an_update_that_needs_tract_leaves_the_old_model_serving_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .expect("key generation")
        .as_ref()
        .to_vec();
    let public = hex::encode(
        Ed25519KeyPair::from_pkcs8(&pkcs8)
            .expect("fresh key parses")
            .public_key()
            .as_ref(),
    );
    let engine = Vitalcore::open(
        Config::new(dir.path()).model_public_keys(vec![public]),
        &keys(),
    )
    .expect("open");
    let bundled = Some(ModelInfo {
        name: "rhythm-ppg".into(),
        version: "1.0.0".into(),
    });
    assert_eq!(engine.active_model(), bundled);

    let artifact = model_bytes("dense_clip");
    let self_input = Rng::new(11).vec(16, 1.0);
    // The known answer comes from ONNX Runtime, not from the code under test.
    let expected = OrtRef::new(&artifact).run(&[1, 16], &self_input, "probabilities");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let features: Vec<serde_json::Value> = vitalcore::signal::FEATURES_V1
        .iter()
        .take(16)
        .map(|f| serde_json::json!({"name": f.name, "unit": f.unit, "mean": 0.0, "scale": 1.0}))
        .collect();
    let manifest = serde_json::json!({
        "schema": 1,
        "name": "rhythm-ppg",
        "version": "2.0.0",
        "task": "classification",
        "input": {"kind": "features", "feature_set": "v1", "features": features},
        "outputs": {"output_name": "probabilities", "labels": ["regular", "irregular"], "threshold": 0.5},
        "min_sdk_version": "0.1.0",
        "artifact": {"sha256": sha256_hex(&artifact), "length": artifact.len()},
        "published_at": now - 60,
        "expires_at": now + 86_400,
        "self_test": {"input": self_input, "expected": expected, "tolerance": 1e-5},
    });
    let envelope =
        sign_manifest(&serde_json::to_vec(&manifest).expect("json"), &pkcs8).expect("signs");
    let envelope = serde_json::to_vec(&envelope).expect("envelope json");

    let installed = engine.install_model(&envelope, &artifact);
    if TRACT {
        let info = installed.expect("installs with tract");
        assert_eq!(info.version, "2.0.0");
        assert_eq!(engine.active_model(), Some(info));
        return;
    }
    match installed {
        Err(EngineError::Model(ModelError::Unloadable(InferenceError::NeedsTract {
            operators,
        }))) => assert_eq!(operators, ["Clip"]),
        other => panic!("expected NeedsTract, got {other:?}"),
    }
    assert_eq!(engine.active_model(), bundled);
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_60s()))
        .expect("push");
    match s.finish().expect("finish").check.prediction {
        PredictionOutcome::Predicted {
            model_name,
            model_version,
            ..
        } => assert_eq!(
            (model_name.as_str(), model_version.as_str()),
            ("rhythm-ppg", "1.0.0")
        ),
        other => panic!("expected a prediction by the bundled model, got {other:?}"),
    }
    drop(engine);
    // Nothing of the refused bundle survives a restart either.
    let engine = Vitalcore::open(Config::new(dir.path()), &keys()).expect("reopen");
    assert_eq!(engine.active_model(), bundled);
}

fn load_or_typed_error(bytes: &[u8]) {
    // Either result is fine; reaching here without a panic is the property. A loaded model
    // must also run, and give an output.
    if let Ok(model) = OnnxModel::load(bytes, &[1, 16], None) {
        let input = [0.5f32; 16];
        for (i, o) in model.outputs().iter().enumerate() {
            if o.datum_type == "I64" {
                model.run_labels(&input, i).unwrap_or_else(|e| {
                    panic!("label output {i} of a loaded model does not run: {e}")
                });
            }
        }
        let all = model.run_all(&input).unwrap_or_else(|e| {
            panic!(
                "a model that loaded ({:?}) does not run: {e}",
                model.backend()
            )
        });
        assert_eq!(all.len(), model.outputs().len(), "one result per output");
        // Each float output also runs alone, to the same values.
        let mut out = Vec::new();
        for (i, want) in all.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            model.run_into(&input, i, &mut out).unwrap_or_else(|e| {
                panic!(
                    "output {i} of a loaded model ({:?}) does not run: {e}",
                    model.backend()
                )
            });
            assert_eq!(
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "output {i}"
            );
        }
    }
    let _ = inspect(bytes);
}

/// The valid 16-input test models the fuzz starts from (trees, the MLP, tract-only graphs).
const FUZZ_BASES: &[&str] = &[
    "gbdt6_binary",
    "gbdt_multi",
    "rf_binary",
    "trees_modes_logistic",
    "gbdt_regressor",
    "mlp16",
    "dense_clip",
    "zipmap",
    "mlp_multi",
    "logreg_multi",
    "scaler_logreg",
    "rf_regressor",
];

/// One edit of a valid model's bytes.
#[derive(Debug, Clone)]
enum Edit {
    /// Bytes overwritten from a position on.
    Overwrite(prop::sample::Index, Vec<u8>),
    /// Bytes inserted at a position.
    Insert(prop::sample::Index, Vec<u8>),
    /// A range removed.
    Delete(prop::sample::Index, usize),
    /// One byte changed by a small amount (a length, a tag, an attribute value off by a little).
    Nudge(prop::sample::Index, i8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Edit::Overwrite(i, b)),
        (
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..32).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<prop::sample::Index>(), any::<i8>()).prop_map(|(i, d)| Edit::Nudge(i, d)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    match e {
        Edit::Overwrite(at, b) => {
            let i = at.index(bytes.len());
            for (k, x) in b.iter().enumerate() {
                if let Some(y) = bytes.get_mut(i + k) {
                    *y = *x;
                }
            }
        }
        Edit::Insert(at, b) => {
            let i = at.index(bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Edit::Delete(at, n) => {
            let i = at.index(bytes.len());
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Edit::Nudge(at, d) => {
            let i = at.index(bytes.len());
            bytes[i] = bytes[i].wrapping_add(*d as u8);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes, and valid models of every kind with arbitrary edits (which mostly
    /// still decode as protobuf and reach the graph checks and evaluators): loaded and
    /// running, or refused with a typed error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        base in prop::sample::select(FUZZ_BASES),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        load_or_typed_error(&bytes);
        let mut model = model_bytes(base);
        for e in &edits {
            apply(&mut model, e);
        }
        load_or_typed_error(&model);
    }

    /// A real tree model with bytes flipped or cut: loaded or refused, never a panic (with
    /// tract, damaged graphs reach its parser, which panics on some: see `guard_tract`).
    #[test]
    fn damaged_tree_models_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = model_bytes("gbdt6_binary");
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        load_or_typed_error(&bytes);
    }
}
