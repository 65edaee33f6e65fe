//! [`OnnxModel`]: the native evaluators and tract behind our type. Load from bytes, pin the
//! input fact, optimize once, share the plan across threads.
//!
//! Without the `tract` feature only the native evaluators exist: a model they do not cover is
//! refused at load with [`InferenceError::NeedsTract`].

#[cfg(feature = "tract")]
use std::sync::{Arc, Mutex};

#[cfg(feature = "tract")]
use tract_onnx::prelude::*;
#[cfg(feature = "tract")]
use tract_onnx::tract_core::model::typed::TypedSimpleState;

use super::error::InferenceError;
#[cfg(feature = "tract")]
use super::fixup;
use super::graph::{self, NativeGraph};
use super::pb;
use super::trees::{self, Port, TreeClassifier};

#[cfg(feature = "tract")]
type Plan = Arc<TypedRunnableModel>;

/// Name, element type and shape of one model input or output, as the optimized plan sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    /// ONNX tensor name.
    pub name: String,
    /// Element type (`"F32"`, `"I64"`, ...).
    pub datum_type: String,
    /// Dimensions; symbolic ones (dynamic batch) as their symbol.
    pub shape: Vec<String>,
}

/// Facts about an ONNX file gathered without running it: the declared input/output facts and
/// the operators this engine does not implement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OnnxInspection {
    /// Inputs as declared in the file (dynamic dims as symbols).
    pub inputs: Vec<TensorInfo>,
    /// Outputs as declared in the file.
    pub outputs: Vec<TensorInfo>,
    /// Operator types (with domain when not the default) this build cannot run: those tract has
    /// no implementation of or, in a build without tract, those the native evaluators do not
    /// cover. Empty when the model can load.
    pub unsupported_operators: Vec<String>,
    /// Compatibility rewrites the loader applies before parsing for tract (see `fixup`; none
    /// without tract).
    pub rewrites: Vec<String>,
}

/// Which evaluator runs a loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// tract's optimized plan (every model that is not served natively; only in builds with
    /// the `tract` feature).
    Tract,
    /// The SDK's own evaluator for a graph whose work is one ONNX-ML `TreeEnsembleClassifier`
    /// or `TreeEnsembleRegressor`: flat node tables built once at load, ONNX Runtime's
    /// semantics, no allocation per prediction.
    NativeTrees,
    /// The SDK's own evaluator for small feed-forward float graphs (1-D convolutions, dense
    /// layers, pooling, activations, softmax, scikit-learn's `LinearClassifier`, `Scaler` and
    /// `Normalizer`) and their label branch (`ArgMax`, `ArrayFeatureExtractor`): direct
    /// convolution kernels with weights packed once at load, buffers sized at load, no
    /// allocation per prediction.
    NativeGraph,
}

impl Backend {
    /// Short name (`"tract"`, `"native_trees"`), as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::NativeTrees => "native_trees",
            Backend::NativeGraph => "native_graph",
        }
    }
}

enum Exec {
    #[cfg(feature = "tract")]
    Tract {
        plan: Plan,
        pool: Mutex<Vec<TypedSimpleState>>,
    },
    Trees {
        trees: TreeClassifier,
        ports: Vec<Port>,
    },
    Graph(NativeGraph),
}

