"""Simulated PPG recordings with known rhythm labels for `make demo`, cached in
``$VITALCORE_CACHE/demo/sim`` (default ``.cache``): one sample per line in ``*.csv`` and
``index.json`` listing, for each recording, file, label (regular/irregular), sampling rate,
subgroup (cohort) and whose it is.

Two sets of people, both from the broader population of ``models/scripts/population.py``
(``FLEET``: the bundled model's own cohort met again, the young, the older, checks during
exercise, people with premature beats, a noisier wrist sensor), never from the narrow cohort
the bundled model was trained on:

* ``fleet``: the demo's devices, one person each, cohorts assigned in turn (device ``d`` is of
  cohort ``FLEET[d % 6]``), ``--checks-per-device`` checks each. They sync, and the model
  trained on the server (v2) is trained on their labelled features only.
* ``panel``: ``--panel-people`` other people per cohort, ``--panel-checks`` checks each, with
  other seeds. They never sync: the demo scores v1 and v2 on them on-device, per subgroup.

Re-running with the same arguments reuses the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "scripts"))

import population as pop  # noqa: E402


def write(out: Path, name: str, sig) -> None:
    (out / name).write_text("\n".join(f"{v:.6f}" for v in sig) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=96)
    ap.add_argument("--checks-per-device", type=int, default=8)
    ap.add_argument("--panel-people", type=int, default=40, help="held-out people per subgroup (default 40)")
    ap.add_argument("--panel-checks", type=int, default=6, help="checks per held-out person (default 6)")
    ap.add_argument("--seed", type=int, default=90_210)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("VITALCORE_CACHE", REPO / ".cache")))
    a = ap.parse_args()
    out = a.cache / "demo" / "sim"
    index_path = out / "index.json"
    key = {
        "seed": a.seed,
        "devices": a.devices,
        "checks_per_device": a.checks_per_device,
        "panel_people": a.panel_people,
        "panel_checks": a.panel_checks,
        "population": hashlib.sha256((REPO / "models/scripts/population.py").read_bytes()).hexdigest()[:16],
    }
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("key") == key:
            print(f"simulated recordings: {len(index['fleet'])} fleet + {len(index['panel'])} panel, cached in {out}")
            return
    if out.exists():
        for p in out.glob("*.csv"):
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    fleet = []
    for c, cohort in enumerate(pop.FLEET):
        devices = list(range(c, a.devices, len(pop.FLEET)))
        for i, _p, label, sig in pop.simulate_cohort(cohort, len(devices), a.checks_per_device, a.seed):
            d = devices[i]
            k = sum(1 for r in fleet if r["device"] == d)
            name = f"fleet-{d:04d}-{k:02d}.csv"
            write(out, name, sig)
            fleet.append({"file": name, "label": label, "rate_hz": pop.RATE, "cohort": cohort, "device": d})
    fleet.sort(key=lambda r: r["file"])
    panel = []
    for cohort in pop.FLEET:
        for i, _p, label, sig in pop.simulate_cohort(cohort, a.panel_people, a.panel_checks, a.seed + 1):
            k = sum(1 for r in panel if r["cohort"] == cohort and r["person"] == i)
            name = f"panel-{cohort}-{i:03d}-{k:02d}.csv"
            write(out, name, sig)
            panel.append({"file": name, "label": label, "rate_hz": pop.RATE, "cohort": cohort, "person": i})
    cohorts = {c: pop.COHORTS[c].description for c in ("v1-cohort", *pop.FLEET)}
    index = {"key": key, "cohorts": cohorts, "fleet": fleet, "panel": panel}
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    print(f"simulated recordings: {len(fleet)} fleet + {len(panel)} panel written to {out}")


if __name__ == "__main__":
    main()
