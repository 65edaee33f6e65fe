"""The command line before any network traffic: usage and configuration errors are one line."""

from __future__ import annotations

import pytest

from harness import ENROLL_TOKEN
from trainer import cli


def err_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("VITALCORE_SERVER_URL", "VITALCORE_ADMIN_TOKEN", "VITALCORE_ENROLLMENT_TOKEN", "VITALCORE_DEVICE_CREDENTIAL"):
        monkeypatch.delenv(k, raising=False)


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--held-out", "lots"])
    assert e.value.code == 2
    assert err_line(capsys).startswith("trainer: usage: argument --held-out")


def test_missing_server_and_admin_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["train"]) == 1
    assert err_line(capsys) == "trainer: no server: pass --server or set VITALCORE_SERVER_URL"
    monkeypatch.setenv("VITALCORE_SERVER_URL", "http://127.0.0.1:9")
    assert cli.main(["train"]) == 1
    assert err_line(capsys) == "trainer: no admin token: set VITALCORE_ADMIN_TOKEN"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--features", "rmssd,heart_vibes"], "not in feature set v1: heart_vibes"),
        (["--features", "rmssd,rmssd"], "distinct features"),
        (["--labels", "regular"], "exactly two distinct labels"),
        (["--held-out", "1.5"], "between 0 and 1"),
        (["--version", "two"], "semantic versioning"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITALCORE_ADMIN_TOKEN", "x")
    monkeypatch.setenv("VITALCORE_ENROLLMENT_TOKEN", ENROLL_TOKEN)
    # Port 9 (discard) is closed here: reaching the network would be a different error.
    assert cli.main(["train", "--server", "http://127.0.0.1:9", *args]) == 1
    assert message in err_line(capsys)


def test_device_side_credential_is_required(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALCORE_ADMIN_TOKEN", "x")
    assert cli.main(["train", "--server", "http://127.0.0.1:9"]) == 1
    assert "enrollment token is needed to fetch the active model" in err_line(capsys)


def test_other_labels_need_an_intended_use(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALCORE_ADMIN_TOKEN", "x")
    monkeypatch.setenv("VITALCORE_ENROLLMENT_TOKEN", ENROLL_TOKEN)
    assert cli.main(["train", "--server", "http://127.0.0.1:9", "--labels", "rest,stress"]) == 1
    assert "pass --intended-use" in err_line(capsys)
