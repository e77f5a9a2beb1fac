"""What a job ends with: a :class:`Result`, or a :class:`DaemonError`. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class DaemonError(Exception):
    """An ERROR from the daemon, or no daemon to talk to; ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str, job: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.job = job


class JobCancelled(DaemonError):
    """The job was cancelled; ``reason`` is CANCELLED's: ``request``, ``client_gone`` or
    ``shutdown``."""

    def __init__(self, job: str = "", reason: str = "request") -> None:
        why = {"shutdown": " (the daemon is shutting down)",
               "client_gone": " (its client's connection closed)"}.get(reason, "")
        super().__init__("cancelled", f"job {job} was cancelled{why}", job)
        self.reason = reason


@dataclass
class Result:
    """A finished render: the RESULT header (image meta, classes seen, ...) and its pixels."""

    header: dict[str, Any]
    pixels: bytes

    @property
    def job(self) -> str:
        return self.header["job"]

    @property
    def image(self) -> dict[str, Any]:
        return self.header["image"]
