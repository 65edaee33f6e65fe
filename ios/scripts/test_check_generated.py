"""The Swift generation check must fail on each kind of mistake it claims to catch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GENERATED = Path(os.environ.get("VITALCORE_SWIFT_GEN", HERE.parents[1] / "target" / "bindings" / "swift"))


def run(facade_src: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if not (GENERATED / "VitalcoreFFI.swift").exists():
        pytest.fail(f"no generated Swift in {GENERATED}: run `make bindings-gen`")
    d = tmp_path / "facade"
    d.mkdir()
    (d / "F.swift").write_text(facade_src)
    return subprocess.run(
        [sys.executable, str(HERE / "check_generated.py"), "--generated", str(GENERATED), "--facade", str(d)],
        capture_output=True, text=True,
    )


@pytest.mark.parametrize("name", ["Vitalcore.swift", "VitalcoreEngine.swift"])
def test_real_facade_passes(tmp_path: Path, name: str) -> None:
    src = (HERE.parent / "Sources" / "Vitalcore" / name).read_text()
    r = run(src, tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("let v = VitalcoreFFI.versionInfoo()", "not a public declaration"),
        ("let a = try VitalcoreFFI.analyzeAccel(x: x, y: y, zz: z, rateHz: r)", "matches no generated signature"),
        ("let s = VitalcoreFFI.CardiacSignal.eeg", "has no member eeg"),
        ("let e = try VitalcoreFFI.Engine.open(config: c, key: k)", "matches no generated signature"),
        ("let raw: VitalcoreFFI.Session = s; try raw.pushSample(channel: c)", "has no method pushSample"),
        ("let raw: VitalcoreFFI.Session = s; try raw.finish(now: 1)", "matches no generated signature"),
    ],
)
def test_each_mistake_is_reported(tmp_path: Path, line: str, complaint: str) -> None:
    r = run(f"import VitalcoreFFI\nfunc f() throws {{\n    {line}\n}}\n", tmp_path)
    assert r.returncode == 1
    assert complaint in r.stderr


def test_facade_using_nothing_fails(tmp_path: Path) -> None:
    r = run("import Foundation\n", tmp_path)
    assert r.returncode == 1
    assert "nothing was checked" in r.stderr
