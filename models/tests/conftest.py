"""Fixtures: a real ``vitalcore-server`` process per test (see ``harness.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness import REPO, Server

# Tolerances derived from each model's arithmetic: one module for the SDK's Python tests and
# these (``onnx_tolerance``).
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server-data")
    yield s
    s.stop()


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[Server]:
    """Production mode: no signing key configured, so model upload is disabled."""
    s = Server(tmp_path / "server-data-prod", dev=False)
    yield s
    s.stop()
