"""Fit, export to ONNX, and describe the result in a manifest the SDK can run.

The model takes standardized features: the manifest carries each feature's training mean and
scale and the SDK applies ``(value - mean) / scale`` before building the tensor, exactly as for
the default model. Rows are cast to float32 before fitting because the ONNX graph compares in
float32: a tree split learned on float64 inputs could fall between two float32 values and send
a row down another branch than scikit-learn did.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx as onnx_format
import onnxruntime as ort
import sklearn
import skl2onnx
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from tqdm import tqdm

from trainer.features import FEATURE_SET, unit_of

# ai.onnx.ml opset 3 (TreeEnsembleClassifier): opset 5 emits the newer `TreeEnsemble` operator,
# which the SDK's inference engine does not implement.
OPSETS = {"": 17, "ai.onnx.ml": 3}
OUTPUT_NAME = "probabilities"
MIN_SDK_VERSION = "0.1.0"
# The held-out parity check's tolerance (parity.check). Fixed, unlike the self-test's
# (:func:`parity_tolerance`): models/tests pins it (a 2e-5 shift must fail the check).
PARITY_TOLERANCE = 1e-5
# Unit roundoff of float32 and roundings budgeted for `exp` (see parity_tolerance).
_U = 2.0**-24
_FN_ROUNDINGS = 4


def parity_tolerance(onnx: bytes) -> float:
    """How far two float32 evaluations of the exported ensemble may differ, on any input.

    Two runtimes (ONNX Runtime here, the SDK's native tree evaluator or tract on a phone) sum
    the trees' leaf values in their own order, which depends on the CPU, so a fixed absolute
    tolerance holds on one machine and not another. A float32 sum of ``n`` terms in any order
    is within ``gamma(n) * sum |term|`` of the exact sum, ``gamma(n) = n u / (1 - n u)`` with
    ``u = 2^-24`` (Higham 3.1). The score of class ``c`` is ``base_c`` plus one leaf per tree,
    so with ``n`` the trees plus one and ``S_c = |base_c| + sum over trees of max |leaf weight|``
    each runtime is within ``E = gamma(n) * max S_c`` of the exact score, and the two within
    ``D = 2 E``. The logistic (and softmax) transform turns a score difference ``d`` into a
    ratio of probabilities in ``[e^-|d|, e^|d|]`` (``e^2|d|`` for softmax), so for probabilities
    at most 1 they differ by at most ``e^(2D) - 1`` plus each side's own rounding (``exp``, the
    sum, the division, ``1 - p``). The same derivation as ``support::Tolerance`` in the SDK's
    tests (core/sdk/tests/support/mod.rs).
    """
    model = onnx_format.load_from_string(onnx)
    node = next((n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"), None)
    if node is None:
        return PARITY_TOLERANCE
    attrs = {a.name: onnx_format.helper.get_attribute_value(a) for a in node.attribute}
    trees, classes = list(attrs["class_treeids"]), list(attrs["class_ids"])
    weights = np.abs(np.asarray(attrs["class_weights"], dtype=np.float64))
    largest: dict[tuple[int, int], float] = {}
    for t, c, w in zip(trees, classes, weights):
        largest[(t, c)] = max(largest.get((t, c), 0.0), float(w))
    base = [abs(float(b)) for b in attrs.get("base_values", [])]
    score = [base[c] if c < len(base) else 0.0 for c in range(max(classes) + 1)]
    for (_, c), w in largest.items():
        score[c] += w
    n = len(set(trees)) + 1
    gamma = n * _U / (1 - n * _U)
    d = 2 * gamma * max(score)
    return float(np.expm1(2 * d) + 2 * (_FN_ROUNDINGS + len(score) + 3) * _U)



@dataclass
class Standardizer:
    """Per-feature mean and scale of the training rows (scale 1 for a constant feature)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[~(scale > 0)] = 1.0
        return cls(mean, scale)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


@dataclass
class Fitted:
    """A fitted classifier with its ONNX export."""

    estimator: GradientBoostingClassifier
    standardizer: Standardizer
    onnx: bytes
    params: dict[str, Any]


# Boosting rounds per progress-bar step.
FIT_STEP = 10


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    n_estimators: int,
    max_depth: int,
    learning_rate: float,
    seed: int,
    progress: bool | None = None,
) -> Fitted:
    """Standardizes, fits and exports. The fit grows the ensemble ``FIT_STEP`` rounds at a time
    (``warm_start``) only to drive a progress bar: the model is the one a single fit gives."""
    std = Standardizer.fit(x_train)
    z = std.apply(x_train)
    params = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "learning_rate": learning_rate,
        "random_state": seed,
    }
    clf = GradientBoostingClassifier(**{**params, "n_estimators": min(FIT_STEP, n_estimators)}, warm_start=True)
    with tqdm(total=n_estimators, desc="fit", unit="tree", disable=None if progress is None else not progress) as bar:
        done = 0
        while done < n_estimators:
            done = min(done + FIT_STEP, n_estimators)
            clf.set_params(n_estimators=done)
            clf.fit(z, y_train)
            bar.update(done - bar.n)
    clf.set_params(warm_start=False)
    proto = to_onnx(clf, z[:1], options={id(clf): {"zipmap": False}}, target_opset=OPSETS)
    return Fitted(clf, std, proto.SerializeToString(), params)


def ort_predict(onnx: bytes, rows: np.ndarray, output_name: str = OUTPUT_NAME) -> np.ndarray:
    """Runs ONNX Runtime (CPU) on float32 rows; the named output as float64."""
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run([output_name], {name: rows.astype(np.float32)})[0], dtype=np.float64)


def manifest(
    name: str,
    version: str,
    features: list[str],
    std: Standardizer,
    labels: list[str],
    onnx: bytes,
    self_test_row: np.ndarray,
    valid_days: int,
    threshold: float = 0.5,
    now: int | None = None,
) -> dict[str, Any]:
    """The manifest to upload. Its self-test output is ONNX Runtime's, which the SDK must reproduce."""
    now = int(time.time()) if now is None else now
    expected = ort_predict(onnx, self_test_row[None, :])[0]
    return {
        "schema": 1,
        "name": name,
        "version": version,
        "task": "classification",
        "input": {
            "kind": "features",
            "feature_set": FEATURE_SET,
            "features": [
                {"name": f, "unit": unit_of(f), "mean": float(m), "scale": float(s)}
                for f, m, s in zip(features, std.mean, std.scale)
            ],
        },
        "outputs": {"output_name": OUTPUT_NAME, "labels": list(labels), "threshold": threshold},
        "min_sdk_version": MIN_SDK_VERSION,
        "artifact": {"sha256": hashlib.sha256(onnx).hexdigest(), "length": len(onnx)},
        "published_at": now,
        "expires_at": now + valid_days * 86400,
        "self_test": {
            "input": [float(v) for v in self_test_row],
            "expected": [float(v) for v in expected],
            "tolerance": parity_tolerance(onnx),
        },
    }


def tool_versions() -> dict[str, str]:
    return {
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
