//! Output parity between tract (through `vitalcore::inference`) and ONNX Runtime on the models
//! real exporters produce: within the bound derived from each model's arithmetic
//! (`support::Tolerance`) on many random inputs.

mod support;

use support::{excess, max_abs_diff, model_bytes, OrtRef, Rng, Tolerance};
use vitalcore::inference::{Backend, OnnxModel};

/// Runs `n` random inputs through both runtimes and asserts parity on `output`. A model served
/// by a native evaluator is checked through tract too (`load_tract`), the path any form the
/// native evaluators do not cover takes.
fn parity(name: &str, shape: &[usize], output: &str, n: usize, scale: f32) -> f64 {
    let bytes = model_bytes(name);
    let mut models = vec![OnnxModel::load(&bytes, shape, Some(&[output]))
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))];
    if models[0].backend() != Backend::Tract {
        models.push(
            OnnxModel::load_tract(&bytes, shape, Some(&[output]))
                .unwrap_or_else(|e| panic!("tract loads {name}: {e}")),
        );
    }
    let mut ort = OrtRef::new(&bytes);
    let mut tolerance = Tolerance::new(&bytes, shape, output);
    let mut rng = Rng::new(0x5eed ^ name.len() as u64);
    let len: usize = shape.iter().product();
    let (mut worst, mut worst_diff) = (0.0f64, 0.0f32);
    let mut out = Vec::new();
    for i in 0..n {
        let input = rng.vec(len, scale);
        let reference = ort.run(shape, &input, output);
        for model in &models {
            model.run_into(&input, 0, &mut out).expect("runs");
            let bound = tolerance.bound(shape, &input, &out, &reference);
            let ratio = excess(&out, &reference, &bound);
            assert!(
                ratio <= 1.0,
                "{name} on {:?}: input #{i}: max abs diff {:e} > bound {bound:?} (ours {out:?}, ort {reference:?})",
                model.backend(),
                max_abs_diff(&out, &reference)
            );
            worst = worst.max(ratio);
            worst_diff = worst_diff.max(max_abs_diff(&out, &reference));
        }
    }
    eprintln!(
        "{name}: {n} inputs, {} roundings, max abs diff {worst_diff:e} (at most {worst:.3} of the bound)",
        tolerance.roundings
    );
    worst
}

#[test]
fn mlp_matches_onnx_runtime() {
    parity("mlp16", &[1, 16], "probabilities", 500, 1.5);
}

/// The binary GBDT is the one tract refuses as exported; the loader's rewrite must give what
/// ONNX Runtime gives on the original file, on both sides of the decision boundary.
#[test]
fn binary_gradient_boosting_matches_onnx_runtime() {
    parity("gbdt200_binary", &[1, 16], "probabilities", 500, 1.5);
}

/// Labels too, through every loader path: the native tree evaluator (what `load` uses for
/// these models), and tract with the loader's rewrites (what `load_tract` and any tree form the
/// native evaluator does not cover use): tract's own binary layout would invert them for the
/// single-score GBDT; the chunked ensembles compute them with ArgMax + Gather.
fn labels_match(
    name: &str,
    rewrite: &str,
    positive: i64,
    expect_positives: std::ops::Range<usize>,
) {
    let bytes = model_bytes(name);
    let native = OnnxModel::load(&bytes, &[1, 16], None).expect("loads");
    assert_eq!(native.backend(), Backend::NativeTrees, "{name}");
    let tract = OnnxModel::load_tract(&bytes, &[1, 16], None).expect("tract loads");
    assert!(
        tract.rewrites().iter().any(|r| r.starts_with(rewrite)),
        "{name}: expected the {rewrite:?} rewrite, got {:?}",
        tract.rewrites()
    );
    support::init_ort();
    let mut session = ort::session::Session::builder()
        .and_then(|b| b.commit_from_memory(&bytes))
        .expect("ONNX Runtime loads the model");
    let mut rng = Rng::new(9);
    let mut positives = 0;
    for _ in 0..300 {
        let input = rng.vec(16, 1.5);
        let tensor = ort::value::TensorRef::from_array_view((vec![1i64, 16], input.as_slice()))
            .expect("input tensor");
        let outputs = session
            .run(ort::inputs!["X" => tensor])
            .expect("ONNX Runtime runs");
        let (_, reference) = outputs["label"]
            .try_extract_tensor::<i64>()
            .expect("i64 labels");
        for model in [&native, &tract] {
            let label_ix = model.output_index("label").expect("label output");
            let ours = model.run_labels(&input, label_ix).expect("runs");
            assert_eq!(ours, reference.to_vec(), "{name} on {:?}", model.backend());
        }
        positives += usize::from(reference[0] == positive);
    }
    assert!(
        expect_positives.contains(&positives),
        "{name}: inputs must cover several classes, got {positives}/300 of class {positive}"
    );
}

