#!/usr/bin/env python3
"""Train, export, check and sign the default model shipped with the SDK: ``rhythm-ppg``.

The model tells a regular pulse rhythm from an irregular one, from feature set v1 features that
``vitalcore analyze`` (the SDK's own signal crate, the one implementation of the features)
computes on 30 s fingertip-style PPG recordings simulated by ``population.py`` (beats drawn as
NeuroKit2's ``ppg_simulate`` draws them, from explicit beat times): 30 s is what watches and
phones take, and every feature the model reads is defined on a 30 s check (sample entropy,
which needs 20 clean NN intervals and template matches, is left to long checks). Labels come
from the simulation itself. No recording of a real person is used.

The people simulated are deliberately a *narrow* cohort, ``v1-cohort`` in ``population.py``
(adults 40-64 at rest, resting heart rates 55-85 bpm, little breathing-driven variability, a
clean fingertip sensor, no premature beats, pronounced irregularity when irregular): the
small, tidy data set a first model is typically built from. The demo's fleet is a broader
population, and the model trained on the fleet's data is measured against this one on it.

Steps: simulate -> ``vitalcore analyze --signal ppg --format json`` -> standardize (the
manifest carries mean/scale, the SDK applies them) -> GradientBoostingClassifier -> skl2onnx
(``zipmap=False``, ai.onnx.ml opset 3) -> self-test vector whose expected output is computed
by ONNX Runtime -> ``vitalcore model sign`` with a development key. Held-out figures are on
30 % of the simulated *people* (all their checks), not of the recordings.

Usage (from the repository root, after ``make data`` and ``cargo build --features cli``):

    .venv/bin/python models/scripts/train_default_model.py --vitalcore target/debug/vitalcore

The private development key is kept in ``.cache/dev-model-key.pk8`` (git-ignored) and created
if missing; its public half is written to ``models/dev-publisher-key.hex``. It is for
development only: production bundles are signed by the backend with its own key.
"""
from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population  # noqa: E402

# sqi is left out on purpose: on these simulations the quality index falls with rhythm
# irregularity, and a model must not learn "poor signal" as "irregular rhythm".
FEATURES = ["hr_mean", "sdnn", "rmssd", "pnn50", "sd1", "sd2", "ectopic_fraction"]
# Units from core/signal/src/feature_set.rs; the SDK refuses a manifest whose units differ.
UNITS = {
    "hr_mean": "bpm", "sdnn": "ms", "rmssd": "ms", "pnn50": "%", "sd1": "ms", "sd2": "ms",
    "ectopic_fraction": "1",
}
RATE = population.RATE
DURATION_S = population.DURATION_S
NAME = "rhythm-ppg"
VERSION = "1.0.0"
OPSETS = {"": 17, "ai.onnx.ml": 3}


COHORT = "v1-cohort"
CHECKS_PER_PERSON = 4


def simulate(people: int, seed: int) -> list[tuple[np.ndarray, int, int]]:
    """``(signal, irregular, person)`` for ``people`` persons of the narrow cohort, four
    checks each (two regular, two irregular)."""
    return [
        (sig, int(label == "irregular"), i)
        for i, _p, label, sig in population.simulate_cohort(COHORT, people, CHECKS_PER_PERSON, seed)
    ]


