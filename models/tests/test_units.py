"""Pieces of the trainer that need no server: feature table, split, metrics, export, parity."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import REPO
from onnx_tolerance import Tolerance, assert_within
from trainer import data, evaluate, model, parity
from trainer.errors import DataError, ParityFailure, ProtocolError
from trainer.features import FEATURES_V1
from trainer.pipeline import next_version


def test_feature_table_matches_the_protocol_crate() -> None:
    """The trainer's copy of feature set v1 is the table devices and the server check against
    (core/protocol, re-exported by the signal crate)."""
    rust = (REPO / "core" / "protocol" / "src" / "feature_set.rs").read_text()
    rows = re.findall(r'^\s*"([a-z0-9_]+)",\s*"([^"]*)",\s*(Cardiac|Accel|Quality),', rust, re.M)
    assert len(rows) >= 20, "the Rust table's shape changed; update this parser"
    assert {name: unit for name, unit, _ in rows} == FEATURES_V1
    assert [r[0] for r in rows] == list(FEATURES_V1), "same canonical order"


# Sides of subject-0 .. subject-39 at fraction 0.3 with the default salt ("1": held out).
PINNED_SIDES = "0000000110000011000000000101011100000001"


def _held_out_subjects(n_subjects: int, per_subject: int, seed: int, fraction: float) -> set[str]:
    ds = data.build_dataset(export_table(n_subjects, per_subject, seed), ["rmssd"], ["regular", "irregular"], "ppg", fraction, min_rows_per_class=0)
    assert ds.counts["subjects_train"] + ds.counts["subjects_held_out"] == n_subjects
    return set(ds.held_out.subjects)


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 40), st.integers(1, 80), st.integers(1, 4), st.floats(0.1, 0.9))
def test_split_is_deterministic_and_grows_stably(n_subjects: int, added: int, per_subject: int, fraction: float) -> None:
    """The split of a growing export: subjects already there keep their side when others join."""
    before = _held_out_subjects(n_subjects, per_subject, 0, fraction)
    # Same export again: same split.
    assert _held_out_subjects(n_subjects, per_subject, 0, fraction) == before
    # The export grows (new subjects, other rows for the old ones): nobody already there moves.
    after = _held_out_subjects(n_subjects + added, per_subject, 1, fraction)
    old = {f"s{i}" for i in range(n_subjects)}
    assert after & old == before


def test_split_is_the_same_across_processes_and_machines() -> None:
    """The documented rule (salted sha256 of the subject, read as a number in [0, 1)), pinned:
    a split that depended on the process (Python's salted ``hash``), on the run or on the other
    subjects would not give these sides."""
    got = "".join("1" if data.held_out_side(f"subject-{i}", 0.3, data.DEFAULT_SPLIT_SALT) else "0" for i in range(40))
    assert got == PINNED_SIDES


def test_split_fraction_is_respected_on_many_subjects() -> None:
    subjects = [f"subject-{i}" for i in range(20000)]
    share = np.mean([data.held_out_side(s, 0.3, data.DEFAULT_SPLIT_SALT) for s in subjects])
    assert abs(share - 0.3) < 0.015
    other_salt = [data.held_out_side(s, 0.3, "another salt") for s in subjects[:2000]]
    assert other_salt != [data.held_out_side(s, 0.3, data.DEFAULT_SPLIT_SALT) for s in subjects[:2000]]


def export_table(n_subjects: int, per_subject: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for r in range(per_subject):
            y = rng.random() < 0.5
            rows.append({"subject": f"s{s}", "kind": "ppg", "feature_set": "v1", "label": "irregular" if y else "regular",
                         "f_rmssd": float(rng.normal(60 if y else 30, 10)), "f_sdnn": float(rng.normal(50, 10))})
    return pa.Table.from_pylist(rows)


@settings(max_examples=25, deadline=None)
@given(st.integers(10, 60), st.integers(1, 6), st.integers(0, 2**16))
def test_no_subject_lands_on_both_sides(n_subjects: int, per_subject: int, seed: int) -> None:
    try:
        ds = data.build_dataset(export_table(n_subjects, per_subject, seed), ["rmssd"], ["regular", "irregular"], "ppg", 0.3, min_rows_per_class=1)
    except DataError:
        return  # too few rows on a side: refused, which is the other branch of the contract
    assert not set(ds.train.subjects) & set(ds.held_out.subjects)
    assert len(ds.train) + len(ds.held_out) == n_subjects * per_subject


def test_rows_are_selected_by_name_and_counted() -> None:
    table = pa.Table.from_pylist([
        {"subject": "a", "kind": "ppg", "feature_set": "v1", "label": "regular", "f_rmssd": 30.0, "f_sdnn": 40.0},
        {"subject": "a", "kind": "ppg", "feature_set": "v1", "label": None, "f_rmssd": 31.0, "f_sdnn": 41.0},
        {"subject": "b", "kind": "ecg", "feature_set": "v1", "label": "regular", "f_rmssd": 32.0, "f_sdnn": 42.0},
        {"subject": "b", "kind": "ppg", "feature_set": "v2", "label": "regular", "f_rmssd": 33.0, "f_sdnn": 43.0},
        {"subject": "c", "kind": "ppg", "feature_set": "v1", "label": "noise", "f_rmssd": 34.0, "f_sdnn": 44.0},
        {"subject": "c", "kind": "ppg", "feature_set": "v1", "label": "irregular", "f_rmssd": None, "f_sdnn": 45.0},
        {"subject": "d", "kind": "ppg", "feature_set": "v1", "label": "irregular", "f_rmssd": 70.0, "f_sdnn": 46.0},
    ])
    # Columns are picked by name, in the model's order, whatever the export's column order.
    ds = data.build_dataset(table, ["sdnn", "rmssd"], ["regular", "irregular"], "ppg", 0.5, min_rows_per_class=0)
    c = ds.counts
    assert (c["dropped_unlabelled"], c["dropped_other_kind"], c["dropped_other_feature_set"]) == (1, 1, 1)
    assert (c["dropped_other_label"], c["dropped_missing_feature"], c["used"]) == (1, 1, 2)
    both = np.vstack([ds.train.x, ds.held_out.x])
    assert sorted(map(tuple, both)) == [(40.0, 30.0), (46.0, 70.0)]


def test_export_problems_are_clear_errors() -> None:
    with pytest.raises(DataError, match="empty"):
        data.read_export(b"")
    with pytest.raises(DataError, match="not a readable Arrow"):
        data.read_export(b"definitely not arrow")
    with pytest.raises(DataError, match="no exported record carries feature"):
        data.build_dataset(export_table(5, 2), ["pnn50"], ["regular", "irregular"], "ppg", 0.3)
    with pytest.raises(DataError, match="too little labelled data"):
        data.build_dataset(export_table(4, 2), ["rmssd"], ["regular", "irregular"], "ppg", 0.3)


def test_point_metrics_on_a_hand_computed_example() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = evaluate.point_metrics(y, p)
    # Of the 4 (negative, positive) pairs, 3 are ordered right: AUROC 0.75. Predictions at 0.5:
    # [0, 0, 0, 1] -> accuracy 3/4, precision 1, recall 1/2, F1 2/3.
    assert m == pytest.approx({"auroc": 0.75, "accuracy": 0.75, "f1": 2 / 3})


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_data() -> None:
    rng = np.random.default_rng(3)

    def width(n_subjects: int) -> float:
        subjects = np.repeat(np.arange(n_subjects), 4)
        y = rng.integers(0, 2, size=len(subjects))
        p = np.clip(y * 0.3 + rng.uniform(0, 0.7, size=len(y)), 0, 1)
        per, _ = evaluate.bootstrap(y, {"m": p}, subjects, 300, seed=1)
        for e in per["m"].values():
            assert e.low <= e.value <= e.high
        return per["m"]["auroc"].high - per["m"]["auroc"].low

    assert width(400) < width(25)


def test_paired_delta_of_a_model_with_itself_is_zero() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=200)
    p = rng.uniform(size=200)
    _, deltas = evaluate.bootstrap(y, {"a": p, "b": p.copy()}, np.arange(200), 100, seed=2)
    assert (deltas["b"].value, deltas["b"].low, deltas["b"].high) == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def fitted() -> tuple[model.Fitted, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(50, 20, size=(400, 3))
    y = (x[:, 0] + rng.normal(0, 15, size=400) > 50).astype(np.int64)
    return model.fit(x, y, n_estimators=50, max_depth=2, learning_rate=0.1, seed=0), x


def test_export_matches_scikit_learn(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)
    onnx_p = model.ort_predict(f.onnx, z)
    assert onnx_p.shape == (len(x), 2)
    # One float32 evaluation against scikit-learn's float64 one (its trees compare float32
    # inputs too), the leaf values rounded to float32 by the export.
    exact = Tolerance(f.onnx, model.OUTPUT_NAME, sides=1, weights_rounded=True)
    assert_within(z.astype(np.float32), onnx_p, f.estimator.predict_proba(z), exact, "ONNX vs scikit-learn")


def test_reference_runner_agrees_with_onnx_runtime(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)
    res = parity.check(f.onnx, z, "onnx-reference", parity.reference_predict)
    assert res.rows == len(x)
    z32 = z.astype(np.float32)
    ours, theirs = parity.reference_predict(f.onnx, z32), model.ort_predict(f.onnx, z32)
    assert_within(z32, ours, theirs, Tolerance(f.onnx, model.OUTPUT_NAME), "onnx reference vs ONNX Runtime")


def test_parity_catches_shape_and_value_disagreements(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)
    with pytest.raises(ParityFailure, match="differ by"):
        parity.check(f.onnx, z, "shifted", lambda b, r: parity.reference_predict(b, r) + 2e-5)
    with pytest.raises(ParityFailure, match="shape"):
        parity.check(f.onnx, z, "one column", lambda b, r: parity.reference_predict(b, r)[:, :1])
    with pytest.raises(ParityFailure, match="non-finite"):
        parity.check(f.onnx, z, "nan", lambda b, r: parity.reference_predict(b, r) * np.nan)


def test_manifest_carries_names_units_normalization_and_a_true_self_test(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    f, x = fitted
    z = f.standardizer.apply(x)
    m = model.manifest("rhythm-ppg", "1.0.0", ["sdnn", "rmssd", "pnn50"], f.standardizer, ["regular", "irregular"], f.onnx, z[0], 30, now=1_790_000_000)
    assert [(i["name"], i["unit"]) for i in m["input"]["features"]] == [("sdnn", "ms"), ("rmssd", "ms"), ("pnn50", "%")]
    assert [i["mean"] for i in m["input"]["features"]] == pytest.approx(list(x.mean(axis=0)))
    assert m["expires_at"] - m["published_at"] == 30 * 86400
    probs = f.estimator.predict_proba(z[:1])
    exact = Tolerance(f.onnx, model.OUTPUT_NAME, sides=1, weights_rounded=True)
    expected = np.asarray([m["self_test"]["expected"]])
    assert_within(z[:1].astype(np.float32), expected, probs, exact, "self-test vs scikit-learn")


def test_next_version() -> None:
    assert next_version(None) == "1.0.0"
    assert next_version({"version": "1.4.2"}) == "2.0.0"
    assert next_version({"version": "2.0.0-rc.1"}) == "3.0.0"
    with pytest.raises(ProtocolError):
        next_version({"version": "latest"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=60),
    st.floats(0.05, 0.95),
)
def test_fast_bootstrap_metrics_equal_scikit_learn(rows: list[tuple[int, int]], threshold: float) -> None:
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] / 20 for r in rows])  # coarse scores: plenty of ties
    fast = evaluate.fast_metrics(y, p, threshold)
    if 0 < y.sum() < len(y):
        assert fast == pytest.approx(evaluate.point_metrics(y, p, threshold))
    else:
        assert np.isnan(fast["auroc"])


def test_fit_in_steps_is_the_single_fit(fitted: tuple[model.Fitted, np.ndarray]) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    f, x = fitted
    z = f.standardizer.apply(x)
    y = f.estimator.predict(z)  # any labels; what matters is the same data for both fits
    stepped = model.fit(x, y, n_estimators=25, max_depth=2, learning_rate=0.1, seed=3).estimator
    single = GradientBoostingClassifier(n_estimators=25, max_depth=2, learning_rate=0.1, random_state=3).fit(z, y)
    assert len(stepped.estimators_) == 25
    assert np.array_equal(stepped.predict_proba(z), single.predict_proba(z))


def test_version_precedence() -> None:
    from trainer.pipeline import version_key

    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]
    assert sorted(ordered, key=version_key) == ordered
    assert sorted(reversed(ordered), key=version_key) == ordered
