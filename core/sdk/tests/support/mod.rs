//! Shared by the inference/model tests and the inference benchmark: where the test models and
//! ONNX Runtime live, a reference runner on ONNX Runtime, and a deterministic input generator.
#![allow(dead_code)]

use std::path::PathBuf;

/// Directory of the models `make data` builds (`models/scripts/make_test_models.py`).
pub fn models_dir() -> PathBuf {
    let cache = std::env::var_os("VITALCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"));
    let dir = cache.join("models");
    assert!(
        dir.join("index.json").is_file(),
        "test models missing in {}: run `make data` (builds them with models/scripts/make_test_models.py)",
        dir.display()
    );
    dir
}

/// Bytes of test model `name` (file stem in the models directory).
pub fn model_bytes(name: &str) -> Vec<u8> {
    let path = models_dir().join(format!("{name}.onnx"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Root of the workspace.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Initializes ONNX Runtime from `ORT_DYLIB_PATH` once, or panics saying how to get it.
pub fn init_ort() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let path = std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| {
            panic!(
                "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so from the onnxruntime wheel \
                 (`make test` exports it after `make data` builds .venv)"
            )
        });
        assert!(
            std::path::Path::new(&path).is_file(),
            "ORT_DYLIB_PATH={path} does not exist: run `make data` to build .venv with onnxruntime"
        );
        ort::init_from(path)
            .commit()
            .expect("ONNX Runtime library loads");
    });
}

/// A single-threaded ONNX Runtime session, the reference tract is compared with.
pub struct OrtRef {
    session: ort::session::Session,
    input: String,
}

impl OrtRef {
    pub fn new(bytes: &[u8]) -> Self {
        init_ort();
        let session = ort::session::Session::builder()
            .and_then(|b| b.with_intra_threads(1))
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.commit_from_memory(bytes))
            .expect("ONNX Runtime loads the model");
        let input = session.inputs[0].name.clone();
        OrtRef { session, input }
    }

    /// Runs `input` with `shape` and returns float output `output` (by name).
    pub fn run(&mut self, shape: &[usize], input: &[f32], output: &str) -> Vec<f32> {
        self.outputs::<f32>(shape, input, &[output]).remove(0).1
    }

    /// Runs `input` with `shape` and returns integer output `output` (a classifier's labels).
    pub fn run_labels(&mut self, shape: &[usize], input: &[f32], output: &str) -> Vec<i64> {
        self.outputs::<i64>(shape, input, &[output]).remove(0).1
    }

    /// Runs `input` and returns the shapes of float outputs `outputs`.
    pub fn run_shapes(
        &mut self,
        shape: &[usize],
        input: &[f32],
        outputs: &[String],
    ) -> Vec<Vec<usize>> {
        let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
        self.outputs::<f32>(shape, input, &names)
            .into_iter()
            .map(|(shape, _)| shape)
            .collect()
    }

    /// One run: the shape and values of each named output of element type `T`.
    fn outputs<T: ort::tensor::PrimitiveTensorElementType + Clone + std::fmt::Debug>(
        &mut self,
        shape: &[usize],
        input: &[f32],
        names: &[&str],
    ) -> Vec<(Vec<usize>, Vec<T>)> {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let tensor = ort::value::TensorRef::from_array_view((shape, input)).expect("input tensor");
        let results = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .expect("ONNX Runtime runs the model");
        names
            .iter()
            .map(|&name| {
                let (shape, values) = results[name]
                    .try_extract_tensor::<T>()
                    .expect("output of the requested element type");
                (shape.iter().map(|&d| d as usize).collect(), values.to_vec())
            })
            .collect()
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Approximately standard normal (sum of uniforms), scaled.
    pub fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..6).map(|_| self.unit()).sum();
        // Six uniforms on [-1, 1) have variance 2.
        s * std::f32::consts::FRAC_1_SQRT_2 * scale
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(scale)).collect()
    }
}

// ---- tolerances derived from the computation ------------------------------------------------

/// Unit roundoff of float32 (round to nearest): every float32 operation returns the exact
/// result times `(1 + d)` with `|d| <= U`.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Roundings budgeted for one elementwise function (`exp`, `tanh`, `sigmoid`, `sqrt`) as
/// implemented by the runtimes compared here (ours calls libm; tract and ONNX Runtime use
/// vectorized polynomial or rational approximations accurate to a few ulps).
pub const FN_ROUNDINGS: f64 = 4.0;

