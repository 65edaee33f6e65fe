//! Rewrites of exporter output that tract 0.23 cannot load as written, applied to the ONNX
//! protobuf before tract parses it.
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

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto};

/// Applies every rewrite to `model`; returns the names of the rewrites applied (for the doctor).
pub(crate) fn apply(model: &mut ModelProto) -> Vec<&'static str> {
    let mut applied = Vec::new();
    if let Some(graph) = model.graph.as_mut() {
        for node in &mut graph.node {
            if binary_single_score_tree_classifier(node) {
                applied.push("binary tree ensemble: single score made two-column");
            }
        }
    }
    applied
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
