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


def test_references_exist_for_every_recording_and_look_sane():
    """Each recording has NeuroKit2 peaks inside the signal and a mean HR in physiologic range."""
    for folder in ("recordings", "synthetic"):
        for meta_path in sorted((CACHE / folder).glob("*.json")):
            meta = json.loads(meta_path.read_text())
            ref = json.loads((CACHE / "reference" / f"{meta['name']}.json").read_text())
            peaks = ref["neurokit2"]["peaks"]
            assert len(peaks) > 10
            assert all(0 <= p < meta["samples"] for p in peaks)
            assert peaks == sorted(peaks)
            mean_nn = ref["neurokit2"]["hrv"]["HRV_MeanNN"]
            assert 30.0 < 60000.0 / mean_nn < 200.0
            if meta["signal"] == "ppg":
                assert len(ref["heartpy"]["peaks"]) > 10


def test_real_ecg_is_the_five_minute_mitdb_excerpt():
    meta = json.loads((CACHE / "recordings" / "scipy_mitdb_ecg.json").read_text())
    assert meta["signal"] == "ecg"
    assert meta["rate_hz"] == 360.0
    assert meta["samples"] == 5 * 60 * 360
