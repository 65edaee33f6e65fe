"""Random arguments into every exported function: typed exceptions only, never a crash.

A crash (abort, segfault) would kill the pytest process and fail the run; a Python
exception other than the documented ones fails the test.
"""
from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

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
    # Three independent 2000-value lists exceed what hypothesis generates per example: each
    # axis repeats a drawn pattern of up to 64 values to its length.
    def axis(length: int) -> list[float]:
        pattern = data.draw(st.lists(floats, min_size=1, max_size=64))
        return [pattern[i % len(pattern)] for i in range(length)]

    x = axis(n)
    y = axis(max(0, n + extra))
    z = axis(n)
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


# The engine API: one engine per test, random calls in random order. Only typed errors may
# come out; the engine must stay usable (a final health call succeeds) unless shut down.
ENGINE_ERRORS = (
    VitalcoreError.InvalidInput,
    VitalcoreError.Closed,
    VitalcoreError.NotFound,
    VitalcoreError.Backpressure,
    VitalcoreError.Interrupted,
    # sync_now / update_model on an engine with no endpoint.
    VitalcoreError.NotConfigured,
    # install_model with anything but a bundle signed by a pinned key.
    VitalcoreError.ModelRejected,
)
_MODELS = Path(__file__).resolve().parents[3] / "models"
_ENVELOPE = (_MODELS / "rhythm-ppg.signed.json").read_bytes()
_ARTIFACT = (_MODELS / "rhythm-ppg.onnx").read_bytes()


