"""The engine through the wheel, on real recordings: checks, history, labels, errors, reopen."""
from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

import vitalcore
from vitalcore import CheckKind, EngineConfig, Label, PredictionOutcome, VitalcoreError

from conftest import KEY, StaticKey

T0 = 1_764_000_000.0  # Unix seconds of the first sample


def _ppg(recordings_dir: Path) -> vitalcore.Recording:
    return vitalcore.load_recording(recordings_dir / "heartpy_data1.csv")


def test_check_on_a_real_recording_is_stored_and_read_back_after_reopen(tmp_path: Path, recordings_dir: Path) -> None:
    rec = _ppg(recordings_dir)
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        result = vitalcore.run_check(engine, rec, start_s=T0)
        c = result.check
        assert c.kind == CheckKind.PPG_RHYTHM and not c.is_window
        assert len(c.id) == 32
        # Same features as the one-shot analysis of the same samples (independent code path:
        # the analysis export takes the whole recording at once, the session gets 1 s batches).
        one_shot = {f.name: f.value for f in vitalcore.analyze_recording(rec).features if f.value is not None}
        assert c.features["hr_mean"] == pytest.approx(one_shot["hr_mean"], rel=1e-9)
        assert 40 < c.features["hr_mean"] < 140
        # The bundled default model serves rhythm checks: predicted, or said why not.
        assert isinstance(
            c.prediction,
            (PredictionOutcome.PREDICTED, PredictionOutcome.FEATURES_UNAVAILABLE, PredictionOutcome.QUALITY_TOO_LOW),
        )
        t0_ms = int(T0 * 1000)
        engine.add_label(c.id, Label(name="afib", value=0.0, source="clinician", recorded_at_ms=t0_ms))
        check_id = c.id
    # Reopen with the same key: the check and its label are there.
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        history = engine.checks(t0_ms - 1, t0_ms + 3_600_000, None)
        assert [h.id for h in history] == [check_id]
        assert history[0].features == c.features
        assert [l.name for l in engine.labels(check_id)] == ["afib"]
        assert engine.checks(t0_ms - 1, t0_ms + 3_600_000, CheckKind.ECG_RHYTHM) == []
        assert engine.check(check_id) is not None


def test_config_durability_and_builtin_model_are_honoured(tmp_path: Path, recordings_dir: Path) -> None:
    rec = _ppg(recordings_dir)
    config = EngineConfig(str(tmp_path)).durability(vitalcore.Durability.POWER_LOSS).builtin_model(False)
    with vitalcore.open_engine(config, StaticKey()) as engine:
        assert engine.active_model() is None
        result = vitalcore.run_check(engine, rec, start_s=T0)
        # Without the bundled model nothing serves rhythm checks until an update is installed.
        assert isinstance(
            result.check.prediction,
            (PredictionOutcome.NO_MODEL, PredictionOutcome.QUALITY_TOO_LOW),
        ), result.check.prediction
        check_id = result.check.id
    # Reopened with the defaults (AppCrash, bundled model): same store, the check is there.
    with vitalcore.open_engine(EngineConfig(str(tmp_path)).durability(vitalcore.Durability.APP_CRASH), StaticKey()) as engine:
        assert engine.check(check_id) is not None
        assert engine.active_model() is not None


def test_wrong_key_is_a_crypto_error_and_the_data_survives(tmp_path: Path, recordings_dir: Path) -> None:
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        vitalcore.run_check(engine, _ppg(recordings_dir), start_s=T0)
    with pytest.raises(VitalcoreError.Crypto):
        vitalcore.Engine.open(EngineConfig(str(tmp_path)), StaticKey(bytes(reversed(KEY))))
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        assert len(engine.checks(0, 2**62, None)) == 1


def test_bad_batches_are_typed_errors_and_the_session_goes_on(tmp_path: Path, recordings_dir: Path) -> None:
    rec = _ppg(recordings_dir)
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        s = engine.start_check(CheckKind.PPG_RHYTHM)
        with pytest.raises(VitalcoreError.InvalidInput):
            s.push_samples("ppg", T0, 100.0, [float("nan")])
        with pytest.raises(VitalcoreError.InvalidInput):
            s.push_samples("ecg", T0, 100.0, [0.0])  # not a channel of a PPG check
        with pytest.raises(VitalcoreError.InvalidInput):
            s.push_samples_f64le("ppg", T0, 100.0, b"\x00" * 7)
        with pytest.raises(VitalcoreError.InvalidInput):
            s.finish()  # nothing pushed: too short
        vitalcore.push_recording(s, rec, T0)
        assert s.finish().check.features["hr_mean"] > 0
        with pytest.raises(VitalcoreError.Closed):
            s.finish()
        with pytest.raises(VitalcoreError.NotFound):
            engine.add_label("0" * 32, Label(name="x", value=1.0, source="y", recorded_at_ms=0))
        with pytest.raises(VitalcoreError.InvalidInput):
            engine.labels("not an id")
    with pytest.raises(VitalcoreError.Closed):
        engine.start_check(CheckKind.PPG_RHYTHM)


