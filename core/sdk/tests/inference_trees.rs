//! The native tree-ensemble evaluator behind `OnnxModel`: which models run on it, and that it
//! computes what tract computes in process and what ONNX Runtime computes, on inputs that sit
//! exactly on split thresholds, one float step either side, at extreme magnitudes, and NaN.

mod support;

use proptest::prelude::*;
use support::{excess, max_abs_diff, model_bytes, tract_close, Rng, Tolerance};
use tract_onnx::prelude::Framework;
use vitalcore::inference::{Backend, OnnxModel};

/// The tree-ensemble test models (`models/scripts/make_test_models.py`) and the shipped model.
fn tree_models() -> Vec<(String, Vec<u8>)> {
    let mut models: Vec<(String, Vec<u8>)> =
        ["gbdt6_binary", "gbdt200_binary", "gbdt_multi", "rf_binary"]
            .iter()
            .map(|n| ((*n).to_owned(), model_bytes(n)))
            .collect();
    let shipped = support::workspace().join("models/rhythm-ppg.onnx");
    models.push((
        "rhythm-ppg".to_owned(),
        std::fs::read(&shipped).unwrap_or_else(|e| panic!("{}: {e}", shipped.display())),
    ));
    models
}

/// The hand-built ensembles that use every branch mode, missing-value tracking, and the
/// `SOFTMAX_ZERO`, `LOGISTIC` and `NONE` post transforms (`make_test_models.py`): checked
/// against ONNX Runtime only, as tract's own operator is not the reference for these.
fn mode_models() -> Vec<(String, Vec<u8>)> {
    ["softmax_zero", "logistic", "none"]
        .iter()
        .map(|n| {
            let name = format!("trees_modes_{n}");
            let bytes = model_bytes(&name);
            (name, bytes)
        })
        .collect()
}

/// The declared feature dimension, read from the file (tract cannot parse every model here).
fn width(bytes: &[u8]) -> usize {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto::Value};
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .expect("decodes");
    let graph = proto.graph.expect("graph");
    let Some(Value::TensorType(tensor)) =
        graph.input[0].r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("tensor input");
    };
    match tensor.shape.expect("shape").dim[1].value {
        Some(Dim::DimValue(n)) => n as usize,
        ref other => panic!("fixed feature dimension, got {other:?}"),
    }
}

/// Split thresholds per feature, read from the file itself.
fn thresholds(bytes: &[u8], width: usize) -> Vec<Vec<f32>> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .expect("decodes");
    let graph = proto.graph.expect("graph");
    let node = graph
        .node
        .iter()
        .find(|n| n.op_type == "TreeEnsembleClassifier")
        .expect("a tree ensemble");
    let get = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .expect("attribute")
    };
    let mut per_feature = vec![Vec::new(); width];
    let modes = &get("nodes_modes").strings;
    for ((&f, &t), mode) in get("nodes_featureids")
        .ints
        .iter()
        .zip(&get("nodes_values").floats)
        .zip(modes)
    {
        if mode.as_slice() != b"LEAF" {
            per_feature[f as usize].push(t);
        }
    }
    per_feature
}

/// One input value for feature `f` from a choice and a random draw: a threshold exactly, one
/// float step below or above it, an ordinary value, a huge or a tiny magnitude, or zero.
fn pick(thresholds: &[Vec<f32>], f: usize, choice: u8, draw: u32, value: f32) -> f32 {
    let at = |ts: &[f32]| ts.get(draw as usize % ts.len().max(1)).copied();
    let step = |x: f32, up: bool| {
        let bits = x.to_bits();
        let toward_larger_magnitude = up == (x >= 0.0);
        f32::from_bits(if toward_larger_magnitude {
            bits + 1
        } else if x == 0.0 {
            (-f32::MIN_POSITIVE).to_bits()
        } else {
            bits - 1
        })
    };
    match choice % 7 {
        0 | 1 => at(&thresholds[f]).unwrap_or(value),
        2 => at(&thresholds[f]).map_or(value, |t| step(t, false)),
        3 => at(&thresholds[f]).map_or(value, |t| step(t, true)),
        4 => value,
        5 => value.signum() * 1e30,
        _ => value * 1e-30,
    }
}

