"""One training run: export -> split -> fit -> evaluate (and against the active model) ->
parity -> bundle on disk -> upload for the server to sign and publish.

Every refusal happens before the upload, so a refused model never reaches the server; the
bundle and its card are still written (status "refused: ...") to show why.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from trainer import active as active_model
from trainer import card, data, evaluate, model, parity
from trainer.client import Backend, decode_envelope
from trainer.errors import ConfigError, DataError, ProtocolError, Refused, TrainerError, WorseThanActive
from trainer.features import FEATURES_V1


@dataclass
class Options:
    """Everything a run needs; the CLI fills it from flags and environment."""

    server: str
    admin_token: str
    out: Path
    enrollment_token: str | None = None
    device_credential: str | None = None
    name: str = "rhythm-ppg"
    features: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=lambda: ["regular", "irregular"])
    kind: str | None = "ppg"
    study: str | None = None
    version: str | None = None
    held_out_fraction: float = 0.3
    split_salt: str = data.DEFAULT_SPLIT_SALT
    min_rows_per_class: int = 5
    n_estimators: int = 100
    max_depth: int = 2
    learning_rate: float = 0.1
    seed: int = 0
    bootstrap: int = 1000
    tolerance: float = 0.0
    # Publish only a model better than the active one: the paired bootstrap interval of the
    # AUROC difference (new - active) on the same held-out rows must lie above 0.
    require_improvement: bool = False
    parity_runner: str = "sdk"
    rollout_percent: int = 100
    valid_days: int = 365
    dry_run: bool = False
    progress: bool | None = None
    intended_use: str | None = None


@dataclass
class Outcome:
    """What a successful run produced."""

    version: str
    bundle_dir: Path
    report: dict[str, Any]
    published: bool


SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


def next_version(active: dict[str, Any] | None) -> str:
    """1.0.0 for the first model; otherwise the next major version after the active one."""
    if active is None:
        return "1.0.0"
    m = SEMVER.match(str(active.get("version", "")))
    if not m:
        raise ProtocolError("the active manifest's version is not semantic versioning")
    return f"{int(m.group(1)) + 1}.0.0"


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Semantic-versioning precedence, enough for MAJOR.MINOR.PATCH[-pre]: a pre-release sorts
    before its release (pre-release identifiers compare as text, a simplification)."""
    m = SEMVER.match(version)
    if not m:
        raise ProtocolError(f"version {version!r} is not semantic versioning")
    pre = version[m.end(3):].lstrip("-").split("+", 1)[0] if "-" in version[m.end(3):m.end(3) + 1] else ""
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre


def validate(opts: Options) -> None:
    unknown = [f for f in opts.features if f not in FEATURES_V1]
    if unknown:
        raise ConfigError(f"not in feature set v1: {', '.join(unknown)}")
    if not opts.features or len(set(opts.features)) != len(opts.features):
        raise ConfigError("give one or more distinct features")
    if len(opts.labels) != 2 or opts.labels[0] == opts.labels[1]:
        raise ConfigError("give exactly two distinct labels, negative first")
    if not 0.0 < opts.held_out_fraction < 1.0:
        raise ConfigError("the held-out fraction must be between 0 and 1")
    if opts.parity_runner not in parity.RUNNERS:
        raise ConfigError(f"unknown parity runner {opts.parity_runner!r}")
    if opts.version is not None and not SEMVER.match(opts.version):
        raise ConfigError("--version must be semantic versioning (MAJOR.MINOR.PATCH)")
    if opts.intended_use is None and opts.labels != list(card.RHYTHM_LABELS):
        raise ConfigError("the model card's intended use is written for regular/irregular rhythm: pass --intended-use")
    if opts.n_estimators < 1 or opts.max_depth < 1 or opts.bootstrap < 1:
        raise ConfigError("--n-estimators, --max-depth and --bootstrap must be at least 1")
    if not 0 <= opts.rollout_percent <= 100:
        raise ConfigError("--rollout must be within 0-100")
    if not (opts.enrollment_token or opts.device_credential):
        raise ConfigError(
            "a device credential or an enrollment token is needed to fetch the active model "
            "(the server's model registry is read through device routes)"
        )


