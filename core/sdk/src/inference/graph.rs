//! A native evaluator for small feed-forward float graphs (1-D CNNs over raw windows, MLPs),
//! used instead of tract when every node the requested outputs depend on is one it covers.
//!
//! On a 1-D CNN over a 30 s window, tract's convolution lowers to im2col plus a matrix multiply:
//! with 7- and 40-tap rows at stride 2, packing the patches costs as much as the multiply, and
//! the kernel driver and copies add the rest, which left it about 1.5x slower than ONNX Runtime.
//! Here a convolution is computed directly (no im2col): weights are packed once at load as
//! `[output-channel block][input channel][tap][channel in block]`, the output channels of a block
//! are the innermost loop (so LLVM vectorizes them), and a few output positions share each
//! weight load. On x86_64 a second copy of the kernel is compiled with AVX2 and FMA enabled
//! (its interior tile written with explicit intrinsics, as LLVM's vectorization of the generic
//! tile proved fragile) and chosen at load when the CPU has both; on aarch64 fused
//! multiply-add is baseline.
//!
//! `VITALCORE_KERNELS` (read at each load) overrides that choice, so the test suites can run
//! each copy on one machine: `auto` (or unset) as above, `portable` the generic copy on any
//! CPU, `avx2` the AVX2 + FMA copy. Asking for `avx2` on a CPU without both, or for anything
//! else, fails the load with [`InferenceError::Load`] rather than silently running another
//! copy than the one a test run claims to cover.
//!
//! A convolution writes its output channels-last (`[position][channel]`), so a block of output
//! channels is one or two vector stores instead of 8-16 strided scalar ones; the next
//! convolution, activations and global pooling read that layout as is, and any other reader
//! (or a requested output) gets a transposed copy in ONNX's layout.
//!
//! The plan is built once: shapes are static (the loader pins the input shape, any batch), every
//! intermediate tensor gets a buffer sized at load, constant operands are broadcast to their
//! output shape at load, a bias `Add` after a `MatMul`, a `BatchNormalization` after a
//! convolution and an activation after either are fused into that step. A prediction borrows
//! one set of buffers from a small pool (one set per concurrent caller, kept for the next
//! call), so a steady caller allocates nothing.
//!
//! Covered: `Conv` 1-D (group 1, any kernel, stride, dilation, pads or `auto_pad`, optional
//! bias), `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `MaxPool`/`AveragePool` 1-D (no `ceil_mode`,
//! no indices output), `GlobalAveragePool`, `GlobalMaxPool`, `Flatten`, `Reshape` (constant
//! shape), `Gemm`, `MatMul` with constant weights, `Add`/`Mul`/`Sub` with a constant
//! broadcastable operand (or two tensors of one shape), `BatchNormalization` (inference),
//! `Softmax` over the last axis, `Concat`, `Identity`, `Dropout` (inference), `Cast` to float;
//! from ONNX-ML, what scikit-learn exports put around a model: `LinearClassifier` (two scores
//! or more, post transform `NONE`, `LOGISTIC` or `SOFTMAX`), `Scaler`, `Normalizer`; and a
//! classifier's label branch, integer outputs computed from their scores when read: `ArgMax`
//! over the last axis, an `ArrayFeatureExtractor` of the class labels, `Reshape`, `Cast` to an
//! integer type. A convolution runs on each batch element in turn.
//! Anything else (another operator, another element type, a constant
//! subgraph, an output that is not float, a dilated `SAME_*` window, which ONNX Runtime
//! refuses) makes [`plan`] return `None` and tract takes the model; a graph that contradicts
//! itself (weights whose shape does not fit their input, an initializer whose data does not
//! fill its dims) is a typed error at load.
//!
//! Semantics follow ONNX Runtime where they differ from a naive reading: NaN passes through
//! `Relu` (`x < 0 ? 0 : x`, not `max(x, 0)`), padding is never a candidate of `MaxPool`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

use super::error::InferenceError;

/// Operators this evaluator implements (in some of their forms), for naming what a build
/// without tract cannot run.
#[cfg(not(feature = "tract"))]
pub(crate) const NATIVE_OPERATORS: &[&str] = &[
    "Identity",
    "Dropout",
    "Flatten",
    "Reshape",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "BatchNormalization",
    "Softmax",
    "Concat",
    "Cast",
    "ArgMax",
    "ArrayFeatureExtractor",
    "LinearClassifier",
    "Scaler",
    "Normalizer",
];

/// Why a graph is not served natively.
#[derive(Debug)]
enum Stop {
    /// Outside what this evaluator covers: tract takes the model.
    Fallback,
    /// The graph contradicts itself; no runtime could run it.
    Malformed(String),
}

type Built<T> = Result<T, Stop>;

fn malformed<T>(why: impl Into<String>) -> Built<T> {
    Err(Stop::Malformed(why.into()))
}

/// Turns an `Option` of a covered form into a fallback when it is absent.
trait OrFallback<T> {
    fn or_fallback(self) -> Built<T>;
}

impl<T> OrFallback<T> for Option<T> {
    fn or_fallback(self) -> Built<T> {
        self.ok_or(Stop::Fallback)
    }
}

/// An elementwise function applied to a step's output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    None,
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
}

impl Act {
    /// `y = f(x)`, out of place. In place, LLVM turns `v = if v < 0 { 0 } else { v }` into a
    /// conditional store of the zeros (a branch per element, or a masked store that stalls the
    /// next load); into another buffer it stays a vector select.
    #[inline(always)]
    fn map(self, x: &[f32], y: &mut [f32]) {
        match self {
            Act::None => y.copy_from_slice(x),
            // `x < 0` is false for NaN, which therefore passes through as in ONNX Runtime.
            Act::Relu => {
                for (d, &v) in y.iter_mut().zip(x) {
                    *d = if v < 0.0 { 0.0 } else { v };
                }
            }
            Act::LeakyRelu(a) => {
                for (d, &v) in y.iter_mut().zip(x) {
                    *d = if v < 0.0 { v * a } else { v };
                }
            }
            Act::Sigmoid => {
                for (d, &v) in y.iter_mut().zip(x) {
                    *d = sigmoid(v);
                }
            }
            Act::Tanh => {
                for (d, &v) in y.iter_mut().zip(x) {
                    *d = v.tanh();
                }
            }
        }
    }

    /// In place, for small outputs of steps that compute their values first.
    #[inline(always)]
    fn apply(self, y: &mut [f32]) {
        match self {
            Act::None => {}
            // `x < 0` is false for NaN, which therefore passes through as in ONNX Runtime.
            Act::Relu => y
                .iter_mut()
                .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
            Act::LeakyRelu(a) => y
                .iter_mut()
                .for_each(|v| *v = if *v < 0.0 { *v * a } else { *v }),
            Act::Sigmoid => y.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Act::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        }
    }
}

/// Logistic function computed on `|x|`, so large magnitudes neither overflow nor lose the
/// small tail.
fn sigmoid(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// Where a step reads a tensor from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The caller's input slice.
    Input,
    /// A scratch buffer written by an earlier step.
    Buf(usize),
    /// A constant of the plan.
    Const(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
}

impl BinOp {
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
        }
    }
}

/// A direct 1-D convolution, NCW in and out, weights packed for the kernel.
#[derive(Debug)]
struct Conv {
    src: Src,
    c_in: usize,
    l_in: usize,
    /// Distance between input channels and between input positions: `(l_in, 1)` for ONNX's
    /// layout, `(1, c_in)` for channels-last. The output is always channels-last.
    in_strides: (usize, usize),
    c_out: usize,
    l_out: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    /// Output channels per block: 8 or 16 (one or two AVX registers).
    block: usize,
    /// `[c_out / block][c_in][k][block]`, zero-padded to whole blocks.
    w: Vec<f32>,
    /// Per output channel, zero-padded to whole blocks.
    bias: Vec<f32>,
    /// Output positions whose every tap reads inside the input: no bounds test there.
    interior: (usize, usize),
}

/// `y[rows, n] = x[rows, k] . w[k, n] + bias`, the form of `Gemm` and `MatMul`.
#[derive(Debug)]
struct Dense {
    src: Src,
    rows: usize,
    k: usize,
    n: usize,
    /// `x` is stored `[k, rows]`.
    trans_a: bool,
    /// `[k][n]`, `alpha` folded in.
    w: Vec<f32>,
    /// `[rows][n]`, or empty for none.
    bias: Vec<f32>,
}

#[derive(Debug)]
struct Pool {
    src: Src,
    channels: usize,
    l_in: usize,
    l_out: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    max: bool,
    count_include_pad: bool,
}

#[derive(Debug)]
enum Kind {
    Conv(Conv),
    Dense(Dense),
    Unary(Src),
    /// `konst` is already broadcast to the output's length.
    WithConst {
        src: Src,
        konst: usize,
        op: BinOp,
        const_first: bool,
    },
    Binary {
        a: Src,
        b: Src,
        op: BinOp,
    },
    Pool(Pool),
    GlobalPool {
        src: Src,
        /// Per batch element when `nwc`, else batch times channels (rows of `spatial`).
        channels: usize,
        spatial: usize,
        max: bool,
        /// The input is channels-last (`[batch][spatial][channels]`).
        nwc: bool,
    },
    /// Channels-last `[batch][len][channels]` to ONNX's `[batch][channels][len]`.
    ToNcw {
        src: Src,
        channels: usize,
        len: usize,
    },
    /// Per-channel `x * scale + shift` (an inference batch normalization).
    ChannelAffine {
        src: Src,
        channels: usize,
        spatial: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Softmax {
        src: Src,
        cols: usize,
    },
    /// ONNX-ML `Scaler`: `(x - offset[j]) * scale[j]` per column `j`.
    Scale {
        src: Src,
        cols: usize,
        offset: Vec<f32>,
        scale: Vec<f32>,
    },
    /// ONNX-ML `Normalizer`, per row of `cols`.
    Normalize {
        src: Src,
        cols: usize,
        norm: Norm,
    },
    Concat {
        outer: usize,
        parts: Vec<(Src, usize)>,
    },
}

/// The norms of ONNX-ML's `Normalizer`.
#[derive(Debug, Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug)]
struct Step {
    kind: Kind,
    dst: usize,
    act: Act,
}

/// A small float graph ready to evaluate, immutable after load except for its buffer pool.
#[derive(Debug)]
pub(crate) struct NativeGraph {
    steps: Vec<Step>,
    consts: Vec<Vec<f32>>,
    buf_sizes: Vec<usize>,
    /// Each requested output, in order.
    outputs: Vec<Out>,
    /// Use the AVX2 + FMA copy of the kernels (x86_64, detected at load).
    fma: bool,
    pool: Mutex<Vec<Vec<Vec<f32>>>>,
}

/// Where a requested output's values come from.
#[derive(Debug)]
enum Out {
    /// A float buffer.
    Float(usize),
    /// Integer labels, decided from their scores when read.
    Labels(Labels),
}

/// What the loader needs to serve a graph natively.
#[derive(Debug)]
pub(crate) struct GraphPlan {
    pub(crate) graph: NativeGraph,
    /// Name of the graph input.
    pub(crate) input: String,
    /// Requested outputs in order.
    pub(crate) outputs: Vec<OutputFact>,
}

/// One requested output as the plan computes it.
#[derive(Debug)]
pub(crate) struct OutputFact {
    /// ONNX name.
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    /// An integer (i64) tensor of labels, not a float one.
    pub(crate) labels: bool,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(node, name).map(|a| a.ints.as_slice())
}

fn attr_s<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [u8]> {
    attr(node, name).map(|a| a.s.as_slice())
}

/// A constant: data and shape.
#[derive(Debug, Clone)]
struct Konst {
    data: Vec<f32>,
    shape: Vec<usize>,
}

fn dims_of(t: &TensorProto) -> Built<Vec<usize>> {
    t.dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Stop::Malformed(format!("initializer `{}` has a negative dim", t.name)))
}

