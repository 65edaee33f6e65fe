//! A native evaluator for ONNX-ML `TreeEnsembleClassifier` and `TreeEnsembleRegressor`, used
//! instead of tract when a graph's work is one tree ensemble (what skl2onnx exports for gradient
//! boosting and random forests; tract 0.23 has no regressor at all).
//!
//! tract 0.23's operator scans the whole leaf table per tree and builds an error value per leaf
//! it reaches (see `fixup`), which made a 200-tree ensemble ten times slower than ONNX Runtime.
//! Here the attributes are read once at load into a flat node table (16 bytes per node, children
//! as indices) and a flat table of leaf votes; a prediction walks each tree and sums the votes
//! straight into the caller's output buffer, so it allocates nothing.
//!
//! The semantics are ONNX Runtime's (`tree_ensemble_aggregator.h`, `ml_common.h`), not only the
//! ONNX text: node comparisons `x <op> threshold`, taken as true also when `x` is NaN and the node's
//! `nodes_missing_value_tracks_true` is set; votes summed per class in tree order, in f32; base
//! values added; the post transform applied. Two layouts are evaluated natively:
//!
//! * **per class** (three classes or more; base values of length 0 or the number of classes;
//!   post transform `NONE`, `LOGISTIC`, `SOFTMAX` or `SOFTMAX_ZERO`): the label is the first
//!   class with the highest score among classes that received a vote or a base value;
//! * **binary, single score** (two labels, every vote for class 0, at most one base value): with
//!   votes of mixed sign and `LOGISTIC` (boosting) the output is
//!   `[sigmoid(-s), sigmoid(s)]` and the label is positive when `s > 0`; with non-negative votes
//!   and `NONE` (a random forest's averaged probabilities) the output is `[1 - s, s]` and the
//!   label is positive when `s > 0.5`;
//! * **regression** (`TreeEnsembleRegressor`, `n_targets` values per row; aggregate `SUM` or
//!   `AVERAGE`, base values of length 0 or `n_targets`, post transform `NONE`): per target the
//!   leaf weights summed in tree order, divided by the number of trees for `AVERAGE`, plus the
//!   base value.
//!
//! Every other form (two classes voted separately, `PROBIT`, `MIN`/`MAX` aggregates, a regressor's
//! post transform, double-precision `*_as_tensor`
//! attributes, more than 64 classes, other operators in the graph) is left to tract: [`plan`]
//! returns `None` and the loader falls back. A malformed attribute set (arrays of different
//! lengths, a child or a vote that points at no node, a cycle) is a typed error at load.

use std::collections::HashMap;

use super::pb::{AttributeProto, ModelProto, NodeProto};

use super::error::InferenceError;

const LEQ: u8 = 0;
const LT: u8 = 1;
const GTE: u8 = 2;
const GT: u8 = 3;
const EQ: u8 = 4;
const NEQ: u8 = 5;
const LEAF: u8 = 6;
const MODE_MASK: u8 = 7;
const MISSING_TRUE: u8 = 8;
/// Feature ids share a word with the node kind: 24 bits, far more features than any model has.
const FEATURE_BITS: u32 = 24;
const FEATURE_MASK: u32 = (1 << FEATURE_BITS) - 1;
/// Operators a graph served by this evaluator may consist of (see [`plan`]).
#[cfg(not(feature = "tract"))]
pub(crate) const NATIVE_OPERATORS: &[&str] = &[
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "Identity",
    "Cast",
];
/// Classes are tracked in a 64-bit "has a vote" mask.
const MAX_CLASSES: usize = 64;

/// One tree node. For a branch, `yes`/`no` are node indices; for a leaf, the range of its votes.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f32,
    /// Feature id in the low 24 bits, node kind (mode, missing-tracks-true flag) above.
    feature_kind: u32,
    yes: u32,
    no: u32,
}

impl Node {
    fn kind(&self) -> u8 {
        (self.feature_kind >> FEATURE_BITS) as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    PerClass,
    /// ONNX Runtime's "binary case": one score for two labels.
    SingleScore {
        positive_votes: bool,
    },
    /// A regressor: `n_classes` is the number of targets.
    Regression {
        /// Divide the sums by the number of trees (`AVERAGE`).
        average: bool,
    },
}

/// Which output of the classifier a graph output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The decided label per row (i64).
    Label,
    /// The float values per row: a classifier's class scores, a regressor's targets.
    Scores,
}

/// A tree ensemble ready to evaluate, immutable after load (shared across threads).
#[derive(Debug)]
pub(crate) struct TreeClassifier {
    roots: Vec<u32>,
    nodes: Vec<Node>,
    vote_class: Vec<u32>,
    vote_weight: Vec<f32>,
    base: Vec<f32>,
    post: Post,
    layout: Layout,
    n_classes: usize,
    n_features: usize,
    /// `classlabels_int64s`, or `None` when the labels are strings.
    int_labels: Option<Vec<i64>>,
}

