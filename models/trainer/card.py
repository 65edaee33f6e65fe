"""The model card written beside every trained version, published or refused.

It holds counts, metrics and settings only: no subject id, record id or feature value.
"""

from __future__ import annotations

from typing import Any

RHYTHM_LABELS = ("regular", "irregular")
# The default text, for the default task (regular vs irregular rhythm); other tasks must state theirs.
INTENDED_USE = (
    "Screening aid inside a health app built on vitalcore: tells a regular from an irregular "
    "pulse rhythm in one health check, from feature set v1 features the SDK computes on the "
    "device, to prompt the user to repeat the check or to see a clinician."
)
NOT_FOR = [
    "Not a medical device and not a diagnosis of atrial fibrillation or any other arrhythmia.",
    "Not validated for any population beyond the consenting users whose labelled checks are "
    "counted below; labels are outcome labels recorded by apps, not adjudicated by clinicians.",
    "Not for recordings the SDK flags as poor quality: it does not predict below its signal "
    "quality threshold, and the model has not learnt anything about such signals.",
    "Not for children, pacemaker users, or during exercise unless such checks are in the "
    "training data counted below.",
    "Not for any decision about a person other than suggesting another check.",
]


def _fmt(e: dict[str, float]) -> str:
    return f"{e['value']:.3f} (95% CI {e['ci_low']:.3f} to {e['ci_high']:.3f})"


def render(report: dict[str, Any]) -> str:
    """Markdown for ``report`` (the same dict that is written as ``metrics.json``)."""
    m = report["manifest"]
    c = report["counts"]
    labels = m["outputs"]["labels"]
    lines = [
        f"# Model card: `{m['name']}` {m['version']}",
        "",
        f"**Status:** {report['status']}",
        "",
        "## What it does",
        "",
        report["intended_use"],
        "",
        f"Inputs (feature set `{m['input']['feature_set']}`, standardized by the SDK with the "
        "training mean and scale below); output `probabilities` = "
        f"[p({labels[0]}), p({labels[1]})], threshold {m['outputs']['threshold']} on p({labels[1]}).",
        "",
        "| feature | unit | mean | scale |",
        "| --- | --- | --- | --- |",
    ]
    for f in m["input"]["features"]:
        lines.append(f"| `{f['name']}` | {f['unit']} | {f['mean']:.4g} | {f['scale']:.4g} |")
    lines += [
        "",
        "## Training data",
        "",
        f"From the backend's training export (records whose users consented to model training), "
        f"kind `{report['kind'] or 'any'}`. Split by pseudonymous subject (salted hash, "
        f"{report['held_out_fraction']:.0%} of subjects held out): no subject is on both sides.",
        "",
        "| count | value |",
        "| --- | --- |",
    ]
    for k, v in c.items():
        lines.append(f"| {k.replace('_', ' ')} | {v} |")
    lines += [
        "",
        "## Held-out evaluation",
        "",
        f"{c['held_out_rows']} held-out rows from {c['subjects_held_out']} subjects. Intervals: "
        f"percentile bootstrap over subjects, {report['bootstrap']['resamples']} resamples "
        f"(seed {report['bootstrap']['seed']}).",
        "",
        "| metric | this model |",
        "| --- | --- |",
    ]
    for k, e in report["metrics"].items():
        lines.append(f"| {k} | {_fmt(e)} |")
    cmp = report.get("comparison")
    lines += ["", "## Against the active model", ""]
    if cmp is None:
        lines.append("No model was active on the server: nothing to compare with.")
    else:
        lines += [
            f"Active: `{cmp['active']}`, scored with ONNX Runtime by its own manifest on the "
            f"{cmp['rows']} held-out rows that carry its features.",
            "",
            "| metric | this model | active |",
            "| --- | --- | --- |",
        ]
        for k in cmp["candidate"]:
            lines.append(f"| {k} | {_fmt(cmp['candidate'][k])} | {_fmt(cmp['active_metrics'][k])} |")
        lines += ["", f"AUROC difference (this - active, paired bootstrap): {_fmt(cmp['auroc_delta'])}."]
        if cmp.get("rule"):
            lines += ["", f"Publication rule: {cmp['rule']}."]
    parity = report.get("parity")
    lines += ["", "## Parity", ""]
    if parity is None:
        lines.append("Not run (the model was refused before the parity check).")
    else:
        lines.append(
            f"ONNX Runtime vs `{parity['runner']}` on {parity['rows']} held-out rows: max abs difference "
            f"{parity['max_abs_diff']:.3g} (tolerance {parity['tolerance']:g})."
        )
        if parity["runner"] != "sdk":
            lines.append(
                "This runner is not the SDK's own inference: the SDK checks the manifest's self-test "
                "vector before it activates the model."
            )
    lines += ["", "## What it is not for", ""]
    lines += [f"- {s}" for s in NOT_FOR]
    lines += [
        "",
        "## How it was made",
        "",
        f"`GradientBoostingClassifier` {report['params']}, exported with skl2onnx "
        f"(`zipmap=False`, ai.onnx.ml opset 3). Tools: "
        + ", ".join(f"{k} {v}" for k, v in report["tools"].items())
        + f". ONNX sha256 `{m['artifact']['sha256']}` ({m['artifact']['length']} bytes).",
        "",
    ]
    return "\n".join(lines)