/// An ONNX model prepared for inference on one pinned input shape.
///
/// Cheap to share: clone the `Arc` it is usually held in. On tract, each call borrows a
/// reusable execution state from a small pool, so concurrent callers never wait on each other's
/// computation and a steady caller allocates no new state per call; the native tree evaluator
/// holds no per-call state at all.
pub struct OnnxModel {
    exec: Exec,
    input_shape: Vec<usize>,
    input_len: usize,
    input: TensorInfo,
    outputs: Vec<TensorInfo>,
    rewrites: Vec<&'static str>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("backend", &self.backend())
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// Decodes with tract's own protobuf types, which the compatibility rewrites and tract's parser
/// work on.
#[cfg(feature = "tract")]
fn tract_decode(bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto, InferenceError> {
    let mut reader = bytes;
    tract_onnx::onnx()
        .proto_model_for_read(&mut reader)
        .map_err(|_| InferenceError::Decode)
}

#[cfg(feature = "tract")]
fn unsupported(proto: &tract_onnx::pb::ModelProto) -> Vec<String> {
    let known = tract_onnx::onnx().op_register.0;
    let mut missing: Vec<String> = Vec::new();
    let mut visit = |graph: &tract_onnx::pb::GraphProto| {
        for node in &graph.node {
            if !known.contains_key(&node.op_type) {
                let name = if node.domain.is_empty() || node.domain == "ai.onnx" {
                    node.op_type.clone()
                } else {
                    format!("{}:{}", node.domain, node.op_type)
                };
                if !missing.contains(&name) {
                    missing.push(name);
                }
            }
        }
    };
    if let Some(g) = proto.graph.as_ref() {
        visit(g);
    }
    missing
}

#[cfg(feature = "tract")]
fn info_of(model: &TypedModel, outlet: OutletId) -> Result<TensorInfo, InferenceError> {
    let fact = model.outlet_fact(outlet).map_err(InferenceError::load)?;
    let name = model
        .outlet_label(outlet)
        .map(str::to_owned)
        .unwrap_or_else(|| model.node(outlet.node).name.clone());
    Ok(TensorInfo {
        name,
        datum_type: format!("{:?}", fact.datum_type),
        shape: fact.shape.iter().map(|d| d.to_string()).collect(),
    })
}

fn value_info(v: &pb::ValueInfoProto) -> TensorInfo {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Type;
    let tensor = v.r#type.as_ref().and_then(|t| match &t.value {
        Some(Type::TensorType(tensor)) => Some(tensor),
        _ => None,
    });
    let datum_type = tensor
        .and_then(|t| pb::tensor_proto::DataType::try_from(t.elem_type).ok())
        .map_or_else(|| "?".to_owned(), |d| d.as_str_name().to_owned());
    // Read from the file itself: a symbolic (dynamic batch) dimension stays its symbol, which
    // tract's inference facts would not report once any dimension is open.
    let shape = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(Dim::DimValue(n)) => n.to_string(),
                    Some(Dim::DimParam(p)) if !p.is_empty() => p.clone(),
                    _ => "?".to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    TensorInfo {
        name: v.name.clone(),
        datum_type,
        shape,
    }
}

/// Declared graph inputs (initializers listed as inputs by old exporters excluded) and outputs.
fn declared_io(proto: &pb::ModelProto) -> (Vec<TensorInfo>, Vec<TensorInfo>) {
    let Some(graph) = proto.graph.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let inputs = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .map(value_info)
        .collect();
    let outputs = graph.output.iter().map(value_info).collect();
    (inputs, outputs)
}

/// Refuses an input shape that contradicts the model's declared input (fixed dims differ, or
/// another rank).
fn check_declared_shape(
    proto: &pb::ModelProto,
    input_shape: &[usize],
) -> Result<(), InferenceError> {
    let (declared_inputs, _) = declared_io(proto);
    let declared = declared_inputs
        .into_iter()
        .next()
        .ok_or(InferenceError::InputCount(0))?;
    if !declared.shape.is_empty()
        && (declared.shape.len() != input_shape.len()
            || declared
                .shape
                .iter()
                .zip(input_shape)
                .any(|(d, &want)| d.parse::<usize>().is_ok_and(|fixed| fixed != want)))
    {
        return Err(InferenceError::InputShape {
            expected: format!("[{}]", declared.shape.join(",")),
            got: input_shape.to_vec(),
        });
    }
    Ok(())
}

/// Reads an ONNX file's declared facts and the operators this build cannot run, without
/// preparing it.
pub fn inspect(bytes: &[u8]) -> Result<OnnxInspection, InferenceError> {
    let proto = pb::decode(bytes)?;
    let (inputs, outputs) = declared_io(&proto);
    let (unsupported_operators, rewrites) = inspect_general(bytes, &proto, &inputs)?;
    Ok(OnnxInspection {
        inputs,
        outputs,
        unsupported_operators,
        rewrites,
    })
}