/// What the loader needs to serve a graph natively.
#[derive(Debug)]
pub(crate) struct NativePlan {
    pub(crate) trees: TreeClassifier,
    /// Requested outputs in order: ONNX name and what it carries.
    pub(crate) outputs: Vec<(String, Port)>,
    /// Name of the graph input.
    pub(crate) input: String,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    attr(node, name).map_or(&[], |a| a.ints.as_slice())
}

fn floats<'a>(node: &'a NodeProto, name: &str) -> &'a [f32] {
    attr(node, name).map_or(&[], |a| a.floats.as_slice())
}

fn malformed(why: impl Into<String>) -> InferenceError {
    InferenceError::MalformedTreeEnsemble(why.into())
}

/// Decides whether the graph can be served natively and builds the evaluator if so.
///
/// `Ok(None)`: not a form this evaluator covers, tract takes it. `Err`: a tree ensemble whose
/// attributes are inconsistent, refused whichever runtime would run it.
pub(crate) fn plan(
    proto: &ModelProto,
    input_shape: &[usize],
    outputs: Option<&[&str]>,
) -> Result<Option<NativePlan>, InferenceError> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(None);
    };
    let mut classifier = None;
    for node in &graph.node {
        match node.op_type.as_str() {
            "TreeEnsembleClassifier" | "TreeEnsembleRegressor" if classifier.is_none() => {
                classifier = Some(node)
            }
            // Pass-through operators skl2onnx puts after the classifier; a ZipMap only matters
            // if its output is requested, which then is not served here.
            "Identity" | "Cast" | "ZipMap" => {}
            _ => return Ok(None),
        }
    }
    let Some(tec) = classifier else {
        return Ok(None);
    };
    let graph_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .collect();
    let [input] = graph_inputs.as_slice() else {
        return Ok(None);
    };
    let float_input = {
        use super::pb::type_proto::Value;
        input.r#type.as_ref().is_some_and(|t| {
            // TensorProto.DataType.FLOAT
            matches!(&t.value, Some(Value::TensorType(tensor)) if tensor.elem_type == 1)
        })
    };
    let regressor = tec.op_type == "TreeEnsembleRegressor";
    if !float_input
        || tec.input.len() != 1
        || tec.input[0] != input.name
        || tec.output.len() != if regressor { 1 } else { 2 }
        || input_shape.len() != 2
    {
        return Ok(None);
    }

    // Which graph tensors carry the ensemble's outputs, through Identity and same-type Casts.
    let mut ports: HashMap<&str, Port> = HashMap::new();
    if regressor {
        ports.insert(tec.output[0].as_str(), Port::Scores);
    } else {
        ports.insert(tec.output[0].as_str(), Port::Label);
        ports.insert(tec.output[1].as_str(), Port::Scores);
    }
    for node in &graph.node {
        let (Some(src), Some(dst)) = (node.input.first(), node.output.first()) else {
            continue;
        };
        let Some(&port) = ports.get(src.as_str()) else {
            continue;
        };
        let passes = match node.op_type.as_str() {
            "Identity" => true,
            // TensorProto.DataType INT64 = 7, FLOAT = 1.
            "Cast" => attr(node, "to").is_some_and(|to| match port {
                Port::Label => to.i == 7,
                Port::Scores => to.i == 1,
            }),
            _ => false,
        };
        if passes {
            ports.insert(dst.as_str(), port);
        }
    }
    let wanted: Vec<&str> = match outputs {
        Some(names) => names.to_vec(),
        None => graph.output.iter().map(|o| o.name.as_str()).collect(),
    };
    let mut served = Vec::with_capacity(wanted.len());
    for name in wanted {
        // Outputs tract must judge (unknown names, a ZipMap's map) go to tract.
        if !graph.output.iter().any(|o| o.name == name) {
            return Ok(None);
        }
        let Some(&port) = ports.get(name) else {
            return Ok(None);
        };
        served.push((name.to_owned(), port));
    }

    let Some(trees) = TreeClassifier::from_node(tec, input_shape[1])? else {
        return Ok(None);
    };
    if trees.int_labels.is_none() && served.iter().any(|(_, p)| *p == Port::Label) {
        return Ok(None);
    }
    Ok(Some(NativePlan {
        trees,
        outputs: served,
        input: input.name.clone(),
    }))
}

