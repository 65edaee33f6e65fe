#!/usr/bin/env python3
"""Benchmark: vitalcore-signal's feature pipeline against NeuroKit2 on the same input.

Inputs (from ``make data``):

* ECG: the 5-minute MIT-BIH excerpt at 360 Hz (``scipy_mitdb_ecg``);
* PPG: 60 s of the real ``heartpy_data2`` PPG (from 60 s to 120 s, past its corrupted
  start), linearly resampled from 117 Hz to 100 Hz and written to ``.cache/bench/``; and
  the first 60 s of NeuroKit2's simulated ``nk_ppg_hrv`` (100 Hz, clean, with HRV).

Both sides run the whole pipeline from raw samples to features: filtering, beat detection,
artifact correction (NeuroKit2: ``signal_fixpeaks``, method "Kubios"), time-domain,
quality (NeuroKit2: ``ecg_quality`` "zhao2018" / ``ppg_quality`` "templatematch"; vitalcore:
its beat-level gate), frequency-domain and nonlinear HRV (vitalcore also computes per-window
results, which NeuroKit2 does not). Beat F1 compares the detectors before correction would blur it,
so NeuroKit2's corrected peaks are only used for its features. vitalcore is timed
inside a release binary (median of many runs, no file I/O); NeuroKit2 in this process
(median of a few runs). Outputs are compared in the same run: beat F1 within 50 ms, and
mean HR, SDNN, RMSSD. Prints a table and writes JSON to ``.cache/bench/signal.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def neurokit_pipeline(x: np.ndarray, signal: str, rate: float, nonlinear: bool = True
                      ) -> tuple[np.ndarray, dict]:
    import neurokit2 as nk

    if signal == "ecg":
        cleaned = nk.ecg_clean(x, sampling_rate=rate)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=rate)
        peaks = np.asarray(info["ECG_R_Peaks"])
    else:
        cleaned = nk.ppg_clean(x, sampling_rate=rate)
        peaks = np.asarray(nk.ppg_findpeaks(cleaned, sampling_rate=rate)["PPG_Peaks"])
    raw = peaks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Quality, as vitalcore assesses it: Zhao & Zhang's indices for ECG, the Orphanidou
        # beat template match for PPG.
        if signal == "ecg":
            nk.ecg_quality(cleaned, rpeaks=peaks, sampling_rate=rate, method="zhao2018")
        else:
            nk.ppg_quality(cleaned, peaks=peaks, sampling_rate=rate, method="templatematch")
        # Artifact correction, as vitalcore does (NeuroKit2's Lipponen & Tarvainen 2019).
        _, peaks = nk.signal_fixpeaks(peaks, sampling_rate=rate, iterative=True, method="Kubios")
        peaks = np.asarray(peaks)
        t = nk.hrv_time(peaks, sampling_rate=rate)
        nk.hrv_frequency(peaks, sampling_rate=rate)
        if nonlinear:
            nk.hrv_nonlinear(peaks, sampling_rate=rate)
    return raw, {
        "hr_mean": 60000.0 / float(t["HRV_MeanNN"].iloc[0]),
        "sdnn": float(t["HRV_SDNN"].iloc[0]),
        "rmssd": float(t["HRV_RMSSD"].iloc[0]),
    }


def f1(a, b, tol) -> float:
    i = j = tp = 0
    a, b = sorted(a), sorted(b)
    while i < len(a) and j < len(b):
        if abs(a[i] - b[j]) <= tol:
            tp, i, j = tp + 1, i + 1, j + 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return 2 * tp / (len(a) + len(b)) if a or b else 1.0


def bench_one(binary: Path, name: str, signal: str, rate: float, path: Path,
              iterations: int, nk_runs: int) -> dict:
    x = np.loadtxt(path)
    out = subprocess.run([str(binary), signal, str(rate), str(path), str(iterations)],
                         check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout)
    nk_times = []
    for _ in range(nk_runs):
        t0 = time.perf_counter()
        peaks, feats = neurokit_pipeline(x, signal, rate)
        nk_times.append(time.perf_counter() - t0)
    nk_us = statistics.median(nk_times) * 1e6
    # hrv_nonlinear computes far more indices than SD1/SD2/SampEn: also report without it.
    lean = []
    for _ in range(nk_runs):
        t0 = time.perf_counter()
        neurokit_pipeline(x, signal, rate, nonlinear=False)
        lean.append(time.perf_counter() - t0)
    nk_lean_us = statistics.median(lean) * 1e6
    ours_us = ours["median_us"]
    return {
        "name": name,
        "signal": signal,
        "samples": len(x),
        "rate_hz": rate,
        "vitalcore_median_us": ours_us,
        "vitalcore_min_us": ours["min_us"],
        "vitalcore_iterations": iterations,
        "neurokit2_median_us": nk_us,
        "neurokit2_runs": nk_runs,
        "speedup": nk_us / ours_us,
        "neurokit2_without_nonlinear_median_us": nk_lean_us,
        "speedup_without_nonlinear": nk_lean_us / ours_us,
        "beat_f1_50ms": f1(ours["peaks"], peaks.tolist(), int(0.05 * rate)),
        "beats": [len(ours["peaks"]), int(len(peaks))],
        "hr_mean": [ours["features"]["hr_mean"], feats["hr_mean"]],
        "sdnn": [ours["features"]["sdnn"], feats["sdnn"]],
        "rmssd": [ours["features"]["rmssd"], feats["rmssd"]],
    }


def bench_sim_ppg_input(cache: Path) -> Path:
    x = np.loadtxt(cache / "synthetic" / "nk_ppg_hrv.csv")[:6000]
    out = cache / "bench" / "sim_ppg_60s_100hz.csv"
    np.savetxt(out, x, fmt="%.6g")
    return out


def bench_ppg_input(cache: Path) -> Path:
    rec = cache / "recordings" / "heartpy_data2.csv"
    d = np.loadtxt(rec, delimiter=",")
    t, v = d[:, 0] - d[0, 0], d[:, 1]
    grid = np.arange(60.0, 120.0, 0.01)
    out = cache / "bench" / "ppg_60s_100hz.csv"
    np.savetxt(out, np.interp(grid, t, v), fmt="%.6g")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("VITALCORE_CACHE", ROOT / ".cache")))
    ap.add_argument("--nk-runs", type=int, default=5)
    args = ap.parse_args()
    (args.cache / "bench").mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--quiet", "--release", "--locked", "-p", "vitalcore-signal",
                    "--example", "bench_pipeline"], check=True, cwd=ROOT)
    binary = ROOT / "target" / "release" / "examples" / "bench_pipeline"
    results = [
        bench_one(binary, "ECG 5 min @ 360 Hz (MIT-BIH)", "ecg", 360.0,
                  args.cache / "recordings" / "scipy_mitdb_ecg.csv", 100, args.nk_runs),
        bench_one(binary, "PPG 60 s @ 100 Hz (heartpy data2)", "ppg", 100.0,
                  bench_ppg_input(args.cache), 1000, args.nk_runs),
        bench_one(binary, "PPG 60 s @ 100 Hz (NK simulated)", "ppg", 100.0,
                  bench_sim_ppg_input(args.cache), 1000, args.nk_runs),
    ]
    (args.cache / "bench" / "signal.json").write_text(json.dumps(results, indent=1))
    print(f"{'input':36} {'vitalcore':>12} {'NeuroKit2':>12} {'speedup':>9} {'beat F1':>8} "
          f"{'HR ours/NK':>14} {'SDNN ours/NK':>14} {'RMSSD ours/NK':>15}  NK w/o nonlinear")
    for r in results:
        print(f"{r['name']:36} {r['vitalcore_median_us'] / 1000:>9.2f} ms {r['neurokit2_median_us'] / 1000:>9.1f} ms "
              f"{r['speedup']:>8.0f}x {r['beat_f1_50ms']:>8.3f} "
              f"{r['hr_mean'][0]:>6.1f}/{r['hr_mean'][1]:<6.1f} {r['sdnn'][0]:>6.1f}/{r['sdnn'][1]:<7.1f} "
              f"{r['rmssd'][0]:>6.1f}/{r['rmssd'][1]:<7.1f}  "
              f"{r['neurokit2_without_nonlinear_median_us'] / 1000:.1f} ms "
              f"({r['speedup_without_nonlinear']:.0f}x)")
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} cores during the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