fn element_count(shape: &[usize]) -> Built<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Stop::Malformed("a tensor's element count overflows".to_owned()))
}

/// Reads a float initializer (inline data only; external data is left to tract).
fn float_tensor(t: &TensorProto) -> Built<Konst> {
    // TensorProto.DataType.FLOAT = 1; data_location EXTERNAL = 1.
    if t.data_type != 1 || t.data_location == 1 {
        return Err(Stop::Fallback);
    }
    let shape = dims_of(t)?;
    let n = element_count(&shape)?;
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        if t.raw_data.len() != n.saturating_mul(4) {
            return malformed(format!(
                "initializer `{}` holds {} bytes, its dims need {}",
                t.name,
                t.raw_data.len(),
                n.saturating_mul(4)
            ));
        }
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        if t.float_data.len() != n {
            return malformed(format!(
                "initializer `{}` holds {} values, its dims need {n}",
                t.name,
                t.float_data.len()
            ));
        }
        t.float_data.clone()
    };
    Ok(Konst { data, shape })
}

/// Reads an int64 initializer (a `Reshape` target).
fn int_tensor(t: &TensorProto) -> Built<Vec<i64>> {
    // TensorProto.DataType.INT64 = 7.
    if t.data_type != 7 || t.data_location == 1 {
        return Err(Stop::Fallback);
    }
    let n = element_count(&dims_of(t)?)?;
    let data: Vec<i64> = if !t.raw_data.is_empty() {
        if t.raw_data.len() != n.saturating_mul(8) {
            return malformed(format!(
                "initializer `{}` has the wrong byte length",
                t.name
            ));
        }
        t.raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    } else {
        if t.int64_data.len() != n {
            return malformed(format!("initializer `{}` has the wrong length", t.name));
        }
        t.int64_data.clone()
    };
    Ok(data)
}

/// Reads an integer initializer of class labels: int64, or the int32 skl2onnx writes for an
/// MLP's classes.
fn label_table(t: &TensorProto) -> Built<Vec<i64>> {
    // TensorProto.DataType.INT32 = 6.
    if t.data_type != 6 {
        return int_tensor(t);
    }
    if t.data_location == 1 {
        return Err(Stop::Fallback);
    }
    let n = element_count(&dims_of(t)?)?;
    if !t.raw_data.is_empty() {
        if t.raw_data.len() != n.saturating_mul(4) {
            return malformed(format!(
                "initializer `{}` has the wrong byte length",
                t.name
            ));
        }
        return Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect());
    }
    if t.int32_data.len() != n {
        return malformed(format!("initializer `{}` has the wrong length", t.name));
    }
    Ok(t.int32_data.iter().map(|&v| i64::from(v)).collect())
}

/// Broadcasts `k` (numpy rules) to exactly `out`, or `None` when it would change `out`.
fn broadcast_to(k: &Konst, out: &[usize]) -> Option<Vec<f32>> {
    if k.shape.len() > out.len() {
        return None;
    }
    let lead = out.len() - k.shape.len();
    let mut strides = vec![0usize; out.len()];
    let mut stride = 1;
    for (i, &d) in k.shape.iter().enumerate().rev() {
        let o = out[lead + i];
        if d == o {
            strides[lead + i] = stride;
        } else if d != 1 {
            return None;
        }
        stride *= d;
    }
    let n: usize = out.iter().product();
    let mut data = Vec::with_capacity(n);
    let mut index = vec![0usize; out.len()];
    for _ in 0..n {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        data.push(*k.data.get(at)?);
        for axis in (0..out.len()).rev() {
            index[axis] += 1;
            if index[axis] < out[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Some(data)
}

/// A tensor known while building: where it lives and its (logical, ONNX) shape. A rank-3
/// tensor a convolution wrote is stored channels-last (`nwc`), so the kernel stores a block of
/// output channels with vector stores; a consumer that needs ONNX's layout gets a transposed
/// copy (see `Builder::val`).
#[derive(Debug, Clone)]
enum Val {
    Dyn {
        src: Src,
        shape: Vec<usize>,
        nwc: bool,
    },
    Const(Konst),
    /// An integer tensor of a classifier's label branch (see [`Labels`]).
    Labels(Labels),
}

/// An integer tensor of a classifier's label branch, computed when a prediction reads it: per
/// row of `scores` (`cols` values), the index of its first largest value (`ArgMax`, ONNX
/// Runtime's `LinearClassifier`), looked up in `classes` when an `ArrayFeatureExtractor` did.
/// One value per row, whatever the `Reshape`s and `Cast`s in between make of its shape.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    scores: Src,
    cols: usize,
    classes: Option<Vec<i64>>,
    shape: Vec<usize>,
}

impl Labels {
    /// First index of the largest value (`>`: a NaN never wins unless it comes first), as
    /// ONNX Runtime's `ArgMax` and `LinearClassifier` decide.
    fn decide(&self, scores: &[f32], out: &mut Vec<i64>) {
        out.clear();
        for row in scores.chunks_exact(self.cols) {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > row[best] {
                    best = j;
                }
            }
            out.push(match &self.classes {
                Some(table) => table[best],
                None => best as i64,
            });
        }
    }
}

struct Builder<'a> {
    inits: HashMap<&'a str, &'a TensorProto>,
    vals: HashMap<String, Val>,
    /// Which step wrote a tensor (tensors an alias produced are absent: never fused into).
    producer: HashMap<String, usize>,
    /// Readers of each tensor among the needed nodes, plus one per requested output.
    uses: HashMap<String, usize>,
    steps: Vec<Step>,
    consts: Vec<Vec<f32>>,
    buf_sizes: Vec<usize>,
    opset: i64,
}

impl<'a> Builder<'a> {
    /// A tensor as stored (possibly channels-last).
    fn val_raw(&self, name: &str) -> Built<Val> {
        if name.is_empty() {
            return Err(Stop::Fallback);
        }
        if let Some(v) = self.vals.get(name) {
            return Ok(v.clone());
        }
        let t = self.inits.get(name).or_fallback()?;
        Ok(Val::Const(float_tensor(t)?))
    }

    /// A tensor in ONNX's layout: a channels-last one is transposed once by a step, and the
    /// copy replaces it for every later reader.
    fn val(&mut self, name: &str) -> Built<Val> {
        match self.val_raw(name)? {
            Val::Dyn {
                src,
                shape,
                nwc: true,
            } => {
                let [_, channels, len] = shape[..] else {
                    return Err(Stop::Fallback);
                };
                self.buf_sizes.push(element_count(&shape)?);
                let dst = self.buf_sizes.len() - 1;
                self.steps.push(Step {
                    kind: Kind::ToNcw { src, channels, len },
                    dst,
                    act: Act::None,
                });
                // The transposed copy is no step's fusable output.
                self.producer.remove(name);
                let v = Val::Dyn {
                    src: Src::Buf(dst),
                    shape,
                    nwc: false,
                };
                self.vals.insert(name.to_owned(), v.clone());
                Ok(v)
            }
            v => Ok(v),
        }
    }

    fn dynamic(&mut self, name: &str) -> Built<(Src, Vec<usize>)> {
        match self.val(name)? {
            Val::Dyn { src, shape, .. } => Ok((src, shape)),
            Val::Const(_) | Val::Labels(_) => Err(Stop::Fallback),
        }
    }

    /// A dynamic tensor in whichever layout it is stored, for layout-agnostic readers.
    fn dynamic_any(&self, name: &str) -> Built<(Src, Vec<usize>, bool)> {
        match self.val_raw(name)? {
            Val::Dyn { src, shape, nwc } => Ok((src, shape, nwc)),
            Val::Const(_) | Val::Labels(_) => Err(Stop::Fallback),
        }
    }

    fn constant(&self, name: &str) -> Built<Konst> {
        match self.val_raw(name)? {
            Val::Const(k) => Ok(k),
            Val::Dyn { .. } | Val::Labels(_) => Err(Stop::Fallback),
        }
    }

