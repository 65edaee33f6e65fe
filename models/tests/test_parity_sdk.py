"""The parity check's default runner: the SDK's own inference (tract) through the real
``vitalcore`` Python bindings, on models the trainer really exports, against ONNX Runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from harness import Server, bindings_path, run_trainer
from onnx_tolerance import FN_ROUNDINGS, U, Tolerance, assert_within
from test_pipeline_server import perturbed, seed
from trainer import model, parity
from trainer.errors import ParityFailure


@pytest.fixture(scope="module", autouse=True)
def importable_bindings() -> None:
    path = str(bindings_path())
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="module")
def fitted() -> tuple[model.Fitted, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(50, 20, size=(600, 4))
    y = (x[:, 0] - 0.5 * x[:, 2] + rng.normal(0, 15, size=600) > 25).astype(np.int64)
    return model.fit(x, y, n_estimators=60, max_depth=3, learning_rate=0.1, seed=0), x


def test_sdk_runner_agrees_with_onnx_runtime_on_an_exported_model(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)
    res = parity.check(f.onnx, z, "sdk", parity.sdk_predict)
    assert res.runner == "sdk" and res.rows == len(x)
    assert res.max_abs_diff <= parity.PARITY_TOLERANCE
    # The runner really is the SDK: its outputs are the bindings' own, row for row.
    import vitalcore  # noqa: PLC0415

    m = vitalcore.load_model(f.onnx, z.shape[1])
    direct = np.asarray(m.run_rows([[float(v) for v in r] for r in z[:7]], model.OUTPUT_NAME))
    assert np.array_equal(parity.sdk_predict(f.onnx, z[:7]), direct.astype(np.float64))
    probs = parity.sdk_predict(f.onnx, z)
    z32 = z.astype(np.float32)
    assert_within(z32, probs, model.ort_predict(f.onnx, z32), Tolerance(f.onnx, model.OUTPUT_NAME), "SDK vs ONNX Runtime")
    # [sigmoid(-s), sigmoid(s)]: each within FN_ROUNDINGS + 3 roundings of the exact value,
    # whose sum is 1.
    assert probs.shape == (len(x), 2)
    assert np.max(np.abs(probs.sum(axis=1) - 1.0)) <= 2 * (FN_ROUNDINGS + 3) * U


def test_a_disagreement_seen_through_the_sdk_is_a_parity_failure(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    with pytest.raises(ParityFailure, match="differ by"):
        parity.check(f.onnx, f.standardizer.apply(x), "sdk", perturbed(parity.sdk_predict))


def test_a_model_the_sdk_cannot_run_is_refused_not_skipped(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)[:4]
    with pytest.raises(ParityFailure, match="the SDK's inference refused the model"):
        parity.sdk_predict(b"not an onnx model", z)
    # An operator the SDK does not implement (ONNX Runtime runs it): refused by name.
    m = onnx.load_from_string(f.onnx)
    node = next(n for n in m.graph.node if n.op_type == "TreeEnsembleClassifier")
    node.op_type = "TreeEnsembleRegressorX"
    with pytest.raises(ParityFailure, match="TreeEnsembleRegressorX"):
        parity.sdk_predict(m.SerializeToString(), z)


def test_default_runner_publishes_through_the_bindings(server: Server, tmp_path: Path) -> None:
    seed(server)
    r = run_trainer(server.url, tmp_path, bindings=True)  # no --parity-runner: the default, sdk
    assert r.code == 0, r.stderr
    assert server.served_manifest()["version"] == "1.0.0"
    bundle = tmp_path / "rhythm-ppg-1.0.0"
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["parity"]["runner"] == "sdk"
    assert 0 < metrics["parity"]["rows"] and metrics["parity"]["max_abs_diff"] <= parity.PARITY_TOLERANCE
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "ONNX Runtime vs `sdk`" in card
    assert "not the SDK's own inference" not in card
