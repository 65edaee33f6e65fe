"""vitalcore from Python: the exact on-device feature extraction, from the library the apps ship.

Everything here is the generated uniffi binding of the Rust crate ``vitalcore-ffi``
(module ``vitalcore.vitalcore_ffi``), re-exported, plus :mod:`vitalcore.recordings` for
running the analysis over a folder of recordings, and :mod:`vitalcore.engine` (``open_engine``
context manager, ``check_folder``: the engine's own check pipeline over a folder).

Errors are :class:`VitalcoreError` subclasses (``VitalcoreError.InvalidInput``,
``.Storage``, ``.Crypto``, ``.Network``, ``.ModelRejected``, ``.ConsentRequired``,
``.Interrupted``, ``.Closed``, ``.NotFound``, ``.Backpressure``, ``.Internal``); a bug inside the native library raises
:class:`InternalError`, it never crashes the interpreter.
"""
from __future__ import annotations

from ._native.vitalcore_ffi import (
    Analysis,
    BatchSummary,
    CaptureStats,
    CheckKind,
    CheckResult,
    Engine,
    EngineConfig,
    Label,
    PredictionOutcome,
    QualityReport,
    RawSamples,
    Session,
    Capture,
    StoredCheck,
    Timings,
    open_engine_async,
    CardiacSignal,
    FeatureInfo,
    FeatureSource,
    FeatureValue,
    InternalError,
    KeyProvider,
    UnavailableFeature,
    VersionInfo,
    VitalcoreError,
    analyze_accel,
    analyze_cardiac,
    analyze_cardiac_async,
    analyze_cardiac_f64le,
    feature_count,
    feature_info,
    features_v1,
    key_fingerprint,
    key_fingerprint_async,
    validate_batch,
    validate_batch_f64le,
    version_info,
)
from .samples import pack_f64le
from .engine import EphemeralKey, check_folder, open_engine, push_recording, run_check
from .recordings import Recording, analyze_folder, analyze_recording, load_recording

__version__: str = version_info().sdk_version

__all__ = [
    "CaptureStats",
    "CheckKind",
    "CheckResult",
    "Engine",
    "EngineConfig",
    "Label",
    "PredictionOutcome",
    "QualityReport",
    "RawSamples",
    "Session",
    "Capture",
    "StoredCheck",
    "Timings",
    "open_engine_async",
    "EphemeralKey",
    "check_folder",
    "open_engine",
    "push_recording",
    "run_check",
    "Analysis",
    "BatchSummary",
    "CardiacSignal",
    "FeatureInfo",
    "FeatureSource",
    "FeatureValue",
    "InternalError",
    "KeyProvider",
    "Recording",
    "UnavailableFeature",
    "VersionInfo",
    "VitalcoreError",
    "analyze_accel",
    "analyze_cardiac",
    "analyze_cardiac_async",
    "analyze_cardiac_f64le",
    "analyze_folder",
    "analyze_recording",
    "feature_count",
    "feature_info",
    "features_v1",
    "key_fingerprint",
    "key_fingerprint_async",
    "load_recording",
    "pack_f64le",
    "validate_batch",
    "validate_batch_f64le",
    "version_info",
]
