"""The generated bindings from Python: records, errors, the foreign KeyProvider, async, panics."""
from __future__ import annotations

import asyncio
import math
import threading

import pytest

import vitalcore
from vitalcore import CardiacSignal, FeatureSource, VitalcoreError
from vitalcore._native import vitalcore_ffi as ffi

from conftest import KEY, StaticKey, expected_fingerprint


def test_version_and_catalogue_are_records() -> None:
    v = vitalcore.version_info()
    assert v.feature_set_version == "v1"
    assert vitalcore.__version__ == v.sdk_version
    features = vitalcore.features_v1()
    assert len(features) == vitalcore.feature_count()
    assert len({f.name for f in features}) == len(features)
    rmssd = vitalcore.feature_info("rmssd")
    assert (rmssd.unit, rmssd.source) == ("ms", FeatureSource.CARDIAC)
    assert rmssd in features
    assert vitalcore.feature_info("enmo_mean").source == FeatureSource.ACCEL


def test_unknown_feature_is_invalid_input() -> None:
    with pytest.raises(VitalcoreError.InvalidInput) as e:
        vitalcore.feature_info("no-such-feature")
    assert "no-such-feature" not in e.value.reason


def test_batch_validation() -> None:
    s = vitalcore.validate_batch([math.sin(i / 10) for i in range(1000)], 100.0)
    assert (s.count, s.duration_s) == (1000, 10.0)
    with pytest.raises(VitalcoreError.InvalidInput) as e:
        vitalcore.validate_batch([98.6, float("nan")], 50.0)
    assert "98.6" not in str(e.value)


def test_python_key_provider_round_trip() -> None:
    p = StaticKey()
    assert vitalcore.key_fingerprint(p) == expected_fingerprint(KEY)
    assert p.calls == 1
    other = bytes([KEY[0] ^ 1]) + KEY[1:]
    assert vitalcore.key_fingerprint(StaticKey(other)) == expected_fingerprint(other)
    assert expected_fingerprint(other) != expected_fingerprint(KEY)


def test_bad_keys_are_typed() -> None:
    with pytest.raises(VitalcoreError.InvalidInput):
        vitalcore.key_fingerprint(StaticKey(b"\x01" * 16))
    with pytest.raises(VitalcoreError.Crypto):
        vitalcore.key_fingerprint(StaticKey(bytes(32)))


ALL_VARIANTS = [
    VitalcoreError.InvalidInput("a"),
    VitalcoreError.Storage("b"),
    VitalcoreError.Crypto("c"),
    VitalcoreError.Network("d", 1500),
    VitalcoreError.Network("e", None),
    VitalcoreError.ModelRejected("f", vitalcore.ModelRejection.NOT_NEWER),
    VitalcoreError.ConsentRequired("g"),
    VitalcoreError.Interrupted("h"),
    VitalcoreError.Internal("i"),
]


@pytest.mark.parametrize("thrown", ALL_VARIANTS, ids=lambda e: type(e).__name__)
def test_every_error_variant_round_trips_through_rust(thrown: VitalcoreError) -> None:
    with pytest.raises(VitalcoreError) as e:
        vitalcore.key_fingerprint(StaticKey(error=thrown))
    caught = e.value
    assert type(caught) is type(thrown)
    assert caught is not thrown  # rebuilt from Rust's error, not the Python object passed along
    assert str(caught) == str(thrown)
    if isinstance(thrown, VitalcoreError.Network):
        assert caught.retry_after_ms == thrown.retry_after_ms
    if isinstance(thrown, VitalcoreError.ModelRejected):
        assert caught.kind == thrown.kind


def test_foreign_exception_of_another_type_is_internal_without_its_message() -> None:
    with pytest.raises(VitalcoreError.Internal) as e:
        vitalcore.key_fingerprint(StaticKey(error=RuntimeError("patient Jane Doe")))
    assert "Jane" not in str(e.value)


