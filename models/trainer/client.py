"""The backend's HTTP API, as the trainer uses it: admin export and upload, device-side reads.

Only the documented routes of ``backend/openapi.json`` are used. Credentials travel in the
``Authorization`` header and are never printed; error text comes from the backend's own
``{"error": code, "message": ...}`` body, which by design carries no personal data.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import requests
from tqdm import tqdm

from trainer.errors import ProtocolError, ServerRefused, ServerUnreachable

ARROW_STREAM = "application/vnd.apache.arrow.stream"
# A 429 or a transient 503 says when to come back; anything longer is not worth waiting for.
MAX_RETRY_AFTER_S = 10.0
RETRIES = 3


@dataclass(frozen=True)
class ActiveModel:
    """The model a device is served now: its manifest (decoded payload) and ONNX bytes."""

    manifest: dict[str, Any]
    onnx: bytes


class Backend:
    """A ``vitalcore-server`` reached at ``base_url``."""

    def __init__(self, base_url: str, admin_token: str, timeout_s: float = 60.0, progress: bool | None = None):
        self.base = base_url.rstrip("/")
        self._admin = admin_token
        self._timeout = timeout_s
        self._progress = progress
        self._http = requests.Session()

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, action: str, method: str, path: str, token: str | None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(RETRIES + 1):
            try:
                resp = self._http.request(method, self.base + path, headers=headers, timeout=self._timeout, **kw)
            except requests.RequestException as e:
                # The exception text may hold the URL but never a credential (headers are not
                # part of it); keep only its class to stay on one short line.
                raise ServerUnreachable(f"cannot reach the server for {action}: {type(e).__name__}") from None
            if resp.status_code < 400:
                return resp
            code, message = _error_body(resp)
            transient = resp.status_code == 429 or (resp.status_code == 503 and code == "unavailable")
            if transient and attempt < RETRIES:
                time.sleep(_retry_after(resp))
                continue
            raise ServerRefused(action, resp.status_code, code, message)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    # -- admin ----------------------------------------------------------------------------

    def export(self, study: str | None = None) -> bytes:
        """The labelled training export (Arrow IPC stream bytes)."""
        params = {"study": study} if study else None
        resp = self._request("the training export", "GET", "/v1/admin/export", self._admin, params=params, stream=True)
        ctype = resp.headers.get("content-type", "")
        if not ctype.startswith(ARROW_STREAM):
            raise ProtocolError(f"training export has content type {ctype!r}, expected {ARROW_STREAM}")
        total = int(resp.headers.get("content-length") or 0) or None
        buf = io.BytesIO()
        with tqdm(total=total, unit="B", unit_scale=True, desc="export", disable=_disable(self._progress)) as bar:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                buf.write(chunk)
                bar.update(len(chunk))
        return buf.getvalue()

    def upload(self, manifest: dict[str, Any], onnx: bytes, rollout_percent: int = 100) -> dict[str, Any]:
        """Uploads the bundle for the server to sign and publish; returns the signed envelope."""
        body = {
            "manifest": manifest,
            "artifact_base64": base64.b64encode(onnx).decode("ascii"),
            "rollout_percent": rollout_percent,
        }
        resp = self._request("the model upload", "POST", "/v1/admin/models", self._admin, json=body)
        return _json(resp, "the model upload")

    # -- device side ----------------------------------------------------------------------

    def enroll(self, enrollment_token: str) -> str:
        """Enrolls as a device (the registry's read routes are device routes); the credential."""
        resp = self._request("enrollment", "POST", "/v1/enroll", None, json={"enrollment_token": enrollment_token})
        doc = _json(resp, "enrollment")
        cred = doc.get("credential")
        if not isinstance(cred, str) or not cred:
            raise ProtocolError("enrollment answer has no credential")
        return cred

    def active_model(self, name: str, device_credential: str) -> ActiveModel | None:
        """The manifest and ONNX bytes the server serves for ``name`` now; ``None`` if none."""
        try:
            resp = self._request("the active manifest", "GET", f"/v1/models/{name}/manifest", device_credential)
        except ServerRefused as e:
            if e.status == 404:
                return None
            raise
        envelope = _json(resp, "the active manifest")
        manifest = decode_envelope(envelope, "the active manifest")
        version = manifest.get("version")
        art = self._request(
            "the active model's artifact", "GET", f"/v1/models/{name}/versions/{version}/artifact", device_credential
        ).content
        pinned = manifest.get("artifact") or {}
        if len(art) != pinned.get("length") or hashlib.sha256(art).hexdigest() != pinned.get("sha256"):
            raise ProtocolError(f"active model {name} {version}: artifact does not match its manifest's sha256/length")
        return ActiveModel(manifest=manifest, onnx=art)


def decode_envelope(envelope: Any, what: str) -> dict[str, Any]:
    """The manifest carried by a ``SignedManifest`` envelope (signature checks are the SDK's)."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        manifest = json.loads(payload)
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"{what} is not a signed manifest envelope") from None
    if not isinstance(manifest, dict) or not envelope.get("signatures"):
        raise ProtocolError(f"{what} carries no manifest or no signature")
    return manifest


def _json(resp: requests.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise ProtocolError(f"{what}: the server's answer is not JSON") from None


def _error_body(resp: requests.Response) -> tuple[str | None, str | None]:
    try:
        doc = resp.json()
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    code, message = doc.get("error"), doc.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


def _retry_after(resp: requests.Response) -> float:
    try:
        secs = float(resp.headers.get("retry-after", "1"))
    except ValueError:
        secs = 1.0
    return min(max(secs, 0.1), MAX_RETRY_AFTER_S)


def _disable(progress: bool | None) -> bool | None:
    # tqdm: None = show only on a terminal, so logs and tests stay free of bar redraws.
    return None if progress is None else not progress
