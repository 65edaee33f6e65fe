"""The fetched recordings are what the Rust validation tests and the demo read."""
import json
import os
from pathlib import Path

CACHE = Path(os.environ.get("VITALCORE_CACHE", ".cache"))


def test_recordings_have_sidecars_and_plausible_rates():
    rec = CACHE / "recordings"
    metas = [json.loads(p.read_text()) for p in sorted(rec.glob("*.json"))]
    assert len(metas) >= 2
    for m in metas:
        assert 20.0 <= m["rate_hz"] <= 2000.0
        csv = rec / f"{m['name']}.csv"
        lines = csv.read_text().splitlines()
        assert len(lines) == m["samples"]