/// Whether the native evaluators serve the model at a batch of one, its input width read from
/// the declared input.
fn native_at_declared_width(
    proto: &pb::ModelProto,
    inputs: &[TensorInfo],
) -> Result<bool, InferenceError> {
    // Symbolic dimensions (the batch) are pinned to 1, as `Model` pins them.
    let Some(declared) = inputs.first() else {
        return Ok(false);
    };
    let shape: Vec<usize> = declared
        .shape
        .iter()
        .map(|d| d.parse::<usize>().unwrap_or(1))
        .collect();
    if shape.is_empty() {
        return Ok(false);
    }
    Ok(trees::plan(proto, &shape, None)?.is_some() || graph::plan(proto, &shape, None)?.is_some())
}

/// Operators tract lacks and the rewrites it needs.
#[cfg(feature = "tract")]
fn inspect_general(
    bytes: &[u8],
    ours: &pb::ModelProto,
    inputs: &[TensorInfo],
) -> Result<(Vec<String>, Vec<String>), InferenceError> {
    let mut proto = tract_decode(bytes)?;
    let rewrites = fixup::apply(&mut proto)
        .into_iter()
        .map(str::to_owned)
        .collect();
    // What the native evaluators serve loads whatever tract lacks (a `Scaler`, a regressor).
    if native_at_declared_width(ours, inputs).unwrap_or(false) {
        return Ok((Vec::new(), rewrites));
    }
    let unsupported_operators = unsupported(&proto);
    if unsupported_operators.is_empty() {
        // Parsing proves the graph is well-formed for tract beyond the operator names. A tree
        // ensemble tract cannot build (a post transform it lacks, e.g. SOFTMAX_ZERO) is still
        // loadable when the native evaluator takes it, as `OnnxModel::load` would.
        let parsed = guard_tract(|| {
            tract_onnx::onnx()
                .model_for_proto_model(&proto)
                .map(|_| ())
                .map_err(InferenceError::load)
        });
        if let Err(e) = parsed {
            if !native_at_declared_width(ours, inputs)? {
                return Err(e);
            }
        }
    }
    Ok((unsupported_operators, rewrites))
}

/// Runs tract on a graph, turning a panic into a typed error: tract 0.23 indexes by name without
/// checking on some malformed graphs (a graph output no node produces), and a damaged file must
/// be refused, not crash the caller.
#[cfg(feature = "tract")]
fn guard_tract<T>(f: impl FnOnce() -> Result<T, InferenceError>) -> Result<T, InferenceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(InferenceError::Load(
            "the graph is malformed (tract could not parse it)".to_owned(),
        ))
    })
}

/// Without tract, everything the native evaluators do not serve is unsupported.
#[cfg(not(feature = "tract"))]
fn inspect_general(
    _bytes: &[u8],
    proto: &pb::ModelProto,
    inputs: &[TensorInfo],
) -> Result<(Vec<String>, Vec<String>), InferenceError> {
    let unsupported_operators = if native_at_declared_width(proto, inputs)? {
        Vec::new()
    } else {
        needs_tract(proto)
    };
    Ok((unsupported_operators, Vec::new()))
}

/// The operators a model the native evaluators refused needs the general evaluator for: those
/// no native evaluator implements or, when it is the form of a native operator that is not
/// covered (a `PROBIT` tree ensemble), every operator of the graph.
#[cfg(not(feature = "tract"))]
fn needs_tract(proto: &pb::ModelProto) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut foreign: Vec<String> = Vec::new();
    for node in proto.graph.iter().flat_map(|g| &g.node) {
        let name = if node.domain.is_empty() || node.domain == "ai.onnx" {
            node.op_type.clone()
        } else {
            format!("{}:{}", node.domain, node.op_type)
        };
        let native = trees::NATIVE_OPERATORS.contains(&node.op_type.as_str())
            || graph::NATIVE_OPERATORS.contains(&node.op_type.as_str());
        if !native && !foreign.contains(&name) {
            foreign.push(name.clone());
        }
        if !all.contains(&name) {
            all.push(name);
        }
    }
    if foreign.is_empty() {
        all
    } else {
        foreign
    }
}