def analyze(vitalcore: Path, signal: np.ndarray, tmp: Path) -> dict | None:
    path = tmp / "rec.csv"
    np.savetxt(path, signal, fmt="%.6g")
    res = subprocess.run(
        [str(vitalcore), "analyze", "--signal", "ppg", "--rate", str(RATE), "--input", str(path), "--format", "json"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        return None
    doc = json.loads(res.stdout)
    feats = doc.get("features", doc)
    values = [feats.get(f) for f in FEATURES]
    if any(v is None or not np.isfinite(v) for v in values):
        return None
    return dict(zip(FEATURES, values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vitalcore", type=Path, required=True, help="built vitalcore CLI (feature cli)")
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--key", type=Path, default=Path(".cache/dev-model-key.pk8"))
    ap.add_argument("--people", type=int, default=100, help="people of the narrow cohort (4 checks each)")
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()

    from onnxruntime import InferenceSession
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import GroupShuffleSplit

    # Simulation + analysis is the slow part; cached per (seed, count, features) in .cache.
    recordings = args.people * CHECKS_PER_PERSON
    cache = Path(".cache") / f"rhythm-ppg-features-{COHORT}-{args.seed}-{args.people}.json"
    if cache.exists() and json.loads(cache.read_text())["features"] == FEATURES:
        doc = json.loads(cache.read_text())
        rows, labels, people = doc["rows"], doc["labels"], doc["people"]
    else:
        rows, labels, people = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for sig, label, who in simulate(args.people, args.seed):
                feats = analyze(args.vitalcore, sig, Path(tmp))
                if feats is not None:
                    rows.append([feats[f] for f in FEATURES])
                    labels.append(label)
                    people.append(who)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"features": FEATURES, "rows": rows, "labels": labels, "people": people}))
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(people)
    print(f"{len(y)} of {recordings} recordings of {args.people} people analysed ({int(y.sum())} irregular)")

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = ((x - mean) / scale).astype(np.float32)
    # Held out by person: no one's checks are on both sides.
    train_idx, test_idx = next(GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0).split(z, y, groups))
    z_train, z_test, y_train, y_test = z[train_idx], z[test_idx], y[train_idx], y[test_idx]
    clf = GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, random_state=0)
    clf.fit(z_train, y_train)
    acc = float((clf.predict(z_test) == y_test).mean())
    print(f"held-out accuracy: {acc:.3f} on {len(y_test)} simulated recordings of {len(set(groups[test_idx]))} people")

    onx = to_onnx(clf, z_train[:1], options={id(clf): {"zipmap": False}}, target_opset=OPSETS)
    onnx_bytes = onx.SerializeToString()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.onnx").write_bytes(onnx_bytes)

    # The known answer is ONNX Runtime's output on a held-out example, not tract's.
    sess = InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probe = z_test[:1]
    expected = sess.run(["probabilities"], {"X": probe})[0][0]
    skl = clf.predict_proba(probe)[0]
    assert np.max(np.abs(skl - expected)) < 1e-5, (skl, expected)

    now = int(time.time())
    manifest = {
        "schema": 1,
        "name": NAME,
        "version": VERSION,
        "task": "classification",
        "input": {
            "kind": "features",
            "feature_set": "v1",
            "features": [
                {"name": f, "unit": UNITS[f], "mean": float(m), "scale": float(s)}
                for f, m, s in zip(FEATURES, mean, scale)
            ],
        },
        "outputs": {"output_name": "probabilities", "labels": ["regular", "irregular"], "threshold": 0.5},
        "min_sdk_version": "0.1.0",
        "artifact": {"sha256": "", "length": 0},
        "published_at": now,
        # Two years: a shipped default must outlive an app release cycle; updates replace it.
        "expires_at": now + 2 * 365 * 86400,
        "self_test": {
            "input": [float(v) for v in probe[0]],
            "expected": [float(v) for v in expected],
            "tolerance": 1e-5,
        },
    }

    if not args.key.exists():
        args.key.parent.mkdir(parents=True, exist_ok=True)
        pub = subprocess.run(
            [str(args.vitalcore), "model", "keygen", "--private-key", str(args.key)],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        (args.out / "dev-publisher-key.hex").write_text(pub + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / "manifest.json"
        draft.write_text(json.dumps(manifest))
        signed = args.out / f"{NAME}.signed.json"
        subprocess.run(
            [str(args.vitalcore), "model", "sign", "--manifest", str(draft),
             "--artifact", str(args.out / f"{NAME}.onnx"), "--private-key", str(args.key), "--out", str(signed)],
            check=True,
        )
    payload = base64.b64decode(json.loads(signed.read_text())["payload"])
    # The exact signed bytes, so what a reader sees is what was signed.
    (args.out / f"{NAME}.manifest.json").write_bytes(payload)
    (args.out / f"{NAME}.metrics.json").write_text(json.dumps({
        "cohort": COHORT,
        "cohort_description": population.COHORTS[COHORT].description,
        "people": args.people,
        "recordings_simulated": recordings,
        "recordings_analysed": int(len(y)),
        "irregular": int(y.sum()),
        "held_out": int(len(y_test)),
        "held_out_people": int(len(set(groups[test_idx]))),
        "held_out_accuracy": round(acc, 4),
        "seed": args.seed,
    }, indent=2) + "\n")
    print(f"wrote {args.out / NAME}.onnx ({len(onnx_bytes)} bytes), manifest, signed envelope")


if __name__ == "__main__":
    sys.exit(main())
