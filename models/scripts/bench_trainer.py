#!/usr/bin/env python3
"""Where a training run spends its time, at growing data sizes, against a real server.

For each size: a fresh ``vitalcore-server`` (SQLite, temp dir) seeded through the batch upload
API with synthetic labelled checks (8 per subject), then ``python -m trainer train`` twice
(first version, then one compared against it). Prints the stage timings the trainer writes to
``metrics.json``. Also compares the bootstrap's metric step with scikit-learn's metric
functions, the tool one would otherwise call in the loop, on the same resamples.

Usage (repository root, after ``cargo build -p vitalcore-server``):

    .venv/bin/python models/scripts/bench_trainer.py [--subjects 100,1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from harness import Server, make_cohort, run_trainer  # noqa: E402
from trainer import evaluate  # noqa: E402


def bench_metrics(rows: int, resamples: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=rows)
    p = rng.uniform(size=rows)
    picks = [rng.integers(rows, size=rows) for _ in range(resamples)]
    t = time.perf_counter()
    for idx in picks:
        evaluate.fast_metrics(y[idx], p[idx])
    fast = time.perf_counter() - t
    t = time.perf_counter()
    for idx in picks:
        evaluate.point_metrics(y[idx], p[idx])
    slow = time.perf_counter() - t
    return fast, slow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="100,1000", help="comma-separated subject counts")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    print("| subjects | records | run | " + " | ".join(
        ["export", "select_split", "fetch_active", "fit_export", "evaluate", "compare_active", "parity", "upload", "total (process)"]
    ) + " |")
    for n in [int(s) for s in args.subjects.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp) / "data")
            try:
                c = make_cohort(n, 8, seed=1)
                server.upload(c.records, c.labels, ["model_training"])
                for run, extra in (("v1", ("--features", "hr_mean,sdnn")), ("v2", ())):
                    t = time.perf_counter()
                    r = run_trainer(server.url, Path(tmp) / "out", "--parity-runner", "onnx-reference",
                                    "--bootstrap", str(args.bootstrap), *extra)
                    total = time.perf_counter() - t
                    if r.code != 0:
                        sys.exit(f"trainer failed: {r.stderr.strip()}")
                    version = "1.0.0" if run == "v1" else "2.0.0"
                    rep = json.loads((Path(tmp) / "out" / f"rhythm-ppg-{version}" / "metrics.json").read_text())
                    ts = rep["timings_s"]
                    cells = [f"{ts.get(k, 0.0):.2f}" for k in
                             ("export", "select_split", "fetch_active", "fit_export", "evaluate", "compare_active", "parity", "upload")]
                    print(f"| {n} | {len(c.records)} | {run} | " + " | ".join(cells) + f" | {total:.2f} |")
            finally:
                server.stop()
    for rows in (240, 2400):
        fast, slow = bench_metrics(rows, 1000)
        print(f"bootstrap metrics, {rows} rows x 1000 resamples: trainer {fast:.2f} s, "
              f"scikit-learn metrics {slow:.2f} s ({slow / fast:.1f}x)")


if __name__ == "__main__":
    main()