/// A requested output a `ZipMap` produces (skl2onnx's default probability output, a sequence
/// of maps) is refused by its operator in every build: outputs are tensors here, named as the
/// file names them, and a map under that name would not be what ONNX Runtime returns for it.
/// The probabilities are the `ZipMap`'s input (exported as an output with `zipmap=False`); the
/// label output of the same file loads.
fn refuse_zipmap(proto: &pb::ModelProto, outputs: Option<&[&str]>) -> Result<(), InferenceError> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    let requested = |name: &str| {
        outputs.map_or_else(
            || graph.output.iter().any(|o| o.name == name),
            |names| names.contains(&name),
        )
    };
    let zipmap = graph
        .node
        .iter()
        .any(|n| n.op_type == "ZipMap" && n.output.iter().any(|o| requested(o.as_str())));
    if zipmap {
        return Err(InferenceError::UnsupportedOperators(vec![
            "ai.onnx.ml:ZipMap".to_owned(),
        ]));
    }
    Ok(())
}

impl OnnxModel {
    /// Loads an ONNX model from bytes with its single input pinned to `input_shape` (f32), and
    /// prepares it once: a graph whose work is one tree ensemble in a form the native evaluator
    /// covers runs on it ([`Backend::NativeTrees`]); a small feed-forward graph (1-D CNN, MLP,
    /// scikit-learn's linear models and scalers, with their integer label outputs) whose every
    /// needed operator the graph evaluator covers runs on that ([`Backend::NativeGraph`]), at
    /// any batch size; anything else on tract's optimized plan. A build without the `tract`
    /// feature refuses anything else with [`InferenceError::NeedsTract`]. A requested `ZipMap`
    /// output is refused in every build with [`InferenceError::UnsupportedOperators`].
    ///
    /// `outputs`, when given, keeps only those graph outputs (by ONNX name), so work feeding
    /// outputs nobody reads (a classifier's label branch) is pruned from the plan.
    pub fn load(
        bytes: &[u8],
        input_shape: &[usize],
        outputs: Option<&[&str]>,
    ) -> Result<Self, InferenceError> {
        let proto = pb::decode(bytes)?;
        check_declared_shape(&proto, input_shape)?;
        refuse_zipmap(&proto, outputs)?;
        if let Some(plan) = trees::plan(&proto, input_shape, outputs)? {
            return Ok(Self::native(plan, input_shape));
        }
        if let Some(plan) = graph::plan(&proto, input_shape, outputs)? {
            return Ok(Self::native_graph(plan, input_shape));
        }
        #[cfg(feature = "tract")]
        return Self::tract_plan(bytes, &proto, input_shape, outputs);
        #[cfg(not(feature = "tract"))]
        Err(InferenceError::NeedsTract {
            operators: needs_tract(&proto),
        })
    }

    /// Like [`OnnxModel::load`], but always on tract, never the native evaluator: the reference
    /// the native path is checked against, and a way to compare both on one model.
    #[cfg(feature = "tract")]
    pub fn load_tract(
        bytes: &[u8],
        input_shape: &[usize],
        outputs: Option<&[&str]>,
    ) -> Result<Self, InferenceError> {
        Self::tract_plan(bytes, &pb::decode(bytes)?, input_shape, outputs)
    }

    /// tract decodes the bytes its own way (the rewrites work on its types); `ours` is the same
    /// file decoded by [`pb`], for the declared facts.
    #[cfg(feature = "tract")]
    fn tract_plan(
        bytes: &[u8],
        ours: &pb::ModelProto,
        input_shape: &[usize],
        outputs: Option<&[&str]>,
    ) -> Result<Self, InferenceError> {
        guard_tract(|| Self::tract_plan_unguarded(bytes, ours, input_shape, outputs))
    }

