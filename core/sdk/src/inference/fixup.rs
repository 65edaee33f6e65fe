//! Rewrites of exporter output that tract 0.23 cannot load as written, applied to the ONNX
//! protobuf before tract parses it.
//!
//! Tree ensembles in the forms skl2onnx writes run on the native evaluator (`trees`) and never
//! reach this module; these rewrites serve the forms it leaves to tract, and
//! `OnnxModel::load_tract`.
//!
//! **Binary tree-ensemble classifiers with a single score.** scikit-learn's
//! `GradientBoostingClassifier` (and other binary boosted trees) export, through skl2onnx, as a
//! `TreeEnsembleClassifier` with two class labels but one score: every leaf targets class 0,
//! `base_values` holds one value (the prior log-odds) and `post_transform` is `LOGISTIC`.
//! ONNX Runtime treats that as the "binary case" and outputs `[1 - p, p]` with
//! `p = sigmoid(sum + base)`. tract 0.23 sizes `base_values` by the number of class labels and
//! refuses a length-1 vector for two labels (`tree_ensemble_classifier.rs`,
//! `get_vec_attr_opt(node, "base_values", n_classes)`); padding it to `[base, 0]` would load, but
//! tract's binary-layout kludge then computes the label by argmax over `[p, sigmoid(0)]`, which
//! inverts it.
//!
//! The rewrite makes the binary case explicit and two-column, which both runtimes compute the
//! same way: each leaf `(tree, node, class 0, w)` becomes two leaves `(class 1, +w)` and
//! `(class 0, -w)`, and `base_values` becomes `[-base, base]`. The class scores are then
//! `[-s, s]` and the logistic gives `[sigmoid(-s), sigmoid(s)] = [1 - p, p]`, and argmax picks
//! class 1 exactly when `p > 0.5`. Leaves are interleaved, not appended, because tract requires
//! leaf tree ids to be non-decreasing in attribute order. The parity tests compare tract on the
//! rewritten graph with ONNX Runtime on the original file.
//!
//! **Large tree ensembles are split into chunks.** tract 0.23 finds a leaf's votes with
//! `outer_iter().skip(start)` over the whole leaf table (`tract-onnx-opl` `ml/tree.rs`), and
//! ndarray's axis iterator has no fast `nth`, so one prediction costs
//! O(trees x total leaves): about 20 ms for a 200-tree boosted classifier. A classifier with
//! more than [`CHUNK_TREES`] trees is therefore rewritten into chunks of at most that many
//! trees, each a `TreeEnsembleClassifier` that outputs raw per-class sums (`post_transform`
//! `NONE`, no base values), followed by standard operators that reproduce ONNX Runtime's
//! semantics: `Sum` of the chunks, `Add` of the base values, the post transform (`Sigmoid`,
//! `Softmax` on axis 1, or none; for a single-score binary model the output is `[1 - p, p]`),
//! and the label as `Gather(labels, ArgMax(probabilities))`. Chunk nodes declare at least three
//! labels so that tract's binary-layout adjustment, meant for a whole classifier, never applies
//! to a partial sum; the extra columns are zero and sliced away.

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// Trees per chunk when a large ensemble is split (see the module docs): small enough that the
/// per-chunk leaf scan is short, large enough that per-node overhead stays small.
pub(crate) const CHUNK_TREES: usize = 8;

/// Applies every rewrite to `model`; returns the names of the rewrites applied (for the doctor).
pub(crate) fn apply(model: &mut ModelProto) -> Vec<&'static str> {
    let mut applied = Vec::new();
    let Some(graph) = model.graph.as_mut() else {
        return applied;
    };
    let mut chunked = false;
    let nodes = std::mem::take(&mut graph.node);
    let mut out = Vec::with_capacity(nodes.len());
    let mut initializers = Vec::new();
    for (index, mut node) in nodes.into_iter().enumerate() {
        if let Some(replacement) = chunk_tree_classifier(&node, index, &mut initializers) {
            out.extend(replacement);
            chunked = true;
        } else {
            if binary_single_score_tree_classifier(&mut node) {
                applied.push("binary tree ensemble: single score made two-column");
            }
            out.push(node);
        }
    }
    graph.node = out;
    graph.initializer.extend(initializers);
    if chunked {
        applied.push("large tree ensemble: split into chunks of 8 trees");
        ensure_default_opset(model);
    }
    applied
}