impl TreeClassifier {
    /// Reads and checks the attributes of one `TreeEnsembleClassifier` or
    /// `TreeEnsembleRegressor` for inputs of `n_features` columns.
    pub(crate) fn from_node(
        node: &NodeProto,
        n_features: usize,
    ) -> Result<Option<Self>, InferenceError> {
        if node
            .attribute
            .iter()
            .any(|a| a.name.ends_with("_as_tensor"))
        {
            return Ok(None);
        }
        let regressor = node.op_type == "TreeEnsembleRegressor";
        let int_labels = ints(node, "classlabels_int64s");
        let string_labels = attr(node, "classlabels_strings").map_or(0, |a| a.strings.len());
        let n_classes = if regressor {
            match attr(node, "n_targets").map(|a| a.i) {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(malformed("no n_targets")),
            }
        } else {
            match (int_labels.len(), string_labels) {
                (0, 0) => return Err(malformed("no class labels")),
                (n, 0) | (0, n) => n,
                _ => return Err(malformed("both integer and string class labels")),
            }
        };
        let post = match attr(node, "post_transform").map_or(&b"NONE"[..], |a| a.s.as_slice()) {
            b"NONE" => Post::None,
            b"LOGISTIC" => Post::Logistic,
            b"SOFTMAX" => Post::Softmax,
            b"SOFTMAX_ZERO" => Post::SoftmaxZero,
            b"PROBIT" => return Ok(None),
            _ => return Err(malformed("unknown post_transform")),
        };
        // ONNX Runtime's post transforms of a regressor differ from a classifier's for one
        // target; skl2onnx writes none.
        if regressor && post != Post::None {
            return Ok(None);
        }
        let average = match attr(node, "aggregate_function").map(|a| a.s.as_slice()) {
            None | Some(b"SUM") => false,
            Some(b"AVERAGE") if regressor => true,
            Some(b"MIN" | b"MAX") if regressor => return Ok(None),
            _ => return Err(malformed("unknown aggregate_function")),
        };
        let votes = if regressor { "target_" } else { "class_" };
        let vote_attr = |name: &str| format!("{votes}{name}");

        let tree_ids = ints(node, "nodes_treeids");
        let node_ids = ints(node, "nodes_nodeids");
        let n_nodes = tree_ids.len();
        let modes = attr(node, "nodes_modes").map_or(&[][..], |a| a.strings.as_slice());
        let features = ints(node, "nodes_featureids");
        let values = floats(node, "nodes_values");
        let true_ids = ints(node, "nodes_truenodeids");
        let false_ids = ints(node, "nodes_falsenodeids");
        let missing = ints(node, "nodes_missing_value_tracks_true");
        if n_nodes == 0 {
            return Err(malformed("no nodes"));
        }
        let same = |len: usize| len == n_nodes;
        if !(same(node_ids.len())
            && same(modes.len())
            && same(features.len())
            && same(values.len())
            && same(true_ids.len())
            && same(false_ids.len())
            && (missing.is_empty() || same(missing.len())))
        {
            return Err(malformed("node attribute arrays differ in length"));
        }
        let vote_trees = ints(node, &vote_attr("treeids"));
        let vote_nodes = ints(node, &vote_attr("nodeids"));
        let vote_ids = ints(node, &vote_attr("ids"));
        let vote_weights = floats(node, &vote_attr("weights"));
        let n_votes = vote_trees.len();
        if vote_nodes.len() != n_votes || vote_ids.len() != n_votes || vote_weights.len() != n_votes
        {
            return Err(malformed(format!(
                "{votes}* attribute arrays differ in length"
            )));
        }
        if n_nodes > u32::MAX as usize / 2 || n_votes > u32::MAX as usize / 2 {
            return Err(malformed("too many nodes"));
        }
        if n_classes > MAX_CLASSES || n_features > FEATURE_MASK as usize {
            return Ok(None);
        }

        // (tree, node) -> index; trees must be contiguous runs, their first node the root (as
        // ONNX Runtime takes it).
        let Some(index) = NodeIndex::build(tree_ids, node_ids)? else {
            // A tree split over several runs: legal but unusual, left to tract.
            return Ok(None);
        };
        let roots: Vec<u32> = index.runs.iter().map(|r| r.start).collect();

        let mut kinds = Vec::with_capacity(n_nodes);
        for (i, mode) in modes.iter().enumerate() {
            let mode = match mode.as_slice() {
                b"BRANCH_LEQ" => LEQ,
                b"BRANCH_LT" => LT,
                b"BRANCH_GTE" => GTE,
                b"BRANCH_GT" => GT,
                b"BRANCH_EQ" => EQ,
                b"BRANCH_NEQ" => NEQ,
                b"LEAF" => LEAF,
                _ => return Err(malformed("unknown node mode")),
            };
            let track = missing.get(i).is_some_and(|&m| m != 0);
            kinds.push(mode | if track { MISSING_TRUE } else { 0 });
        }

        // Votes grouped by leaf, in attribute order within a leaf.
        let mut per_node = vec![0u32; n_nodes + 1];
        let mut vote_node = Vec::with_capacity(n_votes);
        let mut class_seen: u64 = 0;
        let mut positive_votes = true;
        let mut run = None;
        for v in 0..n_votes {
            // Votes come tree by tree: the run of the previous vote is checked first.
            if run.is_none_or(|r: usize| index.runs[r].tree != vote_trees[v]) {
                run = index.run_of.get(&vote_trees[v]).copied();
            }
            let Some(at) = run.and_then(|r| index.get(r, vote_nodes[v])) else {
                return Err(malformed("a class vote names a node that does not exist"));
            };
            if kinds[at as usize] & MODE_MASK != LEAF {
                return Err(malformed("a class vote is attached to a branch node"));
            }
            let class = usize::try_from(vote_ids[v])
                .ok()
                .filter(|&c| c < n_classes)
                .ok_or_else(|| malformed("a class id is outside the class labels"))?;
            class_seen |= 1 << class;
            if vote_weights[v] < 0.0 {
                positive_votes = false;
            }
            per_node[at as usize + 1] += 1;
            vote_node.push(at);
        }
        for i in 0..n_nodes {
            per_node[i + 1] += per_node[i];
        }
        let mut fill = per_node.clone();
        let mut vote_class = vec![0u32; n_votes];
        let mut vote_weight = vec![0f32; n_votes];
        for v in 0..n_votes {
            let slot = &mut fill[vote_node[v] as usize];
            vote_class[*slot as usize] = vote_ids[v] as u32;
            vote_weight[*slot as usize] = vote_weights[v];
            *slot += 1;
        }

        let mut nodes = Vec::with_capacity(n_nodes);
        let mut run = 0;
        for i in 0..n_nodes {
            while index.runs[run].end as usize <= i {
                run += 1;
            }
            let kind = kinds[i];
            let (feature, yes, no) = if kind & MODE_MASK == LEAF {
                (0, per_node[i], per_node[i + 1])
            } else {
                let feature = usize::try_from(features[i])
                    .ok()
                    .filter(|&f| f < n_features)
                    .ok_or_else(|| {
                        malformed(format!(
                            "a node reads feature {}, the input has {n_features}",
                            features[i]
                        ))
                    })?;
                let child = |id: i64| {
                    index
                        .get(run, id)
                        .ok_or_else(|| malformed("a child id names no node of its tree"))
                };
                (feature as u32, child(true_ids[i])?, child(false_ids[i])?)
            };
            nodes.push(Node {
                threshold: values[i],
                feature_kind: feature | (u32::from(kind) << FEATURE_BITS),
                yes,
                no,
            });
        }
        check_trees(&nodes, &roots)?;

        let base = floats(node, "base_values").to_vec();
        let layout = if regressor {
            if !(base.is_empty() || base.len() == n_classes) {
                return Err(malformed("base_values do not match n_targets"));
            }
            Layout::Regression { average }
        } else if n_classes == 2 && class_seen == 1 && base.len() <= 1 {
            let layout = Layout::SingleScore { positive_votes };
            match (positive_votes, post) {
                (true, Post::None) | (false, Post::Logistic) => layout,
                _ => return Ok(None),
            }
        } else if n_classes > 2 && (base.is_empty() || base.len() == n_classes) {
            Layout::PerClass
        } else {
            return Ok(None);
        };
        Ok(Some(TreeClassifier {
            roots,
            nodes,
            vote_class,
            vote_weight,
            base,
            post,
            layout,
            n_classes,
            n_features,
            int_labels: (!int_labels.is_empty()).then(|| int_labels.to_vec()),
        }))
    }

