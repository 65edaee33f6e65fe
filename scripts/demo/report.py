"""HTML report of a `make demo` run: ``python scripts/demo/report.py DEMO_OUT``.

Reads ``summary.json`` and ``report-data.json`` written by ``vitalcore-demo`` and writes
``report.html`` next to them: one self-contained file (plots are inline base64 PNG, no
network) with the run's figures, a signal with the beats the SDK detected, the distributions of
features by known label, and the held-out metrics by model version. After layout, a small
inline script records each plot's box and decoded size as ``data-box`` / ``data-natural``
attributes, so a headless browser's DOM dump shows where the plots are and that they decoded.
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"regular": "#2b7bb9", "irregular": "#d7301f", None: "#555555"}


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def signal_plot(examples: list[dict]) -> str:
    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 2.3 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        x = np.asarray(ex["samples"], dtype=float)
        t = np.arange(len(x)) / float(ex["rate_hz"])
        beats = np.asarray(ex["beats"], dtype=int)
        ax.plot(t, x, lw=0.8, color="#333333")
        if len(beats):
            ax.plot(t[beats], x[beats], "v", color=COLORS.get(ex["label"], "#555555"), ms=7, label="beats found")
        what = ex["label"] or "unlabelled real recording"
        ax.set_title(f"{ex['source']} ({what}): {len(beats)} beats in {t[-1]:.0f} s", fontsize=10, loc="left")
        ax.set_xlabel("s")
        ax.set_yticks([])
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return png(fig)


def feature_plot(checks: list[dict]) -> str:
    names = sorted({k for c in checks for k in c["features"]})
    if not names:
        raise SystemExit("report: no features in report-data.json")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    first = [c for c in checks if c["phase"] == "v1"]
    for ax, name in zip(axes[0], names):
        for label in ("regular", "irregular", None):
            v = [c["features"][name] for c in first if c["label"] == label and name in c["features"]]
            if v:
                ax.hist(v, bins=20, alpha=0.6, color=COLORS[label], label=label or "real (unlabelled)")
        ax.set_title(name, fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


def metrics_plot(summary: dict) -> str:
    held = summary["held_out"]
    versions = [held.get("active_model") or "active", f"rhythm-ppg {summary['published_version']}"]
    names = ["auroc", "accuracy", "f1"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.38
    for i, (side, version) in enumerate(zip(("active", "candidate"), versions)):
        m = held[side]
        vals = np.array([m[n]["value"] for n in names])
        lo = np.maximum(vals - np.array([m[n]["ci_low"] for n in names]), 0.0)
        hi = np.maximum(np.array([m[n]["ci_high"] for n in names]) - vals, 0.0)
        xs = np.arange(len(names)) + (i - 0.5) * width
        ax.bar(xs, vals, width, yerr=[lo, hi], capsize=4, label=version, color=["#9e9e9e", "#1b9e77"][i])
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_title("held-out metrics by model version (95% CI)", fontsize=10, loc="left")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return png(fig)


def subgroup_plot(evaluation: dict) -> str:
    """AUROC of v1 and v2 with 95 % CIs, one row per subgroup of the held-out panel."""
    groups = [g for g in evaluation["subgroups"] if "v1" in g]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(groups) + 1.4))
    ys = np.arange(len(groups))[::-1]
    for off, side, color in ((0.15, "v1", "#9e9e9e"), (-0.15, "v2", "#1b9e77")):
        vals = np.array([g[side]["auroc"]["value"] for g in groups])
        # A percentile interval need not contain the point estimate (a skewed resample
        # distribution): the bar then starts at the point.
        lo = np.maximum(vals - np.array([g[side]["auroc"]["ci_low"] for g in groups]), 0.0)
        hi = np.maximum(np.array([g[side]["auroc"]["ci_high"] for g in groups]) - vals, 0.0)
        label = {"v1": "v1 (bundled, narrow cohort)", "v2": "v2 (trained on the fleet)"}[side]
        ax.errorbar(vals, ys + off, xerr=[lo, hi], fmt="o", color=color, capsize=3, label=label)
    names = [f"{g['cohort']}{' *' if g['shifted'] else ''}\n{g['verdict']}" for g in groups]
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlabel("held-out AUROC (95% CI, bootstrap over people)")
    ax.set_xlim(min(0.5, min(g["v1"]["auroc"]["ci_low"] for g in groups) - 0.02), 1.01)
    ax.set_title("per subgroup, people neither model saw (* shifted from v1's cohort)", fontsize=10, loc="left")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def fmt(v: object, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: report.py DEMO_OUT")
    out = Path(sys.argv[1])
    s = json.loads((out / "summary.json").read_text())
    data = json.loads((out / "report-data.json").read_text())
    b, a = s["before"], s["after"]
    rows = [
        ("devices", s["devices"]),
        ("database", s["database"]),
        ("checks (before / after the update)", f"{b['checks']} / {a['checks']}"),
        ("records synced by devices / stored on the server", f"{s['records_synced']} / {s['server']['records']}"),
        ("labels synced by devices / stored on the server", f"{s['labels_synced']} / {s['server']['labels']}"),
        ("bytes sent by devices (compressed)", s["bytes_sent_by_devices"]),
        ("models before", json.dumps(b["models"])),
        ("models after (offline)", json.dumps(a["models"])),
        ("installed", json.dumps(s["installed"])),
        ("check latency p50 / p99, before", f"{fmt(b['latency_ms_p50'], 1)} / {fmt(b['latency_ms_p99'], 1)} ms"),
        ("check latency p50 / p99, after", f"{fmt(a['latency_ms_p50'], 1)} / {fmt(a['latency_ms_p99'], 1)} ms"),
        ("parity runner", s["parity_runner"]),
    ]
    phases = [(p["phase"], f"{p['seconds']:.1f} s") for p in s.get("phases", [])]
    evaluation = s["subgroups"]
    sub_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            g["cohort"] + (" (shifted)" if g["shifted"] else ""), g["description"], g["people"], g["checks"],
            f"{fmt(g['v1']['auroc']['value'])} [{fmt(g['v1']['auroc']['ci_low'])}, {fmt(g['v1']['auroc']['ci_high'])}]",
            f"{fmt(g['v2']['auroc']['value'])} [{fmt(g['v2']['auroc']['ci_low'])}, {fmt(g['v2']['auroc']['ci_high'])}]",
            f"{fmt(g['v1']['accuracy']['value'])} / {fmt(g['v2']['accuracy']['value'])}",
            g["verdict"],
        )) + "</tr>"
        for g in evaluation["subgroups"] if "v1" in g
    )
    sub_table = (
        "<table><tr><th>subgroup</th><th>who</th><th>people</th><th>checks</th><th>v1 AUROC [95% CI]</th>"
        f"<th>v2 AUROC [95% CI]</th><th>accuracy v1 / v2</th><th>verdict</th></tr>{sub_rows}</table>"
    )
    plots = [
        ("plot-subgroups", "Held-out AUROC per subgroup, v1 against v2", subgroup_plot(evaluation)),
        ("plot-signal", "A PPG signal with the beats the SDK detected", signal_plot(data["examples"])),
        ("plot-features", "Feature distributions by known label (checks before the update)", feature_plot(data["checks"])),
        ("plot-metrics", "Held-out metrics by model version", metrics_plot(s)),
    ]
    figures = "".join(
        f'<figure><figcaption>{html.escape(cap)}</figcaption>'
        f'<img class="plot" id="{pid}" alt="{html.escape(cap)}" src="data:image/png;base64,{b64}"></figure>'
        for pid, cap, b64 in plots
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vitalcore demo report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
th, td {{ text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; font-size: 14px; }}
figure {{ margin: 16px 0; }} figcaption {{ font-weight: bold; margin-bottom: 4px; }}
img.plot {{ max-width: 100%; display: block; }}
</style></head><body>
<h1>vitalcore: the closed loop</h1>
<p>Devices ran checks on the bundled model, synced anonymized features and labels; the trainer
trained and published a new version over HTTP; every device verified it, installed it and ran
its checks offline on it.</p>
<p>The bundled model (v1) was trained by <code>models/scripts/train_default_model.py</code> on a
narrow simulated cohort ({html.escape(str(evaluation.get("v1_cohort", "")))}). The fleet is a
broader simulated population (<code>models/scripts/population.py</code>): the same cohort met
again, the young, the older, checks during exercise, people with premature beats, a noisier
sensor. v2 was trained on the fleet's synced, labelled features only; the trainer's publication
rule was "{html.escape(s["gate"]["rule"])}" on its held-out fleet subjects. Below, both are scored on-device
on a panel of other people from every subgroup, whom neither model saw.</p>
<h2>Per subgroup (held-out panel)</h2>{sub_table}
<h2>Run</h2>{table(rows)}
<h2>Time per phase</h2>{table(phases + [("total", f"{s['wall_s']:.1f} s")])}
<h2>Plots</h2>{figures}
<script>
window.addEventListener('load', function () {{
  document.querySelectorAll('img.plot').forEach(function (img) {{
    var r = img.getBoundingClientRect();
    img.setAttribute('data-box', [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(','));
    img.setAttribute('data-natural', img.naturalWidth + 'x' + img.naturalHeight);
  }});
}});
</script>
</body></html>
"""
    (out / "report.html").write_text(page)


if __name__ == "__main__":
    main()
