"""Every way the trainer can stop short of publishing, each with one clear line of text.

Messages name counts, versions, status codes and feature names only: never a subject id, a
record id, a feature value or a credential.
"""

from __future__ import annotations

# Exit codes: the CLI turns the exception class into one of these.
EXIT_FAILURE = 1
EXIT_REFUSED = 3


class TrainerError(Exception):
    """Base class; ``str(e)`` is the one line the CLI prints."""

    exit_code = EXIT_FAILURE


class ConfigError(TrainerError):
    """Flags or environment are missing or contradict each other."""


class ServerUnreachable(TrainerError):
    """The backend could not be reached (connection refused, timeout, DNS)."""


class ServerRefused(TrainerError):
    """The backend answered with an error status.

    ``code`` is the backend's stable machine-readable code (``unauthorized``, ``conflict``,
    ``not_configured``...), or ``None`` when the body was not the backend's error shape.
    """

    def __init__(self, action: str, status: int, code: str | None, message: str | None):
        self.action = action
        self.status = status
        self.code = code
        detail = message or code or "no details"
        super().__init__(f"server refused {action}: HTTP {status} ({detail})")


class ProtocolError(TrainerError):
    """The backend answered 2xx with something the trainer cannot use."""


class DataError(TrainerError):
    """The training export cannot be trained on (empty, too small, one class, bad columns)."""


class RunnerUnavailable(TrainerError):
    """The inference runner needed for the parity check cannot be used on this machine."""


class Refused(TrainerError):
    """The trainer itself refuses to publish (worse than the active model, parity failure)."""

    exit_code = EXIT_REFUSED


class WorseThanActive(Refused):
    """The new model scores below the active one on the same held-out rows."""


class ParityFailure(Refused):
    """ONNX Runtime and the second runner disagree beyond the tolerance."""
