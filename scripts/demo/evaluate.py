"""Held-out metrics of v1 and v2 per subgroup: ``python scripts/demo/evaluate.py DEMO_OUT``.

Reads ``panel.json`` written by ``vitalcore-demo``: the on-device answers of the bundled model
(v1) and of the fleet-trained model (v2) on the panel, people of every subgroup of the
simulated population whom neither model saw (v1 was trained on the narrow cohort, v2 on the
fleet's synced features; the panel never syncs). Writes ``evaluation.json`` beside it.

Per subgroup, on the checks both versions answered (the quality gate is the same for both):
AUROC and accuracy of each version with 95 % percentile bootstrap intervals over *people*
(all checks of a person resampled together, as the trainer does), and the paired AUROC
difference v2 - v1 on the same resamples. Verdict: ``better`` when v2's AUROC interval lies
above v1's, ``worse`` when it lies below v1's, else ``same within CI``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models"))
sys.path.insert(0, str(REPO / "models" / "scripts"))

from population import FLEET, SHIFTED  # noqa: E402
from trainer import evaluate  # noqa: E402

RESAMPLES = 1000
SEED = 0


def verdict(v1: dict, v2: dict) -> str:
    if v2["ci_low"] > v1["ci_high"]:
        return "better"
    if v2["ci_high"] < v1["ci_low"]:
        return "worse"
    return "same within CI"


def metrics(y: np.ndarray, p1: np.ndarray, p2: np.ndarray, people: np.ndarray) -> dict:
    if not 0 < y.sum() < len(y):
        return {"error": "one class only"}
    per, deltas = evaluate.bootstrap(y, {"v2": p2, "v1": p1}, people, RESAMPLES, SEED, progress=False)
    out = {v: {k: e.as_dict() for k, e in per[v].items()} for v in ("v1", "v2")}
    out["auroc_delta"] = deltas["v1"].as_dict()
    out["verdict"] = verdict(out["v1"]["auroc"], out["v2"]["auroc"])
    return out


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: evaluate.py DEMO_OUT")
    out = Path(sys.argv[1])
    doc = json.loads((out / "panel.json").read_text())
    v1 = [c for c in doc["checks"] if c["phase"] == "v1"]
    v2 = [c for c in doc["checks"] if c["phase"] == "v2"]
    if len(v1) != len(v2) or any((a["cohort"], a["person"], a["label"]) != (b["cohort"], b["person"], b["label"]) for a, b in zip(v1, v2)):
        raise SystemExit("evaluate: the panel's v1 and v2 checks do not pair up")
    models = {"v1": sorted({c["model"] for c in v1 if c["model"]}), "v2": sorted({c["model"] for c in v2 if c["model"]})}
    both = [(a, b) for a, b in zip(v1, v2) if a["p_irregular"] is not None and b["p_irregular"] is not None]
    groups = []
    cohorts = [c for c in FLEET if any(a["cohort"] == c for a in v1)]
    for cohort in cohorts + ["all"]:
        rows = [(a, b) for a, b in both if cohort == "all" or a["cohort"] == cohort]
        y = np.array([a["label"] == "irregular" for a, _ in rows], dtype=np.int64)
        p1 = np.array([a["p_irregular"] for a, _ in rows], dtype=np.float64)
        p2 = np.array([b["p_irregular"] for _, b in rows], dtype=np.float64)
        people = np.array([f"{a['cohort']}-{a['person']}" for a, _ in rows], dtype=object)
        g = {
            "cohort": cohort,
            "description": doc["cohorts"].get(cohort, "every subgroup together"),
            "shifted": cohort in SHIFTED,
            "people": len(set(people)),
            "checks": len(rows),
            "unanswered": sum(1 for a in v1 if cohort == "all" or a["cohort"] == cohort) - len(rows),
        }
        g.update(metrics(y, p1, p2, people) if len(rows) else {"error": "no answered check"})
        groups.append(g)
    result = {
        "models": models,
        "resamples": RESAMPLES,
        "unit": "person",
        "level": 0.95,
        "shifted": list(SHIFTED),
        "v1_cohort": doc["cohorts"].get("v1-cohort", ""),
        "subgroups": groups,
    }
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
