"""The SDK's own ONNX inference from Python: the engine a device runs, on rows of feature values.

:class:`OnnxModel` (generated binding) loads a model from bytes with its input pinned (for rows
of ``n`` features, ``[1, n]``), reports the input and output facts, and runs rows one at a time
exactly as a device does. :func:`load_model` and :func:`run_rows` add file paths and NumPy
arrays. ONNX Runtime parity checks compare against these outputs.
"""
from __future__ import annotations

import os
import sys
from array import array
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from ._native.vitalcore_ffi import OnnxModel, VitalcoreError

PathLike = Union[str, "os.PathLike[str]"]


def load_model(onnx: Union[bytes, PathLike], features: int, outputs: Optional[Sequence[str]] = None) -> OnnxModel:
    """Loads ``onnx`` (bytes or a file path) for rows of ``features`` values (input ``[1, features]``)."""
    data = onnx if isinstance(onnx, (bytes, bytearray)) else Path(onnx).read_bytes()
    return OnnxModel(bytes(data), [1, features], None if outputs is None else list(outputs))


def _pack_rows(rows: Any) -> bytes:
    """Rows as little-endian float32 bytes, row after row."""
    if hasattr(rows, "astype") and hasattr(rows, "tobytes"):  # a NumPy array, without importing NumPy
        return rows.astype("<f4", order="C", copy=False).tobytes(order="C")
    flat = array("f", (float(v) for row in rows for v in row))
    if sys.byteorder != "little":
        flat.byteswap()
    return flat.tobytes()


def run_rows(model: OnnxModel, rows: Any, output: str) -> List[List[float]]:
    """Output ``output`` of each row (a 2-D NumPy array or a sequence of equal-length sequences of
    feature values, cast to float32 as the device does), one list per row.

    Raises :class:`VitalcoreError.InvalidInput` for rows of the wrong length or an unknown output.
    """
    n = len(rows)
    if n == 0:
        return []
    packed = model.run_rows_f32le(_pack_rows(rows), output)
    values = array("f")
    values.frombytes(packed)
    if sys.byteorder != "little":
        values.byteswap()
    width = len(values) // n
    return [list(values[i * width : (i + 1) * width]) for i in range(n)]


__all__ = ["OnnxModel", "VitalcoreError", "load_model", "run_rows"]