    fn optional_constant(&self, node: &NodeProto, i: usize) -> Built<Option<Konst>> {
        match node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self.constant(n).map(Some),
        }
    }

    fn add_const(&mut self, data: Vec<f32>) -> Src {
        self.consts.push(data);
        Src::Const(self.consts.len() - 1)
    }

    fn push(&mut self, node: &NodeProto, kind: Kind, shape: Vec<usize>) -> Built<()> {
        self.push_layout(node, kind, shape, false)
    }

    fn push_layout(
        &mut self,
        node: &NodeProto,
        kind: Kind,
        shape: Vec<usize>,
        nwc: bool,
    ) -> Built<()> {
        let out = node.output.first().or_fallback()?.clone();
        let dst = self.step(kind, &shape, Act::None)?;
        self.producer.insert(out.clone(), self.steps.len() - 1);
        self.vals.insert(
            out,
            Val::Dyn {
                src: Src::Buf(dst),
                shape,
                nwc,
            },
        );
        Ok(())
    }

    /// Appends a step writing a new buffer of `shape`'s size; returns the buffer.
    fn step(&mut self, kind: Kind, shape: &[usize], act: Act) -> Built<usize> {
        self.buf_sizes.push(element_count(shape)?);
        let dst = self.buf_sizes.len() - 1;
        self.steps.push(Step { kind, dst, act });
        Ok(dst)
    }

    /// Names a buffer no later step may fuse into (its values are read as they are).
    fn name_buf(&mut self, name: &str, dst: usize, shape: Vec<usize>) {
        if name.is_empty() {
            return;
        }
        self.vals.insert(
            name.to_owned(),
            Val::Dyn {
                src: Src::Buf(dst),
                shape,
                nwc: false,
            },
        );
    }

    fn set_labels(&mut self, node: &NodeProto, labels: Labels) -> Built<()> {
        let out = node.output.first().or_fallback()?;
        self.vals.insert(out.clone(), Val::Labels(labels));
        Ok(())
    }

    fn alias(&mut self, node: &NodeProto, src: Src, shape: Vec<usize>) -> Built<()> {
        self.alias_layout(node, src, shape, false)
    }

    fn alias_layout(
        &mut self,
        node: &NodeProto,
        src: Src,
        shape: Vec<usize>,
        nwc: bool,
    ) -> Built<()> {
        let out = node.output.first().or_fallback()?;
        self.vals.insert(out.clone(), Val::Dyn { src, shape, nwc });
        Ok(())
    }

    /// The step that wrote `name`, if it has no other reader and may take a fused epilogue.
    fn fusable(&self, name: &str) -> Option<usize> {
        let step = *self.producer.get(name)?;
        (self.uses.get(name).copied() == Some(1)).then_some(step)
    }

    fn activation(&mut self, node: &NodeProto, act: Act) -> Built<()> {
        let input = node.input.first().or_fallback()?;
        let (src, shape, nwc) = self.dynamic_any(input)?;
        if let Some(step) = self.fusable(input) {
            if self.steps[step].act == Act::None {
                self.steps[step].act = act;
                let out = node.output.first().or_fallback()?;
                self.producer.insert(out.clone(), step);
                return self.alias_layout(node, src, shape, nwc);
            }
        }
        self.push_layout(node, Kind::Unary(src), shape, nwc)?;
        if let Some(last) = self.steps.last_mut() {
            last.act = act;
        }
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> Built<()> {
        if node.domain == "ai.onnx.ml" {
            return self.ml_node(node);
        }
        // Only single-output forms are covered (Dropout's mask, MaxPool's indices are not).
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(Stop::Fallback);
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(Stop::Fallback);
        }
        let input = |i: usize| node.input.get(i).map(String::as_str).or_fallback();
        // The label branch: integer tensors pass through these unchanged but for their shape.
        if let Some(Val::Labels(mut labels)) = node
            .input
            .first()
            .and_then(|i| self.vals.get(i.as_str()))
            .cloned()
        {
            match node.op_type.as_str() {
                // TensorProto.DataType INT32 = 6, INT64 = 7: labels come from a table of
                // either, so both hold them.
                "Identity" => {}
                "Cast" if matches!(attr_i(node, "to", 0), 6 | 7) => {}
                "Reshape" => {
                    let target = int_tensor(self.inits.get(input(1)?).or_fallback()?)?;
                    if attr_i(node, "allowzero", 0) != 0 {
                        return Err(Stop::Fallback);
                    }
                    labels.shape = reshaped(&labels.shape, &target)?;
                }
                _ => return Err(Stop::Fallback),
            }
            return self.set_labels(node, labels);
        }
        match node.op_type.as_str() {
            "Identity" => {
                let (src, shape, nwc) = self.dynamic_any(input(0)?)?;
                self.alias_layout(node, src, shape, nwc)
            }
            "ArgMax" => {
                let (src, shape) = self.dynamic(input(0)?)?;
                let rank = shape.len() as i64;
                let axis = attr_i(node, "axis", 0);
                let axis = if axis < 0 { axis + rank } else { axis };
                if rank == 0 || axis != rank - 1 || attr_i(node, "select_last_index", 0) != 0 {
                    return Err(Stop::Fallback);
                }
                let cols = shape[shape.len() - 1];
                if cols == 0 {
                    return Err(Stop::Fallback);
                }
                let mut out = shape;
                if attr_i(node, "keepdims", 1) != 0 {
                    out[axis as usize] = 1;
                } else {
                    out.pop();
                }
                let labels = Labels {
                    scores: src,
                    cols,
                    classes: None,
                    shape: out,
                };
                self.set_labels(node, labels)
            }
            "Dropout" => {
                // A training-mode input (third) could turn dropout on: left to tract.
                if node.input.get(2).is_some_and(|n| !n.is_empty()) {
                    return Err(Stop::Fallback);
                }
                let (src, shape, nwc) = self.dynamic_any(input(0)?)?;
                self.alias_layout(node, src, shape, nwc)
            }
            // TensorProto.DataType.FLOAT = 1: a cast of the float input to float.
            "Cast" if attr_i(node, "to", 0) == 1 => {
                let (src, shape, nwc) = self.dynamic_any(input(0)?)?;
                self.alias_layout(node, src, shape, nwc)
            }
            "Flatten" => {
                let (src, shape) = self.dynamic(input(0)?)?;
                let rank = shape.len() as i64;
                let axis = attr_i(node, "axis", 1);
                let axis = if axis < 0 { axis + rank } else { axis };
                if !(0..=rank).contains(&axis) {
                    return malformed("Flatten axis is outside the input's rank");
                }
                let axis = axis as usize;
                let outer = shape[..axis].iter().product();
                let inner = shape[axis..].iter().product();
                self.alias(node, src, vec![outer, inner])
            }
            "Reshape" => {
                let (src, shape) = self.dynamic(input(0)?)?;
                let target = int_tensor(self.inits.get(input(1)?).or_fallback()?)?;
                if attr_i(node, "allowzero", 0) != 0 {
                    return Err(Stop::Fallback);
                }
                let out = reshaped(&shape, &target)?;
                self.alias(node, src, out)
            }
            "Relu" => self.activation(node, Act::Relu),
            "LeakyRelu" => self.activation(node, Act::LeakyRelu(attr_f(node, "alpha", 0.01))),
            "Sigmoid" => self.activation(node, Act::Sigmoid),
            "Tanh" => self.activation(node, Act::Tanh),
            "Conv" => self.conv(node),
            "MaxPool" | "AveragePool" => self.pool(node),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                // Channels-last only comes from a convolution (rank 3), read as is.
                let (src, shape, nwc) = self.dynamic_any(input(0)?)?;
                if shape.len() < 3 {
                    return Err(Stop::Fallback);
                }
                let channels = if nwc { shape[1] } else { shape[0] * shape[1] };
                let spatial = shape[2..].iter().product();
                let mut out = shape.clone();
                out[2..].iter_mut().for_each(|d| *d = 1);
                let max = node.op_type == "GlobalMaxPool";
                self.push(
                    node,
                    Kind::GlobalPool {
                        src,
                        channels,
                        spatial,
                        max,
                        nwc,
                    },
                    out,
                )
            }
            "Gemm" => self.gemm(node),
            "MatMul" => self.matmul(node),
            "Add" | "Sub" | "Mul" => self.binary(node),
            "BatchNormalization" => self.batch_norm(node),
            "Softmax" => {
                let (src, shape) = self.dynamic(input(0)?)?;
                let rank = shape.len() as i64;
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = attr_i(node, "axis", default);
                let axis = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&axis) {
                    return malformed("Softmax axis is outside the input's rank");
                }
                // Before opset 13 the input is coerced to 2-D at `axis`; from 13 on `axis` alone
                // is normalized, which is the same thing only for the last axis.
                let cols: usize = if self.opset >= 13 {
                    if axis != rank - 1 {
                        return Err(Stop::Fallback);
                    }
                    shape[axis as usize]
                } else {
                    shape[axis as usize..].iter().product()
                };
                if cols == 0 {
                    return Err(Stop::Fallback);
                }
                self.push(node, Kind::Softmax { src, cols }, shape)
            }
            "Concat" => self.concat(node),
            _ => Err(Stop::Fallback),
        }
    }

    /// The ONNX-ML operators scikit-learn exports put around a model: `LinearClassifier`,
    /// `Scaler`, `Normalizer`, and the `ArrayFeatureExtractor` that looks labels up.
    fn ml_node(&mut self, node: &NodeProto) -> Built<()> {
        let input = node.input.first().map(String::as_str).or_fallback()?;
        let floats = |name: &str| attr(node, name).map_or(&[][..], |a| a.floats.as_slice());
        match node.op_type.as_str() {
            "LinearClassifier" => self.linear_classifier(node),
            "ArrayFeatureExtractor" => {
                let table = self.inits.get(input).or_fallback()?;
                let classes = label_table(table)?;
                let Some(Val::Labels(mut labels)) = self
                    .vals
                    .get(node.input.get(1).or_fallback()?.as_str())
                    .cloned()
                else {
                    return Err(Stop::Fallback);
                };
                // A lookup of a lookup, a table of another rank, or one an index could fall
                // outside of (ONNX Runtime fails that run): tract judges.
                if labels.classes.is_some() || table.dims.len() != 1 || classes.len() < labels.cols
                {
                    return Err(Stop::Fallback);
                }
                labels.classes = Some(classes);
                labels.shape = vec![1, element_count(&labels.shape)?];
                self.set_labels(node, labels)
            }
            "Scaler" => {
                let (src, shape) = self.dynamic(input)?;
                let cols = match shape[..] {
                    [cols] | [_, cols] => cols,
                    _ => return Err(Stop::Fallback),
                };
                let (offset, scale) = (floats("offset"), floats("scale"));
                // ONNX Runtime: both per column, or both one value.
                let (offset, scale) = match (offset, scale) {
                    (o, s) if o.len() == cols && s.len() == cols => (o.to_vec(), s.to_vec()),
                    ([o], [s]) => (vec![*o; cols], vec![*s; cols]),
                    _ => return Err(Stop::Fallback),
                };
                let kind = Kind::Scale {
                    src,
                    cols,
                    offset,
                    scale,
                };
                self.push(node, kind, shape)
            }
            "Normalizer" => {
                let (src, shape) = self.dynamic(input)?;
                let cols = match shape[..] {
                    [cols] | [_, cols] if cols > 0 => cols,
                    _ => return Err(Stop::Fallback),
                };
                let norm = match attr_s(node, "norm").unwrap_or(b"MAX") {
                    b"MAX" => Norm::Max,
                    b"L1" => Norm::L1,
                    b"L2" => Norm::L2,
                    _ => return malformed("Normalizer has an unknown norm"),
                };
                self.push(node, Kind::Normalize { src, cols, norm }, shape)
            }
            _ => Err(Stop::Fallback),
        }
    }

    /// ONNX Runtime's `LinearClassifier`: raw scores `x . coefficients^T + intercepts` into
    /// their own buffer (the label is decided on them, before the post transform), then the
    /// post transform into the probabilities'.
    fn linear_classifier(&mut self, node: &NodeProto) -> Built<()> {
        let (src, shape) = self.dynamic(node.input.first().or_fallback()?)?;
        let &[rows, k] = shape.as_slice() else {
            return Err(Stop::Fallback);
        };
        let floats = |name: &str| attr(node, name).map_or(&[][..], |a| a.floats.as_slice());
        let (coefficients, intercepts) = (floats("coefficients"), floats("intercepts"));
        let n = intercepts.len();
        // One score for two labels is another form (its label is `score > 0`): tract's.
        if n < 2 {
            return Err(Stop::Fallback);
        }
        if coefficients.len() != n * k {
            return malformed(format!(
                "LinearClassifier has {} coefficients for {n} classes of {k} features",
                coefficients.len()
            ));
        }
        let post = attr_s(node, "post_transform").unwrap_or(b"NONE");
        if !matches!(post, b"NONE" | b"LOGISTIC" | b"SOFTMAX") {
            return Err(Stop::Fallback);
        }
        let mut w = vec![0f32; k * n];
        for (j, row) in coefficients.chunks_exact(k).enumerate() {
            for (kk, &c) in row.iter().enumerate() {
                w[kk * n + j] = c;
            }
        }
        let dense = Dense {
            src,
            rows,
            k,
            n,
            trans_a: false,
            w,
            bias: intercepts.repeat(rows),
        };
        let raw = self.step(Kind::Dense(dense), &[rows, n], Act::None)?;
        let shape = [rows, n];
        let probabilities = match post {
            b"LOGISTIC" => self.step(Kind::Unary(Src::Buf(raw)), &shape, Act::Sigmoid)?,
            b"SOFTMAX" => {
                let softmax = Kind::Softmax {
                    src: Src::Buf(raw),
                    cols: n,
                };
                self.step(softmax, &shape, Act::None)?
            }
            _ => raw,
        };
        if let Some(name) = node.output.get(1) {
            self.name_buf(name, probabilities, vec![rows, n]);
        }
        let classes = attr(node, "classlabels_ints").map(|a| a.ints.clone());
        match (node.output.first(), classes) {
            (Some(name), Some(classes)) if !name.is_empty() => {
                if classes.len() != n {
                    return malformed(format!(
                        "LinearClassifier has {} class labels for {n} scores",
                        classes.len()
                    ));
                }
                let labels = Labels {
                    scores: Src::Buf(raw),
                    cols: n,
                    classes: Some(classes),
                    shape: vec![rows],
                };
                self.vals.insert(name.clone(), Val::Labels(labels));
            }
            // String labels are not served: a request for them goes to tract.
            _ => {}
        }
        Ok(())
    }

    fn conv(&mut self, node: &NodeProto) -> Built<()> {
        let x = node.input.first().or_fallback()?;
        let (src, shape, nwc_in) = self.dynamic_any(x)?;
        let w = self.constant(node.input.get(1).or_fallback()?)?;
        let bias = self.optional_constant(node, 2)?;
        if shape.len() != 3 || w.shape.len() != 3 {
            return Err(Stop::Fallback);
        }
        if attr_i(node, "group", 1) != 1 {
            return Err(Stop::Fallback);
        }
        let (c_in, l_in) = (shape[1], shape[2]);
        let (c_out, wc_in, k) = (w.shape[0], w.shape[1], w.shape[2]);
        if wc_in != c_in {
            return malformed(format!(
                "Conv weight has {wc_in} input channels, its input has {c_in}"
            ));
        }
        if let Some(ks) = attr_ints(node, "kernel_shape") {
            if ks != [k as i64] {
                return malformed("Conv kernel_shape contradicts the weight shape");
            }
        }
        if let Some(b) = &bias {
            if b.data.len() != c_out || b.shape.len() != 1 {
                return malformed(format!(
                    "Conv bias has {} values for {c_out} output channels",
                    b.data.len()
                ));
            }
        }
        let window = Window::from_node(node, l_in, k)?;
        if c_out == 0 || c_in == 0 {
            return Err(Stop::Fallback);
        }
        let block = if c_out > 8 { 16 } else { 8 };
        let blocks = c_out.div_ceil(block);
        let mut packed = vec![0f32; blocks * c_in * k * block];
        for co in 0..c_out {
            let (b, j) = (co / block, co % block);
            for ci in 0..c_in {
                for t in 0..k {
                    packed[((b * c_in + ci) * k + t) * block + j] =
                        w.data[(co * c_in + ci) * k + t];
                }
            }
        }
        let mut bias_packed = vec![0f32; blocks * block];
        if let Some(b) = bias {
            bias_packed[..c_out].copy_from_slice(&b.data);
        }
        let conv = Conv {
            src,
            c_in,
            l_in,
            in_strides: if nwc_in { (1, c_in) } else { (l_in, 1) },
            c_out,
            l_out: window.l_out,
            k,
            stride: window.stride,
            dilation: window.dilation,
            pad: window.pad,
            block,
            w: packed,
            bias: bias_packed,
            interior: window.interior(l_in, k),
        };
        let out = vec![shape[0], c_out, window.l_out];
        // With one channel or one position both layouts are the same bytes.
        let nwc = c_out > 1 && window.l_out > 1;
        self.push_layout(node, Kind::Conv(conv), out, nwc)
    }

    fn pool(&mut self, node: &NodeProto) -> Built<()> {
        let (src, shape) = self.dynamic(node.input.first().or_fallback()?)?;
        if shape.len() != 3 || attr_i(node, "ceil_mode", 0) != 0 {
            return Err(Stop::Fallback);
        }
        let max = node.op_type == "MaxPool";
        let k = match attr_ints(node, "kernel_shape") {
            Some([k]) if *k > 0 => *k as usize,
            _ => return Err(Stop::Fallback),
        };
        if !max && attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
            return Err(Stop::Fallback);
        }
        let window = Window::from_node(node, shape[2], k)?;
        let pool = Pool {
            src,
            channels: shape[0] * shape[1],
            l_in: shape[2],
            l_out: window.l_out,
            k,
            stride: window.stride,
            dilation: window.dilation,
            pad: window.pad,
            max,
            count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
        };
        let out = vec![shape[0], shape[1], window.l_out];
        self.push(node, Kind::Pool(pool), out)
    }

    fn gemm(&mut self, node: &NodeProto) -> Built<()> {
        let (src, shape) = self.dynamic(node.input.first().or_fallback()?)?;
        let b = self.constant(node.input.get(1).or_fallback()?)?;
        let c = self.optional_constant(node, 2)?;
        let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
        let (trans_a, trans_b) = (
            attr_i(node, "transA", 0) != 0,
            attr_i(node, "transB", 0) != 0,
        );
        let ([a0, a1], [b0, b1]) = (shape.as_slice(), b.shape.as_slice()) else {
            return Err(Stop::Fallback);
        };
        let (rows, k) = if trans_a { (*a1, *a0) } else { (*a0, *a1) };
        let (bk, n) = if trans_b { (*b1, *b0) } else { (*b0, *b1) };
        if bk != k {
            return malformed(format!(
                "Gemm operands do not chain: {k} columns against {bk} rows"
            ));
        }
        let mut w = vec![0f32; k * n];
        for kk in 0..k {
            for j in 0..n {
                let v = if trans_b {
                    b.data[j * k + kk]
                } else {
                    b.data[kk * n + j]
                };
                w[kk * n + j] = alpha * v;
            }
        }
        let bias = match c {
            Some(c) if beta != 0.0 => {
                let mut full = broadcast_to(&c, &[rows, n]).ok_or_else(|| {
                    Stop::Malformed("Gemm C does not broadcast to the output".to_owned())
                })?;
                full.iter_mut().for_each(|v| *v *= beta);
                full
            }
            _ => Vec::new(),
        };
        let dense = Dense {
            src,
            rows,
            k,
            n,
            trans_a,
            w,
            bias,
        };
        self.push(node, Kind::Dense(dense), vec![rows, n])
    }

    fn matmul(&mut self, node: &NodeProto) -> Built<()> {
        let (src, shape) = self.dynamic(node.input.first().or_fallback()?)?;
        let b = self.constant(node.input.get(1).or_fallback()?)?;
        let ([bk, n], Some(&k)) = (b.shape.as_slice(), shape.last()) else {
            return Err(Stop::Fallback);
        };
        if *bk != k {
            return malformed(format!(
                "MatMul operands do not chain: {k} columns against {bk} rows"
            ));
        }
        let rows = shape[..shape.len() - 1].iter().product();
        let mut out = shape[..shape.len() - 1].to_vec();
        out.push(*n);
        let dense = Dense {
            src,
            rows,
            k,
            n: *n,
            trans_a: false,
            w: b.data,
            bias: Vec::new(),
        };
        self.push(node, Kind::Dense(dense), out)
    }

    fn binary(&mut self, node: &NodeProto) -> Built<()> {
        let op = match node.op_type.as_str() {
            "Add" => BinOp::Add,
            "Sub" => BinOp::Sub,
            _ => BinOp::Mul,
        };
        let (a, b) = (
            node.input.first().or_fallback()?,
            node.input.get(1).or_fallback()?,
        );
        let (src, shape, k, const_first) = match (self.val(a)?, self.val(b)?) {
            (
                Val::Dyn {
                    src: sa, shape: ha, ..
                },
                Val::Dyn {
                    src: sb, shape: hb, ..
                },
            ) => {
                if ha != hb {
                    return Err(Stop::Fallback);
                }
                return self.push(node, Kind::Binary { a: sa, b: sb, op }, ha);
            }
            (Val::Dyn { src, shape, .. }, Val::Const(k)) => (src, shape, k, false),
            (Val::Const(k), Val::Dyn { src, shape, .. }) => (src, shape, k, true),
            // A subgraph of constants only: folding it is tract's business.
            (Val::Const(_), Val::Const(_)) | (Val::Labels(_), _) | (_, Val::Labels(_)) => {
                return Err(Stop::Fallback)
            }
        };
        let full = broadcast_to(&k, &shape).or_fallback()?;
        let dyn_name = if const_first { b } else { a };
        // A bias after a dense layer becomes that layer's bias.
        if op == BinOp::Add {
            if let Some(step) = self.fusable(dyn_name) {
                let target = &mut self.steps[step];
                if let (Kind::Dense(d), Act::None) = (&mut target.kind, target.act) {
                    if d.bias.is_empty() {
                        d.bias = full;
                    } else {
                        d.bias.iter_mut().zip(&full).for_each(|(b, v)| *b += v);
                    }
                    let out = node.output.first().or_fallback()?;
                    self.producer.insert(out.clone(), step);
                    return self.alias(node, src, shape);
                }
            }
        }
        let Src::Const(konst) = self.add_const(full) else {
            return Err(Stop::Fallback);
        };
        self.push(
            node,
            Kind::WithConst {
                src,
                konst,
                op,
                const_first,
            },
            shape,
        )
    }

    fn batch_norm(&mut self, node: &NodeProto) -> Built<()> {
        if attr_i(node, "training_mode", 0) != 0 || node.input.len() != 5 {
            return Err(Stop::Fallback);
        }
        let input = node.input[0].clone();
        let (_, shape, _) = self.dynamic_any(&input)?;
        if shape.len() < 2 {
            return Err(Stop::Fallback);
        }
        let eps = attr_f(node, "epsilon", 1e-5);
        let channels = shape[1];
        let mut params = Vec::with_capacity(4);
        for name in &node.input[1..5] {
            let k = self.constant(name)?;
            if k.data.len() != channels {
                return malformed(format!(
                    "BatchNormalization parameter has {} values for {channels} channels",
                    k.data.len()
                ));
            }
            params.push(k.data);
        }
        let (scale, shift): (Vec<f32>, Vec<f32>) = (0..channels)
            .map(|c| {
                let a = params[0][c] / (params[3][c] + eps).sqrt();
                (a, params[1][c] - params[2][c] * a)
            })
            .unzip();
        // After a convolution nobody else reads, the affine map folds into its weights and
        // bias (as ONNX Runtime's Conv+BatchNormalization fusion does).
        if let Some(step) = self.fusable(&input) {
            let target = &mut self.steps[step];
            if let (Kind::Conv(conv), Act::None) = (&mut target.kind, target.act) {
                conv.fold_affine(&scale, &shift);
                let (src, shape, nwc) = self.dynamic_any(&input)?;
                let out = node.output.first().or_fallback()?;
                self.producer.insert(out.clone(), step);
                return self.alias_layout(node, src, shape, nwc);
            }
        }
        let (src, shape) = self.dynamic(&input)?;
        let kind = Kind::ChannelAffine {
            src,
            channels: shape[0] * channels,
            spatial: shape[2..].iter().product(),
            scale: (0..shape[0]).flat_map(|_| scale.iter().copied()).collect(),
            shift: (0..shape[0]).flat_map(|_| shift.iter().copied()).collect(),
        };
        self.push(node, kind, shape)
    }

    fn concat(&mut self, node: &NodeProto) -> Built<()> {
        let mut parts = Vec::with_capacity(node.input.len());
        let mut shapes = Vec::with_capacity(node.input.len());
        let mut any_dynamic = false;
        for name in &node.input {
            match self.val(name)? {
                Val::Dyn { src, shape, .. } => {
                    any_dynamic = true;
                    parts.push(src);
                    shapes.push(shape);
                }
                Val::Const(k) => {
                    parts.push(self.add_const(k.data));
                    shapes.push(k.shape);
                }
                Val::Labels(_) => return Err(Stop::Fallback),
            }
        }
        let Some(first) = shapes.first().cloned() else {
            return Err(Stop::Fallback);
        };
        if !any_dynamic {
            return Err(Stop::Fallback);
        }
        let rank = first.len() as i64;
        let axis = attr(node, "axis").map(|a| a.i).or_fallback()?;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return malformed("Concat axis is outside the inputs' rank");
        }
        let axis = axis as usize;
        let mut out = first.clone();
        out[axis] = 0;
        let mut chunks = Vec::with_capacity(shapes.len());
        for s in &shapes {
            if s.len() != first.len()
                || s.iter()
                    .zip(&first)
                    .enumerate()
                    .any(|(i, (a, b))| i != axis && a != b)
            {
                return malformed("Concat inputs differ outside the axis");
            }
            out[axis] += s[axis];
            chunks.push(s[axis..].iter().product::<usize>());
        }
        let outer = first[..axis].iter().product();
        let parts = parts.into_iter().zip(chunks).collect();
        self.push(node, Kind::Concat { outer, parts }, out)
    }
}

