"""Parity check: the exported ONNX gives the same outputs in ONNX Runtime and in a second runner.

The second runner is the SDK's own inference (tract) through the Python bindings, reached by
:func:`sdk_predict`; comparing ONNX Runtime with itself would prove nothing, so
there is no such option. ``onnx-reference`` (the ``onnx`` package's reference evaluator, an
independent pure-NumPy implementation of the operators) is available for machines without the
SDK module; the model card names the runner that was used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from trainer.errors import ParityFailure, RunnerUnavailable
from trainer.model import OUTPUT_NAME, PARITY_TOLERANCE, ort_predict

Runner = Callable[[bytes, np.ndarray], np.ndarray]
CHUNK = 256


def _sdk_model(vitalcore: Any, onnx_bytes: bytes, features: int) -> Any:
    """The SDK's prepared model for ``onnx_bytes``, loaded once per model: :func:`check` calls
    the runner chunk by chunk, and preparing a model costs far more than running a chunk."""
    key = (hashlib.sha256(onnx_bytes).digest(), features)
    if _SDK_CACHE.get("key") != key:
        _SDK_CACHE.clear()
        _SDK_CACHE["model"] = vitalcore.load_model(onnx_bytes, features, [OUTPUT_NAME])
        _SDK_CACHE["key"] = key
    return _SDK_CACHE["model"]


_SDK_CACHE: dict[str, Any] = {}


def sdk_predict(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    """Class probabilities of ``rows`` (float32, standardized) by the SDK's own inference.

    The one place that knows how the SDK is reached from Python: the ``vitalcore`` module built
    from ``bindings/`` (``pip install ./bindings``), whose :func:`vitalcore.load_model` and
    :func:`vitalcore.run_rows` run the engine's tract inference one row at a time, as a device
    does. Raises :class:`RunnerUnavailable` when that module is not importable, and
    :class:`ParityFailure` when the SDK refuses the model (a model the device cannot run must
    not be published).
    """
    try:
        import vitalcore  # noqa: PLC0415  (optional dependency, imported only when used)
    except ImportError:
        raise RunnerUnavailable(
            "SDK inference runner not available: the vitalcore Python module is not installed "
            "(pip install ./bindings)"
        ) from None
    if not all(hasattr(vitalcore, name) for name in ("load_model", "run_rows", "VitalcoreError")):
        raise RunnerUnavailable(
            "SDK inference runner not available: this vitalcore module has no load_model/run_rows "
            "(rebuild it from bindings/)"
        )
    rows32 = np.ascontiguousarray(rows, dtype=np.float32)
    if rows32.ndim != 2:
        raise ParityFailure(f"parity check failed: rows must be 2-D, got shape {rows32.shape}")
    try:
        sdk_model = _sdk_model(vitalcore, onnx_bytes, rows32.shape[1])
        out = vitalcore.run_rows(sdk_model, rows32, OUTPUT_NAME)
    except vitalcore.VitalcoreError as e:
        raise ParityFailure(f"parity check failed: the SDK's inference refused the model: {e}") from None
    return np.asarray(out, dtype=np.float64).reshape(len(rows32), -1)


def reference_predict(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    """Class probabilities by the ``onnx`` package's reference evaluator (not ONNX Runtime)."""
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    ev = ReferenceEvaluator(onnx_bytes)
    name = ev.input_names[0]
    return np.asarray(ev.run([OUTPUT_NAME], {name: rows.astype(np.float32)})[0], dtype=np.float64)


RUNNERS: dict[str, Runner] = {"sdk": sdk_predict, "onnx-reference": reference_predict}


@dataclass(frozen=True)
class ParityResult:
    """What the check compared and the largest difference it saw."""

    runner: str
    rows: int
    max_abs_diff: float
    tolerance: float

    def as_dict(self) -> dict[str, object]:
        return {"runner": self.runner, "rows": self.rows, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance}


def check(
    onnx: bytes,
    rows: np.ndarray,
    runner_name: str,
    runner: Runner,
    tolerance: float = PARITY_TOLERANCE,
    progress: bool | None = None,
) -> ParityResult:
    """Runs both on every row; :class:`ParityFailure` when any output differs by more than ``tolerance``."""
    worst = 0.0
    for start in tqdm(range(0, len(rows), CHUNK), desc=f"parity ({runner_name})", disable=None if progress is None else not progress):
        chunk = rows[start : start + CHUNK]
        a = ort_predict(onnx, chunk)
        b = np.asarray(runner(onnx, chunk), dtype=np.float64)
        if a.shape != b.shape:
            raise ParityFailure(
                f"parity check failed: ONNX Runtime gives shape {a.shape}, {runner_name} gives {b.shape}"
            )
        if not np.isfinite(b).all():
            raise ParityFailure(f"parity check failed: {runner_name} gives non-finite outputs")
        worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    if worst > tolerance:
        raise ParityFailure(
            f"parity check failed: ONNX Runtime and {runner_name} differ by {worst:.3g} on the held-out rows "
            f"(tolerance {tolerance:g})"
        )
    return ParityResult(runner_name, len(rows), worst, tolerance)
