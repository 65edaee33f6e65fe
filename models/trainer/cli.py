"""``python -m trainer train ...``: the command line of the training pipeline.

Exit status: 0 when the model was published (or, with ``--dry-run``, would have been), 3 when
the trainer refused to publish it (worse than the active model, parity failure), 1 on any
other failure, 2 on bad usage. A failure prints exactly one line, ``trainer: <what went
wrong>``, on standard error; progress bars appear only on a terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from trainer import parity
from trainer.data import DEFAULT_SPLIT_SALT
from trainer.errors import EXIT_FAILURE, ConfigError, TrainerError
from trainer.features import DEFAULT_FEATURES
from trainer.pipeline import Options, run

DEBUG_ENV = "VITALCORE_TRAINER_DEBUG"
# Beside the package, git-ignored (models/.gitignore), wherever the command is run from.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "trainer-out"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (exit status 2), like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"trainer: usage: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m trainer", description="vitalcore training pipeline")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser(
        "train",
        help="export, fit, evaluate, check parity and publish one model version",
        description="Pulls the labelled training export from vitalcore-server, fits on feature set v1 "
        "by name, evaluates on held-out subjects, refuses a model worse than the active one or "
        "failing the parity check, and uploads the bundle for the server to sign and publish.",
    )
    env = os.environ.get
    t.add_argument("--server", default=env("VITALCORE_SERVER_URL"), help="base URL (env VITALCORE_SERVER_URL)")
    t.add_argument(
        "--admin-token-env",
        default="VITALCORE_ADMIN_TOKEN",
        help="environment variable holding the admin token (default VITALCORE_ADMIN_TOKEN); "
        "secrets are not taken as flags so they stay out of shell history and process lists",
    )
    t.add_argument(
        "--enrollment-token-env",
        default="VITALCORE_ENROLLMENT_TOKEN",
        help="environment variable holding an enrollment token, used to read the active model as a device",
    )
    t.add_argument(
        "--device-credential-env",
        default="VITALCORE_DEVICE_CREDENTIAL",
        help="environment variable holding a device credential (instead of enrolling)",
    )
    t.add_argument("--name", default="rhythm-ppg", help="model name (default rhythm-ppg)")
    t.add_argument("--features", type=_csv, default=list(DEFAULT_FEATURES), help="comma-separated v1 feature names")
    t.add_argument("--labels", type=_csv, default=["regular", "irregular"], help="negative,positive (default regular,irregular)")
    t.add_argument("--kind", default="ppg", help="only records of this kind (default ppg; 'any' for all)")
    t.add_argument("--study", default=None, help="only records of this study")
    t.add_argument("--version", default=None, help="version to publish (default: next major after the active one, or 1.0.0)")
    t.add_argument("--held-out", type=float, default=0.3, dest="held_out_fraction", help="share of subjects held out (default 0.3)")
    t.add_argument("--split-salt", default=DEFAULT_SPLIT_SALT, help="salt of the subject split; keep it fixed across versions")
    t.add_argument("--min-rows-per-class", type=int, default=5, help="fewest rows of each label on each side (default 5)")
    t.add_argument("--n-estimators", type=int, default=100)
    t.add_argument("--max-depth", type=int, default=2)
    t.add_argument("--learning-rate", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    t.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="how much lower than the active model's held-out AUROC the new one may be (default 0)",
    )
    t.add_argument(
        "--require-improvement",
        action="store_true",
        help="publish only a model better than the active one: the paired bootstrap interval of the held-out "
        "AUROC difference (new - active) must lie above 0",
    )
    t.add_argument(
        "--parity-runner",
        choices=sorted(parity.RUNNERS),
        default="sdk",
        help="second runner of the parity check against ONNX Runtime: sdk (the SDK's own inference "
        "through the vitalcore Python module; default) or onnx-reference (the onnx package's reference evaluator)",
    )
    t.add_argument("--rollout", type=int, default=100, dest="rollout_percent", help="share of devices, 0-100 (default 100)")
    t.add_argument("--valid-days", type=int, default=365, help="days until devices refuse the manifest (default 365)")
    t.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where bundles and model cards are written (default models/trainer-out)"
    )
    t.add_argument("--dry-run", action="store_true", help="do everything except the upload")
    t.add_argument(
        "--intended-use",
        default=None,
        help="intended-use paragraph of the model card (required unless the labels are regular,irregular)",
    )
    bar = t.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="always show progress bars")
    bar.add_argument("--no-progress", action="store_false", dest="progress", help="never show progress bars")
    return ap


def options(ns: argparse.Namespace) -> Options:
    if not ns.server:
        raise ConfigError("no server: pass --server or set VITALCORE_SERVER_URL")
    admin = os.environ.get(ns.admin_token_env)
    if not admin:
        raise ConfigError(f"no admin token: set {ns.admin_token_env}")
    return Options(
        server=ns.server,
        admin_token=admin,
        out=ns.out,
        enrollment_token=os.environ.get(ns.enrollment_token_env) or None,
        device_credential=os.environ.get(ns.device_credential_env) or None,
        name=ns.name,
        features=ns.features,
        labels=ns.labels,
        kind=None if ns.kind == "any" else ns.kind,
        study=ns.study,
        version=ns.version,
        held_out_fraction=ns.held_out_fraction,
        split_salt=ns.split_salt,
        min_rows_per_class=ns.min_rows_per_class,
        n_estimators=ns.n_estimators,
        max_depth=ns.max_depth,
        learning_rate=ns.learning_rate,
        seed=ns.seed,
        bootstrap=ns.bootstrap,
        tolerance=ns.tolerance,
        require_improvement=ns.require_improvement,
        parity_runner=ns.parity_runner,
        rollout_percent=ns.rollout_percent,
        valid_days=ns.valid_days,
        dry_run=ns.dry_run,
        progress=ns.progress,
        intended_use=ns.intended_use,
    )


def main(argv: Sequence[str] | None = None, runner: parity.Runner | None = None) -> int:
    """Runs the CLI; returns the exit status. ``runner`` overrides the parity runner (tests)."""
    ns = parser().parse_args(argv)
    try:
        run(options(ns), runner=runner)
    except TrainerError as e:
        print(f"trainer: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("trainer: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        # A bug, not a refusal. Its message may quote data (a library's ValueError can), so
        # only the class is printed unless the operator asks for the traceback.
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"trainer: unexpected error ({type(e).__name__}); set {DEBUG_ENV}=1 for the traceback", file=sys.stderr)
        return EXIT_FAILURE
    return 0