/// The tree models run on the native evaluator; the MLP and the CNN do not; the
/// tract-only loader really is tract (it applies the loader's rewrites).
/// `inspect` (what `vitalcore model check` and the Python bindings report) accepts every model
/// `OnnxModel::load` runs, including ensembles only the native evaluator can build.
#[test]
fn inspect_accepts_every_tree_model_the_loader_runs() {
    for (name, bytes) in tree_models().into_iter().chain(mode_models()) {
        let facts = vitalcore::inference::inspect(&bytes)
            .unwrap_or_else(|e| panic!("{name}: inspect refused a loadable model: {e}"));
        assert!(facts.unsupported_operators.is_empty(), "{name}");
        assert_eq!(facts.inputs.len(), 1, "{name}");
    }
}

#[test]
fn tree_ensembles_run_on_the_native_evaluator() {
    for (name, bytes) in tree_models() {
        let w = width(&bytes);
        let native = OnnxModel::load(&bytes, &[1, w], None).expect("loads");
        assert_eq!(native.backend(), Backend::NativeTrees, "{name}");
        assert_eq!(
            native
                .outputs()
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["label", "probabilities"],
            "{name}"
        );
        let tract = OnnxModel::load_tract(&bytes, &[1, w], None).expect("loads");
        assert_eq!(tract.backend(), Backend::Tract, "{name}");
        assert!(!tract.rewrites().is_empty(), "{name}: rewritten for tract");
    }
    let manifest: vitalcore_protocol::manifest::ModelManifest = serde_json::from_slice(
        &std::fs::read(support::workspace().join("models/rhythm-ppg.manifest.json"))
            .expect("manifest"),
    )
    .expect("parses");
    let bytes =
        std::fs::read(support::workspace().join("models/rhythm-ppg.onnx")).expect("shipped");
    let model = vitalcore::inference::Model::new(manifest, &bytes).expect("loads");
    assert_eq!(model.onnx().backend(), Backend::NativeTrees);
    assert_eq!(Backend::NativeTrees.as_str(), "native_trees");

    for (name, bytes) in mode_models() {
        let model = OnnxModel::load(&bytes, &[1, 16], None).expect("loads");
        assert_eq!(model.backend(), Backend::NativeTrees, "{name}");
    }
    // Graphs without a tree ensemble never take the tree evaluator (which evaluator they take
    // is `inference_graph.rs`'s business).
    for (name, shape) in [("mlp16", vec![1, 16]), ("cnn1d", vec![1, 1, 1920])] {
        let model = OnnxModel::load(&model_bytes(name), &shape, None).expect("loads");
        assert_ne!(model.backend(), Backend::NativeTrees, "{name}");
    }
}

struct Pair {
    name: String,
    width: usize,
    thresholds: Vec<Vec<f32>>,
    native: OnnxModel,
    tract: OnnxModel,
    native_labels: OnnxModel,
    tract_labels: OnnxModel,
}

