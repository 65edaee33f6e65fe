"""Consent, sync, export and deletion through the wheel against the real vitalcore-server,
on checks of a real recording. What arrived is read back through the server's partner API."""
from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import vitalcore
from vitalcore import CheckKind, EngineConfig, Purpose, ServerErasure, SyncOptions, VitalcoreError

from conftest import Server, StaticKey

T0 = 1_764_001_234.5


def _minutes(recordings_dir: Path, n: int) -> list[list[float]]:
    x = vitalcore.load_recording(recordings_dir / "heartpy_data3.csv").channels[0]
    assert len(x) >= n * 6000, "heartpy data3 is shorter than expected"
    return [list(x[i * 6000 : (i + 1) * 6000]) for i in range(n)]


def _checks(engine: vitalcore.Engine, pieces: list[list[float]], first_hour: int) -> list[float]:
    """One 60 s PPG check per piece, an hour apart; their hr_mean values."""
    out = []
    for i, x in enumerate(pieces):
        s = engine.start_check(CheckKind.PPG_RHYTHM)
        s.push_samples_f64le("ppg", T0 + (first_hour + i) * 3600.0, 100.0, vitalcore.pack_f64le(x))
        out.append(s.finish().check.features["hr_mean"])
    return out


def _config(path: Path, endpoint: str, region_keys: list[str] | None = None) -> EngineConfig:
    return (
        EngineConfig(str(path))
        .sync_endpoint(endpoint)
        .sync_region(Server.REGION)
        .sync_region_keys(region_keys or [])
        .outbox_purpose(Purpose.PARTNER_SHARING)
    )


