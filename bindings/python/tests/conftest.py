"""Shared fixtures: keys, the recordings `make data` fetched, and a real vitalcore-server."""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

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


class Server:
    """The real ``vitalcore-server`` binary on 127.0.0.1:0 with a temporary SQLite data dir.

    The port is the one the server reports in its ``listening`` log line; enrollment and
    admin tokens are random per run. Output goes to a file in the data dir (a pipe nobody
    drains would block the server).
    """

    REGION = "eu"

    def __init__(self, binary: Path, data_dir: Path, dev: bool = False) -> None:
        self.data_dir = data_dir
        self.enrollment_token = secrets.token_hex(24)
        self.admin_token = secrets.token_hex(24)
        self.log_path = data_dir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALCORE_")}
        env.update(
            VITALCORE_ENROLLMENT_TOKENS=self.enrollment_token,
            VITALCORE_ADMIN_TOKEN=self.admin_token,
            # Every test device enrolls from 127.0.0.1: the per-IP enrollment limit is not
            # what these tests are about.
            VITALCORE_ENROLL_BURST="10000",
            RUST_LOG="info",
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(binary), "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                 "--admin-listen", "127.0.0.1:0",
                 "--data-dir", str(data_dir), "--region", self.REGION] + (["--dev"] if dev else []),
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + 60
        api = admin = None
        while api is None and time.monotonic() < deadline and self.process.poll() is None:
            text = self.log_path.read_text()
            m = re.search(r'"message":"listening".*"api":"([^"]+)"', text)
            a = re.search(r'"message":"listening".*"admin":"([^"]+)"', text)
            api, admin = (m.group(1) if m else None), (a.group(1) if a else None)
            if api is None:
                time.sleep(0.02)
        if api is None or admin is None:
            self.stop()
            pytest.fail(f"vitalcore-server did not report its addresses; log:\n{self.log()}")
        self.url = f"http://{api}"
        # The admin routes live on their own (loopback) listener, never on the API one.
        self.admin_url = f"http://{admin}"
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"vitalcore-server at {self.url} was not ready; log:\n{self.log()}")

    def model_public_key_hex(self) -> str:
        """The Ed25519 public key a ``--dev`` server signs models with, as devices pin it.

        Dev mode writes its key as a PKCS#8 v2 (RFC 5958) document, which ends with the
        public key as ``[1] IMPLICIT BIT STRING``: ``81 21 00`` then the 32 key bytes.
        """
        der = (self.data_dir / "dev-signing-key.pk8").read_bytes()
        if len(der) < 35 or der[-35:-32] != bytes.fromhex("812100"):
            pytest.fail("the server's dev signing key is not a PKCS#8 v2 Ed25519 document")
        return der[-32:].hex()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def request(self, method: str, path: str, body: object = None, bearer: str | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        base = self.admin_url if path.startswith("/v1/admin/") else self.url
        req = urllib.request.Request(base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if bearer is not None:
            req.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def partner_records(self, study: str, features: list[str]) -> list[dict]:
        """Every record of ``study`` as a partner app reads it (key scoped to ``features``)."""
        status, body = self.request(
            "POST", "/v1/admin/partner-keys", {"studies": [study], "features": features, "records": True},
            bearer=self.admin_token,
        )
        assert status == 201, body
        key = json.loads(body)["api_key"]
        records: list[dict] = []
        cursor = 0
        while True:
            status, body = self.request("GET", f"/v1/partner/records?study={study}&limit=500&cursor={cursor}", bearer=key)
            assert status == 200, body
            page = json.loads(body)
            records.extend(page["records"])
            if page["next_cursor"] is None:
                return records
            cursor = page["next_cursor"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def server_binary() -> Path:
    """The ``vitalcore-server`` binary: ``VITALCORE_SERVER_BIN`` (set by ``make
    test-bindings-python``, which builds it) or the workspace's debug build."""
    default = Path(__file__).resolve().parents[3] / "target" / "debug" / "vitalcore-server"
    binary = Path(os.environ.get("VITALCORE_SERVER_BIN", default))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run `make server-bin` (or `make test-bindings-python`)")
    return binary


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the session (see ``server_binary``)."""
    s = Server(server_binary(), tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second session server, in dev mode so that it has a signing key (region statements)."""
    s = Server(server_binary(), tmp_path_factory.mktemp("signed-server"), dev=True)
    yield s
    s.stop()
