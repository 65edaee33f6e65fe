"""Model updates through the wheel against the real vitalcore-server: the server signs and
publishes a bundle uploaded by its admin API, ``await engine.update_model`` fetches, verifies
and installs it, and a check's prediction then names the new version. Refusals (tampered,
rolled back) arrive as ``ModelRejected`` with their kind while the old model keeps serving."""
from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Iterator

import pytest

import vitalcore
from vitalcore import CheckKind, EngineConfig, ModelRejection, PredictionOutcome, SyncOptions, VitalcoreError

from conftest import Server, StaticKey, server_binary

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
NAME = "rhythm-ppg"


@pytest.fixture
def signing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server per test, in dev mode so that it has a model-signing key (what one test
    publishes must not change what another is served)."""
    s = Server(server_binary(), tmp_path_factory.mktemp("signing-server"), dev=True)
    yield s
    s.stop()


def _publish(server: Server, version: str) -> None:
    """Uploads the shipped model as ``version`` for the server to sign and publish."""
    manifest = json.loads((MODELS / "rhythm-ppg.manifest.json").read_text())
    manifest["version"] = version
    artifact = (MODELS / "rhythm-ppg.onnx").read_bytes()
    status, body = server.request(
        "POST", "/v1/admin/models",
        {"manifest": manifest, "artifact_base64": base64.b64encode(artifact).decode()},
        bearer=server.admin_token,
    )
    assert status == 201, body


def _served(server: Server) -> tuple[bytes, bytes]:
    """The signed envelope and artifact a device is served now."""
    status, body = server.request("POST", "/v1/enroll", {"enrollment_token": server.enrollment_token})
    assert status == 201, body
    cred = json.loads(body)["credential"]
    status, envelope = server.request("GET", f"/v1/models/{NAME}/manifest", bearer=cred)
    assert status == 200, envelope
    version = json.loads(base64.b64decode(json.loads(envelope)["payload"]))["version"]
    status, artifact = server.request("GET", f"/v1/models/{NAME}/versions/{version}/artifact", bearer=cred)
    assert status == 200, artifact
    return envelope, artifact


def _served_by(engine: vitalcore.Engine, recordings_dir: Path) -> str:
    """The model version named by the prediction of a 60 s PPG check of a real recording."""
    x = vitalcore.load_recording(recordings_dir / "heartpy_data3.csv").channels[0][:6000]
    s = engine.start_check(CheckKind.PPG_RHYTHM)
    s.push_samples_f64le("ppg", 1_764_001_234.5, 100.0, vitalcore.pack_f64le(list(x)))
    p = s.finish().check.prediction
    assert isinstance(p, PredictionOutcome.PREDICTED), p
    assert p.model_name == NAME
    return p.model_version


def _engine(path: Path, server: Server, keys: list[str]) -> vitalcore.Engine:
    config = EngineConfig(str(path)).sync_endpoint(server.url).sync_region(Server.REGION).model_public_keys(keys)
    engine = vitalcore.Engine.open(config, StaticKey())
    engine.set_sync_options(SyncOptions().enrollment_token(server.enrollment_token).max_attempts(2).timeout_ms(10_000))
    return engine


def test_update_installs_the_servers_model_and_refusals_keep_the_old_one(
    tmp_path: Path, recordings_dir: Path, signing_server: Server
) -> None:
    server = signing_server
    engine = _engine(tmp_path / "device", server, [server.model_public_key_hex()])
    try:
        default = engine.active_model()
        assert default is not None and (default.name, default.version) == (NAME, "1.0.0")
        assert _served_by(engine, recordings_dir) == "1.0.0"
        with pytest.raises(VitalcoreError.NotFound):
            asyncio.run(engine.update_model(NAME))  # nothing published yet

        _publish(server, "2.0.0")
        installed = asyncio.run(engine.update_model(NAME))
        assert installed == vitalcore.ModelInfo(name=NAME, version="2.0.0")
        assert engine.active_model() == installed
        assert _served_by(engine, recordings_dir) == "2.0.0"
        assert asyncio.run(engine.update_model(NAME)) is None, "the same version again is no new model"

        envelope, artifact = _served(server)
        # Tampered: the payload claims another version, the signature no longer matches.
        outer = json.loads(envelope)
        payload = json.loads(base64.b64decode(outer["payload"]))
        payload["version"] = "9.0.0"
        outer["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        with pytest.raises(VitalcoreError.ModelRejected) as e:
            engine.install_model(json.dumps(outer).encode(), artifact)
        assert e.value.kind == ModelRejection.TAMPERED
        # Tampered artifact under a genuine envelope.
        flipped = bytes([artifact[0] ^ 1]) + artifact[1:]
        with pytest.raises(VitalcoreError.ModelRejected) as e:
            engine.install_model(envelope, flipped)
        assert e.value.kind == ModelRejection.TAMPERED
        # The genuine bundle again: not newer than what the device trusts.
        with pytest.raises(VitalcoreError.ModelRejected) as e:
            engine.install_model(envelope, artifact)
        assert e.value.kind == ModelRejection.NOT_NEWER
        assert engine.active_model() == installed
        assert _served_by(engine, recordings_dir) == "2.0.0"
    finally:
        engine.shutdown()


def test_install_async_and_an_unpinned_publisher(tmp_path: Path, signing_server: Server) -> None:
    """A device that does not pin the server's key refuses its bundle as untrusted; one that
    pins it installs the very same bytes."""
    server = signing_server
    _publish(server, "5.0.0")
    envelope, artifact = _served(server)
    unpinned = _engine(tmp_path / "unpinned", server, [])
    try:
        with pytest.raises(VitalcoreError.ModelRejected) as e:
            asyncio.run(unpinned.install_model_async(envelope, artifact))
        assert e.value.kind == ModelRejection.UNTRUSTED_PUBLISHER
        with pytest.raises(VitalcoreError.ModelRejected) as e:
            asyncio.run(unpinned.update_model(NAME))
        assert e.value.kind == ModelRejection.UNTRUSTED_PUBLISHER
        assert unpinned.active_model() == vitalcore.ModelInfo(name=NAME, version="1.0.0")
    finally:
        unpinned.shutdown()
    pinned = _engine(tmp_path / "pinned", server, [server.model_public_key_hex()])
    try:
        info = asyncio.run(pinned.install_model_async(envelope, artifact))
        assert info == vitalcore.ModelInfo(name=NAME, version="5.0.0")
        assert pinned.active_model() == info
    finally:
        pinned.shutdown()