def test_async_finish_and_history(tmp_path: Path, recordings_dir: Path) -> None:
    rec = _ppg(recordings_dir)

    async def go() -> None:
        engine = await vitalcore.open_engine_async(EngineConfig(str(tmp_path)), StaticKey())
        s = engine.start_check(CheckKind.PPG_RHYTHM)
        vitalcore.push_recording(s, rec, T0)
        r = await s.finish_async()
        got = await engine.checks_async(0, 2**62, CheckKind.PPG_RHYTHM)
        assert [c.id for c in got] == [r.check.id]
        await engine.shutdown_async()

    asyncio.run(go())


def test_capture_stores_windows_and_stops_on_close(tmp_path: Path, recordings_dir: Path) -> None:
    rec = vitalcore.load_recording(recordings_dir / "heartpy_data3.csv")
    n = int(90 * rec.rate_hz)  # 90 s: 30 s windows, no overlap -> 3 windows
    with vitalcore.open_engine(tmp_path, StaticKey()) as engine:
        cap = engine.start_capture(CheckKind.PPG_RHYTHM, 30.0, 0.0)
        step = int(rec.rate_hz)
        for i in range(0, n, step):
            while True:
                try:
                    cap.push_samples_f64le("ppg", T0 + i / rec.rate_hz, rec.rate_hz, vitalcore.pack_f64le(rec.channels[0][i : i + step]))
                    break
                except VitalcoreError.Backpressure:
                    pass
        stats = cap.stop()
        # Each of the three 30 s windows analyses on its own (checked here independently, by the
        # one-shot analysis of the same samples): all three are stored, none failed.
        w = round(30 * rec.rate_hz)  # samples per window
        for k in range(3):
            one_shot = vitalcore.analyze_cardiac_f64le(
                vitalcore.CardiacSignal.PPG, vitalcore.pack_f64le(rec.channels[0][k * w : (k + 1) * w]), rec.rate_hz
            )
            assert one_shot.peaks, f"window {k} of heartpy data3 has no beats: the recording changed"
        assert (stats.windows_stored, stats.windows_failed) == (3, 0), stats
        stored = engine.windows(0, 2**62, None)
        # One window per 30 s of samples (the recording's rate is 100.42 Hz, not 100: a window
        # starts at its first sample's time).
        starts = sorted(c.started_at_ms for c in stored)
        want = [(T0 + k * w / rec.rate_hz) * 1000 for k in range(3)]
        assert len(starts) == 3 and all(abs(s - t) <= 1 for s, t in zip(starts, want)), (starts, want)
        with pytest.raises(VitalcoreError.Closed):
            cap.push_samples("ppg", T0 + 100, rec.rate_hz, [0.0])


def test_check_folder_runs_the_engine_on_every_recording(recordings_dir: Path) -> None:
    rows = vitalcore.check_folder(recordings_dir)
    names = sorted(p.stem for p in recordings_dir.glob("*.csv") if p.with_suffix(".json").exists())
    assert [r["recording"] for r in rows] == names
    by_name = {r["recording"]: r for r in rows}
    assert "error" not in by_name["heartpy_data1"], by_name["heartpy_data1"]
    assert "error" not in by_name["heartpy_data2"], by_name["heartpy_data2"]  # timestamped
    assert by_name["heartpy_data3"]["seconds"] <= vitalcore.engine.MAX_CHECK_S
    for r in rows:
        if "error" not in r:
            assert r["prediction"] in {"no_model", "quality_too_low", "predicted", "features_unavailable"}
            assert 0.0 <= r["sqi"] <= 1.0
    # Same features as the one-shot analysis of the same recording.
    one_shot = {f.name: f.value for f in vitalcore.analyze_recording(_ppg(recordings_dir)).features}
    assert by_name["heartpy_data1"]["hr_mean"] == pytest.approx(one_shot["hr_mean"], rel=1e-9)
