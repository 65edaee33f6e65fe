#!/usr/bin/env python3
"""Build the ONNX models the inference tests and benchmarks run, into the git-ignored cache.

Each model is what a real exporter produces for a model family an app developer would ship:

* ``mlp16.onnx``          scikit-learn MLPClassifier on 16 features (skl2onnx, ``zipmap=False``):
                          outputs ``label`` (ArgMax, ArrayFeatureExtractor, Reshape, Cast) and
                          ``probabilities``.
* ``mlp_multi.onnx``      MLPClassifier, 3 classes (Softmax; the same label branch).
* ``logreg.onnx``         LogisticRegression, binary (``LinearClassifier``, LOGISTIC), ``zipmap=False``.
* ``logreg_multi.onnx``   LogisticRegression, 3 classes (``LinearClassifier`` SOFTMAX + ``Normalizer``).
* ``scaler_logreg.onnx``  StandardScaler + LogisticRegression pipeline (``Scaler``), ``zipmap=False``.
* ``gbdt200_binary.onnx`` scikit-learn GradientBoostingClassifier, 200 trees, binary: the
                          single-score TreeEnsembleClassifier (one ``base_values`` entry for two
                          class labels) that tract rejects unless the loader rewrites it.
* ``gbdt6_binary.onnx``   the same with 6 trees: small enough that the loader keeps it one node
                          (the leaf rewrite alone), where the 200-tree one is also chunked.
* ``gbdt_multi.onnx``     GradientBoostingClassifier, 3 classes (softmax over per-class scores).
* ``rf_binary.onnx``      RandomForestClassifier, binary (probability leaves, no post transform).
* ``cnn1d.onnx``          a 1-D CNN over a 30 s window at 64 Hz (1920 samples), built directly
                          with the ``onnx`` helper API: Conv/Relu/Conv/Relu/GlobalAveragePool/
                          Flatten/Gemm/Softmax, fixed random weights, dynamic batch dim.
* ``trees_modes_*.onnx``  hand-built TreeEnsembleClassifiers (3 classes, 24 depth-3 trees) that
                          use every branch mode (LEQ, LT, GTE, GT, EQ, NEQ), mixed
                          ``nodes_missing_value_tracks_true``, thresholds on a coarse grid (so
                          inputs can sit exactly on them), leaves voting for one to three classes
                          with weights of both signs; ``_softmax_zero`` without base values,
                          ``_logistic`` with three, ``_none`` raw sums: no exporter writes these,
                          they pin ONNX Runtime's semantics for the SDK's native tree evaluator.
* ``zipmap.onnx``         a LogisticRegression exported with skl2onnx's defaults: ``output_label``
                          and the ZipMap output (a sequence of maps), which the SDK refuses by
                          operator name when it is requested.
* ``gbdt_regressor.onnx`` a GradientBoostingRegressor (TreeEnsembleRegressor, which tract 0.23
                          lacks: the SDK's native tree evaluator runs it).
* ``rf_regressor.onnx``   RandomForestRegressor, 30 trees (TreeEnsembleRegressor).

Every classifier has a dynamic batch dimension, as skl2onnx writes it. ``index.json`` lists the
models with their input shape (batch 1) and the output the tests compare.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# ai.onnx.ml opset 3: TreeEnsembleClassifier/Regressor. Opset 5 would emit the new `TreeEnsemble`
# operator, which neither tract 0.23 nor older runtimes implement.
OPSETS = {"": 17, "ai.onnx.ml": 3}
N_FEATURES = 16
CNN_LEN = 30 * 64


def tabular(seed: int, n: int = 2000, classes: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    score = x[:, 0] + 0.7 * x[:, 1] * x[:, 2] - 0.5 * np.abs(x[:, 3]) + 0.3 * rng.normal(size=n)
    if classes == 2:
        y = (score > 0).astype(np.int64)
    else:
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)
    return x, y


def sk(model, x, zipmap=False) -> onnx.ModelProto:
    is_classifier = hasattr(model, "classes_")
    # A pipeline's options are keyed by its final estimator.
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if is_classifier and not zipmap else None
    return to_onnx(model, x[:1], options=options, target_opset=OPSETS)


def cnn1d(seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    inits = [
        init("w1", 8, 1, 7),
        init("b1", 8, scale=0.1),
        init("w2", 16, 8, 5),
        init("b2", 16, scale=0.1),
        init("w3", 2, 16),
        init("b3", 2, scale=0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[7], strides=[2], pads=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[5], strides=[2], pads=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn1d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, CNN_LEN])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vitalcore-models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def dense_clip(seed: int) -> onnx.ModelProto:
    """A dense layer whose output is clipped to [0, 1]: a float model with an operator (Clip)
    only the general evaluator (tract) runs, for what a build without it refuses."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.normal(size=(N_FEATURES, 2)) * 0.3).astype(np.float32), "w"),
        numpy_helper.from_array((rng.normal(size=(2,)) * 0.1 + 0.5).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Clip", ["a", "lo", "hi"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dense_clip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vitalcore-models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tree_modes(seed: int, post: str, base: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
    grid = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)
    a = {k: [] for k in ["treeids", "nodeids", "featureids", "values", "modes", "true", "false", "missing"]}
    votes = {k: [] for k in ["treeids", "nodeids", "ids", "weights"]}
    for tree in range(24):
        # Depth 3, complete: nodes 0..6 branch, 7..14 leaves (children of i: 2i+1, 2i+2).
        for node in range(15):
            a["treeids"].append(tree)
            a["nodeids"].append(node)
            if node < 7:
                a["featureids"].append(int(rng.integers(N_FEATURES)))
                a["values"].append(float(rng.choice(grid)))
                a["modes"].append(modes[int(rng.integers(len(modes)))])
                a["true"].append(2 * node + 1)
                a["false"].append(2 * node + 2)
                a["missing"].append(int(rng.integers(2)))
            else:
                a["featureids"].append(0)
                a["values"].append(0.0)
                a["modes"].append("LEAF")
                a["true"].append(0)
                a["false"].append(0)
                a["missing"].append(0)
                for cls in sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False)):
                    votes["treeids"].append(tree)
                    votes["nodeids"].append(node)
                    votes["ids"].append(int(cls))
                    votes["weights"].append(float(rng.normal(0.0, 0.4)))
    attrs = dict(
        classlabels_int64s=[3, 5, 7],
        nodes_treeids=a["treeids"],
        nodes_nodeids=a["nodeids"],
        nodes_featureids=a["featureids"],
        nodes_values=a["values"],
        nodes_modes=a["modes"],
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
        nodes_missing_value_tracks_true=a["missing"],
        class_treeids=votes["treeids"],
        class_nodeids=votes["nodeids"],
        class_ids=votes["ids"],
        class_weights=votes["weights"],
        post_transform=post,
    )
    if base:
        attrs["base_values"] = [0.1, -0.2, 0.05]
    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml", **attrs
    )
    graph = helper.make_graph(
        [node],
        "tree_modes",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", N_FEATURES])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="vitalcore-models",
    )
    model.ir_version = 8
    return model


