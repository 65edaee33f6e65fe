#!/usr/bin/env python3
"""Build a seeded zoo of models of the kinds users export, into a git-ignored directory, for
the inference benchmark's per-model comparison with ONNX Runtime (issue 22's proof).

Random but seeded (``--seed``): the same command writes the same files.

* ``cnn_*``   1-D CNNs over one channel of 1920 samples: 2-4 convolutions with kernels 3-15,
              strides 1-3, 4-64 channels, ReLU, a max or average pool after some of them, global
              average pool, a dense layer and a softmax; built with the ``onnx`` helper API.
* ``mlp_*``   scikit-learn ``MLPClassifier`` with 2-4 hidden layers of 8-256 units, exported with
              skl2onnx's defaults but for ``zipmap=False`` (outputs ``label`` and
              ``probabilities``).
* ``gbdt_*``, ``rf_*``  ``GradientBoostingClassifier`` / ``RandomForestClassifier`` of 10-500 trees,
              same export.
* ``logreg_*`` ``StandardScaler`` + ``LogisticRegression`` pipelines, same export.

``index.json`` lists each model with its input shape (batch 1), the output to compare and its
size in bytes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OPSETS = {"": 17, "ai.onnx.ml": 3}
LEN = 1920


def tabular(rng: np.random.Generator, features: int, classes: int, n: int = 1500):
    x = rng.normal(size=(n, features)).astype(np.float32)
    score = x[:, 0] + 0.7 * x[:, 1] * x[:, 2 % features] - 0.5 * np.abs(x[:, 3 % features]) + 0.3 * rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    return x, y


def export(model, x) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return to_onnx(model, x[:1], options={id(final): {"zipmap": False}}, target_opset=OPSETS)


def cnn(rng: np.random.Generator, name: str) -> onnx.ModelProto:
    layers = int(rng.integers(2, 5))
    nodes, inits = [], []
    c_in, length, x = 1, LEN, "x"

    def weight(wname: str, *shape: int) -> None:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        inits.append(numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), wname))

    for i in range(layers):
        k, s, c_out = int(rng.integers(3, 16)), int(rng.integers(1, 4)), int(rng.integers(4, 65))
        pad = k // 2
        weight(f"w{i}", c_out, c_in, k)
        weight(f"b{i}", c_out)
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k], strides=[s], pads=[pad, pad]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        length = (length + 2 * pad - k) // s + 1
        x, c_in = f"r{i}", c_out
        if i < layers - 1 and length >= 8 and rng.random() < 0.6:
            pool = "MaxPool" if rng.random() < 0.5 else "AveragePool"
            pk = int(rng.integers(2, 5))
            nodes.append(helper.make_node(pool, [x], [f"p{i}"], kernel_shape=[pk], strides=[pk]))
            length = (length - pk) // pk + 1
            x = f"p{i}"
    classes = int(rng.integers(2, 5))
    weight("wd", classes, c_in)
    weight("bd", classes)
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wd", "bd"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, LEN])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vitalcore-zoo")
    model.ir_version = 8
    return model


def build(out: Path, seed: int, per_kind: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    models = []

    def save(name: str, proto: onnx.ModelProto, shape: list[int], doc: str) -> None:
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
        (out / f"{name}.onnx").write_bytes(data)
        models.append({"name": name, "file": f"{name}.onnx", "input_shape": shape, "output": "probabilities",
                       "bytes": len(data), "doc": doc})

    for i in range(per_kind):
        name = f"cnn_{i}"
        save(name, cnn(rng, name), [1, 1, LEN], "1-D CNN")
    for i in range(per_kind):
        features, classes = int(rng.integers(8, 64)), int(rng.integers(2, 5))
        hidden = tuple(int(v) for v in rng.integers(8, 257, size=int(rng.integers(2, 5))))
        x, y = tabular(rng, features, classes)
        mlp = MLPClassifier(hidden_layer_sizes=hidden, max_iter=60, random_state=int(rng.integers(1 << 30))).fit(x, y)
        save(f"mlp_{i}", export(mlp, x), [1, features], f"MLPClassifier {features}-{'-'.join(map(str, hidden))}-{classes}")
    for i in range(per_kind):
        features, classes = int(rng.integers(8, 64)), int(rng.integers(2, 4))
        trees, depth = int(rng.integers(10, 501)), int(rng.integers(2, 7))
        x, y = tabular(rng, features, classes)
        if i % 2 == 0:
            est = GradientBoostingClassifier(n_estimators=max(1, trees // classes if classes > 2 else trees),
                                             max_depth=depth, random_state=i)
            kind = "gbdt"
        else:
            est = RandomForestClassifier(n_estimators=trees, max_depth=depth, random_state=i)
            kind = "rf"
        est.fit(x, y)
        save(f"{kind}_{i}", export(est, x), [1, features], f"{type(est).__name__}, {trees} trees, depth {depth}, {classes} classes")
    for i in range(per_kind):
        features, classes = int(rng.integers(8, 64)), int(rng.integers(2, 5))
        x, y = tabular(rng, features, classes)
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x * 10 + 3, y)
        save(f"logreg_{i}", export(pipe, x), [1, features], f"StandardScaler + LogisticRegression, {classes} classes")
    (out / "index.json").write_text(json.dumps(models, indent=2))
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--per-kind", type=int, default=4, help="models of each kind (CNN, MLP, trees, linear)")
    args = ap.parse_args()
    for m in build(args.out, args.seed, args.per_kind):
        print(f"{m['file']}: {m['doc']} ({m['bytes']} bytes)")


if __name__ == "__main__":
    main()
