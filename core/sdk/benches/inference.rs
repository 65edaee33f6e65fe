//! `make bench` (inference part): `vitalcore::inference::OnnxModel` (the native tree evaluator
//! for tree ensembles, the native graph evaluator for small float graphs and scikit-learn's
//! linear models, tract for the rest) against ONNX Runtime (the `ort` crate on the library
//! from the pinned onnxruntime wheel), same process, same inputs, single thread. Per model:
//! median and p99 latency per prediction, cold start (bytes to first prediction), and live-heap
//! growth over many predictions (counting allocator). For models on the native evaluator the
//! tract path (`OnnxModel::load_tract`) is timed in the same loop, to show what it replaced.
//!
//! Environment: `ORT_DYLIB_PATH` (required), `VITALCORE_CACHE` (test models),
//! `BENCH_ALLOC_PREDICTIONS` (default 1,000,000), `BENCH_ONLY` (substring filter on names),
//! `BENCH_ZOO` (a directory `models/scripts/make_zoo.py` wrote: its models too, every output
//! loaded, with the geometric mean and the largest of their ratios to ONNX Runtime at the end;
//! `BENCH_ZOO_RUNS` timed runs each, default 2,000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use support::{OrtRef, Rng};
use vitalcore::inference::{Backend, OnnxModel};

/// Counts live heap bytes and allocation calls, to show a steady caller does not grow the heap.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// The only unsafe in the benchmark: a pass-through to the system allocator that counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Case {
    name: String,
    bytes: Vec<u8>,
    shape: Vec<usize>,
    output: String,
    /// Load every output of the file (a classifier's label too), not only `output`.
    all_outputs: bool,
    timed_runs: usize,
}

impl Case {
    fn load(&self) -> OnnxModel {
        let outputs = [self.output.as_str()];
        OnnxModel::load(
            &self.bytes,
            &self.shape,
            (!self.all_outputs).then_some(&outputs[..]),
        )
        .expect("loads")
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn cases() -> Vec<Case> {
    let dir = support::models_dir();
    let mut cases = Vec::new();
    let shipped = support::workspace().join("models");
    if let Ok(entries) = std::fs::read_dir(&shipped) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
                continue;
            }
            let manifest: vitalcore_protocol::manifest::ModelManifest = serde_json::from_slice(
                &std::fs::read(path.with_extension("manifest.json")).expect("shipped manifest"),
            )
            .expect("manifest parses");
            let shape = match &manifest.input {
                vitalcore_protocol::manifest::InputSpec::Features { features, .. } => {
                    vec![1, features.len()]
                }
                vitalcore_protocol::manifest::InputSpec::RawWindow { length, .. } => {
                    vec![1, 1, *length]
                }
            };
            cases.push(Case {
                name: format!("shipped {}", manifest.name),
                bytes: std::fs::read(&path).expect("shipped model"),
                shape,
                output: manifest.outputs.output_name.clone(),
                all_outputs: false,
                timed_runs: 20_000,
            });
        }
    }
    let test_model = |file: &str, name: &str, shape: Vec<usize>, runs| Case {
        name: name.into(),
        bytes: std::fs::read(dir.join(format!("{file}.onnx"))).expect("test model"),
        shape,
        output: "probabilities".into(),
        all_outputs: false,
        timed_runs: runs,
    };
    cases.push(test_model("mlp16", "MLP 16-32-16-2", vec![1, 16], 20_000));
    cases.push(Case {
        all_outputs: true,
        ..test_model(
            "mlp16",
            "MLP 16-32-16-2, label + probabilities",
            vec![1, 16],
            20_000,
        )
    });
    cases.push(Case {
        all_outputs: true,
        ..test_model(
            "mlp16",
            "MLP 16-32-16-2, label + probabilities, batch 8",
            vec![8, 16],
            20_000,
        )
    });
    cases.push(Case {
        all_outputs: true,
        ..test_model(
            "logreg",
            "LogisticRegression, label + probabilities",
            vec![1, 16],
            20_000,
        )
    });
    cases.push(Case {
        all_outputs: true,
        ..test_model(
            "scaler_logreg",
            "StandardScaler + LogisticRegression, label + probabilities",
            vec![1, 16],
            20_000,
        )
    });
    for (file, name) in [
        ("gbdt_regressor", "GBDT regressor, 20 trees"),
        ("rf_regressor", "random forest regressor, 30 trees"),
    ] {
        cases.push(Case {
            output: "variable".into(),
            ..test_model(file, name, vec![1, 16], 20_000)
        });
    }
    cases.push(test_model(
        "dense_clip",
        "dense + Clip (tract only)",
        vec![1, 16],
        20_000,
    ));
    cases.push(test_model(
        "gbdt200_binary",
        "GBDT 200 trees, binary",
        vec![1, 16],
        20_000,
    ));
    cases.push(test_model(
        "gbdt_multi",
        "GBDT 3 classes",
        vec![1, 16],
        20_000,
    ));
    cases.push(test_model(
        "rf_binary",
        "random forest, binary",
        vec![1, 16],
        20_000,
    ));
    cases.push(test_model(
        "cnn1d",
        "1-D CNN, 30 s at 64 Hz",
        vec![1, 1, 1920],
        5_000,
    ));
    if let Some(zoo) = std::env::var_os("BENCH_ZOO").map(std::path::PathBuf::from) {
        let runs = std::env::var("BENCH_ZOO_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(zoo.join("index.json")).expect("zoo index.json"))
                .expect("zoo index is JSON");
        for m in index.as_array().expect("a list") {
            let text = |k: &str| m[k].as_str().expect("string field").to_owned();
            cases.push(Case {
                name: format!(
                    "zoo {} ({}, {} kB)",
                    text("name"),
                    text("doc"),
                    m["bytes"].as_u64().unwrap_or(0) / 1000
                ),
                bytes: std::fs::read(zoo.join(text("file"))).expect("zoo model"),
                shape: m["input_shape"]
                    .as_array()
                    .expect("input shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dimension") as usize)
                    .collect(),
                output: text("output"),
                all_outputs: true,
                timed_runs: runs,
            });
        }
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    cases.retain(|c| c.name.contains(&only));
    cases
}

