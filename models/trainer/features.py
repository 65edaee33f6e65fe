"""Feature set ``v1``: names and units, exactly as ``core/protocol/src/feature_set.rs`` lists them.

The trainer must fit on the same names the SDK fills the input tensor by, and a manifest's
units must equal the feature set's (the SDK refuses it otherwise). A test reads the Rust table
and fails when the two drift apart.
"""

from __future__ import annotations

FEATURE_SET = "v1"

# name -> unit, in the canonical order of the Rust table.
FEATURES_V1: dict[str, str] = {
    "hr_mean": "bpm",
    "hr_min": "bpm",
    "hr_max": "bpm",
    "mean_nn": "ms",
    "sdnn": "ms",
    "rmssd": "ms",
    "sdsd": "ms",
    "pnn20": "%",
    "pnn50": "%",
    "lf_power": "ms^2",
    "hf_power": "ms^2",
    "lf_hf_ratio": "1",
    "sd1": "ms",
    "sd2": "ms",
    "sample_entropy": "1",
    "beat_count": "1",
    "ectopic_fraction": "1",
    "sqi": "1",
    "enmo_mean": "mg",
    "step_count": "1",
    "cadence": "steps/min",
    "dominant_freq": "Hz",
    "intensity_class": "1",
}

# The default model's inputs: rhythm features of a pulse recording, each defined on a 30 s check
# (`sample_entropy` needs 20 clean NN intervals, so a model reading it gets no answer on the
# checks watches and phones take). `sqi` stays out on purpose: a model must not learn "poor
# signal" as "irregular rhythm".
DEFAULT_FEATURES: tuple[str, ...] = (
    "hr_mean",
    "sdnn",
    "rmssd",
    "pnn50",
    "sd1",
    "sd2",
    "ectopic_fraction",
)

# Column name of a feature in the backend's Arrow export.
EXPORT_PREFIX = "f_"


def unit_of(name: str) -> str:
    """Unit of a ``v1`` feature; ``KeyError`` for a name outside the set."""
    return FEATURES_V1[name]