def test_async_runs_the_provider_off_the_event_loop_thread() -> None:
    seen: list[threading.Thread] = []

    class Recording(StaticKey):
        def root_key(self) -> bytes:
            seen.append(threading.current_thread())
            return super().root_key()

    async def main() -> str:
        return await vitalcore.key_fingerprint_async(Recording())

    assert asyncio.run(main()) == expected_fingerprint(KEY)
    assert seen and seen[0] is not threading.main_thread()


def test_many_concurrent_async_calls_complete() -> None:
    keys = [bytes((i + j + 1) % 256 for j in range(32)) for i in range(16)]

    async def main() -> list[str]:
        return await asyncio.gather(*(vitalcore.key_fingerprint_async(StaticKey(k)) for k in keys))

    assert asyncio.run(main()) == [expected_fingerprint(k) for k in keys]


def test_async_errors_are_typed() -> None:
    with pytest.raises(VitalcoreError.Crypto):
        asyncio.run(vitalcore.key_fingerprint_async(StaticKey(bytes(32))))


def test_panic_is_an_exception_and_the_library_keeps_working() -> None:
    with pytest.raises(vitalcore.InternalError, match="deliberate test panic"):
        ffi.debug_panic("deliberate test panic")
    assert vitalcore.feature_count() == len(vitalcore.features_v1())


def test_panic_in_async_worker_is_internal() -> None:
    with pytest.raises(VitalcoreError.Internal):
        asyncio.run(ffi.debug_panic_async("worker panic"))
    assert asyncio.run(vitalcore.key_fingerprint_async(StaticKey())) == expected_fingerprint(KEY)


def _pulse(seconds: float, rate: float, bpm: float) -> list[float]:
    f = bpm / 60.0
    out = []
    for i in range(int(seconds * rate)):
        ph = (i / rate * f) % 1.0
        out.append(math.exp(-(((ph - 0.2) / 0.08) ** 2)))
    return out


def test_cardiac_analysis_finds_the_generated_rate() -> None:
    a = vitalcore.analyze_cardiac(CardiacSignal.PPG, _pulse(60, 100.0, 72.0), 100.0)
    hr = {f.name: f.value for f in a.features}["hr_mean"]
    assert hr == pytest.approx(72.0, abs=0.5)
    assert 70 <= len(a.peaks) <= 74
    assert a.samples == 6000 and a.windows >= 1
    assert all(b > a_ for a_, b in zip(a.peaks, a.peaks[1:]))


def test_async_analysis_equals_sync() -> None:
    x = _pulse(30, 100.0, 60.0)
    sync = vitalcore.analyze_cardiac(CardiacSignal.PPG, x, 100.0)
    assert asyncio.run(vitalcore.analyze_cardiac_async(CardiacSignal.PPG, x, 100.0)) == sync


def test_analysis_errors_are_invalid_input() -> None:
    with pytest.raises(VitalcoreError.InvalidInput):
        vitalcore.analyze_cardiac(CardiacSignal.ECG, [0.0] * 10, 0.5)
    with pytest.raises(VitalcoreError.InvalidInput):
        vitalcore.analyze_accel([0.0] * 3, [0.0] * 2, [0.0] * 3, 50.0)


def test_packed_samples_give_the_same_results_as_lists() -> None:
    import numpy as np

    x = _pulse(30, 100.0, 66.0)
    as_list = vitalcore.analyze_cardiac(CardiacSignal.PPG, x, 100.0)
    assert vitalcore.analyze_cardiac_f64le(CardiacSignal.PPG, vitalcore.pack_f64le(x), 100.0) == as_list
    packed_np = vitalcore.pack_f64le(np.asarray(x))
    assert vitalcore.analyze_cardiac_f64le(CardiacSignal.PPG, packed_np, 100.0) == as_list
    assert vitalcore.validate_batch_f64le(vitalcore.pack_f64le(x), 100.0) == vitalcore.validate_batch(x, 100.0)
    with pytest.raises(VitalcoreError.InvalidInput):
        vitalcore.validate_batch_f64le(b"\x00" * 9, 100.0)