    /// Number of classes (values per row of the probabilities output).
    pub(crate) fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Number of input columns.
    pub(crate) fn n_features(&self) -> usize {
        self.n_features
    }

    /// The label value of class `class` (integer labels only).
    pub(crate) fn label(&self, class: usize) -> Option<i64> {
        self.int_labels.as_ref()?.get(class).copied()
    }

    fn leaf(&self, root: u32, row: &[f32]) -> &Node {
        let mut at = root as usize;
        loop {
            let node = &self.nodes[at];
            let kind = node.kind();
            let mode = kind & MODE_MASK;
            if mode == LEAF {
                return node;
            }
            let x = row[(node.feature_kind & FEATURE_MASK) as usize];
            let t = node.threshold;
            let taken = match mode {
                LEQ => x <= t,
                LT => x < t,
                GTE => x >= t,
                GT => x > t,
                EQ => x == t,
                _ => x != t,
            } || (kind & MISSING_TRUE != 0 && x.is_nan());
            at = if taken { node.yes } else { node.no } as usize;
        }
    }

    /// Scores one row (`n_features` values) into `out` (`n_classes` values) and returns the
    /// index of the decided class.
    pub(crate) fn predict_row(&self, row: &[f32], out: &mut [f32]) -> usize {
        out.fill(0.0);
        let mut voted: u64 = 0;
        for &root in &self.roots {
            let leaf = self.leaf(root, row);
            for v in leaf.yes as usize..leaf.no as usize {
                let class = self.vote_class[v] as usize;
                out[class] += self.vote_weight[v];
                voted |= 1 << class;
            }
        }
        match self.layout {
            Layout::PerClass => {
                for (k, b) in self.base.iter().enumerate() {
                    out[k] += b;
                    voted |= 1 << k;
                }
                let mut best: Option<(usize, f32)> = None;
                for (k, &score) in out.iter().enumerate() {
                    if voted & (1 << k) != 0 && best.is_none_or(|(_, w)| score > w) {
                        best = Some((k, score));
                    }
                }
                match self.post {
                    Post::None => {}
                    Post::Logistic => out.iter_mut().for_each(|v| *v = logistic(*v)),
                    Post::Softmax => softmax(out),
                    Post::SoftmaxZero => softmax_zero(out),
                }
                best.map_or(0, |(k, _)| k)
            }
            Layout::Regression { average } => {
                if average {
                    let n = self.roots.len() as f32;
                    out.iter_mut().for_each(|v| *v /= n);
                }
                for (v, b) in out.iter_mut().zip(&self.base) {
                    *v += b;
                }
                0
            }
            Layout::SingleScore { positive_votes } => {
                let s = out[0] + self.base.first().copied().unwrap_or(0.0);
                // ONNX Runtime decides on the raw sum only when some leaf voted.
                let decided = if voted & 1 != 0 { s } else { 0.0 };
                if positive_votes {
                    out[0] = 1.0 - s;
                    out[1] = s;
                    usize::from(decided > 0.5)
                } else {
                    out[0] = logistic(-s);
                    out[1] = logistic(s);
                    usize::from(decided > 0.0)
                }
            }
        }
    }
}