/// The shape `Reshape` gives `shape` with `target` (`0` copies a dim, one `-1` is inferred).
fn reshaped(shape: &[usize], target: &[i64]) -> Built<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            0 => out.push(*shape.get(i).or_fallback()?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => return malformed("Reshape target has an invalid dim"),
        }
    }
    let known = element_count(&out)?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return malformed("Reshape target does not divide the input");
        }
        out[i] = total / known;
    }
    if element_count(&out)? != total {
        return malformed("Reshape target has another element count than its input");
    }
    Ok(out)
}

/// Output length and leading pad of a 1-D window (convolution or pooling).
struct Window {
    l_out: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
}

impl Window {
    fn from_node(node: &NodeProto, l_in: usize, k: usize) -> Built<Self> {
        let one = |name: &str| -> Built<usize> {
            match attr_ints(node, name) {
                None => Ok(1),
                Some([v]) if *v >= 1 => Ok(*v as usize),
                Some(_) => malformed(format!("{} has an invalid `{name}`", node.op_type)),
            }
        };
        let (stride, dilation) = (one("strides")?, one("dilations")?);
        if k == 0 {
            return malformed(format!("{} has an empty kernel", node.op_type));
        }
        let span = (k - 1)
            .checked_mul(dilation)
            .and_then(|s| s.checked_add(1))
            .ok_or_else(|| Stop::Malformed("kernel span overflows".to_owned()))?;
        let auto_pad = attr_s(node, "auto_pad").unwrap_or(b"NOTSET");
        let (l_out, pad) = match auto_pad {
            b"NOTSET" => {
                let (begin, end) = match attr_ints(node, "pads") {
                    None => (0, 0),
                    Some([b, e]) if *b >= 0 && *e >= 0 => (*b as usize, *e as usize),
                    Some(_) => return malformed(format!("{} has invalid pads", node.op_type)),
                };
                // Pads wider than the window would let a whole output see only padding.
                if begin >= span || end >= span {
                    return Err(Stop::Fallback);
                }
                let padded = l_in
                    .checked_add(begin)
                    .and_then(|n| n.checked_add(end))
                    .ok_or_else(|| Stop::Malformed("pads overflow".to_owned()))?;
                if padded < span {
                    return malformed(format!("{} window is longer than its input", node.op_type));
                }
                ((padded - span) / stride + 1, begin)
            }
            b"VALID" => {
                if l_in < span {
                    return malformed(format!("{} window is longer than its input", node.op_type));
                }
                ((l_in - span) / stride + 1, 0)
            }
            // ONNX Runtime refuses dilation here: without a reference, tract takes that form.
            b"SAME_UPPER" | b"SAME_LOWER" if dilation != 1 => return Err(Stop::Fallback),
            b"SAME_UPPER" | b"SAME_LOWER" => {
                let l_out = l_in.div_ceil(stride);
                let total = ((l_out.saturating_sub(1)) * stride + span).saturating_sub(l_in);
                let begin = if auto_pad == b"SAME_UPPER" {
                    total / 2
                } else {
                    total - total / 2
                };
                if begin >= span || total - begin >= span {
                    return Err(Stop::Fallback);
                }
                (l_out, begin)
            }
            _ => return malformed(format!("{} has an unknown auto_pad", node.op_type)),
        };
        if l_out == 0 {
            return Err(Stop::Fallback);
        }
        Ok(Window {
            l_out,
            stride,
            dilation,
            pad,
        })
    }