#[test]
fn binary_gradient_boosting_labels_match_onnx_runtime() {
    labels_match("gbdt200_binary", "large tree ensemble", 1, 30..270);
}

#[test]
fn small_binary_gradient_boosting_matches_onnx_runtime() {
    parity("gbdt6_binary", &[1, 16], "probabilities", 300, 1.5);
    labels_match("gbdt6_binary", "binary tree ensemble", 1, 30..270);
}

#[test]
fn chunked_ensemble_labels_match_onnx_runtime() {
    labels_match("gbdt_multi", "large tree ensemble", 2, 10..290);
    labels_match("rf_binary", "large tree ensemble", 1, 30..270);
}

/// A chunked ensemble with the batch dimension pinned above 1.
#[test]
fn batched_gradient_boosting_matches_onnx_runtime() {
    parity("gbdt200_binary", &[8, 16], "probabilities", 60, 1.5);
}

#[test]
fn multiclass_gradient_boosting_matches_onnx_runtime() {
    parity("gbdt_multi", &[1, 16], "probabilities", 300, 1.5);
}

#[test]
fn random_forest_matches_onnx_runtime() {
    parity("rf_binary", &[1, 16], "probabilities", 300, 1.5);
}

#[test]
fn cnn_1d_matches_onnx_runtime() {
    parity("cnn1d", &[1, 1, 1920], "probabilities", 100, 1.0);
}

/// The dynamic batch dimension can be pinned to another size than 1.
#[test]
fn batched_mlp_matches_onnx_runtime() {
    parity("mlp16", &[8, 16], "probabilities", 100, 1.5);
}

#[test]
fn every_shipped_model_matches_onnx_runtime() {
    let dir = support::workspace().join("models");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("models/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            continue;
        }
        let manifest_path = path.with_extension("manifest.json");
        let manifest: vitalcore_protocol::manifest::ModelManifest = serde_json::from_slice(
            &std::fs::read(&manifest_path)
                .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display())),
        )
        .expect("shipped manifest parses");
        let bytes = std::fs::read(&path).expect("shipped model readable");
        let model = vitalcore::inference::Model::new(manifest.clone(), &bytes).expect("loads");
        let shape = model.onnx().input_shape().to_vec();
        let mut ort = OrtRef::new(&bytes);
        let output = &manifest.outputs.output_name;
        let mut tolerance = Tolerance::new(&bytes, &shape, output);
        let mut rng = Rng::new(77);
        let len: usize = shape.iter().product();
        for _ in 0..300 {
            let input = rng.vec(len, 1.5);
            let ours = model.run_tensor(&input).expect("runs");
            let reference = ort.run(&shape, &input, output);
            let bound = tolerance.bound(&shape, &input, &ours, &reference);
            assert!(
                excess(&ours, &reference, &bound) <= 1.0,
                "{}: {ours:?} vs {reference:?}, bound {bound:?}",
                path.display()
            );
        }
        checked += 1;
    }
    eprintln!("shipped models checked: {checked}");
    assert!(checked >= 1, "models/ ships the default model (rhythm-ppg)");
}
