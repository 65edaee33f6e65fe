"""The trainer against a real vitalcore-server: publish, refusals, server refusals, thin data."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from harness import ADMIN_TOKEN, ENROLL_TOKEN, Server, make_cohort, run_trainer
from trainer import cli, parity

REF = ("--parity-runner", "onnx-reference")
WEAK = ("--features", "hr_mean,sdnn")


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("trainer: ")
    return lines[0]


def seed(server: Server, subjects: int = 60, per_subject: int = 8, seed: int = 1) -> None:
    c = make_cohort(subjects, per_subject, seed)
    ack = server.upload(c.records, c.labels, ["research", "model_training"])
    assert ack["records_stored"] == len(c.records)


def test_publish_then_better_version_is_served(server: Server, tmp_path: Path) -> None:
    seed(server)
    # Noise the trainer must leave out: unlabelled checks, another kind, no training consent.
    other = make_cohort(10, 4, seed=7, kind="ecg")
    server.upload(other.records, other.labels, ["model_training"])
    research_only = make_cohort(10, 4, seed=8)
    server.upload(research_only.records, research_only.labels, ["research"])
    unlabelled = make_cohort(5, 4, seed=9)
    server.upload(unlabelled.records, [], ["model_training"])

    first = run_trainer(server.url, tmp_path, *REF, *WEAK)
    assert first.code == 0, first.stderr
    served = server.served_manifest()
    assert served is not None and served["version"] == "1.0.0"
    bundle = tmp_path / "rhythm-ppg-1.0.0"
    onnx_bytes = (bundle / "model.onnx").read_bytes()
    assert server.served_artifact("1.0.0") == onnx_bytes
    assert served["artifact"] == {"sha256": hashlib.sha256(onnx_bytes).hexdigest(), "length": len(onnx_bytes)}
    assert [f["name"] for f in served["input"]["features"]] == ["hr_mean", "sdnn"]
    assert [f["unit"] for f in served["input"]["features"]] == ["bpm", "ms"]
    assert served["outputs"] == {"output_name": "probabilities", "labels": ["regular", "irregular"], "threshold": 0.5}
    # The served self-test is what ONNX Runtime computes for the served artifact.
    st = served["self_test"]
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(["probabilities"], {"X": np.asarray([st["input"]], dtype=np.float32)})[0][0]
    assert np.max(np.abs(got - np.asarray(st["expected"]))) <= st["tolerance"]

    report = json.loads((bundle / "metrics.json").read_text())
    counts = report["counts"]
    assert counts["exported"] == 60 * 8 + 10 * 4 + 5 * 4, "research-only records are not exported"
    assert counts["dropped_unlabelled"] == 20
    assert counts["dropped_other_kind"] == 40
    assert counts["used"] == 480 == counts["train_rows"] + counts["held_out_rows"]
    assert counts["subjects_train"] + counts["subjects_held_out"] == 60
    assert 0.15 < counts["held_out_rows"] / 480 < 0.45
    for k in ("auroc", "accuracy", "f1"):
        e = report["metrics"][k]
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
    assert report["metrics"]["auroc"]["value"] > 0.6, "the cohort carries a learnable signal"
    assert report["comparison"] is None
    card = (bundle / "MODEL_CARD.md").read_text()
    for needle in ("What it is not for", "Not a medical device", "95% CI", "onnx-reference", "published"):
        assert needle in card
    on_disk = card + (bundle / "metrics.json").read_text() + (bundle / "manifest.json").read_text()
    assert not any(r["subject"] in on_disk for r in make_cohort(60, 8, 1).records), "no subject ids in the bundle"

    # More signal (all rhythm features) on the same held-out subjects: better, published as 2.0.0.
    second = run_trainer(server.url, tmp_path, *REF)
    assert second.code == 0, second.stderr
    assert server.served_manifest()["version"] == "2.0.0"
    cmp = json.loads((tmp_path / "rhythm-ppg-2.0.0" / "metrics.json").read_text())["comparison"]
    assert cmp["active"] == "rhythm-ppg 1.0.0"
    assert cmp["candidate"]["auroc"]["value"] >= cmp["active_metrics"]["auroc"]["value"]
    # The active model was scored on the same rows as in its own card: its figure must match.
    assert cmp["active_metrics"]["auroc"]["value"] == pytest.approx(report["metrics"]["auroc"]["value"], abs=1e-6)


def test_worse_model_is_refused_and_nothing_is_uploaded(server: Server, tmp_path: Path) -> None:
    seed(server)
    assert run_trainer(server.url, tmp_path, *REF).code == 0
    worse = run_trainer(server.url, tmp_path, *REF, "--features", "beat_count")
    assert worse.code == 3
    line = one_line(worse.stderr)
    assert "worse than the active rhythm-ppg 1.0.0" in line and "AUROC" in line
    assert server.served_manifest()["version"] == "1.0.0"
    card = (tmp_path / "rhythm-ppg-2.0.0" / "MODEL_CARD.md").read_text()
    assert "not published" in card


def test_tolerance_lets_a_slightly_worse_model_through(server: Server, tmp_path: Path) -> None:
    seed(server)
    assert run_trainer(server.url, tmp_path, *REF).code == 0
    # The weak model is worse: without a tolerance it is refused, and the refusal gives the gap.
    refused = run_trainer(server.url, tmp_path, *REF, *WEAK)
    assert refused.code == 3, refused.stderr
    m = re.search(r"AUROC ([0-9.]+) < ([0-9.]+)", one_line(refused.stderr))
    assert m, refused.stderr
    gap = float(m.group(2)) - float(m.group(1))
    assert gap > 0.01, f"the weak model must be clearly worse to test a tolerance (gap {gap:.3f})"
    # A tolerance below the gap still refuses it: the tolerance is a bound, not a pass.
    assert run_trainer(server.url, tmp_path, *REF, *WEAK, "--tolerance", f"{gap / 2:.4f}").code == 3
    assert server.served_manifest()["version"] == "1.0.0"
    # Just above the gap lets it through, and what was published is the worse model.
    tolerance = gap + 0.005
    ok = run_trainer(server.url, tmp_path, *REF, *WEAK, "--tolerance", f"{tolerance:.4f}")
    assert ok.code == 0, ok.stderr
    assert server.served_manifest()["version"] == "2.0.0"
    cmp = json.loads((tmp_path / "rhythm-ppg-2.0.0" / "metrics.json").read_text())["comparison"]
    new, old = cmp["candidate"]["auroc"]["value"], cmp["active_metrics"]["auroc"]["value"]
    assert new < old <= new + tolerance, (new, old, tolerance)
    assert cmp["tolerance"] == pytest.approx(tolerance, abs=1e-4)


def test_require_improvement_refuses_an_equal_model_and_publishes_a_better_one(server: Server, tmp_path: Path) -> None:
    seed(server)
    # v1: the weak model. The same model again is not better: refused, nothing uploaded.
    assert run_trainer(server.url, tmp_path, *REF, *WEAK).code == 0
    same = run_trainer(server.url, tmp_path, *REF, *WEAK, "--require-improvement")
    assert same.code == 3, same.stderr
    line = one_line(same.stderr)
    assert "not better than the active rhythm-ppg 1.0.0" in line and "must lie above 0" in line, line
    assert server.served_manifest()["version"] == "1.0.0"
    card = (tmp_path / "rhythm-ppg-2.0.0" / "MODEL_CARD.md").read_text()
    assert "not published" in card and "Publication rule: better" in card
    # All rhythm features: better beyond the paired interval, published.
    better = run_trainer(server.url, tmp_path / "b", *REF, "--require-improvement")
    assert better.code == 0, better.stderr
    assert server.served_manifest()["version"] == "2.0.0"
    cmp = json.loads((tmp_path / "b" / "rhythm-ppg-2.0.0" / "metrics.json").read_text())["comparison"]
    assert cmp["auroc_delta"]["ci_low"] > 0, cmp["auroc_delta"]


def perturbed(runner: parity.Runner) -> parity.Runner:
    """A second runtime that disagrees: it runs a model whose first tree leaf weight is shifted.

    A real runtime cannot be made to disagree on demand, so the fault is injected here.
    """

    def run(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
        m = onnx.load_from_string(onnx_bytes)
        node = next(n for n in m.graph.node if n.op_type == "TreeEnsembleClassifier")
        attr = next(a for a in node.attribute if a.name == "class_weights")
        attr.floats[:] = [w + 0.5 for w in attr.floats]
        return runner(m.SerializeToString(), rows)

    return run


def test_parity_failure_is_refused(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seed(server)
    monkeypatch.setenv("VITALCORE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("VITALCORE_ENROLLMENT_TOKEN", ENROLL_TOKEN)
    argv = ["train", "--server", server.url, "--out", str(tmp_path), "--bootstrap", "100", *REF]
    code = cli.main(argv, runner=perturbed(parity.reference_predict))
    assert code == 3
    line = one_line(capsys.readouterr().err)
    assert "parity check failed" in line and "onnx-reference" in line
    assert server.served_manifest() is None, "nothing was published"
    # The same run with the honest runner publishes: the refusal came from the disagreement.
    assert cli.main(argv, runner=parity.reference_predict) == 0
    assert server.served_manifest()["version"] == "1.0.0"


def test_sdk_runner_missing_is_a_clear_failure(server: Server, tmp_path: Path) -> None:
    seed(server)
    r = run_trainer(server.url, tmp_path)  # default runner: the SDK through the Python bindings
    assert r.code == 1
    assert "SDK inference runner not available" in one_line(r.stderr)
    assert server.served_manifest() is None


def test_wrong_admin_token_is_a_server_refusal(server: Server, tmp_path: Path) -> None:
    seed(server)
    r = run_trainer(server.url, tmp_path, *REF, admin="not-the-admin-token")
    assert r.code == 1
    line = one_line(r.stderr)
    assert "server refused the training export: HTTP 401" in line
    assert "not-the-admin-token" not in r.stderr + r.stdout


def test_upload_refused_without_signing_key(production_server: Server, tmp_path: Path) -> None:
    seed(production_server)
    r = run_trainer(production_server.url, tmp_path, *REF)
    assert r.code == 1
    assert "server refused the model upload: HTTP 503 (not configured: no signing key)" in one_line(r.stderr)
    card = (tmp_path / "rhythm-ppg-1.0.0" / "MODEL_CARD.md").read_text()
    assert "**Status:** not published: server refused the model upload" in card


def test_version_taken_by_a_staged_rollout_is_a_server_refusal(server: Server, tmp_path: Path) -> None:
    seed(server)
    assert run_trainer(server.url, tmp_path / "a", *REF, *WEAK).code == 0
    # 2.0.0 goes to 0% of devices: the trainer, reading as a device, still sees 1.0.0 as active,
    # picks 2.0.0 again, and only the server knows that version is taken.
    assert run_trainer(server.url, tmp_path / "b", *REF, "--rollout", "0").code == 0
    assert server.served_manifest()["version"] == "1.0.0"
    r = run_trainer(server.url, tmp_path / "c", *REF)
    assert r.code == 1
    assert "server refused the model upload: HTTP 409 (already exists)" in one_line(r.stderr)


def test_version_not_newer_than_active_is_refused_before_training(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(server)
    assert run_trainer(server.url, tmp_path, *REF, *WEAK).code == 0
    published_card = (tmp_path / "rhythm-ppg-1.0.0" / "MODEL_CARD.md").read_text()
    monkeypatch.setenv("VITALCORE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("VITALCORE_ENROLLMENT_TOKEN", ENROLL_TOKEN)
    argv = ["train", "--server", server.url, "--out", str(tmp_path), "--bootstrap", "50", *REF]
    for version in ("1.0.0", "0.9.0", "1.0.0-rc.1"):
        assert cli.main([*argv, "--version", version]) == 1
        assert f"version {version} is not newer than the active rhythm-ppg 1.0.0" in one_line(capsys.readouterr().err)
    # A published bundle on disk is never overwritten by a later run.
    (tmp_path / "rhythm-ppg-1.0.1").mkdir()
    (tmp_path / "rhythm-ppg-1.0.1" / "signed.json").write_text("{}")
    assert cli.main([*argv, "--version", "1.0.1"]) == 1
    assert "holds a published bundle already" in one_line(capsys.readouterr().err)
    assert (tmp_path / "rhythm-ppg-1.0.0" / "MODEL_CARD.md").read_text() == published_card
    assert server.served_manifest()["version"] == "1.0.0"


def test_empty_export_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    r = run_trainer(server.url, tmp_path, *REF)
    assert r.code == 1
    assert "the training export has no records" in one_line(r.stderr)


def test_too_small_export_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    seed(server, subjects=3, per_subject=3)
    r = run_trainer(server.url, tmp_path, *REF)
    assert r.code == 1
    assert "too little labelled data" in one_line(r.stderr)
    assert server.served_manifest() is None


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_trainer(f"http://127.0.0.1:{port}", tmp_path, *REF)
    assert r.code == 1
    assert "cannot reach the server for the training export" in one_line(r.stderr)


def test_dry_run_writes_the_bundle_and_publishes_nothing(server: Server, tmp_path: Path) -> None:
    seed(server)
    r = run_trainer(server.url, tmp_path, *REF, "--dry-run", "--progress")
    assert r.code == 0, r.stderr
    for bar in ("export:", "fit:", "bootstrap:", "parity (onnx-reference):"):
        assert bar in r.stderr, f"no {bar} progress bar with --progress"
    bundle = tmp_path / "rhythm-ppg-1.0.0"
    assert {p.name for p in bundle.iterdir()} == {"model.onnx", "manifest.json", "metrics.json", "MODEL_CARD.md"}
    assert "not published (dry run)" in (bundle / "MODEL_CARD.md").read_text()
    assert server.served_manifest() is None