fn ensure_default_opset(model: &mut ModelProto) {
    let has_default = model
        .opset_import
        .iter()
        .any(|o| o.domain.is_empty() || o.domain == "ai.onnx");
    if !has_default {
        model.opset_import.push(tract_onnx::pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        });
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        // AttributeProto.AttributeType.INT
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn float_tensor(name: String, dims: Vec<i64>, data: Vec<f32>) -> TensorProto {
    TensorProto {
        name,
        dims,
        // TensorProto.DataType.FLOAT
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn int_tensor(name: String, data: Vec<i64>) -> TensorProto {
    TensorProto {
        name,
        dims: vec![data.len() as i64],
        // TensorProto.DataType.INT64
        data_type: 7,
        int64_data: data,
        ..Default::default()
    }
}

fn op(op_type: &str, name: String, input: Vec<String>, output: Vec<String>) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name,
        input,
        output,
        ..Default::default()
    }
}

/// Per-node and per-leaf attribute arrays of a tree ensemble, kept in attribute order.
const NODE_INT_ATTRS: [&str; 6] = [
    "nodes_treeids",
    "nodes_nodeids",
    "nodes_featureids",
    "nodes_truenodeids",
    "nodes_falsenodeids",
    "nodes_missing_value_tracks_true",
];
const NODE_FLOAT_ATTRS: [&str; 2] = ["nodes_values", "nodes_hitrates"];
const LEAF_INT_ATTRS: [&str; 3] = ["class_treeids", "class_nodeids", "class_ids"];

/// Rewrites one large `TreeEnsembleClassifier` into chunks plus standard operators (see the
/// module docs). `None` leaves the node as it is (small, or a form this rewrite does not cover).
fn chunk_tree_classifier(
    node: &NodeProto,
    index: usize,
    initializers: &mut Vec<TensorProto>,
) -> Option<Vec<NodeProto>> {
    if node.op_type != "TreeEnsembleClassifier" || node.input.len() != 1 || node.output.len() != 2 {
        return None;
    }
    if node
        .attribute
        .iter()
        .any(|a| a.name.ends_with("_as_tensor") || a.name == "classlabels_strings")
    {
        return None;
    }
    let labels = attr(node, "classlabels_int64s")?.ints.clone();
    let tree_ids = &attr(node, "nodes_treeids")?.ints;
    let leaf_trees = &attr(node, "class_treeids")?.ints;
    let class_ids = &attr(node, "class_ids")?.ints;
    let n_nodes = tree_ids.len();
    let n_leaves = leaf_trees.len();
    let n_trees = usize::try_from(*tree_ids.last()?).ok()? + 1;
    // tract's own requirements (ids from 0, non-decreasing in attribute order), checked here
    // so a file it would refuse is left for it to refuse with its own message.
    let ordered = |ids: &[i64]| ids.first() == Some(&0) && ids.windows(2).all(|w| w[0] <= w[1]);
    if n_trees <= CHUNK_TREES || !ordered(tree_ids) || !ordered(leaf_trees) {
        return None;
    }
    let aligned = NODE_INT_ATTRS
        .iter()
        .all(|n| attr(node, n).is_none_or(|a| a.ints.len() == n_nodes))
        && NODE_FLOAT_ATTRS
            .iter()
            .all(|n| attr(node, n).is_none_or(|a| a.floats.len() == n_nodes))
        && attr(node, "nodes_modes").is_some_and(|a| a.strings.len() == n_nodes)
        && LEAF_INT_ATTRS
            .iter()
            .all(|n| attr(node, n).is_some_and(|a| a.ints.len() == n_leaves))
        && attr(node, "class_weights").is_some_and(|a| a.floats.len() == n_leaves);
    let max_class = usize::try_from(*class_ids.iter().max()?).ok()?;
    if !aligned || labels.len() < 2 || max_class >= labels.len() {
        return None;
    }
    let post = attr(node, "post_transform").map_or(&b"NONE"[..], |a| a.s.as_slice());
    // ONNX Runtime's "binary case": one score column for two labels.
    let single_score = labels.len() == 2 && max_class == 0;
    let columns = if single_score { 1 } else { labels.len() };
    let supported = match post {
        b"NONE" | b"LOGISTIC" => true,
        b"SOFTMAX" => !single_score,
        _ => false,
    };
    if !supported {
        return None;
    }
    let chunk_labels: Vec<i64> = (0..columns.max(3) as i64).collect();

    let prefix = format!("vc_chunked_{index}");
    let mut nodes = Vec::new();
    let mut sums = Vec::new();
    let range_of = |ids: &[i64], lo: i64, hi: i64| {
        let start = ids.partition_point(|&t| t < lo);
        let end = ids.partition_point(|&t| t < hi);
        start..end
    };
    for (k, lo) in (0..n_trees).step_by(CHUNK_TREES).enumerate() {
        let (lo, hi) = (lo as i64, (lo + CHUNK_TREES).min(n_trees) as i64);
        let nodes_range = range_of(tree_ids, lo, hi);
        let leaves_range = range_of(leaf_trees, lo, hi);
        let mut chunk = op(
            "TreeEnsembleClassifier",
            format!("{prefix}_trees_{k}"),
            node.input.clone(),
            vec![format!("{prefix}_label_{k}"), format!("{prefix}_sum_{k}")],
        );
        chunk.domain = node.domain.clone();
        for a in &node.attribute {
            let mut a = a.clone();
            let name = a.name.as_str();
            if NODE_INT_ATTRS.contains(&name) {
                a.ints = a.ints[nodes_range.clone()].to_vec();
            } else if NODE_FLOAT_ATTRS.contains(&name) {
                a.floats = a.floats[nodes_range.clone()].to_vec();
            } else if name == "nodes_modes" {
                a.strings = a.strings[nodes_range.clone()].to_vec();
            } else if LEAF_INT_ATTRS.contains(&name) {
                a.ints = a.ints[leaves_range.clone()].to_vec();
            } else if name == "class_weights" {
                a.floats = a.floats[leaves_range.clone()].to_vec();
            } else if name == "classlabels_int64s" {
                a.ints = chunk_labels.clone();
            } else if name == "post_transform" {
                a.s = b"NONE".to_vec();
            } else if name == "base_values" {
                continue;
            }
            if name == "nodes_treeids" || name == "class_treeids" {
                a.ints.iter_mut().for_each(|t| *t -= lo);
            }
            chunk.attribute.push(a);
        }
        if leaves_range.is_empty() {
            return None;
        }
        sums.push(format!("{prefix}_sum_{k}"));
        nodes.push(chunk);
    }
    let mut scores = format!("{prefix}_scores");
    nodes.push(op(
        "Sum",
        format!("{prefix}_sum"),
        sums,
        vec![scores.clone()],
    ));
    if chunk_labels.len() != columns {
        let (starts, ends, axes) = (
            format!("{prefix}_starts"),
            format!("{prefix}_ends"),
            format!("{prefix}_axes"),
        );
        initializers.push(int_tensor(starts.clone(), vec![0]));
        initializers.push(int_tensor(ends.clone(), vec![columns as i64]));
        initializers.push(int_tensor(axes.clone(), vec![1]));
        let sliced = format!("{prefix}_sliced");
        nodes.push(op(
            "Slice",
            format!("{prefix}_slice"),
            vec![scores, starts, ends, axes],
            vec![sliced.clone()],
        ));
        scores = sliced;
    }
    if let Some(base) = attr(node, "base_values").filter(|a| !a.floats.is_empty()) {
        if base.floats.len() != columns {
            return None;
        }
        let base_name = format!("{prefix}_base");
        initializers.push(float_tensor(
            base_name.clone(),
            vec![1, columns as i64],
            base.floats.clone(),
        ));
        let based = format!("{prefix}_based");
        nodes.push(op(
            "Add",
            format!("{prefix}_add_base"),
            vec![scores, base_name],
            vec![based.clone()],
        ));
        scores = based;
    }
    let probabilities = node.output[1].clone();
    let transformed = if single_score {
        format!("{prefix}_p")
    } else {
        probabilities.clone()
    };
    match post {
        b"LOGISTIC" => nodes.push(op(
            "Sigmoid",
            format!("{prefix}_sigmoid"),
            vec![scores],
            vec![transformed.clone()],
        )),
        b"SOFTMAX" => {
            let mut softmax = op(
                "Softmax",
                format!("{prefix}_softmax"),
                vec![scores],
                vec![transformed.clone()],
            );
            softmax.attribute.push(int_attr("axis", 1));
            nodes.push(softmax);
        }
        _ => nodes.push(op(
            "Identity",
            format!("{prefix}_identity"),
            vec![scores],
            vec![transformed.clone()],
        )),
    }
    if single_score {
        let one = format!("{prefix}_one");
        initializers.push(float_tensor(one.clone(), vec![1, 1], vec![1.0]));
        let complement = format!("{prefix}_complement");
        nodes.push(op(
            "Sub",
            format!("{prefix}_complement"),
            vec![one, transformed.clone()],
            vec![complement.clone()],
        ));
        let mut concat = op(
            "Concat",
            format!("{prefix}_concat"),
            vec![complement, transformed],
            vec![probabilities.clone()],
        );
        concat.attribute.push(int_attr("axis", 1));
        nodes.push(concat);
    }
    let winner = format!("{prefix}_winner");
    let mut argmax = op(
        "ArgMax",
        format!("{prefix}_argmax"),
        vec![probabilities],
        vec![winner.clone()],
    );
    argmax.attribute.push(int_attr("axis", 1));
    argmax.attribute.push(int_attr("keepdims", 0));
    nodes.push(argmax);
    let label_table = format!("{prefix}_labels");
    initializers.push(int_tensor(label_table.clone(), labels));
    let mut gather = op(
        "Gather",
        format!("{prefix}_gather"),
        vec![label_table, winner],
        vec![node.output[0].clone()],
    );
    gather.attribute.push(int_attr("axis", 0));
    nodes.push(gather);
    Some(nodes)
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_mut<'a>(node: &'a mut NodeProto, name: &str) -> Option<&'a mut AttributeProto> {
    node.attribute.iter_mut().find(|a| a.name == name)
}