/// How far two float32 evaluations of one model may differ: a bound per output element,
/// derived from the model's arithmetic, not from what passed on some machine.
///
/// # Why outputs differ at all
/// Our graph evaluator, tract and ONNX Runtime compute the same real-valued function, but each
/// sums dot products in its own order (blocked by SIMD width: 8 lanes with AVX2, 16 with
/// AVX-512, 4 with NEON; with or without fused multiply-add), so each returns another rounding
/// of it. Which order runs is chosen per CPU at run time, so a fixed absolute tolerance that
/// holds on one CPU fails on another (issue 22: 4e-5 between tract on AVX-512 and ONNX Runtime,
/// against an assertion of 1e-5).
///
/// # The bound
/// A float32 sum of `n` terms, in any order and with or without FMA, is within
/// `gamma(n) * sum |term|` of the exact sum, `gamma(n) = n U / (1 - n U)` (Higham, *Accuracy
/// and Stability of Numerical Algorithms*, 3.1). Carry that through the graph: let `A` be the
/// value every tensor takes in the *absolute-value network*, the same graph with every weight
/// and bias replaced by its absolute value, fed `|x|`. By induction over the nodes, if every
/// tensor's error is at most `c * A` before a node, it is at most `(c + n U) * A` after it,
/// `n` being the node's roundings per output:
///
/// * `Conv`: `c_in / group * kernel` products plus the bias; `Gemm`: `K` plus alpha, beta and
///   the bias; `MatMul`: `K`; `AveragePool`: its window plus the division;
///   `GlobalAveragePool`: its length plus the division; `Add`/`Sub`/`Mul`/`Div`: 1;
///   `BatchNormalization` (`scale * (x - mean) / sqrt(var + eps) + bias`, folded into a
///   convolution or not): 6. The terms of each are bounded by the same node in the absolute
///   network (`Sub` becomes `Add`, a normalization's mean becomes `-|mean|`, so every term
///   enters with its absolute value).
/// * Activations are 1-Lipschitz, so they pass errors on without growth, and need a stand-in
///   `psi` in the absolute network with `psi(A) >= |f(z)|` and `psi(A) >= A` whenever
///   `A >= |z|`: `Relu` as is, `LeakyRelu` (alpha <= 1) and `Tanh` as `Identity`, `Sigmoid` as
///   `Softplus` (`ln(1 + e^A) >= max(A, sigmoid(A))`); the transcendental ones add
///   [`FN_ROUNDINGS`].
/// * Max pools, reshapes, casts to float and concatenations add nothing.
/// * ONNX-ML `LinearClassifier`: its features plus the intercept (its post transform is the
///   squashing below, its absolute stand-in has no post transform); `Scaler` (`(x - offset) *
///   scale`, with `-|offset|` in the absolute network): 2.
///
/// So with `N` the sum of `n` over the nodes, every logit `i` of any float32 evaluation is
/// within `E_i = gamma(N) * A_i` of the exact logit (first order in `U`: products of two
/// rounding errors are dropped, and the absolute network is itself evaluated in float32), and
/// two evaluations within `2 E_i` of each other. For a tree ensemble the logits are
/// `base + sum` of one leaf per tree: `N` is the number of trees plus one, and `A_c` is
/// `|base_c| + sum over trees of max |leaf weight for c|`, read off the attributes (a
/// regressor's `AVERAGE` divides the sum: one rounding more, the leaf term divided too).
///
/// The output is the logits, or a squashing of them found walking back from the requested
/// output (the first `Softmax` or `Sigmoid`, or a `LinearClassifier`'s post transform; what
/// lies between, such as scikit-learn's `[1 - p, p]`, adds one rounding). With
/// `D = 2 max_j E_j` the largest logit difference:
///
/// * `Softmax`: `p_i(z + d) / p_i(z)` lies in `[e^(-2D), e^(2D)]`, so
///   `|dp_i| <= max(p_i, p'_i) (e^(2D) - 1)`, plus each side's own rounding: `exp`, the sum
///   over the classes and the division (`FN_ROUNDINGS + classes + 2` ulps of `p_i`);
/// * `Sigmoid`: `sigmoid(z + d) / sigmoid(z)` and `(1 - sigmoid(z + d)) / (1 - sigmoid(z))` lie
///   in `[e^(-D), e^D]`, so `|dp| <= max(p, p') (e^D - 1)`, plus `FN_ROUNDINGS + 2` ulps of 1
///   per side (the `1 - p` rounds absolutely);
/// * nothing: `2 E_i`.
///
/// An L1 `Normalizer` after the squashing (`p_i / sum_j p_j`, scikit-learn's multinomial
/// logistic regression) at most doubles a relative difference of nonnegative values
/// (`|d(p_i / S)| <= |dp_i| / S + p_i |dS| / S^2`, `|dS| <= max_j |dp_j / p_j| S`), and adds
/// its own sum over the classes and division: `classes` ulps of `p_i` per side.
///
/// ONNX Runtime is the reference: the absolute network runs on it too (the absolute values
/// bound magnitudes, they are not compared with anything).
pub struct Tolerance {
    source: Source,
    /// Roundings along the graph (`N` above).
    pub roundings: f64,
    head: Head,
    /// An L1 `Normalizer` follows the squashing.
    normalized: bool,
    /// The batch dimension the model is run with (rows are bounded separately).
    batch: usize,
}

