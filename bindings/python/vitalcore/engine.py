"""The engine from Python: open it as a context manager, run checks, and run the exact
on-device pipeline (the engine's own sessions: features, quality gate, the active model's
inference, the encrypted commit) over a folder of recordings.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

from ._native.vitalcore_ffi import (
    CheckKind,
    CheckResult,
    Engine,
    EngineConfig,
    KeyProvider,
    PredictionOutcome,
    Session,
    VitalcoreError,
)
from .recordings import Recording, load_recording
from .samples import pack_f64le

PathLike = Union[str, Path]

#: Longest check the engine takes, seconds; longer recordings are checked on their start.
MAX_CHECK_S = 600.0
# A second under the limit: the engine places each batch by its start time, and rounding
# there must not push the last batch over the limit.
_BUDGET_S = MAX_CHECK_S - 1.0

_KINDS = {"ppg": CheckKind.PPG_RHYTHM, "ecg": CheckKind.ECG_RHYTHM, "accel": CheckKind.ACTIVITY}
_CHANNELS = {"ppg": ["ppg"], "ecg": ["ecg"], "accel": ["accel_x", "accel_y", "accel_z"]}


class Purpose:
    """Consent purposes the engine uploads for (``engine.grant_consent(Purpose.RESEARCH, "v1")``)."""

    #: The app's own research study (``SyncOptions.study``).
    RESEARCH = "research"
    #: Training the models the app ships.
    MODEL_TRAINING = "model_training"
    #: Sharing with partner apps through the partner API.
    PARTNER_SHARING = "partner_sharing"

    @staticmethod
    def research(study: str) -> str:
        """A named research study (``[a-z0-9_]``)."""
        return f"research_{study}"


class EphemeralKey(KeyProvider):
    """A random root key held in memory, for throwaway engines (batch runs, tests).

    Apps pass a provider backed by their platform keystore instead.
    """

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def root_key(self) -> bytes:
        return self._key


@contextmanager
def open_engine(config: Union[EngineConfig, PathLike], keys: KeyProvider) -> Iterator[Engine]:
    """Opens the engine (``config`` or just a data directory) and shuts it down on exit."""
    if not isinstance(config, EngineConfig):
        config = EngineConfig(str(config))
    engine = Engine.open(config, keys)
    try:
        yield engine
    finally:
        engine.shutdown()


def push_recording(session: Session, rec: Recording, start_s: float, batch_s: float = 1.0) -> float:
    """Pushes a recording into a session in ``batch_s`` batches, as a sensor would deliver
    them (packed fast path for uniform data). Returns the seconds pushed (at most
    :data:`MAX_CHECK_S`)."""
    channels = _CHANNELS[rec.signal]
    n = min(len(rec.channels[0]), int(_BUDGET_S * rec.rate_hz))
    if rec.times is not None:
        # Timestamped: times relative to the first sample, anchored at start_s.
        n = sum(1 for t in rec.times if t - rec.times[0] < _BUDGET_S)
        step = max(1, int(batch_s * rec.rate_hz))
        for i in range(0, n, step):
            times = [start_s + t - rec.times[0] for t in rec.times[i : i + step]]
            for name, values in zip(channels, rec.channels):
                session.push_timestamped(name, times, values[i : i + step], rec.rate_hz)
        return rec.times[n - 1] - rec.times[0] if n else 0.0
    step = max(1, int(batch_s * rec.rate_hz))
    for i in range(0, n, step):
        for name, values in zip(channels, rec.channels):
            session.push_samples_f64le(name, start_s + i / rec.rate_hz, rec.rate_hz, pack_f64le(values[i : i + step]))
    return n / rec.rate_hz


def run_check(engine: Engine, rec: Recording, start_s: Optional[float] = None) -> CheckResult:
    """One health check of ``rec`` through the engine, exactly as an app runs it."""
    if rec.signal not in _KINDS:
        raise VitalcoreError.InvalidInput(f"{rec.name}: unknown signal kind")
    session = engine.start_check(_KINDS[rec.signal])
    try:
        push_recording(session, rec, time.time() if start_s is None else start_s)
        return session.finish()
    except BaseException:
        session.cancel()
        raise


def prediction_row(p: PredictionOutcome) -> Dict[str, object]:
    """Flat columns for a prediction outcome: ``prediction`` tag, then model outputs."""
    if isinstance(p, PredictionOutcome.PREDICTED):
        row: Dict[str, object] = {"prediction": "predicted", "model": f"{p.model_name} {p.model_version}"}
        row.update({f"out_{k}": v for k, v in sorted(p.outputs.items())})
        return row
    if isinstance(p, PredictionOutcome.QUALITY_TOO_LOW):
        return {"prediction": "quality_too_low"}
    if isinstance(p, PredictionOutcome.FEATURES_UNAVAILABLE):
        return {"prediction": "features_unavailable", "missing": ",".join(p.missing)}
    return {"prediction": "no_model"}


def check_folder(folder: PathLike, engine: Optional[Engine] = None) -> List[Dict[str, object]]:
    """The exact on-device pipeline over every ``NAME.csv`` + ``NAME.json`` in ``folder``:
    one engine check per recording (features, quality gate, the active model if any).

    Without ``engine``, a throwaway engine in a temporary directory is used (nothing is
    kept). One row per recording: ``recording``, ``seconds``, ``sqi``, ``acceptable``,
    ``peaks``, ``prediction`` (+ model outputs), then every feature computed. A recording the
    engine refuses gets an ``error`` entry and the run goes on.
    """
    if engine is None:
        with tempfile.TemporaryDirectory() as tmp, open_engine(tmp, EphemeralKey()) as e:
            return check_folder(folder, e)
    rows: List[Dict[str, object]] = []
    for csv_path in sorted(Path(folder).glob("*.csv")):
        if not csv_path.with_suffix(".json").exists():
            continue
        row: Dict[str, object] = {"recording": csv_path.stem}
        try:
            rec = load_recording(csv_path)
            r = run_check(engine, rec)
            c = r.check
            row.update(
                seconds=(c.ended_at_ms - c.started_at_ms) / 1000.0,
                sqi=c.quality.sqi,
                acceptable=c.quality.acceptable,
                peaks=len(r.peaks),
            )
            row.update(prediction_row(c.prediction))
            row.update(sorted(c.features.items()))
        except VitalcoreError as e:
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    return rows