fn main() {
    let alloc_predictions: usize = std::env::var("BENCH_ALLOC_PREDICTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    support::init_ort();
    println!(
        "| model | evaluator | ours p50 (us) | ORT p50 (us) | p50 ratio ours/ORT | ours p99 (us) | ORT p99 (us) | tract-only p50 (us) | our cold start (ms) | ORT cold start (ms) | heap growth over N predictions (bytes) | allocs/prediction |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut zoo_ratios = Vec::new();
    for case in cases() {
        let len: usize = case.shape.iter().product();
        let mut rng = Rng::new(42);
        let inputs: Vec<Vec<f32>> = (0..256).map(|_| rng.vec(len, 1.0)).collect();

        // Cold start: bytes in memory to first prediction, median of 15.
        let mut cold_tract = Vec::new();
        let mut cold_ort = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            let m = case.load();
            let at = m.output_index(&case.output).expect("output");
            let mut out = Vec::new();
            m.run_into(&inputs[0], at, &mut out).expect("runs");
            cold_tract.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let mut o = OrtRef::new(&case.bytes);
            std::hint::black_box(o.run(&case.shape, &inputs[0], &case.output));
            cold_ort.push(t.elapsed().as_secs_f64() * 1e3);
        }

        let model = case.load();
        let at = model.output_index(&case.output).expect("output");
        // tract lacks some of what the native evaluators run (Scaler, TreeEnsembleRegressor):
        // nothing to compare there.
        let tract_only = (model.backend() != Backend::Tract)
            .then(|| {
                OnnxModel::load_tract(&case.bytes, &case.shape, Some(&[case.output.as_str()])).ok()
            })
            .flatten();
        let mut ort = OrtRef::new(&case.bytes);
        let mut out = Vec::with_capacity(64);
        for x in inputs.iter().cycle().take(500) {
            model.run_into(x, at, &mut out).expect("runs");
            std::hint::black_box(ort.run(&case.shape, x, &case.output));
        }
        // Interleaved so both see the same machine load.
        let mut t_tract = Vec::with_capacity(case.timed_runs);
        let mut t_ort = Vec::with_capacity(case.timed_runs);
        let mut t_tract_only = Vec::with_capacity(case.timed_runs);
        for i in 0..case.timed_runs {
            let x = &inputs[i % inputs.len()];
            let t = Instant::now();
            model.run_into(x, at, &mut out).expect("runs");
            t_tract.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(&out);
            let t = Instant::now();
            std::hint::black_box(ort.run(&case.shape, x, &case.output));
            t_ort.push(t.elapsed().as_secs_f64() * 1e6);
            if let Some(tract) = &tract_only {
                let t = Instant::now();
                tract.run_into(x, 0, &mut out).expect("runs");
                t_tract_only.push(t.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(&out);
            }
        }
        let tract_only_p50 = if t_tract_only.is_empty() {
            if model.backend() == Backend::Tract {
                "same".to_owned()
            } else {
                "none".to_owned()
            }
        } else {
            format!("{:.1}", stats(t_tract_only).0)
        };
        let (tp50, tp99) = stats(t_tract);
        let (op50, op99) = stats(t_ort);
        if case.name.starts_with("zoo ") {
            zoo_ratios.push(tp50 / op50);
        }

        // Heap growth: live bytes after a warm-up vs after `alloc_predictions` more.
        let n = if case.name.contains("CNN") || case.name.starts_with("zoo ") {
            alloc_predictions / 10
        } else {
            alloc_predictions
        };
        let before = LIVE.load(Ordering::Relaxed);
        let allocs_before = ALLOCS.load(Ordering::Relaxed);
        for i in 0..n {
            model
                .run_into(&inputs[i % inputs.len()], at, &mut out)
                .expect("runs");
        }
        let growth = LIVE.load(Ordering::Relaxed) - before;
        let per_call = (ALLOCS.load(Ordering::Relaxed) - allocs_before) as f64 / n.max(1) as f64;
        println!(
            "| {} | {} | {tp50:.1} | {op50:.1} | {:.2} | {tp99:.1} | {op99:.1} | {tract_only_p50} | {:.2} | {:.2} | {growth} (N = {n}) | {per_call:.1} |",
            case.name,
            model.backend().as_str(),
            tp50 / op50,
            stats(cold_tract).0,
            stats(cold_ort).0,
        );
    }
    if !zoo_ratios.is_empty() {
        let geomean =
            (zoo_ratios.iter().map(|r| r.ln()).sum::<f64>() / zoo_ratios.len() as f64).exp();
        let worst = zoo_ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "\nzoo: {} models, p50 ratio ours/ORT geometric mean {geomean:.2}, largest {worst:.2}",
            zoo_ratios.len()
        );
    }
}