class Stopwatch:
    """Wall time per stage, written to ``metrics.json`` to show where a run spends its time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def run(opts: Options, runner: parity.Runner | None = None, say: Callable[[str], None] = print) -> Outcome:
    """Runs the pipeline; raises a :class:`TrainerError` subclass on any failure or refusal.

    ``runner`` replaces the parity runner named in ``opts`` (tests inject faults through it).
    """
    validate(opts)
    backend = Backend(opts.server, opts.admin_token, progress=opts.progress)
    clock = Stopwatch()

    with clock.stage("export"):
        table = data.read_export(backend.export(opts.study))
    with clock.stage("select_split"):
        ds = data.build_dataset(
            table, opts.features, opts.labels, opts.kind, opts.held_out_fraction, opts.split_salt, opts.min_rows_per_class
        )
    say(
        f"export: {ds.counts['exported']} records, {ds.counts['used']} usable; "
        f"train {ds.counts['train_rows']} rows / {ds.counts['subjects_train']} subjects, "
        f"held-out {ds.counts['held_out_rows']} rows / {ds.counts['subjects_held_out']} subjects"
    )

    with clock.stage("fetch_active"):
        credential = opts.device_credential or backend.enroll(opts.enrollment_token or "")
        active = backend.active_model(opts.name, credential)
    version = opts.version or next_version(active.manifest if active else None)
    if active is not None and version_key(version) <= version_key(str(active.manifest.get("version"))):
        raise ConfigError(
            f"version {version} is not newer than the active {active_model.describe(active.manifest)}; "
            "devices only move to a greater version"
        )
    bundle = opts.out / f"{opts.name}-{version}"
    if (bundle / "signed.json").exists():
        raise ConfigError(f"{bundle} holds a published bundle already; choose another --out or --version")
    say(f"active model: {active_model.describe(active.manifest) if active else 'none'}; training {opts.name} {version}")

    with clock.stage("fit_export"):
        fitted = model.fit(
            ds.train.x, ds.train.y, opts.n_estimators, opts.max_depth, opts.learning_rate, opts.seed, opts.progress
        )
    with clock.stage("evaluate"):
        z_held = fitted.standardizer.apply(ds.held_out.x)
        p_new = model.ort_predict(fitted.onnx, z_held)[:, 1]
        metrics, _ = evaluate.bootstrap(
            ds.held_out.y, {"candidate": p_new}, ds.held_out.subjects, opts.bootstrap, opts.seed, progress=opts.progress
        )
    report: dict[str, Any] = {
        "status": "evaluated",
        "kind": opts.kind,
        "held_out_fraction": opts.held_out_fraction,
        "counts": ds.counts,
        "metrics": {k: e.as_dict() for k, e in metrics["candidate"].items()},
        "bootstrap": {"resamples": opts.bootstrap, "seed": opts.seed, "unit": "subject"},
        "params": fitted.params,
        "tools": model.tool_versions(),
        "comparison": None,
        "parity": None,
        "timings_s": clock.seconds,
        "intended_use": opts.intended_use or card.INTENDED_USE,
    }
    say("held-out: " + ", ".join(f"{k} {e}" for k, e in metrics["candidate"].items()))
    manifest = model.manifest(
        opts.name, version, opts.features, fitted.standardizer, opts.labels, fitted.onnx, z_held[0], opts.valid_days
    )
    report["manifest"] = manifest

    try:
        if active is not None:
            with clock.stage("compare_active"):
                _compare(opts, ds, active, p_new, say, report)
        chosen = runner or parity.RUNNERS[opts.parity_runner]
        with clock.stage("parity"):
            res = parity.check(fitted.onnx, z_held, opts.parity_runner, chosen, progress=opts.progress)
        report["parity"] = res.as_dict()
        say(f"parity: ONNX Runtime vs {res.runner} on {res.rows} rows, max abs diff {res.max_abs_diff:.3g}")
    except Refused as e:
        report["status"] = f"not published: {e}"
        _write_bundle(bundle, fitted.onnx, manifest, report)
        raise

    if opts.dry_run:
        report["status"] = "not published (dry run)"
        _write_bundle(bundle, fitted.onnx, manifest, report)
        return Outcome(version, bundle, report, published=False)

    try:
        with clock.stage("upload"):
            signed = backend.upload(manifest, fitted.onnx, opts.rollout_percent)
        served = decode_envelope(signed, "the upload answer")
        if served.get("version") != version or served.get("artifact", {}).get("sha256") != hashlib.sha256(fitted.onnx).hexdigest():
            raise ProtocolError("the server signed a manifest that differs from the one uploaded")
    except TrainerError as e:
        report["status"] = f"not published: {e}"
        _write_bundle(bundle, fitted.onnx, manifest, report)
        raise
    report["status"] = f"published (signed by key {signed['signatures'][0].get('key_id')})"
    report["published_manifest"] = served
    _write_bundle(bundle, fitted.onnx, manifest, report)
    (bundle / "signed.json").write_text(json.dumps(signed, indent=2) + "\n")
    say(f"published {opts.name} {version}; bundle and model card in {bundle}")
    return Outcome(version, bundle, report, published=True)


def _compare(
    opts: Options, ds: data.Dataset, active: Any, p_new: np.ndarray, say: Callable[[str], None], report: dict[str, Any]
) -> None:
    """Scores the active model on the held-out rows; ``report["comparison"]`` gets the figures
    (also when the new model is then refused, so its card shows why)."""
    try:
        p_old = active_model.score(active.manifest, active.onnx, ds.held_out_columns, opts.labels[1])
    except TrainerError:
        raise
    except Exception as e:  # onnxruntime raises its own classes for a model it cannot load
        raise ProtocolError(f"cannot run the active model {active_model.describe(active.manifest)}: {type(e).__name__}") from None
    common = np.isfinite(p_old)
    y = ds.held_out.y[common]
    if not 0 < y.sum() < len(y):
        raise DataError(
            f"cannot compare with the active model: {int(common.sum())} held-out rows carry its features, not both labels"
        )
    per_model, deltas = evaluate.bootstrap(
        y,
        {"candidate": p_new[common], "active": p_old[common]},
        ds.held_out.subjects[common],
        opts.bootstrap,
        opts.seed,
        progress=opts.progress,
    )
    new_auc, old_auc = per_model["candidate"]["auroc"].value, per_model["active"]["auroc"].value
    cmp = {
        "active": active_model.describe(active.manifest),
        "rows": int(common.sum()),
        "candidate": {k: e.as_dict() for k, e in per_model["candidate"].items()},
        "active_metrics": {k: e.as_dict() for k, e in per_model["active"].items()},
        "auroc_delta": deltas["active"].as_dict(),
        "tolerance": opts.tolerance,
    }
    say(f"against active {cmp['active']} on {cmp['rows']} rows: AUROC {new_auc:.3f} vs {old_auc:.3f}")
    report["comparison"] = cmp
    delta = deltas["active"]
    cmp["rule"] = (
        "better: paired AUROC difference CI above 0" if opts.require_improvement else f"not worse by more than {opts.tolerance:g} AUROC"
    )
    if opts.require_improvement and not delta.low > 0:
        raise WorseThanActive(
            f"refused: the new model is not better than the active {cmp['active']} on the same {cmp['rows']} held-out rows "
            f"(AUROC {new_auc:.3f} vs {old_auc:.3f}, difference {delta}; its interval must lie above 0)"
        )
    if new_auc < old_auc - opts.tolerance:
        raise WorseThanActive(
            f"refused: the new model is worse than the active {cmp['active']} on the same {cmp['rows']} held-out rows "
            f"(AUROC {new_auc:.3f} < {old_auc:.3f})"
        )


def _write_bundle(bundle: Path, onnx: bytes, manifest: dict[str, Any], report: dict[str, Any]) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "model.onnx").write_bytes(onnx)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (bundle / "metrics.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (bundle / "MODEL_CARD.md").write_text(card.render(report))
