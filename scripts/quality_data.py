#!/usr/bin/env python3
"""Quality references and stress recordings for the beat-level quality gate (``.cache/quality``).

Everything here is derived from the real recordings ``fetch_data.py`` put in
``.cache/recordings`` and from the reference tools, run on exactly the same samples:

* ``reference.json``: per analysis window (60 s, step 30 s, the last one ending at the
  recording's end: the engine's windows), NeuroKit2's verdicts: ``ecg_quality(method=
  "zhao2018", approach="fuzzy")`` for ECG ("Unacceptable" is unacceptable) and the mean of
  ``ppg_quality(method="templatematch")`` (Orphanidou's beat-template correlation) for PPG,
  acceptable at >= 0.86 (Orphanidou's threshold); and HeartPy's rejected beats (PPG).
* ``noisy/<recording>__<noise>__<snr>db.csv``: the recording plus noise from NeuroKit2's
  ``signal_distort`` (powerline, EMG-like broadband, motion artefacts, baseline wander),
  scaled so that signal power / noise power is exactly the stated SNR.
* ``rhythm/*.csv``: rhythms built from real beat shapes: every beat of a real recording is
  cut between consecutive peaks' midpoints (ECG: fixed QRS-T shapes, PPG: trough to trough,
  resampled to the new RR), then laid at new RR intervals: AF-like sequences (RR
  coefficient of variation 0.15-0.30, uncorrelated intervals) and regular rhythms at
  40-180 bpm. The sidecar gives the true beat positions.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

WINDOW_S = 60.0
STEP_S = 30.0
TEMPLATE_THRESHOLD = 0.86
SNRS_DB = (20, 10, 5, 0)
NOISES = ("powerline", "emg", "motion", "baseline")


def windows(n: int, fs: float) -> list[tuple[int, int]]:
    """The engine's analysis windows (core/signal/src/cardiac.rs)."""
    win, step = round(WINDOW_S * fs), round(STEP_S * fs)
    out, start = [], 0
    while True:
        end = min(start + win, n)
        out.append((start, end))
        if start + win >= n:
            return out
        start += step
        if start + win > n:
            start = max(n - win, 0)


def load(rec: Path, name: str) -> tuple[np.ndarray, dict]:
    meta = json.loads((rec / f"{name}.json").read_text())
    data = np.loadtxt(rec / f"{name}.csv", delimiter="," if meta["timestamps"] else None)
    return (data[:, 1] if meta["timestamps"] else data), meta


