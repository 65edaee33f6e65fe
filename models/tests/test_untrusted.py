"""The export and the active model come from a server: arbitrary content must end in a clear
:class:`DataError` / :class:`ProtocolError` (or a valid dataset), never in another exception."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx_tolerance import Tolerance, assert_within
from trainer import active, data, model
from trainer.errors import DataError, ProtocolError


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_refused_cleanly(blob: bytes) -> None:
    try:
        table = data.read_export(blob)
    except DataError:
        return
    with pytest.raises(DataError):
        data.build_dataset(table, ["rmssd"], ["regular", "irregular"], "ppg", 0.3)


def test_truncated_export_is_refused_cleanly() -> None:
    table = pa.table({"subject": ["a"] * 10, "kind": ["ppg"] * 10, "feature_set": ["v1"] * 10,
                      "label": ["regular"] * 10, "f_rmssd": [1.0] * 10})
    whole = ipc(table)
    for cut in (1, 8, len(whole) // 2, len(whole) - 1):
        try:
            prefix = data.read_export(whole[:cut])
        except DataError:
            continue
        # Readable prefixes exist (the end-of-stream marker is optional); they cannot add rows.
        assert prefix.num_rows <= table.num_rows


values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))
row = st.fixed_dictionaries({
    "subject": st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]),
    "kind": st.sampled_from(["ppg", "ecg"]),
    "feature_set": st.sampled_from(["v1", "v2"]),
    "label": st.one_of(st.none(), st.sampled_from(["regular", "irregular", "other"])),
    "f_rmssd": values,
    "f_sdnn": values,
})


@settings(max_examples=150, deadline=None)
@given(st.lists(row, max_size=80))
def test_arbitrary_rows_give_a_dataset_or_a_data_error(rows: list[dict]) -> None:
    schema = pa.schema([("subject", pa.string()), ("kind", pa.string()), ("feature_set", pa.string()),
                        ("label", pa.string()), ("f_rmssd", pa.float64()), ("f_sdnn", pa.float64())])
    table = data.read_export(ipc(pa.Table.from_pylist(rows, schema=schema)))
    try:
        ds = data.build_dataset(table, ["rmssd", "sdnn"], ["regular", "irregular"], "ppg", 0.5, min_rows_per_class=1)
    except DataError:
        return
    assert np.isfinite(ds.train.x).all() and np.isfinite(ds.held_out.x).all()
    assert set(ds.train.y) == {0, 1} and set(ds.held_out.y) == {0, 1}


@pytest.mark.parametrize(
    "column",
    [pa.array(["1.0", "2.0"]), pa.array([b"x", b"y"])],
)
def test_feature_column_of_the_wrong_type_is_a_data_error(column: pa.Array) -> None:
    table = pa.table({"subject": ["a", "b"], "kind": ["ppg"] * 2, "feature_set": ["v1"] * 2,
                      "label": ["regular", "irregular"], "f_rmssd": column})
    with pytest.raises(DataError, match="f_rmssd has type"):
        data.build_dataset(data.read_export(ipc(table)), ["rmssd"], ["regular", "irregular"], "ppg", 0.5)


@pytest.fixture(scope="module")
def small_model() -> model.Fitted:
    rng = np.random.default_rng(11)
    x = rng.normal(40, 10, size=(200, 2))
    return model.fit(x, (x[:, 0] > 40).astype(np.int64), 20, 2, 0.1, 0)


def manifest_for(f: model.Fitted, names: list[str]) -> dict:
    return {
        "name": "rhythm-ppg",
        "version": "1.0.0",
        "input": {"kind": "features", "feature_set": "v1", "features": [
            {"name": n, "unit": "ms", "mean": float(m), "scale": float(s)}
            for n, m, s in zip(names, f.standardizer.mean, f.standardizer.scale)
        ]},
        "outputs": {"output_name": "probabilities", "labels": ["regular", "irregular"]},
    }


def test_active_model_is_fed_by_its_own_manifest(small_model: model.Fitted) -> None:
    rng = np.random.default_rng(12)
    cols = {"rmssd": rng.normal(40, 10, 30), "sdnn": rng.normal(40, 10, 30), "pnn50": rng.normal(10, 3, 30)}
    cols["sdnn"][3] = np.nan  # this row lacks one of the active model's features
    got = active.score(manifest_for(small_model, ["sdnn", "rmssd"]), small_model.onnx, cols, "irregular")
    # By hand: the manifest's column order (sdnn, rmssd), its mean/scale, then the model.
    x = np.column_stack([cols["sdnn"], cols["rmssd"]])
    z = ((x - small_model.standardizer.mean) / small_model.standardizer.scale).astype(np.float32)
    ok = np.isfinite(z).all(axis=1)
    want = small_model.estimator.predict_proba(z[ok])[:, 1]
    assert np.isnan(got[3]) and np.isfinite(got[ok]).all()
    # One float32 evaluation against scikit-learn's float64 one, the leaf values rounded to
    # float32 by the export; the bound of the positive class's column.
    whole = small_model.estimator.predict_proba(z[ok])
    ours = whole.copy()
    ours[:, 1] = got[ok]
    exact = Tolerance(small_model.onnx, model.OUTPUT_NAME, sides=1, weights_rounded=True)
    bound = exact.bound(z[ok], ours, whole)[:, 1]
    assert (np.abs(got[ok] - want) <= bound).all()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"input": {"kind": "raw_window", "channel": "ppg", "rate_hz": 64.0, "length": 10}}, "does not take named features"),
        ({"outputs": {"output_name": "probabilities", "labels": ["a", "b"]}}, "no output for label"),
    ],
)
def test_incomparable_active_model_is_a_protocol_error(small_model: model.Fitted, patch: dict, message: str) -> None:
    m = {**manifest_for(small_model, ["sdnn", "rmssd"]), **patch}
    with pytest.raises(ProtocolError, match=message):
        active.score(m, small_model.onnx, {"sdnn": np.ones(3), "rmssd": np.ones(3)}, "irregular")
