"""Shared fixtures: keys and the recordings `make data` fetched."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import vitalcore

KEY = bytes((i * 7 + 1) % 256 for i in range(32))


def expected_fingerprint(key: bytes) -> str:
    """The documented fingerprint, computed with hashlib rather than vitalcore."""
    return hashlib.sha256(b"vitalcore/key-fingerprint/v1\0" + key).digest()[:8].hex()


class StaticKey(vitalcore.KeyProvider):
    """A provider returning fixed bytes, or raising a given exception."""

    def __init__(self, key: bytes = KEY, error: BaseException | None = None) -> None:
        self.key = key
        self.error = error
        self.calls = 0

    def root_key(self) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.key


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    cache = Path(os.environ.get("VITALCORE_CACHE", Path(__file__).resolve().parents[3] / ".cache"))
    rec = cache / "recordings"
    if not any(rec.glob("*.csv")):
        pytest.fail(f"no recordings in {rec}: run `make data` first")
    return rec