def references(x: np.ndarray, signal: str, fs: float, heartpy: bool = True) -> dict:
    import neurokit2 as nk

    out = {"windows": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if signal == "ecg":
            cleaned = nk.ecg_clean(x, sampling_rate=fs)
        else:
            cleaned = nk.ppg_clean(x, sampling_rate=fs)
        if signal == "ppg" and heartpy:
            import heartpy as hp

            wd, _ = hp.process(x, sample_rate=fs)
            out["heartpy_rejected_s"] = [
                float(p) / fs for p, ok in zip(wd["peaklist"], wd["binary_peaklist"]) if not ok
            ]
            out["heartpy_accepted_s"] = [
                float(p) / fs for p, ok in zip(wd["peaklist"], wd["binary_peaklist"]) if ok
            ]
        for lo, hi in windows(len(x), fs):
            seg = cleaned[lo:hi]
            w = {"start_s": lo / fs, "end_s": hi / fs}
            try:
                w.update(window_verdict(seg, signal, fs))
            except Exception as e:  # the tool cannot assess it (too few beats found): unusable
                w.update(acceptable=False, error=type(e).__name__)
            out["windows"].append(w)
    return out


def checks_30s(x: np.ndarray, signal: str, fs: float) -> list[dict]:
    """NeuroKit2's verdicts on consecutive 30 s checks (the whole recording if shorter): for
    ECG both of zhao2018's approaches, "acceptable" only when neither says Unacceptable."""
    import neurokit2 as nk

    n = round(30 * fs)
    starts = [0] if len(x) <= n else list(range(0, len(x) - n + 1, n))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(x, sampling_rate=fs) if signal == "ecg" else nk.ppg_clean(x, sampling_rate=fs)
        for lo in starts:
            seg = cleaned[lo:lo + n]
            c = {"start_s": lo / fs, "end_s": min(lo + n, len(x)) / fs}
            try:
                c.update(window_verdict(seg, signal, fs))
                if signal == "ecg":
                    c["acceptable"] = c["acceptable"] and c["zhao2018_simple"] != "Unacceptable"
            except Exception as e:  # the tool cannot assess it (too few beats found)
                c.update(acceptable=False, error=type(e).__name__)
            out.append(c)
    return out


def window_verdict(seg: np.ndarray, signal: str, fs: float) -> dict:
    import neurokit2 as nk

    if signal == "ecg":
        # The paper's fuzzy comprehensive evaluation decides; the simple heuristic fusion of
        # the same indices is kept beside it for readers.
        verdict = str(nk.ecg_quality(seg, sampling_rate=fs, method="zhao2018", approach="fuzzy"))
        simple = nk.ecg_quality(seg, sampling_rate=fs, method="zhao2018", approach="simple")
        return {"zhao2018": verdict, "zhao2018_simple": str(simple),
                "acceptable": verdict != "Unacceptable"}
    peaks = nk.ppg_findpeaks(seg, sampling_rate=fs)["PPG_Peaks"]
    score = float(np.nanmean(nk.ppg_quality(seg, peaks=peaks, sampling_rate=fs,
                                            method="templatematch")))
    return {"templatematch": score, "acceptable": bool(score >= TEMPLATE_THRESHOLD)}


def noise(x: np.ndarray, fs: float, kind: str, seed: int) -> np.ndarray:
    """Noise of one kind from NeuroKit2's ``signal_distort``, unit power."""
    import neurokit2 as nk

    args = dict(noise_amplitude=0, powerline_amplitude=0, artifacts_amplitude=0)
    if kind == "powerline":
        # Mains at 50 Hz. NeuroKit2's simulator refuses tones above a tenth of the sample rate
        # (it returns zeros), so the tone is drawn here: 50 Hz plus its third harmonic, sampled
        # at the recording's rate (aliased where that is below 100-300 Hz, as a real ADC does).
        t = np.arange(len(x)) / fs
        n = np.cos(2 * np.pi * 50 * t + 0.3) + 0.3 * np.cos(2 * np.pi * 150 * t + 1.1)
        return n / np.sqrt(np.mean(n**2))
    if kind == "emg":
        # Broadband: NeuroKit2 draws random noise at up to a tenth of the sample rate.
        args.update(noise_amplitude=1.0, noise_frequency=0.1 * fs, noise_shape="gaussian")
    elif kind == "motion":
        args.update(artifacts_amplitude=1.0, artifacts_frequency=2.0,
                    artifacts_number=max(3, int(len(x) / fs / 15)))
    elif kind == "baseline":
        args.update(noise_amplitude=1.0, noise_frequency=0.3, noise_shape="gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = nk.signal_distort(x, sampling_rate=fs, random_state=seed, silent=True, **args) - x
    n = n - n.mean()
    return n / np.sqrt(np.mean(n**2))


def beats_from(x: np.ndarray, peaks: np.ndarray, signal: str) -> list[tuple[np.ndarray, int]]:
    """Each beat with its peak offset. ECG: from the midpoint before its peak to the midpoint
    after; PPG: from the trough before its peak (the pulse's onset) to the next trough."""
    out = []
    for i in range(1, len(peaks) - 1):
        if signal == "ppg":
            lo = peaks[i - 1] + int(np.argmin(x[peaks[i - 1]:peaks[i]]))
            hi = peaks[i] + int(np.argmin(x[peaks[i]:peaks[i + 1]]))
        else:
            lo = (peaks[i - 1] + peaks[i]) // 2
            hi = (peaks[i] + peaks[i + 1]) // 2
        seg, off = x[lo:hi], int(peaks[i] - lo)
        if signal == "ppg" and not _plain_pulse(seg, off, x):
            continue
        if hi - lo > 2:
            out.append((seg.copy(), off))
    return out


def _plain_pulse(seg: np.ndarray, off: int, x: np.ndarray) -> bool:
    """A PPG pulse usable as a shape: not clipped, peak 60-400 ms after its onset (assumes
    the heartpy rate of about 100 Hz), between 0.4 and 1.6 s long."""
    lo, hi = x.min(), x.max()
    return (6 <= off <= 40 and 40 <= len(seg) <= 160
            and not np.any(seg <= lo) and not np.any(seg >= hi))


def lay(beats, rr_s: np.ndarray, fs: float, signal: str, rng) -> tuple[np.ndarray, list[int]]:
    """Concatenates real beats so that their peaks fall at the given RR intervals."""
    if signal == "ppg":
        return _lay_pulses(beats, rr_s, fs, rng)
    out: list[np.ndarray] = []
    peaks: list[int] = []
    pos = 0
    for rr in rr_s:
        seg, off = beats[rng.integers(len(beats))]
        n = max(4, int(round(rr * fs)))
        # The QRS-T complex keeps its shape, starting up to 250 ms before the R peak; a
        # longer interval than the source beat's is filled with its last (isoelectric)
        # level, a shorter one cuts the end of its T wave.
        pre = min(off, int(0.25 * fs), n // 3)
        seg2 = seg[off - pre: off - pre + n]
        if len(seg2) < n:
            seg2 = np.concatenate([seg2, np.full(n - len(seg2), seg2[-1])])
        # Join without steps: shift the beat so it starts where the last one ended.
        if out:
            seg2 = seg2 - seg2[0] + out[-1][-1]
        out.append(seg2)
        peaks.append(pos + pre)
        pos += len(seg2)
    return _detrend(np.concatenate(out), fs), peaks


def _lay_pulses(beats, rr_s: np.ndarray, fs: float, rng) -> tuple[np.ndarray, list[int]]:
    """PPG: each pulse keeps its upstroke and peak, placed so that its peak falls at the
    target time; it starts during the previous pulse's decay (cutting its tail) or after the
    previous pulse has settled (holding its last level)."""
    y: list[float] = []
    peaks: list[int] = []
    t = 0.3
    for rr in rr_s:
        t += rr
        target = int(round(t * fs))
        room = target - (peaks[-1] if peaks else 0)
        for _ in range(50):
            seg, off = beats[rng.integers(len(beats))]
            if off < 0.7 * room:
                break
        start = target - off
        if len(y) > start:
            del y[start:]
        elif y:
            y.extend([y[-1]] * (start - len(y)))
        else:
            y.extend([seg[0]] * start)
        shift = (y[-1] - seg[0]) if y else 0.0
        y.extend((seg + shift).tolist())
        peaks.append(target)
    return _detrend(np.asarray(y), fs), peaks


def _detrend(y: np.ndarray, fs: float) -> np.ndarray:
    """Removes the drift the joins accumulate (slower than the 0.5 Hz filters keep)."""
    k = int(fs * 2) | 1
    trend = np.convolve(np.pad(y, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    return y - trend + np.median(y)


def rhythms(x: np.ndarray, meta: dict, peaks: np.ndarray, out: Path, seed: int) -> list[dict]:
    fs, signal = meta["rate_hz"], meta["signal"]
    rng = np.random.default_rng(seed)
    beats = beats_from(x, np.asarray(peaks), signal)
    made = []
    for cv in (0.19, 0.24, 0.28):
        # AF-like: irregularly irregular, uncorrelated intervals around 90 bpm (nominal CV;
        # the clipping to physiological 0.3-2.0 s leaves a realised CV of about 0.15-0.30),
        # see the sidecar.
        rr = np.clip(rng.normal(0.67, 0.67 * cv, 200), 0.3, 2.0)
        rr = rr[: int(np.searchsorted(np.cumsum(rr), 120.0))]
        made.append(("af_cv%02d" % round(cv * 100), rr, "irregular"))
    for bpm in (40, 60, 100, 140, 180):
        n = int(120 * bpm / 60)
        rr = np.full(n, 60.0 / bpm) * (1 + rng.normal(0, 0.01, n))
        made.append((f"regular_{bpm}bpm", rr, "regular"))
    metas = []
    for tag, rr, rhythm in made:
        y, p = lay(beats, rr, fs, signal, rng)
        name = f"{meta['name']}__{tag}"
        np.savetxt(out / f"{name}.csv", y, fmt="%.6g")
        rr_ms = np.diff(p) * 1000.0 / fs
        m = {"name": name, "signal": signal, "rate_hz": fs, "rhythm": rhythm,
             "rr_cv": float(np.std(rr_ms) / np.mean(rr_ms)), "peaks": p,
             "source": f"beats of {meta['name']}"}
        (out / f"{name}.json").write_text(json.dumps(m))
        metas.append(m)
    return metas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    args = ap.parse_args()
    rec, q = args.cache / "recordings", args.cache / "quality"
    (q / "noisy").mkdir(parents=True, exist_ok=True)
    (q / "rhythm").mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in rec.glob("*.json"))
    refs = {}
    built: list[dict] = []
    for i, name in enumerate(names):
        x, meta = load(rec, name)
        fs = meta["rate_hz"]
        refs[name] = references(x, meta["signal"], fs)
        refs[name]["checks_30s"] = checks_30s(x, meta["signal"], fs)
        acc = sum(w["acceptable"] for w in refs[name]["windows"])
        print(f"quality reference {name}: {acc}/{len(refs[name]['windows'])} windows acceptable")
        power = np.mean((x - x.mean()) ** 2)
        for j, kind in enumerate(NOISES):
            n = noise(x, fs, kind, seed=100 * i + j)
            for snr in SNRS_DB:
                y = x + n * np.sqrt(power / 10 ** (snr / 10))
                noisy = f"{name}__{kind}__{snr}db"
                np.savetxt(q / "noisy" / f"{noisy}.csv", y, fmt="%.6g")
                refs[noisy] = references(y, meta["signal"], fs, heartpy=False)
        ref_peaks = json.loads((args.cache / "reference" / f"{name}.json").read_text())
        if name in ("heartpy_data3", "scipy_mitdb_ecg"):
            built += rhythms(x, meta, ref_peaks["neurokit2"]["peaks"], q / "rhythm", seed=7 + i)
    (q / "reference.json").write_text(json.dumps(refs, indent=1))
    # What the tests iterate over: every built rhythm, its source recording and its kind.
    (q / "rhythm" / "index.json").write_text(json.dumps([
        {"name": m["name"], "source": m["source"].removeprefix("beats of "), "signal": m["signal"],
         "rhythm": m["rhythm"], "rr_cv": m["rr_cv"]} for m in built], indent=1))
    (q / "noisy" / "index.json").write_text(json.dumps(
        {"snr_db": list(SNRS_DB), "noises": list(NOISES), "recordings": names}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