/// One tree's contiguous run of nodes.
struct Run {
    tree: i64,
    start: u32,
    end: u32,
    /// Smallest node id of the run, and where its slots start in `NodeIndex::dense` (`None`:
    /// the ids are too sparse for a table, `NodeIndex::sparse` has them).
    min_id: i64,
    table: Option<usize>,
}

/// `(tree id, node id)` to node index. Exporters number each tree's nodes `0..n`, so per tree
/// a table indexed by `node id - smallest id` holds them; ids spread wider than a few times the
/// node count go to a hash map. (One hash map over every pair cost a quarter of a large
/// ensemble's load: a SipHash per node and per lookup.)
struct NodeIndex {
    runs: Vec<Run>,
    run_of: HashMap<i64, usize>,
    dense: Vec<u32>,
    sparse: HashMap<(usize, i64), u32>,
}

impl NodeIndex {
    /// `Ok(None)`: a tree split over several runs. `Err`: an id pair that appears twice.
    fn build(tree_ids: &[i64], node_ids: &[i64]) -> Result<Option<Self>, InferenceError> {
        const EMPTY: u32 = u32::MAX;
        let mut index = NodeIndex {
            runs: Vec::new(),
            run_of: HashMap::new(),
            dense: Vec::new(),
            sparse: HashMap::new(),
        };
        let mut start = 0;
        while start < tree_ids.len() {
            let tree = tree_ids[start];
            let end = start + tree_ids[start..].iter().take_while(|&&t| t == tree).count();
            if index.run_of.insert(tree, index.runs.len()).is_some() {
                return Ok(None);
            }
            let ids = &node_ids[start..end];
            let (min_id, max_id) = ids
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let span = max_id.abs_diff(min_id).saturating_add(1);
            let run = index.runs.len();
            let table = (span <= 4 * ids.len() as u64 + 64).then(|| {
                let at = index.dense.len();
                index.dense.resize(at + span as usize, EMPTY);
                at
            });
            for (k, &id) in ids.iter().enumerate() {
                let node = (start + k) as u32;
                let fresh = match table {
                    Some(at) => {
                        let slot = &mut index.dense[at + id.abs_diff(min_id) as usize];
                        std::mem::replace(slot, node) == EMPTY
                    }
                    None => index.sparse.insert((run, id), node).is_none(),
                };
                if !fresh {
                    return Err(malformed("a (tree, node) id pair appears twice"));
                }
            }
            index.runs.push(Run {
                tree,
                start: start as u32,
                end: end as u32,
                min_id,
                table,
            });
            start = end;
        }
        Ok(Some(index))
    }

