"""Simulated PPG recordings with known rhythm labels for `make demo`, cached in
``$VITALCORE_CACHE/demo/sim`` (default ``.cache``): one sample per line in ``NNNN.csv`` and
``index.json`` listing file, label (regular/irregular) and sampling rate.

The generator is the one the default model was trained with (NeuroKit2 ``ppg_simulate``,
``models/scripts/train_default_model.py``), under another seed, so the demo's devices see
new people from the same population. Re-running with the same arguments reuses the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "scripts"))

import train_default_model as tdm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=240, help="recordings to simulate (default 240)")
    ap.add_argument("--seed", type=int, default=90_210)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("VITALCORE_CACHE", REPO / ".cache")))
    a = ap.parse_args()
    out = a.cache / "demo" / "sim"
    index_path = out / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("seed") == a.seed and len(index.get("recordings", [])) >= a.count:
            print(f"simulated recordings: {len(index['recordings'])} cached in {out}")
            return
    out.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, (sig, irregular, _params) in enumerate(tdm.simulate(a.count, a.seed)):
        name = f"{i:04d}.csv"
        (out / name).write_text("\n".join(f"{v:.6f}" for v in sig) + "\n")
        recs.append({"file": name, "label": "irregular" if irregular else "regular", "rate_hz": tdm.RATE})
    index_path.write_text(json.dumps({"seed": a.seed, "recordings": recs}, indent=1) + "\n")
    print(f"simulated recordings: {len(recs)} written to {out}")


if __name__ == "__main__":
    main()
