"""The folder helper over the real recordings, checked against the `vitalcore` CLI's output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import vitalcore

ROOT = Path(__file__).resolve().parents[3]


def test_analyze_folder_covers_every_recording(recordings_dir: Path) -> None:
    rows = vitalcore.analyze_folder(recordings_dir)
    names = sorted(p.stem for p in recordings_dir.glob("*.csv") if p.with_suffix(".json").exists())
    assert [r["recording"] for r in rows] == names
    assert len(rows) >= 4, "make data fetches the three heartpy recordings and the MIT-BIH excerpt"
    # Every real recording of the folder analyses: an error row for any of them is a failure.
    errors = {r["recording"]: r["error"] for r in rows if "error" in r}
    assert not errors, errors
    for r in rows:
        assert 0.0 <= r["sqi"] <= 1.0, r["recording"]
        assert r["peaks"] > 0, r["recording"]
        assert {"hr_mean", "sdnn", "rmssd"} <= set(r), r["recording"]
        assert r["hr_mean"] is not None and 30 < r["hr_mean"] < 200, r["recording"]


def test_bad_recording_reports_an_error_row_and_the_run_goes_on(tmp_path: Path, recordings_dir: Path) -> None:
    good = next(p for p in sorted(recordings_dir.glob("*.csv")) if not json.loads(p.with_suffix(".json").read_text()).get("timestamps"))
    shutil.copy(good, tmp_path / "a_good.csv")
    shutil.copy(good.with_suffix(".json"), tmp_path / "a_good.json")
    (tmp_path / "b_short.csv").write_text("0.1\n0.2\n0.3\n")
    (tmp_path / "b_short.json").write_text(json.dumps({"signal": "ppg", "rate_hz": 100.0}))
    rows = vitalcore.analyze_folder(tmp_path)
    assert [r["recording"] for r in rows] == ["a_good", "b_short"]
    assert "error" not in rows[0]
    assert rows[1]["error"].startswith("InvalidInput")


def _cli() -> Path:
    # Always (re)build: a stale binary would compare against an older engine. A no-op when fresh.
    subprocess.run(
        ["cargo", "build", "-q", "--locked", "-p", "vitalcore", "--features", "cli", "--bin", "vitalcore"],
        cwd=ROOT, check=True,
    )
    return ROOT / "target" / "debug" / "vitalcore"


def test_python_features_equal_the_cli_features(recordings_dir: Path) -> None:
    """Same engine, two front ends: the Python values must be the CLI's values exactly."""
    rec = next(p for p in sorted(recordings_dir.glob("*.csv")) if not json.loads(p.with_suffix(".json").read_text()).get("timestamps"))
    meta = json.loads(rec.with_suffix(".json").read_text())
    out = subprocess.run(
        [str(_cli()), "analyze", "--signal", meta["signal"], "--rate", str(meta["rate_hz"]), "--input", str(rec)],
        cwd=ROOT, check=True, capture_output=True, text=True, env={**os.environ},
    ).stdout
    cli = json.loads(out)
    py = vitalcore.analyze_recording(vitalcore.load_recording(rec))
    py_features = {f.name: f.value for f in py.features}
    cli_features = cli["features"]
    assert set(cli_features) == set(py_features)
    assert list(py.peaks) == cli["peaks"]
    for name, v in cli_features.items():
        if v is None:
            assert py_features[name] is None, name
        else:
            assert py_features[name] == pytest.approx(v, rel=1e-9, abs=1e-12), name