    /// The node of run `run` whose id is `id`.
    fn get(&self, run: usize, id: i64) -> Option<u32> {
        let r = &self.runs[run];
        match r.table {
            Some(at) => {
                let offset = id.checked_sub(r.min_id)?;
                let slot = *self
                    .dense
                    .get(at.checked_add(usize::try_from(offset).ok()?)?)?;
                // Past this run's table lies the next run's: the slot must be one of ours.
                (slot != u32::MAX && (r.start..r.end).contains(&slot)).then_some(slot)
            }
            None => self.sparse.get(&(run, id)).copied(),
        }
    }
}

/// Every tree reachable from its root without meeting a node twice: no cycle, no shared subtree
/// (ONNX Runtime refuses both too), so a walk always ends at a leaf.
fn check_trees(nodes: &[Node], roots: &[u32]) -> Result<(), InferenceError> {
    let mut visited = vec![false; nodes.len()];
    let mut stack = Vec::new();
    for &root in roots {
        stack.push(root);
        while let Some(at) = stack.pop() {
            let at = at as usize;
            if std::mem::replace(&mut visited[at], true) {
                return Err(malformed(
                    "a tree reaches a node twice (a cycle or a shared subtree)",
                ));
            }
            let node = &nodes[at];
            if node.kind() & MODE_MASK != LEAF {
                stack.push(node.yes);
                stack.push(node.no);
            }
        }
    }
    Ok(())
}