fn binary_single_score_tree_classifier(node: &mut NodeProto) -> bool {
    if node.op_type != "TreeEnsembleClassifier" {
        return false;
    }
    let labels = attr(node, "classlabels_int64s")
        .map(|a| a.ints.len())
        .filter(|&n| n > 0)
        .or_else(|| attr(node, "classlabels_strings").map(|a| a.strings.len()));
    let logistic = attr(node, "post_transform").is_some_and(|a| a.s == b"LOGISTIC");
    let Some(ids) = attr(node, "class_ids") else {
        return false;
    };
    let single_score = !ids.ints.is_empty() && ids.ints.iter().all(|&c| c == 0);
    let base_len = attr(node, "base_values").map_or(0, |a| a.floats.len());
    let n = ids.ints.len();
    let aligned = ["class_nodeids", "class_treeids"]
        .iter()
        .all(|name| attr(node, name).is_some_and(|a| a.ints.len() == n))
        && attr(node, "class_weights").is_some_and(|a| a.floats.len() == n);
    if labels != Some(2)
        || !logistic
        || !single_score
        || base_len > 1
        || !aligned
        || attr(node, "base_values_as_tensor").is_some()
    {
        return false;
    }

    let interleave_ints = |values: &[i64], second: fn(i64) -> i64| -> Vec<i64> {
        values.iter().flat_map(|&v| [v, second(v)]).collect()
    };
    for name in ["class_nodeids", "class_treeids"] {
        if let Some(a) = attr_mut(node, name) {
            a.ints = interleave_ints(&a.ints, |v| v);
        }
    }
    if let Some(a) = attr_mut(node, "class_ids") {
        a.ints = a.ints.iter().flat_map(|_| [1, 0]).collect();
    }
    if let Some(a) = attr_mut(node, "class_weights") {
        a.floats = a.floats.iter().flat_map(|&w| [w, -w]).collect();
    }
    let base = attr(node, "base_values")
        .and_then(|a| a.floats.first().copied())
        .unwrap_or(0.0);
    match attr_mut(node, "base_values") {
        Some(a) => a.floats = vec![-base, base],
        None => node.attribute.push(AttributeProto {
            name: "base_values".into(),
            // AttributeProto.AttributeType.FLOATS
            r#type: 6,
            floats: vec![-base, base],
            ..Default::default()
        }),
    }
    true
}
