#!/usr/bin/env python3
"""Fetch real recordings from installed packages into the git-ignored cache.

Recordings come only from packages installed in the project's venv (never from the web):
the PPG recordings shipped inside the ``heartpy`` wheel. Each is written as a plain CSV the
``vitalcore analyze`` CLI reads, with a JSON sidecar giving its signal type and sample rate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def heartpy_recordings(out: Path) -> list[dict]:
    import heartpy

    data_dir = Path(heartpy.__file__).parent / "data"
    metas = []
    # data.csv: one PPG value per line, 100 Hz (HeartPy's documentation of its example data).
    values = np.loadtxt(data_dir / "data.csv")
    metas.append(_write(out, "heartpy_data1", "ppg", 100.0, values))
    # data2.csv: `timer` in ms and `hr` (PPG); rate derived from the timer.
    d2 = np.genfromtxt(data_dir / "data2.csv", delimiter=",", names=True)
    rate2 = 1000.0 / float(np.median(np.diff(d2["timer"])))
    metas.append(_write(out, "heartpy_data2", "ppg", rate2, d2["hr"], times_s=d2["timer"] / 1000.0))
    return metas


def _write(out: Path, name: str, signal: str, rate: float, values, times_s=None) -> dict:
    path = out / f"{name}.csv"
    if times_s is None:
        np.savetxt(path, values, fmt="%.6g")
    else:
        np.savetxt(path, np.column_stack([times_s, values]), fmt="%.6f,%.6g")
    meta = {
        "name": name,
        "signal": signal,
        "rate_hz": rate,
        "samples": int(len(values)),
        "timestamps": times_s is not None,
        "source": "heartpy wheel",
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    args = ap.parse_args()
    rec = args.cache / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    metas = heartpy_recordings(rec)
    for m in metas:
        print(f"fetched {m['name']}: {m['signal']} {m['rate_hz']:.1f} Hz, {m['samples']} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
