"""Scores the held-out rows with the model the server serves now, by its own manifest.

The active model may take other features, or the same ones with other means and scales; its
manifest says which, so its inputs are built from the held-out rows' raw columns exactly as a
device builds them, and it is run with ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.errors import ProtocolError
from trainer.model import ort_predict


def describe(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('name')} {manifest.get('version')}"


def score(manifest: dict[str, Any], onnx: bytes, columns: dict[str, np.ndarray], positive: str) -> np.ndarray:
    """Positive-class probability per held-out row; NaN where the row lacks one of its features."""
    spec = manifest.get("input") or {}
    if spec.get("kind") != "features":
        raise ProtocolError(f"active model {describe(manifest)} does not take named features; cannot compare")
    n = len(next(iter(columns.values()))) if columns else 0
    x = np.full((n, len(spec.get("features", []))), np.nan)
    for j, f in enumerate(spec.get("features", [])):
        col = columns.get(f.get("name"))
        scale = float(f.get("scale", 1.0))
        if scale == 0:
            raise ProtocolError(f"active model {describe(manifest)} declares scale 0 for {f.get('name')}")
        if col is not None:
            x[:, j] = (col - float(f.get("mean", 0.0))) / scale
    outputs = manifest.get("outputs") or {}
    labels = outputs.get("labels") or []
    if positive not in labels:
        raise ProtocolError(f"active model {describe(manifest)} has no output for label {positive!r}; cannot compare")
    out = np.full(n, np.nan)
    ok = np.isfinite(x).all(axis=1)
    if ok.any():
        probs = ort_predict(onnx, x[ok].astype(np.float32), outputs.get("output_name", "probabilities"))
        out[ok] = probs[:, labels.index(positive)]
    return out