fn pairs(batch: usize) -> Vec<Pair> {
    tree_models()
        .into_iter()
        .map(|(name, bytes)| {
            let width = width(&bytes);
            let shape = [batch, width];
            let probabilities = Some(&["probabilities"][..]);
            let labels = Some(&["label"][..]);
            Pair {
                thresholds: thresholds(&bytes, width),
                native: OnnxModel::load(&bytes, &shape, probabilities).expect("native"),
                tract: OnnxModel::load_tract(&bytes, &shape, probabilities).expect("tract"),
                native_labels: OnnxModel::load(&bytes, &shape, labels).expect("native"),
                tract_labels: OnnxModel::load_tract(&bytes, &shape, labels).expect("tract"),
                name,
                width,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Native and tract agree (probabilities at tract's own precision, labels exactly) on
    /// every tree model,
    /// batch 1 and 8, on inputs built around the models' own thresholds.
    #[test]
    fn native_matches_tract(
        batch in prop_oneof![Just(1usize), Just(8usize)],
        picks in proptest::collection::vec((any::<u8>(), any::<u32>(), -3.0f32..3.0), 8 * 16),
    ) {
        thread_local! {
            static PAIRS: std::cell::RefCell<Vec<(usize, Vec<Pair>)>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        PAIRS.with(|cache| -> Result<(), TestCaseError> {
            let mut cache = cache.borrow_mut();
            if !cache.iter().any(|(b, _)| *b == batch) {
                cache.push((batch, pairs(batch)));
            }
            let (_, pairs) = cache.iter().find(|(b, _)| *b == batch).expect("cached");
            for p in pairs {
                let input: Vec<f32> = (0..batch * p.width)
                    .map(|i| {
                        let (choice, draw, value) = picks[i % picks.len()];
                        pick(&p.thresholds, i % p.width, choice, draw, value)
                    })
                    .collect();
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                p.native.run_into(&input, 0, &mut ours).expect("native runs");
                p.tract.run_into(&input, 0, &mut theirs).expect("tract runs");
                prop_assert!(tract_close(&ours, &theirs), "{}: {ours:?} vs {theirs:?}", p.name);
                prop_assert_eq!(
                    p.native_labels.run_labels(&input, 0).expect("native labels"),
                    p.tract_labels.run_labels(&input, 0).expect("tract labels"),
                    "{}", &p.name
                );
            }
            Ok(())
        })?;
    }
}

/// Native against ONNX Runtime on the same kind of inputs, plus NaN (a missing value), batch 1
/// and 8: probabilities within the bound derived from the ensemble's leaves (`support::Tolerance`)
/// and labels exactly.
#[test]
fn native_matches_onnx_runtime_at_thresholds_extremes_and_nan() {
    support::init_ort();
    for (name, bytes) in tree_models().into_iter().chain(mode_models()) {
        let w = width(&bytes);
        let ts = thresholds(&bytes, w);
        let mut session = ort::session::Session::builder()
            .and_then(|b| b.with_intra_threads(1))
            .and_then(|b| b.commit_from_memory(&bytes))
            .expect("ONNX Runtime loads the model");
        let mut rng = Rng::new(0x7ee5);
        for batch in [1usize, 8] {
            let model = OnnxModel::load(&bytes, &[batch, w], None).expect("loads");
            let mut tolerance = Tolerance::new(&bytes, &[batch, w], "probabilities");
            assert_eq!(model.backend(), Backend::NativeTrees);
            let (label_ix, proba_ix) = (
                model.output_index("label").expect("label"),
                model.output_index("probabilities").expect("probabilities"),
            );
            let mut nan_rows = 0;
            for _ in 0..400 {
                let input: Vec<f32> = (0..batch * w)
                    .map(|i| {
                        let r = rng.next_u64();
                        if r.is_multiple_of(11) {
                            f32::NAN
                        } else {
                            pick(
                                &ts,
                                i % w,
                                (r >> 8) as u8,
                                (r >> 16) as u32,
                                rng.normal(1.5),
                            )
                        }
                    })
                    .collect();
                nan_rows += usize::from(input.iter().any(|x| x.is_nan()));
                let ours = model.run_all(&input).expect("runs")[proba_ix].clone();
                let labels = model.run_labels(&input, label_ix).expect("labels");
                let tensor = ort::value::TensorRef::from_array_view((
                    vec![batch as i64, w as i64],
                    input.as_slice(),
                ))
                .expect("input tensor");
                let outputs = session
                    .run(ort::inputs!["X" => tensor])
                    .expect("ONNX Runtime runs");
                let (_, reference) = outputs["probabilities"]
                    .try_extract_tensor::<f32>()
                    .expect("f32 probabilities");
                let bound = tolerance.bound(&[batch, w], &input, &ours, reference);
                assert!(
                    excess(&ours, reference, &bound) <= 1.0,
                    "{name}, batch {batch}: diff {:e} > bound {bound:?}: {ours:?} vs {reference:?}",
                    max_abs_diff(&ours, reference)
                );
                let (_, reference) = outputs["label"]
                    .try_extract_tensor::<i64>()
                    .expect("i64 labels");
                assert_eq!(labels, reference.to_vec(), "{name}, batch {batch}");
            }
            assert!(nan_rows > 50, "{name}: inputs must include NaN");
        }
    }
}

/// A steady caller's output buffer is reused: the native path keeps its capacity and writes
/// the same values as a fresh buffer.
#[test]
fn native_output_buffer_is_reused() {
    let bytes = model_bytes("gbdt_multi");
    let model = OnnxModel::load(&bytes, &[1, 16], Some(&["probabilities"])).expect("loads");
    let mut rng = Rng::new(3);
    let mut out = Vec::new();
    model
        .run_into(&rng.vec(16, 1.0), 0, &mut out)
        .expect("runs");
    let capacity = out.capacity();
    let pointer = out.as_ptr();
    for _ in 0..100 {
        let x = rng.vec(16, 1.0);
        model.run_into(&x, 0, &mut out).expect("runs");
        assert_eq!(out.len(), 3);
        assert_eq!((out.capacity(), out.as_ptr()), (capacity, pointer));
        assert_eq!(model.run_all(&x).expect("runs")[0], out);
    }
}
