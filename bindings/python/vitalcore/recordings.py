"""Run the on-device analysis over recordings on disk.

A recording is ``NAME.csv`` plus a JSON sidecar ``NAME.json`` with at least
``{"signal": "ecg" | "ppg" | "accel", "rate_hz": <float>}`` and optionally
``"timestamps": true`` (first CSV column is time in seconds; the remaining columns are the
samples). ECG/PPG files have one sample column, accelerometer files three (x, y, z in g).
This is the layout ``make data`` writes into ``.cache/recordings``.

Timestamped files are analysed at their declared ``rate_hz`` as if uniformly sampled: the
gap handling of the ``vitalcore analyze`` CLI is not exposed through the bindings yet.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from ._native.vitalcore_ffi import Analysis, CardiacSignal, VitalcoreError, analyze_accel, analyze_cardiac_f64le
from .samples import pack_f64le

PathLike = Union[str, Path]

_CARDIAC = {"ecg": CardiacSignal.ECG, "ppg": CardiacSignal.PPG}


@dataclass(frozen=True)
class Recording:
    """One recording loaded from disk."""

    name: str
    signal: str
    rate_hz: float
    #: One list per channel: one for ECG/PPG, three (x, y, z) for accel.
    channels: List[List[float]]
    #: Sample times in seconds (first CSV column) for timestamped files, else ``None``.
    times: Optional[List[float]] = None


def load_recording(csv_path: PathLike) -> Recording:
    """Reads ``NAME.csv`` and its ``NAME.json`` sidecar.

    Raises ``VitalcoreError.InvalidInput`` for a missing sidecar key, an unknown signal or a
    row with the wrong number of columns (the message names the row, not its values).
    """
    path = Path(csv_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    try:
        signal = str(meta["signal"])
        rate = float(meta["rate_hz"])
    except (KeyError, TypeError, ValueError):
        raise VitalcoreError.InvalidInput(f"{path.name}: sidecar needs 'signal' and 'rate_hz'") from None
    expected = 3 if signal == "accel" else 1
    if signal != "accel" and signal not in _CARDIAC:
        raise VitalcoreError.InvalidInput(f"{path.name}: unknown signal kind")
    skip = 1 if meta.get("timestamps") else 0
    channels: List[List[float]] = [[] for _ in range(expected)]
    times: List[float] = []
    with path.open(newline="") as f:
        for row_no, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                values = [float(v) for v in row[skip:]]
            except ValueError:
                if row_no == 1:  # a header line
                    continue
                raise VitalcoreError.InvalidInput(f"{path.name}: row {row_no} is not numeric") from None
            if len(values) != expected:
                raise VitalcoreError.InvalidInput(
                    f"{path.name}: row {row_no} has {len(values)} sample columns, expected {expected}"
                )
            if skip:
                times.append(float(row[0]))
            for ch, v in zip(channels, values):
                ch.append(v)
    return Recording(
        name=str(meta.get("name", path.stem)),
        signal=signal,
        rate_hz=rate,
        channels=channels,
        times=times if skip else None,
    )


def analyze_recording(rec: Recording) -> Analysis:
    """Runs the analysis the engine runs on-device for this kind of signal."""
    if rec.signal == "accel":
        x, y, z = rec.channels
        return analyze_accel(x, y, z, rec.rate_hz)
    return analyze_cardiac_f64le(_CARDIAC[rec.signal], pack_f64le(rec.channels[0]), rec.rate_hz)


def iter_folder(folder: PathLike) -> Iterator[Tuple[Path, Union[Analysis, VitalcoreError]]]:
    """Yields ``(csv_path, analysis or error)`` for every ``*.csv`` with a sidecar, sorted by name.

    A recording the engine rejects yields its ``VitalcoreError`` instead of stopping the run.
    """
    for csv_path in sorted(Path(folder).glob("*.csv")):
        if not csv_path.with_suffix(".json").exists():
            continue
        try:
            yield csv_path, analyze_recording(load_recording(csv_path))
        except VitalcoreError as e:
            yield csv_path, e


def analyze_folder(folder: PathLike) -> List[Dict[str, object]]:
    """One flat row per recording: name, quality, beat/step count and every v1 feature.

    Rows are plain dicts, ready for ``pandas.DataFrame(rows)`` or ``csv.DictWriter``.
    A rejected recording has an ``error`` entry and no features.
    """
    rows: List[Dict[str, object]] = []
    for path, result in iter_folder(folder):
        row: Dict[str, object] = {"recording": path.stem}
        if isinstance(result, VitalcoreError):
            row["error"] = f"{type(result).__name__}: {result}"
        else:
            row.update(sqi=result.sqi, acceptable=result.acceptable, peaks=len(result.peaks))
            row.update({f.name: f.value for f in result.features})
        rows.append(row)
    return rows
