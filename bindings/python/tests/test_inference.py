"""The SDK's own ONNX inference through the wheel, against ONNX Runtime on the models
`make data` builds (real scikit-learn/skl2onnx exports and a 1-D CNN) and on the default model
the SDK ships: the same outputs row for row within the bound derived from each model's
arithmetic (``onnx_tolerance``), the facts ONNX Runtime reports, typed refusals."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_tolerance import FN_ROUNDINGS, U, Tolerance, assert_within

import vitalcore
from vitalcore import OnnxModel, VitalcoreError

REPO = Path(__file__).resolve().parents[3]


def _models_dir() -> Path:
    cache = Path(os.environ.get("VITALCORE_CACHE", REPO / ".cache"))
    d = cache / "models"
    if not (d / "index.json").exists():
        pytest.fail(f"no test models in {d}: run `make data` first")
    return d


def _index() -> list[dict]:
    return json.loads((_models_dir() / "index.json").read_text())


def _ort(onnx: bytes, rows: np.ndarray, output: str) -> np.ndarray:
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([output], {sess.get_inputs()[0].name: rows.astype(np.float32)})[0])


def _supported() -> list[dict]:
    # The ZipMap output (a sequence of maps) is refused: see the refusal test.
    return [m for m in _index() if m["name"] != "zipmap"]


@pytest.mark.parametrize("entry", _supported(), ids=lambda m: m["name"])
def test_rows_match_onnx_runtime(entry: dict) -> None:
    onnx = (_models_dir() / entry["file"]).read_bytes()
    shape = entry["input_shape"]
    assert shape[0] == 1
    width = int(np.prod(shape[1:]))
    rows = np.random.default_rng(7).normal(size=(200, width)).astype(np.float32)
    model = OnnxModel(onnx, shape, None)
    ours = np.asarray(vitalcore.run_rows(model, rows, entry["output"]), dtype=np.float64)
    batch = rows.reshape([200, *shape[1:]])
    theirs = _ort(onnx, batch, entry["output"]).reshape(200, -1)
    assert ours.shape == theirs.shape
    assert_within(batch, ours, theirs, Tolerance(onnx, entry["output"]), entry["name"])
    # The list path (one encode per value) gives the same numbers as the packed path.
    listed = np.asarray(model.run_rows([[float(v) for v in r] for r in rows[:5]], entry["output"]), dtype=np.float64)
    assert np.array_equal(listed, ours[:5])


@pytest.mark.parametrize("entry", _supported(), ids=lambda m: m["name"])
def test_facts_are_what_onnx_runtime_reports(entry: dict) -> None:
    onnx = (_models_dir() / entry["file"]).read_bytes()
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    facts = vitalcore.inspect_onnx(onnx)
    assert facts.unsupported_operators == []
    assert [i.name for i in facts.inputs] == [i.name for i in sess.get_inputs()]
    assert [o.name for o in facts.outputs] == [o.name for o in sess.get_outputs()]
    declared = sess.get_inputs()[0].shape
    # ONNX Runtime reports an unnamed dynamic dimension as None, the SDK as "?".
    assert ["?" if d is None else str(d) for d in declared] == facts.inputs[0].shape
    model = OnnxModel(onnx, entry["input_shape"], [entry["output"]])
    assert model.input_shape() == entry["input_shape"]
    assert model.input().shape == [str(d) for d in entry["input_shape"]]
    assert [o.name for o in model.outputs()] == [entry["output"]], "only the requested output is kept"


def test_the_shipped_default_model_matches_onnx_runtime() -> None:
    onnx = (REPO / "models" / "rhythm-ppg.onnx").read_bytes()
    features = int(vitalcore.inspect_onnx(onnx).inputs[0].shape[1])
    model = vitalcore.load_model(REPO / "models" / "rhythm-ppg.onnx", features)
    rows = np.random.default_rng(3).normal(size=(100, features)).astype(np.float32)
    ours = np.asarray(vitalcore.run_rows(model, rows, "probabilities"))
    assert_within(rows, ours, _ort(onnx, rows, "probabilities"), Tolerance(onnx, "probabilities"), "rhythm-ppg")
    # [sigmoid(-s), sigmoid(s)]: each within FN_ROUNDINGS + 3 roundings (1 + e^-|s|, the
    # division, 1 - v) of the exact value, whose sum is 1.
    assert np.max(np.abs(ours.sum(axis=1) - 1.0)) <= 2 * (FN_ROUNDINGS + 3) * U


def test_a_zipmap_output_is_refused_by_name_and_the_label_output_served() -> None:
    onnx = (_models_dir() / "zipmap.onnx").read_bytes()
    assert vitalcore.inspect_onnx(onnx).unsupported_operators == ["ai.onnx.ml:ZipMap"]
    for outputs in (None, ["output_probability"]):
        with pytest.raises(VitalcoreError.ModelRejected, match="ZipMap"):
            OnnxModel(onnx, [1, 16], outputs)
    model = OnnxModel(onnx, [1, 16], ["output_label"])
    assert [(o.name, o.datum_type) for o in model.outputs()] == [("output_label", "I64")]


def test_wrong_rows_and_outputs_are_invalid_input() -> None:
    entry = _supported()[0]
    model = OnnxModel((_models_dir() / entry["file"]).read_bytes(), entry["input_shape"], None)
    width = int(np.prod(entry["input_shape"][1:]))
    with pytest.raises(VitalcoreError.InvalidInput):
        model.run_rows([[0.0] * (width + 1)], entry["output"])
    with pytest.raises(VitalcoreError.InvalidInput):
        model.run_rows_f32le(b"\0" * (width * 4 + 2), entry["output"])
    with pytest.raises(VitalcoreError.InvalidInput):
        model.run_rows([[0.0] * width], "no_such_output")
    with pytest.raises(VitalcoreError.InvalidInput):
        model.run([0.0] * (width - 1))
    with pytest.raises(VitalcoreError.InvalidInput):
        OnnxModel((_models_dir() / entry["file"]).read_bytes(), entry["input_shape"], ["no_such_output"])
    assert vitalcore.run_rows(model, [], entry["output"]) == []


@settings(max_examples=100, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=2000), st.sampled_from(["mlp16.onnx", "rf_binary.onnx"])),
    shape=st.lists(st.integers(0, 2**64 - 1), max_size=10),
    outputs=st.one_of(st.none(), st.lists(st.text(max_size=20), max_size=3)),
    row=st.lists(st.floats(width=32), max_size=40),
)
def test_random_models_shapes_and_rows_give_typed_errors_only(data, shape, outputs, row) -> None:  # type: ignore[no-untyped-def]
    onnx = (_models_dir() / data).read_bytes() if isinstance(data, str) else data
    try:
        vitalcore.inspect_onnx(onnx)
    except VitalcoreError.ModelRejected:
        pass
    try:
        model = OnnxModel(onnx, shape, outputs)
    except (VitalcoreError.ModelRejected, VitalcoreError.InvalidInput):
        return
    for call in (
        lambda: model.run(row),
        lambda: model.run_rows([row, row], "probabilities"),
        lambda: model.run_rows_f32le(np.asarray(row, dtype="<f4").tobytes(), "probabilities"),
    ):
        try:
            call()
        except (VitalcoreError.InvalidInput, VitalcoreError.ModelRejected):
            pass