    #[cfg(feature = "tract")]
    fn tract_plan_unguarded(
        bytes: &[u8],
        ours: &pb::ModelProto,
        input_shape: &[usize],
        outputs: Option<&[&str]>,
    ) -> Result<Self, InferenceError> {
        let mut proto = tract_decode(bytes)?;
        let rewrites = fixup::apply(&mut proto);
        let missing = unsupported(&proto);
        if !missing.is_empty() {
            return Err(InferenceError::UnsupportedOperators(missing));
        }
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(InferenceError::load)?;
        let inputs = model.input_outlets().map_err(InferenceError::load)?.len();
        if inputs != 1 {
            return Err(InferenceError::InputCount(inputs));
        }
        check_declared_shape(ours, input_shape)?;
        model = model
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), input_shape))
            .map_err(InferenceError::load)?;
        if let Some(names) = outputs {
            for name in names {
                if model.find_outlet_label(name).is_none() {
                    return Err(InferenceError::UnknownOutput((*name).to_owned()));
                }
            }
            model = model
                .with_outputs_by_name(names.iter().copied())
                .map_err(InferenceError::load)?;
        }
        let typed = model.into_optimized().map_err(InferenceError::load)?;
        let input = info_of(
            &typed,
            typed.input_outlets().map_err(InferenceError::load)?[0],
        )?;
        let outputs = typed
            .output_outlets()
            .map_err(InferenceError::load)?
            .iter()
            .map(|&o| info_of(&typed, o))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = typed.into_runnable().map_err(InferenceError::load)?;
        Ok(OnnxModel {
            exec: Exec::Tract {
                plan,
                pool: Mutex::new(Vec::new()),
            },
            input_len: input_shape.iter().product(),
            input_shape: input_shape.to_vec(),
            input,
            outputs,
            rewrites,
        })
    }

    fn native(plan: trees::NativePlan, input_shape: &[usize]) -> Self {
        let dims = |d: &[usize]| d.iter().map(usize::to_string).collect::<Vec<_>>();
        let batch = input_shape.first().copied().unwrap_or(1);
        let outputs = plan
            .outputs
            .iter()
            .map(|(name, port)| match port {
                Port::Label => TensorInfo {
                    name: name.clone(),
                    datum_type: "I64".to_owned(),
                    shape: dims(&[batch]),
                },
                Port::Scores => TensorInfo {
                    name: name.clone(),
                    datum_type: "F32".to_owned(),
                    shape: dims(&[batch, plan.trees.n_classes()]),
                },
            })
            .collect();
        OnnxModel {
            input: TensorInfo {
                name: plan.input,
                datum_type: "F32".to_owned(),
                shape: dims(input_shape),
            },
            outputs,
            exec: Exec::Trees {
                trees: plan.trees,
                ports: plan.outputs.into_iter().map(|(_, p)| p).collect(),
            },
            input_len: input_shape.iter().product(),
            input_shape: input_shape.to_vec(),
            rewrites: Vec::new(),
        }
    }

    fn native_graph(plan: graph::GraphPlan, input_shape: &[usize]) -> Self {
        let dims = |d: &[usize]| d.iter().map(usize::to_string).collect::<Vec<_>>();
        OnnxModel {
            input: TensorInfo {
                name: plan.input,
                datum_type: "F32".to_owned(),
                shape: dims(input_shape),
            },
            outputs: plan
                .outputs
                .iter()
                .map(|o| TensorInfo {
                    name: o.name.clone(),
                    datum_type: if o.labels { "I64" } else { "F32" }.to_owned(),
                    shape: dims(&o.shape),
                })
                .collect(),
            exec: Exec::Graph(plan.graph),
            input_len: input_shape.iter().product(),
            input_shape: input_shape.to_vec(),
            rewrites: Vec::new(),
        }
    }

    /// The evaluator this model runs on.
    pub fn backend(&self) -> Backend {
        match self.exec {
            #[cfg(feature = "tract")]
            Exec::Tract { .. } => Backend::Tract,
            Exec::Trees { .. } => Backend::NativeTrees,
            Exec::Graph(_) => Backend::NativeGraph,
        }
    }

    /// The pinned input.
    pub fn input(&self) -> &TensorInfo {
        &self.input
    }

    /// The plan's outputs, in order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The pinned input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Compatibility rewrites the loader applied (see the `fixup` module docs).
    pub fn rewrites(&self) -> &[&'static str] {
        &self.rewrites
    }

    /// Index of the output named `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }

    /// Runs one input (row-major, the pinned shape) and copies output `output` into `out`
    /// (cleared first) as f32.
    pub fn run_into(
        &self,
        input: &[f32],
        output: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        match &self.exec {
            Exec::Trees { trees, ports } => {
                self.check_len(input)?;
                match ports.get(output) {
                    Some(Port::Scores) => {
                        self.run_trees(trees, input, out, None);
                        Ok(())
                    }
                    Some(Port::Label) => Err(InferenceError::OutputType(self.output_name(output))),
                    None => Err(InferenceError::UnknownOutput(format!("#{output}"))),
                }
            }
            Exec::Graph(graph) => {
                self.check_len(input)?;
                match graph.is_labels(output) {
                    Some(false) => {
                        graph.run_into(input, output, out);
                        Ok(())
                    }
                    Some(true) => Err(InferenceError::OutputType(self.output_name(output))),
                    None => Err(InferenceError::UnknownOutput(format!("#{output}"))),
                }
            }
            #[cfg(feature = "tract")]
            Exec::Tract { plan, pool } => self.tract_into(plan, pool, input, output, out),
        }
    }

    #[cfg(feature = "tract")]
    fn tract_into(
        &self,
        plan: &Plan,
        pool: &Mutex<Vec<TypedSimpleState>>,
        input: &[f32],
        output: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let outputs = self.run_raw(plan, pool, input)?;
        let value = outputs
            .get(output)
            .ok_or_else(|| InferenceError::UnknownOutput(format!("#{output}")))?;
        let name = || {
            self.outputs
                .get(output)
                .map_or_else(String::new, |o| o.name.clone())
        };
        let slice = value
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|_| InferenceError::OutputType(name()))?;
        out.clear();
        out.extend_from_slice(slice);
        Ok(())
    }

    /// Runs one input and returns every float output (non-float outputs as empty vectors).
    pub fn run_all(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, InferenceError> {
        match &self.exec {
            Exec::Trees { trees, ports } => {
                self.check_len(input)?;
                let mut scores = Vec::new();
                self.run_trees(trees, input, &mut scores, None);
                Ok(ports
                    .iter()
                    .map(|p| match p {
                        Port::Scores => scores.clone(),
                        Port::Label => Vec::new(),
                    })
                    .collect())
            }
            Exec::Graph(graph) => {
                self.check_len(input)?;
                Ok(graph.run_all(input))
            }
            #[cfg(feature = "tract")]
            Exec::Tract { plan, pool } => self.tract_all(plan, pool, input),
        }
    }

    #[cfg(feature = "tract")]
    fn tract_all(
        &self,
        plan: &Plan,
        pool: &Mutex<Vec<TypedSimpleState>>,
        input: &[f32],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let outputs = self.run_raw(plan, pool, input)?;
        Ok(outputs
            .iter()
            .map(|v| {
                // Checked first: a failed conversion builds an error (with a backtrace when
                // RUST_BACKTRACE is set), far costlier than the prediction itself.
                if v.datum_type() != f32::datum_type() {
                    return Vec::new();
                }
                v.try_as_plain_ram()
                    .and_then(|p| p.as_slice::<f32>().map(<[f32]>::to_vec))
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Runs one input and returns integer output `output` (a classifier's labels).
    pub fn run_labels(&self, input: &[f32], output: usize) -> Result<Vec<i64>, InferenceError> {
        match &self.exec {
            Exec::Trees { trees, ports } => {
                self.check_len(input)?;
                match ports.get(output) {
                    Some(Port::Label) => {
                        let mut scores = Vec::new();
                        let mut labels = Vec::new();
                        self.run_trees(trees, input, &mut scores, Some(&mut labels));
                        Ok(labels)
                    }
                    Some(Port::Scores) => Err(InferenceError::OutputType(self.output_name(output))),
                    None => Err(InferenceError::UnknownOutput(self.output_name(output))),
                }
            }
            Exec::Graph(graph) => {
                self.check_len(input)?;
                let mut labels = Vec::new();
                match graph.is_labels(output) {
                    Some(true) => {
                        graph.run_labels(input, output, &mut labels);
                        Ok(labels)
                    }
                    Some(false) => Err(InferenceError::OutputType(self.output_name(output))),
                    None => Err(InferenceError::UnknownOutput(self.output_name(output))),
                }
            }
            #[cfg(feature = "tract")]
            Exec::Tract { plan, pool } => self.tract_labels(plan, pool, input, output),
        }
    }

    #[cfg(feature = "tract")]
    fn tract_labels(
        &self,
        plan: &Plan,
        pool: &Mutex<Vec<TypedSimpleState>>,
        input: &[f32],
        output: usize,
    ) -> Result<Vec<i64>, InferenceError> {
        let outputs = self.run_raw(plan, pool, input)?;
        let name = || {
            self.outputs
                .get(output)
                .map_or_else(String::new, |o| o.name.clone())
        };
        let value = outputs
            .get(output)
            .ok_or_else(|| InferenceError::UnknownOutput(name()))?;
        value
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<i64>().map(<[i64]>::to_vec))
            .map_err(|_| InferenceError::OutputType(name()))
    }

    fn output_name(&self, output: usize) -> String {
        self.outputs
            .get(output)
            .map_or_else(String::new, |o| o.name.clone())
    }

    fn check_len(&self, input: &[f32]) -> Result<(), InferenceError> {
        if input.len() != self.input_len {
            return Err(InferenceError::InputLength {
                expected: self.input_len,
                got: input.len(),
            });
        }
        Ok(())
    }

    /// Scores every row of `input` into `scores` (cleared and resized; its capacity is reused,
    /// so a steady caller allocates nothing) and, when asked, the decided labels.
    fn run_trees(
        &self,
        trees: &TreeClassifier,
        input: &[f32],
        scores: &mut Vec<f32>,
        mut labels: Option<&mut Vec<i64>>,
    ) {
        let (width, n) = (trees.n_features(), trees.n_classes());
        let rows = input.len() / width;
        scores.clear();
        scores.resize(rows * n, 0.0);
        for (row, out) in input.chunks_exact(width).zip(scores.chunks_exact_mut(n)) {
            let class = trees.predict_row(row, out);
            if let Some(labels) = labels.as_deref_mut() {
                // `plan` serves the label output only for integer labels, and `class` is an
                // index into them.
                labels.push(trees.label(class).unwrap_or_default());
            }
        }
    }

    #[cfg(feature = "tract")]
    fn run_raw(
        &self,
        plan: &Plan,
        pool: &Mutex<Vec<TypedSimpleState>>,
        input: &[f32],
    ) -> Result<TVec<TValue>, InferenceError> {
        self.check_len(input)?;
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(InferenceError::run)?;
        let mut state = match pool.lock().ok().and_then(|mut p| p.pop()) {
            Some(state) => state,
            None => TypedSimpleState::new(plan).map_err(InferenceError::run)?,
        };
        let result = state.run(tvec!(tensor.into()));
        // A state whose run failed may hold half a turn: drop it rather than reuse it.
        if result.is_ok() {
            if let Ok(mut pool) = pool.lock() {
                pool.push(state);
            }
        }
        result.map_err(InferenceError::run)
    }
}
