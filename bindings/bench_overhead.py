#!/usr/bin/env python3
"""Per-call overhead of the uniffi bindings from Python (run by bindings/bench.sh).

Imports the generated module next to the release-ffi cdylib given on the command line,
so it measures the shipped build. Baseline: the same batch check in plain Python (what a
data team would write) and with NumPy.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import timeit
from pathlib import Path


def load(module_path: Path):
    spec = importlib.util.spec_from_file_location("vitalcore_ffi", module_path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def per_call_us(stmt, number: int) -> float:
    stmt()  # warm-up
    return min(timeit.repeat(stmt, number=number, repeat=7)) / number * 1e6


def main() -> int:
    ffi = load(Path(sys.argv[1]))
    import numpy as np

    x = [math.sin(i / 10) for i in range(1000)]
    arr = np.asarray(x)

    def pure(v=x, rate=100.0):
        if not (math.isfinite(rate) and 1.0 <= rate <= 2000.0) or not v:
            raise ValueError
        for s in v:
            if not math.isfinite(s) or abs(s) > 1e12:
                raise ValueError
        return len(v)

    def numpy_check(a=arr, rate=100.0):
        if not (math.isfinite(rate) and 1.0 <= rate <= 2000.0) or not a.size:
            raise ValueError
        if not (np.isfinite(a).all() and (np.abs(a) <= 1e12).all()):
            raise ValueError
        return a.size

    trivial = per_call_us(ffi.feature_count, 20_000)
    batch = per_call_us(lambda: ffi.validate_batch(x, 100.0), 2_000)
    batch_np = per_call_us(lambda: ffi.validate_batch(arr.tolist(), 100.0), 2_000)
    packed = per_call_us(lambda: ffi.validate_batch_f64le(arr.astype("<f8").tobytes(), 100.0), 20_000)
    py = per_call_us(pure, 2_000)
    npy = per_call_us(numpy_check, 2_000)
    print(f"BENCH python trivial_call_us={trivial:.3f}")
    print(f"BENCH python batch1000_call_us={batch:.3f}")
    print(f"BENCH python batch1000_from_ndarray_us={batch_np:.3f}")
    print(f"BENCH python batch1000_packed_ndarray_us={packed:.3f}")
    print(f"BENCH python batch1000_pure_python_us={py:.3f}")
    print(f"BENCH python batch1000_numpy_us={npy:.3f}")
    print(f"BENCH python batch1000_list_vs_pure_ratio={batch / py:.2f}")
    print(f"BENCH python batch1000_packed_vs_numpy_ratio={packed / npy:.2f}")
    session_push(ffi, arr)
    return 0


def session_push(ffi, arr) -> None:
    """Session.push_samples with 1,000 samples (1 s at 1 kHz) on a real engine; a new
    session every 500 pushes (a check takes at most 600 s), amortised in the figure.

    Where the time goes: a bare ctypes call (libc ``getpid``, no uniffi), the same push with
    1 sample (the fixed cost of the push path), and the native share measured inside the
    same library (``debug_native_push_ns``)."""
    import ctypes
    import statistics
    import tempfile

    class Key(ffi.KeyProvider):
        def root_key(self) -> bytes:
            return bytes([3]) * 32

    with tempfile.TemporaryDirectory() as d:
        engine = ffi.Engine.open(ffi.EngineConfig(d), Key())
        state = {"s": engine.start_check(ffi.CheckKind.ECG_RHYTHM), "k": 0}

        def next_start() -> float:
            if state["k"] == 500:
                state["s"].cancel()
                state["s"] = engine.start_check(ffi.CheckKind.ECG_RHYTHM)
                state["k"] = 0
            state["k"] += 1
            return float(state["k"] - 1)

        # The start time first: it may replace the session, and the push must go to the new one.
        def push_packed(data: bytes) -> None:
            t = next_start()
            state["s"].push_samples_f64le("ecg", t, 1000.0, data)

        def push_list(values: list) -> None:
            t = next_start()
            state["s"].push_samples("ecg", t, 1000.0, values)

        packed = per_call_us(lambda: push_packed(arr.astype("<f8").tobytes()), 2_000)
        raw = arr.astype("<f8").tobytes()
        prepacked = per_call_us(lambda: push_packed(raw), 2_000)
        listed = per_call_us(lambda: push_list(arr.tolist()), 200)
        # 1 sample per push, contiguous at 1 kHz: every push fits in one session.
        state["s"].cancel()
        one_session = engine.start_check(ffi.CheckKind.ECG_RHYTHM)
        one = b"\x00" * 8
        counter = iter(range(10**9))
        push1 = per_call_us(lambda: one_session.push_samples_f64le("ecg", next(counter) / 1000.0, 1000.0, one), 5_000)
        one_session.cancel()
        native = statistics.median(
            ffi.debug_native_push_ns(engine, ffi.CheckKind.ECG_RHYTHM, "ecg", 1000.0, raw, 15, 500)
        ) / 1000.0
        engine.shutdown()
    libc = ctypes.CDLL(None)
    ctypes_call = per_call_us(libc.getpid, 200_000)
    print(f"BENCH python ctypes_raw_call_us={ctypes_call:.3f}")
    print(f"BENCH python session_push1000_packed_us={packed:.3f}")
    print(f"BENCH python session_push1000_prepacked_us={prepacked:.3f}")
    print(f"BENCH python session_push1000_list_us={listed:.3f}")
    print(f"BENCH python session_push1_packed_us={push1:.3f}")
    print(f"BENCH python native_push1000_us={native:.3f}")
    print(f"BENCH python push1000_ffi_share_us={prepacked - native:.3f}")


if __name__ == "__main__":
    sys.exit(main())