/// ONNX Runtime's `ComputeLogistic`: computed on `|x|` so large magnitudes do not overflow.
fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// ONNX Runtime's `SOFTMAX_ZERO`: scores that are (nearly) zero stay zero.
fn softmax_zero(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        if v.abs() > 1e-7 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v = 0.0;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ints_attr(name: &str, v: Vec<i64>) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v,
            ..Default::default()
        }
    }

    fn floats_attr(name: &str, v: Vec<f32>) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 6,
            floats: v,
            ..Default::default()
        }
    }

    fn strings_attr(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn string_attr(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 3,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// One tree: node 0 splits feature 0 at 1.0 with `mode`; node 1 (true) votes class 2 with
    /// weight 1, node 2 (false) votes class 0 with weight 1. Three labels, no post transform,
    /// so the output names the branch taken.
    fn stump(mode: &str, missing_true: bool) -> NodeProto {
        NodeProto {
            op_type: "TreeEnsembleClassifier".into(),
            attribute: vec![
                ints_attr("classlabels_int64s", vec![10, 11, 12]),
                ints_attr("nodes_treeids", vec![0, 0, 0]),
                ints_attr("nodes_nodeids", vec![0, 1, 2]),
                ints_attr("nodes_featureids", vec![0, 0, 0]),
                floats_attr("nodes_values", vec![1.0, 0.0, 0.0]),
                strings_attr("nodes_modes", &[mode, "LEAF", "LEAF"]),
                ints_attr("nodes_truenodeids", vec![1, 0, 0]),
                ints_attr("nodes_falsenodeids", vec![2, 0, 0]),
                ints_attr(
                    "nodes_missing_value_tracks_true",
                    vec![i64::from(missing_true), 0, 0],
                ),
                ints_attr("class_treeids", vec![0, 0]),
                ints_attr("class_nodeids", vec![1, 2]),
                ints_attr("class_ids", vec![2, 0]),
                floats_attr("class_weights", vec![1.0, 1.0]),
                string_attr("post_transform", "NONE"),
            ],
            ..Default::default()
        }
    }

    fn set(node: &mut NodeProto, a: AttributeProto) {
        node.attribute.retain(|b| b.name != a.name);
        node.attribute.push(a);
    }

    fn took_true(trees: &TreeClassifier, x: f32) -> bool {
        let mut out = [0.0; 3];
        let class = trees.predict_row(&[x], &mut out);
        assert_eq!(out[1], 0.0, "class 1 never voted");
        assert_eq!(out[0] + out[2], 1.0, "exactly one leaf voted");
        let took = out[2] == 1.0;
        assert_eq!(class, if took { 2 } else { 0 }, "label follows the vote");
        took
    }

    /// The comparison of each mode, from the ONNX operator definition (`x <op> threshold`, the
    /// threshold being 1.0), and NaN following `nodes_missing_value_tracks_true` except for
    /// `BRANCH_NEQ`, where `NaN != t` is already true (ONNX Runtime's behaviour).
    #[test]
    fn every_mode_compares_as_defined() {
        let cases: [(&str, [bool; 3], bool); 6] = [
            ("BRANCH_LEQ", [true, true, false], false),
            ("BRANCH_LT", [true, false, false], false),
            ("BRANCH_GTE", [false, true, true], false),
            ("BRANCH_GT", [false, false, true], false),
            ("BRANCH_EQ", [false, true, false], false),
            ("BRANCH_NEQ", [true, false, true], true),
        ];
        for (mode, below_at_above, nan) in cases {
            for missing_true in [false, true] {
                let trees = TreeClassifier::from_node(&stump(mode, missing_true), 1)
                    .expect("well-formed")
                    .expect("served natively");
                let got = [0.5, 1.0, 1.5].map(|x| took_true(&trees, x));
                assert_eq!(got, below_at_above, "{mode}");
                assert_eq!(
                    took_true(&trees, f32::NAN),
                    nan || missing_true,
                    "{mode}, NaN, missing tracks true = {missing_true}"
                );
            }
        }
    }

    /// Node ids spread far wider than the node count (no exporter writes them, ONNX allows
    /// them) go through the hash map instead of the dense table, with the same results.
    #[test]
    fn sparse_node_ids_evaluate_as_dense_ones() {
        let mut sparse = stump("BRANCH_LEQ", false);
        set(
            &mut sparse,
            ints_attr("nodes_nodeids", vec![7, 1000, 90_000]),
        );
        set(
            &mut sparse,
            ints_attr("nodes_truenodeids", vec![1000, 0, 0]),
        );
        set(
            &mut sparse,
            ints_attr("nodes_falsenodeids", vec![90_000, 0, 0]),
        );
        set(&mut sparse, ints_attr("class_nodeids", vec![1000, 90_000]));
        let dense = TreeClassifier::from_node(&stump("BRANCH_LEQ", false), 1)
            .expect("well-formed")
            .expect("served natively");
        let sparse_trees = TreeClassifier::from_node(&sparse, 1)
            .expect("well-formed")
            .expect("served natively");
        for x in [0.5, 1.0, 1.5, f32::NAN] {
            assert_eq!(took_true(&sparse_trees, x), took_true(&dense, x), "{x}");
        }
        set(
            &mut sparse,
            ints_attr("nodes_nodeids", vec![7, 90_000, 90_000]),
        );
        assert!(refused(&sparse, 1).contains("twice"));
        // Ids of another tree's table are not this tree's nodes.
        let mut two = stump("BRANCH_LEQ", false);
        set(&mut two, ints_attr("nodes_treeids", vec![0, 1, 1]));
        set(&mut two, ints_attr("nodes_nodeids", vec![0, 0, 1]));
        set(&mut two, ints_attr("nodes_truenodeids", vec![1, 0, 0]));
        set(&mut two, ints_attr("nodes_falsenodeids", vec![2, 0, 0]));
        set(&mut two, ints_attr("class_treeids", vec![1, 1]));
        set(&mut two, ints_attr("class_nodeids", vec![0, 1]));
        set(
            &mut two,
            strings_attr("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
        );
        assert!(refused(&two, 1).contains("child"));
    }

    fn refused(node: &NodeProto, n_features: usize) -> String {
        match TreeClassifier::from_node(node, n_features) {
            Err(InferenceError::MalformedTreeEnsemble(why)) => why,
            other => panic!("expected a malformed-ensemble error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_attribute_sets_are_typed_errors() {
        let mut short = stump("BRANCH_LEQ", false);
        set(&mut short, floats_attr("nodes_values", vec![1.0, 0.0]));
        assert!(refused(&short, 1).contains("length"));

        let mut votes = stump("BRANCH_LEQ", false);
        set(&mut votes, ints_attr("class_ids", vec![2]));
        assert!(refused(&votes, 1).contains("length"));

        let mut child = stump("BRANCH_LEQ", false);
        set(&mut child, ints_attr("nodes_truenodeids", vec![7, 0, 0]));
        assert!(refused(&child, 1).contains("child"));

        let mut negative = stump("BRANCH_LEQ", false);
        set(
            &mut negative,
            ints_attr("nodes_falsenodeids", vec![-1, 0, 0]),
        );
        assert!(refused(&negative, 1).contains("child"));

        // Node 1 branches back to the root.
        let mut cycle = stump("BRANCH_LEQ", false);
        set(
            &mut cycle,
            strings_attr("nodes_modes", &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"]),
        );
        set(&mut cycle, ints_attr("nodes_truenodeids", vec![1, 0, 0]));
        set(&mut cycle, ints_attr("nodes_falsenodeids", vec![2, 2, 0]));
        set(&mut cycle, ints_attr("class_nodeids", vec![2, 2]));
        assert!(refused(&cycle, 1).contains("twice"));

        let mut self_loop = stump("BRANCH_LEQ", false);
        set(
            &mut self_loop,
            ints_attr("nodes_truenodeids", vec![0, 0, 0]),
        );
        assert!(refused(&self_loop, 1).contains("twice"));

        let mut ghost = stump("BRANCH_LEQ", false);
        set(&mut ghost, ints_attr("class_nodeids", vec![1, 9]));
        assert!(refused(&ghost, 1).contains("does not exist"));

        let mut on_branch = stump("BRANCH_LEQ", false);
        set(&mut on_branch, ints_attr("class_nodeids", vec![1, 0]));
        assert!(refused(&on_branch, 1).contains("branch"));

        let mut class = stump("BRANCH_LEQ", false);
        set(&mut class, ints_attr("class_ids", vec![2, 3]));
        assert!(refused(&class, 1).contains("class id"));

        let mut mode = stump("BRANCH_LEQ", false);
        set(
            &mut mode,
            strings_attr("nodes_modes", &["BRANCH_SOMETIMES", "LEAF", "LEAF"]),
        );
        assert!(refused(&mode, 1).contains("mode"));

        let mut duplicate = stump("BRANCH_LEQ", false);
        set(&mut duplicate, ints_attr("nodes_nodeids", vec![0, 1, 1]));
        assert!(refused(&duplicate, 1).contains("twice"));

        // The stump reads feature 0; an input with no column cannot feed it.
        assert!(refused(&stump("BRANCH_LEQ", false), 0).contains("feature"));
    }

    #[test]
    fn forms_left_to_tract_are_not_errors() {
        let mut probit = stump("BRANCH_LEQ", false);
        set(&mut probit, string_attr("post_transform", "PROBIT"));
        assert!(matches!(TreeClassifier::from_node(&probit, 1), Ok(None)));
        // Two labels voted separately: ONNX Runtime's label rule there is not the argmax.
        let mut two = stump("BRANCH_LEQ", false);
        set(&mut two, ints_attr("classlabels_int64s", vec![0, 1]));
        set(&mut two, ints_attr("class_ids", vec![1, 0]));
        assert!(matches!(TreeClassifier::from_node(&two, 1), Ok(None)));
    }

    proptest! {
        /// Arbitrary attribute arrays (any lengths, ids, modes) load as an evaluator or a typed
        /// error, never a panic, and a loaded evaluator always finishes a prediction.
        #[test]
        fn arbitrary_attributes_never_panic(
            n in 1usize..6,
            tree_ids in proptest::collection::vec(0i64..3, 0..8),
            node_ids in proptest::collection::vec(-1i64..6, 0..8),
            modes in proptest::collection::vec(0usize..8, 0..8),
            features in proptest::collection::vec(-1i64..4, 0..8),
            yes in proptest::collection::vec(-1i64..7, 0..8),
            no in proptest::collection::vec(-1i64..7, 0..8),
            vote_nodes in proptest::collection::vec(-1i64..6, 0..6),
            vote_ids in proptest::collection::vec(-1i64..4, 0..6),
            row in proptest::collection::vec(-2.0f32..2.0, 3),
        ) {
            const MODES: [&str; 8] = [
                "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ",
                "BRANCH_NEQ", "LEAF", "LEAF",
            ];
            let len = tree_ids.len();
            let mode_names: Vec<&str> = modes.iter().map(|&m| MODES[m]).collect();
            let node = NodeProto {
                op_type: "TreeEnsembleClassifier".into(),
                attribute: vec![
                    ints_attr("classlabels_int64s", vec![0, 1, 2]),
                    ints_attr("nodes_treeids", tree_ids),
                    ints_attr("nodes_nodeids", node_ids),
                    ints_attr("nodes_featureids", features),
                    floats_attr("nodes_values", vec![0.5; n.min(len.max(1))]),
                    strings_attr("nodes_modes", &mode_names),
                    ints_attr("nodes_truenodeids", yes),
                    ints_attr("nodes_falsenodeids", no),
                    ints_attr("class_treeids", vec![0; vote_nodes.len()]),
                    ints_attr("class_nodeids", vote_nodes.clone()),
                    ints_attr("class_ids", vote_ids.iter().copied().take(vote_nodes.len()).collect()),
                    floats_attr("class_weights", vec![0.25; vote_nodes.len()]),
                ],
                ..Default::default()
            };
            if let Ok(Some(trees)) = TreeClassifier::from_node(&node, 3) {
                let mut out = [0.0; 3];
                let class = trees.predict_row(&row, &mut out);
                prop_assert!(class < 3);
            }
        }
    }
}
