"""A real ``vitalcore-server`` process, seeded the way devices seed it (tests and benchmark).

The server binary is ``target/debug/vitalcore-server`` (``make test-models`` builds it), or the
path in ``VITALCORE_SERVER_BIN``. It runs on 127.0.0.1 with an OS-chosen port (read from its
"listening" log line) and a temporary SQLite data dir. Records and labels arrive through the
real enrollment and gzip batch upload API, as the SDK's sync client sends them.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

MODELS = Path(__file__).resolve().parents[1]
REPO = MODELS.parent
sys.path.insert(0, str(MODELS))

ADMIN_TOKEN = "test-admin-token-0123456789"
ENROLL_TOKEN = "test-enrollment-token-0123"
HOUR = 1_790_000_000 // 3600 * 3600


def server_bin() -> Path:
    path = Path(os.environ.get("VITALCORE_SERVER_BIN", REPO / "target" / "debug" / "vitalcore-server"))
    if not path.is_file():
        pytest.fail(
            f"vitalcore-server binary not found at {path}: run `cargo build -p vitalcore-server` "
            "(make test-models does) or set VITALCORE_SERVER_BIN",
            pytrace=False,
        )
    return path


class Server:
    """A running server process; stops on :meth:`stop`."""

    def __init__(self, data_dir: Path, dev: bool = True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALCORE_")}
        env.update(
            VITALCORE_ADMIN_TOKEN=ADMIN_TOKEN,
            VITALCORE_ENROLLMENT_TOKENS=ENROLL_TOKEN,
            # Every upload enrolls a device from 127.0.0.1: not what these tests are about.
            VITALCORE_ENROLL_BURST="10000",
            RUST_LOG="info",
        )
        args = [str(server_bin()), "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
        args += ["--admin-listen", "127.0.0.1:0"]
        args += ["--data-dir", str(data_dir)] + (["--dev"] if dev else [])
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.url = ""
        while not self.url:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                self.stop()
                pytest.fail("vitalcore-server did not report its listening address within 30 s", pytrace=False)
            if line is None:
                pytest.fail(f"vitalcore-server exited with {self.proc.wait()} before listening", pytrace=False)
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if fields.get("message") == "listening":
                # The admin listener: it serves the admin routes the trainer needs and the
                # public ones it uses as a device (the public listener has no admin route).
                self.url = f"http://{fields['admin']}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- device side, as the SDK's sync client does it --------------------------------------

    def enroll(self) -> str:
        r = requests.post(f"{self.url}/v1/enroll", json={"enrollment_token": ENROLL_TOKEN}, timeout=10)
        assert r.status_code == 201, r.text
        return r.json()["credential"]

    def upload(self, records: list[dict], labels: list[dict], consent: list[str]) -> dict:
        cred = self.enroll()
        ack = {"records_stored": 0, "labels_stored": 0}
        # The server takes at most 5000 records per batch.
        for start in range(0, max(len(records), len(labels)), 2000):
            part_records, part_labels = records[start : start + 2000], labels[start : start + 2000]
            subjects = {r["subject"] for r in part_records} | {l["subject"] for l in part_labels}
            batch = {
                "schema": 1,
                "idempotency_key": "seed-" + secrets.token_hex(12),
                "region": "eu",
                "consent": consent,
                "records": part_records,
                "labels": part_labels,
                # The possession proof of each subject (a device derives it from its pseudonym
                # key; here a fixed function of the subject, the same on every upload).
                "subject_proofs": {s: hashlib.sha256(f"seed-proof/{s}".encode()).hexdigest() for s in subjects},
            }
            r = requests.post(
                f"{self.url}/v1/batches",
                data=gzip.compress(json.dumps(batch).encode()),
                headers={
                    "Authorization": f"Bearer {cred}",
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                },
                timeout=30,
            )
            assert r.status_code == 200, r.text
            for k in ack:
                ack[k] += r.json()[k]
        return ack

    def served_manifest(self) -> dict | None:
        """The manifest a fresh device is served for rhythm-ppg (decoded), or None (404)."""
        cred = self.enroll()
        r = requests.get(f"{self.url}/v1/models/rhythm-ppg/manifest", headers={"Authorization": f"Bearer {cred}"}, timeout=10)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return json.loads(base64.b64decode(r.json()["payload"]))

    def served_artifact(self, version: str) -> bytes:
        cred = self.enroll()
        r = requests.get(
            f"{self.url}/v1/models/rhythm-ppg/versions/{version}/artifact",
            headers={"Authorization": f"Bearer {cred}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.content


@dataclass
class Cohort:
    """Synthetic labelled checks of ``subjects`` people, with a known, noisy rhythm signal.

    Irregular checks have larger beat-to-beat variability and more flagged beats; a per-subject
    offset makes rows of one person alike (as real ones are), so a row-wise split would leak.
    ``beat_count`` carries no label information at all.
    """

    records: list[dict]
    labels: list[dict]


def make_cohort(subjects: int, per_subject: int, seed: int, kind: str = "ppg") -> Cohort:
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for s in range(subjects):
        # Deterministic, so the split (a hash of the subject id) and every figure repeat exactly.
        subject = f"p-{seed}-{s:04d}"
        offset = rng.normal(0.0, 8.0)
        propensity = rng.uniform(0.2, 0.8)
        for r in range(per_subject):
            irregular = bool(rng.random() < propensity)
            sdnn = max(5.0, rng.normal(70 if irregular else 45, 15) + offset)
            rmssd = max(5.0, rng.normal(60 if irregular else 35, 15) + offset)
            hr = rng.normal(72, 10)
            feats = {
                "hr_mean": hr,
                "hr_min": hr - abs(rng.normal(8, 3)),
                "hr_max": hr + abs(rng.normal(10, 4)),
                "sdnn": sdnn,
                "rmssd": rmssd,
                "pnn50": float(np.clip(rng.normal(25 if irregular else 12, 8), 0, 100)),
                "sd1": rmssd / np.sqrt(2) * rng.uniform(0.9, 1.1),
                "sd2": max(5.0, np.sqrt(max(2 * sdnn**2 - 0.5 * rmssd**2, 1.0)) * rng.uniform(0.9, 1.1)),
                "sample_entropy": max(0.1, rng.normal(1.6 if irregular else 1.3, 0.3)),
                "ectopic_fraction": float(np.clip(rng.normal(0.08 if irregular else 0.03, 0.04), 0, 1)),
                "beat_count": float(rng.integers(50, 90)),
                "sqi": float(rng.uniform(0.6, 1.0)),
            }
            rid = f"rec-{r:04d}"
            records.append(
                {
                    "record_id": rid,
                    "subject": subject,
                    "study": "rhythm",
                    "kind": kind,
                    "feature_set": "v1",
                    "captured_hour": HOUR + 3600 * r,
                    "age_band": "40-49",
                    "quality": feats["sqi"],
                    "features": {k: float(v) for k, v in feats.items()},
                }
            )
            labels.append({"subject": subject, "record_id": rid, "label": "irregular" if irregular else "regular"})
    return Cohort(records, labels)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def bindings_path() -> Path:
    """The directory the ``vitalcore`` wheel is installed into (``make test-models`` builds it
    once with ``make test-bindings-python`` and names it in ``VITALCORE_BINDINGS_PYTHONPATH``)."""
    raw = os.environ.get("VITALCORE_BINDINGS_PYTHONPATH")
    if not raw or not (Path(raw) / "vitalcore" / "__init__.py").is_file():
        pytest.fail(
            f"the vitalcore Python bindings are not installed (VITALCORE_BINDINGS_PYTHONPATH={raw!r}): "
            "run `make test-models`, which builds and installs the wheel",
            pytrace=False,
        )
    return Path(raw)


def run_trainer(server_url: str, out: Path, *args: str, admin: str = ADMIN_TOKEN, bindings: bool = False) -> Run:
    """The CLI as an operator runs it: ``python -m trainer train`` in a child process; with
    ``bindings``, the ``vitalcore`` module is importable (else it is not)."""
    path = str(MODELS) + (os.pathsep + str(bindings_path()) if bindings else "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALCORE_")}
    env.update(VITALCORE_ADMIN_TOKEN=admin, VITALCORE_ENROLLMENT_TOKEN=ENROLL_TOKEN, PYTHONPATH=path)
    cmd = [sys.executable, "-m", "trainer", "train", "--server", server_url, "--out", str(out), "--bootstrap", "200"]
    p = subprocess.run(cmd + list(args), env=env, capture_output=True, text=True, timeout=300)
    return Run(p.returncode, p.stdout, p.stderr)