    /// `[lo, hi)`: output positions whose taps all fall inside the input.
    fn interior(&self, l_in: usize, k: usize) -> (usize, usize) {
        let lo = self.pad.div_ceil(self.stride).min(self.l_out);
        let reach = (k - 1) * self.dilation;
        let hi = if l_in + self.pad > reach {
            ((l_in - 1 + self.pad - reach) / self.stride + 1).min(self.l_out)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// Decides whether the graph can be served natively and builds the evaluator if so.
///
/// `Ok(None)`: not a form this evaluator covers, tract takes it. `Err`: a graph that
/// contradicts itself, refused whichever runtime would run it.
pub(crate) fn plan(
    proto: &ModelProto,
    input_shape: &[usize],
    outputs: Option<&[&str]>,
) -> Result<Option<GraphPlan>, InferenceError> {
    match build(proto, input_shape, outputs) {
        Ok(mut plan) => {
            plan.graph.fma = avx2_kernels()?;
            Ok(Some(plan))
        }
        Err(Stop::Fallback) => Ok(None),
        Err(Stop::Malformed(why)) => Err(InferenceError::Load(format!("malformed graph: {why}"))),
    }
}

fn build(proto: &ModelProto, input_shape: &[usize], outputs: Option<&[&str]>) -> Built<GraphPlan> {
    let graph = proto.graph.as_ref().or_fallback()?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .or_fallback()?;
    if input_shape.is_empty() || input_shape.contains(&0) {
        return Err(Stop::Fallback);
    }
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let graph_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_str()))
        .collect();
    let [input] = graph_inputs.as_slice() else {
        return Err(Stop::Fallback);
    };
    let float_input = {
        use super::pb::type_proto::Value;
        input.r#type.as_ref().is_some_and(|t| {
            // TensorProto.DataType.FLOAT
            matches!(&t.value, Some(Value::TensorType(tensor)) if tensor.elem_type == 1)
        })
    };
    if !float_input {
        return Err(Stop::Fallback);
    }
    let wanted: Vec<&str> = match outputs {
        Some(names) => names.to_vec(),
        None => graph.output.iter().map(|o| o.name.as_str()).collect(),
    };
    if wanted.is_empty()
        || wanted
            .iter()
            .any(|w| !graph.output.iter().any(|o| o.name == *w))
    {
        return Err(Stop::Fallback);
    }

    // Nodes the requested outputs depend on (the graph is in topological order, as ONNX
    // requires; one that is not fails the forward pass below and goes to tract).
    let mut needed_names: std::collections::HashSet<&str> = wanted.iter().copied().collect();
    let mut needed = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node
            .output
            .iter()
            .any(|o| needed_names.contains(o.as_str()))
        {
            needed[i] = true;
            needed_names.extend(node.input.iter().map(String::as_str));
        }
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (node, _) in graph.node.iter().zip(&needed).filter(|(_, n)| **n) {
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for w in &wanted {
        *uses.entry((*w).to_owned()).or_default() += 1;
    }

    let mut b = Builder {
        inits,
        vals: HashMap::new(),
        producer: HashMap::new(),
        uses,
        steps: Vec::new(),
        consts: Vec::new(),
        buf_sizes: Vec::new(),
        opset,
    };
    b.vals.insert(
        input.name.clone(),
        Val::Dyn {
            src: Src::Input,
            shape: input_shape.to_vec(),
            nwc: false,
        },
    );
    for (node, _) in graph.node.iter().zip(&needed).filter(|(_, n)| **n) {
        b.node(node)?;
    }
    let mut out_bufs = Vec::with_capacity(wanted.len());
    let mut out_info = Vec::with_capacity(wanted.len());
    for w in &wanted {
        match b.val(w) {
            Ok(Val::Dyn {
                src: Src::Buf(buf),
                shape,
                ..
            }) => {
                out_bufs.push(Out::Float(buf));
                out_info.push(OutputFact {
                    name: (*w).to_owned(),
                    shape,
                    labels: false,
                });
            }
            Ok(Val::Labels(labels)) => {
                out_info.push(OutputFact {
                    name: (*w).to_owned(),
                    shape: labels.shape.clone(),
                    labels: true,
                });
                out_bufs.push(Out::Labels(labels));
            }
            // The input itself, a constant, or never computed: tract judges.
            _ => return Err(Stop::Fallback),
        }
    }
    Ok(GraphPlan {
        graph: NativeGraph {
            steps: b.steps,
            consts: b.consts,
            buf_sizes: b.buf_sizes,
            outputs: out_bufs,
            fma: fma_available(),
            pool: Mutex::new(Vec::new()),
        },
        input: input.name.clone(),
        outputs: out_info,
    })
}