@st.composite
def bundles(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Random bytes, or the real shipped bundle (signed by a key no engine here pins) with a
    few bytes of either part overwritten."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400)), draw(st.binary(max_size=400))
    parts = [bytearray(_ENVELOPE), bytearray(_ARTIFACT)]
    for _ in range(draw(st.integers(0, 3))):
        part = parts[draw(st.integers(0, 1))]
        part[draw(st.integers(0, len(part) - 1))] = draw(st.integers(0, 255))
    return bytes(parts[0]), bytes(parts[1])



purposes = st.one_of(
    st.sampled_from(["research", "model_training", "partner_sharing", "research_study_1", "research_", "Research"]),
    st.text(max_size=40),
)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
kinds = st.sampled_from(list(vitalcore.CheckKind))
channels = st.one_of(st.sampled_from(["ppg", "ecg", "accel_x", "accel_y", "accel_z"]), st.text(max_size=40))
times = st.one_of(floats, st.sampled_from([0.0, 1.7e9, -1.0, 1e18]))
ids = st.one_of(st.text(max_size=40), st.text("0123456789abcdef", min_size=32, max_size=32))
i64 = st.integers(-(2**63), 2**63 - 1)
engine_ops = st.one_of(
    st.tuples(st.just("push"), channels, times, rates, samples),
    st.tuples(st.just("push_packed"), channels, times, rates, st.binary(max_size=2000)),
    st.tuples(st.just("push_ts"), channels, st.lists(floats, max_size=300), st.lists(floats, max_size=300), rates),
    st.tuples(st.just("finish")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("new_session"), kinds),
    st.tuples(st.just("capture"), kinds, floats, floats),
    st.tuples(st.just("history"), i64, i64, st.one_of(st.none(), kinds)),
    st.tuples(st.just("label"), ids, st.text(max_size=80), floats, st.text(max_size=80), i64),
    st.tuples(st.just("labels"), ids),
    st.tuples(st.just("delete"), ids),
    st.tuples(st.just("interrupt")),
    st.tuples(st.just("consent"), purposes, st.text(max_size=40)),
    st.tuples(st.just("revoke"), purposes),
    st.tuples(st.just("consents")),
    st.tuples(st.just("sync_options"), st.text(max_size=40), st.text(max_size=40), i64, u32, u32, u64, u64, u64, st.booleans()),
    st.tuples(st.just("conditions"), st.booleans(), st.booleans()),
    st.tuples(st.just("sync")),
    st.tuples(st.just("export")),
    st.tuples(st.just("delete_my_data")),
    st.tuples(st.just("install_model"), bundles()),
    st.tuples(st.just("update_model"), st.text(max_size=70)),
    st.tuples(st.just("active_model")),
)


@settings(max_examples=60, deadline=None)
@given(kind=kinds, ops=st.lists(engine_ops, max_size=12))
def test_engine_api(tmp_path_factory, kind, ops) -> None:  # type: ignore[no-untyped-def]
    engine = vitalcore.Engine.open(vitalcore.EngineConfig(str(tmp_path_factory.mktemp("e"))), StaticKey())
    session = engine.start_check(kind)
    captures = []
    try:
        for op in ops:
            try:
                name, *args = op
                if name == "push":
                    session.push_samples(args[0], args[1], args[2], args[3])
                elif name == "push_packed":
                    session.push_samples_f64le(*args)
                elif name == "push_ts":
                    session.push_timestamped(*args)
                elif name == "finish":
                    session.finish()
                elif name == "cancel":
                    session.cancel()
                elif name == "new_session":
                    session = engine.start_check(args[0])
                elif name == "capture":
                    cap = engine.start_capture(*args)
                    captures.append(cap)
                    cap.push_samples(kind_channel(args[0]), 0.0, 100.0, [0.0] * 10)
                elif name == "history":
                    engine.checks(*args)
                    engine.windows(*args)
                elif name == "label":
                    engine.add_label(args[0], vitalcore.Label(name=args[1], value=args[2], source=args[3], recorded_at_ms=args[4]))
                elif name == "labels":
                    engine.labels(args[0])
                elif name == "delete":
                    engine.delete_check(args[0])
                elif name == "interrupt":
                    engine.interrupt()
                elif name == "consent":
                    c = engine.grant_consent(args[0], args[1])
                    assert c.granted and c.purpose == args[0]
                elif name == "revoke":
                    assert not engine.revoke_consent(args[0]).granted
                elif name == "consents":
                    c = engine.consents()
                    assert len(c.current) <= len(c.history)
                elif name == "sync_options":
                    token, study, granularity, records, attempts, base, cap, timeout, wifi = args
                    opts = (
                        vitalcore.SyncOptions()
                        .enrollment_token(token)
                        .study(study)
                        .time_granularity_s(granularity)
                        .max_records(records)
                        .max_attempts(attempts)
                        .backoff_ms(base, cap)
                        .timeout_ms(timeout)
                        .wifi_only(wifi)
                    )
                    engine.set_sync_options(opts)
                elif name == "conditions":
                    engine.set_device_conditions(*args)
                elif name == "sync":
                    asyncio.run(engine.sync_now())
                elif name == "export":
                    assert json.loads(engine.export_my_data())["format"] == "vitalcore-export"
                elif name == "delete_my_data":
                    r = asyncio.run(engine.delete_my_data())
                    assert r.server == vitalcore.ServerErasure.NOT_NEEDED(), "never enrolled"
                elif name == "install_model":
                    engine.install_model(*args[0])
                    raise AssertionError("no bundle here is signed by a pinned key")
                elif name == "update_model":
                    asyncio.run(engine.update_model(args[0]))
                    raise AssertionError("no endpoint to update from")
                elif name == "active_model":
                    assert engine.active_model() == vitalcore.ModelInfo(name="rhythm-ppg", version="1.0.0")
            except ENGINE_ERRORS:
                pass
        for cap in captures:
            cap.stop()
        engine.checks(0, 2**62, None)  # still usable
    finally:
        engine.shutdown()


def kind_channel(kind: vitalcore.CheckKind) -> str:
    return {vitalcore.CheckKind.PPG_RHYTHM: "ppg", vitalcore.CheckKind.ECG_RHYTHM: "ecg"}.get(kind, "accel_x")


# Sync settings from random text: no endpoint here has a scheme or a port separator (no
# ':'), so no request can reach a name server; the dead endpoint is a closed local port.
def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


endpoints = st.one_of(st.text(max_size=40).filter(lambda t: ":" not in t), st.builds(_dead_endpoint))


@settings(max_examples=40, deadline=None)
@given(endpoint=endpoints, region=st.text(max_size=10), token=st.one_of(st.none(), st.text(max_size=40)))
def test_sync_with_random_settings(tmp_path_factory, endpoint: str, region: str, token) -> None:  # type: ignore[no-untyped-def]
    config = vitalcore.EngineConfig(str(tmp_path_factory.mktemp("s"))).sync_endpoint(endpoint).sync_region(region)
    try:
        engine = vitalcore.Engine.open(config, StaticKey())
    except VitalcoreError.InvalidInput:
        return  # the config itself was refused, which is a typed answer too
    try:
        opts = vitalcore.SyncOptions().max_attempts(1).backoff_ms(1, 2).timeout_ms(2000)
        engine.set_sync_options(opts if token is None else opts.enrollment_token(token))
        try:
            asyncio.run(engine.sync_now())
            raise AssertionError("nothing listens at any of these endpoints")
        except (VitalcoreError.NotConfigured, VitalcoreError.Network, VitalcoreError.InvalidInput):
            pass
        assert engine.pending_erasures() == 0
    finally:
        engine.shutdown()