def _options(server: Server, study: str) -> SyncOptions:
    return (
        SyncOptions()
        .enrollment_token(server.enrollment_token)
        .study(study)
        .max_attempts(2)
        .backoff_ms(10, 100)
        .timeout_ms(5000)
    )


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class RecordingProxy:
    """A reverse proxy in front of a real server that records the request line of everything
    it forwards (``"POST /v1/enroll"``), in arrival order: what a device sent, observed outside
    the device."""

    _HOP = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(proxy.target + self.path, data=body, method=self.command)
                for k, v in self.headers.items():
                    if k.lower() not in RecordingProxy._HOP:
                        req.add_header(k, v)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, headers, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in RecordingProxy._HOP | {"date", "server"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recording_proxy(signed_server: Server) -> Iterator[RecordingProxy]:
    p = RecordingProxy(signed_server.url)
    yield p
    p.close()


def _hr_on_server(server: Server, study: str) -> list[float]:
    return sorted(r["features"]["hr_mean"] for r in server.partner_records(study, ["hr_mean"]))


def test_consent_gates_uploads_and_records_arrive_once_with_the_devices_values(
    tmp_path: Path, recordings_dir: Path, server: Server
) -> None:
    study = "python_sync"
    with vitalcore.open_engine(_config(tmp_path, server.url), StaticKey()) as engine:
        engine.set_sync_options(_options(server, study))
        hr = _checks(engine, _minutes(recordings_dir, 3), first_hour=0)

        before = asyncio.run(engine.sync_now())
        assert before.enrolled and before.uploads.records_acked == 0
        assert _hr_on_server(server, study) == []

        granted = engine.grant_consent(Purpose.PARTNER_SHARING, "policy-2026-11")
        assert granted.granted and granted.policy_version == "policy-2026-11"
        assert [(c.purpose, c.granted) for c in engine.consents().current] == [(Purpose.PARTNER_SHARING, True)]

        first = asyncio.run(engine.sync_now())
        assert not first.enrolled
        assert first.uploads.records_acked == 3 and first.uploads.bytes_sent > 0
        # Bit for bit what the device computed (JSON floats round-trip exactly).
        assert _hr_on_server(server, study) == sorted(hr)
        assert asyncio.run(engine.sync_now()).uploads.records_acked == 0

        engine.revoke_consent(Purpose.PARTNER_SHARING)
        assert engine.pending_erasures() == 1
        _checks(engine, _minutes(recordings_dir, 1), first_hour=10)
        after = asyncio.run(engine.sync_now())
        assert after.erasures_delivered == 1 and after.uploads.records_acked == 0
        assert engine.pending_erasures() == 0
        assert _hr_on_server(server, study) == []
        assert [c.granted for c in engine.consents().history] == [True, False]


def test_export_holds_every_check_and_deletion_reaches_the_server(
    tmp_path: Path, recordings_dir: Path, server: Server
) -> None:
    study = "python_rights"
    with vitalcore.open_engine(_config(tmp_path, server.url), StaticKey()) as engine:
        engine.set_sync_options(_options(server, study))
        engine.grant_consent(Purpose.PARTNER_SHARING, "v1")
        hr = _checks(engine, _minutes(recordings_dir, 2), first_hour=0)
        assert asyncio.run(engine.sync_now()).uploads.records_acked == 2

        export = json.loads(engine.export_my_data())
        assert export["format"] == "vitalcore-export" and export["version"] == 1
        assert sorted(c["features"]["hr_mean"] for c in export["checks"]) == sorted(hr)
        assert [c["purpose"] for c in export["consents"]] == [Purpose.PARTNER_SHARING]
        assert json.loads(asyncio.run(engine.export_my_data_async()))["checks"] == export["checks"]

        report = asyncio.run(engine.delete_my_data())
        assert report.keys_destroyed > 0
        assert isinstance(report.server, ServerErasure.CONFIRMED), report.server
        assert _hr_on_server(server, study) == []
        assert engine.checks(0, 2**62, None) == []
        assert json.loads(engine.export_my_data())["checks"] == []


def test_a_deletion_made_offline_is_delivered_by_the_next_sync(
    tmp_path: Path, recordings_dir: Path, server: Server
) -> None:
    study = "python_offline_delete"
    with vitalcore.open_engine(_config(tmp_path, server.url), StaticKey()) as engine:
        engine.set_sync_options(_options(server, study))
        engine.grant_consent(Purpose.PARTNER_SHARING, "v1")
        _checks(engine, _minutes(recordings_dir, 2), first_hour=0)
        assert asyncio.run(engine.sync_now()).uploads.records_acked == 2
    with vitalcore.open_engine(_config(tmp_path, _dead_endpoint()), StaticKey()) as engine:
        engine.set_sync_options(_options(server, study))
        report = asyncio.run(engine.delete_my_data())
        assert isinstance(report.server, ServerErasure.PENDING), report.server
        assert report.server.requests == engine.pending_erasures() >= 1
        assert engine.checks(0, 2**62, None) == []
    assert len(_hr_on_server(server, study)) == 2, "the server still holds them"
    with vitalcore.open_engine(_config(tmp_path, server.url), StaticKey()) as engine:
        engine.set_sync_options(_options(server, study))
        assert asyncio.run(engine.sync_now()).erasures_delivered >= 1
        assert engine.pending_erasures() == 0
    assert _hr_on_server(server, study) == []


def test_sync_errors_are_actionable(tmp_path: Path, recordings_dir: Path, server: Server) -> None:
    with vitalcore.open_engine(tmp_path / "a", StaticKey()) as engine:
        with pytest.raises(VitalcoreError.NotConfigured, match="endpoint"):
            asyncio.run(engine.sync_now())
        with pytest.raises(VitalcoreError.InvalidInput):
            engine.grant_consent("advertising", "v1")
    with vitalcore.open_engine(_config(tmp_path / "b", server.url), StaticKey()) as engine:
        with pytest.raises(VitalcoreError.NotConfigured):
            asyncio.run(engine.sync_now())  # no enrollment token, no credential
        engine.set_sync_options(SyncOptions().enrollment_token("not-this-server"))
        with pytest.raises(VitalcoreError.Unauthorized):
            asyncio.run(engine.sync_now())
    with vitalcore.open_engine(_config(tmp_path / "c", _dead_endpoint()), StaticKey()) as engine:
        engine.set_sync_options(_options(server, "python_dead"))
        engine.grant_consent(Purpose.PARTNER_SHARING, "v1")
        _checks(engine, _minutes(recordings_dir, 1), first_hour=0)
        with pytest.raises(VitalcoreError.Network) as err:
            asyncio.run(engine.sync_now())
        assert err.value.retry_after_ms is None
        # Never enrolled: no server holds anything.
        assert asyncio.run(engine.delete_my_data()).server == ServerErasure.NOT_NEEDED()


def test_region_statement_is_verified_against_the_pinned_key_before_anything_is_sent(
    tmp_path: Path, recordings_dir: Path, signed_server: Server, recording_proxy: RecordingProxy
) -> None:
    study = "python_region"
    good = [signed_server.model_public_key_hex()]
    other = ["11" * 32]  # well-formed, but not the server's key
    sent = recording_proxy.requests
    with vitalcore.open_engine(_config(tmp_path / "other", recording_proxy.url, other), StaticKey()) as engine:
        engine.set_sync_options(_options(signed_server, study))
        engine.grant_consent(Purpose.PARTNER_SHARING, "v1")
        _checks(engine, _minutes(recordings_dir, 1), first_hour=0)
        with pytest.raises(VitalcoreError.NotConfigured, match="region"):
            asyncio.run(engine.sync_now())
    # What left the device: region questions only, no enrollment, no batch.
    assert sent, "the device asked the endpoint nothing"
    assert all(r.startswith("GET /v1/region?nonce=") for r in sent), sent
    assert _hr_on_server(signed_server, study) == []
    del sent[:]
    with vitalcore.open_engine(_config(tmp_path / "good", recording_proxy.url, good), StaticKey()) as engine:
        engine.set_sync_options(_options(signed_server, study))
        engine.grant_consent(Purpose.PARTNER_SHARING, "v1")
        hr = _checks(engine, _minutes(recordings_dir, 2), first_hour=0)
        asyncio.run(engine.sync_now())
    assert _hr_on_server(signed_server, study) == sorted(hr)
    # With the right key the same capture sees the upload, after the region question.
    assert sent[0].startswith("GET /v1/region?nonce="), sent
    assert any(r.startswith("POST /v1/enroll") for r in sent), sent
    assert any(r.startswith("POST /v1/batches") for r in sent), sent
    with pytest.raises(VitalcoreError.InvalidInput, match="region keys"):
        vitalcore.Engine.open(_config(tmp_path / "bad", signed_server.url, ["not hex"]), StaticKey())
