"""Errors a user can cause and fix.

Each carries a one-line message that says what was wrong and what to do; the CLI prints it without a
traceback and exits non-zero. Anything else escaping the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class PlanloopError(Exception):
    """Base class of the errors the CLI reports as a single line."""


class ConfigurationError(PlanloopError):
    """A setting is missing or invalid."""


class DataDirError(PlanloopError):
    """The data folder cannot be created or written."""


class DataDirInUseError(PlanloopError):
    """Another `planloop up` holds the data folder."""


class PortInUseError(PlanloopError):
    """An embedded server cannot listen because its port is taken."""

    def __init__(self, what: str, host: str, port: int, setting: str) -> None:
        super().__init__(
            f"cannot start {what}: port {port} on {host} is already in use; "
            f"stop whatever listens there or set {setting} to a free port"
        )
        self.host = host
        self.port = port
        self.setting = setting


class EmbeddedServerError(PlanloopError):
    """An embedded server failed to start or is already running elsewhere."""