/// Whether to run the AVX2 + FMA copy of the kernels: the CPU's answer, or
/// `VITALCORE_KERNELS` (see the module docs).
fn avx2_kernels() -> Result<bool, InferenceError> {
    choose_kernels(
        std::env::var("VITALCORE_KERNELS").ok().as_deref(),
        fma_available(),
    )
}

fn choose_kernels(wanted: Option<&str>, fma: bool) -> Result<bool, InferenceError> {
    match wanted.unwrap_or("auto") {
        "auto" | "" => Ok(fma),
        "portable" => Ok(false),
        "avx2" if fma => Ok(true),
        "avx2" => Err(InferenceError::Load(
            "VITALCORE_KERNELS=avx2, but this CPU lacks AVX2 or FMA".into(),
        )),
        other => Err(InferenceError::Load(format!(
            "VITALCORE_KERNELS={other}: expected auto, portable or avx2"
        ))),
    }
}

fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Fused multiply-add where the kernel copy is compiled for it, plain otherwise (a `mul_add`
/// without hardware FMA is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// aarch64 always has fused multiply-add (NEON `fmla`).
const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

impl NativeGraph {
    /// Whether output `output` holds integer labels (`None`: no such output).
    pub(crate) fn is_labels(&self, output: usize) -> Option<bool> {
        self.outputs
            .get(output)
            .map(|o| matches!(o, Out::Labels(_)))
    }

    /// Runs one input and lets `read` see every buffer.
    fn run<R>(&self, input: &[f32], read: impl FnOnce(&[Vec<f32>]) -> R) -> R {
        let mut bufs = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| self.buf_sizes.iter().map(|&n| vec![0f32; n]).collect());
        self.exec(input, &mut bufs);
        let result = read(&bufs);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(bufs);
        }
        result
    }

    /// Copies float output `output` into `out` (cleared first; its capacity is reused);
    /// `false` when it is not a float output.
    pub(crate) fn run_into(&self, input: &[f32], output: usize, out: &mut Vec<f32>) -> bool {
        let Some(&Out::Float(b)) = self.outputs.get(output) else {
            return false;
        };
        self.run(input, |bufs| {
            out.clear();
            out.extend_from_slice(&bufs[b]);
        });
        true
    }

    /// Label output `output` into `out` (cleared first); `false` when it is not one.
    pub(crate) fn run_labels(&self, input: &[f32], output: usize, out: &mut Vec<i64>) -> bool {
        let Some(Out::Labels(labels)) = self.outputs.get(output) else {
            return false;
        };
        self.run(input, |bufs| {
            labels.decide(self.read(input, bufs, labels.scores), out);
        });
        true
    }

    /// Every output, in order; label outputs as empty vectors (they are not float).
    pub(crate) fn run_all(&self, input: &[f32]) -> Vec<Vec<f32>> {
        self.run(input, |bufs| {
            self.outputs
                .iter()
                .map(|o| match o {
                    Out::Float(b) => bufs[*b].clone(),
                    Out::Labels(_) => Vec::new(),
                })
                .collect()
        })
    }

    fn read<'a>(&'a self, input: &'a [f32], bufs: &'a [Vec<f32>], src: Src) -> &'a [f32] {
        match src {
            Src::Input => input,
            Src::Buf(b) => &bufs[b],
            Src::Const(c) => &self.consts[c],
        }
    }

    fn exec(&self, input: &[f32], bufs: &mut [Vec<f32>]) {
        for step in &self.steps {
            // Taken out so the step can read other buffers while writing this one; a step
            // never reads its own destination.
            let mut y = std::mem::take(&mut bufs[step.dst]);
            {
                let read = |s: Src| -> &[f32] {
                    match s {
                        Src::Input => input,
                        Src::Buf(b) => &bufs[b],
                        Src::Const(c) => &self.consts[c],
                    }
                };
                match &step.kind {
                    // The activation is applied to each block before it is stored.
                    Kind::Conv(c) => c.run(read(c.src), &mut y, self.fma, step.act),
                    Kind::Dense(d) => d.run(read(d.src), &mut y, self.fma),
                    Kind::Unary(src) => step.act.map(read(*src), &mut y),
                    Kind::WithConst {
                        src,
                        konst,
                        op,
                        const_first,
                    } => {
                        let (x, k) = (read(*src), &self.consts[*konst]);
                        for ((y, &x), &k) in y.iter_mut().zip(x).zip(k) {
                            *y = if *const_first {
                                op.apply(k, x)
                            } else {
                                op.apply(x, k)
                            };
                        }
                    }
                    Kind::Binary { a, b, op } => {
                        for ((y, &a), &b) in y.iter_mut().zip(read(*a)).zip(read(*b)) {
                            *y = op.apply(a, b);
                        }
                    }
                    Kind::Pool(p) => p.run(read(p.src), &mut y),
                    Kind::GlobalPool {
                        src,
                        channels,
                        spatial,
                        max,
                        nwc: true,
                    } => {
                        let (x, per) = (read(*src), channels * spatial);
                        for (x, y) in x.chunks_exact(per).zip(y.chunks_exact_mut(*channels)) {
                            global_pool_nwc(x, y, *channels, *spatial, *max);
                        }
                    }
                    Kind::ToNcw { src, channels, len } => {
                        let (x, per) = (read(*src), channels * len);
                        for (x, y) in x.chunks_exact(per).zip(y.chunks_exact_mut(per)) {
                            for (t, row) in x.chunks_exact(*channels).enumerate() {
                                for (c, &v) in row.iter().enumerate() {
                                    y[c * len + t] = v;
                                }
                            }
                        }
                    }
                    Kind::GlobalPool {
                        src,
                        channels,
                        spatial,
                        max,
                        nwc: false,
                    } => {
                        let x = read(*src);
                        for (c, y) in y.iter_mut().enumerate().take(*channels) {
                            let row = &x[c * spatial..(c + 1) * spatial];
                            *y = if *max {
                                row.iter().copied().fold(f32::MIN, |m, v| {
                                    if v > m || v.is_nan() {
                                        v
                                    } else {
                                        m
                                    }
                                })
                            } else {
                                row.iter().sum::<f32>() / *spatial as f32
                            };
                        }
                    }
                    Kind::ChannelAffine {
                        src,
                        channels,
                        spatial,
                        scale,
                        shift,
                    } => {
                        let x = read(*src);
                        for c in 0..*channels {
                            let (a, b) = (scale[c], shift[c]);
                            let range = c * spatial..(c + 1) * spatial;
                            for (y, &x) in y[range.clone()].iter_mut().zip(&x[range]) {
                                *y = x * a + b;
                            }
                        }
                    }
                    Kind::Softmax { src, cols } => {
                        for (y, x) in y
                            .chunks_exact_mut(*cols)
                            .zip(read(*src).chunks_exact(*cols))
                        {
                            softmax(x, y);
                        }
                    }
                    Kind::Scale {
                        src,
                        cols,
                        offset,
                        scale,
                    } => {
                        for (y, x) in y
                            .chunks_exact_mut(*cols)
                            .zip(read(*src).chunks_exact(*cols))
                        {
                            for j in 0..*cols {
                                y[j] = (x[j] - offset[j]) * scale[j];
                            }
                        }
                    }
                    Kind::Normalize { src, cols, norm } => {
                        for (y, x) in y
                            .chunks_exact_mut(*cols)
                            .zip(read(*src).chunks_exact(*cols))
                        {
                            normalize(*norm, x, y);
                        }
                    }
                    Kind::Concat { outer, parts } => {
                        let mut at = 0;
                        for o in 0..*outer {
                            for &(src, chunk) in parts {
                                let x = read(src);
                                y[at..at + chunk].copy_from_slice(&x[o * chunk..(o + 1) * chunk]);
                                at += chunk;
                            }
                        }
                    }
                }
            }
            if !matches!(step.kind, Kind::Conv(_) | Kind::Unary(_)) {
                step.act.apply(&mut y);
            }
            bufs[step.dst] = y;
        }
    }
}

/// Global pooling of a channels-last `[spatial][channels]` tensor: whole rows of channels at a
/// time, so the loop vectorizes across channels.
fn global_pool_nwc(x: &[f32], y: &mut [f32], channels: usize, spatial: usize, max: bool) {
    let rows = x.chunks_exact(channels).take(spatial);
    if max {
        y.fill(f32::MIN);
        for row in rows {
            for (m, &v) in y.iter_mut().zip(row) {
                // NaN, once met, stays: `v > NaN` is false.
                if v > *m || v.is_nan() {
                    *m = v;
                }
            }
        }
    } else {
        y.fill(0.0);
        for row in rows {
            for (m, &v) in y.iter_mut().zip(row) {
                *m += v;
            }
        }
        let n = spatial as f32;
        y.iter_mut().for_each(|v| *v /= n);
    }
}

/// ONNX Runtime's `Normalizer` on one row: divided by its largest value, the sum of its
/// absolute values, or (L2) `sign(x) sqrt(x^2 / sum x^2)`; a zero norm leaves the row as is.
fn normalize(norm: Norm, x: &[f32], y: &mut [f32]) {
    match norm {
        Norm::Max => {
            let max = x.iter().copied().fold(f32::MIN, f32::max);
            if max != 0.0 {
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = x / max);
            } else {
                y.copy_from_slice(x);
            }
        }
        Norm::L1 => {
            let sum: f32 = x.iter().map(|v| v.abs()).sum();
            if sum != 0.0 {
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = x / sum);
            } else {
                y.copy_from_slice(x);
            }
        }
        Norm::L2 => {
            let sum: f32 = x.iter().map(|v| v * v).sum();
            if sum != 0.0 {
                y.iter_mut().zip(x).for_each(|(y, &x)| {
                    let r = (x * x / sum).sqrt();
                    *y = if x < 0.0 { -r } else { r };
                });
            } else {
                y.copy_from_slice(x);
            }
        }
    }
}

fn softmax(x: &[f32], y: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - max).exp();
        sum += *y;
    }
    let scale = 1.0 / sum;
    y.iter_mut().for_each(|v| *v *= scale);
}

impl Pool {
    fn run(&self, x: &[f32], y: &mut [f32]) {
        for c in 0..self.channels {
            let row = &x[c * self.l_in..(c + 1) * self.l_in];
            for t in 0..self.l_out {
                let mut acc = if self.max { f32::MIN } else { 0.0 };
                let mut count = 0usize;
                for kk in 0..self.k {
                    let pos = t * self.stride + kk * self.dilation;
                    if pos < self.pad || pos - self.pad >= self.l_in {
                        continue;
                    }
                    let v = row[pos - self.pad];
                    count += 1;
                    if self.max {
                        if v > acc || v.is_nan() {
                            acc = v;
                        }
                    } else {
                        acc += v;
                    }
                }
                y[c * self.l_out + t] = if self.max {
                    acc
                } else {
                    let n = if self.count_include_pad {
                        self.k
                    } else {
                        count.max(1)
                    };
                    acc / n as f32
                };
            }
        }
    }
}

