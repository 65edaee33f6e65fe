//! `vitalcore model check`, the model doctor, run as a user runs it: the built binary on real
//! ONNX files (the test models `make data` builds, the shipped default model, and files it
//! must refuse), text and JSON output, exit codes.
#![cfg(feature = "cli")]

mod support;

use std::process::{Command, Output};

use support::{models_dir, workspace, Tolerance};

/// How far the doctor's `max_abs_diff` may be: it compares the two runtimes' probabilities on
/// inputs uniform in [-1, 1), so the derived bound over that box (`support::Tolerance`).
fn max_diff_bound(file: &str, shape: &[usize]) -> f64 {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    Tolerance::new(&bytes, shape, "probabilities").over_box(shape, 1.0, 2)
}

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitalcore"))
        .arg("model")
        .arg("check")
        .args(args)
        .output()
        .expect("vitalcore runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn path(name: &str) -> String {
    models_dir()
        .join(format!("{name}.onnx"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn reports_facts_latency_and_parity_with_onnx_runtime() {
    support::init_ort();
    let shipped = workspace().join("models/rhythm-ppg.onnx");
    for file in [
        path("mlp16"),
        path("gbdt200_binary"),
        shipped.to_string_lossy().into_owned(),
    ] {
        let out = doctor(&[&file, "--format", "json"]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = json(&out);
        assert_eq!(r["loadable"], true, "{file}");
        assert_eq!(r["inputs"][0]["name"], "X");
        // The dynamic batch dimension is shown as such, then pinned to 1.
        assert!(r["inputs"][0]["shape"][0]
            .as_str()
            .is_some_and(|d| d.parse::<u64>().is_err()));
        assert_eq!(r["input_shape"][0], 1);
        let latency = &r["latency"];
        let (p50, p99) = (
            latency["p50_us"].as_f64().expect("p50"),
            latency["p99_us"].as_f64().expect("p99"),
        );
        assert!(p50 > 0.0 && p99 >= p50, "{file}: p50 {p50} p99 {p99}");
        assert!(r["cold_start_ms"].as_f64().expect("cold start") > 0.0);
        let ort = &r["onnxruntime"];
        assert_eq!(ort["available"], true, "ORT_DYLIB_PATH is set by make test");
        let diff = ort["max_abs_diff"].as_f64().expect("max abs diff");
        let shape: Vec<usize> = r["input_shape"]
            .as_array()
            .expect("input shape")
            .iter()
            .map(|d| d.as_u64().expect("dimension") as usize)
            .collect();
        let bound = max_diff_bound(&file, &shape);
        assert!(diff <= bound, "{file}: max abs diff {diff} > {bound}");
        assert!(ort["latency_ratio_p50"].as_f64().expect("ratio") > 0.0);
    }
}

#[test]
fn unsupported_operators_are_named_and_fail_the_check() {
    let out = doctor(&[&path("zipmap")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unsupported operators: ai.onnx.ml:ZipMap"),
        "{text}"
    );
    // tract lacks TreeEnsembleRegressor; the native tree evaluator runs it, so it is not named.
    let r = json(&doctor(&[&path("gbdt_regressor"), "--format", "json"]));
    assert_eq!(r["loadable"], true);
    assert_eq!(r["backend"], "native_trees");
    assert_eq!(r["unsupported_operators"], serde_json::json!([]));
}

#[test]
fn a_wrong_input_shape_or_a_non_model_is_a_clear_refusal() {
    let out = doctor(&[&path("mlp16"), "--input-shape", "1,15"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("input shape [1, 15] does not fit the model's input [?,16]"),
        "{text}"
    );

    let not_onnx = workspace().join("Cargo.toml");
    let out = doctor(&[&not_onnx.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a valid ONNX model"));

    let out = doctor(&["/nonexistent/model.onnx"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");

    let out = doctor(&[&path("mlp16"), "--input-shape", "1,x"]);
    assert!(!out.status.success());
}

/// The doctor names the evaluator the SDK picked, in JSON and in text: the CNN on the native
/// graph evaluator (and still at parity with ONNX Runtime there), the tree ensemble on the
/// native tree evaluator, the MLP with its integer label output on the native graph evaluator
/// too, and a model with an operator only tract implements (`Clip`) on tract.
#[test]
fn reports_the_backend_the_sdk_runs_the_model_on() {
    support::init_ort();
    for (name, backend) in [
        ("cnn1d", "native_graph"),
        ("gbdt200_binary", "native_trees"),
        ("mlp16", "native_graph"),
        ("dense_clip", "tract"),
    ] {
        let out = doctor(&[&path(name), "--format", "json", "--runs", "50"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = json(&out);
        assert_eq!(r["backend"], backend, "{name}");
        let out = doctor(&[&path(name), "--runs", "50"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("backend: {backend}\n")), "{text}");
        // Parity through the doctor for the native evaluators (their output's bound is
        // derived; `Clip` has none).
        if backend == "tract" {
            continue;
        }
        let diff = r["onnxruntime"]["max_abs_diff"]
            .as_f64()
            .expect("max abs diff");
        let shape: &[usize] = if name == "cnn1d" {
            &[1, 1, 1920]
        } else {
            &[1, 16]
        };
        let bound = max_diff_bound(&path(name), shape);
        assert!(diff <= bound, "{name}: max abs diff {diff} > {bound}");
    }
}