def build(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    models = []

    def save(name, proto, shape, output, doc):
        onnx.checker.check_model(proto)
        (out / f"{name}.onnx").write_bytes(proto.SerializeToString())
        models.append({"name": name, "file": f"{name}.onnx", "input_shape": shape, "output": output, "doc": doc})

    x, y = tabular(1)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=600, random_state=0).fit(x, y)
    save("mlp16", sk(mlp, x), [1, N_FEATURES], "probabilities", "MLPClassifier 16-32-16-2")

    gb = GradientBoostingClassifier(n_estimators=200, max_depth=3, random_state=0).fit(x, y)
    save("gbdt200_binary", sk(gb, x), [1, N_FEATURES], "probabilities", "GradientBoostingClassifier binary, 200 trees")

    gb6 = GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0).fit(x, y)
    save("gbdt6_binary", sk(gb6, x), [1, N_FEATURES], "probabilities", "GradientBoostingClassifier binary, 6 trees")

    xm, ym = tabular(2, classes=3)
    gbm = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(xm, ym)
    save("gbdt_multi", sk(gbm, xm), [1, N_FEATURES], "probabilities", "GradientBoostingClassifier 3 classes, 30 rounds")

    rf = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(x, y)
    save("rf_binary", sk(rf, x), [1, N_FEATURES], "probabilities", "RandomForestClassifier binary, 30 trees")

    save("cnn1d", cnn1d(3), [1, 1, CNN_LEN], "probabilities", "1-D CNN over 30 s at 64 Hz")

    save("dense_clip", dense_clip(4), [1, N_FEATURES], "probabilities", "dense layer + Clip (tract only)")

    for i, (suffix, post, base) in enumerate(
        [("softmax_zero", "SOFTMAX_ZERO", False), ("logistic", "LOGISTIC", True), ("none", "NONE", False)]
    ):
        save(f"trees_modes_{suffix}", tree_modes(10 + i, post, base), [1, N_FEATURES], "probabilities",
             f"hand-built tree ensemble, every branch mode, {post}")

    lr = LogisticRegression(max_iter=500).fit(x, y)
    save("zipmap", sk(lr, x, zipmap=True), [1, N_FEATURES], "output_probability", "LogisticRegression with ZipMap")

    gbr = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(x, x[:, 0] * 2.0)
    save("gbdt_regressor", sk(gbr, x), [1, N_FEATURES], "variable", "GradientBoostingRegressor (TreeEnsembleRegressor)")

    mlpm = MLPClassifier(hidden_layer_sizes=(32,), max_iter=600, random_state=0).fit(xm, ym)
    save("mlp_multi", sk(mlpm, xm), [1, N_FEATURES], "probabilities", "MLPClassifier 16-32-3")

    save("logreg", sk(lr, x), [1, N_FEATURES], "probabilities", "LogisticRegression binary")

    lrm = LogisticRegression(max_iter=500).fit(xm, ym)
    save("logreg_multi", sk(lrm, xm), [1, N_FEATURES], "probabilities", "LogisticRegression 3 classes")

    # Features on scales far from 1, as raw health features are: the scaler matters.
    xs = x * np.linspace(0.5, 40.0, N_FEATURES, dtype=np.float32) + np.linspace(-5.0, 60.0, N_FEATURES, dtype=np.float32)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(xs, y)
    save("scaler_logreg", sk(pipe, xs), [1, N_FEATURES], "probabilities", "StandardScaler + LogisticRegression")

    rfr = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0).fit(x, x[:, 0] - 0.5 * x[:, 1] ** 2)
    save("rf_regressor", sk(rfr, x), [1, N_FEATURES], "variable", "RandomForestRegressor, 30 trees")

    (out / "index.json").write_text(json.dumps(models, indent=2))
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    for m in build(args.out):
        print(f"{m['file']}: {m['doc']}")


if __name__ == "__main__":
    main()
