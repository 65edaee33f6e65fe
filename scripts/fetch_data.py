#!/usr/bin/env python3
"""Fetch real recordings from packages into the git-ignored cache, with reference outputs.

Recordings come only from package registries (never from the web):

* the PPG recordings shipped inside the ``heartpy`` wheel (installed in the venv);
* a 5-minute MIT-BIH ECG at 360 Hz shipped as ``scipy/misc/ecg.dat`` in SciPy <= 1.10,
  taken from the SciPy 1.10.1 wheel that ``pip download`` fetches from PyPI into the cache.

Each recording is written as a plain CSV the ``vitalcore analyze`` CLI reads, with a JSON
sidecar giving its signal type and sample rate (``recordings/``). Synthetic recordings from
NeuroKit2's simulators with known heart rate go to ``synthetic/``.

Reference outputs (``reference/<name>.json``) come from the tools people trust, run here on
exactly the same samples: NeuroKit2 (``ecg_clean`` + ``ecg_peaks`` / ``ppg_clean`` +
``ppg_findpeaks``, ``hrv_time``, ``hrv_frequency``, ``hrv_nonlinear``) and HeartPy
(``process``) for PPG.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

SCIPY_WHEEL_VERSION = "1.10.1"


def heartpy_recordings(out: Path) -> list[dict]:
    import heartpy

    data_dir = Path(heartpy.__file__).parent / "data"
    metas = []
    # data.csv: one PPG value per line, 100 Hz (HeartPy's documentation of its example data).
    values = np.loadtxt(data_dir / "data.csv")
    metas.append(_write(out, "heartpy_data1", "ppg", 100.0, values, source="heartpy wheel"))
    # data2.csv: `timer` in ms and `hr` (PPG); rate derived from the timer.
    d2 = np.genfromtxt(data_dir / "data2.csv", delimiter=",", names=True)
    rate2 = 1000.0 / float(np.median(np.diff(d2["timer"])))
    metas.append(
        _write(out, "heartpy_data2", "ppg", rate2, d2["hr"], times_s=d2["timer"] / 1000.0,
               source="heartpy wheel")
    )
    # data3.csv: 11 minutes of PPG with wall-clock stamps quantised to the 15-16 ms OS tick, so a
    # third of them repeat the previous one. The samples are uniform (rate = count / span); the
    # stamps are kept separately, as seconds, for the duplicate-timestamp error test.
    import pandas as pd

    d3 = pd.read_csv(data_dir / "data3.csv")
    stamps = pd.to_datetime(d3["datetime"], format="ISO8601")
    t3 = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()
    v3 = d3["hr"].to_numpy(dtype=float)
    rate3 = (len(t3) - 1) / float(t3[-1])
    metas.append(_write(out, "heartpy_data3", "ppg", rate3, v3, source="heartpy wheel",
                        note="stamps quantised to the OS tick; analysed as uniform"))
    stamped = out.parent / "stamped"
    stamped.mkdir(parents=True, exist_ok=True)
    np.savetxt(stamped / "heartpy_data3_stamped.csv", np.column_stack([t3, v3]), fmt="%.3f,%.6g")
    return metas


def scipy_ecg_recording(out: Path, wheels: Path) -> dict:
    """The MIT-BIH excerpt SciPy shipped until 1.10 (``scipy.misc.electrocardiogram``)."""
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"scipy-{SCIPY_WHEEL_VERSION}-cp311-cp311-manylinux*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"scipy=={SCIPY_WHEEL_VERSION}",
             "--no-deps", "--only-binary", ":all:", "--python-version", "3.11",
             "--platform", "manylinux2014_x86_64", "--disable-pip-version-check", "--quiet",
             "-d", str(wheels)],
            check=True,
        )
        found = sorted(wheels.glob(pattern))
    if not found:
        raise SystemExit(f"scipy {SCIPY_WHEEL_VERSION} wheel not found in {wheels} after download")
    with zipfile.ZipFile(found[0]) as z:
        raw = np.load(io.BytesIO(z.read("scipy/misc/ecg.dat")))["ecg"].astype(int)
    # The conversion scipy.misc.electrocardiogram() applied: ADC units to mV.
    ecg = (raw - 1024) / 200.0
    return _write(out, "scipy_mitdb_ecg", "ecg", 360.0, ecg, source=f"scipy {SCIPY_WHEEL_VERSION} wheel")


def synthetic_recordings(out: Path) -> list[dict]:
    """NeuroKit2 simulators at a fixed heart rate (no variability): known mean HR."""
    import neurokit2 as nk

    metas = []
    ecg = nk.ecg_simulate(duration=120, sampling_rate=250, heart_rate=72, heart_rate_std=0,
                          noise=0.0, random_state=7)
    ecg = nk.signal_distort(ecg, sampling_rate=250, noise_amplitude=0.05, noise_frequency=[5, 20],
                            artifacts_amplitude=0, powerline_amplitude=0.0, random_state=7)
    ecg = ecg + 0.3 * np.sin(2 * np.pi * 0.15 * np.arange(len(ecg)) / 250)  # baseline wander
    metas.append(_write(out, "nk_ecg_72bpm_noisy", "ecg", 250.0, ecg, source="neurokit2 simulator",
                        true_hr_bpm=72.0))
    ppg = nk.ppg_simulate(duration=120, sampling_rate=100, heart_rate=65, frequency_modulation=0.0,
                          ibi_randomness=0.0, drift=0.5, motion_amplitude=0.1,
                          powerline_amplitude=0.0, random_state=11)
    metas.append(_write(out, "nk_ppg_65bpm_drift", "ppg", 100.0, ppg, source="neurokit2 simulator",
                        true_hr_bpm=65.0))
    # With heart rate variability: NeuroKit2's own HRV on its own peaks is the reference.
    ecg = nk.ecg_simulate(duration=300, sampling_rate=500, heart_rate=65, heart_rate_std=4,
                          noise=0.02, random_state=3)
    metas.append(_write(out, "nk_ecg_hrv", "ecg", 500.0, ecg, source="neurokit2 simulator"))
    ppg = nk.ppg_simulate(duration=300, sampling_rate=100, heart_rate=70, frequency_modulation=0.3,
                          ibi_randomness=0.1, drift=0.1, motion_amplitude=0.05,
                          powerline_amplitude=0.0, random_state=5)
    metas.append(_write(out, "nk_ppg_hrv", "ppg", 100.0, ppg, source="neurokit2 simulator"))
    return metas


def _write(out: Path, name: str, signal: str, rate: float, values, times_s=None, **extra) -> dict:
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
        **extra,
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_values(rec: Path, meta: dict) -> np.ndarray:
    data = np.loadtxt(rec / f"{meta['name']}.csv", delimiter="," if meta["timestamps"] else None)
    return data[:, 1] if meta["timestamps"] else data


def neurokit_reference(values: np.ndarray, signal: str, rate: float) -> dict:
    import neurokit2 as nk

    if signal == "ecg":
        cleaned = nk.ecg_clean(values, sampling_rate=rate)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=rate, correct_artifacts=False)
        peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
    else:
        cleaned = nk.ppg_clean(values, sampling_rate=rate)
        peaks = np.asarray(nk.ppg_findpeaks(cleaned, sampling_rate=rate)["PPG_Peaks"], dtype=int)
    hrv: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in (nk.hrv_time, nk.hrv_frequency, nk.hrv_nonlinear):
            try:
                df = fn(peaks, sampling_rate=rate)
                hrv.update({k: float(v) for k, v in df.iloc[0].items() if np.isscalar(v)})
            except Exception as e:  # a reference that cannot compute a domain has no value
                hrv[f"error_{fn.__name__}"] = str(e)
    # NeuroKit2's own artifact correction (Lipponen & Tarvainen 2019, "Kubios" method): the
    # reference for NN-based features, which are defined after ectopic correction.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, fixed = nk.signal_fixpeaks(peaks, sampling_rate=rate, iterative=True, method="Kubios")
        fixed = np.asarray(fixed, dtype=int)
        corrected = nk.hrv_time(fixed, sampling_rate=rate).iloc[0].to_dict()
        try:
            corrected.update(nk.hrv_nonlinear(fixed, sampling_rate=rate).iloc[0].to_dict())
        except Exception as e:  # too few beats for NeuroKit2's nonlinear indices
            corrected["error_hrv_nonlinear"] = str(e)
    return {
        "version": nk.__version__,
        "peaks": peaks.tolist(),
        "hrv": _finite(hrv),
        "peaks_corrected": fixed.tolist(),
        "hrv_corrected": _finite({k: (float(v) if not isinstance(v, str) else v)
                                  for k, v in corrected.items() if np.isscalar(v)}),
    }


def heartpy_reference(values: np.ndarray, rate: float) -> dict:
    import heartpy as hp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wd, m = hp.process(values, sample_rate=rate)
    peaks = [int(p) for p, ok in zip(wd["peaklist"], wd["binary_peaklist"]) if ok]
    return {
        "version": hp.__version__ if hasattr(hp, "__version__") else "1.2.7",
        "peaks": peaks,
        "rejected_peaks": int(len(wd["peaklist"]) - len(peaks)),
        # Accepted RR intervals as [start peak index, ms]: what HeartPy's bpm/sdnn use.
        "rr_accepted": [[int(wd["peaklist"][i]), float(rr)]
                        for i, (rr, masked) in enumerate(zip(wd["RR_list"], wd["RR_masklist"]))
                        if not masked],
        "measures": _finite({k: float(v) for k, v in m.items() if np.isscalar(v)}),
    }


def _finite(d: dict) -> dict:
    return {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in d.items()}


def write_references(rec: Path, ref: Path, metas: list[dict]) -> None:
    ref.mkdir(parents=True, exist_ok=True)
    for meta in metas:
        values = load_values(rec, meta)
        t0 = time.perf_counter()
        out = {"name": meta["name"], "signal": meta["signal"], "rate_hz": meta["rate_hz"],
               "neurokit2": neurokit_reference(values, meta["signal"], meta["rate_hz"])}
        if meta["signal"] == "ppg":
            out["heartpy"] = heartpy_reference(values, meta["rate_hz"])
        (ref / f"{meta['name']}.json").write_text(json.dumps(out, indent=1))
        print(f"reference {meta['name']}: {len(out['neurokit2']['peaks'])} NeuroKit2 peaks "
              f"({time.perf_counter() - t0:.1f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    args = ap.parse_args()
    rec = args.cache / "recordings"
    syn = args.cache / "synthetic"
    rec.mkdir(parents=True, exist_ok=True)
    syn.mkdir(parents=True, exist_ok=True)
    metas = heartpy_recordings(rec)
    metas.append(scipy_ecg_recording(rec, args.cache / "wheels"))
    for m in metas:
        print(f"fetched {m['name']}: {m['signal']} {m['rate_hz']:.1f} Hz, {m['samples']} samples")
    smetas = synthetic_recordings(syn)
    write_references(rec, args.cache / "reference", metas)
    write_references(syn, args.cache / "reference", smetas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
