"""Parity check: the exported ONNX gives the same outputs in ONNX Runtime and in a second runner.

The second runner is meant to be the SDK's own inference (tract) through the Python bindings,
reached by :func:`sdk_predict`; comparing ONNX Runtime with itself would prove nothing, so
there is no such option. ``onnx-reference`` (the ``onnx`` package's reference evaluator, an
independent pure-NumPy implementation of the operators) is available for machines without the
SDK module; the model card names the runner that was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from trainer.errors import ParityFailure, RunnerUnavailable
from trainer.model import OUTPUT_NAME, PARITY_TOLERANCE, ort_predict

Runner = Callable[[bytes, np.ndarray], np.ndarray]
CHUNK = 256


def sdk_predict(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    """Class probabilities of ``rows`` (float32, standardized) by the SDK's own inference.

    The one place that knows how the SDK is reached from Python: the ``vitalcore`` module built
    from ``bindings/python``. Raises :class:`RunnerUnavailable` while that module has no ONNX
    model object (it does not yet expose the engine's inference).
    """
    try:
        import vitalcore  # noqa: PLC0415  (optional dependency, imported only when used)
    except ImportError:
        raise RunnerUnavailable(
            "SDK inference runner not available: the vitalcore Python module is not installed "
            "(pip install ./bindings)"
        ) from None
    model_cls = getattr(vitalcore, "OnnxModel", None)
    if model_cls is None:
        raise RunnerUnavailable(
            "SDK inference runner not available: this vitalcore module has no ONNX model object yet"
        )
    raise RunnerUnavailable(
        "SDK inference runner not available: vitalcore.OnnxModel exists but this trainer does not know its API yet"
    )


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