enum Source {
    Abs { ort: OrtRef, logits: String },
    Trees(Vec<f64>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Head {
    None,
    Softmax,
    Sigmoid,
}

fn gamma(n: f64) -> f64 {
    n * U / (1.0 - n * U)
}

impl Tolerance {
    /// The bound for output `output` of the model `bytes`, run with input shape `shape`.
    pub fn new(bytes: &[u8], shape: &[usize], output: &str) -> Self {
        let model = wire::parse(bytes);
        let graph = wire::parse(wire::bytes1(&model, 7).expect("model has a graph"));
        let nodes: Vec<wire::Msg> = wire::all(&graph, 1).map(wire::parse).collect();
        if let Some(trees) = nodes.iter().find(|n| {
            let op = wire::str1(n, 4);
            op == "TreeEnsembleClassifier" || op == "TreeEnsembleRegressor"
        }) {
            return Self::trees(trees, shape[0]);
        }
        let (abs, logits, probes, head, normalized) = abs_network(&model, &graph, &nodes, output);
        let mut ort = OrtRef::new(&abs);
        // One run to learn the lengths the global pools average over.
        let len: usize = shape.iter().product();
        let shapes = ort.run_shapes(shape, &vec![0.0; len], &probes);
        let mut roundings = abs_roundings(&graph, &nodes, &logits);
        for s in shapes {
            roundings += s[2..].iter().product::<usize>() as f64 + 1.0;
        }
        Tolerance {
            source: Source::Abs { ort, logits },
            roundings,
            head,
            normalized,
            batch: shape[0],
        }
    }

    fn trees(node: &wire::Msg, batch: usize) -> Self {
        let attr = |name: &str| {
            wire::all(node, 5)
                .map(wire::parse)
                .find(|a| wire::str1(a, 1) == name)
        };
        let ints = |name: &str| attr(name).map_or_else(Vec::new, |a| wire::ints(&a, 8));
        let floats = |name: &str| attr(name).map_or_else(Vec::new, |a| wire::floats(&a, 7));
        let votes = if wire::str1(node, 4) == "TreeEnsembleRegressor" {
            "target"
        } else {
            "class"
        };
        let (tree_ids, class_ids, weights) = (
            ints(&format!("{votes}_treeids")),
            ints(&format!("{votes}_ids")),
            floats(&format!("{votes}_weights")),
        );
        let average = attr("aggregate_function").is_some_and(|a| wire::str1(&a, 4) == "AVERAGE");
        let base = floats("base_values");
        let classes = class_ids.iter().max().map_or(0, |&c| c as usize + 1);
        let mut per_tree = std::collections::HashMap::<(i64, i64), f64>::new();
        for ((&t, &c), &w) in tree_ids.iter().zip(&class_ids).zip(&weights) {
            let m = per_tree.entry((t, c)).or_default();
            *m = m.max(f64::from(w.abs()));
        }
        let trees = tree_ids
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        let mut magnitude: Vec<f64> = (0..classes)
            .map(|c| base.get(c).map_or(0.0, |b| f64::from(b.abs())))
            .collect();
        let share = if average { trees as f64 } else { 1.0 };
        for ((_, c), m) in per_tree {
            magnitude[c as usize] += m / share;
        }
        let post = attr("post_transform").map_or_else(String::new, |a| wire::str1(&a, 4));
        let head = match post.as_str() {
            "LOGISTIC" => Head::Sigmoid,
            "SOFTMAX" | "SOFTMAX_ZERO" => Head::Softmax,
            "" | "NONE" => Head::None,
            other => panic!("no error bound for tree post_transform {other}"),
        };
        Tolerance {
            source: Source::Trees(magnitude),
            roundings: trees as f64 + 1.0 + f64::from(u8::from(average)),
            head,
            normalized: false,
            batch,
        }
    }

    /// Adds `k` roundings for inputs that reach the two evaluations with up to `k` ulps of
    /// relative difference (computed from the same data in two places).
    pub fn input_roundings(mut self, k: f64) -> Self {
        self.roundings += k;
        self
    }

    /// The largest bound over every input with `|x_i| <= max_input` and `outputs` outputs in
    /// `[-1, 1]` (probabilities): the absolute network is nondecreasing in `|x|`, so its value
    /// at `max_input` everywhere bounds it on the whole box.
    pub fn over_box(&mut self, shape: &[usize], max_input: f32, outputs: usize) -> f64 {
        let len: usize = shape.iter().product();
        let ones = vec![1.0; outputs * shape[0]];
        self.bound(shape, &vec![max_input; len], &ones, &ones)
            .into_iter()
            .fold(0.0, f64::max)
    }

    /// Per output element, how far two float32 evaluations `a` and `b` of the model on `input`
    /// (shape as given to [`Tolerance::new`]) may differ.
    pub fn bound(&mut self, shape: &[usize], input: &[f32], a: &[f32], b: &[f32]) -> Vec<f64> {
        let g = gamma(self.roundings);
        let magnitude: Vec<f64> = match &mut self.source {
            Source::Abs { ort, logits } => {
                let abs: Vec<f32> = input.iter().map(|v| v.abs()).collect();
                ort.run(shape, &abs, logits)
                    .into_iter()
                    .map(f64::from)
                    .collect()
            }
            Source::Trees(m) => m.repeat(self.batch),
        };
        assert_eq!(a.len(), b.len(), "output lengths differ");
        let (per_in, per_out) = (magnitude.len() / self.batch, a.len() / self.batch);
        let mut bound = Vec::with_capacity(a.len());
        let rows = magnitude
            .chunks(per_in)
            .zip(a.chunks(per_out).zip(b.chunks(per_out)));
        for ((m, (row_a, row_b)), x) in rows.zip(input.chunks(input.len() / self.batch)) {
            let overflows = |v: &f64| v.is_nan() || v.abs() >= f64::from(f32::MAX);
            if m.iter().any(overflows) && x.iter().all(|v| v.is_finite()) {
                // Finite inputs whose products or partial sums overflow float32: which sums
                // reach +inf or -inf first depends on the summation order (tile shapes,
                // fused multiply-add), so two correct evaluations may give NaN and a
                // saturated answer. Nothing bounds their difference. (The absolute network
                // itself is then inf, NaN where an overflowed value meets a zero weight, or
                // f32::MAX: ONNX Runtime on ARM64 answers f32::MAX where it answers inf on
                // x86_64, seen for mlp16 with every input f32::MAX. Infinite or NaN inputs
                // do not depend on the order: they keep the strict comparison.)
                bound.extend(std::iter::repeat_n(f64::INFINITY, row_a.len()));
                continue;
            }
            let e: Vec<f64> = m.iter().map(|v| g * v).collect();
            let d = 2.0 * e.iter().copied().fold(0.0, f64::max);
            for (i, (x, y)) in row_a.iter().zip(row_b).enumerate() {
                let p = f64::from(x.abs().max(y.abs()));
                let b = match self.head {
                    Head::None if per_in == per_out => 2.0 * e[i] + 2.0 * U * p,
                    Head::None => d + 2.0 * U,
                    Head::Softmax => {
                        p * ((2.0 * d).exp_m1() + 2.0 * (FN_ROUNDINGS + per_in as f64 + 2.0) * U)
                    }
                    Head::Sigmoid => p * d.exp_m1() + 2.0 * (FN_ROUNDINGS + 2.0) * U,
                };
                let b = if self.normalized {
                    2.0 * b + 2.0 * per_in as f64 * U * p
                } else {
                    b
                };
                // Below the smallest normal float32 there is no relative precision: SIMD
                // kernels may flush such values to zero, and exp approximations lose their
                // accuracy there (ONNX Runtime on ARM64 gives 3.9e-40 for a softmax output
                // of 2.9e-42). Either side may be off by up to that threshold.
                bound.push(b + f64::from(f32::MIN_POSITIVE));
            }
        }
        bound
    }
}

/// Float attribute `name` of the first node of type `op` in the ONNX model `bytes` (empty when
/// absent): what a test needs of an exporter's constants, such as a `Scaler`'s.
pub fn float_attribute(bytes: &[u8], op: &str, name: &str) -> Vec<f32> {
    let model = wire::parse(bytes);
    let graph = wire::parse(wire::bytes1(&model, 7).expect("model has a graph"));
    let node = wire::all(&graph, 1)
        .map(wire::parse)
        .find(|n| wire::str1(n, 4) == op);
    node.and_then(|n| attr(&n, name))
        .map_or_else(Vec::new, |a| wire::floats(&a, 7))
}

/// The largest `|a - b| / bound` over the elements: 0 when equal or NaN in the same places,
/// infinite when NaN in one only (unless the bound is infinite: an overflowing computation,
/// see [`Tolerance::bound`]); `<= 1` is within the bound.
pub fn excess(a: &[f32], b: &[f32], bound: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .zip(bound)
        .map(|((&x, &y), &t)| {
            if x == y || (x.is_nan() && y.is_nan()) || t == f64::INFINITY {
                0.0
            } else if x.is_nan() || y.is_nan() {
                f64::INFINITY
            } else {
                (f64::from(x) - f64::from(y)).abs() / t
            }
        })
        .fold(0.0, f64::max)
}

/// The largest absolute difference (for reporting).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Whether `a` and `b` agree at the precision tract holds its own kernels to:
/// `Tensor::close_enough(.., Approximation::Approximate)` (absolute 1e-4 plus relative 5e-4
/// for float32 in tract-data 0.23.9), NaN matching NaN.
#[cfg(feature = "tract")]
pub fn tract_close(a: &[f32], b: &[f32]) -> bool {
    use tract_onnx::prelude::Tensor;
    use tract_onnx::tract_core::tract_data::internal::Approximation;
    let t = |v: &[f32]| Tensor::from_shape(&[v.len()], v).expect("tensor");
    a.len() == b.len() && t(a).close_enough(&t(b), Approximation::Approximate).is_ok()
}

/// Builds the absolute-value network of `graph` for `output`: returns its bytes, the tensor
/// holding the logits, the global average pools' inputs (graph outputs too, for their
/// lengths), the squashing between the logits and `output` and the relative roundings after
/// it.
fn abs_network(
    model: &wire::Msg,
    graph: &wire::Msg,
    nodes: &[wire::Msg],
    output: &str,
) -> (Vec<u8>, String, Vec<String>, Head, bool) {
    let producer = |name: &str| {
        nodes
            .iter()
            .position(|n| wire::strs(n, 2).iter().any(|o| o == name))
    };
    // Walk back from the output to the first Softmax or Sigmoid.
    let (mut logits, mut head, mut normalized) = (output.to_owned(), Head::None, false);
    let mut queue = vec![output.to_owned()];
    while let Some(t) = queue.pop() {
        let Some(i) = producer(&t) else { continue };
        match wire::str1(&nodes[i], 4).as_str() {
            // Its absolute stand-in outputs the raw scores under the same name.
            "LinearClassifier" => {
                logits = wire::strs(&nodes[i], 2)[1].clone();
                let post = attr(&nodes[i], "post_transform").map(|a| wire::str1(&a, 4));
                head = match post.as_deref() {
                    Some("LOGISTIC") => Head::Sigmoid,
                    Some("SOFTMAX") => Head::Softmax,
                    None | Some("NONE") => Head::None,
                    Some(other) => panic!("no error bound for LinearClassifier {other}"),
                };
                break;
            }
            "Normalizer" => {
                let norm = attr(&nodes[i], "norm").map(|a| wire::str1(&a, 4));
                assert_eq!(
                    norm.as_deref(),
                    Some("L1"),
                    "no error bound for this Normalizer"
                );
                normalized = true;
                queue.extend(wire::strs(&nodes[i], 1));
            }
            "Softmax" | "Sigmoid" => {
                logits = wire::strs(&nodes[i], 1)[0].clone();
                head = if wire::str1(&nodes[i], 4) == "Softmax" {
                    Head::Softmax
                } else {
                    Head::Sigmoid
                };
                break;
            }
            _ => queue.extend(wire::strs(&nodes[i], 1)),
        }
    }
    let needed = needed_nodes(nodes, &logits);
    let mut negate = std::collections::HashSet::new();
    let mut probes = Vec::new();
    let mut new_nodes = Vec::new();
    for &i in &needed {
        let mut n = nodes[i].clone();
        let inputs = wire::strs(&n, 1);
        // Another operator, without the attributes of the old one.
        let replace_op = |n: &mut wire::Msg, op: &str| {
            n.retain(|(tag, _)| *tag != 4 && *tag != 5);
            n.push((4, wire::W::B(op.as_bytes().to_vec())));
        };
        match wire::str1(&n, 4).as_str() {
            "Sub" => replace_op(&mut n, "Add"),
            "BatchNormalization" => {
                negate.insert(inputs[3].clone());
            }
            "LeakyRelu" => {
                let alpha = attr_f(&n, "alpha", 0.01);
                assert!(
                    alpha.abs() <= 1.0,
                    "no error bound for LeakyRelu alpha {alpha}"
                );
                replace_op(&mut n, "Identity");
            }
            "Tanh" => replace_op(&mut n, "Identity"),
            "Sigmoid" => replace_op(&mut n, "Softplus"),
            "LinearClassifier" => {
                n = abs_attributes(&n, &["coefficients", "intercepts"], &[]);
                n.retain(|(tag, v)| {
                    !(*tag == 5
                        && matches!(v, wire::W::B(b) if wire::str1(&wire::parse(b), 1) == "post_transform"))
                });
            }
            "Scaler" => n = abs_attributes(&n, &["scale"], &["offset"]),
            "GlobalAveragePool" => probes.push(inputs[0].clone()),
            _ => {}
        }
        new_nodes.push(n);
    }
    let mut g: wire::Msg = Vec::new();
    for (tag, v) in graph {
        match (tag, v) {
            (1 | 12, _) => {}
            (5, wire::W::B(t)) => {
                let t = wire::parse(t);
                let neg = negate.contains(&wire::str1(&t, 8));
                g.push((5, wire::W::B(wire::encode(&abs_tensor(t, neg)))));
            }
            _ => g.push((*tag, v.clone())),
        }
    }
    for n in new_nodes {
        g.push((1, wire::W::B(wire::encode(&n))));
    }
    for name in std::iter::once(&logits).chain(&probes) {
        g.push((12, wire::W::B(wire::float_value_info(name))));
    }
    let mut m: wire::Msg = model.iter().filter(|(t, _)| *t != 7).cloned().collect();
    m.push((7, wire::W::B(wire::encode(&g))));
    (wire::encode(&m), logits, probes, head, normalized)
}

/// `node` with the float attributes `abs` made `|v|` and `negate` made `-|v|`.
fn abs_attributes(node: &wire::Msg, abs: &[&str], negate: &[&str]) -> wire::Msg {
    node.iter()
        .map(|(tag, v)| match v {
            wire::W::B(b) if *tag == 5 => {
                let a = wire::parse(b);
                let name = wire::str1(&a, 1);
                let f: fn(f32) -> f32 = if abs.contains(&name.as_str()) {
                    f32::abs
                } else if negate.contains(&name.as_str()) {
                    |v| -v.abs()
                } else {
                    return (*tag, v.clone());
                };
                let floats: Vec<u8> = wire::floats(&a, 7)
                    .into_iter()
                    .flat_map(|v| f(v).to_le_bytes())
                    .collect();
                let mut out: wire::Msg = a.into_iter().filter(|(t, _)| *t != 7).collect();
                out.push((7, wire::W::B(floats)));
                (*tag, wire::W::B(wire::encode(&out)))
            }
            _ => (*tag, v.clone()),
        })
        .collect()
}

/// Indices (in graph order) of the nodes `target` depends on.
fn needed_nodes(nodes: &[wire::Msg], target: &str) -> Vec<usize> {
    let mut wanted = std::collections::HashSet::from([target.to_owned()]);
    let mut needed = Vec::new();
    for (i, n) in nodes.iter().enumerate().rev() {
        if wire::strs(n, 2).iter().any(|o| wanted.contains(o)) {
            needed.push(i);
            wanted.extend(wire::strs(n, 1));
        }
    }
    needed.reverse();
    needed
}

/// Roundings of the nodes `logits` depends on (`N` of [`Tolerance`]), but for the global
/// average pools, whose lengths come from a run.
fn abs_roundings(graph: &wire::Msg, nodes: &[wire::Msg], logits: &str) -> f64 {
    let dims = |name: &str| -> Option<Vec<i64>> {
        wire::all(graph, 5)
            .map(wire::parse)
            .find(|t| wire::str1(t, 8) == name)
            .map(|t| wire::ints(&t, 1))
    };
    let mut n = 0.0;
    for i in needed_nodes(nodes, logits) {
        let node = &nodes[i];
        let inputs = wire::strs(node, 1);
        let op = wire::str1(node, 4);
        let weights = |at: usize| {
            dims(&inputs[at])
                .unwrap_or_else(|| panic!("no error bound for {op} with a computed operand"))
        };
        n += match op.as_str() {
            "Conv" => weights(1)[1..].iter().product::<i64>() as f64 + 1.0,
            "Gemm" => {
                let w = weights(1);
                let k = if attr_i(node, "transB", 0) == 1 {
                    w[1]
                } else {
                    w[0]
                };
                k as f64 + 3.0
            }
            "MatMul" => {
                let w = weights(1);
                w[w.len() - 2] as f64
            }
            "AveragePool" => attr_ints(node, "kernel_shape").iter().product::<i64>() as f64 + 1.0,
            "LinearClassifier" => {
                let coefficients =
                    attr(node, "coefficients").map_or(0, |a| wire::floats(&a, 7).len());
                let classes = attr(node, "intercepts").map_or(1, |a| wire::floats(&a, 7).len());
                (coefficients / classes.max(1)) as f64 + 1.0
            }
            "Scaler" => 2.0,
            "Add" | "Sub" | "Mul" | "Div" | "LeakyRelu" => 1.0,
            "BatchNormalization" => 6.0,
            "Sigmoid" | "Tanh" => FN_ROUNDINGS,
            // Counted from its length, see `Tolerance::new`.
            "GlobalAveragePool" => 0.0,
            "Relu" | "MaxPool" | "GlobalMaxPool" | "Identity" | "Dropout" | "Flatten"
            | "Reshape" | "Cast" | "Concat" | "Squeeze" | "Unsqueeze" => 0.0,
            other => panic!("no error bound for operator {other}"),
        };
    }
    n
}

fn attr(node: &wire::Msg, name: &str) -> Option<wire::Msg> {
    wire::all(node, 5)
        .map(wire::parse)
        .find(|a| wire::str1(a, 1) == name)
}

fn attr_f(node: &wire::Msg, name: &str, default: f32) -> f32 {
    attr(node, name)
        .and_then(|a| wire::floats(&a, 2).first().copied())
        .unwrap_or(default)
}

fn attr_i(node: &wire::Msg, name: &str, default: i64) -> i64 {
    attr(node, name)
        .and_then(|a| wire::ints(&a, 3).first().copied())
        .unwrap_or(default)
}

fn attr_ints(node: &wire::Msg, name: &str) -> Vec<i64> {
    attr(node, name).map_or_else(Vec::new, |a| wire::ints(&a, 8))
}

/// A float initializer with every value made `|v|`, or `-|v|` when `negate`.
fn abs_tensor(t: wire::Msg, negate: bool) -> wire::Msg {
    const FLOAT: u64 = 1;
    if !t
        .iter()
        .any(|(tag, v)| *tag == 2 && matches!(v, wire::W::V(FLOAT)))
    {
        return t;
    }
    let f = |v: f32| if negate { -v.abs() } else { v.abs() };
    let mut out: wire::Msg = t
        .iter()
        .filter(|(tag, _)| *tag != 4 && *tag != 9)
        .cloned()
        .collect();
    let floats: Vec<f32> = wire::floats(&t, 4).into_iter().map(f).collect();
    if !floats.is_empty() {
        out.push((
            4,
            wire::W::B(floats.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ));
    }
    if let Some(raw) = wire::bytes1(&t, 9) {
        let raw: Vec<u8> = raw
            .chunks_exact(4)
            .flat_map(|c| f(f32::from_le_bytes(c.try_into().expect("4 bytes"))).to_le_bytes())
            .collect();
        out.push((9, wire::W::B(raw)));
    }
    out
}

/// Protobuf at the wire level: enough to rewrite an ONNX model without losing the fields this
/// module does not name (types, opsets, metadata).
mod wire {
    #[derive(Debug, Clone)]
    pub enum W {
        V(u64),
        F64([u8; 8]),
        B(Vec<u8>),
        F32([u8; 4]),
    }

    pub type Msg = Vec<(u32, W)>;

    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let x = b[0];
            *b = &b[1..];
            v |= u64::from(x & 0x7f) << shift;
            if x < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    pub fn parse(mut b: &[u8]) -> Msg {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = match key & 7 {
                0 => W::V(varint(&mut b)),
                1 => {
                    let v = b[..8].try_into().expect("8 bytes");
                    b = &b[8..];
                    W::F64(v)
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    let v = b[..n].to_vec();
                    b = &b[n..];
                    W::B(v)
                }
                5 => {
                    let v = b[..4].try_into().expect("4 bytes");
                    b = &b[4..];
                    W::F32(v)
                }
                other => panic!("protobuf wire type {other}"),
            };
            out.push(((key >> 3) as u32, value));
        }
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn encode(m: &Msg) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, v) in m {
            let key = u64::from(*tag) << 3;
            match v {
                W::V(x) => {
                    put_varint(&mut out, key);
                    put_varint(&mut out, *x);
                }
                W::F64(x) => {
                    put_varint(&mut out, key | 1);
                    out.extend(x);
                }
                W::B(x) => {
                    put_varint(&mut out, key | 2);
                    put_varint(&mut out, x.len() as u64);
                    out.extend(x);
                }
                W::F32(x) => {
                    put_varint(&mut out, key | 5);
                    out.extend(x);
                }
            }
        }
        out
    }

    pub fn all(m: &Msg, tag: u32) -> impl Iterator<Item = &[u8]> {
        m.iter().filter_map(move |(t, v)| match v {
            W::B(b) if *t == tag => Some(b.as_slice()),
            _ => None,
        })
    }

    pub fn bytes1(m: &Msg, tag: u32) -> Option<&[u8]> {
        all(m, tag).next()
    }

    pub fn strs(m: &Msg, tag: u32) -> Vec<String> {
        all(m, tag)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    pub fn str1(m: &Msg, tag: u32) -> String {
        strs(m, tag).into_iter().next().unwrap_or_default()
    }

    /// Repeated integers, packed or not.
    pub fn ints(m: &Msg, tag: u32) -> Vec<i64> {
        let mut out = Vec::new();
        for (t, v) in m {
            match v {
                W::V(x) if *t == tag => out.push(*x as i64),
                W::B(b) if *t == tag => {
                    let mut b = b.as_slice();
                    while !b.is_empty() {
                        out.push(varint(&mut b) as i64);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Repeated floats, packed or not.
    pub fn floats(m: &Msg, tag: u32) -> Vec<f32> {
        let mut out = Vec::new();
        for (t, v) in m {
            match v {
                W::F32(x) if *t == tag => out.push(f32::from_le_bytes(*x)),
                W::B(b) if *t == tag => out.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                ),
                _ => {}
            }
        }
        out
    }

    /// `ValueInfoProto { name, type: tensor(float) }`, shape left to the runtime.
    pub fn float_value_info(name: &str) -> Vec<u8> {
        let tensor = encode(&vec![(1, W::V(1))]);
        let ty = encode(&vec![(1, W::B(tensor))]);
        encode(&vec![(1, W::B(name.as_bytes().to_vec())), (2, W::B(ty))])
    }
}
