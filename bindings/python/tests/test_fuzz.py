"""Random arguments into every exported function: typed exceptions only, never a crash.

A crash (abort, segfault) would kill the pytest process and fail the run; a Python
exception other than the documented ones fails the test.
"""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

import vitalcore
from vitalcore import CardiacSignal, VitalcoreError

from conftest import StaticKey

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
samples = st.lists(floats, max_size=3000)
rates = st.one_of(floats, st.sampled_from([0.0, -1.0, 1.0, 20.0, 50.0, 100.0, 2000.0, 2000.5, 1e308]))
FUZZ = settings(max_examples=150, deadline=None)


@FUZZ
@given(name=st.text(max_size=64))
def test_feature_info(name: str) -> None:
    try:
        info = vitalcore.feature_info(name)
        assert info.name == name
    except VitalcoreError.InvalidInput:
        pass


@FUZZ
@given(x=samples, rate=rates)
def test_validate_batch(x: list[float], rate: float) -> None:
    try:
        s = vitalcore.validate_batch(x, rate)
        assert s.count == len(x)
    except VitalcoreError.InvalidInput:
        pass


@FUZZ
@given(signal=st.sampled_from([CardiacSignal.ECG, CardiacSignal.PPG]), x=samples, rate=rates)
def test_analyze_cardiac(signal: CardiacSignal, x: list[float], rate: float) -> None:
    try:
        a = vitalcore.analyze_cardiac(signal, x, rate)
        assert a.samples == len(x)
        assert all(0 <= p < len(x) for p in a.peaks)
    except VitalcoreError.InvalidInput:
        pass


@FUZZ
@given(n=st.integers(0, 2000), extra=st.integers(-2, 2), data=st.data(), rate=rates)
def test_analyze_accel(n: int, extra: int, data: st.DataObject, rate: float) -> None:
    x = data.draw(st.lists(floats, min_size=n, max_size=n))
    y = data.draw(st.lists(floats, min_size=max(0, n + extra), max_size=max(0, n + extra)))
    z = data.draw(st.lists(floats, min_size=n, max_size=n))
    try:
        vitalcore.analyze_accel(x, y, z, rate)
    except VitalcoreError.InvalidInput:
        pass


@FUZZ
@given(key=st.binary(max_size=80))
def test_key_fingerprint(key: bytes) -> None:
    try:
        fp = vitalcore.key_fingerprint(StaticKey(key))
        assert len(key) == 32 and len(fp) == 16
    except (VitalcoreError.InvalidInput, VitalcoreError.Crypto):
        assert len(key) != 32 or key == bytes(32)


@settings(max_examples=40, deadline=None)
@given(key=st.binary(max_size=40))
def test_key_fingerprint_async(key: bytes) -> None:
    try:
        asyncio.run(vitalcore.key_fingerprint_async(StaticKey(key)))
    except (VitalcoreError.InvalidInput, VitalcoreError.Crypto):
        assert len(key) != 32 or key == bytes(32)


@FUZZ
@given(raw=st.binary(max_size=4000), rate=rates)
def test_packed_entry_points(raw: bytes, rate: float) -> None:
    for call in (
        lambda: vitalcore.validate_batch_f64le(raw, rate),
        lambda: vitalcore.analyze_cardiac_f64le(CardiacSignal.ECG, raw, rate),
    ):
        try:
            call()
        except VitalcoreError.InvalidInput:
            pass