impl Dense {
    fn run(&self, x: &[f32], y: &mut [f32], fma: bool) {
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: `fma` is true only when the CPU reported AVX2 and FMA at load.
            #[allow(unsafe_code)]
            unsafe {
                dense_avx2(self, x, y)
            };
            return;
        }
        let _ = fma;
        dense_kernel::<BASELINE_FMA>(self, x, y);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn dense_avx2(d: &Dense, x: &[f32], y: &mut [f32]) {
    dense_kernel::<true>(d, x, y);
}

#[inline(always)]
fn dense_kernel<const FMA: bool>(d: &Dense, x: &[f32], y: &mut [f32]) {
    let n = d.n;
    for m in 0..d.rows {
        let yrow = &mut y[m * n..(m + 1) * n];
        if d.bias.is_empty() {
            yrow.fill(0.0);
        } else {
            yrow.copy_from_slice(&d.bias[m * n..(m + 1) * n]);
        }
        for kk in 0..d.k {
            let a = if d.trans_a {
                x[kk * d.rows + m]
            } else {
                x[m * d.k + kk]
            };
            for (yv, &wv) in yrow.iter_mut().zip(&d.w[kk * n..(kk + 1) * n]) {
                *yv = madd::<FMA>(a, wv, *yv);
            }
        }
    }
}

impl Conv {
    /// Each batch element on its own slice (the layouts are per element).
    fn run(&self, x: &[f32], y: &mut [f32], fma: bool, act: Act) {
        let (per_in, per_out) = (self.c_in * self.l_in, self.c_out * self.l_out);
        for (x, y) in x.chunks_exact(per_in).zip(y.chunks_exact_mut(per_out)) {
            self.run_one(x, y, fma, act);
        }
    }

    fn run_one(&self, x: &[f32], y: &mut [f32], fma: bool, act: Act) {
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: `fma` is true only when the CPU reported AVX2 and FMA at load.
            #[allow(unsafe_code)]
            unsafe {
                conv_avx2(self, x, y, act)
            };
            return;
        }
        let _ = fma;
        conv_kernel::<BASELINE_FMA>(self, x, y, act);
    }
}

impl Conv {
    /// Folds a per-output-channel `y * scale + shift` into the packed weights and the bias.
    fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        let per_block = self.c_in * self.k * self.block;
        for co in 0..self.c_out {
            let (b, j) = (co / self.block, co % self.block);
            for i in 0..self.c_in * self.k {
                self.w[b * per_block + i * self.block + j] *= scale[co];
            }
            self.bias[co] = self.bias[co] * scale[co] + shift[co];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn conv_avx2(c: &Conv, x: &[f32], y: &mut [f32], act: Act) {
    conv_kernel::<true>(c, x, y, act);
}

#[inline(always)]
fn conv_kernel<const FMA: bool>(c: &Conv, x: &[f32], y: &mut [f32], act: Act) {
    if c.block == 16 {
        conv_blocks::<16, FMA>(c, x, y, act);
    } else {
        conv_blocks::<8, FMA>(c, x, y, act);
    }
}

/// Output positions computed together: each weight load feeds this many multiply-adds per lane.
const TILE: usize = 4;

#[inline(always)]
fn conv_blocks<const C: usize, const FMA: bool>(c: &Conv, x: &[f32], y: &mut [f32], act: Act) {
    let (k, s, d, pad) = (c.k, c.stride, c.dilation, c.pad);
    let (xs_c, xs_t) = c.in_strides;
    let per_block = c.c_in * k * C;
    let (lo, hi) = c.interior;
    for (blk, w) in c.w.chunks_exact(per_block).enumerate() {
        let mut bias = [0f32; C];
        bias.copy_from_slice(&c.bias[blk * C..(blk + 1) * C]);
        let valid = C.min(c.c_out - blk * C);
        let first = blk * C;
        // Edges: taps that fall in the padding are skipped.
        for t in (0..lo).chain(hi..c.l_out) {
            let mut acc = bias;
            for ci in 0..c.c_in {
                for kk in 0..k {
                    let pos = t * s + kk * d;
                    if pos < pad || pos - pad >= c.l_in {
                        continue;
                    }
                    let xv = x[ci * xs_c + (pos - pad) * xs_t];
                    let wv = &w[(ci * k + kk) * C..][..C];
                    for j in 0..C {
                        acc[j] = madd::<FMA>(xv, wv[j], acc[j]);
                    }
                }
            }
            store_block(y, t * c.c_out + first, valid, acc, act);
        }
        let mut t = lo;
        while t + TILE <= hi {
            let acc = tile::<C, TILE, FMA>(c, x, t * s - pad, w, &bias);
            for (p, a) in acc.into_iter().enumerate() {
                store_block(y, (t + p) * c.c_out + first, valid, a, act);
            }
            t += TILE;
        }
        while t < hi {
            let [a] = tile::<C, 1, FMA>(c, x, t * s - pad, w, &bias);
            store_block(y, t * c.c_out + first, valid, a, act);
            t += 1;
        }
    }
}

/// Channels-last: one position's block of output channels is contiguous, so a whole block is
/// one or two vector stores, after the fused activation.
#[inline(always)]
fn store_block<const C: usize>(y: &mut [f32], at: usize, valid: usize, v: [f32; C], act: Act) {
    if valid == C {
        act.map(&v, &mut y[at..at + C]);
    } else {
        act.map(&v[..valid], &mut y[at..at + valid]);
    }
}

/// The interior tile: the explicit AVX2 one in the AVX2 copy of the kernel (LLVM's own
/// vectorization of the portable tile was fragile there: shuffles and spills), else portable.
#[inline(always)]
fn tile<const C: usize, const T: usize, const FMA: bool>(
    c: &Conv,
    x: &[f32],
    base: usize,
    w: &[f32],
    bias: &[f32; C],
) -> [[f32; C]; T] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: on x86_64 `FMA = true` is only instantiated under `conv_avx2`, which runs only
        // when AVX2 and FMA were detected at load.
        #[allow(unsafe_code)]
        return unsafe { conv_tile_avx2::<C, T>(c, x, base, w, bias) };
    }
    conv_tile::<C, T, FMA>(c, x, base, w, bias)
}

/// [`conv_tile`] with explicit AVX2/FMA intrinsics: per position `C / 8` accumulator
/// registers, one broadcast input value per tap, one weight load per tap shared by `T`
/// positions. Every index is checked through a slice before any pointer is formed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(unsafe_code)]
unsafe fn conv_tile_avx2<const C: usize, const T: usize>(
    c: &Conv,
    x: &[f32],
    base: usize,
    w: &[f32],
    bias: &[f32; C],
) -> [[f32; C]; T] {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let halves = C / 8;
    let (k, s, d) = (c.k, c.stride, c.dilation);
    let (xs_c, xs_t) = c.in_strides;
    let step = s * xs_t;
    let mut acc: [[__m256; 2]; T] = [[_mm256_setzero_ps(); 2]; T];
    for a in acc.iter_mut() {
        for (h, r) in a.iter_mut().enumerate().take(halves) {
            let b = &bias[h * 8..h * 8 + 8];
            // SAFETY: `b` is 8 floats.
            *r = unsafe { _mm256_loadu_ps(b.as_ptr()) };
        }
    }
    for ci in 0..c.c_in {
        let wci = &w[ci * k * C..][..k * C];
        for kk in 0..k {
            let wv = &wci[kk * C..][..C];
            // SAFETY: `wv` is `C` floats, `C` is 8 or 16.
            let w0 = unsafe { _mm256_loadu_ps(wv.as_ptr()) };
            let w1 = if halves == 2 {
                // SAFETY: as above, the second 8.
                unsafe { _mm256_loadu_ps(wv[8..].as_ptr()) }
            } else {
                w0
            };
            let at = ci * xs_c + (base + kk * d) * xs_t;
            let xs = &x[at..=at + (T - 1) * step];
            for (p, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(xs[p * step]);
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                if halves == 2 {
                    a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
                }
            }
        }
    }
    let mut out = [[0f32; C]; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (h, r) in a.iter().enumerate().take(halves) {
            let dst = &mut o[h * 8..h * 8 + 8];
            // SAFETY: `dst` is 8 floats.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), *r) };
        }
    }
    out
}

/// `T` consecutive interior output positions whose first tap reads input position `base`, one
/// block of `C` output channels.
#[inline(always)]
fn conv_tile<const C: usize, const T: usize, const FMA: bool>(
    c: &Conv,
    x: &[f32],
    base: usize,
    w: &[f32],
    bias: &[f32; C],
) -> [[f32; C]; T] {
    let (k, s, d) = (c.k, c.stride, c.dilation);
    let (xs_c, xs_t) = c.in_strides;
    let step = s * xs_t;
    let mut acc = [*bias; T];
    for ci in 0..c.c_in {
        let wci = &w[ci * k * C..][..k * C];
        for kk in 0..k {
            let wv = &wci[kk * C..][..C];
            let at = ci * xs_c + (base + kk * d) * xs_t;
            for (p, acc) in acc.iter_mut().enumerate() {
                let xv = x[at + p * step];
                for j in 0..C {
                    acc[j] = madd::<FMA>(xv, wv[j], acc[j]);
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(attrs: Vec<AttributeProto>, l_in: usize, k: usize) -> Built<Window> {
        let node = NodeProto {
            op_type: "Conv".into(),
            attribute: attrs,
            ..Default::default()
        };
        Window::from_node(&node, l_in, k)
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 3,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// Output lengths and leading pads from the ONNX operator definitions, computed by hand.
    #[test]
    fn window_lengths_follow_the_operator_definition() {
        let w = window(vec![ints("strides", &[2]), ints("pads", &[3, 3])], 1920, 7).expect("valid");
        // floor((1920 + 6 - 7) / 2) + 1
        assert_eq!((w.l_out, w.pad), (960, 3));
        // Position 2 is the first whose first tap (2 * 2 - 3) is inside, 958 the last whose
        // last tap (958 * 2 - 3 + 6 = 1919) is.
        assert_eq!(w.interior(1920, 7), (2, 959));
        let w = window(
            vec![string("auto_pad", "VALID"), ints("dilations", &[3])],
            10,
            3,
        )
        .expect("valid");
        // span 7: positions 0..=3
        assert_eq!((w.l_out, w.pad), (4, 0));
        // ceil(10 / 3) = 4 outputs; total pad (4 - 1) * 3 + 4 - 10 = 3
        let upper = window(
            vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[3])],
            10,
            4,
        )
        .expect("valid");
        assert_eq!((upper.l_out, upper.pad), (4, 1));
        let lower = window(
            vec![string("auto_pad", "SAME_LOWER"), ints("strides", &[3])],
            10,
            4,
        )
        .expect("valid");
        assert_eq!((lower.l_out, lower.pad), (4, 2));
        assert!(matches!(
            window(vec![ints("strides", &[0])], 10, 3),
            Err(Stop::Malformed(_))
        ));
        assert!(matches!(
            window(vec![string("auto_pad", "SIDEWAYS")], 10, 3),
            Err(Stop::Malformed(_))
        ));
        assert!(matches!(window(vec![], 2, 3), Err(Stop::Malformed(_))));
    }

    fn tensor(name: &str, dims: &[i64], n: usize) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            float_data: (0..n).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect(),
            ..Default::default()
        }
    }

    fn graph_of(
        nodes: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        input_dims: usize,
        opset: i64,
    ) -> ModelProto {
        use crate::inference::pb::{
            tensor_shape_proto::Dimension, type_proto, GraphProto, OperatorSetIdProto,
            TensorShapeProto, TypeProto, ValueInfoProto,
        };
        let input = ValueInfoProto {
            name: "x".into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto {
                        dim: vec![Dimension::default(); input_dims],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: inits,
                input: vec![input],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    /// Loads and, when served natively, runs once: output lengths match the planned shapes.
    fn load_and_run(model: &ModelProto, shape: &[usize]) -> Result<bool, InferenceError> {
        let Some(plan) = plan(model, shape, None)? else {
            return Ok(false);
        };
        let input: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| (i % 5) as f32 - 2.0)
            .collect();
        let outputs = plan.graph.run_all(&input);
        for (out, fact) in outputs.iter().zip(&plan.outputs).filter(|(_, f)| !f.labels) {
            assert_eq!(out.len(), fact.shape.iter().product::<usize>());
        }
        Ok(true)
    }

    #[test]
    fn graphs_that_contradict_themselves_are_typed_errors() {
        let conv = |w_dims: &[i64], attrs| {
            let n = w_dims.iter().product::<i64>().max(0) as usize;
            graph_of(
                vec![node("Conv", &["x", "w"], "y", attrs)],
                vec![tensor("w", w_dims, n)],
                3,
                17,
            )
        };
        let refused = |m: &ModelProto, shape: &[usize]| match plan(m, shape, None) {
            Err(InferenceError::Load(why)) => why,
            other => panic!("expected a typed load error, got {other:?}"),
        };
        assert!(refused(&conv(&[4, 2, 3], vec![]), &[1, 3, 20]).contains("input channels"));
        assert!(refused(
            &conv(&[4, 3, 3], vec![ints("kernel_shape", &[5])]),
            &[1, 3, 20]
        )
        .contains("kernel_shape"));
        assert!(
            refused(&conv(&[4, 3, 3], vec![ints("pads", &[-1, 0])]), &[1, 3, 20]).contains("pads")
        );
        assert!(
            refused(&conv(&[4, 3, 3], vec![ints("strides", &[0])]), &[1, 3, 20])
                .contains("strides")
        );
        assert!(refused(&conv(&[4, 3, 9], vec![]), &[1, 3, 4]).contains("longer"));
        let mut short = conv(&[4, 3, 3], vec![]);
        if let Some(g) = short.graph.as_mut() {
            g.initializer[0].float_data.pop();
        }
        assert!(refused(&short, &[1, 3, 20]).contains("values"));
        // Covered elsewhere: another group count, an unknown operator.
        let grouped = conv(&[4, 1, 3], vec![int("group", 3)]);
        assert!(matches!(plan(&grouped, &[1, 3, 20], None), Ok(None)));
        assert!(load_and_run(&conv(&[4, 3, 3], vec![]), &[2, 3, 20]).expect("a batch of 2"));
        let other = graph_of(vec![node("Erf", &["x"], "y", vec![])], vec![], 2, 17);
        assert!(matches!(plan(&other, &[1, 4], None), Ok(None)));
        assert!(load_and_run(&conv(&[4, 3, 3], vec![]), &[1, 3, 20]).expect("valid"));
    }

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i: v,
            ..Default::default()
        }
    }

    proptest::proptest! {
        /// Arbitrary weight shapes and attributes (any pads, strides, dilations, kernel shapes,
        /// auto_pad strings, groups, axes, bias lengths) load as a plan that runs, a fallback to
        /// tract, or a typed error: never a panic.
        #[test]
        fn arbitrary_attributes_and_weight_shapes_never_panic(
            c_in in 1usize..4,
            len in 1usize..24,
            w_dims in proptest::collection::vec(0i64..5, 0..5),
            bias_len in proptest::option::of(0usize..6),
            pads in proptest::option::of(proptest::collection::vec(-2i64..6, 0..4)),
            strides in proptest::option::of(proptest::collection::vec(-1i64..4, 0..3)),
            dilations in proptest::option::of(proptest::collection::vec(-1i64..4, 0..3)),
            kernel in proptest::option::of(proptest::collection::vec(-1i64..6, 0..3)),
            auto_pad in 0usize..6,
            group in 0i64..3,
            pool in 0usize..4,
            pool_k in -1i64..5,
            flatten_axis in -4i64..5,
            gemm_dims in proptest::collection::vec(0i64..6, 0..4),
            trans_b in 0i64..2,
            softmax_axis in -3i64..3,
            opset in 9i64..18,
        ) {
            let mut conv_attrs = vec![int("group", group)];
            for (name, v) in [("pads", &pads), ("strides", &strides), ("dilations", &dilations), ("kernel_shape", &kernel)] {
                if let Some(v) = v {
                    conv_attrs.push(ints(name, v));
                }
            }
            const PADS: [&str; 6] = ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", "", "BOTH"];
            if auto_pad > 0 {
                conv_attrs.push(string("auto_pad", PADS[auto_pad]));
            }
            let w_n = w_dims.iter().product::<i64>() as usize;
            let mut inits = vec![tensor("w", &w_dims, w_n)];
            let mut conv_inputs = vec!["x", "w"];
            if let Some(b) = bias_len {
                inits.push(tensor("b", &[b as i64], b));
                conv_inputs.push("b");
            }
            let mut nodes = vec![node("Conv", &conv_inputs, "c", conv_attrs), node("Relu", &["c"], "r", vec![])];
            let pooled = match pool {
                0 => "r",
                1 => {
                    nodes.push(node("MaxPool", &["r"], "p", vec![ints("kernel_shape", &[pool_k])]));
                    "p"
                }
                2 => {
                    nodes.push(node("AveragePool", &["r"], "p", vec![ints("kernel_shape", &[pool_k]), ints("pads", &[1, 1])]));
                    "p"
                }
                _ => {
                    nodes.push(node("GlobalAveragePool", &["r"], "p", vec![]));
                    "p"
                }
            };
            nodes.push(node("Flatten", &[pooled], "f", vec![int("axis", flatten_axis)]));
            let g_n = gemm_dims.iter().product::<i64>() as usize;
            inits.push(tensor("gw", &gemm_dims, g_n));
            nodes.push(node("Gemm", &["f", "gw"], "g", vec![int("transB", trans_b)]));
            nodes.push(node("Softmax", &["g"], "y", vec![int("axis", softmax_axis)]));
            let model = graph_of(nodes, inits, 3, opset);
            match load_and_run(&model, &[1, c_in, len]) {
                Ok(_) | Err(InferenceError::Load(_)) => {}
                Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }

    /// The portable kernel copy (what a CPU without AVX2/FMA runs) computes what the AVX2 copy
    /// computes, on convolutions of 1 to 20 output channels (partial blocks of 8 and 16) and
    /// every padding mode, followed by a dense head.
    #[test]
    fn portable_and_avx2_kernels_agree() {
        for (c_out, k, stride, auto_pad) in [
            (1, 1, 1, "NOTSET"),
            (5, 3, 2, "SAME_UPPER"),
            (8, 7, 2, "NOTSET"),
            (11, 4, 3, "SAME_LOWER"),
            (16, 5, 1, "VALID"),
            (20, 2, 2, "NOTSET"),
        ] {
            let (c_in, len) = (3, 37);
            let model = graph_of(
                vec![
                    node(
                        "Conv",
                        &["x", "w", "b"],
                        "c",
                        vec![
                            ints("strides", &[stride]),
                            string("auto_pad", auto_pad),
                            // ONNX Runtime (and so this evaluator) has no dilated SAME padding.
                            ints(
                                "dilations",
                                &[if auto_pad.starts_with("SAME") { 1 } else { 2 }],
                            ),
                        ],
                    ),
                    node("Relu", &["c"], "r", vec![]),
                    node("Conv", &["r", "w2"], "c2", vec![]),
                    node("GlobalAveragePool", &["c2"], "g", vec![]),
                    node("Flatten", &["g"], "f", vec![]),
                    node("MatMul", &["f", "m"], "y", vec![]),
                ],
                vec![
                    tensor("w", &[c_out, c_in, k], (c_out * c_in * k) as usize),
                    tensor("b", &[c_out], c_out as usize),
                    tensor("w2", &[4, c_out, 1], 4 * c_out as usize),
                    tensor("m", &[4, 3], 12),
                ],
                3,
                17,
            );
            let mut plan = plan(&model, &[1, c_in as usize, len], None)
                .expect("valid")
                .expect("served natively");
            let input: Vec<f32> = (0..c_in as usize * len)
                .map(|i| ((i * 7919) % 13) as f32 * 0.3 - 1.7)
                .collect();
            plan.graph.fma = false;
            let portable = plan.graph.run_all(&input);
            plan.graph.fma = fma_available();
            let native = plan.graph.run_all(&input);
            assert_eq!(portable[0].len(), 3);
            for (a, b) in portable[0].iter().zip(&native[0]) {
                assert!((a - b).abs() <= 1e-5, "{c_out} {k} {auto_pad}: {a} vs {b}");
            }
        }
    }

    /// `VITALCORE_KERNELS`: what each value selects, and a request this CPU cannot honour (or
    /// a misspelling) is an error at load, not a silent run of the other copy.
    #[test]
    fn kernel_choice_follows_vitalcore_kernels() {
        for fma in [false, true] {
            assert_eq!(choose_kernels(None, fma).ok(), Some(fma));
            assert_eq!(choose_kernels(Some("auto"), fma).ok(), Some(fma));
            assert_eq!(choose_kernels(Some("portable"), fma).ok(), Some(false));
            assert!(choose_kernels(Some("avx512"), fma).is_err());
        }
        assert_eq!(choose_kernels(Some("avx2"), true).ok(), Some(true));
        let refused = choose_kernels(Some("avx2"), false).expect_err("no AVX2 here");
        assert!(refused.to_string().contains("lacks AVX2"), "{refused}");
    }

    #[test]
    fn broadcast_follows_numpy_and_never_grows_the_output() {
        let k = Konst {
            data: vec![1.0, 2.0],
            shape: vec![2, 1],
        };
        assert_eq!(
            broadcast_to(&k, &[1, 2, 3]),
            Some(vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
        );
        assert_eq!(broadcast_to(&k, &[2]), None);
        assert_eq!(broadcast_to(&k, &[3, 1]), None);
    }
}
